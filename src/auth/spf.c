/*
 * spf.c - RFC 7208 check_host() (see spf.h).
 *
 * The evaluator replays: spf_eval_step() runs check_host() from the start
 * every time, with every DNS answer received so far in a cache; the first
 * lookup that is not in the cache stops the run (SPF_STEP_NEED_DNS), and
 * the next step, with that answer added, runs again. A run is cheap (a few
 * records, at most ~120 lookups in all) and deterministic, so the code can
 * be the plain recursive algorithm of the RFC, with its limits counted the
 * same way in every run, instead of a hand-made continuation per mechanism.
 */
#include "auth/spf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/util.h"

#define SPF_MAX_LOOKUPS 400 /* distinct lookups kept in one evaluation's cache */

const char *spf_result_name(enum spf_result r)
{
	switch (r) {
	case SPF_NONE:
		return "none";
	case SPF_NEUTRAL:
		return "neutral";
	case SPF_PASS:
		return "pass";
	case SPF_FAIL:
		return "fail";
	case SPF_SOFTFAIL:
		return "softfail";
	case SPF_TEMPERROR:
		return "temperror";
	case SPF_PERMERROR:
		return "permerror";
	default:
		abort();
	}
}

/* ---------------------------------------------------------------- records */

bool spf_is_record(const char *txt, size_t len)
{
	return len >= 6 && strncasecmp(txt, "v=spf1", 6) == 0 && (len == 6 || txt[6] == ' ');
}

static bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}
static bool is_alnum(int c)
{
	return is_alpha(c) || is_digit(c);
}

/* c is one of the bytes of set (strchr would also match the NUL) */
static bool one_of(const char *set, int c)
{
	return c != '\0' && strchr(set, c) != NULL;
}

/* macro-string syntax (RFC 7208 7.1); exp allows the c, r, t letters */
static bool macro_string_ok(const char *s, size_t n, bool exp)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c != '%') {
			if (c < 0x21 || c > 0x7e)
				if (!(exp && c == ' '))
					return false;
			continue;
		}
		if (i + 1 >= n)
			return false;
		char x = s[++i];
		if (x == '%' || x == '_' || x == '-')
			continue;
		if (x != '{' || i + 1 >= n)
			return false;
		char l = (char)tolower((unsigned char)s[++i]);
		if (!one_of("slodiphv", l) && !(exp && one_of("crt", l)))
			return false;
		i++;
		while (i < n && is_digit((unsigned char)s[i]))
			i++;
		if (i < n && (s[i] == 'r' || s[i] == 'R'))
			i++;
		while (i < n && one_of(".-+,/_=", s[i]))
			i++;
		if (i >= n || s[i] != '}')
			return false;
	}
	return true;
}

/* toplabel (RFC 7208 12): alphanumeric with at least one letter, or
 * alphanumeric with inner hyphens */
static bool toplabel_ok(const char *s, size_t n)
{
	if (n == 0 || !is_alnum((unsigned char)s[0]) || !is_alnum((unsigned char)s[n - 1]))
		return false;
	bool alpha = false, hyphen = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '-')
			hyphen = true;
		else if (is_alpha(c))
			alpha = true;
		else if (!is_digit(c))
			return false;
	}
	return alpha || hyphen;
}

/* domain-spec = macro-string domain-end; domain-end = "." toplabel ["."] /
 * macro-expand */
static bool domain_spec_ok(const char *s, size_t n)
{
	if (n == 0 || !macro_string_ok(s, n, false))
		return false;
	if (s[n - 1] == '}')
		return true; /* ends with a macro-expand (checked above) */
	size_t end = n;
	if (s[end - 1] == '.')
		end--;
	size_t dot = end;
	while (dot > 0 && s[dot - 1] != '.')
		dot--;
	if (dot == 0)
		return false; /* needs "." toplabel */
	/* "%-" or "%_" can end a domain-spec only as a macro-expand: they are
	 * not "}" so what follows the last dot must be a toplabel */
	return toplabel_ok(s + dot, end - dot);
}

/* "/" cidr: 0..max without leading zeros. *p at the slash. */
static bool parse_cidr(const char **p, const char *end, int max, int *out)
{
	const char *s = *p + 1;
	if (s >= end || !is_digit((unsigned char)*s))
		return false;
	if (*s == '0' && s + 1 < end && is_digit((unsigned char)s[1]))
		return false;
	int v = 0;
	while (s < end && is_digit((unsigned char)*s)) {
		v = v * 10 + (*s - '0');
		if (v > max)
			return false;
		s++;
	}
	*out = v;
	*p = s;
	return true;
}

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d == NULL)
		abort();
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static const struct {
	const char *name;
	enum spf_mech mech;
} mechs[] = {
    {"all", SPF_ALL},
    {"include", SPF_INCLUDE},
    {"a", SPF_A},
    {"mx", SPF_MX},
    {"ptr", SPF_PTR},
    {"ip4", SPF_IP4},
    {"ip6", SPF_IP6},
    {"exists", SPF_EXISTS},
};

