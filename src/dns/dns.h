/*
 * dns.h - the DNS resolver of dakiya: asynchronous lookups over libunbound
 * inside one libevent loop, and the delivery targets of a domain (RFC 5321
 * 5.1, RFC 7505).
 *
 * One struct dns_resolver per event_base (one per worker loop); it is not
 * thread-safe and must only be used from its loop's thread. libunbound
 * resolves in a thread of its own and hands answers back through a pipe
 * (ub_fd) that the loop watches; the callbacks therefore run on the loop.
 *
 * The contract every caller relies on (STYLE.md 5):
 *   - a query started with dns_query() or dns_targets() completes exactly
 *     once, through its callback, always later on the loop (never from
 *     inside the starting call), unless it is cancelled with dns_cancel()
 *     first, after which the callback is never called;
 *   - the result says one of: DNS_OK, a permanent "no such" (DNS_NXDOMAIN,
 *     DNS_NODATA, DNS_NULLMX) or DNS_TEMPFAIL (SERVFAIL, timeout, network,
 *     resolver trouble). A temporary DNS problem is never reported as a
 *     permanent one, so it never causes a bounce;
 *   - every query ends within its timeout (an own timer on top of
 *     libunbound's retries): DNS_TEMPFAIL "timeout" at the latest;
 *   - the callback owns the result and frees it (dns_answer_free(),
 *     dns_targets_free());
 *   - callbacks must not free the resolver (they run inside ub_process()).
 *
 * The pure parts (turning a libunbound result into an answer, MX ordering,
 * null-MX detection, address ordering, assembling the delivery targets from
 * answers) are exported below so that unit tests, and a test double with
 * canned answers, can drive them without any network.
 *
 * Security: names and TXT strings in answers come from the network. Names
 * are presentation format with every byte outside [A-Za-z0-9-_] escaped as
 * \DDD (RFC 1035 5.1), so they hold no control characters; TXT data is
 * binary (length-tracked) and must be escaped before logging.
 *
 * DNSSEC: not validated yet (module-config "iterator"); `secure` is not
 * reported. DANE (TLSA) will need validation: turn on the validator with a
 * trust anchor and report secure/bogus in struct dns_answer.
 */
#ifndef DAKIYA_DNS_H
#define DAKIYA_DNS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"

struct event_base;
struct ub_result;

/* Record types we ask for (the values are the DNS RR type numbers). */
enum dns_type {
	DNS_A = 1,
	DNS_PTR = 12,
	DNS_MX = 15,
	DNS_TXT = 16,
	DNS_AAAA = 28,
};

enum dns_status {
	DNS_OK,       /* records found */
	DNS_NODATA,   /* permanent: the name exists, without records of that type
	               * (targets: no MX host has a usable address) */
	DNS_NXDOMAIN, /* permanent: the name does not exist (or is not a valid name) */
	DNS_NULLMX,   /* permanent: MX and targets only: the domain accepts no mail
	               * (RFC 7505); delivery bounces with 5.1.10 */
	DNS_TEMPFAIL, /* temporary: SERVFAIL, timeout, network, resolver trouble */
};

static inline bool dns_status_permanent(int s)
{
	return s == DNS_NODATA || s == DNS_NXDOMAIN || s == DNS_NULLMX;
}
/* "ok", "nodata", "nxdomain", "null-mx", "tempfail" (for logs and JSON). */
const char *dns_status_name(enum dns_status s);
/* "A", "MX", ... */
const char *dns_type_name(enum dns_type t);

/* Address family policy for delivery (config delivery.family). */
enum dns_family {
	DNS_FAMILY_ANY,         /* both, interleaved IPv4, IPv6, IPv4, ... */
	DNS_FAMILY_IPV4,        /* IPv4 only (AAAA is not even asked) */
	DNS_FAMILY_IPV6,        /* IPv6 only (A is not even asked) */
	DNS_FAMILY_PREFER_IPV4, /* all IPv4 addresses, then all IPv6 */
	DNS_FAMILY_PREFER_IPV6, /* all IPv6 addresses, then all IPv4 */
};
/* The policy named s ("any", "ipv4", "ipv6", "prefer-ipv4", "prefer-ipv6"
 * as config.c accepts); 0, or -1 if s is none of them. */
int dns_family_parse(const char *s, enum dns_family *out);
const char *dns_family_name(enum dns_family f);

