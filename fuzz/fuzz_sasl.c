/*
 * fuzz_sasl.c - libFuzzer target for the AUTH payload decoders (sasl.h).
 *
 * The input is one AUTH response line (without CRLF). Checked invariants:
 *  - base64: anything accepted is canonical, so encoding the result gives
 *    back the input exactly ("=" aside, the empty response); encoding the
 *    raw input and decoding that gives back the input;
 *  - PLAIN: a result is one of the enum values; on SASL_OK the fields obey
 *    the contract (authcid and passwd non-empty, no NUL, each at most
 *    SASL_FIELD_MAX) and re-encoding authzid NUL authcid NUL passwd gives
 *    the input; on failure all three outputs are empty;
 *  - LOGIN: the same for one field.
 * Any violation aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"

#include "fuzz_check.h"

static bool same(const struct buf *b, const uint8_t *p, size_t n)
{
	return b->len == n && (n == 0 || memcmp(b->data, p, n) == 0);
}

static bool is_empty_response(const uint8_t *data, size_t size)
{
	return size == 1 && data[0] == '=';
}

static void field_ok(const struct buf *f, bool may_be_empty)
{
	CHECK(f->len <= SASL_FIELD_MAX);
	CHECK(may_be_empty || f->len > 0);
	CHECK(f->len == 0 || memchr(f->data, '\0', f->len) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct buf d = BUF_INIT, e = BUF_INIT, z = BUF_INIT, c = BUF_INIT, p = BUF_INIT;

	/* base64 both ways */
	if (sasl_b64_decode(in, size, &d)) {
		CHECK(!buf_err(&d));
		sasl_b64_encode(d.data, d.len, &e);
		CHECK(is_empty_response(data, size) ? e.len == 0 : same(&e, data, size));
	} else {
		CHECK(d.len == 0);
	}
	sasl_b64_encode(data, size, &e);
	CHECK(e.len == (size + 2) / 3 * 4);
	CHECK(sasl_b64_decode(buf_cstr(&e), e.len, &d));
	CHECK(same(&d, data, size));

	/* PLAIN */
	enum sasl_rc rc = sasl_plain_decode(in, size, &z, &c, &p);
	switch (rc) {
	case SASL_OK:
		field_ok(&z, true);
		field_ok(&c, false);
		field_ok(&p, false);
		buf_reset(&d);
		buf_append(&d, buf_cstr(&z), z.len);
		buf_putc(&d, '\0');
		buf_append(&d, buf_cstr(&c), c.len);
		buf_putc(&d, '\0');
		buf_append(&d, buf_cstr(&p), p.len);
		sasl_b64_encode(d.data, d.len, &e);
		CHECK(same(&e, data, size));
		break;
	case SASL_CANCELLED:
		CHECK(size == 1 && data[0] == '*');
		/* fall through */
	case SASL_BAD_BASE64:
	case SASL_BAD_FORMAT:
	case SASL_TOO_LONG:
		CHECK(z.len == 0 && c.len == 0 && p.len == 0);
		break;
	default:
		abort();
	}

	/* LOGIN */
	rc = sasl_login_decode(in, size, &d);
	switch (rc) {
	case SASL_OK:
		field_ok(&d, false);
		sasl_b64_encode(d.data, d.len, &e);
		CHECK(same(&e, data, size));
		break;
	case SASL_CANCELLED:
		CHECK(size == 1 && data[0] == '*');
		/* fall through */
	case SASL_BAD_BASE64:
	case SASL_BAD_FORMAT:
	case SASL_TOO_LONG:
		CHECK(d.len == 0);
		break;
	default:
		abort();
	}

	buf_free(&d);
	buf_free(&e);
	buf_free(&z);
	buf_free(&c);
	buf_free(&p);
	return 0;
}
