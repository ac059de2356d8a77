/*
 * sasl.h - pure decoders for SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616)
 * and LOGIN mechanisms, and base64 (RFC 4648). No I/O, no globals.
 *
 * Security: decoded credentials live in caller-owned buffers that the caller
 * wipes (explicit_bzero) after use; nothing here logs. Limits: a credential
 * field over SASL_FIELD_MAX bytes is SASL_TOO_LONG.
 */
#ifndef DAKIYA_SASL_H
#define DAKIYA_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

#define SASL_FIELD_MAX 1024

enum sasl_rc {
	SASL_OK = 0,
	SASL_BAD_BASE64, /* 501 5.5.2 */
	SASL_BAD_FORMAT, /* 501 5.5.2: wrong number of fields, empty user/password, NUL inside */
	SASL_TOO_LONG,   /* 500 5.5.6 */
	SASL_CANCELLED,  /* the client sent "*" (RFC 4954 4): 501 5.0.0 */
};

/* Strict base64: alphabet A-Z a-z 0-9 + /, '=' padding required to a
 * multiple of 4, no whitespace, the bits under the padding zero (canonical
 * form, RFC 4648 3.5); "=" alone (RFC 4954: an empty initial response) and
 * "" decode to empty. Replaces out's contents (emptied on failure; false also
 * when out's cap is too small). */
bool sasl_b64_decode(const char *in, size_t len, struct buf *out);
/* Replaces out's contents with base64 of in. */
void sasl_b64_encode(const void *in, size_t len, struct buf *out);

/* PLAIN: b64 is the (initial) response; decoded "[authzid] NUL authcid NUL
 * passwd". authzid may be empty; authcid and passwd must not be; no NUL
 * inside a field; each at most SASL_FIELD_MAX. "*" = SASL_CANCELLED. */
enum sasl_rc sasl_plain_decode(
    const char *b64, size_t len, struct buf *authzid, struct buf *authcid, struct buf *passwd);

/* LOGIN: one response line (the user name, or the password): base64 of a
 * non-empty string without NUL, at most SASL_FIELD_MAX. "*" = SASL_CANCELLED. */
enum sasl_rc sasl_login_decode(const char *b64, size_t len, struct buf *out);

#endif
