/*
 * smtp_reply.h - pure parser of SMTP server replies, for the outbound client.
 *
 * Bytes from the peer go in, complete replies come out: the 3-digit code,
 * the enhanced status code (RFC 3463/2034) when the first line carries one,
 * and the text of every line. Multi-line replies ("250-..." continuations,
 * RFC 5321 4.2.1) must carry the same code on every line. A reply to EHLO
 * can then be turned into a capabilities struct (smtp_caps_parse).
 *
 * No I/O, no globals; the only allocation is the reply's text buffer.
 *
 * Limits and security notes:
 * - A line longer than SMTP_REPLY_LINE_MAX bytes (without its line end) is an
 *   error as soon as its byte SMTP_REPLY_LINE_MAX + 1 arrives, before any
 *   newline; a reply whose lines total more than SMTP_REPLY_MAX bytes is an
 *   error too. The peer cannot make us buffer more than that.
 * - CRLF ends a line; a bare LF is tolerated (and the CR before it, if any,
 *   is dropped). The reply text never holds CR, LF or NUL: other control
 *   bytes than TAB are replaced by '?', so that it can go into logs and into
 *   DSN fields. Bytes >= 0x80 (SMTPUTF8 servers) are kept as they are.
 * - Errors are sticky: after one, every feed returns SMTP_REPLY_ERROR and the
 *   caller closes the connection (the stream is desynchronised).
 */
#ifndef DAKIYA_SMTP_REPLY_H
#define DAKIYA_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SMTP_REPLY_LINE_MAX 4096   /* bytes per line, without the line end */
#define SMTP_REPLY_MAX (64 * 1024) /* bytes per reply, line ends included */
#define SMTP_REPLY_ESC_MAX 12      /* "5.123.123" plus room */

struct smtp_reply {
	int code;                     /* 200..559 */
	char esc[SMTP_REPLY_ESC_MAX]; /* enhanced status code "5.1.1", "" if none */
	size_t nlines;
	/* The text of every line, code and separator removed (and the enhanced
	 * status code too where a line starts with the first line's one),
	 * lines joined by '\n'. Never contains CR or NUL. */
	struct buf text;
};

enum smtp_reply_rc {
	SMTP_REPLY_NEED_MORE = 0, /* all input consumed, no complete reply yet */
	SMTP_REPLY_DONE,          /* a complete reply is in p->reply */
	SMTP_REPLY_ERROR,         /* protocol error, see p->err; sticky */
};

enum smtp_reply_err {
	SMTP_REPLY_OK = 0,
	SMTP_REPLY_ERR_SYNTAX,        /* no 3-digit code 2xx..5xx, or a bad separator */
	SMTP_REPLY_ERR_CODE_MISMATCH, /* continuation line with another code */
	SMTP_REPLY_ERR_LINE_TOO_LONG, /* over SMTP_REPLY_LINE_MAX */
	SMTP_REPLY_ERR_TOO_LONG,      /* over SMTP_REPLY_MAX */
	SMTP_REPLY_ERR_NOMEM,
};

struct smtp_reply_parser {
	struct smtp_reply reply; /* valid after SMTP_REPLY_DONE, until the next feed */
	enum smtp_reply_err err;
	/* internal */
	char
	    line[SMTP_REPLY_LINE_MAX + 2]; /* the current line, its CR (if any) and one byte more */
	size_t line_len;
	size_t total;  /* bytes of the current reply so far */
	bool in_reply; /* a continuation line was seen: the reply is not complete */
	bool done;     /* the last feed completed a reply: reset before the next */
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);
void smtp_reply_parser_free(struct smtp_reply_parser *p); /* accepts NULL */

/* Feed len bytes. Consumes bytes up to the end of one complete reply and
 * stops there, so that pipelined replies come out one at a time; *used gets
 * the number of bytes consumed (all of them unless DONE). Call again with
 * the rest. After DONE, p->reply holds the reply until the next call. */
enum smtp_reply_rc smtp_reply_feed(
    struct smtp_reply_parser *p, const char *in, size_t len, size_t *used);

/* Is a reply being received (some of its bytes are buffered)? A peer that
 * closes the connection now has cut a reply short. */
bool smtp_reply_pending(const struct smtp_reply_parser *p);

/* Append the reply as one line for logs and Diagnostic-Code fields:
 * "550 5.1.1 first line text second line text" (lines joined by spaces). */
bool smtp_reply_format(const struct smtp_reply *r, struct buf *out);

const char *smtp_reply_err_str(enum smtp_reply_err e);

/* Is s[0..len) an enhanced status code "c.sss.ddd" (RFC 3463: class 2, 4 or
 * 5; subject and detail 1 to 3 digits each)? */
bool smtp_esc_valid(const char *s, size_t len);

/* ---- EHLO capabilities ---- */

#define SMTP_AUTH_PLAIN 0x01u
#define SMTP_AUTH_LOGIN 0x02u
#define SMTP_AUTH_CRAM_MD5 0x04u
#define SMTP_AUTH_SCRAM_SHA_1 0x08u
#define SMTP_AUTH_SCRAM_SHA_256 0x10u
#define SMTP_AUTH_XOAUTH2 0x20u
#define SMTP_AUTH_OTHER 0x80u /* some mechanism not listed above */

struct smtp_caps {
	bool pipelining;          /* RFC 2920 */
	bool size;                /* RFC 1870 */
	uint64_t size_max;        /* SIZE n; 0 = no limit announced (or unparsable) */
	bool eightbitmime;        /* RFC 6152 */
	bool smtputf8;            /* RFC 6531 */
	bool starttls;            /* RFC 3207 */
	bool dsn;                 /* RFC 3461 */
	bool chunking;            /* RFC 3030 */
	bool binarymime;          /* RFC 3030 */
	bool enhancedstatuscodes; /* RFC 2034 */
	bool requiretls;          /* RFC 8689 */
	bool auth;                /* RFC 4954, "AUTH mech..." or the old "AUTH=mech..." */
	unsigned auth_mechs;      /* SMTP_AUTH_* bits */
};

/* Read the capabilities from a reply to EHLO: the first line is the peer's
 * greeting and is skipped; every further line is "keyword *(SP param)",
 * keywords case-insensitive; unknown keywords are ignored. A reply other
 * than 250 gives no capabilities. caps is cleared first. */
void smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps);

#endif