/* One mechanism term t[0..n) (qualifier already taken). */
static int parse_mech(const char *t, size_t n, struct spf_term *m, struct buf *why)
{
	size_t k = 0;
	while (k < n && (is_alnum((unsigned char)t[k])))
		k++;
	size_t mi;
	for (mi = 0; mi < sizeof mechs / sizeof mechs[0]; mi++)
		if (strlen(mechs[mi].name) == k && strncasecmp(t, mechs[mi].name, k) == 0)
			break;
	if (mi == sizeof mechs / sizeof mechs[0]) {
		buf_printf(why, "unknown mechanism \"%.*s\"", (int)(n > 40 ? 40 : n), t);
		return -1;
	}
	m->mech = mechs[mi].mech;
	m->cidr4 = m->cidr6 = -1;
	const char *p = t + k, *end = t + n;
	switch (m->mech) {
	case SPF_ALL:
		if (p != end)
			goto bad;
		return 0;
	case SPF_INCLUDE:
	case SPF_EXISTS:
		if (p == end || *p != ':' || !domain_spec_ok(p + 1, (size_t)(end - p - 1)))
			goto bad;
		m->spec = dupn(p + 1, (size_t)(end - p - 1));
		return 0;
	case SPF_PTR:
		if (p == end)
			return 0;
		if (*p != ':' || !domain_spec_ok(p + 1, (size_t)(end - p - 1)))
			goto bad;
		m->spec = dupn(p + 1, (size_t)(end - p - 1));
		return 0;
	case SPF_A:
	case SPF_MX: {
		/* [":" domain-spec] [dual-cidr-length]: the cidr part is a suffix
		 * "/N", "//N" or "/N//N" ("/" may also appear in the domain-spec,
		 * as a macro delimiter or a literal) */
		const char *cidr = end;
		for (int round = 0; round < 2; round++) {
			const char *q = cidr;
			while (q > p && is_digit((unsigned char)q[-1]))
				q--;
			if (q == cidr || q == p || q[-1] != '/')
				break;
			q--;
			bool v6 = q > p && q[-1] == '/';
			if (v6 && round == 0) {
				cidr = q - 1; /* "//N": then maybe "/N" before it */
				continue;
			}
			if (!v6)
				cidr = q;
			break;
		}
		if (p < cidr) {
			if (*p != ':' || !domain_spec_ok(p + 1, (size_t)(cidr - p - 1)))
				goto bad;
			m->spec = dupn(p + 1, (size_t)(cidr - p - 1));
		}
		const char *c = cidr;
		if (c < end && c[0] == '/' && c + 1 < end && c[1] != '/') {
			if (!parse_cidr(&c, end, 32, &m->cidr4))
				goto bad;
		}
		if (c < end) {
			if (c + 1 >= end || c[0] != '/' || c[1] != '/')
				goto bad;
			c++;
			if (!parse_cidr(&c, end, 128, &m->cidr6))
				goto bad;
		}
		if (c != end)
			goto bad;
		return 0;
	}
	case SPF_IP4:
	case SPF_IP6: {
		if (p == end || *p != ':')
			goto bad;
		p++;
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *aend = slash ? slash : end;
		char a[64];
		if ((size_t)(aend - p) >= sizeof a || aend == p)
			goto bad;
		memcpy(a, p, (size_t)(aend - p));
		a[aend - p] = '\0';
		if (m->mech == SPF_IP4 ? inet_pton(AF_INET, a, &m->ip4) != 1
		                       : inet_pton(AF_INET6, a, &m->ip6) != 1)
			goto bad;
		if (slash) {
			const char *c = slash;
			int *v = m->mech == SPF_IP4 ? &m->cidr4 : &m->cidr6;
			if (!parse_cidr(&c, end, m->mech == SPF_IP4 ? 32 : 128, v) || c != end)
				goto bad;
		}
		return 0;
	}
	default:
		abort();
	}
bad:
	buf_printf(why, "invalid mechanism \"%.*s\"", (int)(n > 60 ? 60 : n), t);
	free(m->spec);
	m->spec = NULL;
	return -1;
}

int spf_record_parse(const char *txt, size_t len, struct spf_record *r, struct buf *why)
{
	memset(r, 0, sizeof *r);
	if (len > SPF_RECORD_MAX) {
		buf_puts(why, "record too long");
		return -1;
	}
	if (!spf_is_record(txt, len)) {
		buf_puts(why, "not an SPF record");
		return -1;
	}
	if (memchr(txt, '\0', len) != NULL) {
		buf_puts(why, "NUL in the record");
		return -1;
	}
	size_t i = 6;
	while (i < len) {
		while (i < len && txt[i] == ' ')
			i++;
		if (i >= len)
			break;
		size_t s = i;
		while (i < len && txt[i] != ' ')
			i++;
		const char *t = txt + s;
		size_t n = i - s;
		/* a modifier: name "=" ...; name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) */
		size_t k = 0;
		if (is_alpha((unsigned char)t[0])) {
			k = 1;
			while (k < n && (is_alnum((unsigned char)t[k]) || t[k] == '-' ||
			                    t[k] == '_' || t[k] == '.'))
				k++;
		}
		if (k > 0 && k < n && t[k] == '=') {
			const char *v = t + k + 1;
			size_t vn = n - k - 1;
			bool is_redirect = k == 8 && strncasecmp(t, "redirect", 8) == 0;
			bool is_exp = k == 3 && strncasecmp(t, "exp", 3) == 0;
			if (is_redirect || is_exp) {
				char **slot = is_redirect ? &r->redirect : &r->exp;
				if (*slot != NULL) {
					buf_printf(why, "more than one %s= modifier",
					    is_redirect ? "redirect" : "exp");
					goto fail;
				}
				if (!domain_spec_ok(v, vn)) {
					buf_printf(why, "invalid %s= domain",
					    is_redirect ? "redirect" : "exp");
					goto fail;
				}
				*slot = dupn(v, vn);
			} else if (!macro_string_ok(v, vn, false)) {
				buf_printf(
				    why, "invalid modifier \"%.*s\"", (int)(n > 60 ? 60 : n), t);
				goto fail;
			}
			continue;
		}
		/* a directive: [qualifier] mechanism */
		struct spf_term m;
		memset(&m, 0, sizeof m);
		m.qualifier = SPF_PASS;
		switch (t[0]) {
		case '+':
			m.qualifier = SPF_PASS;
			break;
		case '-':
			m.qualifier = SPF_FAIL;
			break;
		case '~':
			m.qualifier = SPF_SOFTFAIL;
			break;
		case '?':
			m.qualifier = SPF_NEUTRAL;
			break;
		default:
			break;
		}
		if (one_of("+-~?", t[0])) {
			t++;
			n--;
		}
		if (n == 0 || r->n >= SPF_MAX_TERMS) {
			buf_puts(
			    why, n == 0 ? "a qualifier without a mechanism" : "too many terms");
			goto fail;
		}
		if (parse_mech(t, n, &m, why) < 0)
			goto fail;
		struct spf_term *nt = realloc(r->terms, (r->n + 1) * sizeof *nt);
		if (nt == NULL)
			abort();
		r->terms = nt;
		r->terms[r->n++] = m;
	}
	return 0;
fail:
	spf_record_free(r);
	return -1;
}

