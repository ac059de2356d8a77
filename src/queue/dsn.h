/*
 * dsn.h - delivery status notifications (RFC 3464 / RFC 6522) and the
 * RFC 3461 DSN parameters of MAIL and RCPT.
 *
 * Two halves, both pure (no globals; no I/O except reading the original
 * message from a path when the caller gives a path instead of bytes):
 *
 * - dsn_build() writes a complete RFC 5322 message (CRLF line ends) into a
 *   struct buf: a multipart/report; report-type=delivery-status with a
 *   human-readable text/plain part, a message/delivery-status part, and the
 *   original message's header section (text/rfc822-headers) or, for RET=FULL
 *   failures under a size cap, the whole message (message/rfc822). One report
 *   may mix failed, delayed and delivered recipients; the Subject follows the
 *   worst of them.
 *
 * - dsn_parse_notify/ret/envid/orcpt() validate the parameter values the SMTP
 *   server receives, and dsn_xtext_encode/decode() implement RFC 3461 4.
 *
 * THE CALLER MUST SEND EVERY DSN WITH THE NULL REVERSE-PATH (MAIL FROM:<>),
 * and must never ask for a DSN about a message whose envelope sender is
 * null: dsn_build() refuses that with DSN_ERR_NULL_SENDER (log it, drop the
 * report). Together these make a bounce of a bounce impossible (RFC 3461
 * 6.2, RFC 5321 4.5.5). Every DSN also carries Auto-Submitted: auto-replied
 * (RFC 3834) so that vacation responders stay silent.
 *
 * Transport: a notification can hold 8-bit text (a UTF-8 address, or the
 * original's 8-bit headers or body; it then carries Content-Transfer-
 * Encoding: 8bit). Send it with BODY=8BITMIME, and with SMTPUTF8 when the
 * envelope sender is not ASCII (To: holds it, RFC 6532); dot-stuffing for
 * DATA is the caller's too.
 *
 * Security: every string that reaches a header field or a DSN field (the
 * addresses, ENVID, ORCPT, the remote reply, the remote host, the original
 * Subject) is neutralised first: CR, LF and other control bytes become spaces
 * (or \x{..} escapes inside utf-8 addresses), so no input can start a header
 * line or a MIME part. The boundary is random and checked against all the
 * content it separates.
 */
#ifndef DAKIYA_QUEUE_DSN_H
#define DAKIYA_QUEUE_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"

/* ---- RFC 3461 parameters ---- */

#define DSN_NOTIFY_NEVER 0x01u
#define DSN_NOTIFY_SUCCESS 0x02u
#define DSN_NOTIFY_FAILURE 0x04u
#define DSN_NOTIFY_DELAY 0x08u
/* No NOTIFY given: RFC 3461 4.1 says FAILURE, and DELAY at the MTA's choice. */
#define DSN_NOTIFY_DEFAULT (DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY)

enum dsn_ret {
	DSN_RET_DEFAULT = 0, /* not given: headers only */
	DSN_RET_HDRS,
	DSN_RET_FULL,
};

#define DSN_ENVID_MAX 100 /* decoded bytes (RFC 3461 4.4) */
#define DSN_ORCPT_MAX 500 /* the whole parameter value (RFC 3461 4.2) */
#define DSN_ADDR_TYPE_MAX 32

/* NOTIFY=: "NEVER", or a comma-separated list of SUCCESS, FAILURE, DELAY
 * (case-insensitive, each at most once). NEVER with anything else, an empty
 * element or an unknown word: false. *out gets DSN_NOTIFY_* bits. */
bool dsn_parse_notify(const char *v, size_t len, unsigned *out);
/* Append the NOTIFY value for bits (e.g. "FAILURE,DELAY") for the next hop;
 * false if bits is not a valid combination. */
bool dsn_notify_render(unsigned bits, struct buf *out);

/* RET=: FULL or HDRS (case-insensitive). */
bool dsn_parse_ret(const char *v, size_t len, enum dsn_ret *out);

/* ENVID=: xtext whose decoded value is 1..DSN_ENVID_MAX printable ASCII
 * bytes (0x20..0x7e). out is reset and gets the decoded value. */
bool dsn_parse_envid(const char *v, size_t len, struct buf *out);

struct dsn_orcpt {
	char type[DSN_ADDR_TYPE_MAX + 1]; /* address type as sent ("rfc822", "utf-8", ...) */
	char addr[DSN_ORCPT_MAX + 1];     /* the decoded address (not re-validated, RFC 3461 4.2) */
};

