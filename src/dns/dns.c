/*
 * dns.c - asynchronous DNS over libunbound in a libevent loop, and the
 * delivery targets of a domain (see dns.h for the contract).
 *
 * Shape: libunbound runs in threaded async mode (ub_ctx_async(ctx, 1)): it
 * resolves in its own thread and writes answers to a pipe; the loop watches
 * that pipe (ub_fd) and calls ub_process(), which runs our ub_done() for
 * each answer on the loop's thread. Each query also has an own timer: if
 * libunbound has not answered when it fires, the query is cancelled in
 * libunbound (ub_cancel: its callback will not come) and completes as
 * DNS_TEMPFAIL. Queries that fail before reaching libunbound (invalid name,
 * ub_resolve_async error) complete from the same timer armed with zero
 * delay, so no callback ever runs inside the call that started the query.
 *
 * A targets query (dns_targets) is a composite: one MX query, then A and/or
 * AAAA queries for every host in parallel, assembled by the pure functions
 * dns_targets_begin/add/finish, which the unit tests drive with canned
 * answers.
 *
 * Invariants: every struct dns_req is on exactly one of the resolver's two
 * lists until it completes or is cancelled; a simple query has ub_pending
 * iff libunbound holds it (ub_id valid); sub-queries of a composite are
 * ordinary simple queries whose callback argument is their struct sub.
 */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <unbound.h>

#include "core/config.h"
#include "core/log.h"

#define RESOLVER_MAX_FWD 8
#define RCODE_NXDOMAIN 3

/* ---- small helpers ---- */

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		fatalx("dns: out of memory");
	return p;
}

static void *xreallocarray(void *p, size_t n, size_t size)
{
	void *q = reallocarray(p, n ? n : 1, size ? size : 1);
	if (q == NULL)
		fatalx("dns: out of memory");
	return q;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (p == NULL)
		fatalx("dns: out of memory");
	return p;
}

/* A copy of name without one trailing dot ("." becomes ""). */
static char *strip_dot(const char *name)
{
	char *p = xstrdup(name);
	size_t n = strlen(p);
	if (n > 0 && p[n - 1] == '.' && (n < 2 || p[n - 2] != '\\'))
		p[n - 1] = '\0';
	return p;
}

/* Equal as DNS names: ASCII case-insensitive, trailing dots ignored. */
static bool name_eq(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	if (na > 0 && a[na - 1] == '.')
		na--;
	if (nb > 0 && b[nb - 1] == '.')
		nb--;
	return na == nb && strncasecmp(a, b, na) == 0;
}

/* printf into a fresh string (reasons). */
static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (buf_err(&b))
		fatalx("dns: out of memory");
	char *s = buf_steal(&b);
	if (s == NULL)
		fatalx("dns: out of memory");
	return s;
}

/* A copy of a name from libunbound with every byte outside 0x21-0x7e made
 * '?' (canonname is not escaped the way our own names are). */
static char *safe_copy(const char *s)
{
	char *p = strip_dot(s);
	for (char *c = p; *c; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
	return p;
}

const char *dns_status_name(enum dns_status s)
{
	switch (s) {
	case DNS_OK:
		return "ok";
	case DNS_NODATA:
		return "nodata";
	case DNS_NXDOMAIN:
		return "nxdomain";
	case DNS_NULLMX:
		return "null-mx";
	case DNS_TEMPFAIL:
		return "tempfail";
	default:
		fatalx("dns: bad status %d", (int)s);
	}
}

const char *dns_type_name(enum dns_type t)
{
	switch (t) {
	case DNS_A:
		return "A";
	case DNS_PTR:
		return "PTR";
	case DNS_MX:
		return "MX";
	case DNS_TXT:
		return "TXT";
	case DNS_AAAA:
		return "AAAA";
	default:
		fatalx("dns: bad type %d", (int)t);
	}
}

static const char *const family_names[] = {
    [DNS_FAMILY_ANY] = "any",
    [DNS_FAMILY_IPV4] = "ipv4",
    [DNS_FAMILY_IPV6] = "ipv6",
    [DNS_FAMILY_PREFER_IPV4] = "prefer-ipv4",
    [DNS_FAMILY_PREFER_IPV6] = "prefer-ipv6",
};

int dns_family_parse(const char *s, enum dns_family *out)
{
	for (size_t i = 0; s != NULL && i < sizeof family_names / sizeof family_names[0]; i++)
		if (strcmp(s, family_names[i]) == 0) {
			*out = (enum dns_family)i;
			return 0;
		}
	return -1;
}

const char *dns_family_name(enum dns_family f)
{
	if ((unsigned)f >= sizeof family_names / sizeof family_names[0])
		fatalx("dns: bad family %d", (int)f);
	return family_names[f];
}

bool dns_family_wants(enum dns_family f, int af)
{
	switch (f) {
	case DNS_FAMILY_IPV4:
		return af == AF_INET;
	case DNS_FAMILY_IPV6:
		return af == AF_INET6;
	case DNS_FAMILY_ANY:
	case DNS_FAMILY_PREFER_IPV4:
	case DNS_FAMILY_PREFER_IPV6:
		return af == AF_INET || af == AF_INET6;
	default:
		fatalx("dns: bad family %d", (int)f);
	}
}

/* "A", "AAAA" or "A/AAAA": the address records the policy asks for. */
static const char *family_rrtypes(enum dns_family f)
{
	if (!dns_family_wants(f, AF_INET6))
		return "A";
	if (!dns_family_wants(f, AF_INET))
		return "AAAA";
	return "A/AAAA";
}

/* ---- names and settings ---- */

bool dns_valid_name(const char *name)
{
	if (name == NULL)
		return false;
	size_t n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (c <= 0x20 || c >= 0x7f) {
			return false;
		} else if (++label > 63) {
			return false;
		}
	}
	return true;
}

