/*
 * test_dns.c - unit tests for the pure parts of src/dns/dns.c: libunbound
 * results (canned rdata) into answers, MX ordering and shuffling, null MX,
 * address ordering by family policy, the assembly of delivery targets from
 * canned answers (RFC 5321 5.1, RFC 7505), resolver settings, names.
 * No network: the one asynchronous test only checks that a query for an
 * invalid name completes on the loop, never inside dns_query().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <unbound.h>

#include "dns/dns.h"

/* ---- canned libunbound results ---- */

struct canned {
	struct ub_result res;
	char *data[8];
	int len[8];
};

static void canned_init(struct canned *c, const char *qname, int qtype, int rcode)
{
	memset(c, 0, sizeof *c);
	c->res.qname = (char *)qname;
	c->res.qtype = qtype;
	c->res.qclass = 1;
	c->res.rcode = rcode;
	c->res.data = c->data;
	c->res.len = c->len;
	c->res.ttl = 300;
	c->res.nxdomain = rcode == 3;
}

static void canned_add(struct canned *c, const void *rdata, int len)
{
	size_t i = 0;
	while (c->data[i] != NULL)
		i++;
	c->data[i] = (char *)rdata;
	c->len[i] = len;
	c->res.havedata = 1;
}

static void test_from_ub_mx(void **state)
{
	static const unsigned char mx1[] = {
	    0, 10, 2, 'm', 'x', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 4, 't', 'e', 's', 't', 0};
	static const unsigned char mx2[] = {0, 20, 3, 'm', '!', 'x', 0}; /* escaped */
	static const unsigned char bad[] = {0, 30, 5, 'a', 0};           /* truncated */
	static const unsigned char root[] = {0, 0, 0};
	struct canned c;
	canned_init(&c, "example.test.", DNS_MX, 0);
	canned_add(&c, mx1, sizeof mx1);
	canned_add(&c, mx2, sizeof mx2);
	canned_add(&c, bad, sizeof bad);
	canned_add(&c, root, sizeof root);
	struct dns_answer *a = dns_answer_from_ub("example.test.", DNS_MX, 0, &c.res);
	assert_int_equal(a->status, DNS_OK);
	assert_string_equal(a->name, "example.test");
	assert_null(a->canon);
	assert_null(a->reason);
	assert_int_equal(a->n, 3); /* the malformed one is dropped */
	assert_int_equal(a->mx[0].pref, 10);
	assert_string_equal(a->mx[0].host, "mx.example.test");
	assert_int_equal(a->mx[1].pref, 20);
	assert_string_equal(a->mx[1].host, "m\\033x");
	assert_int_equal(a->mx[2].pref, 0);
	assert_string_equal(a->mx[2].host, "");
	assert_int_equal(a->ttl, 300);
	dns_answer_free(a);
}

static void test_from_ub_statuses(void **state)
{
	struct canned c;
	struct dns_answer *a;

	canned_init(&c, "nx.test.", DNS_A, 3);
	a = dns_answer_from_ub("nx.test", DNS_A, 0, &c.res);
	assert_int_equal(a->status, DNS_NXDOMAIN);
	assert_non_null(strstr(a->reason, "does not exist"));
	dns_answer_free(a);

	canned_init(&c, "nodata.test.", DNS_AAAA, 0);
	a = dns_answer_from_ub("nodata.test", DNS_AAAA, 0, &c.res);
	assert_int_equal(a->status, DNS_NODATA);
	assert_string_equal(a->reason, "nodata.test has no AAAA record");
	dns_answer_free(a);

	canned_init(&c, "sf.test.", DNS_MX, 2);
	a = dns_answer_from_ub("sf.test", DNS_MX, 0, &c.res);
	assert_int_equal(a->status, DNS_TEMPFAIL);
	assert_non_null(strstr(a->reason, "SERVFAIL"));
	dns_answer_free(a);

	canned_init(&c, "ref.test.", DNS_MX, 5);
	a = dns_answer_from_ub("ref.test", DNS_MX, 0, &c.res);
	assert_int_equal(a->status, DNS_TEMPFAIL);
	assert_non_null(strstr(a->reason, "REFUSED"));
	dns_answer_free(a);

	/* libunbound errors: temporary, except a name it cannot parse */
	a = dns_answer_from_ub("x.test", DNS_A, UB_SERVFAIL, NULL);
	assert_int_equal(a->status, DNS_TEMPFAIL);
	dns_answer_free(a);
	a = dns_answer_from_ub("x.test", DNS_A, UB_NOMEM, NULL);
	assert_int_equal(a->status, DNS_TEMPFAIL);
	dns_answer_free(a);
	a = dns_answer_from_ub("x..test", DNS_A, UB_SYNTAX, NULL);
	assert_int_equal(a->status, DNS_NXDOMAIN);
	dns_answer_free(a);
	a = dns_answer_from_ub("x.test", DNS_A, 0, NULL);
	assert_int_equal(a->status, DNS_TEMPFAIL);
	dns_answer_free(a);

	/* all records malformed: not a proof of absence */
	static const unsigned char short_a[] = {127, 0, 0};
	canned_init(&c, "bad.test.", DNS_A, 0);
	canned_add(&c, short_a, sizeof short_a);
	a = dns_answer_from_ub("bad.test", DNS_A, 0, &c.res);
	assert_int_equal(a->status, DNS_TEMPFAIL);
	dns_answer_free(a);

	/* DNSSEC bogus: temporary (the data may be under attack) */
	static const unsigned char ip[] = {192, 0, 2, 1};
	canned_init(&c, "bogus.test.", DNS_A, 0);
	canned_add(&c, ip, sizeof ip);
	c.res.bogus = 1;
	a = dns_answer_from_ub("bogus.test", DNS_A, 0, &c.res);
	assert_int_equal(a->status, DNS_TEMPFAIL);
	dns_answer_free(a);
}