void spf_record_free(struct spf_record *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->terms[i].spec);
	free(r->terms);
	free(r->redirect);
	free(r->exp);
	memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- macros */

bool spf_macro_needs_ptr(const char *spec)
{
	for (const char *p = spec; p && (p = strstr(p, "%{")) != NULL; p += 2)
		if (p[2] == 'p' || p[2] == 'P')
			return true;
	return false;
}

/* The value of macro letter l (lower case) into v. */
static void macro_value(char l, const struct spf_macro_ctx *m, struct buf *v)
{
	const char *at = m->sender ? strrchr(m->sender, '@') : NULL;
	switch (l) {
	case 's':
		buf_puts(v, m->sender ? m->sender : "");
		break;
	case 'l':
		if (at)
			buf_append(v, m->sender, (size_t)(at - m->sender));
		else
			buf_puts(v, "postmaster");
		break;
	case 'o':
		buf_puts(v, at ? at + 1 : (m->sender ? m->sender : ""));
		break;
	case 'd':
		buf_puts(v, m->domain ? m->domain : "");
		break;
	case 'i':
		if (m->ipv6) {
			/* the nibbles keep the case the address was written in */
			bool up = m->ip_given && strpbrk(m->ip_given, "ABCDEF") != NULL;
			for (int b = 0; b < 16; b++)
				buf_printf(v, up ? "%s%X.%X" : "%s%x.%x", b ? "." : "",
				    m->ip6.s6_addr[b] >> 4, m->ip6.s6_addr[b] & 15);
		} else {
			buf_puts(v, m->ip);
		}
		break;
	case 'c':
		buf_puts(v, m->ip);
		break;
	case 'p':
		buf_puts(v, m->ptr ? m->ptr : "unknown");
		break;
	case 'h':
		buf_puts(v, m->helo ? m->helo : "");
		break;
	case 'v':
		buf_puts(v, m->ipv6 ? "ip6" : "in-addr");
		break;
	case 'r':
		buf_puts(v, m->receiver ? m->receiver : "unknown");
		break;
	case 't':
		buf_printf(v, "%lld", (long long)m->now);
		break;
	default:
		abort();
	}
}

/* Split v on the delimiters, keep the rightmost digits parts (0: all),
 * reversed first if rev; join with "." into out; URL-escape if upper. */
static void macro_transform(const struct buf *v, const char *delims, size_t ndelims,
    unsigned digits, bool rev, bool upper, struct buf *out)
{
	const char *parts[256];
	size_t lens[256], np = 0;
	const char *s = buf_cstr(v), *e = s + v->len, *start = s;
	char dl[8] = ".";
	size_t nd = 1;
	if (ndelims > 0) {
		nd = ndelims < sizeof dl ? ndelims : sizeof dl;
		memcpy(dl, delims, nd);
	}
	for (const char *p = s;; p++) {
		if (p == e || memchr(dl, *p, nd)) {
			if (np < sizeof parts / sizeof parts[0]) {
				parts[np] = start;
				lens[np++] = (size_t)(p - start);
			}
			if (p == e)
				break;
			start = p + 1;
		}
	}
	if (rev)
		for (size_t i = 0; i < np / 2; i++) {
			const char *tp = parts[i];
			size_t tl = lens[i];
			parts[i] = parts[np - 1 - i];
			lens[i] = lens[np - 1 - i];
			parts[np - 1 - i] = tp;
			lens[np - 1 - i] = tl;
		}
	size_t first = digits > 0 && digits < np ? np - digits : 0;
	for (size_t i = first; i < np; i++) {
		if (i > first)
			buf_putc(out, '.');
		for (size_t k = 0; k < lens[i]; k++) {
			unsigned char c = (unsigned char)parts[i][k];
			if (upper && !(is_alnum(c) || one_of("-._~", c)))
				buf_printf(out, "%%%02X", c);
			else
				buf_putc(out, (char)c);
		}
	}
}

