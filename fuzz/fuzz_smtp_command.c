/*
 * fuzz_smtp_command.c - libFuzzer target for the command-line parsers:
 * smtp_parse_verb, smtp_line_ok, smtp_parse_mail/rcpt, smtp_domain_ok,
 * smtp_parse_bdat and smtp_parse_u64. Besides memory errors (ASan/UBSan) it
 * checks cross-parser invariants and aborts when one fails.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parse.h"

#include "fuzz_check.h"

/* Parse a copy of s as MAIL or RCPT argument and check the result. */
static void check_path(const char *s, size_t n, bool rcpt)
{
	char *copy = malloc(n + 1);
	CHECK(copy != NULL);
	memcpy(copy, s, n + 1);
	struct smtp_mail_args m;
	enum smtp_path_err e = rcpt ? smtp_parse_rcpt(copy, &m) : smtp_parse_mail(copy, &m);
	if (e == SMTP_PATH_OK) {
		const struct smtp_path *p = &m.path;
		CHECK(strlen(p->local) <= SMTP_LOCAL_MAX);
		CHECK(strlen(p->domain) <= SMTP_DOMAIN_MAX);
		CHECK(m.nparams <= SMTP_PARAMS_MAX);
		CHECK(!(p->null && rcpt) && !(p->postmaster && !rcpt));
		if (p->null || p->postmaster)
			CHECK(p->domain[0] == '\0');
		else
			CHECK(smtp_domain_ok(p->domain, true)); /* the two domain checks agree */
		if (!p->utf8)
			CHECK(smtp_domain_ok(p->domain, false) || p->null || p->postmaster);
		if (!p->quoted && !p->null)
			CHECK(p->local[0] != '\0' && p->local[0] != '.');
		for (size_t i = 0; i < m.nparams; i++) {
			CHECK(m.params[i].key >= copy && m.params[i].key < copy + n);
			CHECK(m.params[i].key[0] != '\0');
			CHECK(strchr(m.params[i].key, ' ') == NULL &&
			      strchr(m.params[i].key, '=') == NULL);
			if (m.params[i].value != NULL) {
				CHECK(m.params[i].value > copy && m.params[i].value < copy + n);
				CHECK(m.params[i].value[0] != '\0');
			}
		}
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1);
	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';

	bool ok = smtp_line_ok(line, size);
	if (ok)
		CHECK(memchr(line, '\r', size) == NULL && memchr(line, '\n', size) == NULL);

	const char *arg = NULL;
	enum smtp_verb v = smtp_parse_verb(line, size, &arg);
	CHECK(v < SMTP_CMD__COUNT);
	CHECK(arg != NULL && arg >= line && arg <= line + size);
	CHECK(arg == line + size || arg == line || arg[-1] == ' ');

	if (memchr(line, '\0', size) == NULL) {
		size_t alen = size - (size_t)(arg - line);
		check_path(arg, alen, false);
		check_path(arg, alen, true);
		/* also the raw input, so that the fuzzer need not find "MAIL " first */
		check_path(line, size, false);
		check_path(line, size, true);

		bool d1 = smtp_domain_ok(line, false), d2 = smtp_domain_ok(line, true);
		CHECK(!d1 || d2);
		if (d2)
			CHECK(size <= SMTP_DOMAIN_MAX);

		uint64_t n = 0;
		bool last = false;
		if (smtp_parse_bdat(arg, &n, &last))
			CHECK(strpbrk(arg, "0123456789") != NULL);

		if (smtp_parse_u64(line, &n)) {
			/* round trip: the same digits without leading zeros */
			char tmp[32];
			const char *digits = line;
			while (digits[0] == '0' && digits[1] != '\0')
				digits++;
			snprintf(tmp, sizeof(tmp), "%" PRIu64, n);
			CHECK(strcmp(tmp, digits) == 0);
		}
	}
	free(line);
	return 0;
}
