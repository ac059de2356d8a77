/*
 * smtp_client.h - the SMTP client of outbound delivery: one outbound
 * connection to one MX address, as a state machine on one event loop
 * (RFC 5321, STARTTLS RFC 3207, PIPELINING RFC 2920, SIZE RFC 1870,
 * 8BITMIME RFC 6152, SMTPUTF8 RFC 6531, DSN RFC 3461, ENHANCEDSTATUSCODES
 * RFC 2034/3463).
 *
 * Life of a client:
 *   c = smtp_client_new(base, &opts)   connects at once (asynchronously):
 *                                      greeting, EHLO (HELO fallback),
 *                                      STARTTLS when offered, EHLO again
 *   smtp_client_send(c, &msg, cb, arg) one message (may be called right after
 *                                      new: it waits for the session); cb
 *                                      reports every recipient's result
 *   smtp_client_send(c, ...)           again, from cb or later, while
 *                                      smtp_client_usable(c): the connection
 *                                      is reused (RSET before the next MAIL)
 *   smtp_client_quit(c)                QUIT (after the active message, if any)
 *   opts.done(c, info, arg)            exactly once, when the connection is
 *                                      over, for whatever reason; then
 *   smtp_client_free(c)                (allowed inside done, or any time:
 *                                      freeing cancels all callbacks)
 *
 * Callback contract (STYLE.md 5): every smtp_client_send() that returns 0
 * completes exactly once through its callback, always later on the loop
 * (never from inside smtp_client_send or smtp_client_new), unless the
 * client is freed first. Every recipient then has a final result for this
 * attempt: SENT, TEMPFAIL or PERMFAIL, never "unknown". A connection that
 * fails (connect, timeout, TLS, peer closed, 421) turns every recipient
 * still pending into TEMPFAIL: a connection problem is never a bounce.
 * The message callback comes before the done callback when both are due.
 * Results passed to callbacks are valid during the callback only.
 *
 * Decisions:
 * - TLS is opportunistic: STARTTLS whenever the peer offers it and a
 *   tls_client is given; a certificate that does not verify is recorded
 *   (info->tls.verified / verify_error), never fatal. A refused STARTTLS
 *   (454 etc.) continues in the clear on the same connection. A failed
 *   handshake ends the connection with SMTP_CLIENT_TLS_FAILED: the caller
 *   retries on a NEW connection without TLS (opts.tls = NULL), if its
 *   policy allows.
 * - 8BITMIME: BODY=8BITMIME is sent when the message is 8-bit and the peer
 *   offers it. An 8-bit message for a peer without 8BITMIME is refused here
 *   with a permanent 5.6.3 ("conversion required but not supported"): no
 *   MIME downgrade to quoted-printable yet (RFC 6152 allows either).
 * - SMTPUTF8 needed and not offered: permanent 5.6.7 (RFC 6531 3.2); no
 *   downgrade.
 * - SIZE: SIZE=<blob size> on MAIL when offered; a message larger than the
 *   peer's announced limit is refused here with a permanent 5.3.4 without
 *   sending MAIL.
 * - DSN: NOTIFY/ORCPT/RET/ENVID go to the peer only when it offers DSN
 *   (RFC 3461 4.1); otherwise the caller must note "relayed" for
 *   NOTIFY=SUCCESS recipients itself.
 * - Always DATA with dot-stuffing, streamed from the blob file (never the
 *   whole message in memory). BDAT/CHUNKING is not used (yet).
 * - The content is sent with CRLF line ends whatever the blob holds: a bare
 *   LF or a bare CR becomes CRLF, so the next hop never sees an ambiguous
 *   line end (SMTP smuggling).
 * - After "." the reply applies to every recipient accepted at RCPT. A
 *   connection lost after "." and before that reply leaves the message's
 *   fate unknown; it is reported TEMPFAIL, so a retry may deliver it twice
 *   (RFC 1047), which is the safe side.
 * - Replies are parsed by smtp_reply.c with its limits (4 KiB per line,
 *   64 KiB per reply); a reply over them is a protocol error. Every state
 *   has its own timeout (struct smtp_client_timeouts).
 */
#ifndef DAKIYA_SMTP_CLIENT_H
#define DAKIYA_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/tls.h"
#include "queue/dsn.h"
#include "smtp/smtp_reply.h"