static void test_from_ub_addrs_cname(void **state)
{
	static const unsigned char v4[] = {192, 0, 2, 7};
	unsigned char v6[16];
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", v6), 1);
	struct canned c;
	canned_init(&c, "alias.test.", DNS_A, 0);
	canned_add(&c, v4, sizeof v4);
	c.res.canonname = (char *)"Real.Test.";
	struct dns_answer *a = dns_answer_from_ub("alias.test", DNS_A, 0, &c.res);
	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, 1);
	assert_int_equal(a->addrs[0].family, AF_INET);
	assert_string_equal(a->addrs[0].text, "192.0.2.7");
	assert_string_equal(a->canon, "Real.Test");
	dns_answer_free(a);

	/* canonname equal to the name (any case, trailing dot): no alias */
	canned_init(&c, "host.test.", DNS_AAAA, 0);
	canned_add(&c, v6, sizeof v6);
	canned_add(&c, v4, sizeof v4); /* wrong length for AAAA: dropped */
	c.res.canonname = (char *)"HOST.test.";
	a = dns_answer_from_ub("host.test", DNS_AAAA, 0, &c.res);
	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, 1);
	assert_int_equal(a->addrs[0].family, AF_INET6);
	assert_string_equal(a->addrs[0].text, "2001:db8::7");
	assert_null(a->canon);
	dns_answer_free(a);
}

static void test_from_ub_txt_ptr(void **state)
{
	static const unsigned char t1[] = {
	    6, 'v', '=', 's', 'p', 'f', '1', 5, ' ', '-', 'a', 'l', 'l'};
	static const unsigned char t2[] = {0, 3, 'a', 0, 'b'}; /* empty string, embedded NUL */
	static const unsigned char tbad[] = {9, 'x'};
	struct canned c;
	canned_init(&c, "d.test.", DNS_TXT, 0);
	canned_add(&c, t1, sizeof t1);
	canned_add(&c, t2, sizeof t2);
	canned_add(&c, tbad, sizeof tbad);
	struct dns_answer *a = dns_answer_from_ub("d.test", DNS_TXT, 0, &c.res);
	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, 2);
	assert_int_equal(a->txt[0].len, 11);
	assert_string_equal(a->txt[0].data, "v=spf1 -all");
	assert_int_equal(a->txt[1].len, 3);
	assert_memory_equal(a->txt[1].data, "a\0b", 3);
	dns_answer_free(a);

	static const unsigned char p1[] = {4, 'm', 'a', 'i', 'l', 4, 't', 'e', 's', 't', 0};
	canned_init(&c, "1.2.0.192.in-addr.arpa.", DNS_PTR, 0);
	canned_add(&c, p1, sizeof p1);
	a = dns_answer_from_ub("1.2.0.192.in-addr.arpa", DNS_PTR, 0, &c.res);
	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, 1);
	assert_string_equal(a->names[0], "mail.test");
	dns_answer_free(a);
}

/* ---- MX ordering ---- */

/* A scripted "random" source: returns the values in turn. */
struct script {
	const uint32_t *v;
	size_t i;
};

static uint32_t scripted(uint32_t bound, void *arg)
{
	struct script *s = arg;
	return s->v[s->i++] % bound;
}

