/*
 * sasl.c - strict base64 (RFC 4648) and the PLAIN (RFC 4616) and LOGIN
 * decoders for SMTP AUTH (see sasl.h).
 *
 * base64 is canonical-only: the alphabet without whitespace, '=' padding to a
 * multiple of 4 and only in the last quantum, and the unused bits of the last
 * character zero (RFC 4648 3.5), so every accepted string is exactly the
 * encoding of what it decodes to. The one exception is "=" alone, which RFC
 * 4954 uses for an empty initial response.
 *
 * Security: credentials are decoded into a stack array that is wiped before
 * return; output buffers get their room reserved before the first byte is
 * written, so no realloc leaves a stray copy on the heap, and they are wiped
 * and emptied on every failure. Nothing here logs.
 */
#include "auth/sasl.h"

#include <stdint.h>
#include <string.h>

#include "core/util.h"

/* Decoded bytes of a PLAIN message: three fields and two separators. */
#define PLAIN_MAX (3 * SASL_FIELD_MAX + 2)
/* Longest base64 text for n decoded bytes. */
#define B64_LEN(n) (((n) + 2) / 3 * 4)

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Decode in into out (room for len / 4 * 3 bytes); false on any deviation
 * from canonical base64. */
static bool b64_decode_raw(const char *in, size_t len, unsigned char *out, size_t *outlen)
{
	*outlen = 0;
	if (len == 1 && in[0] == '=')
		return true;
	if (len % 4 != 0)
		return false;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		const unsigned char *q = (const unsigned char *)in + i;
		bool last = i + 4 == len;
		int pad = 0;
		if (last && q[3] == '=')
			pad = q[2] == '=' ? 2 : 1;
		int v[4] = {0, 0, 0, 0};
		for (int k = 0; k < 4 - pad; k++)
			if ((v[k] = util_base64_value(q[k])) < 0)
				return false;
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		             (uint32_t)v[3];
		/* the bits that padding drops must be zero (canonical form) */
		if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))
			return false;
		out[o++] = (unsigned char)(w >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(w >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)w;
	}
	*outlen = o;
	return true;
}

/* Wipe a buf's whole allocation and empty it. */
static void buf_wipe(struct buf *b)
{
	if (b->data != NULL)
		explicit_bzero(b->data, b->alloc);
	buf_reset(b);
}

/* Replace b's contents with p[0..n) in one allocation step. */
static bool buf_set_secret(struct buf *b, const void *p, size_t n)
{
	buf_wipe(b);
	if (buf_reserve(b, n) == NULL)
		return false;
	return buf_append(b, p, n);
}

bool sasl_b64_decode(const char *in, size_t len, struct buf *out)
{
	buf_wipe(out);
	/* exact room (what padding drops is not reserved), so that a cap of
	 * exactly the decoded size suffices */
	size_t room = len / 4 * 3;
	if (len % 4 == 0 && len > 0 && in[len - 1] == '=')
		room -= in[len - 2] == '=' ? 2 : 1;
	char *dst = buf_reserve(out, room);
	if (dst == NULL)
		return false;
	size_t n;
	if (!b64_decode_raw(in, len, (unsigned char *)dst, &n)) {
		explicit_bzero(dst, room);
		buf_reset(out);
		return false;
	}
	out->len = n;
	out->data[n] = '\0';
	return true;
}

void sasl_b64_encode(const void *in, size_t len, struct buf *out)
{
	const unsigned char *p = in;
	buf_reset(out);
	char *dst = buf_reserve(out, B64_LEN(len));
	if (dst == NULL)
		return;
	size_t o = 0, i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t w = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		dst[o++] = b64_alphabet[w >> 18 & 63];
		dst[o++] = b64_alphabet[w >> 12 & 63];
		dst[o++] = b64_alphabet[w >> 6 & 63];
		dst[o++] = b64_alphabet[w & 63];
	}
	if (i < len) {
		uint32_t w = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			w |= (uint32_t)p[i + 1] << 8;
		dst[o++] = b64_alphabet[w >> 18 & 63];
		dst[o++] = b64_alphabet[w >> 12 & 63];
		dst[o++] = i + 1 < len ? b64_alphabet[w >> 6 & 63] : '=';
		dst[o++] = '=';
	}
	out->len = o;
	out->data[o] = '\0';
}

static bool is_cancel(const char *b64, size_t len)
{
	return len == 1 && b64[0] == '*';
}

enum sasl_rc sasl_plain_decode(
    const char *b64, size_t len, struct buf *authzid, struct buf *authcid, struct buf *passwd)
{
	buf_wipe(authzid);
	buf_wipe(authcid);
	buf_wipe(passwd);
	if (is_cancel(b64, len))
		return SASL_CANCELLED;
	if (len > B64_LEN(PLAIN_MAX))
		return SASL_TOO_LONG;

	unsigned char tmp[B64_LEN(PLAIN_MAX) / 4 * 3];
	size_t n;
	enum sasl_rc rc = SASL_OK;
	if (!b64_decode_raw(b64, len, tmp, &n)) {
		rc = SASL_BAD_BASE64;
		goto out;
	}
	/* exactly two NULs split the three fields */
	const unsigned char *nul1 = memchr(tmp, '\0', n);
	const unsigned char *nul2 =
	    nul1 ? memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - tmp)) : NULL;
	if (nul2 == NULL || memchr(nul2 + 1, '\0', n - (size_t)(nul2 + 1 - tmp)) != NULL) {
		rc = SASL_BAD_FORMAT;
		goto out;
	}
	size_t zlen = (size_t)(nul1 - tmp);
	size_t clen = (size_t)(nul2 - nul1 - 1);
	size_t plen = n - (size_t)(nul2 + 1 - tmp);
	if (clen == 0 || plen == 0) {
		rc = SASL_BAD_FORMAT;
		goto out;
	}
	if (zlen > SASL_FIELD_MAX || clen > SASL_FIELD_MAX || plen > SASL_FIELD_MAX) {
		rc = SASL_TOO_LONG;
		goto out;
	}
	if (!buf_set_secret(authzid, tmp, zlen) || !buf_set_secret(authcid, nul1 + 1, clen) ||
	    !buf_set_secret(passwd, nul2 + 1, plen))
		rc = SASL_TOO_LONG; /* the caller's buffers are capped below the field size */
out:
	explicit_bzero(tmp, sizeof tmp);
	if (rc != SASL_OK) {
		buf_wipe(authzid);
		buf_wipe(authcid);
		buf_wipe(passwd);
	}
	return rc;
}

enum sasl_rc sasl_login_decode(const char *b64, size_t len, struct buf *out)
{
	buf_wipe(out);
	if (is_cancel(b64, len))
		return SASL_CANCELLED;
	if (len > B64_LEN(SASL_FIELD_MAX))
		return SASL_TOO_LONG;

	unsigned char tmp[B64_LEN(SASL_FIELD_MAX) / 4 * 3];
	size_t n;
	enum sasl_rc rc = SASL_OK;
	if (!b64_decode_raw(b64, len, tmp, &n))
		rc = SASL_BAD_BASE64;
	else if (n == 0 || memchr(tmp, '\0', n) != NULL)
		rc = SASL_BAD_FORMAT;
	else if (n > SASL_FIELD_MAX || !buf_set_secret(out, tmp, n))
		rc = SASL_TOO_LONG;
	explicit_bzero(tmp, sizeof tmp);
	if (rc != SASL_OK)
		buf_wipe(out);
	return rc;
}
