/*
 * test_spf.c - table-driven tests of the SPF record parser, the macro
 * expander (RFC 7208 7.4's examples) and the evaluator's limits, with
 * canned DNS answers. The RFC 7208 conformance suite runs separately
 * (spf_rfc7208, through spf_driver).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "auth/spf.h"

struct rec_case {
	const char *rec;
	int ok;        /* 0 parses, -1 permerror */
	size_t nterms; /* when ok */
};

static const struct rec_case recs[] = {
    {"v=spf1", 0, 0}, {"v=spf1 -all", 0, 1}, {"V=SPF1 IP4:192.0.2.0/24 ~ALL", 0, 2},
    {"v=spf1  a   mx  ", 0, 2}, {"v=spf1 a/24//64 mx:example.com/32 -all", 0, 3},
    {"v=spf1 a:foo:bar/baz.example.com", 0, 1}, {"v=spf1 ip6:2001:db8::/32 ip4:192.0.2.1", 0, 2},
    {"v=spf1 include:_spf.example.com exists:%{ir}.%{l1r+-}._spf.%{d} -all", 0, 3},
    {"v=spf1 redirect=_spf.example.com", 0, 0}, {"v=spf1 exp=explain._spf.%{d} -all", 0, 1},
    {"v=spf1 foo=bar -all", 0, 1}, /* unknown modifier: ignored */
    {"v=spf1 ptr ptr:example.com ?all", 0, 3}, {"v=spf10 -all", -1, 0}, /* not a version 1 record */
    {"v=spf1 a/33", -1, 0},                                             /* cidr out of range */
    {"v=spf1 a//129", -1, 0}, {"v=spf1 a/08", -1, 0},                   /* leading zero */
    {"v=spf1 ip4:192.0.2.300", -1, 0}, {"v=spf1 ip6:2001:db8::/129", -1, 0},
    {"v=spf1 include", -1, 0},             /* include needs a domain */
    {"v=spf1 include:example.123", -1, 0}, /* toplabel must not be numeric */
    {"v=spf1 redirect=a.example.com redirect=b.example.com", -1, 0},
    {"v=spf1 exp=a.example.com exp=b.example.com", -1, 0},
    {"v=spf1 -", -1, 0},                               /* a qualifier alone */
    {"v=spf1 all:foo", -1, 0}, {"v=spf1 frob", -1, 0}, /* unknown mechanism */
    {"v=spf1 +redirect=example.com", -1, 0},           /* no qualifier on modifiers */
    {"v=spf1 exists:%{q}.example.com", -1, 0},         /* unknown macro letter */
    {"v=spf1 exists:%{c}.example.com", -1, 0},         /* c only in explanations */
    {"v=spf1 exists:100%.example.com", -1, 0},         /* bare percent */
};

static void test_records(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
		struct spf_record r;
		struct buf why = BUF_INIT;
		int rc = spf_record_parse(recs[i].rec, strlen(recs[i].rec), &r, &why);
		if (rc != recs[i].ok)
			fail_msg("%s: got %d (%s)", recs[i].rec, rc, buf_cstr(&why));
		if (rc == 0 && r.n != recs[i].nterms)
			fail_msg("%s: %zu terms, want %zu", recs[i].rec, r.n, recs[i].nterms);
		if (rc != 0)
			assert_true(why.len > 0); /* a reason for the log */
		spf_record_free(&r);
		buf_free(&why);
	}
}

static void test_record_fields(void **state)
{
	(void)state;
	const char *s = "v=spf1 -a:mail.%{d}/24//64 ~mx ?ip4:192.0.2.0/28 redirect=r.example.com";
	struct spf_record r;
	struct buf why = BUF_INIT;
	assert_int_equal(spf_record_parse(s, strlen(s), &r, &why), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.terms[0].mech, SPF_A);
	assert_int_equal(r.terms[0].qualifier, SPF_FAIL);
	assert_string_equal(r.terms[0].spec, "mail.%{d}");
	assert_int_equal(r.terms[0].cidr4, 24);
	assert_int_equal(r.terms[0].cidr6, 64);
	assert_int_equal(r.terms[1].qualifier, SPF_SOFTFAIL);
	assert_null(r.terms[1].spec);
	assert_int_equal(r.terms[1].cidr4, -1);
	assert_int_equal(r.terms[2].qualifier, SPF_NEUTRAL);
	assert_int_equal(r.terms[2].cidr4, 28);
	assert_string_equal(r.redirect, "r.example.com");
	assert_null(r.exp);
	spf_record_free(&r);
	spf_record_free(&r); /* idempotent */
	assert_true(spf_is_record("v=spf1", 6));
	assert_false(spf_is_record("v=spf1x", 7));
	assert_false(spf_is_record("spf1", 4));
	buf_free(&why);
}

struct macro_case {
	const char *in;
	const char *out; /* NULL: a syntax error */
	bool v6;
	bool exp;
};