int dns_parse_resolver(const char *s, char **copy, const char **fwd, int max, bool *system)
{
	*copy = NULL;
	*system = false;
	if (s == NULL)
		return -1;
	char *c = xstrdup(s);
	int n = 0;
	bool sys = false;
	char *save = NULL;
	for (char *tok = strtok_r(c, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		if (strcmp(tok, "system") == 0)
			sys = true;
		else if (!config_valid_resolver(tok) || n >= max)
			goto bad;
		else
			fwd[n++] = tok;
	}
	/* "system" stands alone; forwarders need at least one address */
	if ((sys && n > 0) || (!sys && n == 0))
		goto bad;
	*copy = c;
	*system = sys;
	return n;
bad:
	free(c);
	return -1;
}

int dns_reverse_name(const char *ip, struct buf *out)
{
	unsigned char a[16];
	buf_reset(out);
	if (inet_pton(AF_INET, ip, a) == 1) {
		buf_printf(out, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
	} else if (inet_pton(AF_INET6, ip, a) == 1) {
		static const char hex[] = "0123456789abcdef";
		for (int i = 15; i >= 0; i--) {
			buf_putc(out, hex[a[i] & 0x0f]);
			buf_putc(out, '.');
			buf_putc(out, hex[a[i] >> 4]);
			buf_putc(out, '.');
		}
		buf_puts(out, "ip6.arpa");
	} else {
		return -1;
	}
	return buf_err(out) ? -1 : 0;
}

/* A domain name in uncompressed wire format at p (n bytes) into out in
 * presentation format without the trailing dot ("" for the root); bytes
 * other than letters, digits, '-' and '_' are escaped as \DDD. Sets *used
 * to the bytes consumed. 0, or -1 if malformed (compression pointers are
 * malformed here: libunbound hands out decompressed rdata). */
static int wire_name(const unsigned char *p, size_t n, size_t *used, struct buf *out)
{
	size_t i = 0, total = 0;
	buf_reset(out);
	for (;;) {
		if (i >= n)
			return -1;
		unsigned len = p[i++];
		if (len == 0)
			break;
		if (len > 63 || i + len > n || (total += len + 1) > 255)
			return -1;
		if (out->len > 0)
			buf_putc(out, '.');
		for (unsigned k = 0; k < len; k++) {
			unsigned char c = p[i + k];
			if (isalnum(c) || c == '-' || c == '_')
				buf_putc(out, (char)c);
			else
				buf_printf(out, "\\%03u", c);
		}
		i += len;
	}
	*used = i;
	return buf_err(out) ? -1 : 0;
}

/* ---- answers ---- */

struct dns_answer *dns_answer_new(
    const char *name, enum dns_type type, enum dns_status status, const char *reason)
{
	struct dns_answer *a = xcalloc(1, sizeof *a);
	a->name = strip_dot(name);
	a->type = type;
	a->status = status;
	if (status != DNS_OK)
		a->reason = xstrdup(reason ? reason : dns_status_name(status));
	return a;
}

void dns_answer_free(struct dns_answer *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++) {
		if (a->mx)
			free(a->mx[i].host);
		if (a->txt)
			free(a->txt[i].data);
		if (a->names)
			free(a->names[i]);
	}
	free(a->mx);
	free(a->addrs);
	free(a->txt);
	free(a->names);
	free(a->name);
	free(a->canon);
	free(a->reason);
	free(a);
}

/* Make room for one more record of a's type; -1 at the limit. */
static int answer_grow(struct dns_answer *a)
{
	if (a->n >= DNS_MAX_RECORDS)
		return -1;
	size_t n = a->n + 1;
	switch (a->type) {
	case DNS_MX:
		a->mx = xreallocarray(a->mx, n, sizeof *a->mx);
		break;
	case DNS_A:
	case DNS_AAAA:
		a->addrs = xreallocarray(a->addrs, n, sizeof *a->addrs);
		break;
	case DNS_TXT:
		a->txt = xreallocarray(a->txt, n, sizeof *a->txt);
		break;
	case DNS_PTR:
		a->names = xreallocarray(a->names, n, sizeof *a->names);
		break;
	default:
		fatalx("dns: bad type %d", (int)a->type);
	}
	return 0;
}

static void answer_ok(struct dns_answer *a)
{
	a->status = DNS_OK;
	free(a->reason);
	a->reason = NULL;
}

int dns_answer_add_mx(struct dns_answer *a, unsigned pref, const char *host)
{
	if (a->type != DNS_MX || pref > 65535 || answer_grow(a) < 0)
		return -1;
	a->mx[a->n].pref = pref;
	a->mx[a->n].host = strip_dot(host);
	a->n++;
	answer_ok(a);
	return 0;
}

int dns_answer_add_txt(struct dns_answer *a, const char *data, size_t len)
{
	if (a->type != DNS_TXT || answer_grow(a) < 0)
		return -1;
	a->txt[a->n].len = len;
	a->txt[a->n].data = xcalloc(1, len + 1);
	memcpy(a->txt[a->n].data, data, len);
	a->n++;
	answer_ok(a);
	return 0;
}

int dns_answer_add_name(struct dns_answer *a, const char *name)
{
	if (a->type != DNS_PTR || answer_grow(a) < 0)
		return -1;
	a->names[a->n++] = strip_dot(name);
	answer_ok(a);
	return 0;
}

static void addr_set(struct dns_addr *d, int family, const void *bytes)
{
	memset(d, 0, sizeof *d);
	d->family = family;
	if (family == AF_INET)
		memcpy(&d->u.v4, bytes, 4);
	else
		memcpy(&d->u.v6, bytes, 16);
	if (inet_ntop(family, bytes, d->text, sizeof d->text) == NULL)
		fatalx("dns: inet_ntop: %s", strerror(errno));
}

int dns_answer_add_addr(struct dns_answer *a, const char *ip)
{
	unsigned char b[16];
	int af;
	if (inet_pton(AF_INET, ip, b) == 1)
		af = AF_INET;
	else if (inet_pton(AF_INET6, ip, b) == 1)
		af = AF_INET6;
	else
		return -1;
	if ((a->type != DNS_A && a->type != DNS_AAAA) || answer_grow(a) < 0)
		return -1;
	addr_set(&a->addrs[a->n++], af, b);
	answer_ok(a);
	return 0;
}

/* Append one record's rdata (n bytes) to a; malformed records are dropped
 * (returns -1), as are records past DNS_MAX_RECORDS. */
static int add_rdata(struct dns_answer *a, const unsigned char *p, size_t n, struct buf *tmp)
{
	size_t used;
	switch (a->type) {
	case DNS_A:
	case DNS_AAAA: {
		size_t want = a->type == DNS_A ? 4 : 16;
		if (n != want || answer_grow(a) < 0)
			return -1;
		addr_set(&a->addrs[a->n++], a->type == DNS_A ? AF_INET : AF_INET6, p);
		return 0;
	}
	case DNS_MX:
		if (n < 3 || wire_name(p + 2, n - 2, &used, tmp) < 0 || used != n - 2 ||
		    answer_grow(a) < 0)
			return -1;
		a->mx[a->n].pref = (unsigned)p[0] << 8 | p[1];
		a->mx[a->n].host = xstrdup(buf_cstr(tmp));
		a->n++;
		return 0;
	case DNS_PTR:
		if (wire_name(p, n, &used, tmp) < 0 || used != n || answer_grow(a) < 0)
			return -1;
		a->names[a->n++] = xstrdup(buf_cstr(tmp));
		return 0;
	case DNS_TXT: {
		/* one or more <length><bytes> character-strings, concatenated */
		buf_reset(tmp);
		for (size_t i = 0; i < n;) {
			size_t len = p[i++];
			if (i + len > n)
				return -1;
			buf_append(tmp, p + i, len);
			i += len;
		}
		if (buf_err(tmp) || answer_grow(a) < 0)
			return -1;
		a->txt[a->n].len = tmp->len;
		a->txt[a->n].data = xcalloc(1, tmp->len + 1);
		memcpy(a->txt[a->n].data, buf_cstr(tmp), tmp->len);
		a->n++;
		return 0;
	}
	default:
		fatalx("dns: bad type %d", (int)a->type);
	}
}

static const char *rcode_name(int rcode)
{
	static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",
	    "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE"};
	if (rcode >= 0 && (size_t)rcode < sizeof names / sizeof names[0])
		return names[rcode];
	return "an unknown error code";
}