static uint32_t always_zero(uint32_t bound, void *arg)
{
	return 0;
}

static void test_mx_sort(void **state)
{
	struct dns_mx mx[] = {{30, (char *)"c"}, {10, (char *)"a1"}, {20, (char *)"b"},
	    {10, (char *)"a2"}, {10, (char *)"a3"}};
	size_t n = sizeof mx / sizeof mx[0];
	dns_mx_sort(mx, n, always_zero, NULL);
	unsigned prefs[] = {10, 10, 10, 20, 30};
	for (size_t i = 0; i < n; i++)
		assert_int_equal(mx[i].pref, prefs[i]);
	assert_string_equal(mx[3].host, "b");
	assert_string_equal(mx[4].host, "c");

	/* every order of the three equal preferences occurs, and nothing else
	 * moves: shuffle with the real random source many times */
	int seen[6] = {0};
	for (int round = 0; round < 600; round++) {
		struct dns_mx m[] = {{10, (char *)"a"}, {10, (char *)"b"}, {10, (char *)"c"},
		    {5, (char *)"first"}, {50, (char *)"last"}};
		dns_mx_sort(m, 5, NULL, NULL);
		assert_string_equal(m[0].host, "first");
		assert_string_equal(m[4].host, "last");
		int code = (m[1].host[0] - 'a') * 3 + (m[2].host[0] - 'a');
		static const int codes[] = {1, 2, 3, 5, 6, 7}; /* ab ac ba bc ca cb */
		int k = -1;
		for (int i = 0; i < 6; i++)
			if (codes[i] == code)
				k = i;
		assert_true(k >= 0);
		seen[k]++;
	}
	for (int i = 0; i < 6; i++)
		assert_true(seen[i] > 20);

	/* a scripted shuffle is deterministic */
	static const uint32_t v[] = {0, 0, 0, 0};
	struct script s = {v, 0};
	struct dns_mx m2[] = {{10, (char *)"x"}, {10, (char *)"y"}};
	dns_mx_sort(m2, 2, scripted, &s);
	assert_string_equal(m2[0].host, "y");
	assert_string_equal(m2[1].host, "x");
	dns_mx_sort(NULL, 0, NULL, NULL);
}

static void test_null_mx(void **state)
{
	struct dns_answer *a = dns_answer_new("d.test", DNS_MX, DNS_NODATA, NULL);
	assert_false(dns_mx_is_null(a));
	assert_int_equal(dns_answer_add_mx(a, 0, "."), 0);
	assert_true(dns_mx_is_null(a));
	dns_answer_free(a);

	a = dns_answer_new("d.test", DNS_MX, DNS_NODATA, NULL);
	dns_answer_add_mx(a, 10, "."); /* not preference 0 */
	assert_false(dns_mx_is_null(a));
	dns_answer_free(a);

	a = dns_answer_new("d.test", DNS_MX, DNS_NODATA, NULL);
	dns_answer_add_mx(a, 0, ".");
	dns_answer_add_mx(a, 10, "mx.d.test"); /* not alone */
	assert_false(dns_mx_is_null(a));
	dns_answer_free(a);
	assert_false(dns_mx_is_null(NULL));
}

/* ---- addresses by family policy ---- */

static size_t order(const char *const *in, size_t n, enum dns_family f, struct dns_addr *out)
{
	struct dns_answer *a = dns_answer_new("h", DNS_A, DNS_NODATA, NULL);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(dns_answer_add_addr(a, in[i]), 0);
	memcpy(out, a->addrs, n * sizeof *out);
	dns_answer_free(a);
	return dns_addrs_order(out, n, f);
}