/* RFC 7208 7.4 (sender strong-bad@email.example.com, 192.0.2.3 or 2001:db8::cb01) */
static const struct macro_case macros[] = {
    {"%{s}", "strong-bad@email.example.com", false, false},
    {"%{o}", "email.example.com", false, false},
    {"%{d}", "email.example.com", false, false},
    {"%{d4}", "email.example.com", false, false},
    {"%{d3}", "email.example.com", false, false},
    {"%{d2}", "example.com", false, false},
    {"%{d1}", "com", false, false},
    {"%{dr}", "com.example.email", false, false},
    {"%{d2r}", "example.email", false, false},
    {"%{l}", "strong-bad", false, false},
    {"%{l-}", "strong.bad", false, false},
    {"%{lr}", "strong-bad", false, false},
    {"%{lr-}", "bad.strong", false, false},
    {"%{l1r-}", "strong", false, false},
    {"%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com", false, false},
    {"%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com", false, false},
    {"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com", false,
        false},
    {"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com", false,
        false},
    {"%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net", false, false},
    {"%{ir}.%{v}._spf.%{d2}",
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com",
        true, false},
    {"%%%_%-", "% %20", false, false},
    {"%{S}", "strong-bad%40email.example.com", false, false}, /* upper case: URL-escaped */
    {"%{h}", "mx.example.org", false, false},
    {"%{c} via %{r} at %{t}", "192.0.2.3 via mx.receiver.test at 1700000000", false, true},
    {"%{c}", NULL, false, false},  /* not outside explanations */
    {"%{d0}", NULL, false, false}, /* the digit transformer must not be 0 */
    {"%{x}", NULL, false, false},
    {"%{d", NULL, false, false},
    {"50%", NULL, false, false},
    {"%a", NULL, false, false},
};

static void test_macros(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++) {
		const struct macro_case *c = &macros[i];
		struct in6_addr v6;
		inet_pton(AF_INET6, "2001:db8::cb01", &v6);
		struct spf_macro_ctx m = {
		    .sender = "strong-bad@email.example.com",
		    .domain = "email.example.com",
		    .ip = c->v6 ? "2001:db8::cb01" : "192.0.2.3",
		    .ipv6 = c->v6,
		    .ip6 = v6,
		    .helo = "mx.example.org",
		    .receiver = "mx.receiver.test",
		    .now = 1700000000,
		};
		struct buf out = BUF_INIT, why = BUF_INIT;
		int rc = spf_macro_expand(c->in, strlen(c->in), &m, c->exp, &out, &why);
		if (c->out == NULL) {
			if (rc != -1)
				fail_msg(
				    "%s: expanded to %s, want an error", c->in, buf_cstr(&out));
		} else {
			if (rc != 0)
				fail_msg("%s: %s", c->in, buf_cstr(&why));
			if (strcmp(buf_cstr(&out), c->out) != 0)
				fail_msg("%s: got %s, want %s", c->in, buf_cstr(&out), c->out);
		}
		buf_free(&out);
		buf_free(&why);
	}
	assert_true(spf_macro_needs_ptr("%{p}.example.com"));
	assert_true(spf_macro_needs_ptr("x.%{P2}"));
	assert_false(spf_macro_needs_ptr("%{d}.example.com"));
}

/* ---- the evaluator with a tiny canned zone ---- */

struct zone_rr {
	const char *name;
	enum dns_type type;
	const char *data; /* TXT text, address, "host" for MX, name for PTR; NULL: TEMPFAIL */
};

static struct dns_answer *zone_answer(
    const struct zone_rr *z, size_t n, const char *name, enum dns_type t)
{
	struct dns_answer *a = dns_answer_new(name, t, DNS_NXDOMAIN, "no such name");
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(z[i].name, name) != 0)
			continue;
		if (a->status == DNS_NXDOMAIN)
			a->status = DNS_NODATA;
		if (z[i].type != t)
			continue;
		if (z[i].data == NULL) {
			a->status = DNS_TEMPFAIL;
			break;
		}
		if (t == DNS_TXT)
			dns_answer_add_txt(a, z[i].data, strlen(z[i].data));
		else if (t == DNS_MX)
			dns_answer_add_mx(a, 10, z[i].data);
		else if (t == DNS_PTR)
			dns_answer_add_name(a, z[i].data);
		else
			dns_answer_add_addr(a, z[i].data);
	}
	return a;
}

static enum spf_result run(
    const struct zone_rr *z, size_t n, const char *ip, const char *from, unsigned *lookups)
{
	struct spf_params p = {.ip = ip, .helo = "helo.example.com", .sender = from, .now = 1};
	struct spf_eval *e = spf_eval_new(&p);
	assert_non_null(e);
	while (spf_eval_step(e) == SPF_STEP_NEED_DNS) {
		const char *name;
		enum dns_type t;
		spf_eval_query(e, &name, &t);
		spf_eval_answer(e, zone_answer(z, n, name, t));
	}
	enum spf_result r = spf_eval_result(e);
	if (lookups)
		*lookups = spf_eval_lookups(e);
	spf_eval_free(e);
	return r;
}

