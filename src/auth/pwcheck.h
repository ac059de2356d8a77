/*
 * pwcheck.h - password checks off the event loop, and the throttle of
 * failed logins.
 *
 * yescrypt is slow on purpose (tens of milliseconds of CPU): a check runs on
 * a small pool of threads, each with its own store connection, and the
 * result comes back to the session's loop through a loopq. An unknown user
 * costs the same as a wrong password (a dummy hash is checked), so timing
 * does not tell which addresses exist.
 *
 * The throttle counts failures per client IP in a bounded table (oldest
 * entries evicted): each failure is answered after a delay that grows with
 * the recent failures of that IP, and past a limit the IP is refused AUTH
 * for a while.
 */
#ifndef DAKIYA_PWCHECK_H
#define DAKIYA_PWCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "core/loopq.h"

enum pwcheck_result {
	PWCHECK_OK = 0,       /* user exists and the password matches */
	PWCHECK_FAIL = 1,     /* unknown user or wrong password (indistinguishable) */
	PWCHECK_TEMPFAIL = 2, /* the store could not answer: 454 4.7.0 */
};

struct pwcheck_pool;

struct pwcheck_req {
	/* in (owned by the request; wiped and freed by pwcheck_req_free) */
	char *user;     /* login name as given: "local@domain" */
	char *password; /* the pool wipes and frees it once checked: NULL in the callback */
	/* out, valid in the callback */
	enum pwcheck_result result;
	char *canonical; /* on PWCHECK_OK: the address as stored (canonical case) */
	/* completion: cb(req, arg) runs on q's loop */
	struct loopq *q;
	void (*cb)(struct pwcheck_req *req, void *arg);
	void *arg;
	struct loopq_item item;   /* internal */
	struct pwcheck_req *next; /* internal */
};

/* Start threads (0 = 2) with their own connections to the store in data_dir. */
struct pwcheck_pool *pwcheck_pool_new(const char *data_dir, unsigned threads, struct buf *err);
/* Finish queued checks (their callbacks are still posted), stop, free. NULL ok. */
void pwcheck_pool_free(struct pwcheck_pool *p);
/* Queue a check; the pool owns req until its callback. */
void pwcheck_submit(struct pwcheck_pool *p, struct pwcheck_req *req);
/* A request with copies of user and password (wiped on free). NULL on OOM. */
struct pwcheck_req *pwcheck_req_new(const char *user, const char *password);
void pwcheck_req_free(struct pwcheck_req *req); /* wipes the password; NULL ok */

/* Synchronous check against a crypt(3) hash (yescrypt $y$, bcrypt $2b$/$2y$,
 * sha512-crypt $6$; any other string, "*", "!" and "" never match): true if
 * password matches; constant-time comparison of the results. */
bool pwcheck_verify_hash(const char *password, const char *hash);

/* ---- throttle of failed logins, per client IP ---- */
struct auth_throttle;
/* max_entries: table size bound (when full, the IP whose last failure is
 * oldest is forgotten); block_after: failures within window_s after which the
 * IP is refused AUTH until the window passes (0: never refused). An IP's
 * failures are forgotten window_s after its LAST failure, so slow guessing
 * keeps counting. */
struct auth_throttle *auth_throttle_new(
    size_t max_entries, unsigned block_after, unsigned window_s);
void auth_throttle_free(struct auth_throttle *t); /* NULL ok */
/* Record a failure of ip (4 or 16 bytes) at now; returns the delay in
 * milliseconds before the 535 reply: 1000 for the first failures, doubling
 * from the third on, capped at 15000. Thread-safe. */
unsigned auth_throttle_fail(struct auth_throttle *t, const void *ip, size_t iplen, time_t now);
/* true if ip is refused AUTH now (too many recent failures). Thread-safe. */
bool auth_throttle_blocked(struct auth_throttle *t, const void *ip, size_t iplen, time_t now);
/* A success forgets the IP's failures. Thread-safe. */
void auth_throttle_success(struct auth_throttle *t, const void *ip, size_t iplen);

#endif
