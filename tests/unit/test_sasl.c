/*
 * test_sasl.c - unit tests of the strict base64 codec and the PLAIN and
 * LOGIN decoders (sasl.h): RFC 4648 vectors, every way base64 can deviate
 * from its canonical form, field splitting and limits, cancellation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "auth/sasl.h"
#include "core/buf.h"

/* ---- base64 ---- */

static void test_b64_rfc4648_vectors(void **state)
{
	static const struct {
		const char *raw, *b64;
	} v[] = {
	    {"", ""},
	    {"f", "Zg=="},
	    {"fo", "Zm8="},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="},
	    {"foobar", "Zm9vYmFy"},
	};
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		sasl_b64_encode(v[i].raw, strlen(v[i].raw), &b);
		assert_false(buf_err(&b));
		assert_string_equal(buf_cstr(&b), v[i].b64);
		assert_true(sasl_b64_decode(v[i].b64, strlen(v[i].b64), &b));
		assert_int_equal(b.len, strlen(v[i].raw));
		assert_memory_equal(buf_cstr(&b), v[i].raw, b.len);
	}
	buf_free(&b);
}

static void test_b64_binary_roundtrip(void **state)
{
	unsigned char raw[256];
	for (size_t i = 0; i < sizeof raw; i++)
		raw[i] = (unsigned char)(255 - i);
	struct buf e = BUF_INIT, d = BUF_INIT;
	for (size_t n = 0; n <= sizeof raw; n++) {
		sasl_b64_encode(raw, n, &e);
		assert_int_equal(e.len, (n + 2) / 3 * 4);
		assert_true(sasl_b64_decode(e.data ? e.data : "", e.len, &d));
		assert_int_equal(d.len, n);
		if (n)
			assert_memory_equal(d.data, raw, n);
	}
	/* all 64 characters of the alphabet decode */
	const char *all = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	assert_true(sasl_b64_decode(all, 64, &d));
	assert_int_equal(d.len, 48);
	sasl_b64_encode(d.data, d.len, &e);
	assert_string_equal(buf_cstr(&e), all);
	buf_free(&e);
	buf_free(&d);
}

static void test_b64_empty_and_equals(void **state)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "old");
	assert_true(sasl_b64_decode("=", 1, &b)); /* RFC 4954: empty initial response */
	assert_int_equal(b.len, 0);
	assert_string_equal(buf_cstr(&b), "");
	buf_puts(&b, "old");
	assert_true(sasl_b64_decode("", 0, &b));
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

static void test_b64_refused(void **state)
{
	static const char *const bad[] = {
	    "Zg",        /* no padding */
	    "Zg=",       /* short padding */
	    "Zm9",       /* not a multiple of 4 */
	    "Zm9vY",     /* ditto */
	    "Z===",      /* three pads */
	    "====",      /* only pads */
	    "==",        /* ditto */
	    "=Zg=",      /* pad first */
	    "Zm=v",      /* pad inside a quantum */
	    "Zg==Zg==",  /* pad before the last quantum */
	    "Zm9v====",  /* a quantum of pads */
	    "Zh==",      /* non-zero bits under the padding */
	    "Zm9=",      /* ditto, one pad */
	    "Zm9v\n",    /* whitespace */
	    " Zm9v",     /* ditto */
	    "Zm 9v",     /* ditto */
	    "Zm9v\r\n",  /* ditto */
	    "Zm9v\t",    /* ditto */
	    "Zm9-",      /* base64url alphabet */
	    "Zm9_",      /* ditto */
	    "Zm9.",      /* junk */
	    "Zm9\x80",   /* high byte */
	    "*",         /* the cancel marker is not base64 */
	    "Zm9vYmFy=", /* padding past a full quantum */
	};
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		buf_puts(&b, "old");
		if (sasl_b64_decode(bad[i], strlen(bad[i]), &b))
			fail_msg("accepted bad base64 #%zu \"%s\"", i, bad[i]);
		assert_int_equal(b.len, 0);
	}
	/* a NUL byte inside the text */
	assert_false(sasl_b64_decode("Zm\0v", 4, &b));
	assert_false(sasl_b64_decode("Zm9v\0\0\0\0", 8, &b));
	buf_free(&b);
}

static void test_b64_cap(void **state)
{
	struct buf b;
	buf_init(&b, 5);
	assert_false(sasl_b64_decode("Zm9vYmFy", 8, &b)); /* 6 bytes > cap 5 */
	assert_true(buf_err(&b));
	buf_reset(&b);
	assert_true(sasl_b64_decode("Zm9vYmE=", 8, &b));
	assert_string_equal(buf_cstr(&b), "fooba");
	buf_free(&b);
}

/* ---- PLAIN ---- */

struct plain {
	struct buf z, c, p;
};

/* Encode raw (n bytes) and run the PLAIN decoder on it. */
static enum sasl_rc plain_raw(struct plain *o, const char *raw, size_t n)
{
	struct buf e = BUF_INIT;
	sasl_b64_encode(raw, n, &e);
	enum sasl_rc rc = sasl_plain_decode(buf_cstr(&e), e.len, &o->z, &o->c, &o->p);
	buf_free(&e);
	return rc;
}