struct dns_answer *dns_answer_from_ub(
    const char *name, enum dns_type type, int err, const struct ub_result *res)
{
	struct dns_answer *a = dns_answer_new(name, type, DNS_TEMPFAIL, NULL);
	const char *tn = dns_type_name(type);
	free(a->reason);
	a->reason = NULL;
	if (err == UB_SYNTAX) {
		a->status = DNS_NXDOMAIN;
		a->reason = xprintf("%s is not a valid domain name", a->name);
		return a;
	}
	if (err != 0 || res == NULL) {
		a->reason = xprintf("resolver error looking up %s %s: %s", a->name, tn,
		    err != 0 ? ub_strerror(err) : "no result");
		return a;
	}
	a->ttl = res->ttl > 0 ? (unsigned)res->ttl : 0;
	if (res->canonname != NULL && !name_eq(res->canonname, a->name))
		a->canon = safe_copy(res->canonname);
	if (res->bogus) {
		a->reason = xprintf("DNSSEC validation failed for %s %s: %s", a->name, tn,
		    res->why_bogus ? res->why_bogus : "bogus");
		return a;
	}
	if (res->rcode == RCODE_NXDOMAIN || (res->rcode == 0 && res->nxdomain)) {
		a->status = DNS_NXDOMAIN;
		a->reason = xprintf("%s does not exist (NXDOMAIN)", a->canon ? a->canon : a->name);
		return a;
	}
	if (res->rcode != 0) {
		/* libunbound also reports SERVFAIL when it could not reach any
		 * server, so do not blame the server alone */
		a->reason = xprintf("%s for %s %s (the resolver failed or could not be reached)",
		    rcode_name(res->rcode), a->name, tn);
		return a;
	}
	if (!res->havedata || res->data == NULL || res->data[0] == NULL) {
		a->status = DNS_NODATA;
		a->reason = xprintf("%s has no %s record", a->name, tn);
		return a;
	}
	struct buf tmp = BUF_INIT;
	buf_init(&tmp, 64 * 1024);
	size_t bad = 0;
	for (size_t i = 0; res->data[i] != NULL; i++)
		if (res->len[i] < 0 || add_rdata(a, (const unsigned char *)res->data[i],
		                           (size_t)res->len[i], &tmp) < 0)
			bad++;
	buf_free(&tmp);
	if (a->n == 0) {
		/* every record malformed: not a proof that there are none */
		a->reason = xprintf("malformed %s records for %s (%zu dropped)", tn, a->name, bad);
		return a;
	}
	a->status = DNS_OK;
	return a;
}

