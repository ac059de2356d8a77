/*
 * addr.h - RFC 5322 addresses in header fields (From:, Sender:, To:, Cc:,
 * Bcc:, Reply-To:): a pure parser of address lists.
 *
 * Accepts the RFC 5322 3.4 grammar (mailbox, name-addr with display name,
 * angle-addr, group "name: a, b;", comments (nested), quoted strings,
 * folding whitespace) and the common obsolete forms of 4.4 (obs-route in
 * angle-addr, obs-local-part with CFWS around dots, empty list elements).
 * UTF-8 in display names, local parts and domains is accepted (RFC 6532).
 * Encoded words (RFC 2047) in display names are left as they are.
 *
 * The input is one header field's value, unfolded or not (CRLF followed by
 * WSP is whitespace). No I/O, no globals; the output is malloc'ed.
 * Comments carry no meaning and are dropped ("a@b (Name)" has display "").
 * Non-ASCII bytes must be valid UTF-8 and control characters other than TAB
 * are refused, so output fields never hold CR, LF or NUL. addr.c lists the
 * obsolete forms accepted beyond these.
 */
#ifndef DAKIYA_MIME_ADDR_H
#define DAKIYA_MIME_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define MIME_ADDR_MAX 1000 /* addresses in one list */

struct mime_addr {
	char *display; /* display name, unquoted, "" if none */
	char *local;   /* local part, unquoted */
	char *domain;  /* domain as written (no brackets removed from literals) */
	char *group;   /* the group's display name if inside a group, else NULL */
};

struct mime_addr_list {
	struct mime_addr *v;
	size_t n;
};

enum mime_addr_rc {
	MIME_ADDR_OK = 0,
	MIME_ADDR_SYNTAX,   /* not an address list */
	MIME_ADDR_TOO_MANY, /* over MIME_ADDR_MAX */
	MIME_ADDR_NOMEM,
};

/* Parse s[0..len) into out (which it initialises). Empty groups give no
 * address. On error out is empty. */
enum mime_addr_rc mime_addr_list_parse(const char *s, size_t len, struct mime_addr_list *out);
void mime_addr_list_free(struct mime_addr_list *l); /* NULL ok */

struct buf;
/* Append l as an address-list field value to out (no folding): display names
 * and group names as atoms when they are atoms separated by single spaces,
 * else quoted; local parts as dot-atoms or quoted. Parsing the result gives
 * the same addresses back. False if a field cannot be written (control
 * characters, bad UTF-8, an empty or malformed domain) or out failed. */
bool mime_addr_list_render(const struct mime_addr_list *l, struct buf *out);

#endif
