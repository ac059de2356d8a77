/*
 * spf.h - Sender Policy Framework (RFC 7208): check_host() for a client IP,
 * a HELO name and a MAIL FROM address.
 *
 * Three pure parts and one glue:
 *
 * - spf_record_parse(): one TXT record ("v=spf1 ...") into terms, with every
 *   syntax rule of RFC 7208 12 (a syntax error is permerror).
 * - spf_macro_expand(): the macro language of RFC 7208 7 (letters, digit
 *   and reverse transformers, delimiters, URL escaping for upper case).
 * - struct spf_eval: check_host() as a state machine that never does I/O.
 *   spf_eval_step() either finishes with a result or asks for one DNS
 *   lookup (name and type); the caller answers it with spf_eval_answer()
 *   and steps again. So the whole algorithm, with its limits (10 terms that
 *   query DNS, 2 void lookups, 10 MX/PTR names), runs the same against the
 *   real resolver, a test double with canned answers, and a fuzzer.
 * - spf_check(): the glue for an event loop: the lookups go to a
 *   dns_resolver (asynchronously); the callback gets the result.
 *
 * Results: none, neutral, pass, fail, softfail, temperror, permerror. A DNS
 * failure (SERVFAIL, timeout) is temperror, never fail.
 *
 * Security: records, names and explanations come from DNS, i.e. from
 * anyone. Every expansion is capped (SPF_NAME_MAX for names, SPF_EXP_MAX for
 * explanations), every loop bounded by the RFC limits plus SPF_MAX_TERMS
 * per record and SPF_MAX_DEPTH nested includes; the explanation is
 * restricted to printable ASCII before anyone sees it.
 */
#ifndef DAKIYA_SPF_H
#define DAKIYA_SPF_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/buf.h"
#include "dns/dns.h"

enum spf_result {
	SPF_NONE = 0,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};
/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror" */
const char *spf_result_name(enum spf_result r);

#define SPF_MAX_DNS_TERMS 10 /* include a mx ptr exists redirect (RFC 7208 4.6.4) */
#define SPF_MAX_VOID 2       /* lookups answered NXDOMAIN or empty (4.6.4) */
#define SPF_MAX_NAMES 10     /* MX hosts and PTR names looked at (4.6.4) */
#define SPF_MAX_TERMS 128    /* terms in one record (ours: bounds the work) */
#define SPF_MAX_DEPTH 10     /* nested include/redirect (implied by the 10 terms) */
#define SPF_NAME_MAX 253     /* an expanded domain name (7.3: longer is cut on the left) */
#define SPF_EXP_MAX 1024     /* an explanation, after expansion */
#define SPF_RECORD_MAX 8192  /* a TXT record we are willing to parse */

/* ---- records ---- */

enum spf_mech {
	SPF_ALL,
	SPF_INCLUDE,
	SPF_A,
	SPF_MX,
	SPF_PTR,
	SPF_IP4,
	SPF_IP6,
	SPF_EXISTS,
};

struct spf_term {
	enum spf_result qualifier; /* PASS, FAIL, SOFTFAIL, NEUTRAL */
	enum spf_mech mech;
	char *spec; /* domain-spec as written (macros unexpanded), NULL if none */
	int cidr4;  /* prefix length, -1 = not given (32) */
	int cidr6;  /* prefix length, -1 = not given (128) */
	struct in_addr ip4;
	struct in6_addr ip6;
};

struct spf_record {
	struct spf_term *terms; /* the mechanisms, in order */
	size_t n;
	char *redirect; /* redirect= domain-spec, NULL if none */
	char *exp;      /* exp= domain-spec, NULL if none */
};

/* Is this TXT record an SPF record: "v=spf1" (case-insensitive) followed
 * by a space or the end (RFC 7208 4.5)? */
bool spf_is_record(const char *txt, size_t len);
/* Parse an SPF record. 0, or -1 with the reason in why (permerror). r is
 * empty on error; free it with spf_record_free either way. */
int spf_record_parse(const char *txt, size_t len, struct spf_record *r, struct buf *why);
void spf_record_free(struct spf_record *r);

/* ---- macros ---- */