/* Limits on what one answer may make us keep (STYLE.md 7). */
#define DNS_MAX_RECORDS 64    /* records kept per answer */
#define DNS_MAX_MX_HOSTS 16   /* MX hosts kept (the most preferred) */
#define DNS_MAX_HOST_ADDRS 16 /* addresses kept per host and family */
#define DNS_NAME_MAX 1025     /* presentation name, all bytes escaped, plus NUL */
#define DNS_TIMEOUT_MS_DEFAULT 20000

struct dns_addr {
	int family; /* AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} u;
	char text[INET6_ADDRSTRLEN]; /* "192.0.2.1", "2001:db8::1" */
};

struct dns_mx {
	unsigned pref;
	char *host; /* no trailing dot; "" for the root (".") */
};

struct dns_txt {
	char *data; /* the character-strings of one record, concatenated
	             * (RFC 7208 3.3); NUL-terminated, but may hold NULs */
	size_t len;
};

/* The answer to one query. Exactly the array of the query's type is used. */
struct dns_answer {
	enum dns_status status;
	enum dns_type type;
	char *name;   /* the name asked, without trailing dot */
	char *canon;  /* the name the records belong to, when CNAMEs were
	               * followed to get there; NULL otherwise */
	char *reason; /* status != DNS_OK: why, for logs and messages; else NULL */
	unsigned ttl;
	size_t n;               /* number of records */
	struct dns_mx *mx;      /* DNS_MX */
	struct dns_addr *addrs; /* DNS_A, DNS_AAAA */
	struct dns_txt *txt;    /* DNS_TXT */
	char **names;           /* DNS_PTR */
};
void dns_answer_free(struct dns_answer *a); /* accepts NULL */

/* One host to deliver to, with its addresses in the order to try them. */
struct dns_host {
	char *name;             /* the MX exchange (or the domain for an implicit MX) */
	unsigned pref;          /* MX preference (0 for an implicit MX) */
	bool implicit;          /* no MX records: the domain itself (RFC 5321 5.1) */
	char *canon;            /* the name was an alias (CNAME) of this one; else NULL */
	enum dns_status status; /* DNS_OK iff naddrs > 0; else why it has none */
	char *reason;           /* status != DNS_OK: why, else NULL */
	struct dns_addr *addrs;
	size_t naddrs;
	unsigned lookups; /* internal: address answers merged so far */
};

/* Where mail for a domain goes: hosts by MX preference (equal preferences
 * in random order), each with its addresses ordered by the family policy.
 *   DNS_OK        at least one host has addresses. Hosts without addresses
 *                 (naddrs == 0) stay in the list for reporting, with their
 *                 status and reason: delivery simply has nothing to try there.
 *   DNS_NULLMX    null MX: bounce with 5.1.10, hosts is empty.
 *   DNS_NXDOMAIN  the domain does not exist.
 *   DNS_NODATA    no MX host (or, without MX, the domain) has an address.
 *   DNS_TEMPFAIL  the MX lookup failed temporarily, or no host has an address
 *                 and at least one address lookup failed temporarily: retry. */
struct dns_targets {
	enum dns_status status;
	char *domain;  /* as asked, without trailing dot */
	char *canon;   /* the domain was an alias (CNAME) of this one; else NULL */
	char *reason;  /* status != DNS_OK: why, for logs, bounces, the CLI */
	bool implicit; /* no MX records: the domain's own addresses are used */
	enum dns_family family;
	struct dns_host *hosts;
	size_t nhosts;
};
void dns_targets_free(struct dns_targets *t); /* accepts NULL */

/* ---- the resolver ---- */

struct dns_options {
	const char *resolver; /* "system" (/etc/resolv.conf), or forwarders: "IP" or
	                       * "IP@PORT", several separated by commas or spaces */
	unsigned timeout_ms;  /* per query, on top of libunbound's own retries;
	                       * 0 = DNS_TIMEOUT_MS_DEFAULT */
};

struct dns_resolver;
struct dns_req;
typedef void (*dns_answer_cb)(struct dns_answer *a, void *arg);
typedef void (*dns_targets_cb)(struct dns_targets *t, void *arg);

/* A resolver for base. NULL with the reason in err when the options are
 * invalid or libunbound cannot be set up. */
struct dns_resolver *dns_resolver_new(
    struct event_base *base, const struct dns_options *opt, struct buf *err);
/* Cancel every pending query (their callbacks are not called) and free r.
 * Accepts NULL. Not from inside a callback. */
void dns_resolver_free(struct dns_resolver *r);

/* Look up name (trailing dot optional) for type. For PTR pass the reverse
 * name (dns_reverse_name()). Never NULL. */
