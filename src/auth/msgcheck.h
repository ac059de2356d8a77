/*
 * msgcheck.h - the trust checks of one received message, put together:
 * DKIM (every signature) and DMARC over the SPF verdict the caller brings,
 * the policy decision (deliver, Junk, refuse) and the
 * Authentication-Results header field (RFC 8601) that states them.
 *
 * Used by the MX session and by `dakiya check`. It runs on one event loop
 * with that loop's resolver: msgcheck_header() starts the DKIM key and
 * DMARC record lookups at once, so that they run while the body is still
 * arriving; msgcheck_end() says whether they are all answered, or calls
 * back once they are (every query ends within the resolver's timeout, so
 * the callback always comes). Freeing cancels what is pending.
 *
 * Temporary DNS trouble never turns into a refusal: a DKIM key that could
 * not be fetched is temperror, a DMARC record that could not be fetched
 * makes the DMARC result temperror, and neither refuses nor files in Junk.
 */
#ifndef DAKIYA_MSGCHECK_H
#define DAKIYA_MSGCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/dkim.h"
#include "auth/dmarc.h"
#include "auth/spf.h"
#include "core/buf.h"

struct dns_resolver;

/* What SPF said (the caller ran it, at MAIL time in the MX). */
struct msgcheck_spf {
	bool checked; /* false: not checked, no spf= in the header */
	enum spf_result result;
	const char *reason; /* for the comment */
	bool helo;          /* the identity was the HELO name (MAIL FROM <>) */
	const char *value;  /* the address, or the HELO name */
	const char *domain; /* its domain (DMARC's RFC5321.MailFrom domain) */
};

enum msgcheck_action {
	MSGCHECK_DELIVER,
	MSGCHECK_JUNK,
	MSGCHECK_REFUSE,
};
const char *msgcheck_action_name(enum msgcheck_action a); /* "deliver" "junk" "refuse" */

/* What to do with: a DMARC failure under p=reject, under p=quarantine, and
 * an SPF fail from a domain without a DMARC policy (config checks). */
struct msgcheck_policy {
	enum msgcheck_action dmarc_reject;     /* default refuse */
	enum msgcheck_action dmarc_quarantine; /* default junk */
	enum msgcheck_action spf_fail;         /* default junk */
};

struct msgcheck;
typedef void (*msgcheck_cb)(struct msgcheck *mc, void *arg);

/* r may be NULL (no lookups: keys temperror, DMARC temperror); psl may be
 * NULL (DMARC off). now: for x= expiry. */
struct msgcheck *msgcheck_new(
    struct dns_resolver *r, const struct dmarc_psl *psl, bool dkim, bool dmarc, int64_t now);
/* The header section (up to the empty line); once. */
void msgcheck_header(struct msgcheck *mc, const char *hdr, size_t hlen);
void msgcheck_body(struct msgcheck *mc, const char *p, size_t n);
/* The body ended. true: every answer is in (cb is not called); false: cb
 * runs on the loop once they are. */
bool msgcheck_end(struct msgcheck *mc, msgcheck_cb cb, void *arg);
/* With every answer in: DMARC over spf, then the decision. */
void msgcheck_finish(
    struct msgcheck *mc, const struct msgcheck_spf *spf, const struct msgcheck_policy *pol);

size_t msgcheck_ndkim(const struct msgcheck *mc); /* signatures checked */
const struct dkim_sig_result *msgcheck_dkim(const struct msgcheck *mc, size_t i);
/* The RFC5322.From domain, "" when there is no usable From. */
const char *msgcheck_from_domain(const struct msgcheck *mc);
/* After finish: the DMARC verdict; NULL when DMARC was not evaluated (off,
 * or no From domain). */
const struct dmarc_verdict *msgcheck_dmarc(const struct msgcheck *mc);
/* After finish: "none", "quarantine" or "reject" as RFC 7489 reports it
 * (what we did), the action, and why. */
enum msgcheck_action msgcheck_action(const struct msgcheck *mc);
const char *msgcheck_why(const struct msgcheck *mc);
const char *msgcheck_disposition(const struct msgcheck *mc);
/* After finish: the whole Authentication-Results field (CRLF ended). */
void msgcheck_auth_results(const struct msgcheck *mc, const char *authserv_id,
    const struct msgcheck_spf *spf, struct buf *out);
/* After finish: "d=example.com s=sel pass; ..." for the DMARC row. */
void msgcheck_dkim_summary(const struct msgcheck *mc, struct buf *out);
void msgcheck_free(struct msgcheck *mc); /* cancels pending lookups; NULL ok */

/* The author domain of a header section's From field, lower case, into out
 * ("" when there is none); from a From the grammar refuses, the domain after
 * its last "@". The status says whether the section has exactly one From
 * whose authors share one domain; with DMARC on, several From fields or
 * author domains are refused (RFC 5322 3.6 wants one From; RFC 7489 6.6.1
 * lets receivers refuse several authors, whom a forger would hide behind);
 * no From names no author to impersonate and gets no DMARC. */
enum msgcheck_from {
	MSGCHECK_FROM_ONE,     /* one From field, one author domain */
	MSGCHECK_FROM_NONE,    /* no From field, or no author in it */
	MSGCHECK_FROM_MANY,    /* more than one From field */
	MSGCHECK_FROM_DOMAINS, /* authors of different domains */
};
enum msgcheck_from msgcheck_author_domain(const char *hdr, size_t hlen, char *out, size_t max);

/* "refuse", "junk" or "deliver" (config checks.*; anything else: deliver). */
enum msgcheck_action msgcheck_action_named(const char *name);
/* What SPF said, from its evaluation e, for the identity the envelope
 * names; e NULL: not checked (checked false), the identity and its domain
 * still set, for DMARC to know what an unchecked SPF could have aligned.
 * The strings point into e, mail_from and helo. */
void msgcheck_spf_of(
    struct msgcheck_spf *sp, const struct spf_eval *e, const char *mail_from, const char *helo);
/* An Authentication-Results field (CRLF ended) with the SPF verdict only,
 * for mail that gets no other check. */
void msgcheck_spf_results(const char *authserv_id, const struct msgcheck_spf *spf, struct buf *out);

#endif