/* ORCPT=: addr-type ";" xtext, at most DSN_ORCPT_MAX bytes. addr-type is an
 * atom of letters, digits and '-'. The decoded address must be non-empty,
 * printable ASCII, or valid UTF-8 without control characters when the type
 * is utf-8 (RFC 6533 allows raw UTF-8 there in SMTPUTF8 sessions). */
bool dsn_parse_orcpt(const char *v, size_t len, struct dsn_orcpt *out);
/* Append "type;xtext" for the next hop. */
bool dsn_orcpt_render(const struct dsn_orcpt *o, struct buf *out);

/* RFC 3461 4 xtext. Decoding: xchar (0x21..0x7e except '+' and '=') as it
 * is, "+HH" as the byte 0xHH (upper-case hex; lower case is accepted);
 * anything else is an error. Binary-safe: out gets the decoded bytes.
 * Encoding writes upper-case hex for '+', '=', and every byte outside
 * 0x21..0x7e. */
bool dsn_xtext_decode(const char *in, size_t len, struct buf *out);
bool dsn_xtext_encode(const void *in, size_t len, struct buf *out);

/* Append addr as an RFC 6533 utf-8-addr-xtext: graphic ASCII other than
 * '+', '=' and '\' as it is, every other character (non-ASCII code points
 * included) as "\x{HEX}". The result is pure ASCII. False on invalid UTF-8. */
bool dsn_utf8_addr_encode(const char *addr, size_t len, struct buf *out);

/* ---- building a notification ---- */

enum dsn_action {
	DSN_ACTION_FAILED = 0,
	DSN_ACTION_DELAYED,
	DSN_ACTION_DELIVERED,
	DSN_ACTION_RELAYED,  /* passed on to a next hop without DSN support */
	DSN_ACTION_EXPANDED, /* delivered to an alias/list that expanded it */
};

struct dsn_recipient {
	const char *addr;       /* the envelope recipient, RFC 5321 form without <>; UTF-8 ok */
	const char *orcpt_type; /* ORCPT address type, NULL if no ORCPT was given */
	const char *orcpt;      /* ORCPT address, decoded (struct dsn_orcpt's addr) */
	enum dsn_action action;
	/* RFC 3463 status "5.1.1"; NULL or invalid: the action's default
	 * (5.0.0, 4.0.0, 2.0.0). A failed recipient may have a 4.x.x status (it
	 * expired after temporary failures); other mismatches use the default. */
	const char *status;
	const char *diagnostic; /* the remote reply "550 5.1.1 <a@b>: unknown", NULL if none */
	const char *remote_mta; /* the host that gave it, NULL if none */
	time_t last_attempt;    /* 0 if none */
};

struct dsn_message {
	const char *hostname; /* ours: From: MAILER-DAEMON@, Reporting-MTA, Message-ID */
	const char *queue_id; /* the original message's queue id */
	const char *sender;   /* the envelope sender (RFC 5321 form without <>): To: */
	const char *envid;    /* decoded ENVID, NULL if none */
	enum dsn_ret ret;
	time_t arrival;     /* when we accepted the message */
	time_t retry_until; /* delays: when we give up (Will-Retry-Until) */
	/* The original message: bytes (msg, msg_len), or, when msg is NULL, a
	 * file to read (msg_path); neither: the report says it is unavailable. */
	const char *msg;
	size_t msg_len;
	const char *msg_path;
	size_t full_max; /* RET=FULL returns at most this much; 0: DSN_FULL_MAX */
	time_t now;      /* Date:; 0: time(NULL) */
	/* Random bytes for the boundary and Message-ID; NULL: util_random. */
	void (*random)(void *p, size_t n);
};

#define DSN_FULL_MAX ((size_t)1024 * 1024)   /* RET=FULL cap: bigger messages return headers */
#define DSN_HEADERS_MAX ((size_t)256 * 1024) /* at most this much of the header section */
#define DSN_DIAG_MAX 2048                    /* bytes of one diagnostic kept */
#define DSN_RCPT_MAX 1000

enum dsn_rc {
	DSN_OK = 0,
	DSN_ERR_NULL_SENDER, /* the message had MAIL FROM:<>: never report on it */
	DSN_ERR_INVALID,     /* no recipients, too many, or a required field missing */
	DSN_ERR_IO,          /* msg_path could not be read */
	DSN_ERR_NOMEM,       /* out of memory, or out's cap reached */
};

const char *dsn_rc_str(enum dsn_rc rc);

/* Append the notification about n recipients to out (a complete message,
 * headers and body, CRLF line ends; ready for DATA after dot-stuffing).
 * On error out is left as it was. */
enum dsn_rc dsn_build(
    const struct dsn_message *m, const struct dsn_recipient *r, size_t n, struct buf *out);

#endif