int spf_macro_expand(const char *spec, size_t len, const struct spf_macro_ctx *m, bool exp,
    struct buf *out, struct buf *why)
{
	buf_reset(out);
	if (!macro_string_ok(spec, len, exp)) {
		buf_puts(why, "invalid macro");
		return -1;
	}
	struct buf v = BUF_INIT;
	buf_init(&v, 4096);
	for (size_t i = 0; i < len; i++) {
		char c = spec[i];
		if (c != '%') {
			buf_putc(out, c);
			continue;
		}
		char x = spec[++i];
		if (x == '%') {
			buf_putc(out, '%');
			continue;
		}
		if (x == '_') {
			buf_putc(out, ' ');
			continue;
		}
		if (x == '-') {
			buf_puts(out, "%20");
			continue;
		}
		/* "{" letter digits ["r"] delimiters "}" (checked) */
		char letter = spec[++i];
		bool upper = letter >= 'A' && letter <= 'Z';
		i++;
		unsigned digits = 0;
		bool has_digits = false;
		while (is_digit((unsigned char)spec[i])) {
			has_digits = true;
			if (digits < 1000)
				digits = digits * 10 + (unsigned)(spec[i] - '0');
			i++;
		}
		if (has_digits && digits == 0) {
			buf_free(&v);
			buf_puts(why, "macro transformer 0");
			return -1;
		}
		bool rev = false;
		if (spec[i] == 'r' || spec[i] == 'R') {
			rev = true;
			i++;
		}
		size_t ds = i;
		while (spec[i] != '}')
			i++;
		buf_reset(&v);
		macro_value((char)tolower((unsigned char)letter), m, &v);
		macro_transform(&v, spec + ds, i - ds, digits, rev, upper, out);
	}
	buf_free(&v);
	if (buf_err(out)) {
		buf_puts(why, "macro expansion too long");
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- evaluation */

struct cached {
	char *name;
	enum dns_type type;
	struct dns_answer *a; /* NULL: temporary failure */
};

struct spf_eval {
	/* the parameters */
	char *ip_text;  /* canonical */
	char *ip_given; /* as passed */
	bool ipv6;
	struct in_addr ip4;
	struct in6_addr ip6;
	char *helo;
	char *sender; /* <sender> as used: local@domain */
	char *domain; /* the initial domain */
	char *receiver;
	const char *identity;
	time_t now;
	/* answers so far */
	struct cached *cache;
	size_t ncache;
	/* the lookup wanted */
	char *qname;
	enum dns_type qtype;
	/* the outcome */
	bool done;
	enum spf_result result;
	struct buf reason;
	struct buf explanation;
	bool has_explanation;
	unsigned lookups;
};

/* One replay of check_host(). */
struct run {
	struct spf_eval *e;
	unsigned terms; /* terms that queried DNS (limit 10) */
	unsigned voids; /* void lookups (limit 2) */
	bool need;      /* a lookup is missing: e->qname/qtype say which */
	bool have_ptr;  /* %{p} computed */
	char ptr[SPF_NAME_MAX + 1];
};

#define RUN_NEED (-1) /* internal: stop this run, a lookup is missing */

static void set_reason(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static const struct dns_answer *cache_get(
    const struct spf_eval *e, const char *name, enum dns_type t, bool *found)
{
	for (size_t i = 0; i < e->ncache; i++)
		if (e->cache[i].type == t && strcasecmp(e->cache[i].name, name) == 0) {
			*found = true;
			return e->cache[i].a;
		}
	*found = false;
	return NULL;
}

/* Can name be asked about: 1-253 bytes, labels of 1-63, no control bytes?
 * (DNS names may hold any octet, and an expanded macro may bring spaces or
 * "%": the suite looks such names up; the resolver decides the rest.) */
static bool lookup_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > SPF_NAME_MAX)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (c < 0x20 || c == 0x7f || ++label > 63) {
			return false;
		}
	}
	return true;
}

/* The answer for name/type, or NULL with r->need set (the run must stop),
 * or NULL (found) for a temporary failure. Names that cannot be asked about
 * answer NXDOMAIN without a query. */
static const struct dns_answer *lookup(struct run *r, const char *name, enum dns_type t, bool *temp)
{
	static const struct dns_answer nx = {.status = DNS_NXDOMAIN};
	*temp = false;
	if (!lookup_name_ok(name))
		return &nx;
	bool found;
	const struct dns_answer *a = cache_get(r->e, name, t, &found);
	if (!found) {
		if (r->e->ncache >= SPF_MAX_LOOKUPS) {
			*temp = true;
			return NULL;
		}
		free(r->e->qname);
		r->e->qname = strdup(name);
		if (r->e->qname == NULL)
			abort();
		r->e->qtype = t;
		r->need = true;
		return NULL;
	}
	if (a == NULL || a->status == DNS_TEMPFAIL) {
		*temp = true;
		return NULL;
	}
	return a;
}

static bool void_answer(const struct dns_answer *a)
{
	return a->status == DNS_NXDOMAIN || a->status == DNS_NODATA || a->n == 0;
}

static bool addr_match(const struct spf_eval *e, const struct dns_addr *a, int c4, int c6)
{
	if (!e->ipv6) {
		if (a->family != AF_INET)
			return false;
		int bits = c4 < 0 ? 32 : c4;
		uint32_t mask = bits == 0 ? 0 : htonl(0xffffffffu << (32 - bits));
		return (a->u.v4.s_addr & mask) == (e->ip4.s_addr & mask);
	}
	if (a->family != AF_INET6)
		return false;
	int bits = c6 < 0 ? 128 : c6;
	for (int i = 0; i < 16 && bits > 0; i++, bits -= 8) {
		unsigned m = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
		if ((a->u.v6.s6_addr[i] & m) != (e->ip6.s6_addr[i] & m))
			return false;
	}
	return true;
}

/* An expanded name cut to SPF_NAME_MAX by dropping labels on the left (RFC
 * 7208 7.3); a trailing dot goes. */
static void name_fit(struct buf *b)
{
	if (b->len > 0 && b->data[b->len - 1] == '.')
		b->data[--b->len] = '\0';
	while (b->len > SPF_NAME_MAX) {
		char *dot = memchr(b->data, '.', b->len);
		if (dot == NULL)
			break;
		buf_consume(b, (size_t)(dot - b->data) + 1);
	}
}

/* The PTR names of the client into *pa (NULL when there are none or DNS
 * failed: both just mean no names, RFC 7208 5.5). 0, or RUN_NEED. */