/* ---- MX ordering, null MX, address ordering ---- */

static uint32_t default_rand(uint32_t bound, void *arg)
{
	(void)arg;
	return arc4random_uniform(bound);
}

void dns_mx_sort(struct dns_mx *mx, size_t n, dns_rand_fn rnd, void *arg)
{
	if (rnd == NULL)
		rnd = default_rand;
	/* shuffle everything, then a stable sort by preference: equal
	 * preferences end up in random order, each order equally likely */
	for (size_t i = n; i > 1; i--) {
		size_t j = rnd((uint32_t)i, arg) % i;
		struct dns_mx t = mx[i - 1];
		mx[i - 1] = mx[j];
		mx[j] = t;
	}
	for (size_t i = 1; i < n; i++) {
		struct dns_mx t = mx[i];
		size_t j = i;
		for (; j > 0 && mx[j - 1].pref > t.pref; j--)
			mx[j] = mx[j - 1];
		mx[j] = t;
	}
}

bool dns_mx_is_null(const struct dns_answer *mx)
{
	return mx != NULL && mx->type == DNS_MX && mx->status == DNS_OK && mx->n == 1 &&
	       mx->mx[0].pref == 0 && mx->mx[0].host[0] == '\0';
}

size_t dns_addrs_order(struct dns_addr *addrs, size_t n, enum dns_family f)
{
	struct dns_addr *v4 = xcalloc(n, sizeof *v4), *v6 = xcalloc(n, sizeof *v6);
	size_t n4 = 0, n6 = 0, k = 0;
	for (size_t i = 0; i < n; i++) {
		if (addrs[i].family == AF_INET && dns_family_wants(f, AF_INET))
			v4[n4++] = addrs[i];
		else if (addrs[i].family == AF_INET6 && dns_family_wants(f, AF_INET6))
			v6[n6++] = addrs[i];
	}
	switch (f) {
	case DNS_FAMILY_ANY:
		/* interleaved, IPv4 first: a peer that refuses our IPv6 (no
		 * reverse DNS) costs one attempt, not all of them */
		for (size_t i = 0; i < n4 || i < n6; i++) {
			if (i < n4)
				addrs[k++] = v4[i];
			if (i < n6)
				addrs[k++] = v6[i];
		}
		break;
	case DNS_FAMILY_IPV4:
	case DNS_FAMILY_PREFER_IPV4:
		for (size_t i = 0; i < n4; i++)
			addrs[k++] = v4[i];
		for (size_t i = 0; i < n6; i++)
			addrs[k++] = v6[i];
		break;
	case DNS_FAMILY_IPV6:
	case DNS_FAMILY_PREFER_IPV6:
		for (size_t i = 0; i < n6; i++)
			addrs[k++] = v6[i];
		for (size_t i = 0; i < n4; i++)
			addrs[k++] = v4[i];
		break;
	default:
		fatalx("dns: bad family %d", (int)f);
	}
	free(v4);
	free(v6);
	return k;
}

/* ---- targets: the pure assembly ---- */

void dns_targets_free(struct dns_targets *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nhosts; i++) {
		free(t->hosts[i].name);
		free(t->hosts[i].canon);
		free(t->hosts[i].reason);
		free(t->hosts[i].addrs);
	}
	free(t->hosts);
	free(t->domain);
	free(t->canon);
	free(t->reason);
	free(t);
}

static void host_init(struct dns_host *h, const char *name, unsigned pref, bool implicit)
{
	memset(h, 0, sizeof *h);
	h->name = xstrdup(name);
	h->pref = pref;
	h->implicit = implicit;
	h->status = DNS_NODATA;
}

