/*
 * fuzz_spf.c - libFuzzer target for SPF (spf.h): the record parser, the
 * macro expander and the whole evaluator over canned DNS answers.
 *
 * The first byte picks the part, the rest is the input:
 *   0: spf_record_parse(); a record that parses parses again the same way,
 *      has at most SPF_MAX_TERMS terms, and its cidr lengths are in range;
 *   1: spf_macro_expand() (domain-spec rules), 2: the same with the
 *      explanation letters; the output never exceeds its cap;
 *   3: check_host() where every TXT lookup answers the input as a record
 *      (so includes and redirects recurse into it), every A/AAAA answers
 *      one address, MX one host and PTR one name; the evaluation must end
 *      within a bounded number of lookups with a valid result.
 * Any violation aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/spf.h"

#include "fuzz_check.h"

static void parse(const char *p, size_t n)
{
	struct spf_record r, r2;
	struct buf why = BUF_INIT;
	int rc = spf_record_parse(p, n, &r, &why);
	int rc2 = spf_record_parse(p, n, &r2, &why);
	CHECK(rc == rc2);
	if (rc == 0) {
		CHECK(r.n <= SPF_MAX_TERMS && r.n == r2.n);
		for (size_t i = 0; i < r.n; i++) {
			CHECK(r.terms[i].mech == r2.terms[i].mech);
			CHECK(r.terms[i].cidr4 >= -1 && r.terms[i].cidr4 <= 32);
			CHECK(r.terms[i].cidr6 >= -1 && r.terms[i].cidr6 <= 128);
		}
	} else {
		CHECK(r.n == 0 && r.terms == NULL);
	}
	spf_record_free(&r);
	spf_record_free(&r2);
	buf_free(&why);
}

static void expand(const char *p, size_t n, bool exp)
{
	struct in6_addr v6 = {.s6_addr = {0x20, 0x01, 0x0d, 0xb8, [15] = 1}};
	struct spf_macro_ctx m = {
	    .sender = "strong-bad@email.example.com",
	    .domain = "email.example.com",
	    .ip = "2001:db8::1",
	    .ipv6 = true,
	    .ip6 = v6,
	    .helo = "mx.example.org",
	    .receiver = "mx.receiver.test",
	    .now = 1700000000,
	};
	struct buf out = BUF_INIT, why = BUF_INIT;
	buf_init(&out, SPF_EXP_MAX);
	int rc = spf_macro_expand(p, n, &m, exp, &out, &why);
	CHECK(out.len <= SPF_EXP_MAX);
	CHECK(rc == 0 || rc == -1);
	buf_free(&out);
	buf_free(&why);
}

static struct dns_answer *canned(const char *name, enum dns_type t, const char *rec, size_t n)
{
	struct dns_answer *a = dns_answer_new(name, t, DNS_NODATA, NULL);
	switch (t) {
	case DNS_TXT:
		dns_answer_add_txt(a, rec, n);
		break;
	case DNS_A:
		dns_answer_add_addr(a, "192.0.2.1");
		break;
	case DNS_AAAA:
		dns_answer_add_addr(a, "2001:db8::1");
		break;
	case DNS_MX:
		dns_answer_add_mx(a, 10, "mx.example.com");
		break;
	case DNS_PTR:
		dns_answer_add_name(a, "mail.example.com");
		break;
	default:
		abort();
	}
	return a;
}

static void evaluate(const char *p, size_t n)
{
	for (int v6 = 0; v6 < 2; v6++) {
		struct spf_params prm = {
		    .ip = v6 ? "2001:db8::1" : "192.0.2.1",
		    .helo = "mail.example.com",
		    .sender = "user@example.com",
		    .receiver = "mx.receiver.test",
		    .now = 1700000000,
		};
		struct spf_eval *e = spf_eval_new(&prm);
		CHECK(e != NULL);
		unsigned steps = 0;
		while (spf_eval_step(e) == SPF_STEP_NEED_DNS) {
			CHECK(++steps < 1000);
			const char *name;
			enum dns_type t;
			spf_eval_query(e, &name, &t);
			CHECK(name != NULL && strlen(name) <= SPF_NAME_MAX + 1);
			spf_eval_answer(e, canned(name, t, p, n));
		}
		enum spf_result r = spf_eval_result(e);
		CHECK(r >= SPF_NONE && r <= SPF_PERMERROR);
		CHECK(spf_result_name(r) != NULL);
		const char *x = spf_eval_explanation(e);
		CHECK(x == NULL || (r == SPF_FAIL && strlen(x) <= SPF_EXP_MAX));
		for (const char *s = spf_eval_reason(e); *s; s++)
			CHECK((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f);
		spf_eval_free(e);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 4096)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	switch (data[0] % 4) {
	case 0:
		parse(p, n);
		break;
	case 1:
		expand(p, n, false);
		break;
	case 2:
		expand(p, n, true);
		break;
	default:
		evaluate(p, n);
		break;
	}
	return 0;
}