struct event_base;
struct smtp_client;

/* Seconds per state; 0 = the default in brackets (RFC 5321 4.5.3.2 where
 * it names one). Tests use short ones. */
struct smtp_client_timeouts {
	unsigned connect;    /* TCP connect [30] */
	unsigned greeting;   /* the 220 banner [300] */
	unsigned ehlo;       /* EHLO/HELO reply [300] */
	unsigned starttls;   /* STARTTLS reply and the TLS handshake [300] */
	unsigned mail;       /* MAIL reply (and RSET's) [300] */
	unsigned rcpt;       /* each RCPT reply [300] */
	unsigned data_init;  /* DATA's 354 [120] */
	unsigned data_block; /* no progress writing the content [180] */
	unsigned data_end;   /* the reply to the final "." [600] */
	unsigned quit;       /* the reply to QUIT [60] */
	unsigned idle;       /* a connection kept open without a message: QUIT after [300] */
};

/* Connection-level outcome. Everything but OK means the connection is gone. */
enum smtp_client_outcome {
	SMTP_CLIENT_OK = 0,         /* the conversation went as SMTP says (replies may refuse) */
	SMTP_CLIENT_CONNECT_FAILED, /* TCP connect refused, unreachable or timed out: next address
	                             */
	SMTP_CLIENT_REFUSED,        /* the peer turned us down: greeting other than 220, EHLO and
	                             * HELO refused, or 421 at any time (it is closing) */
	SMTP_CLIENT_TIMEOUT,        /* no reply (or no write progress) in time; see state */
	SMTP_CLIENT_CLOSED,         /* the peer closed or reset the connection unexpectedly */
	SMTP_CLIENT_PROTOCOL,       /* an unparsable or out-of-place reply: next MX */
	SMTP_CLIENT_TLS_FAILED,     /* the STARTTLS handshake failed: retry in the clear, new
	                             * connection, same host */
	SMTP_CLIENT_LOCAL,          /* our side: socket, memory, the blob unreadable */
};
/* "ok", "connect-failed", "refused", "timeout", "closed", "protocol",
 * "tls-failed", "local". */
const char *smtp_client_outcome_name(enum smtp_client_outcome o);

/* Facts about the connection, for logs, the attempt record and the journey. */
struct smtp_client_info {
	enum smtp_client_outcome outcome;
	const char *state;     /* the state it ended (or is) in: "connect", "greeting",
	                        * "ehlo", "helo", "starttls", "tls", "idle", "rset", "mail",
	                        * "rcpt", "data", "content", "dot", "quit", "closed" */
	const char *reason;    /* outcome != OK: what happened, one line ("" otherwise) */
	const char *peer_host; /* opts.peer_host */
	const char *peer_ip;   /* "192.0.2.1" / "2001:db8::1" */
	unsigned peer_port;
	const char *greeting;   /* the peer's 220 banner as one line ("" before it) */
	bool esmtp;             /* EHLO accepted (false: HELO) */
	struct smtp_caps caps;  /* from the last EHLO */
	bool tls;               /* the connection is encrypted */
	struct tls_peer tlsp;   /* tls: version, cipher, bits, verified, certificate name */
	unsigned messages;      /* transactions started on this connection */
	const char *last_reply; /* the last reply received, as one line ("" if none) */
};

enum smtp_rcpt_status {
	SMTP_RCPT_SENT = 0, /* accepted at RCPT and 2xx after "." */
	SMTP_RCPT_TEMPFAIL, /* 4xx, or the connection failed: retry later */
	SMTP_RCPT_PERMFAIL, /* 5xx, or refused here (5.3.4, 5.6.3, 5.6.7): bounce */
};
const char *smtp_rcpt_status_name(enum smtp_rcpt_status s); /* "sent", "tempfail", "permfail" */

struct smtp_client_rcpt {
	const char *addr;              /* RFC 5321 form without <> (UTF-8 with smtputf8) */
	unsigned notify;               /* DSN_NOTIFY_* bits; 0 = not given */
	const struct dsn_orcpt *orcpt; /* NULL = not given */
};