struct dns_targets *dns_targets_begin(const char *domain, enum dns_family family,
    const struct dns_answer *mx, dns_rand_fn rnd, void *arg)
{
	struct dns_targets *t = xcalloc(1, sizeof *t);
	t->domain = strip_dot(domain);
	t->family = family;
	t->status = DNS_OK;
	if (mx->canon != NULL)
		t->canon = xstrdup(mx->canon);
	switch (mx->status) {
	case DNS_OK:
		if (mx->n > 0)
			break;
		/* an empty answer is no answer */
		__attribute__((fallthrough));
	case DNS_NODATA:
		/* RFC 5321 5.1: no MX records, the domain itself is the host */
		t->implicit = true;
		t->hosts = xcalloc(1, sizeof *t->hosts);
		host_init(&t->hosts[0], t->domain, 0, true);
		t->nhosts = 1;
		return t;
	case DNS_NULLMX:
	case DNS_NXDOMAIN:
	case DNS_TEMPFAIL:
		t->status = mx->status;
		t->reason = xprintf("%s", mx->reason ? mx->reason : dns_status_name(mx->status));
		return t;
	default:
		fatalx("dns: bad status %d", (int)mx->status);
	}
	if (dns_mx_is_null(mx)) {
		t->status = DNS_NULLMX;
		t->reason = xprintf("%s accepts no mail (null MX, RFC 7505)", t->domain);
		return t;
	}
	struct dns_mx *v = xcalloc(mx->n, sizeof *v);
	memcpy(v, mx->mx, mx->n * sizeof *v);
	dns_mx_sort(v, mx->n, rnd, arg);
	t->hosts = xcalloc(mx->n < DNS_MAX_MX_HOSTS ? mx->n : DNS_MAX_MX_HOSTS, sizeof *t->hosts);
	for (size_t i = 0; i < mx->n && t->nhosts < DNS_MAX_MX_HOSTS; i++) {
		bool dup = false;
		for (size_t k = 0; k < t->nhosts && !dup; k++)
			dup = name_eq(t->hosts[k].name, v[i].host);
		if (dup)
			continue; /* the same host again: its best preference counts */
		struct dns_host *h = &t->hosts[t->nhosts++];
		host_init(h, v[i].host, v[i].pref, false);
		if (h->name[0] == '\0')
			h->reason = xprintf("the MX target is \".\" (a null MX among other MX "
			                    "records, ignored)");
	}
	free(v); /* the host strings belong to mx */
	return t;
}

bool dns_targets_needs_lookup(const struct dns_targets *t, size_t host)
{
	return t->status == DNS_OK && host < t->nhosts && t->hosts[host].name[0] != '\0';
}

/* How much an address lookup result says: an address beats a temporary
 * failure (which might have hidden one), which beats "no such record". */
static int status_rank(enum dns_status s)
{
	switch (s) {
	case DNS_OK:
		return 3;
	case DNS_TEMPFAIL:
		return 2;
	case DNS_NODATA:
		return 1;
	case DNS_NXDOMAIN:
	case DNS_NULLMX:
		return 0;
	default:
		fatalx("dns: bad status %d", (int)s);
	}
}

void dns_targets_add(struct dns_targets *t, size_t host, const struct dns_answer *a)
{
	if (host >= t->nhosts)
		fatalx("dns: targets host %zu of %zu", host, t->nhosts);
	struct dns_host *h = &t->hosts[host];
	if (h->lookups++ == 0 || status_rank(a->status) > status_rank(h->status)) {
		h->status = a->status;
		free(h->reason);
		h->reason = a->reason ? xstrdup(a->reason) : NULL;
	}
	if (a->canon != NULL && h->canon == NULL)
		h->canon = xstrdup(a->canon);
	if (a->status != DNS_OK || (a->type != DNS_A && a->type != DNS_AAAA))
		return;
	size_t take = a->n < DNS_MAX_HOST_ADDRS ? a->n : DNS_MAX_HOST_ADDRS;
	h->addrs = xreallocarray(h->addrs, h->naddrs + take, sizeof *h->addrs);
	memcpy(h->addrs + h->naddrs, a->addrs, take * sizeof *h->addrs);
	h->naddrs += take;
}

/* The reason a host without addresses is skipped, from its merged status. */
static void host_settle(struct dns_targets *t, struct dns_host *h)
{
	const char *rr = family_rrtypes(t->family);
	h->naddrs = dns_addrs_order(h->addrs, h->naddrs, t->family);
	if (h->naddrs > 0) {
		h->status = DNS_OK;
		free(h->reason);
		h->reason = NULL;
		return;
	}
	char *why = NULL;
	if (h->name[0] == '\0') {
		return; /* the root: status and reason set by begin */
	} else if (h->lookups == 0) {
		h->status = DNS_TEMPFAIL;
		why = xprintf("the addresses of %s were not looked up", h->name);
	} else if (h->status == DNS_OK) {
		/* it had addresses, all of a family the policy excludes */
		h->status = DNS_NODATA;
		why = xprintf("%s has no %s record (delivery.family = %s)", h->name, rr,
		    dns_family_name(t->family));
	} else if (h->status == DNS_NODATA) {
		why = xprintf("%s has no %s record", h->name, rr);
	} else if (h->status == DNS_NXDOMAIN) {
		why = xprintf("%s does not exist (NXDOMAIN)", h->name);
	} else {
		why = xprintf("%s", h->reason ? h->reason : "temporary DNS failure");
	}
	free(h->reason);
	h->reason = why;
}