static void test_addrs_order(void **state)
{
	static const char *const in[] = {
	    "192.0.2.1", "2001:db8::1", "2001:db8::2", "192.0.2.2", "192.0.2.3"};
	struct dns_addr out[5];
	static const struct {
		enum dns_family f;
		size_t n;
		const char *want[5];
	} cases[] = {
	    {DNS_FAMILY_IPV4, 3, {"192.0.2.1", "192.0.2.2", "192.0.2.3"}},
	    {DNS_FAMILY_IPV6, 2, {"2001:db8::1", "2001:db8::2"}},
	    {DNS_FAMILY_PREFER_IPV4, 5,
	        {"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1", "2001:db8::2"}},
	    {DNS_FAMILY_PREFER_IPV6, 5,
	        {"2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2", "192.0.2.3"}},
	    {DNS_FAMILY_ANY, 5,
	        {"192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2", "192.0.2.3"}},
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		size_t n = order(in, 5, cases[c].f, out);
		assert_int_equal(n, cases[c].n);
		for (size_t i = 0; i < n; i++)
			assert_string_equal(out[i].text, cases[c].want[i]);
	}
	static const char *const only6[] = {"::1"};
	assert_int_equal(order(only6, 1, DNS_FAMILY_IPV4, out), 0);
	assert_int_equal(order(only6, 1, DNS_FAMILY_ANY, out), 1);
	assert_int_equal(dns_addrs_order(out, 0, DNS_FAMILY_ANY), 0);

	assert_true(dns_family_wants(DNS_FAMILY_IPV4, AF_INET));
	assert_false(dns_family_wants(DNS_FAMILY_IPV4, AF_INET6));
	assert_false(dns_family_wants(DNS_FAMILY_IPV6, AF_INET));
	assert_true(dns_family_wants(DNS_FAMILY_PREFER_IPV6, AF_INET));

	static const char *const names[] = {"any", "ipv4", "ipv6", "prefer-ipv4", "prefer-ipv6"};
	for (size_t i = 0; i < 5; i++) {
		enum dns_family f;
		assert_int_equal(dns_family_parse(names[i], &f), 0);
		assert_int_equal(f, (enum dns_family)i);
		assert_string_equal(dns_family_name(f), names[i]);
	}
	enum dns_family f;
	assert_int_equal(dns_family_parse("IPv4", &f), -1);
	assert_int_equal(dns_family_parse(NULL, &f), -1);
}

/* ---- targets from canned answers ---- */

static struct dns_answer *mx_answer(
    const char *domain, const char *const *hosts, const unsigned *prefs, size_t n)
{
	struct dns_answer *a = dns_answer_new(domain, DNS_MX, DNS_NODATA, NULL);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(dns_answer_add_mx(a, prefs[i], hosts[i]), 0);
	return a;
}

static struct dns_answer *addr_answer(const char *host, enum dns_type t, const char *ip)
{
	struct dns_answer *a = dns_answer_new(host, t, DNS_NODATA, NULL);
	if (ip != NULL)
		assert_int_equal(dns_answer_add_addr(a, ip), 0);
	return a;
}

/* Feed host i one answer of type t: an address, or a status. */
static void feed(
    struct dns_targets *t, size_t i, enum dns_type type, const char *ip, enum dns_status st)
{
	struct dns_answer *a = ip ? addr_answer(t->hosts[i].name, type, ip)
	                          : dns_answer_new(t->hosts[i].name, type, st, NULL);
	dns_targets_add(t, i, a);
	dns_answer_free(a);
}

static void test_targets_mx(void **state)
{
	static const char *const hosts[] = {
	    "mx2.d.test", "mx1.d.test.", "MX1.d.test", "mx3.d.test"};
	static const unsigned prefs[] = {20, 10, 30, 40};
	struct dns_answer *mx = mx_answer("d.test.", hosts, prefs, 4);
	struct dns_targets *t =
	    dns_targets_begin("d.test.", DNS_FAMILY_PREFER_IPV6, mx, always_zero, NULL);
	dns_answer_free(mx);
	assert_int_equal(t->status, DNS_OK);
	assert_string_equal(t->domain, "d.test");
	assert_false(t->implicit);
	assert_int_equal(t->nhosts, 3); /* MX1.d.test at 30 is mx1.d.test again */
	assert_string_equal(t->hosts[0].name, "mx1.d.test");
	assert_int_equal(t->hosts[0].pref, 10);
	assert_string_equal(t->hosts[1].name, "mx2.d.test");
	assert_string_equal(t->hosts[2].name, "mx3.d.test");
	for (size_t i = 0; i < 3; i++)
		assert_true(dns_targets_needs_lookup(t, i));

	feed(t, 0, DNS_A, "192.0.2.1", DNS_OK);
	feed(t, 0, DNS_AAAA, "2001:db8::1", DNS_OK);
	feed(t, 1, DNS_A, NULL, DNS_TEMPFAIL); /* one family failed, the other answered */
	feed(t, 1, DNS_AAAA, "2001:db8::2", DNS_OK);
	feed(t, 2, DNS_A, NULL, DNS_NXDOMAIN);
	feed(t, 2, DNS_AAAA, NULL, DNS_NXDOMAIN);
	dns_targets_finish(t);

	assert_int_equal(t->status, DNS_OK);
	assert_null(t->reason);
	assert_int_equal(t->hosts[0].naddrs, 2);
	assert_string_equal(t->hosts[0].addrs[0].text, "2001:db8::1"); /* prefer-ipv6 */
	assert_string_equal(t->hosts[0].addrs[1].text, "192.0.2.1");
	assert_int_equal(t->hosts[0].status, DNS_OK);
	assert_int_equal(t->hosts[1].naddrs, 1);
	assert_int_equal(t->hosts[1].status, DNS_OK);
	assert_int_equal(t->hosts[2].naddrs, 0); /* skipped, with the reason */
	assert_int_equal(t->hosts[2].status, DNS_NXDOMAIN);
	assert_string_equal(t->hosts[2].reason, "mx3.d.test does not exist (NXDOMAIN)");
	dns_targets_free(t);
}

