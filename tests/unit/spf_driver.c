/*
 * spf_driver.c - runs SPF checks against canned DNS answers read from
 * standard input; the conformance harness (spf_suite.py) feeds it the
 * RFC 7208 test suite. Every lookup the evaluator asks for is answered
 * from the table (NXDOMAIN for a name not in it), through the same
 * spf_eval_step()/spf_eval_answer() interface the event-loop glue uses.
 *
 * Input, one item per line, fields separated by tabs, strings in hex:
 *   R                                   forget all answers (next scenario)
 *   Q NAME TYPE STATUS [RECORD...]      the answer for NAME (lower case) and
 *                                       TYPE (A AAAA MX TXT PTR); STATUS ok,
 *                                       nodata, nxdomain, tempfail; records:
 *                                       A/AAAA text, MX "pref:host", TXT hex,
 *                                       PTR name
 *   T ID IP HELOHEX MAILFROMHEX          run one check
 * Output per T: "ID RESULT EXPLANATIONHEX-or-- LOOKUPS REASON".
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/spf.h"
#include "core/buf.h"
#include "dns/dns.h"
#include "driver_hex.h"

struct entry {
	char *name;
	enum dns_type type;
	char *line; /* the whole Q line, parsed again for each answer */
};

static struct entry *table;
static size_t ntable;

static void puthex(const char *s)
{
	if (s == NULL) {
		fputs("-", stdout);
		return;
	}
	if (*s == '\0')
		fputs("00", stdout); /* an empty explanation: the NUL byte marks it */
	for (; *s; s++)
		printf("%02x", (unsigned char)*s);
}

static bool type_of(const char *s, enum dns_type *t)
{
	static const struct {
		const char *n;
		enum dns_type t;
	} types[] = {
	    {"A", DNS_A}, {"AAAA", DNS_AAAA}, {"MX", DNS_MX}, {"TXT", DNS_TXT}, {"PTR", DNS_PTR}};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (strcmp(s, types[i].n) == 0) {
			*t = types[i].t;
			return true;
		}
	return false;
}

/* split line at tabs in place */
static size_t fields(char *line, char **f, size_t max)
{
	size_t n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(line, "\t", &save); tok && n < max;
	     tok = strtok_r(NULL, "\t", &save))
		f[n++] = tok;
	return n;
}

static struct dns_answer *answer_for(const char *name, enum dns_type t)
{
	for (size_t i = 0; i < ntable; i++) {
		if (table[i].type != t || strcasecmp(table[i].name, name) != 0)
			continue;
		char *copy = strdup(table[i].line);
		char *f[80];
		size_t n = fields(copy, f, 80);
		enum dns_status st = strcmp(f[3], "ok") == 0         ? DNS_OK
		                     : strcmp(f[3], "nodata") == 0   ? DNS_NODATA
		                     : strcmp(f[3], "nxdomain") == 0 ? DNS_NXDOMAIN
		                                                     : DNS_TEMPFAIL;
		struct dns_answer *a = dns_answer_new(name, t, st, st == DNS_OK ? NULL : f[3]);
		struct buf b = BUF_INIT;
		for (size_t k = 4; k < n; k++) {
			switch (t) {
			case DNS_A:
			case DNS_AAAA:
				dns_answer_add_addr(a, f[k]);
				break;
			case DNS_MX: {
				char *colon = strchr(f[k], ':');
				if (colon) {
					*colon = '\0';
					dns_answer_add_mx(a, (unsigned)atoi(f[k]), colon + 1);
				}
				break;
			}
			case DNS_TXT:
				driver_unhex(f[k], &b);
				dns_answer_add_txt(a, b.data ? b.data : "", b.len);
				break;
			case DNS_PTR:
				dns_answer_add_name(a, f[k]);
				break;
			default:
				abort();
			}
		}
		if (st == DNS_OK && a->n == 0)
			a->status = DNS_NODATA;
		buf_free(&b);
		free(copy);
		return a;
	}
	return dns_answer_new(name, t, DNS_NXDOMAIN, "not in the test zone");
}

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	struct buf helo = BUF_INIT, from = BUF_INIT;
	while ((got = getline(&line, &cap, stdin)) > 0) {
		if (line[got - 1] == '\n')
			line[--got] = '\0';
		if (line[0] == 'R') {
			for (size_t i = 0; i < ntable; i++) {
				free(table[i].name);
				free(table[i].line);
			}
			ntable = 0;
			continue;
		}
		char *copy = strdup(line);
		char *f[8];
		size_t n = fields(copy, f, 8);
		if (line[0] == 'Q' && n >= 4) {
			enum dns_type t;
			if (!type_of(f[2], &t)) {
				fprintf(stderr, "bad type %s\n", f[2]);
				return 2;
			}
			table = realloc(table, (ntable + 1) * sizeof *table);
			table[ntable].name = strdup(f[1]);
			table[ntable].type = t;
			table[ntable].line = strdup(line);
			ntable++;
		} else if (line[0] == 'T' && n >= 5) {
			driver_unhex(f[3], &helo);
			driver_unhex(f[4], &from);
			struct spf_params p = {
			    .ip = f[2],
			    .helo = buf_cstr(&helo),
			    .sender = buf_cstr(&from),
			    .receiver = "receiver.test",
			    .now = 1700000000,
			};
			struct spf_eval *e = spf_eval_new(&p);
			if (e == NULL) {
				printf("%s\tbad-ip\t-\t0\t\n", f[1]);
			} else {
				while (spf_eval_step(e) == SPF_STEP_NEED_DNS) {
					const char *name;
					enum dns_type t;
					spf_eval_query(e, &name, &t);
					spf_eval_answer(e, answer_for(name, t));
				}
				printf("%s\t%s\t", f[1], spf_result_name(spf_eval_result(e)));
				puthex(spf_eval_explanation(e));
				printf("\t%u\t%s\n", spf_eval_lookups(e), spf_eval_reason(e));
				spf_eval_free(e);
			}
			fflush(stdout);
		} else {
			fprintf(stderr, "bad line: %s\n", line);
			return 2;
		}
		free(copy);
	}
	free(line);
	buf_free(&helo);
	buf_free(&from);
	return 0;
}