static int client_ptr(struct run *r, const struct dns_answer **pa)
{
	*pa = NULL;
	struct buf rev = BUF_INIT;
	if (dns_reverse_name(r->e->ip_text, &rev) != 0) {
		buf_free(&rev);
		return 0;
	}
	bool temp;
	const struct dns_answer *a = lookup(r, buf_cstr(&rev), DNS_PTR, &temp);
	buf_free(&rev);
	if (r->need)
		return RUN_NEED;
	if (!temp && a != NULL && a->status == DNS_OK)
		*pa = a;
	return 0;
}

/* Does a forward lookup of n give the client's address (*ok)? DNS errors
 * just say no. 0, or RUN_NEED. */
static int name_validated(struct run *r, const char *n, bool *ok)
{
	struct spf_eval *e = r->e;
	bool temp;
	*ok = false;
	const struct dns_answer *aa = lookup(r, n, e->ipv6 ? DNS_AAAA : DNS_A, &temp);
	if (r->need)
		return RUN_NEED;
	for (size_t k = 0; aa && !temp && aa->status == DNS_OK && k < aa->n && !*ok; k++)
		*ok = addr_match(e, &aa->addrs[k], -1, -1);
	return 0;
}

/* %{p}: the validated name of the client (RFC 7208 5.5, 7.3): one under
 * domain if there is one, else the first validated one, else "unknown".
 * 0, or RUN_NEED. */
static int compute_ptr(struct run *r, const char *domain)
{
	if (r->have_ptr)
		return 0;
	snprintf(r->ptr, sizeof r->ptr, "unknown");
	const struct dns_answer *pa;
	if (client_ptr(r, &pa) == RUN_NEED)
		return RUN_NEED;
	const char *best = NULL;
	for (size_t i = 0; pa && i < pa->n && i < SPF_MAX_NAMES; i++) {
		const char *n = pa->names[i];
		bool ok;
		if (name_validated(r, n, &ok) == RUN_NEED)
			return RUN_NEED;
		if (!ok)
			continue;
		bool sub = util_domain_within(n, domain);
		if (best == NULL || sub)
			best = n;
		if (sub)
			break;
	}
	if (best)
		snprintf(r->ptr, sizeof r->ptr, "%s", best);
	r->have_ptr = true;
	return 0;
}

static void macro_ctx(struct run *r, const char *domain, struct spf_macro_ctx *m)
{
	struct spf_eval *e = r->e;
	*m = (struct spf_macro_ctx){
	    .sender = e->sender,
	    .domain = domain,
	    .ip = e->ip_text,
	    .ip_given = e->ip_given,
	    .ipv6 = e->ipv6,
	    .ip6 = e->ip6,
	    .helo = e->helo,
	    .receiver = e->receiver,
	    .ptr = r->have_ptr ? r->ptr : NULL,
	    .now = e->now,
	};
}

/* The target name of a term: spec expanded, or domain. 0, RUN_NEED, or
 * SPF_PERMERROR (a macro error). */
static int target_of(struct run *r, const char *spec, const char *domain, struct buf *out)
{
	buf_reset(out);
	if (spec == NULL) {
		buf_puts(out, domain);
		return 0;
	}
	if (spf_macro_needs_ptr(spec) && compute_ptr(r, domain) == RUN_NEED)
		return RUN_NEED;
	struct spf_macro_ctx m;
	macro_ctx(r, domain, &m);
	struct buf why = BUF_INIT;
	int rc = spf_macro_expand(spec, strlen(spec), &m, false, out, &why);
	if (rc < 0)
		set_reason(r, "%s in %s", buf_cstr(&why), domain);
	buf_free(&why);
	if (rc < 0)
		return SPF_PERMERROR;
	name_fit(out);
	return 0;
}

static int check_host(struct run *r, const char *domain, unsigned depth, bool want_exp);

static void set_reason(struct run *r, const char *fmt, ...)
{
	struct buf *b = &r->e->reason;
	buf_reset(b);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
	/* names from DNS and expanded macros: printable ASCII only, for logs
	 * and terminals */
	for (size_t i = 0; i < b->len; i++)
		if ((unsigned char)b->data[i] < 0x20 || (unsigned char)b->data[i] >= 0x7f)
			b->data[i] = '?';
}

/* One more term that queries DNS: false (permerror) past the limit. */
static bool count_term(struct run *r, const char *domain)
{
	if (++r->terms > SPF_MAX_DNS_TERMS) {
		set_reason(r, "more than %d DNS lookups (at %s)", SPF_MAX_DNS_TERMS, domain);
		return false;
	}
	return true;
}

/* A void answer: false (permerror) past the limit. */
static bool count_void(struct run *r, const char *name)
{
	if (++r->voids > SPF_MAX_VOID) {
		set_reason(r, "more than %d void lookups (at %s)", SPF_MAX_VOID, name);
		return false;
	}
	return true;
}

/* ptr:target (RFC 7208 5.5): a validated name of the client that is target
 * or ends in "." target. *match gets 0/1; DNS errors just do not match.
 * 0, or RUN_NEED. */
static int compute_ptr_list(struct run *r, const char *target, int *match)
{
	*match = 0;
	const struct dns_answer *pa;
	if (client_ptr(r, &pa) == RUN_NEED)
		return RUN_NEED;
	for (size_t i = 0; pa && i < pa->n && i < SPF_MAX_NAMES && !*match; i++) {
		const char *n = pa->names[i];
		if (!util_domain_within(n, target))
			continue;
		bool ok;
		if (name_validated(r, n, &ok) == RUN_NEED)
			return RUN_NEED;
		*match = ok;
	}
	return 0;
}

/* Does term t of the record for domain match? 1 yes, 0 no, or a final
 * result (SPF_TEMPERROR, SPF_PERMERROR) as a negative code -2 - result, or
 * RUN_NEED. */