static void test_targets_implicit(void **state)
{
	struct dns_answer *mx = dns_answer_new("d.test", DNS_MX, DNS_NODATA, NULL);
	struct dns_targets *t = dns_targets_begin("d.test", DNS_FAMILY_ANY, mx, NULL, NULL);
	dns_answer_free(mx);
	assert_int_equal(t->status, DNS_OK);
	assert_true(t->implicit);
	assert_int_equal(t->nhosts, 1);
	assert_true(t->hosts[0].implicit);
	assert_int_equal(t->hosts[0].pref, 0);
	assert_string_equal(t->hosts[0].name, "d.test");
	feed(t, 0, DNS_A, "192.0.2.9", DNS_OK);
	feed(t, 0, DNS_AAAA, NULL, DNS_NODATA);
	dns_targets_finish(t);
	assert_int_equal(t->status, DNS_OK);
	assert_int_equal(t->hosts[0].naddrs, 1);
	dns_targets_free(t);

	/* no MX, no address: permanent */
	mx = dns_answer_new("d.test", DNS_MX, DNS_NODATA, NULL);
	t = dns_targets_begin("d.test", DNS_FAMILY_ANY, mx, NULL, NULL);
	dns_answer_free(mx);
	feed(t, 0, DNS_A, NULL, DNS_NODATA);
	feed(t, 0, DNS_AAAA, NULL, DNS_NODATA);
	dns_targets_finish(t);
	assert_int_equal(t->status, DNS_NODATA);
	assert_string_equal(t->reason, "d.test has no MX record and no A/AAAA record");
	dns_targets_free(t);

	/* no MX, address lookup failed temporarily: temporary */
	mx = dns_answer_new("d.test", DNS_MX, DNS_NODATA, NULL);
	t = dns_targets_begin("d.test", DNS_FAMILY_IPV4, mx, NULL, NULL);
	dns_answer_free(mx);
	feed(t, 0, DNS_A, NULL, DNS_TEMPFAIL);
	dns_targets_finish(t);
	assert_int_equal(t->status, DNS_TEMPFAIL);
	dns_targets_free(t);
}

static void test_targets_final(void **state)
{
	static const struct {
		enum dns_status mx, want;
	} cases[] = {
	    {DNS_NXDOMAIN, DNS_NXDOMAIN},
	    {DNS_TEMPFAIL, DNS_TEMPFAIL},
	    {DNS_NULLMX, DNS_NULLMX},
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct dns_answer *mx = dns_answer_new("d.test", DNS_MX, cases[c].mx, "why");
		struct dns_targets *t = dns_targets_begin("d.test", DNS_FAMILY_ANY, mx, NULL, NULL);
		dns_answer_free(mx);
		assert_int_equal(t->status, cases[c].want);
		assert_int_equal(t->nhosts, 0);
		assert_string_equal(t->reason, "why");
		assert_false(dns_targets_needs_lookup(t, 0));
		dns_targets_finish(t);
		assert_int_equal(t->status, cases[c].want);
		dns_targets_free(t);
	}

	/* a null MX record in an MX answer */
	static const char *const dot[] = {"."};
	static const unsigned zero[] = {0};
	struct dns_answer *mx = mx_answer("d.test", dot, zero, 1);
	struct dns_targets *t = dns_targets_begin("d.test", DNS_FAMILY_ANY, mx, NULL, NULL);
	dns_answer_free(mx);
	assert_int_equal(t->status, DNS_NULLMX);
	assert_int_equal(t->nhosts, 0);
	assert_string_equal(t->reason, "d.test accepts no mail (null MX, RFC 7505)");
	dns_targets_free(t);

	/* "." among other MX records: ignored, never looked up */
	static const char *const mixed[] = {".", "mx.d.test"};
	static const unsigned prefs[] = {0, 10};
	mx = mx_answer("d.test", mixed, prefs, 2);
	t = dns_targets_begin("d.test", DNS_FAMILY_ANY, mx, NULL, NULL);
	dns_answer_free(mx);
	assert_int_equal(t->status, DNS_OK);
	assert_int_equal(t->nhosts, 2);
	assert_false(dns_targets_needs_lookup(t, 0));
	assert_true(dns_targets_needs_lookup(t, 1));
	feed(t, 1, DNS_A, "192.0.2.5", DNS_OK);
	dns_targets_finish(t);
	assert_int_equal(t->status, DNS_OK);
	assert_int_equal(t->hosts[0].naddrs, 0);
	assert_non_null(t->hosts[0].reason);
	dns_targets_free(t);
}