struct smtp_client_msg {
	const char *id;     /* queue id, for log lines (may be NULL) */
	const char *sender; /* envelope sender without <>; "" = null sender */
	const struct smtp_client_rcpt *rcpts;
	size_t nrcpts;     /* >= 1 */
	const char *path;  /* the blob file (CRLF lines; opened at send time) */
	bool eightbit;     /* the content has bytes >= 0x80: needs 8BITMIME */
	bool smtputf8;     /* the envelope or headers need SMTPUTF8 */
	enum dsn_ret ret;  /* DSN_RET_DEFAULT = not given */
	const char *envid; /* decoded ENVID, NULL = not given */
};

struct smtp_client_rcpt_result {
	enum smtp_rcpt_status status;
	int code;                     /* the reply code; or ours when !remote */
	char esc[SMTP_REPLY_ESC_MAX]; /* enhanced status, always set (x.0.0 when the
	                               * reply had none) */
	const char *reply;            /* one line: "550 5.1.1 no such user" (remote), or our
	                               * explanation: "connection lost in state content" */
	bool remote;                  /* the peer said it (else: decided here) */
};

struct smtp_client_result {
	const struct smtp_client_msg *msg;           /* as passed to smtp_client_send */
	const struct smtp_client_rcpt_result *rcpts; /* msg->nrcpts, in msg order */
	size_t sent, tempfailed, permfailed;
	const char *final_reply;             /* the reply to "." as one line ("" if not reached) */
	bool reused;                         /* the connection carried an earlier message */
	const struct smtp_client_info *info; /* the connection, as of now */
};

typedef void (*smtp_client_msg_cb)(
    struct smtp_client *c, const struct smtp_client_result *r, void *arg);
typedef void (*smtp_client_done_cb)(
    struct smtp_client *c, const struct smtp_client_info *info, void *arg);

struct smtp_client_opts {
	const char *helo_name;       /* our host name for EHLO/HELO */
	const struct sockaddr *peer; /* the MX address and port */
	socklen_t peer_len;
	const char *peer_host;         /* its MX host name: logs, SNI, certificate check */
	const struct sockaddr *source; /* bind to this before connect (port 0); NULL = any */
	socklen_t source_len;
	struct smtp_client_timeouts timeouts;
	struct tls_client *tls;   /* NULL = never STARTTLS */
	const char *log_id;       /* id first on log lines; NULL = a new session id */
	smtp_client_done_cb done; /* required */
	void *done_arg;
};

/* Start a connection. NULL only if opts are invalid or memory runs out
 * (nothing is called back then); connection errors come through done. The
 * strings and addresses in opts are copied; the tls_client must outlive c. */
struct smtp_client *smtp_client_new(struct event_base *base, const struct smtp_client_opts *o);

/* Deliver one message. m and everything it points to must stay valid until
 * cb. 0, or -1 if a message is already active, the connection is already
 * over, or m is invalid (no recipients, no path): nothing is called back
 * then. */
int smtp_client_send(
    struct smtp_client *c, const struct smtp_client_msg *m, smtp_client_msg_cb cb, void *arg);

/* May another message be sent on this connection (not over, no message
 * active, no QUIT asked)? */
bool smtp_client_usable(const struct smtp_client *c);

/* End politely: QUIT once the active message (if any) is done, wait for the
 * reply, close, then done. */
void smtp_client_quit(struct smtp_client *c);

/* The connection facts as of now. */
const struct smtp_client_info *smtp_client_get_info(const struct smtp_client *c);

/* Close at once, no callbacks ever again. Accepts NULL. Allowed inside the
 * client's own callbacks. */
void smtp_client_free(struct smtp_client *c);

/* ---- pure: the content transformation, for tests and fuzzers ---- */

/* Dot-stuffing (RFC 5321 4.5.2) with line ends made CRLF: feed the blob in
 * pieces of any size, then end. */
struct smtp_dot_stuffer {
	bool line_start; /* the next byte starts a line */
	bool cr;         /* a CR is pending (its LF may come in the next piece) */
};
void smtp_dot_stuff_init(struct smtp_dot_stuffer *d);
/* Append the transformed in[0..len) to out; false if out failed (cap). */
bool smtp_dot_stuff_feed(struct smtp_dot_stuffer *d, const char *in, size_t len, struct buf *out);
/* Append the end: a CRLF if the content did not end with one, then ".\r\n". */
bool smtp_dot_stuff_end(struct smtp_dot_stuffer *d, struct buf *out);

#endif