struct dns_req *dns_query(
    struct dns_resolver *r, const char *name, enum dns_type type, dns_answer_cb cb, void *arg);
/* The delivery targets of domain (RFC 5321 5.1): the MX lookup, then A
 * and/or AAAA of every MX host (or of the domain) in parallel, as family
 * allows. Completes within about two query timeouts. Never NULL. */
struct dns_req *dns_targets(struct dns_resolver *r, const char *domain, enum dns_family family,
    dns_targets_cb cb, void *arg);
/* Stop a pending query: its callback will not be called. Only for queries
 * whose callback has not run yet. */
void dns_cancel(struct dns_req *q);

/* Blocking variants for the command line: the same code on a private loop
 * (so the same timeouts and results). NULL only when the resolver cannot be
 * set up, with the reason in err. */
struct dns_answer *dns_query_sync(
    const struct dns_options *opt, const char *name, enum dns_type type, struct buf *err);
struct dns_targets *dns_targets_sync(
    const struct dns_options *opt, const char *domain, enum dns_family family, struct buf *err);

/* ---- pure parts (unit tests, test doubles) ---- */

/* Split a resolver setting into forwarders ("IP" or "IP@PORT", each checked
 * with config_valid_resolver()); "system" gives 0 forwarders and *system =
 * true. Returns the count (at most max, written to fwd[] as pointers into
 * copy, which the caller frees), or -1 if the setting is invalid. */
int dns_parse_resolver(const char *s, char **copy, const char **fwd, int max, bool *system);
/* Is name acceptable to ask about: 1-253 characters without the trailing
 * dot, labels of 1-63 printable non-space bytes. */
bool dns_valid_name(const char *name);
/* The reverse lookup name of a numeric IP address ("192.0.2.1" ->
 * "1.2.0.192.in-addr.arpa"); 0, or -1 if ip is not one. */
int dns_reverse_name(const char *ip, struct buf *out);

/* A new answer with status and no records (reason may be NULL). */
struct dns_answer *dns_answer_new(
    const char *name, enum dns_type type, enum dns_status status, const char *reason);
/* Append a record to a canned answer (status becomes DNS_OK); 0 or -1
 * (invalid address, limit reached). */
int dns_answer_add_mx(struct dns_answer *a, unsigned pref, const char *host);
int dns_answer_add_addr(struct dns_answer *a, const char *ip);
int dns_answer_add_txt(struct dns_answer *a, const char *data, size_t len); /* TXT */
int dns_answer_add_name(struct dns_answer *a, const char *name);            /* PTR */
/* The answer for libunbound's callback values: err (a UB_ error code) and
 * res (may be NULL when err != 0). Never NULL. */
struct dns_answer *dns_answer_from_ub(
    const char *name, enum dns_type type, int err, const struct ub_result *res);

/* A random number in [0, bound), for shuffling; NULL means arc4random_uniform. */
typedef uint32_t (*dns_rand_fn)(uint32_t bound, void *arg);
/* Sort MX records by preference, equal preferences in random order. */
void dns_mx_sort(struct dns_mx *mx, size_t n, dns_rand_fn rnd, void *arg);
/* Is this MX answer a null MX (RFC 7505: exactly one record, preference 0,
 * exchange ".")? */
bool dns_mx_is_null(const struct dns_answer *mx);
/* Order addrs in place by the family policy, dropping the families it
 * excludes; returns the new count. Within a family the order is kept. */
size_t dns_addrs_order(struct dns_addr *addrs, size_t n, enum dns_family f);
/* Does the family policy want addresses of af (AF_INET, AF_INET6)? */
bool dns_family_wants(enum dns_family f, int af);

/* Assembling targets, step by step (dns_targets() does exactly this):
 * 1. dns_targets_begin(): from the MX answer, the hosts to look up (sorted,
 *    deduplicated, capped), the implicit MX when there are no MX records, or
 *    a final status (null MX, NXDOMAIN, TEMPFAIL) with no hosts;
 * 2. dns_targets_add(): merge each A or AAAA answer into its host;
 * 3. dns_targets_finish(): order addresses, settle each host's and the
 *    overall status. */
struct dns_targets *dns_targets_begin(const char *domain, enum dns_family family,
    const struct dns_answer *mx, dns_rand_fn rnd, void *arg);
void dns_targets_add(struct dns_targets *t, size_t host, const struct dns_answer *a);
void dns_targets_finish(struct dns_targets *t);
/* Does host i still need lookups (false for the root "." as an MX target)? */
bool dns_targets_needs_lookup(const struct dns_targets *t, size_t host);

#endif