void dns_targets_finish(struct dns_targets *t)
{
	if (t->status != DNS_OK)
		return;
	size_t ok = 0;
	struct dns_host *temp = NULL;
	for (size_t i = 0; i < t->nhosts; i++) {
		struct dns_host *h = &t->hosts[i];
		host_settle(t, h);
		if (h->status == DNS_OK)
			ok++;
		else if (h->status == DNS_TEMPFAIL && temp == NULL)
			temp = h;
	}
	if (ok > 0)
		return;
	struct buf b = BUF_INIT;
	if (temp != NULL) {
		t->status = DNS_TEMPFAIL;
		buf_printf(&b, "no %s of %s has an address yet: %s",
		    t->implicit ? "address record" : "MX host", t->domain, temp->reason);
	} else if (t->implicit) {
		t->status = DNS_NODATA;
		buf_printf(&b, "%s has no MX record and no %s record", t->domain,
		    family_rrtypes(t->family));
	} else {
		t->status = DNS_NODATA;
		buf_printf(&b, "no MX host of %s has an address", t->domain);
		for (size_t i = 0; i < t->nhosts && i < 4; i++)
			buf_printf(&b, "%s%s", i == 0 ? " (" : "; ", t->hosts[i].reason);
		buf_puts(&b, t->nhosts > 4 ? "; ...)" : ")");
	}
	if (buf_err(&b))
		fatalx("dns: out of memory");
	free(t->reason);
	t->reason = buf_steal(&b);
}

/* ---- the resolver ---- */

struct dns_req;
LIST_HEAD(req_list, dns_req);

struct dns_resolver {
	struct event_base *base;
	struct ub_ctx *ctx;
	struct event *ev; /* ub_fd readable: answers are waiting */
	unsigned timeout_ms;
	struct req_list queries;    /* simple queries, sub-queries included */
	struct req_list composites; /* targets queries */
};

/* A sub-query of a composite: which host its answer belongs to. */
struct sub {
	struct dns_req *parent;
	struct dns_req *q; /* NULL once answered */
	size_t host;
};

struct dns_req {
	LIST_ENTRY(dns_req) link;
	struct dns_resolver *r;
	bool composite;
	char *name;
	/* simple */
	enum dns_type type;
	int ub_id;
	bool ub_pending;
	struct event *timer;
	struct dns_answer *ready; /* completed before reaching libunbound */
	dns_answer_cb cb;
	void *arg;
	/* composite */
	enum dns_family family;
	struct dns_targets *t;
	dns_targets_cb tcb;
	struct dns_req *mxq; /* the MX query while pending */
	struct sub *subs;
	size_t nsubs, pending;
};

static void on_ub_readable(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	int rc = ub_process(r->ctx);
	if (rc != 0) {
		/* the pipe from libunbound's thread is broken: stop watching it
		 * (it would stay readable), let pending and new queries time out
		 * as temporary failures */
		log_err(
		    "-", "dns: ub_process failed: %s; DNS queries will time out", ub_strerror(rc));
		event_del(r->ev);
	}
}

/* Apply one libunbound option; 0, or -1 with err set. */
static int set_option(struct ub_ctx *ctx, const char *opt, const char *val, struct buf *err)
{
	int rc = ub_ctx_set_option(ctx, opt, val);
	if (rc != 0) {
		buf_printf(err, "libunbound option %s %s: %s", opt, val, ub_strerror(rc));
		return -1;
	}
	return 0;
}

struct dns_resolver *dns_resolver_new(
    struct event_base *base, const struct dns_options *opt, struct buf *err)
{
	const char *fwd[RESOLVER_MAX_FWD];
	char *copy = NULL;
	bool system = false;
	int nfwd = dns_parse_resolver(opt->resolver, &copy, fwd, RESOLVER_MAX_FWD, &system);
	if (nfwd < 0) {
		buf_printf(err,
		    "resolver \"%s\" is not \"system\" or forwarders \"IP\" / \"IP@PORT\" (at most "
		    "%d, separated by commas or spaces)",
		    opt->resolver ? opt->resolver : "", RESOLVER_MAX_FWD);
		return NULL;
	}
	struct ub_ctx *ctx = ub_ctx_create();
	if (ctx == NULL) {
		free(copy);
		buf_puts(err, "cannot create a libunbound context");
		return NULL;
	}
	int rc;
	/* answers come back through ub_fd to the loop; resolution runs in a
	 * libunbound thread (the default would fork a process) */
	if ((rc = ub_ctx_async(ctx, 1)) != 0) {
		buf_printf(err, "libunbound threads: %s", ub_strerror(rc));
		goto fail;
	}
	/* libunbound's own messages would go to stderr unformatted; we report
	 * every failure in the answers instead */
	ub_ctx_debugout(ctx, NULL);
	/* forwarders on loopback (a local unbound, systemd-resolved, tests);
	 * keep probing a forwarder that was down so that it is used again as
	 * soon as it is back; no DNSSEC validation yet (see dns.h) */
	if (set_option(ctx, "do-not-query-localhost:", "no", err) < 0 ||
	    set_option(ctx, "infra-keep-probing:", "yes", err) < 0 ||
	    set_option(ctx, "infra-host-ttl:", "60", err) < 0 ||
	    set_option(ctx, "module-config:", "iterator", err) < 0)
		goto fail;
	/* unbound answers the special-use name "test." (RFC 6761) itself with
	 * NXDOMAIN; ask the resolver instead, where our test zones live (in
	 * production the answer stays NXDOMAIN, from the real DNS) */
	if (set_option(ctx, "local-zone:", "test. transparent", err) < 0)
		goto fail;
	if (system) {
		if ((rc = ub_ctx_resolvconf(ctx, NULL)) != 0) {
			buf_printf(err, "cannot use /etc/resolv.conf: %s%s%s", ub_strerror(rc),
			    rc == UB_READFILE ? ": " : "",
			    rc == UB_READFILE ? strerror(errno) : "");
			goto fail;
		}
	} else {
		for (int i = 0; i < nfwd; i++)
			if ((rc = ub_ctx_set_fwd(ctx, fwd[i])) != 0) {
				buf_printf(err, "resolver %s: %s", fwd[i], ub_strerror(rc));
				goto fail;
			}
	}
	free(copy);
	copy = NULL;