static void test_targets_no_addresses(void **state)
{
	static const char *const hosts[] = {"a.d.test", "b.d.test"};
	static const unsigned prefs[] = {10, 20};

	/* all permanent: permanent */
	struct dns_answer *mx = mx_answer("d.test", hosts, prefs, 2);
	struct dns_targets *t = dns_targets_begin("d.test", DNS_FAMILY_IPV4, mx, NULL, NULL);
	feed(t, 0, DNS_A, NULL, DNS_NXDOMAIN);
	feed(t, 1, DNS_A, NULL, DNS_NODATA);
	dns_targets_finish(t);
	assert_int_equal(t->status, DNS_NODATA);
	assert_string_equal(t->reason, "no MX host of d.test has an address (a.d.test does not "
	                               "exist (NXDOMAIN); b.d.test has no A record)");
	dns_targets_free(t);

	/* one temporary: temporary */
	t = dns_targets_begin("d.test", DNS_FAMILY_ANY, mx, NULL, NULL);
	feed(t, 0, DNS_A, NULL, DNS_NXDOMAIN);
	feed(t, 0, DNS_AAAA, NULL, DNS_NXDOMAIN);
	feed(t, 1, DNS_A, NULL, DNS_NODATA);
	feed(t, 1, DNS_AAAA, NULL, DNS_TEMPFAIL);
	dns_targets_finish(t);
	assert_int_equal(t->status, DNS_TEMPFAIL);
	assert_int_equal(t->hosts[1].status, DNS_TEMPFAIL);
	dns_targets_free(t);

	/* addresses only of a family the policy excludes: permanent, saying so */
	t = dns_targets_begin("d.test", DNS_FAMILY_IPV4, mx, NULL, NULL);
	feed(t, 0, DNS_AAAA, "2001:db8::1", DNS_OK);
	feed(t, 1, DNS_AAAA, "2001:db8::2", DNS_OK);
	dns_targets_finish(t);
	assert_int_equal(t->status, DNS_NODATA);
	assert_non_null(strstr(t->hosts[0].reason, "delivery.family = ipv4"));
	dns_targets_free(t);

	/* not looked up at all: never a bounce */
	t = dns_targets_begin("d.test", DNS_FAMILY_ANY, mx, NULL, NULL);
	dns_targets_finish(t);
	assert_int_equal(t->status, DNS_TEMPFAIL);
	dns_targets_free(t);
	dns_answer_free(mx);
}

static void test_targets_cname(void **state)
{
	static const char *const hosts[] = {"alias.d.test"};
	static const unsigned prefs[] = {10};
	struct dns_answer *mx = mx_answer("d.test", hosts, prefs, 1);
	struct dns_targets *t = dns_targets_begin("d.test", DNS_FAMILY_ANY, mx, NULL, NULL);
	dns_answer_free(mx);
	struct dns_answer *a = addr_answer("alias.d.test", DNS_A, "192.0.2.3");
	a->canon = strdup("real.d.test");
	dns_targets_add(t, 0, a);
	dns_answer_free(a);
	feed(t, 0, DNS_AAAA, NULL, DNS_NODATA);
	dns_targets_finish(t);
	assert_int_equal(t->status, DNS_OK);
	assert_string_equal(t->hosts[0].canon, "real.d.test");
	assert_int_equal(t->hosts[0].naddrs, 1);
	dns_targets_free(t);
}