static void plain_free(struct plain *o)
{
	buf_free(&o->z);
	buf_free(&o->c);
	buf_free(&o->p);
}

static void assert_plain_empty(const struct plain *o)
{
	assert_int_equal(o->z.len, 0);
	assert_int_equal(o->c.len, 0);
	assert_int_equal(o->p.len, 0);
}

static void test_plain_ok(void **state)
{
	struct plain o = {BUF_INIT, BUF_INIT, BUF_INIT};
	/* RFC 4616 section 4 examples */
	const char *b64 = "AHRpbQB0YW5zdGFhZnRhbnN0YWFm";
	assert_int_equal(sasl_plain_decode(b64, strlen(b64), &o.z, &o.c, &o.p), SASL_OK);
	assert_string_equal(buf_cstr(&o.z), "");
	assert_string_equal(buf_cstr(&o.c), "tim");
	assert_string_equal(buf_cstr(&o.p), "tanstaaftanstaaf");
	b64 = "VXJzZWwAS3VydAB4aXBqM3BsbXE=";
	assert_int_equal(sasl_plain_decode(b64, strlen(b64), &o.z, &o.c, &o.p), SASL_OK);
	assert_string_equal(buf_cstr(&o.z), "Ursel");
	assert_string_equal(buf_cstr(&o.c), "Kurt");
	assert_string_equal(buf_cstr(&o.p), "xipj3plmq");

	/* an authzid equal to the user; UTF-8 and spaces are data */
	static const char r1[] = "alice@example.com\0alice@example.com\0p\xc3\xa4ss w0rd";
	assert_int_equal(plain_raw(&o, r1, sizeof r1 - 1), SASL_OK);
	assert_string_equal(buf_cstr(&o.z), "alice@example.com");
	assert_string_equal(buf_cstr(&o.c), "alice@example.com");
	assert_string_equal(buf_cstr(&o.p), "p\xc3\xa4ss w0rd");

	/* fields of exactly SASL_FIELD_MAX bytes */
	char big[3 * SASL_FIELD_MAX + 2];
	memset(big, 'a', sizeof big);
	big[SASL_FIELD_MAX] = '\0';
	big[2 * SASL_FIELD_MAX + 1] = '\0';
	assert_int_equal(plain_raw(&o, big, sizeof big), SASL_OK);
	assert_int_equal(o.z.len, SASL_FIELD_MAX);
	assert_int_equal(o.c.len, SASL_FIELD_MAX);
	assert_int_equal(o.p.len, SASL_FIELD_MAX);
	plain_free(&o);
}

static void test_plain_bad_format(void **state)
{
	static const struct {
		const char *raw;
		size_t n;
	} v[] = {
	    {"", 0},                /* nothing */
	    {"tim", 3},             /* one field */
	    {"tim\0pass", 8},       /* two fields */
	    {"\0tim", 4},           /* two fields, empty authzid */
	    {"\0\0pass", 6},        /* empty authcid */
	    {"\0tim\0", 5},         /* empty password */
	    {"\0\0", 2},            /* all empty */
	    {"\0tim\0pa\0ss", 10},  /* NUL inside the password */
	    {"z\0tim\0pass\0", 11}, /* trailing NUL: four fields */
	    {"\0\0tim\0pass", 10},  /* leading extra field */
	};
	struct plain o = {BUF_INIT, BUF_INIT, BUF_INIT};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		buf_puts(&o.p, "stale");
		if (plain_raw(&o, v[i].raw, v[i].n) != SASL_BAD_FORMAT)
			fail_msg("PLAIN case #%zu not BAD_FORMAT", i);
		assert_plain_empty(&o);
	}
	/* "=": the empty initial response */
	assert_int_equal(sasl_plain_decode("=", 1, &o.z, &o.c, &o.p), SASL_BAD_FORMAT);
	plain_free(&o);
}

static void test_plain_bad_base64_cancel(void **state)
{
	struct plain o = {BUF_INIT, BUF_INIT, BUF_INIT};
	const char *b64 = "AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n";
	assert_int_equal(sasl_plain_decode(b64, strlen(b64), &o.z, &o.c, &o.p), SASL_BAD_BASE64);
	b64 = "AHRpbQB0YW5zdGFhZnRhbnN0YWF";
	assert_int_equal(sasl_plain_decode(b64, strlen(b64), &o.z, &o.c, &o.p), SASL_BAD_BASE64);
	b64 = "AHRpbQB0YW5z dGFhZnRhbnN0YWFm";
	assert_int_equal(sasl_plain_decode(b64, strlen(b64), &o.z, &o.c, &o.p), SASL_BAD_BASE64);
	assert_plain_empty(&o);
	buf_puts(&o.c, "stale");
	assert_int_equal(sasl_plain_decode("*", 1, &o.z, &o.c, &o.p), SASL_CANCELLED);
	assert_plain_empty(&o);
	/* "*" only alone */
	assert_int_equal(sasl_plain_decode("**", 2, &o.z, &o.c, &o.p), SASL_BAD_BASE64);
	assert_int_equal(sasl_plain_decode("*===", 4, &o.z, &o.c, &o.p), SASL_BAD_BASE64);
	plain_free(&o);
}

