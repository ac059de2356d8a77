/*
 * smtp_parse.h - pure SMTP parsers: command lines, paths (addresses) and their
 * parameters, the DATA stream (dot-unstuffing and end-of-data detection) and
 * BDAT arguments. No I/O, no globals: unit tests and fuzzers call them
 * directly on bytes.
 *
 * Security notes:
 * - End of data is <CRLF>.<CRLF> and nothing else. A bare LF or a bare CR
 *   anywhere in the data sets a flag (the session refuses such a message),
 *   and never ends the message: "\n.\n", "\r.\r", "\n.\r\n" are data.
 * - Paths are checked for forms that smuggle a relay through a local domain:
 *   '%' or '!' in the local part, a quoted local part containing '@', source
 *   routes. The parser reports them; policy is the session's.
 */
#ifndef DAKIYA_SMTP_PARSE_H
#define DAKIYA_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum smtp_verb {
	SMTP_CMD_UNKNOWN = 0,
	SMTP_CMD_HELO,
	SMTP_CMD_EHLO,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_BDAT,
	SMTP_CMD_RSET,
	SMTP_CMD_NOOP,
	SMTP_CMD_QUIT,
	SMTP_CMD_VRFY,
	SMTP_CMD_EXPN,
	SMTP_CMD_HELP,
	SMTP_CMD_STARTTLS,
	SMTP_CMD_AUTH,
	/* verbs a web client sends: the session ends at once */
	SMTP_CMD_HTTP,
	SMTP_CMD__COUNT
};

/* Split a command line (without its CRLF; NUL-terminated, len bytes) into the
 * verb and the argument. The verb is matched case-insensitively; *arg points
 * into line after the verb and its separating space(s) ("" if none). Returns
 * the verb, SMTP_CMD_UNKNOWN for anything else. GET/POST/HEAD/PUT/CONNECT
 * followed by a space give SMTP_CMD_HTTP. */
enum smtp_verb smtp_parse_verb(const char *line, size_t len, const char **arg);

/* A line is acceptable as a command if it has no NUL, CR or LF inside and
 * is not longer than max. */
bool smtp_line_ok(const char *line, size_t len);
/* smtp_line_ok() uses this max (bytes, without the CRLF; the default of the
 * config's line_length). The I/O layer enforces the configured limit. */
#define SMTP_LINE_MAX 4096
/* The same check with an explicit max, e.g. the configured line length. */
bool smtp_line_ok_max(const char *line, size_t len, size_t max);

#define SMTP_LOCAL_MAX 256 /* RFC says 64; real SRS/VERP senders exceed it */
#define SMTP_DOMAIN_MAX 255
#define SMTP_PARAMS_MAX 16

struct smtp_path {
	char local[SMTP_LOCAL_MAX + 1];   /* local part, unquoted (quotes and \-escapes removed) */
	char domain[SMTP_DOMAIN_MAX + 1]; /* domain as sent, or the address literal with [] */
	bool null;                        /* "<>" (only valid for MAIL FROM) */
	bool postmaster;   /* "<postmaster>" without domain (RCPT only, RFC 5321 4.5.1) */
	bool quoted;       /* local part was a quoted-string */
	bool route;        /* had a source route "@a,@b:" (ignored, RFC 5321 4.1.2) */
	bool relay_syntax; /* '%' or '!' in the local part, or a quoted local part with '@' */
	bool utf8;         /* non-ASCII bytes in local part or domain */
	bool literal;      /* domain is an address literal [..] */
};

struct smtp_param {
	char *key;   /* points into the parsed line (which the parser modifies) */
	char *value; /* NULL if the parameter has no "=value" */
};

struct smtp_mail_args {
	struct smtp_path path;
	size_t nparams;
	struct smtp_param params[SMTP_PARAMS_MAX];
};

enum smtp_path_err {
	SMTP_PATH_OK = 0,
	SMTP_PATH_SYNTAX,   /* 501 5.1.7 (MAIL) / 501 5.1.3 (RCPT) */
	SMTP_PATH_TOO_LONG, /* 501 5.1.3 / 5.1.7 */
	SMTP_PATH_PARAMS,   /* bad parameter syntax or too many: 501 5.5.4 */
};

/* Parse the argument of MAIL ("FROM:<path> params") or RCPT ("TO:<path> params").
 * arg is modified in place (parameters are split at spaces and '='). The
 * "FROM:"/"TO:" keyword is case-insensitive; a space after the colon is
 * tolerated. The path must be in angle brackets. For MAIL, "<>" sets null;
 * for RCPT, "<postmaster>" (any case) sets postmaster. Non-ASCII bytes are
 * accepted (utf8 set) so that the session can require SMTPUTF8. */