static void test_targets_limits(void **state)
{
	struct dns_answer *mx = dns_answer_new("d.test", DNS_MX, DNS_NODATA, NULL);
	char name[32];
	for (unsigned i = 0; i < DNS_MAX_MX_HOSTS + 10; i++) {
		snprintf(name, sizeof name, "mx%u.d.test", i);
		assert_int_equal(dns_answer_add_mx(mx, 100 - i, name), 0);
	}
	struct dns_targets *t = dns_targets_begin("d.test", DNS_FAMILY_ANY, mx, NULL, NULL);
	dns_answer_free(mx);
	assert_int_equal(t->nhosts, DNS_MAX_MX_HOSTS);
	assert_int_equal(t->hosts[0].pref, 100 - (DNS_MAX_MX_HOSTS + 9)); /* the best kept */
	dns_targets_free(t);

	struct dns_answer *a = dns_answer_new("h", DNS_A, DNS_NODATA, NULL);
	for (int i = 0; i < DNS_MAX_RECORDS; i++) {
		snprintf(name, sizeof name, "10.0.%d.%d", i / 200, i % 200);
		assert_int_equal(dns_answer_add_addr(a, name), 0);
	}
	assert_int_equal(dns_answer_add_addr(a, "10.9.9.9"), -1);
	assert_int_equal(dns_answer_add_addr(a, "not-an-ip"), -1);
	dns_answer_free(a);
}

/* ---- settings and names ---- */

static void test_parse_resolver(void **state)
{
	const char *fwd[8];
	char *copy;
	bool sys;
	assert_int_equal(dns_parse_resolver("system", &copy, fwd, 8, &sys), 0);
	assert_true(sys);
	free(copy);
	assert_int_equal(dns_parse_resolver("127.0.0.53@5353", &copy, fwd, 8, &sys), 1);
	assert_false(sys);
	assert_string_equal(fwd[0], "127.0.0.53@5353");
	free(copy);
	assert_int_equal(dns_parse_resolver("192.0.2.1, ::1@53 192.0.2.2", &copy, fwd, 8, &sys), 3);
	assert_string_equal(fwd[0], "192.0.2.1");
	assert_string_equal(fwd[1], "::1@53");
	assert_string_equal(fwd[2], "192.0.2.2");
	free(copy);
	static const char *const bad[] = {"", " ", "system,192.0.2.1", "dns.example", "192.0.2.1@0",
	    "192.0.2.1@70000", "192.0.2.1@", "192.0.2.1;x"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(dns_parse_resolver(bad[i], &copy, fwd, 8, &sys), -1);
		assert_null(copy);
	}
	assert_int_equal(dns_parse_resolver(NULL, &copy, fwd, 8, &sys), -1);
	assert_int_equal(dns_parse_resolver("1.1.1.1 2.2.2.2 3.3.3.3", &copy, fwd, 2, &sys), -1);
}