#define FINAL(res) (-2 - (int)(res))
static int term_match(struct run *r, const struct spf_term *t, const char *domain, unsigned depth)
{
	struct spf_eval *e = r->e;
	struct buf target = BUF_INIT;
	buf_init(&target, 4096);
	int ret = 0;
	bool temp = false;
	const struct dns_answer *a;
	switch (t->mech) {
	case SPF_ALL:
		ret = 1;
		break;
	case SPF_IP4:
		ret =
		    !e->ipv6 && addr_match(e, &(struct dns_addr){.family = AF_INET, .u.v4 = t->ip4},
		                    t->cidr4, -1);
		break;
	case SPF_IP6:
		ret =
		    e->ipv6 && addr_match(e, &(struct dns_addr){.family = AF_INET6, .u.v6 = t->ip6},
		                   -1, t->cidr6);
		break;
	case SPF_A:
	case SPF_MX:
	case SPF_PTR:
	case SPF_EXISTS:
	case SPF_INCLUDE: {
		if (!count_term(r, domain)) {
			ret = FINAL(SPF_PERMERROR);
			break;
		}
		int tr = target_of(r, t->spec, domain, &target);
		if (tr == RUN_NEED || tr == SPF_PERMERROR) {
			ret = tr == RUN_NEED ? RUN_NEED : FINAL(SPF_PERMERROR);
			break;
		}
		const char *tn = buf_cstr(&target);
		if (t->mech == SPF_INCLUDE) {
			int res = check_host(r, tn, depth + 1, false);
			if (res == RUN_NEED) {
				ret = RUN_NEED;
			} else if (res == SPF_PASS) {
				ret = 1;
			} else if (res == SPF_FAIL || res == SPF_SOFTFAIL || res == SPF_NEUTRAL) {
				ret = 0;
			} else if (res == SPF_TEMPERROR) {
				ret = FINAL(SPF_TEMPERROR);
			} else { /* permerror, or none: no record there */
				if (res == SPF_NONE)
					set_reason(r, "include:%s has no SPF record", tn);
				ret = FINAL(SPF_PERMERROR);
			}
			break;
		}
		if (t->mech == SPF_PTR) {
			/* a DNS error only makes it not match (RFC 7208 5.5) */
			if (compute_ptr_list(r, tn, &ret) == RUN_NEED)
				ret = RUN_NEED;
			break;
		}
		enum dns_type qt = t->mech == SPF_MX       ? DNS_MX
		                   : t->mech == SPF_EXISTS ? DNS_A
		                   : e->ipv6               ? DNS_AAAA
		                                           : DNS_A;
		a = lookup(r, tn, qt, &temp);
		if (r->need) {
			ret = RUN_NEED;
			break;
		}
		if (temp) {
			set_reason(r, "DNS lookup of %s %s failed", tn, dns_type_name(qt));
			ret = FINAL(SPF_TEMPERROR);
			break;
		}
		if (void_answer(a)) {
			ret = count_void(r, tn) ? 0 : FINAL(SPF_PERMERROR);
			break;
		}
		if (t->mech == SPF_EXISTS) {
			ret = 1;
			break;
		}
		if (t->mech == SPF_A) {
			for (size_t i = 0; i < a->n && ret == 0; i++)
				ret = addr_match(e, &a->addrs[i], t->cidr4, t->cidr6);
			break;
		}
		/* mx: the exchanges' addresses; 4.6.4: evaluating it MUST NOT need
		 * more than SPF_MAX_NAMES address lookups (a match before that ends it) */
		for (size_t i = 0; i < a->n && ret == 0; i++) {
			if (i == SPF_MAX_NAMES) {
				set_reason(r, "%s has more than %d MX records", tn, SPF_MAX_NAMES);
				ret = FINAL(SPF_PERMERROR);
				break;
			}
			if (a->mx[i].host[0] == '\0')
				continue; /* null MX */
			const struct dns_answer *aa =
			    lookup(r, a->mx[i].host, e->ipv6 ? DNS_AAAA : DNS_A, &temp);
			if (r->need) {
				ret = RUN_NEED;
				break;
			}
			if (temp) {
				set_reason(r, "DNS lookup of %s failed", a->mx[i].host);
				ret = FINAL(SPF_TEMPERROR);
				break;
			}
			for (size_t k = 0; aa->status == DNS_OK && k < aa->n && ret == 0; k++)
				ret = addr_match(e, &aa->addrs[k], t->cidr4, t->cidr6);
		}
		break;
	}
	default:
		abort();
	}
	buf_free(&target);
	return ret;
}

/* exp=: the explanation for a fail (RFC 7208 6.2), into e->explanation.
 * Every problem just means no explanation. 0, or RUN_NEED. */
static int explain(struct run *r, const char *spec, const char *domain)
{
	struct spf_eval *e = r->e;
	struct buf target = BUF_INIT, why = BUF_INIT;
	buf_init(&target, 4096);
	int tr = target_of(r, spec, domain, &target);
	int ret = 0;
	if (tr == RUN_NEED) {
		ret = RUN_NEED;
	} else if (tr == 0) {
		bool temp;
		const struct dns_answer *a = lookup(r, buf_cstr(&target), DNS_TXT, &temp);
		if (r->need) {
			ret = RUN_NEED;
		} else if (!temp && a && a->status == DNS_OK && a->n == 1) {
			if (spf_macro_needs_ptr(a->txt[0].data) &&
			    compute_ptr(r, domain) == RUN_NEED) {
				ret = RUN_NEED;
			} else {
				struct spf_macro_ctx m;
				macro_ctx(r, domain, &m);
				struct buf out = BUF_INIT;
				buf_init(&out, SPF_EXP_MAX);
				if (memchr(a->txt[0].data, '\0', a->txt[0].len) == NULL &&
				    spf_macro_expand(
				        a->txt[0].data, a->txt[0].len, &m, true, &out, &why) == 0) {
					buf_reset(&e->explanation);
					for (size_t i = 0; i < out.len; i++) {
						unsigned char c = (unsigned char)out.data[i];
						buf_putc(&e->explanation,
						    c >= 0x20 && c < 0x7f ? (char)c : '?');
					}
					e->has_explanation = true;
				}
				buf_free(&out);
			}
		}
	}
	buf_free(&target);
	buf_free(&why);
	return ret;
}