enum smtp_path_err smtp_parse_mail(char *arg, struct smtp_mail_args *out);
enum smtp_path_err smtp_parse_rcpt(char *arg, struct smtp_mail_args *out);

/* Check a domain name (or address literal) as EHLO/HELO argument or path
 * domain: dot-separated labels of letters, digits, '-', (UTF-8 allowed if
 * utf8_ok), or "[IPv4]" / "[IPv6:...]". */
bool smtp_domain_ok(const char *d, bool utf8_ok);

/* BDAT argument: "<chunk-size> [LAST]". false on syntax error. */
bool smtp_parse_bdat(const char *arg, uint64_t *size, bool *last);

/* Parse a decimal uint64 (SIZE=), digits only, no overflow. */
bool smtp_parse_u64(const char *s, uint64_t *out);

/* ---- DATA stream ---- */
enum smtp_data_state {
	SMTP_DATA_LINE_START = 0, /* at the start of a line (initial state) */
	SMTP_DATA_MIDLINE,
	SMTP_DATA_CR,     /* saw CR, waiting for LF */
	SMTP_DATA_DOT,    /* saw '.' at the start of a line */
	SMTP_DATA_DOT_CR, /* saw ".\r" at the start of a line */
	SMTP_DATA_END,    /* saw <CRLF>.<CRLF>: done */
};

struct smtp_data_parser {
	enum smtp_data_state state;
	uint64_t size; /* unstuffed bytes of message content so far */
	bool bare_lf;  /* a LF not preceded by CR was seen */
	bool bare_cr;  /* a CR not followed by LF was seen */
	bool discard;  /* caller sets: count but do not output (over size) */
};

void smtp_data_init(struct smtp_data_parser *p);
/* Feed len bytes. Unstuffed content is appended to out (unless discard).
 * Returns the number of bytes consumed: all of them, or fewer when the end
 * of data was reached (state SMTP_DATA_END) -- what follows belongs to the
 * next command. Content never includes the final ".\r\n"; the CRLF before
 * it is part of the content (the last line's end). */
size_t smtp_data_feed(struct smtp_data_parser *p, const char *in, size_t len, struct buf *out);
static inline bool smtp_data_done(const struct smtp_data_parser *p)
{
	return p->state == SMTP_DATA_END;
}

/* ---- header summary ---- */
/* Find the first header field `name` (case-insensitive) in the header section
 * at the start of msg (up to the first empty line or len), unfold it (CRLF
 * followed by WSP removed), trim it, and put at most max bytes of its value
 * into out. Returns true if found. out is reset first (and left empty when
 * the field is absent); a cut never splits a UTF-8 sequence. Lines may end in
 * CRLF or a bare LF. */
bool smtp_header_get(const char *msg, size_t len, const char *name, struct buf *out, size_t max);
/* Peer text for a header field we write: printable ASCII except ( ) \ ;
 * (anything else becomes "_"), at most max bytes (a word: a host name, an
 * address, a property value). */
void smtp_header_put_word(struct buf *b, const char *p, size_t max);
/* The same for a comment: printable ASCII and spaces, no ( ) \ (RFC 5322
 * ctext; anything else becomes a space). */
void smtp_header_put_comment(struct buf *b, const char *p, size_t max);
/* Length of the header section (up to and including the empty line), or len
 * if none is found. */
size_t smtp_header_section_len(const char *msg, size_t len);

/* ---- header section size, incrementally ---- */
/* Follows message content as it streams by and finds where the header
 * section ends: at the first empty line (CRLF CRLF, or bare LF LF), or at
 * once if the content starts with an empty line. */
struct smtp_hdr_scan {
	uint64_t size; /* bytes of header section so far (including the empty line once done) */
	unsigned char prev[2]; /* the last two bytes seen */
	bool done;             /* the empty line was seen */
};
void smtp_hdr_scan_init(struct smtp_hdr_scan *h);

/* Append the header section h[0..len) to out without the
 * Authentication-Results fields whose authserv-id is id (case-insensitive):
 * a receiver removes those claiming to be its own before it adds its own
 * (RFC 8601 5). Everything else is copied byte for byte; a field is its
 * first line and its folded continuation lines. Returns the number of
 * fields removed. Pure. */
size_t smtp_strip_auth_results(const char *h, size_t len, const char *id, struct buf *out);
/* Feed content bytes; returns h->done. */
bool smtp_hdr_scan_feed(struct smtp_hdr_scan *h, const char *p, size_t len);

#endif