	struct dns_resolver *r = xcalloc(1, sizeof *r);
	r->base = base;
	r->ctx = ctx;
	r->timeout_ms = opt->timeout_ms ? opt->timeout_ms : DNS_TIMEOUT_MS_DEFAULT;
	LIST_INIT(&r->queries);
	LIST_INIT(&r->composites);
	r->ev = event_new(base, ub_fd(ctx), EV_READ | EV_PERSIST, on_ub_readable, r);
	if (r->ev == NULL || event_add(r->ev, NULL) != 0) {
		buf_puts(err, "cannot watch the libunbound descriptor");
		if (r->ev)
			event_free(r->ev);
		free(r);
		goto fail;
	}
	return r;
fail:
	free(copy);
	ub_ctx_delete(ctx);
	return NULL;
}

static void req_destroy(struct dns_req *q)
{
	LIST_REMOVE(q, link);
	if (q->timer != NULL)
		event_free(q->timer);
	dns_answer_free(q->ready);
	free(q->subs);
	free(q->name);
	free(q);
}

/* Hand a simple query's answer to its owner; q is gone afterwards. */
static void req_complete(struct dns_req *q, struct dns_answer *a)
{
	dns_answer_cb cb = q->cb;
	void *arg = q->arg;
	req_destroy(q);
	cb(a, arg);
}

static void on_ub_answer(void *arg, int err, struct ub_result *res)
{
	struct dns_req *q = arg;
	q->ub_pending = false;
	struct dns_answer *a = dns_answer_from_ub(q->name, q->type, err, res);
	if (res != NULL)
		ub_resolve_free(res);
	req_complete(q, a);
}

static void on_req_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns_req *q = arg;
	struct dns_answer *a = q->ready;
	q->ready = NULL;
	if (a == NULL) {
		/* libunbound has not answered in time: it must not answer later */
		if (q->ub_pending)
			ub_cancel(q->r->ctx, q->ub_id);
		q->ub_pending = false;
		a = dns_answer_new(q->name, q->type, DNS_TEMPFAIL, NULL);
		free(a->reason);
		a->reason = xprintf("no answer for %s %s within %u ms (timeout)", a->name,
		    dns_type_name(q->type), q->r->timeout_ms);
	}
	req_complete(q, a);
}

struct dns_req *dns_query(
    struct dns_resolver *r, const char *name, enum dns_type type, dns_answer_cb cb, void *arg)
{
	(void)dns_type_name(type); /* aborts on a type we do not know */
	struct dns_req *q = xcalloc(1, sizeof *q);
	q->r = r;
	q->name = strip_dot(name ? name : "");
	q->type = type;
	q->cb = cb;
	q->arg = arg;
	q->timer = evtimer_new(r->base, on_req_timer, q);
	if (q->timer == NULL)
		fatalx("dns: evtimer_new failed");
	LIST_INSERT_HEAD(&r->queries, q, link);

	struct timeval tv = {0, 0};
	if (!dns_valid_name(q->name)) {
		q->ready = dns_answer_new(q->name, type, DNS_NXDOMAIN, NULL);
		free(q->ready->reason);
		q->ready->reason = xprintf("\"%s\" is not a valid domain name", log_str(q->name));
	} else {
		int rc = ub_resolve_async(
		    r->ctx, q->name, (int)type, 1 /* IN */, q, on_ub_answer, &q->ub_id);
		if (rc != 0) {
			q->ready = dns_answer_from_ub(q->name, type, rc, NULL);
		} else {
			q->ub_pending = true;
			tv.tv_sec = r->timeout_ms / 1000;
			tv.tv_usec = (r->timeout_ms % 1000) * 1000;
		}
	}
	if (evtimer_add(q->timer, &tv) != 0)
		fatalx("dns: evtimer_add failed");
	return q;
}

static void composite_complete(struct dns_req *tq)
{
	struct dns_targets *t = tq->t;
	dns_targets_cb cb = tq->tcb;
	void *arg = tq->arg;
	tq->t = NULL;
	dns_targets_finish(t);
	req_destroy(tq);
	cb(t, arg);
}