#define RUN(z, ip, from) run(z, sizeof z / sizeof z[0], ip, from, NULL)

static void test_eval_limits(void **state)
{
	(void)state;
	/* 11 includes: the 11th term that queries DNS is a permerror */
	static const struct zone_rr many[] = {
	    {"a.test", DNS_TXT,
	        "v=spf1 include:n.test include:n.test include:n.test include:n.test "
	        "include:n.test include:n.test include:n.test include:n.test include:n.test "
	        "include:n.test include:n.test -all"},
	    {"n.test", DNS_TXT, "v=spf1 -all"},
	};
	assert_int_equal(RUN(many, "192.0.2.1", "x@a.test"), SPF_PERMERROR);
	/* exactly 10 is fine */
	static const struct zone_rr ten[] = {
	    {"a.test", DNS_TXT,
	        "v=spf1 include:n.test include:n.test include:n.test include:n.test "
	        "include:n.test include:n.test include:n.test include:n.test include:n.test "
	        "include:n.test -all"},
	    {"n.test", DNS_TXT, "v=spf1 -all"},
	};
	assert_int_equal(RUN(ten, "192.0.2.1", "x@a.test"), SPF_FAIL);
	/* the third void lookup is a permerror */
	static const struct zone_rr voids[] = {
	    {"a.test", DNS_TXT, "v=spf1 a:v1.test a:v2.test a:v3.test -all"},
	};
	assert_int_equal(RUN(voids, "192.0.2.1", "x@a.test"), SPF_PERMERROR);
	static const struct zone_rr two_voids[] = {
	    {"a.test", DNS_TXT, "v=spf1 a:v1.test a:v2.test -all"},
	};
	assert_int_equal(RUN(two_voids, "192.0.2.1", "x@a.test"), SPF_FAIL);
	/* an include loop ends (the term limit), as permerror */
	static const struct zone_rr loop[] = {{"a.test", DNS_TXT, "v=spf1 include:a.test -all"}};
	assert_int_equal(RUN(loop, "192.0.2.1", "x@a.test"), SPF_PERMERROR);
}

static void test_eval_results(void **state)
{
	(void)state;
	static const struct zone_rr z[] = {
	    {"a.test", DNS_TXT, "v=spf1 mx ptr:good.test include:inc.test ~all"},
	    {"a.test", DNS_TXT, "some other text record"},
	    {"a.test", DNS_MX, "mx.a.test"},
	    {"mx.a.test", DNS_A, "192.0.2.25"},
	    {"inc.test", DNS_TXT, "v=spf1 ip6:2001:db8::/32 include:tmp.test -all"},
	    {"tmp.test", DNS_TXT, NULL},
	    {"9.2.0.192.in-addr.arpa", DNS_PTR, "host.good.test"},
	    {"host.good.test", DNS_A, "192.0.2.9"},
	    {"noinc.test", DNS_TXT, "v=spf1 include:nothing.test -all"},
	    {"nothing.test", DNS_A, "192.0.2.1"},
	};
	unsigned lookups = 0;
	assert_int_equal(run(z, 10, "192.0.2.25", "x@a.test", &lookups), SPF_PASS); /* mx */
	assert_int_equal(lookups, 3);                                /* TXT, MX, A: nothing more */
	assert_int_equal(RUN(z, "192.0.2.9", "x@a.test"), SPF_PASS); /* ptr, validated */
	assert_int_equal(RUN(z, "2001:db8::7", "x@a.test"), SPF_PASS); /* include, ip6 */
	/* past the include's ip6: its include of tmp.test fails temporarily */
	assert_int_equal(RUN(z, "192.0.2.77", "x@a.test"), SPF_TEMPERROR);
	assert_int_equal(RUN(z, "192.0.2.1", "x@noinc.test"), SPF_PERMERROR); /* include of none */
	assert_int_equal(RUN(z, "192.0.2.1", "x@unknown.test"), SPF_NONE);
	assert_int_equal(RUN(z, "192.0.2.1", "x@single"), SPF_NONE); /* not a multi-label domain */
	/* an IPv4-mapped IPv6 client is an IPv4 client */
	assert_int_equal(RUN(z, "::ffff:192.0.2.25", "x@a.test"), SPF_PASS);
	/* a bad IP is refused up front */
	struct spf_params p = {.ip = "not-an-ip", .sender = "x@a.test"};
	assert_null(spf_eval_new(&p));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_records),
	    cmocka_unit_test(test_record_fields),
	    cmocka_unit_test(test_macros),
	    cmocka_unit_test(test_eval_limits),
	    cmocka_unit_test(test_eval_results),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