struct spf_macro_ctx {
	const char *sender; /* <sender>: local@domain (postmaster@helo for an empty MAIL FROM) */
	const char *domain; /* <domain> being checked now */
	const char *ip;     /* the client, as text (canonical) */
	const char
	    *ip_given; /* as the caller wrote it (the case of %{i}'s IPv6 nibbles); may be NULL */
	bool ipv6;     /* ip is IPv6 (an IPv4-mapped one counts as IPv4) */
	struct in6_addr ip6;  /* when ipv6: for the nibble form */
	const char *helo;     /* HELO/EHLO name */
	const char *receiver; /* our host name (%{r}), NULL: "unknown" */
	const char *ptr;      /* validated name of ip (%{p}), NULL: "unknown" */
	time_t now;           /* %{t} */
};

/* Expand macro-string spec[0..len) into out (reset first). exp: the
 * explanation letters c, r, t are allowed. 0, or -1 on a syntax error
 * (permerror) with the reason in why. out is capped by its own cap. */
int spf_macro_expand(const char *spec, size_t len, const struct spf_macro_ctx *m, bool exp,
    struct buf *out, struct buf *why);
/* Does spec use %{p} (which needs a PTR lookup before expansion)? */
bool spf_macro_needs_ptr(const char *spec);

/* ---- check_host() as a state machine ---- */

struct spf_eval;

struct spf_params {
	const char *ip;     /* the client's address, numeric (v4 or v6) */
	const char *helo;   /* HELO/EHLO name ("" if none) */
	const char *sender; /* MAIL FROM address without <>; "" or NULL: check the HELO identity */
	const char *receiver; /* our host name, for %{r} in explanations (may be NULL) */
	time_t now;           /* for %{t}; 0: time(NULL) */
};

enum spf_step {
	SPF_STEP_DONE,     /* spf_eval_result() is final */
	SPF_STEP_NEED_DNS, /* answer spf_eval_query() with spf_eval_answer() */
};

/* A new evaluation; NULL if out of memory or p->ip is not an address (the
 * caller then has permerror... or rather a bug: check the IP first). */
struct spf_eval *spf_eval_new(const struct spf_params *p);
void spf_eval_free(struct spf_eval *e); /* accepts NULL */
/* Run until done or until a DNS answer is needed. */
enum spf_step spf_eval_step(struct spf_eval *e);
/* The lookup wanted after SPF_STEP_NEED_DNS. */
void spf_eval_query(const struct spf_eval *e, const char **name, enum dns_type *type);
/* The answer to it (ownership passes to e; a NULL answer is a temporary
 * failure). Then spf_eval_step() again. */
void spf_eval_answer(struct spf_eval *e, struct dns_answer *a);

/* After SPF_STEP_DONE. */
enum spf_result spf_eval_result(const struct spf_eval *e);
/* Why, in a few words ("matched ip4:192.0.2.0/24 in example.com", "no SPF
 * record", "too many DNS lookups"); never NULL. */
const char *spf_eval_reason(const struct spf_eval *e);
/* fail only: the explanation (exp=, expanded and sanitised), or NULL when
 * there is none (then the caller uses its default). */
const char *spf_eval_explanation(const struct spf_eval *e);
/* The identity checked: "mailfrom" or "helo"; and the domain. */
const char *spf_eval_identity(const struct spf_eval *e);
const char *spf_eval_domain(const struct spf_eval *e);
/* DNS lookups made (for logs and tests). */
unsigned spf_eval_lookups(const struct spf_eval *e);

/* ---- on an event loop ---- */

struct dns_resolver;
struct spf_req;
typedef void (*spf_cb)(struct spf_eval *e, void *arg);

/* Evaluate with resolver's lookups (r must run on base); cb(e, arg) runs
 * later on the loop, exactly once, with the finished evaluation (the callee
 * frees it with spf_eval_free). NULL (no callback) if memory runs out or
 * p->ip is not an address. spf_cancel() first: no callback. */
struct event_base;
struct spf_req *spf_check(struct event_base *base, struct dns_resolver *r,
    const struct spf_params *p, spf_cb cb, void *arg);
void spf_cancel(struct spf_req *q);

#endif