/* check_host(ip, domain, sender) of RFC 7208 4. A result, or RUN_NEED. */
static int check_host(struct run *r, const char *domain, unsigned depth, bool want_exp)
{
	if (depth > SPF_MAX_DEPTH) {
		set_reason(r, "includes nested too deep at %s", domain);
		return SPF_PERMERROR;
	}
	/* 4.3: a malformed or single-label domain has no policy */
	if (!dns_valid_name(domain) || strchr(domain, '.') == NULL) {
		set_reason(r, "%s is not a valid domain name", domain);
		return SPF_NONE;
	}
	bool temp;
	const struct dns_answer *a = lookup(r, domain, DNS_TXT, &temp);
	if (r->need)
		return RUN_NEED;
	if (temp) {
		set_reason(r, "DNS lookup of %s TXT failed", domain);
		return SPF_TEMPERROR;
	}
	if (depth > 0 && void_answer(a) && !count_void(r, domain))
		return SPF_PERMERROR;
	const struct dns_txt *rec = NULL;
	size_t nrec = 0;
	for (size_t i = 0; a->status == DNS_OK && i < a->n; i++)
		if (spf_is_record(a->txt[i].data, a->txt[i].len)) {
			rec = &a->txt[i];
			nrec++;
		}
	if (nrec == 0) {
		set_reason(r, "%s has no SPF record", domain);
		return SPF_NONE;
	}
	if (nrec > 1) {
		set_reason(r, "%s has %zu SPF records", domain, nrec);
		return SPF_PERMERROR;
	}
	struct spf_record sr;
	struct buf why = BUF_INIT;
	if (spf_record_parse(rec->data, rec->len, &sr, &why) < 0) {
		set_reason(r, "%s: %s", domain, buf_cstr(&why));
		buf_free(&why);
		return SPF_PERMERROR;
	}
	buf_free(&why);
	int result = -100;
	for (size_t i = 0; i < sr.n; i++) {
		const struct spf_term *t = &sr.terms[i];
		int m = term_match(r, t, domain, depth);
		if (m == RUN_NEED) {
			result = RUN_NEED;
			break;
		}
		if (m < 0) {
			result = -2 - m; /* a final temperror/permerror */
			break;
		}
		if (m == 1) {
			result = (int)t->qualifier;
			set_reason(r, "matched %s%s%s in %s",
			    t->qualifier == SPF_PASS       ? ""
			    : t->qualifier == SPF_FAIL     ? "-"
			    : t->qualifier == SPF_SOFTFAIL ? "~"
			                                   : "?",
			    t->mech == SPF_ALL       ? "all"
			    : t->mech == SPF_INCLUDE ? "include:"
			    : t->mech == SPF_A       ? "a"
			    : t->mech == SPF_MX      ? "mx"
			    : t->mech == SPF_PTR     ? "ptr"
			    : t->mech == SPF_IP4     ? "ip4"
			    : t->mech == SPF_IP6     ? "ip6"
			                             : "exists:",
			    t->spec && (t->mech == SPF_INCLUDE || t->mech == SPF_EXISTS) ? t->spec
			                                                                 : "",
			    domain);
			if (result == SPF_FAIL && want_exp && sr.exp != NULL &&
			    explain(r, sr.exp, domain) == RUN_NEED)
				result = RUN_NEED;
			break;
		}
	}
	if (result == -100) {
		if (sr.redirect != NULL) {
			/* 6.1: as if the record of the target were ours (its exp=, not ours) */
			struct buf target = BUF_INIT;
			buf_init(&target, 4096);
			if (!count_term(r, domain)) {
				result = SPF_PERMERROR;
			} else {
				int tr = target_of(r, sr.redirect, domain, &target);
				if (tr == RUN_NEED || tr == SPF_PERMERROR) {
					result = tr;
				} else {
					result =
					    check_host(r, buf_cstr(&target), depth + 1, want_exp);
					if (result == SPF_NONE) {
						set_reason(r, "redirect=%s has no SPF record",
						    buf_cstr(&target));
						result = SPF_PERMERROR;
					}
				}
			}
			buf_free(&target);
		} else {
			set_reason(r, "no mechanism matched in %s", domain);
			result = SPF_NEUTRAL;
		}
	}
	spf_record_free(&sr);
	return result;
}