static void on_targets_addr(struct dns_answer *a, void *arg)
{
	struct sub *s = arg;
	struct dns_req *tq = s->parent;
	s->q = NULL;
	dns_targets_add(tq->t, s->host, a);
	dns_answer_free(a);
	if (--tq->pending == 0)
		composite_complete(tq);
}

static void on_targets_mx(struct dns_answer *a, void *arg)
{
	struct dns_req *tq = arg;
	tq->mxq = NULL;
	tq->t = dns_targets_begin(tq->name, tq->family, a, NULL, NULL);
	dns_answer_free(a);
	static const struct {
		int af;
		enum dns_type type;
	} fams[] = {{AF_INET, DNS_A}, {AF_INET6, DNS_AAAA}};
	size_t n = 0;
	for (size_t i = 0; i < tq->t->nhosts; i++)
		for (size_t f = 0; f < 2; f++)
			if (dns_targets_needs_lookup(tq->t, i) &&
			    dns_family_wants(tq->family, fams[f].af))
				n++;
	if (n == 0) {
		composite_complete(tq);
		return;
	}
	tq->subs = xcalloc(n, sizeof *tq->subs);
	tq->nsubs = n;
	tq->pending = n;
	size_t k = 0;
	for (size_t i = 0; i < tq->t->nhosts; i++)
		for (size_t f = 0; f < 2; f++)
			if (dns_targets_needs_lookup(tq->t, i) &&
			    dns_family_wants(tq->family, fams[f].af)) {
				struct sub *s = &tq->subs[k++];
				s->parent = tq;
				s->host = i;
				s->q = dns_query(
				    tq->r, tq->t->hosts[i].name, fams[f].type, on_targets_addr, s);
			}
}

struct dns_req *dns_targets(struct dns_resolver *r, const char *domain, enum dns_family family,
    dns_targets_cb cb, void *arg)
{
	(void)dns_family_name(family); /* aborts on a policy we do not know */
	struct dns_req *tq = xcalloc(1, sizeof *tq);
	tq->r = r;
	tq->composite = true;
	tq->name = strip_dot(domain ? domain : "");
	tq->family = family;
	tq->tcb = cb;
	tq->arg = arg;
	LIST_INSERT_HEAD(&r->composites, tq, link);
	tq->mxq = dns_query(r, tq->name, DNS_MX, on_targets_mx, tq);
	return tq;
}

void dns_cancel(struct dns_req *q)
{
	if (q == NULL)
		return;
	if (q->composite) {
		if (q->mxq != NULL)
			dns_cancel(q->mxq);
		for (size_t i = 0; i < q->nsubs; i++)
			if (q->subs[i].q != NULL)
				dns_cancel(q->subs[i].q);
		dns_targets_free(q->t);
	} else if (q->ub_pending) {
		ub_cancel(q->r->ctx, q->ub_id);
	}
	req_destroy(q);
}

void dns_resolver_free(struct dns_resolver *r)
{
	if (r == NULL)
		return;
	while (!LIST_EMPTY(&r->composites))
		dns_cancel(LIST_FIRST(&r->composites));
	while (!LIST_EMPTY(&r->queries))
		dns_cancel(LIST_FIRST(&r->queries));
	event_free(r->ev);
	ub_ctx_delete(r->ctx);
	free(r);
}

/* ---- blocking variants: the asynchronous code on a private loop ---- */

struct sync_state {
	bool done;
	struct dns_answer *a;
	struct dns_targets *t;
};

static void on_sync_answer(struct dns_answer *a, void *arg)
{
	struct sync_state *st = arg;
	st->a = a;
	st->done = true;
}

static void on_sync_targets(struct dns_targets *t, void *arg)
{
	struct sync_state *st = arg;
	st->t = t;
	st->done = true;
}

static struct dns_resolver *sync_begin(
    const struct dns_options *opt, struct event_base **base, struct buf *err)
{
	*base = event_base_new();
	if (*base == NULL) {
		buf_puts(err, "cannot create an event loop");
		return NULL;
	}
	struct dns_resolver *r = dns_resolver_new(*base, opt, err);
	if (r == NULL) {
		event_base_free(*base);
		*base = NULL;
	}
	return r;
}

static void sync_run(struct dns_resolver *r, struct event_base *base, struct sync_state *st)
{
	while (!st->done)
		if (event_base_loop(base, EVLOOP_ONCE) < 0)
			fatalx("dns: event_base_loop failed");
	dns_resolver_free(r);
	event_base_free(base);
}

struct dns_answer *dns_query_sync(
    const struct dns_options *opt, const char *name, enum dns_type type, struct buf *err)
{
	struct event_base *base;
	struct dns_resolver *r = sync_begin(opt, &base, err);
	if (r == NULL)
		return NULL;
	struct sync_state st = {false, NULL, NULL};
	dns_query(r, name, type, on_sync_answer, &st);
	sync_run(r, base, &st);
	return st.a;
}

struct dns_targets *dns_targets_sync(
    const struct dns_options *opt, const char *domain, enum dns_family family, struct buf *err)
{
	struct event_base *base;
	struct dns_resolver *r = sync_begin(opt, &base, err);
	if (r == NULL)
		return NULL;
	struct sync_state st = {false, NULL, NULL};
	dns_targets(r, domain, family, on_sync_targets, &st);
	sync_run(r, base, &st);
	return st.t;
}