static void test_names(void **state)
{
	assert_true(dns_valid_name("example.test"));
	assert_true(dns_valid_name("example.test."));
	assert_true(dns_valid_name("_dmarc.example.test"));
	assert_true(dns_valid_name("m\\033x.test"));
	assert_false(dns_valid_name(""));
	assert_false(dns_valid_name("."));
	assert_false(dns_valid_name("a..b"));
	assert_false(dns_valid_name(".a"));
	assert_false(dns_valid_name("a b"));
	assert_false(dns_valid_name("a\nb"));
	assert_false(dns_valid_name(NULL));
	char label[80];
	memset(label, 'a', 64);
	label[64] = '\0';
	assert_false(dns_valid_name(label));
	label[63] = '\0';
	assert_true(dns_valid_name(label));

	struct buf b = BUF_INIT;
	assert_int_equal(dns_reverse_name("192.0.2.1", &b), 0);
	assert_string_equal(buf_cstr(&b), "1.2.0.192.in-addr.arpa");
	assert_int_equal(dns_reverse_name("2001:db8::567:89ab", &b), 0);
	assert_string_equal(buf_cstr(&b),
	    "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
	assert_int_equal(dns_reverse_name("example.test", &b), -1);
	buf_free(&b);

	assert_string_equal(dns_status_name(DNS_NULLMX), "null-mx");
	assert_true(dns_status_permanent(DNS_NXDOMAIN));
	assert_true(dns_status_permanent(DNS_NODATA));
	assert_true(dns_status_permanent(DNS_NULLMX));
	assert_false(dns_status_permanent(DNS_TEMPFAIL));
	assert_false(dns_status_permanent(DNS_OK));
}

/* ---- the asynchronous contract, without the network ---- */

struct got {
	int calls;
	struct dns_answer *a;
	struct dns_targets *t;
};

static void on_answer(struct dns_answer *a, void *arg)
{
	struct got *g = arg;
	g->calls++;
	g->a = a;
}

static void on_targets(struct dns_targets *t, void *arg)
{
	struct got *g = arg;
	g->calls++;
	g->t = t;
}

static void never(struct dns_answer *a, void *arg)
{
	fail_msg("a cancelled query called back");
}

static void test_async_invalid_name(void **state)
{
	struct event_base *base = event_base_new();
	struct buf err = BUF_INIT;
	/* a forwarder nobody is asked: the names are refused before libunbound */
	struct dns_options opt = {"127.0.0.1@9", 2000};
	struct dns_resolver *r = dns_resolver_new(base, &opt, &err);
	assert_non_null(r);
	struct got g = {0};
	dns_query(r, "a..b", DNS_A, on_answer, &g);
	assert_int_equal(g.calls, 0); /* never from inside the call */
	struct got g2 = {0};
	dns_targets(r, "bad name", DNS_FAMILY_ANY, on_targets, &g2);
	assert_int_equal(g2.calls, 0);
	struct dns_req *c = dns_query(r, "x y", DNS_MX, never, NULL);
	dns_cancel(c);
	while (g.calls == 0 || g2.calls == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.a->status, DNS_NXDOMAIN);
	dns_answer_free(g.a);
	assert_int_equal(g2.calls, 1);
	assert_int_equal(g2.t->status, DNS_NXDOMAIN);
	dns_targets_free(g2.t);

	/* pending queries die with the resolver, silently */
	dns_query(r, "pending.test", DNS_A, never, NULL);
	dns_resolver_free(r);
	event_base_free(base);

	opt.resolver = "system,127.0.0.1";
	assert_null(dns_resolver_new(NULL, &opt, &err));
	assert_non_null(strstr(buf_cstr(&err), "resolver"));
	buf_free(&err);
}

/* A forwarder that never answers (a closed loopback port: libunbound takes
 * it for packet loss and retries for many seconds): our own timer ends the
 * query as a temporary failure; a query cancelled while libunbound holds it
 * never calls back, and neither do those pending when the resolver goes. */
static void test_async_timeout_and_cancel(void **state)
{
	struct event_base *base = event_base_new();
	struct buf err = BUF_INIT;
	struct dns_options opt = {"127.0.0.1@9", 300};
	struct dns_resolver *r = dns_resolver_new(base, &opt, &err);
	assert_non_null(r);
	struct got g = {0}, g2 = {0};
	dns_query(r, "slow.test", DNS_MX, on_answer, &g);
	dns_targets(r, "slow.test", DNS_FAMILY_ANY, on_targets, &g2);
	dns_cancel(dns_query(r, "cancelled.test", DNS_A, never, NULL));
	struct dns_req *c = dns_targets(r, "cancelled.test", DNS_FAMILY_ANY, NULL, NULL);
	dns_cancel(c);
	while (g.calls == 0 || g2.calls == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(g.a->status, DNS_TEMPFAIL);
	assert_non_null(strstr(g.a->reason, "timeout"));
	dns_answer_free(g.a);
	assert_int_equal(g2.t->status, DNS_TEMPFAIL);
	assert_int_equal(g2.t->nhosts, 0);
	dns_targets_free(g2.t);
	dns_query(r, "pending.test", DNS_TXT, never, NULL);
	dns_targets(r, "pending.test", DNS_FAMILY_IPV6, NULL, NULL);
	dns_resolver_free(r);
	event_base_free(base);
	buf_free(&err);

	/* the blocking variant ends the same way */
	struct dns_answer *a = dns_query_sync(&opt, "slow.test", DNS_AAAA, &err);
	assert_non_null(a);
	assert_int_equal(a->status, DNS_TEMPFAIL);
	dns_answer_free(a);
	opt.resolver = "nonsense";
	assert_null(dns_query_sync(&opt, "slow.test", DNS_AAAA, &err));
	assert_null(dns_targets_sync(&opt, "slow.test", DNS_FAMILY_ANY, &err));
	buf_free(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_from_ub_mx),
	    cmocka_unit_test(test_from_ub_statuses),
	    cmocka_unit_test(test_from_ub_addrs_cname),
	    cmocka_unit_test(test_from_ub_txt_ptr),
	    cmocka_unit_test(test_mx_sort),
	    cmocka_unit_test(test_null_mx),
	    cmocka_unit_test(test_addrs_order),
	    cmocka_unit_test(test_targets_mx),
	    cmocka_unit_test(test_targets_implicit),
	    cmocka_unit_test(test_targets_final),
	    cmocka_unit_test(test_targets_no_addresses),
	    cmocka_unit_test(test_targets_cname),
	    cmocka_unit_test(test_targets_limits),
	    cmocka_unit_test(test_parse_resolver),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_async_invalid_name),
	    cmocka_unit_test(test_async_timeout_and_cancel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