static void test_plain_too_long(void **state)
{
	struct plain o = {BUF_INIT, BUF_INIT, BUF_INIT};
	char big[5 * SASL_FIELD_MAX];
	memset(big, 'a', sizeof big);
	/* each field one byte over */
	big[0] = '\0';
	big[SASL_FIELD_MAX + 2] = '\0'; /* authcid of SASL_FIELD_MAX + 1 */
	assert_int_equal(plain_raw(&o, big, SASL_FIELD_MAX + 4), SASL_TOO_LONG);
	assert_plain_empty(&o);
	memset(big, 'a', sizeof big);
	big[0] = '\0';
	big[2] = '\0'; /* password of SASL_FIELD_MAX + 1 */
	assert_int_equal(plain_raw(&o, big, 3 + SASL_FIELD_MAX + 1), SASL_TOO_LONG);
	memset(big, 'a', sizeof big);
	big[SASL_FIELD_MAX + 1] = '\0'; /* authzid of SASL_FIELD_MAX + 1 */
	big[SASL_FIELD_MAX + 3] = '\0';
	assert_int_equal(plain_raw(&o, big, SASL_FIELD_MAX + 5), SASL_TOO_LONG);
	/* the whole response longer than three full fields: refused before decoding */
	memset(big, 'A', sizeof big);
	assert_int_equal(sasl_plain_decode(big, sizeof big, &o.z, &o.c, &o.p), SASL_TOO_LONG);
	assert_plain_empty(&o);

	/* the caller's buffer cap is a limit too */
	struct buf small;
	buf_init(&small, 4);
	static const char r[] = "\0alice\0pw";
	struct buf e = BUF_INIT;
	sasl_b64_encode(r, sizeof r - 1, &e);
	assert_int_equal(sasl_plain_decode(e.data, e.len, &o.z, &small, &o.p), SASL_TOO_LONG);
	assert_int_equal(small.len, 0);
	assert_plain_empty(&o);
	buf_free(&e);
	buf_free(&small);
	plain_free(&o);
}

/* ---- LOGIN ---- */

static enum sasl_rc login_raw(struct buf *out, const char *raw, size_t n)
{
	struct buf e = BUF_INIT;
	sasl_b64_encode(raw, n, &e);
	enum sasl_rc rc = sasl_login_decode(buf_cstr(&e), e.len, out);
	buf_free(&e);
	return rc;
}

static void test_login(void **state)
{
	struct buf b = BUF_INIT;
	assert_int_equal(sasl_login_decode("dGlt", 4, &b), SASL_OK);
	assert_string_equal(buf_cstr(&b), "tim");
	assert_int_equal(login_raw(&b, "alice@example.com", 17), SASL_OK);
	assert_string_equal(buf_cstr(&b), "alice@example.com");

	assert_int_equal(sasl_login_decode("=", 1, &b), SASL_BAD_FORMAT);
	assert_int_equal(b.len, 0);
	assert_int_equal(sasl_login_decode("", 0, &b), SASL_BAD_FORMAT);
	assert_int_equal(login_raw(&b, "ti\0m", 4), SASL_BAD_FORMAT);
	assert_int_equal(login_raw(&b, "\0", 1), SASL_BAD_FORMAT);
	assert_int_equal(sasl_login_decode("dGlt\r\n", 6, &b), SASL_BAD_BASE64);
	assert_int_equal(sasl_login_decode("dGl", 3, &b), SASL_BAD_BASE64);
	assert_int_equal(sasl_login_decode("dGl0=", 5, &b), SASL_BAD_BASE64);
	buf_puts(&b, "stale");
	assert_int_equal(sasl_login_decode("*", 1, &b), SASL_CANCELLED);
	assert_int_equal(b.len, 0);

	char big[5 * SASL_FIELD_MAX];
	memset(big, 'x', sizeof big);
	assert_int_equal(login_raw(&b, big, SASL_FIELD_MAX), SASL_OK);
	assert_int_equal(b.len, SASL_FIELD_MAX);
	assert_int_equal(login_raw(&b, big, SASL_FIELD_MAX + 1), SASL_TOO_LONG);
	assert_int_equal(b.len, 0);
	assert_int_equal(login_raw(&b, big, 3 * SASL_FIELD_MAX), SASL_TOO_LONG);
	memset(big, 'A', sizeof big);
	assert_int_equal(sasl_login_decode(big, sizeof big, &b), SASL_TOO_LONG);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_b64_rfc4648_vectors),
	    cmocka_unit_test(test_b64_binary_roundtrip),
	    cmocka_unit_test(test_b64_empty_and_equals),
	    cmocka_unit_test(test_b64_refused),
	    cmocka_unit_test(test_b64_cap),
	    cmocka_unit_test(test_plain_ok),
	    cmocka_unit_test(test_plain_bad_format),
	    cmocka_unit_test(test_plain_bad_base64_cancel),
	    cmocka_unit_test(test_plain_too_long),
	    cmocka_unit_test(test_login),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