struct spf_eval *spf_eval_new(const struct spf_params *p)
{
	struct spf_eval *e = calloc(1, sizeof *e);
	if (e == NULL)
		return NULL;
	struct in6_addr v6;
	if (inet_pton(AF_INET, p->ip, &e->ip4) == 1) {
		e->ipv6 = false;
	} else if (inet_pton(AF_INET6, p->ip, &v6) == 1) {
		if (IN6_IS_ADDR_V4MAPPED(&v6)) { /* an IPv4 client seen through IPv6 */
			memcpy(&e->ip4, &v6.s6_addr[12], 4);
			e->ipv6 = false;
		} else {
			e->ipv6 = true;
			e->ip6 = v6;
		}
	} else {
		free(e);
		return NULL;
	}
	char text[INET6_ADDRSTRLEN];
	if (e->ipv6)
		inet_ntop(AF_INET6, &e->ip6, text, sizeof text);
	else
		inet_ntop(AF_INET, &e->ip4, text, sizeof text);
	e->ip_text = strdup(text);
	e->ip_given = strdup(p->ip);
	e->helo = strdup(p->helo ? p->helo : "");
	e->receiver = strdup(p->receiver ? p->receiver : "unknown");
	buf_init(&e->reason, 2048);
	buf_init(&e->explanation, SPF_EXP_MAX + 16);
	e->now = p->now ? p->now : time(NULL);
	const char *s = p->sender ? p->sender : "";
	struct buf b = BUF_INIT;
	if (*s == '\0') {
		/* 2.3: the HELO identity, with postmaster as its local part */
		e->identity = "helo";
		buf_printf(&b, "postmaster@%s", e->helo ? e->helo : "");
		e->domain = strdup(e->helo ? e->helo : "");
	} else {
		e->identity = "mailfrom";
		const char *at = strrchr(s, '@');
		if (at == NULL || at == s) /* 4.3: no local part: postmaster */
			buf_printf(&b, "postmaster@%s", at ? at + 1 : s);
		else
			buf_puts(&b, s);
		e->domain = strdup(at ? at + 1 : s);
	}
	e->sender = buf_steal(&b);
	if (e->ip_text == NULL || e->ip_given == NULL || e->helo == NULL || e->receiver == NULL ||
	    e->domain == NULL || e->sender == NULL) {
		spf_eval_free(e);
		return NULL;
	}
	size_t dl = strlen(e->domain);
	if (dl > 0 && e->domain[dl - 1] == '.')
		e->domain[dl - 1] = '\0';
	return e;
}

void spf_eval_free(struct spf_eval *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->ncache; i++) {
		free(e->cache[i].name);
		dns_answer_free(e->cache[i].a);
	}
	free(e->cache);
	free(e->qname);
	free(e->ip_text);
	free(e->ip_given);
	free(e->helo);
	free(e->sender);
	free(e->domain);
	free(e->receiver);
	buf_free(&e->reason);
	buf_free(&e->explanation);
	free(e);
}

enum spf_step spf_eval_step(struct spf_eval *e)
{
	if (e->done)
		return SPF_STEP_DONE;
	struct run r = {.e = e};
	e->has_explanation = false;
	buf_reset(&e->explanation);
	int res = check_host(&r, e->domain, 0, true);
	if (res == RUN_NEED)
		return SPF_STEP_NEED_DNS;
	e->result = (enum spf_result)res;
	if (e->result != SPF_FAIL)
		e->has_explanation = false;
	e->done = true;
	return SPF_STEP_DONE;
}

void spf_eval_query(const struct spf_eval *e, const char **name, enum dns_type *type)
{
	*name = e->qname;
	*type = e->qtype;
}

void spf_eval_answer(struct spf_eval *e, struct dns_answer *a)
{
	struct cached *c = realloc(e->cache, (e->ncache + 1) * sizeof *c);
	if (c == NULL)
		abort();
	e->cache = c;
	c[e->ncache].name = e->qname;
	c[e->ncache].type = e->qtype;
	c[e->ncache].a = a;
	e->ncache++;
	e->qname = NULL;
	e->lookups++;
}

enum spf_result spf_eval_result(const struct spf_eval *e)
{
	return e->result;
}
const char *spf_eval_reason(const struct spf_eval *e)
{
	return buf_cstr(&e->reason);
}
const char *spf_eval_explanation(const struct spf_eval *e)
{
	return e->has_explanation ? buf_cstr(&e->explanation) : NULL;
}
const char *spf_eval_identity(const struct spf_eval *e)
{
	return e->identity;
}
const char *spf_eval_domain(const struct spf_eval *e)
{
	return e->domain;
}
unsigned spf_eval_lookups(const struct spf_eval *e)
{
	return e->lookups;
}

/* ---------------------------------------------------------------- on a loop */

struct spf_req {
	struct dns_resolver *r;
	struct spf_eval *e;
	struct dns_req *q;
	struct event *start; /* the first step, from the loop */
	spf_cb cb;
	void *arg;
};

static void spf_advance(struct spf_req *q);

static void on_answer(struct dns_answer *a, void *arg)
{
	struct spf_req *q = arg;
	q->q = NULL;
	spf_eval_answer(q->e, a);
	spf_advance(q);
}

/* Step; ask the next lookup or finish. Called from DNS callbacks only (so
 * the finishing callback always runs later on the loop). */
static void spf_advance(struct spf_req *q)
{
	if (spf_eval_step(q->e) == SPF_STEP_NEED_DNS) {
		const char *name;
		enum dns_type t;
		spf_eval_query(q->e, &name, &t);
		q->q = dns_query(q->r, name, t, on_answer, q);
		return;
	}
	spf_cb cb = q->cb;
	void *arg = q->arg;
	struct spf_eval *e = q->e;
	event_free(q->start);
	free(q);
	cb(e, arg);
}

static void on_start(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	spf_advance(arg);
}

struct spf_req *spf_check(struct event_base *base, struct dns_resolver *r,
    const struct spf_params *p, spf_cb cb, void *arg)
{
	struct spf_req *q = calloc(1, sizeof *q);
	if (q == NULL)
		return NULL;
	q->r = r;
	q->cb = cb;
	q->arg = arg;
	q->e = spf_eval_new(p);
	q->start = evtimer_new(base, on_start, q);
	struct timeval now = {0, 0};
	if (q->e == NULL || q->start == NULL || evtimer_add(q->start, &now) != 0) {
		spf_eval_free(q->e);
		if (q->start)
			event_free(q->start);
		free(q);
		return NULL;
	}
	return q;
}

void spf_cancel(struct spf_req *q)
{
	if (q == NULL)
		return;
	if (q->q)
		dns_cancel(q->q);
	event_free(q->start);
	spf_eval_free(q->e);
	free(q);
}
