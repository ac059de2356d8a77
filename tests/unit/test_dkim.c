/*
 * test_dkim.c - unit tests for src/auth/dkim.c: the tag-list parser, the
 * signature and key record parsers (table-driven, each failure with the
 * reason it must give), header and body canonicalization (RFC 6376 3.4.6's
 * example, fed whole, a byte at a time and split at every offset), the
 * header/body split, and sign-then-verify round trips with fresh RSA-2048
 * and Ed25519 keys, tampered afterwards.
 *
 * The conformance vectors (../shared/conformance/dkim) run separately
 * (dkim_vectors) and so does the cross-check with dkimpy (dkim_dkimpy).
 * Keys are generated here, not read from the test data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "auth/dkim.h"
#include "core/buf.h"

#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))
#define NOW 1700000000

/* ---- tag lists ---- */

/* The tags as "name=[value]" joined by ",", for comparing with a table. */
static void render_tags(const struct dkim_tag *t, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++)
		buf_printf(out, "%s%.*s=[%.*s]", i ? "," : "", (int)t[i].nlen, t[i].name,
		    (int)t[i].vlen, t[i].val);
}

static void test_tags(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		bool ok;
		const char *tags; /* rendered, when ok */
		const char *why;  /* a part of the reason, when not */
	} t[] = {
	    {"", true, "", NULL},
	    {"a=b", true, "a=[b]", NULL},
	    {"a=b;", true, "a=[b]", NULL},           /* a trailing ";" */
	    {"a=b; ", true, "a=[b]", NULL},          /* and FWS after it */
	    {"a=b;;c=d", true, "a=[b],c=[d]", NULL}, /* an empty tag-spec, tolerated */
	    {"a=", true, "a=[]", NULL},
	    {"a=;b=", true, "a=[],b=[]", NULL},
	    {" a = b ; c\r\n\t=\r\n d e ;", true, "a=[b],c=[d e]", NULL},
	    {"\r\n a\t=\tb\r\n\t;\r\n\tc=d\r\n", true, "a=[b],c=[d]", NULL},
	    {"v=1; a=rsa-sha256", true, "v=[1],a=[rsa-sha256]", NULL},
	    {"x_1=y; Z9=w", true, "x_1=[y],Z9=[w]", NULL},
	    {"a=1; A=2", true, "a=[1],A=[2]", NULL}, /* names are case-sensitive */
	    {"p=MIIB\r\n\tIjAN; q=x:y", true, "p=[MIIB\r\n\tIjAN],q=[x:y]", NULL},
	    {"a=!~", true, "a=[!~]", NULL}, /* the ends of VALCHAR */
	    {"a=b; a=c", false, NULL, "twice"},
	    {"a=b; c=d; a=b", false, NULL, "twice"},
	    {"1a=b", false, NULL, "letter"},
	    {"_a=b", false, NULL, "letter"},
	    {"=b", false, NULL, "letter"},
	    {"a-b=c", false, NULL, "no \"=\""},
	    {"a", false, NULL, "no \"=\""},
	    {"a;b=c", false, NULL, "no \"=\""},
	    {"a b=c", false, NULL, "no \"=\""},
	    {"a=b; c", false, NULL, "no \"=\""},
	    {"a=\x80", false, NULL, "not allowed"},
	    {"a=b\xff; c=d", false, NULL, "not allowed"},
	    {"a=b\x01", false, NULL, "not allowed"},
	    {"a=b\x7f", false, NULL, "not allowed"},
	    {"a=b;c=\xc3\xa9", false, NULL, "not allowed"},
	};
	for (size_t i = 0; i < N_ELEM(t); i++) {
		struct dkim_tag tags[DKIM_TAGS_MAX];
		size_t n = 99;
		struct buf why = BUF_INIT, r = BUF_INIT;
		bool ok = dkim_tags_parse(t[i].in, strlen(t[i].in), tags, DKIM_TAGS_MAX, &n, &why);
		if (ok != t[i].ok)
			fail_msg("case %zu: %s, want %s (%s)", i, ok ? "ok" : "error",
			    t[i].ok ? "ok" : "error", buf_cstr(&why));
		if (ok) {
			render_tags(tags, n, &r);
			if (strcmp(buf_cstr(&r), t[i].tags) != 0)
				fail_msg("case %zu: tags %s, want %s", i, buf_cstr(&r), t[i].tags);
		} else if (strstr(buf_cstr(&why), t[i].why) == NULL) {
			fail_msg(
			    "case %zu: reason \"%s\" lacks \"%s\"", i, buf_cstr(&why), t[i].why);
		}
		buf_free(&why);
		buf_free(&r);
	}
}

static void test_tags_offsets(void **state)
{
	(void)state;
	const char *s = " a = b ; c\r\n\t=\r\n d e ;x=";
	struct dkim_tag t[4];
	size_t n;
	struct buf why = BUF_INIT;
	assert_true(dkim_tags_parse(s, strlen(s), t, 4, &n, &why));
	assert_int_equal(n, 3);
	/* value regions: after "=", up to ";" or the end, FWS included */
	assert_int_equal(t[0].vstart, 4);
	assert_int_equal(t[0].vend, 7);
	assert_int_equal(t[1].vstart, 14);
	assert_int_equal(t[1].vend, 21);
	assert_int_equal(t[2].vstart, strlen(s));
	assert_int_equal(t[2].vend, strlen(s));
	/* the trimmed value lies inside its region and points into the input */
	for (size_t i = 0; i < n; i++) {
		assert_true(t[i].val >= s + t[i].vstart);
		assert_true(t[i].val + t[i].vlen <= s + t[i].vend);
		assert_true(t[i].name >= s && t[i].name + t[i].nlen < s + t[i].vstart);
	}
	assert_ptr_equal(t[0].val, s + 5);
	assert_ptr_equal(t[1].val, s + 17);
	assert_int_equal(t[1].vlen, 3);
	assert_int_equal(t[2].vlen, 0);

	/* more tags than room: an error, not a truncation */
	assert_false(dkim_tags_parse("a=1;b=2;c=3", 11, t, 2, &n, &why));
	assert_non_null(strstr(buf_cstr(&why), "too many"));
	buf_reset(&why);
	assert_true(dkim_tags_parse("a=1;b=2;c=3", 11, t, 3, &n, &why));
	assert_int_equal(n, 3);
	/* the length bounds the input: no NUL needed, bytes past n unread */
	assert_true(dkim_tags_parse("a=1;b=2\x80", 7, t, 3, &n, &why));
	assert_int_equal(n, 2);
	assert_int_equal(t[1].vlen, 1);
	buf_free(&why);
}

/* ---- header canonicalization ---- */

static void canon_hdr_is(bool relaxed, const char *in, const char *want)
{
	struct buf out = BUF_INIT;
	dkim_canon_header(relaxed, in, strlen(in), &out);
	assert_false(buf_err(&out));
	if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
		fail_msg("%s canon of \"%s\": got \"%s\", want \"%s\"",
		    relaxed ? "relaxed" : "simple", in, buf_cstr(&out), want);
	buf_free(&out);
}

static void test_canon_header(void **state)
{
	(void)state;
	/* RFC 6376 3.4.6 */
	canon_hdr_is(true, "A: X\r\n", "a:X\r\n");
	canon_hdr_is(true, "B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n");
	canon_hdr_is(false, "A: X\r\n", "A: X\r\n");
	canon_hdr_is(false, "B : Y\t\r\n\tZ  \r\n", "B : Y\t\r\n\tZ  \r\n");
	/* the final CRLF is optional on input, always there on output */
	canon_hdr_is(true, "A: X", "a:X\r\n");
	canon_hdr_is(false, "A: X", "A: X\r\n");
	/* names lower-cased only in relaxed */
	canon_hdr_is(true, "SUBJECT:  Hi \t there  \r\n", "subject:Hi there\r\n");
	canon_hdr_is(false, "SUBJECT:  Hi \t there  \r\n", "SUBJECT:  Hi \t there  \r\n");
	canon_hdr_is(true, "Message-ID:<a@b>\r\n", "message-id:<a@b>\r\n");
	/* empty and whitespace-only values */
	canon_hdr_is(true, "A:\r\n", "a:\r\n");
	canon_hdr_is(true, "A: \t \r\n", "a:\r\n");
	canon_hdr_is(true, "A:\r\n \r\n\t\r\n", "a:\r\n");
	/* several folds, and a fold right after the colon */
	canon_hdr_is(true, "To:\r\n a@b,\r\n\t c@d\r\n", "to:a@b, c@d\r\n");
	canon_hdr_is(true, "X: 1\r\n 2\r\n 3", "x:1 2 3\r\n");
	/* a colon in the value stays */
	canon_hdr_is(true, "Date: Mon, 1 Jan 2024 10:00:00 +0000",
	    "date:Mon, 1 Jan 2024 10:00:00 +0000\r\n");
	/* 8-bit bytes pass through both */
	canon_hdr_is(true, "From: \xe9t\xe9 <a@b>\r\n", "from:\xe9t\xe9 <a@b>\r\n");
	canon_hdr_is(false, "From: \xe9t\xe9 <a@b>\r\n", "From: \xe9t\xe9 <a@b>\r\n");
}

/* ---- body canonicalization ---- */

static void collect(void *arg, const char *p, size_t n)
{
	assert_true(n > 0);
	buf_append(arg, p, n);
}

/* Canonicalize in of length n fed in pieces of at most step bytes (0: at
 * once) into out. */
static void canon_body(bool relaxed, const char *in, size_t n, size_t step, struct buf *out)
{
	struct dkim_body_canon c;
	dkim_body_canon_init(&c, relaxed);
	if (step == 0)
		step = n ? n : 1;
	for (size_t p = 0; p < n; p += step)
		dkim_body_canon_feed(&c, in + p, n - p < step ? n - p : step, collect, out);
	dkim_body_canon_end(&c, collect, out);
}

/* The canonical body of in must be want whatever the pieces: at once, a
 * byte at a time, a few fixed sizes, and two pieces split at every offset
 * (which puts a CRLF's CR and LF in different pieces wherever there is one). */
static void body_is(bool relaxed, const char *in, size_t n, const char *want, size_t wlen)
{
	size_t steps[] = {0, 1, 2, 3, 7, 511, 512, 513};
	for (size_t s = 0; s < N_ELEM(steps); s++) {
		struct buf out = BUF_INIT;
		canon_body(relaxed, in, n, steps[s], &out);
		assert_false(buf_err(&out));
		if (out.len != wlen || memcmp(out.data ? out.data : "", want, wlen) != 0)
			fail_msg(
			    "%s body, pieces of %zu: got %zu bytes \"%.60s\", want %zu \"%.60s\"",
			    relaxed ? "relaxed" : "simple", steps[s], out.len, buf_cstr(&out), wlen,
			    want);
		buf_free(&out);
	}
	/* every offset of a short body; of a long one a few hundred, spread
	 * out, and those next to a line end */
	size_t stride = n < 2048 ? 1 : n / 257;
	for (size_t cut = 0; cut <= n; cut++) {
		bool near_eol = (cut > 0 && in[cut - 1] == '\r') || (cut < n && in[cut] == '\r');
		if (cut % stride != 0 && !(near_eol && cut % 7 == 0))
			continue;
		struct dkim_body_canon c;
		struct buf out = BUF_INIT;
		dkim_body_canon_init(&c, relaxed);
		dkim_body_canon_feed(&c, in, cut, collect, &out);
		dkim_body_canon_feed(&c, "", 0, collect, &out); /* an empty piece changes nothing */
		dkim_body_canon_feed(&c, in + cut, n - cut, collect, &out);
		dkim_body_canon_end(&c, collect, &out);
		if (out.len != wlen || memcmp(out.data ? out.data : "", want, wlen) != 0)
			fail_msg("%s body cut at %zu: got \"%.60s\", want \"%.60s\"",
			    relaxed ? "relaxed" : "simple", cut, buf_cstr(&out), want);
		buf_free(&out);
	}
}

static void test_canon_body(void **state)
{
	(void)state;
	static const struct {
		const char *in, *simple, *relaxed;
	} t[] = {
	    /* RFC 6376 3.4.6 */
	    {" C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n", " C\r\nD E\r\n"},
	    /* an empty body: simple is one CRLF, relaxed is nothing */
	    {"", "\r\n", ""},
	    {"\r\n", "\r\n", ""},
	    {"\r\n\r\n\r\n", "\r\n", ""},
	    /* trailing empty lines go, inner ones stay */
	    {"a\r\n\r\n\r\n\r\n", "a\r\n", "a\r\n"},
	    {"a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n"},
	    {"\r\n\r\na\r\n", "\r\n\r\na\r\n", "\r\n\r\na\r\n"},
	    /* a missing final CRLF is added */
	    {"abc", "abc\r\n", "abc\r\n"},
	    {"a\r\n\r\nb", "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n"},
	    {"a ", "a \r\n", "a\r\n"},
	    /* whitespace-only lines: content in simple, empty in relaxed */
	    {"  \r\n", "  \r\n", ""},
	    {"a\r\n \t \r\n", "a\r\n \t \r\n", "a\r\n"},
	    {"a\r\n \t \r\nb\r\n", "a\r\n \t \r\nb\r\n", "a\r\n\r\nb\r\n"},
	    {"a\r\n\t\r\n\r\n \r\n", "a\r\n\t\r\n\r\n \r\n", "a\r\n"},
	    {" ", " \r\n", ""},
	    /* relaxed: inner WSP runs become one SP, trailing WSP goes, leading
	     * WSP becomes one SP */
	    {"x\t\ty  z \t\r\n", "x\t\ty  z \t\r\n", "x y z\r\n"},
	    {"\t\tlead\r\n", "\t\tlead\r\n", " lead\r\n"},
	    /* bare LF ends a line too; a bare CR is content */
	    {"a\nb\n", "a\r\nb\r\n", "a\r\nb\r\n"},
	    {"a\n\n\n", "a\r\n", "a\r\n"},
	    {"a\rb\r\n", "a\rb\r\n", "a\rb\r\n"},
	    {"a\r", "a\r\r\n", "a\r\r\n"},
	    {"a\r\r\n", "a\r\r\n", "a\r\r\n"},
	    {"\r", "\r\r\n", "\r\r\n"},
	    {"a \r b\r\n", "a \r b\r\n", "a \r b\r\n"},
	    /* 8-bit bytes are content */
	    {"\xe9t\xe9\r\n", "\xe9t\xe9\r\n", "\xe9t\xe9\r\n"},
	};
	for (size_t i = 0; i < N_ELEM(t); i++) {
		size_t n = strlen(t[i].in);
		body_is(false, t[i].in, n, t[i].simple, strlen(t[i].simple));
		body_is(true, t[i].in, n, t[i].relaxed, strlen(t[i].relaxed));
	}
	/* a NUL is content too */
	body_is(false, "a\0b\r\n", 5, "a\0b\r\n", 5);
	body_is(true, "a\0 \0\r\n", 6, "a\0 \0\r\n", 6);
}

/* Bodies longer than the canonicalizer's output buffer, with many held-back
 * empty lines and long whitespace runs, against a plain reference. */
static void test_canon_body_long(void **state)
{
	(void)state;
	struct buf in = BUF_INIT, simple = BUF_INIT, relaxed = BUF_INIT;
	for (int line = 0; line < 60; line++) {
		switch (line % 5) {
		case 0:
			buf_puts(&in, "word  \t word");
			buf_puts(&simple, "word  \t word");
			buf_puts(&relaxed, "word word");
			break;
		case 1:
			for (int k = 0; k < 700; k++)
				buf_putc(&in, (char)('a' + k % 26));
			buf_append(&simple, in.data + in.len - 700, 700);
			buf_append(&relaxed, in.data + in.len - 700, 700);
			break;
		case 2:
			for (int k = 0; k < 600; k++)
				buf_putc(&in, k % 2 ? ' ' : '\t');
			buf_append(&simple, in.data + in.len - 600, 600);
			break;
		default:
			break; /* empty lines */
		}
		buf_puts(&in, "\r\n");
		buf_puts(&simple, "\r\n");
		buf_puts(&relaxed, "\r\n");
	}
	/* then many empty lines: all trailing, like the empty and (in relaxed)
	 * whitespace-only lines before them */
	for (int k = 0; k < 600; k++)
		buf_puts(&in, "\r\n");
	/* trim the references' trailing empty lines */
	while (simple.len >= 4 && memcmp(simple.data + simple.len - 4, "\r\n\r\n", 4) == 0)
		simple.len -= 2;
	while (relaxed.len >= 4 && memcmp(relaxed.data + relaxed.len - 4, "\r\n\r\n", 4) == 0)
		relaxed.len -= 2;
	body_is(false, in.data, in.len, simple.data, simple.len);
	body_is(true, in.data, in.len, relaxed.data, relaxed.len);
	buf_free(&in);
	buf_free(&simple);
	buf_free(&relaxed);
}

static void test_body_offset(void **state)
{
	(void)state;
	static const struct {
		const char *msg;
		size_t off;
	} t[] = {
	    {"A: b\r\n\r\nbody", 8},
	    {"A: b\r\nC: d\r\n\r\n", 14},
	    {"A: b\n\nbody", 6},
	    {"A: b\r\n\nbody", 7},
	    {"A: b\r\n c\r\n\r\nx", 12},
	    {"\r\nbody", 2},
	    {"\nbody", 1},
	    {"A: b\r\nC: d\r\n", 12}, /* no blank line: all header */
	    {"A: b\r\nC: d", 10},
	    {"A: b\r\n\r", 7}, /* a lone CR is not an empty line */
	    {"", 0},
	};
	for (size_t i = 0; i < N_ELEM(t); i++)
		if (dkim_body_offset(t[i].msg, strlen(t[i].msg)) != t[i].off)
			fail_msg("case %zu: offset %zu, want %zu", i,
			    dkim_body_offset(t[i].msg, strlen(t[i].msg)), t[i].off);
}

/* ---- signatures ---- */

#define BH "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
#define B "b=dGVzdA=="
#define SIG(rest) "v=1; a=rsa-sha256; d=example.com; s=sel; h=from:to; " BH "; " B rest

static void test_sig_parse(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *why; /* NULL: parses */
	} t[] = {
	    {SIG(""), NULL},
	    {SIG(";"), NULL},
	    /* required tags */
	    {"a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; " B, "no v="},
	    {"v=1; d=example.com; s=sel; h=from; " BH "; " B, "no a="},
	    {"v=1; a=rsa-sha256; s=sel; h=from; " BH "; " B, "no d="},
	    {"v=1; a=rsa-sha256; d=example.com; h=from; " BH "; " B, "no s="},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; " BH "; " B, "no h="},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " B, "no bh="},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH, "no b="},
	    {"", "no v="},
	    /* versions and algorithms */
	    {"v=2; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; " B, "v=1"},
	    {"v=; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; " B, "v=1"},
	    {"v=1; a=rsa-sha512; d=example.com; s=sel; h=from; " BH "; " B, "unknown signing"},
	    {"v=1; a=; d=example.com; s=sel; h=from; " BH "; " B, "unknown signing"},
	    {"v=1; a=ed25519; d=example.com; s=sel; h=from; " BH "; " B, "unknown signing"},
	    {"v=1; a=ed25519-sha256; d=example.com; s=sel; h=from; " BH "; " B, NULL},
	    {"v=1; a=rsa-sha1; d=example.com; s=sel; h=from; " BH "; " B, NULL}, /* refused later */
	    /* h= */
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=to:subject; " BH "; " B, "From"},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=; " BH "; " B, "From"},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=fromx; " BH "; " B, "From"},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=FROM; " BH "; " B, NULL},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=to : from ; " BH "; " B, NULL},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from::to; " BH "; " B, "empty field"},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=:from; " BH "; " B, "empty field"},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=fr om; " BH "; " B, "whitespace"},
	    /* i= */
	    {SIG("; i=@example.com"), NULL},
	    {SIG("; i=user@example.com"), NULL},
	    {SIG("; i=user@mail.EXAMPLE.com"), NULL},
	    {SIG("; i=@"), "i="},
	    {SIG("; i=user"), "i="},
	    {SIG("; i=@other.org"), "not within d="},
	    {SIG("; i=@notexample.com"), "not within d="},
	    {SIG("; i=@com"), "not within d="},
	    {SIG("; i=@example.com.evil.org"), "not within d="},
	    /* d= and s= */
	    {"v=1; a=rsa-sha256; d=exa mple.com; s=sel; h=from; " BH "; " B, "d="},
	    {"v=1; a=rsa-sha256; d=example.com.; s=sel; h=from; " BH "; " B, "d="},
	    {"v=1; a=rsa-sha256; d=example..com; s=sel; h=from; " BH "; " B, "d="},
	    {"v=1; a=rsa-sha256; d=; s=sel; h=from; " BH "; " B, "d="},
	    {"v=1; a=rsa-sha256; d=legitimate.com(.attacker.com; s=sel; h=from; " BH "; " B, "d="},
	    {"v=1; a=rsa-sha256; d=example.com; s=; h=from; " BH "; " B, "s="},
	    {"v=1; a=rsa-sha256; d=example.com; s=a/b; h=from; " BH "; " B, "s="},
	    {"v=1; a=rsa-sha256; d=example.com; s=_x.sel-2; h=from; " BH "; " B, NULL},
	    /* t= and x= */
	    {SIG("; t=100; x=200"), NULL},
	    {SIG("; t=200; x=200"), NULL},
	    {SIG("; t=200; x=100"), "x="},
	    {SIG("; x=100; t=200"), "x="}, /* whatever the order */
	    {SIG("; x=100"), NULL},
	    {SIG("; t=abc"), "t="},
	    {SIG("; t="), "t="},
	    {SIG("; t=-1"), "t="},
	    {SIG("; t=1234567890123"), "t="}, /* 13 digits */
	    {SIG("; x=12a"), "x="},
	    /* b= and bh= */
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; b=!!!!", "b="},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; b=", "b="},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; b=dGVzdA=", "b="},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; b=dGVzdA===", "b="},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; b=dG=VzdA==", "b="},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; b=dGVzd", "b="},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; b=dG\r\n\tVz dA\r\n =\t=",
	        NULL},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=; " B, "bh="},
	    {"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=2jUS*H9N; " B, "bh="},
	    /* c= */
	    {SIG("; c=simple"), NULL},
	    {SIG("; c=relaxed/simple"), NULL},
	    {SIG("; c=foo"), "c="},
	    {SIG("; c=relaxed/foo"), "c="},
	    {SIG("; c=relaxed/"), "c="},
	    {SIG("; c=/relaxed"), "c="},
	    {SIG("; c="), "c="},
	    /* l= */
	    {SIG("; l=0"), NULL},
	    {SIG("; l=123"), NULL},
	    {SIG("; l="), "l="},
	    {SIG("; l=abc"), "l="},
	    {SIG("; l=-5"), "l="},
	    {SIG("; l=1 2"), "l="},
	    /* q= */
	    {SIG("; q=dns/txt"), NULL},
	    {SIG("; q=DNS/TXT"), NULL},
	    {SIG("; q=foo/bar:dns/txt"), NULL},
	    {SIG("; q=http"), "q="},
	    {SIG("; q="), "q="},
	    /* syntax under it all */
	    {SIG("; v=1"), "twice"},
	    {SIG("; z"), "no \"=\""},
	    {SIG("; z=\x80"), "not allowed"},
	    /* unknown tags are ignored */
	    {SIG("; z=whatever; zz="), NULL},
	};
	for (size_t i = 0; i < N_ELEM(t); i++) {
		struct dkim_sig sig;
		struct buf why = BUF_INIT;
		bool ok = dkim_sig_parse(t[i].in, strlen(t[i].in), &sig, &why);
		if (ok != (t[i].why == NULL))
			fail_msg("case %zu \"%s\": %s (%s)", i, t[i].in, ok ? "parsed" : "refused",
			    buf_cstr(&why));
		if (!ok && strstr(buf_cstr(&why), t[i].why) == NULL)
			fail_msg("case %zu \"%s\": reason \"%s\" lacks \"%s\"", i, t[i].in,
			    buf_cstr(&why), t[i].why);
		buf_free(&why);
	}
}

static struct dkim_sig parsed(const char *s)
{
	struct dkim_sig sig;
	struct buf why = BUF_INIT;
	if (!dkim_sig_parse(s, strlen(s), &sig, &why))
		fail_msg("\"%s\": %s", s, buf_cstr(&why));
	buf_free(&why);
	return sig;
}

static void test_sig_fields(void **state)
{
	(void)state;
	struct dkim_sig s = parsed("v=1; a=rsa-sha256; d=Example.COM; s=Sel; h=From : To:subject;"
	                           " " BH "; b=dGVz\r\n\tdA==");
	assert_int_equal(s.alg, DKIM_RSA_SHA256);
	assert_string_equal(s.d, "example.com"); /* lower case */
	assert_string_equal(s.s, "sel");
	assert_string_equal(s.i, "@example.com"); /* the default AUID */
	assert_false(s.hdr_relaxed);              /* c= absent: simple/simple */
	assert_false(s.body_relaxed);
	assert_false(s.has_l);
	assert_false(s.has_t);
	assert_false(s.has_x);
	assert_int_equal(s.nh, 3);
	assert_string_equal(s.h[0], "From"); /* as listed */
	assert_string_equal(s.h[1], "To");
	assert_string_equal(s.h[2], "subject");
	assert_int_equal(s.blen, 4);
	assert_memory_equal(s.b, "test", 4);
	assert_int_equal(s.bhlen, 32);
	assert_string_equal(s.b_prefix, "dGVzdA==");

	s = parsed(SIG("; c=relaxed"));
	assert_true(s.hdr_relaxed);
	assert_false(s.body_relaxed); /* "c=relaxed" is relaxed/simple */
	s = parsed(SIG("; c=simple/relaxed"));
	assert_false(s.hdr_relaxed);
	assert_true(s.body_relaxed);
	s = parsed(SIG("; c=Relaxed/Relaxed"));
	assert_true(s.hdr_relaxed);
	assert_true(s.body_relaxed);

	s = parsed(SIG("; l=123; t=1700000000; x=1700086400; i=joe@sub.example.com"));
	assert_true(s.has_l);
	assert_int_equal(s.l, 123);
	assert_true(s.has_t);
	assert_int_equal(s.t, 1700000000);
	assert_true(s.has_x);
	assert_int_equal(s.x, 1700086400);
	assert_string_equal(s.i, "joe@sub.example.com");
	s = parsed(SIG("; l=0"));
	assert_true(s.has_l);
	assert_int_equal(s.l, 0);
	/* a huge l= saturates rather than wrapping */
	s = parsed(SIG("; l=99999999999999999999999999"));
	assert_true(s.has_l);
	assert_int_equal(s.l, UINT64_MAX);

	s = parsed("v=1; a=ed25519-sha256; d=example.com; s=ed; h=from; " BH
	           "; b=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEy\r\n"
	           "\t MzQ1Njc4OTo7PD0+Pw==");
	assert_int_equal(s.alg, DKIM_ED25519_SHA256);
	assert_int_equal(s.blen, 64);
	for (size_t i = 0; i < 64; i++)
		assert_int_equal(s.b[i], i);
	assert_string_equal(s.b_prefix, "AAECAwQF");
	s = parsed("v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; b=QQ==");
	assert_string_equal(s.b_prefix, "QQ=="); /* shorter than 8 */

	/* an unknown algorithm still fills d= and s= (for the result) */
	struct dkim_sig u;
	struct buf why = BUF_INIT;
	const char *us = "v=1; a=foo; d=Example.com; s=sel; h=from; " BH "; " B;
	assert_false(dkim_sig_parse(us, strlen(us), &u, &why));
	assert_string_equal(u.d, "example.com");
	assert_string_equal(u.s, "sel");
	buf_free(&why);

	/* h= of DKIM_H_MAX names parses, one more does not */
	struct buf h = BUF_INIT;
	buf_puts(&h, "v=1; a=rsa-sha256; d=example.com; s=sel; " BH "; " B "; h=from");
	for (int k = 1; k < DKIM_H_MAX; k++)
		buf_puts(&h, ":to");
	s = parsed(buf_cstr(&h));
	assert_int_equal(s.nh, DKIM_H_MAX);
	buf_puts(&h, ":to");
	assert_false(dkim_sig_parse(h.data, h.len, &s, &why));
	buf_free(&h);
	buf_free(&why);
}

/* ---- key records ---- */

/* The p= value of pkey's record, into out. */
static void key_p(EVP_PKEY *pkey, struct buf *out)
{
	struct buf rec = BUF_INIT;
	assert_true(dkim_key_record(pkey, &rec));
	const char *p = strstr(buf_cstr(&rec), "p=");
	assert_non_null(p);
	buf_puts(out, p + 2);
	buf_free(&rec);
}

/* Parse the record fmt with its "%s" replaced by the p= value p. */
static bool key_parse_f(const char *fmt, const char *p, struct dkim_key *k, struct buf *why)
{
	struct buf rec = BUF_INIT;
	const char *mark = strstr(fmt, "%s");
	assert_non_null(mark);
	buf_append(&rec, fmt, (size_t)(mark - fmt));
	buf_puts(&rec, p);
	buf_puts(&rec, mark + 2);
	buf_reset(why);
	bool ok = dkim_key_parse(rec.data, rec.len, k, why);
	buf_free(&rec);
	return ok;
}

static void test_key_parse(void **state)
{
	(void)state;
	EVP_PKEY *rsa = dkim_keygen(false), *ed = dkim_keygen(true);
	assert_non_null(rsa);
	assert_non_null(ed);
	assert_string_equal(dkim_key_type(rsa), "rsa");
	assert_string_equal(dkim_key_type(ed), "ed25519");
	struct buf prsa = BUF_INIT, ped = BUF_INIT, why = BUF_INIT;
	key_p(rsa, &prsa);
	key_p(ed, &ped);
	const char *pr = buf_cstr(&prsa), *pe = buf_cstr(&ped);
	struct dkim_key k;

	/* the records dkim_key_record writes */
	struct buf rec = BUF_INIT;
	assert_true(dkim_key_record(rsa, &rec));
	assert_true(strncmp(buf_cstr(&rec), "v=DKIM1; k=rsa; p=", 18) == 0);
	assert_true(dkim_key_parse(rec.data, rec.len, &k, &why));
	assert_non_null(k.pkey);
	assert_false(k.ed25519);
	assert_int_equal(k.bits, 2048);
	assert_true(EVP_PKEY_eq(k.pkey, rsa) == 1);
	assert_true(k.sha1_ok && k.sha256_ok);
	assert_false(k.testing || k.strict_auid || k.revoked);
	dkim_key_free(&k);
	buf_reset(&rec);
	assert_true(dkim_key_record(ed, &rec));
	assert_true(strncmp(buf_cstr(&rec), "v=DKIM1; k=ed25519; p=", 22) == 0);
	assert_true(dkim_key_parse(rec.data, rec.len, &k, &why));
	assert_true(k.ed25519);
	assert_int_equal(k.bits, 256);
	assert_true(EVP_PKEY_eq(k.pkey, ed) == 1);
	dkim_key_free(&k);
	assert_int_equal(strlen(pe), 44); /* 32 bytes */

	static const struct {
		const char *fmt; /* %s: the key */
		bool ed;         /* which key goes in */
		const char *why; /* NULL: parses */
	} t[] = {
	    {"p=%s", false, NULL}, /* v= and k= are optional */
	    {"v=DKIM1; p=%s", false, NULL},
	    {"v=DKIM1; k=RSA; p=%s", false, NULL},
	    {"v=DKIM1; k=ed25519; p=%s", true, NULL},
	    {"k=ed25519; p=%s", true, NULL},
	    {"v=DKIM1;\r\n\tk=rsa;\r\n\tp=%s;", false, NULL},
	    {"v=DKIM1; k=rsa; n=notes here; x=unknown; p=%s", false, NULL},
	    {"v=DKIM2; p=%s", false, "version"},
	    {"k=rsa; v=DKIM1; p=%s", false, "version"}, /* v= not first */
	    {"p=%s; v=DKIM1", false, "version"},
	    {"v=DKIM1; k=dsa; p=%s", false, "unknown key type"},
	    {"v=DKIM1; k=; p=%s", false, "unknown key type"},
	    {"v=DKIM1; k=rsa; s=email; p=%s", false, NULL},
	    {"v=DKIM1; k=rsa; s=*; p=%s", false, NULL},
	    {"v=DKIM1; k=rsa; s=http:email; p=%s", false, NULL},
	    {"v=DKIM1; k=rsa; s=http; p=%s", false, "not for email"},
	    {"v=DKIM1; k=rsa; s=; p=%s", false, "not for email"},
	    {"v=DKIM1; k=rsa; s=emailx; p=%s", false, "not for email"},
	    {"v=DKIM1; k=rsa; x=%s", false, "no p="},
	    {"v=DKIM1; k=rsa; p=!%s", false, "base64"},
	    {"v=DKIM1; k=rsa; p=%s=", false, "base64"},
	    /* a key of the other type */
	    {"v=DKIM1; k=rsa; p=%s", true, "RSA"},
	    {"v=DKIM1; k=ed25519; p=%s", false, "Ed25519"},
	    {"v=DKIM1; k=ed25519; p=AAAA%s", true, "Ed25519"}, /* 35 bytes */
	    {"v=DKIM1; k=rsa; p=AAAA%s", false, "RSA"},        /* garbage DER */
	    {"v=DKIM1; p=%s; p=", false, "twice"},
	};
	for (size_t i = 0; i < N_ELEM(t); i++) {
		bool ok = key_parse_f(t[i].fmt, t[i].ed ? pe : pr, &k, &why);
		if (ok != (t[i].why == NULL))
			fail_msg("case %zu \"%s\": %s (%s)", i, t[i].fmt, ok ? "parsed" : "refused",
			    buf_cstr(&why));
		if (!ok && strstr(buf_cstr(&why), t[i].why) == NULL)
			fail_msg("case %zu \"%s\": reason \"%s\" lacks \"%s\"", i, t[i].fmt,
			    buf_cstr(&why), t[i].why);
		if (ok) {
			assert_non_null(k.pkey);
			assert_int_equal(k.ed25519, t[i].ed);
		}
		dkim_key_free(&k);
		dkim_key_free(&k); /* twice is harmless */
	}
	dkim_key_free(NULL);

	/* the Ed25519 key with whitespace in its base64 */
	struct buf folded = BUF_INIT;
	buf_printf(&folded, "k=ed25519; p=%.20s\r\n\t%s", pe, pe + 20);
	assert_true(dkim_key_parse(folded.data, folded.len, &k, &why));
	assert_true(EVP_PKEY_eq(k.pkey, ed) == 1);
	dkim_key_free(&k);
	buf_free(&folded);
	/* a 31-byte Ed25519 key */
	const char *short_ed = "k=ed25519; p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
	assert_false(dkim_key_parse(short_ed, strlen(short_ed), &k, &why));
	assert_non_null(strstr(buf_cstr(&why), "Ed25519"));
	dkim_key_free(&k);

	/* revoked: an empty p=, with or without whitespace, of either type */
	const char *revoked[] = {
	    "v=DKIM1; p=", "v=DKIM1; k=rsa; p= ;", "k=ed25519; p=\r\n\t", "p="};
	for (size_t i = 0; i < N_ELEM(revoked); i++) {
		buf_reset(&why);
		assert_true(dkim_key_parse(revoked[i], strlen(revoked[i]), &k, &why));
		assert_true(k.revoked);
		assert_null(k.pkey);
		dkim_key_free(&k);
	}

	/* flags: t=y testing, t=s strict AUID, h= hash list */
	assert_true(key_parse_f("v=DKIM1; t=y; p=%s", pr, &k, &why));
	assert_true(k.testing);
	assert_false(k.strict_auid);
	dkim_key_free(&k);
	assert_true(key_parse_f("v=DKIM1; t=s; p=%s", pr, &k, &why));
	assert_false(k.testing);
	assert_true(k.strict_auid);
	dkim_key_free(&k);
	assert_true(key_parse_f("v=DKIM1; t= y : s ; p=%s", pr, &k, &why));
	assert_true(k.testing && k.strict_auid);
	dkim_key_free(&k);
	assert_true(key_parse_f("v=DKIM1; t=x:yy; p=%s", pr, &k, &why)); /* unknown flags */
	assert_false(k.testing || k.strict_auid);
	dkim_key_free(&k);
	assert_true(key_parse_f("v=DKIM1; h=sha1; p=%s", pr, &k, &why));
	assert_true(k.sha1_ok);
	assert_false(k.sha256_ok);
	dkim_key_free(&k);
	assert_true(key_parse_f("v=DKIM1; h=sha1:SHA256; p=%s", pr, &k, &why));
	assert_true(k.sha1_ok && k.sha256_ok);
	dkim_key_free(&k);
	assert_true(key_parse_f("v=DKIM1; h=sha256; p=%s", pr, &k, &why));
	assert_false(k.sha1_ok);
	assert_true(k.sha256_ok);
	dkim_key_free(&k);

	/* a bare PKCS#1 RSAPublicKey is accepted too */
	unsigned char *der = NULL;
	int dl = i2d_PublicKey(rsa, &der);
	assert_true(dl > 0);
	char b64[1024];
	assert_true(EVP_EncodeBlock((unsigned char *)b64, der, dl) > 0);
	OPENSSL_free(der);
	assert_true(key_parse_f("v=DKIM1; k=rsa; p=%s", b64, &k, &why));
	assert_true(EVP_PKEY_eq(k.pkey, rsa) == 1);
	dkim_key_free(&k);

	/* RFC 8301: RSA under 1024 bits refused, 1024 accepted */
	EVP_PKEY *r512 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	EVP_PKEY *r1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_non_null(r512);
	assert_non_null(r1024);
	buf_reset(&rec);
	assert_true(dkim_key_record(r512, &rec));
	buf_reset(&why);
	assert_false(dkim_key_parse(rec.data, rec.len, &k, &why));
	assert_non_null(strstr(buf_cstr(&why), "512 bits"));
	assert_null(k.pkey);
	dkim_key_free(&k);
	buf_reset(&rec);
	assert_true(dkim_key_record(r1024, &rec));
	assert_true(dkim_key_parse(rec.data, rec.len, &k, &why));
	assert_int_equal(k.bits, 1024);
	dkim_key_free(&k);
	EVP_PKEY_free(r512);
	EVP_PKEY_free(r1024);

	/* dkim_key_record wants a key it knows */
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(ec);
	assert_null(dkim_key_type(ec));
	assert_null(dkim_key_type(NULL));
	buf_reset(&rec);
	assert_false(dkim_key_record(ec, &rec));
	EVP_PKEY_free(ec);

	buf_free(&rec);
	buf_free(&prsa);
	buf_free(&ped);
	buf_free(&why);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ed);
}

/* ---- sign and verify ---- */

struct fake_txt {
	const char *name;
	enum dkim_dns st;
	const char *txt; /* one record; NULL: none */
};

struct keys {
	EVP_PKEY *rsa, *ed;
	char rsa_rec[1024], ed_rec[128];
};

static struct keys *keys_new(void)
{
	struct keys *k = calloc(1, sizeof *k);
	assert_non_null(k);
	k->rsa = dkim_keygen(false);
	k->ed = dkim_keygen(true);
	assert_non_null(k->rsa);
	assert_non_null(k->ed);
	struct buf r = BUF_INIT;
	assert_true(dkim_key_record(k->rsa, &r));
	snprintf(k->rsa_rec, sizeof k->rsa_rec, "%s", buf_cstr(&r));
	buf_reset(&r);
	assert_true(dkim_key_record(k->ed, &r));
	snprintf(k->ed_rec, sizeof k->ed_rec, "%s", buf_cstr(&r));
	buf_free(&r);
	return k;
}

static int keys_setup(void **state)
{
	*state = keys_new();
	return 0;
}

static int keys_teardown(void **state)
{
	struct keys *k = *state;
	EVP_PKEY_free(k->rsa);
	EVP_PKEY_free(k->ed);
	free(k);
	return 0;
}

/* Sign hdr (header section, without the empty line) and body with the RSA
 * key as s=rsa and the Ed25519 key as s=ed, d=example.com; the signature
 * fields into sigs. The body goes in pieces of 3 bytes. */
static bool sign_msg(
    struct keys *k, const char *hdr, const char *body, struct buf *sigs, struct buf *why)
{
	struct dkim_sign_key sk[2] = {{"rsa", k->rsa}, {"ed", k->ed}};
	struct dkim_signer *s = dkim_signer_new("example.com", sk, 2, NOW);
	assert_non_null(s);
	size_t n = strlen(body);
	for (size_t p = 0; p < n; p += 3)
		dkim_signer_body(s, body + p, n - p < 3 ? n - p : 3);
	bool ok = dkim_signer_finish(s, hdr, strlen(hdr), sigs, why);
	dkim_signer_free(s);
	return ok;
}

#define RES_MAX (DKIM_SIGS_MAX + 2)
struct results {
	size_t n;
	enum dkim_result r[RES_MAX];
	char reason[RES_MAX][160];
	char a[RES_MAX][16];
	char d[RES_MAX][DKIM_DOMAIN_MAX + 1];
	char i[RES_MAX][DKIM_AUID_MAX + 1];
	char b_prefix[RES_MAX][9];
	bool testing[RES_MAX];
};

/* Answer every key name the verifier asks for from dns. */
static void answer_keys(struct dkim_verify *v, const struct fake_txt *dns, size_t ndns)
{
	for (size_t i = 0; i < dkim_verify_count(v); i++) {
		const char *name = dkim_verify_key_name(v, i);
		if (name == NULL)
			continue;
		enum dkim_dns st = DKIM_DNS_NONE;
		const char *txt[1];
		size_t len[1], n = 0;
		for (size_t j = 0; j < ndns; j++)
			if (strcmp(dns[j].name, name) == 0) {
				st = dns[j].st;
				if (dns[j].txt != NULL) {
					txt[0] = dns[j].txt;
					len[0] = strlen(dns[j].txt);
					n = 1;
				}
			}
		dkim_verify_key_answer(v, i, st, txt, len, n);
		assert_null(dkim_verify_key_name(v, i)); /* answered once */
	}
}

/* Verify the message hdr + CRLF + body at time now; keys_first answers the
 * keys before the body comes (the other order from the usual). */
static void verify_msg(const char *hdr, const char *body, const struct fake_txt *dns, size_t ndns,
    int64_t now, bool keys_first, struct results *res)
{
	struct dkim_verify *v = dkim_verify_new(hdr, strlen(hdr), now);
	assert_non_null(v);
	if (keys_first)
		answer_keys(v, dns, ndns);
	size_t n = strlen(body);
	for (size_t p = 0; p < n; p += 5)
		dkim_verify_body(v, body + p, n - p < 5 ? n - p : 5);
	assert_false(dkim_verify_done(v)); /* the body has not ended */
	if (!keys_first) {
		dkim_verify_body_end(v);
		answer_keys(v, dns, ndns);
	} else {
		dkim_verify_body_end(v);
	}
	dkim_verify_body(v, "late", 4); /* after the end: ignored */
	assert_true(dkim_verify_done(v));
	memset(res, 0, sizeof *res);
	res->n = dkim_verify_count(v);
	assert_true(res->n <= RES_MAX);
	for (size_t i = 0; i < res->n; i++) {
		const struct dkim_sig_result *r = dkim_verify_result(v, i);
		const struct dkim_sig_result *r2 = dkim_verify_result(v, i);
		assert_ptr_equal(r, r2);
		res->r[i] = r->result;
		snprintf(res->reason[i], sizeof res->reason[i], "%s", r->reason);
		snprintf(res->a[i], sizeof res->a[i], "%s", r->a);
		snprintf(res->d[i], sizeof res->d[i], "%s", r->d);
		snprintf(res->i[i], sizeof res->i[i], "%s", r->i);
		snprintf(res->b_prefix[i], sizeof res->b_prefix[i], "%s", r->b_prefix);
		res->testing[i] = r->testing;
	}
	dkim_verify_free(v);
}

static const char HDR[] = "Received: from a.example.org by b.example.com\r\n"
                          "From: Alice <alice@example.com>\r\n"
                          "To: Bob <bob@example.org>,\r\n"
                          "\tCarol <carol@example.org>\r\n"
                          "Subject: Lunch  tomorrow\r\n"
                          "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
                          "Message-ID: <x1@example.com>\r\n"
                          "X-Unsigned: yes\r\n";
static const char BODY[] = "Hi Bob,\r\n\r\n  Lunch at  noon?\t\r\n\r\n-- \r\nAlice\r\n\r\n\r\n";

/* hdr signed, with the signatures on top, then the empty line. */
static void signed_header(struct keys *k, const char *hdr, const char *body, struct buf *out)
{
	struct buf why = BUF_INIT;
	if (!sign_msg(k, hdr, body, out, &why))
		fail_msg("signing failed: %s", buf_cstr(&why));
	buf_puts(out, hdr);
	buf_puts(out, "\r\n");
	buf_free(&why);
}

static void dns_for(struct keys *k, struct fake_txt dns[2])
{
	dns[0] = (struct fake_txt){"rsa._domainkey.example.com", DKIM_DNS_OK, k->rsa_rec};
	dns[1] = (struct fake_txt){"ed._domainkey.example.com", DKIM_DNS_OK, k->ed_rec};
}

static void expect(const struct results *r, size_t i, enum dkim_result want, const char *why)
{
	assert_true(i < r->n);
	if (r->r[i] != want || (why != NULL && strstr(r->reason[i], why) == NULL))
		fail_msg("signature %zu: %s (%s), want %s (%s)", i, dkim_result_name(r->r[i]),
		    r->reason[i], dkim_result_name(want), why ? why : "");
}

static void test_sign_verify(void **state)
{
	struct keys *k = *state;
	struct buf h = BUF_INIT;
	struct fake_txt dns[2];
	struct results r;
	dns_for(k, dns);
	signed_header(k, HDR, BODY, &h);

	/* the fields: two, RSA first, each CRLF-ended, folded under 78 columns */
	char *s = strdup(buf_cstr(&h));
	assert_non_null(s);
	const char *top = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;";
	assert_true(strncmp(s, top, strlen(top)) == 0);
	const char *second = strstr(s, "\r\nDKIM-Signature: v=1; a=ed25519-sha256;");
	assert_non_null(second);
	second += 2;
	assert_true(second < strstr(s, "Received:"));
	/* From twice (once more than it occurs), then the usual fields that are
	 * present, each as often as it occurs; not Received or X-Unsigned */
	struct dkim_sig sig;
	struct buf why = BUF_INIT;
	assert_true(dkim_sig_parse(s + 15, (size_t)(second - 2 - (s + 15)), &sig, &why));
	static const char *const signed_names[] = {
	    "from", "from", "subject", "date", "to", "message-id"};
	assert_int_equal(sig.nh, N_ELEM(signed_names));
	for (size_t i = 0; i < sig.nh; i++)
		assert_string_equal(sig.h[i], signed_names[i]);
	assert_true(sig.hdr_relaxed && sig.body_relaxed);
	assert_true(sig.has_t && !sig.has_x && !sig.has_l);
	assert_int_equal(sig.t, NOW);
	assert_string_equal(sig.s, "rsa");
	assert_int_equal(sig.blen, 256);
	buf_free(&why);
	assert_non_null(strstr(s, "t=1700000000;"));
	for (const char *line = s; *line;) {
		const char *e = strstr(line, "\r\n");
		assert_non_null(e);
		assert_true(e - line <= 78);
		assert_null(memchr(line, '\n', (size_t)(e - line))); /* no bare LF */
		line = e + 2;
	}
	struct dkim_verify *v = dkim_verify_new(h.data, h.len, NOW);
	assert_non_null(v);
	assert_int_equal(dkim_verify_count(v), 2);
	assert_string_equal(dkim_verify_key_name(v, 0), "rsa._domainkey.example.com");
	assert_string_equal(dkim_verify_key_name(v, 1), "ed._domainkey.example.com");
	assert_false(dkim_verify_done(v));
	/* unanswered and unended: temperror, not a crash or a pass */
	assert_int_equal(dkim_verify_result(v, 0)->result, DKIM_TEMPERROR);
	dkim_verify_free(v);

	verify_msg(h.data, BODY, dns, 2, NOW + 10, false, &r);
	assert_int_equal(r.n, 2);
	expect(&r, 0, DKIM_PASS, "good signature");
	expect(&r, 1, DKIM_PASS, "good signature");
	assert_string_equal(r.a[0], "rsa-sha256");
	assert_string_equal(r.a[1], "ed25519-sha256");
	assert_string_equal(r.d[0], "example.com");
	assert_string_equal(r.i[1], "@example.com");
	assert_int_equal(strlen(r.b_prefix[0]), 8);
	assert_false(r.testing[0]);
	/* the keys answered before the body */
	verify_msg(h.data, BODY, dns, 2, NOW + 10, true, &r);
	expect(&r, 0, DKIM_PASS, NULL);
	expect(&r, 1, DKIM_PASS, NULL);
	/* the body with LF line ends canonicalizes the same */
	verify_msg(
	    h.data, "Hi Bob,\n\n  Lunch at  noon?\t\n\n-- \nAlice\n", dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PASS, NULL);
	expect(&r, 1, DKIM_PASS, NULL);
	/* relaxed body: whitespace changes and trailing empty lines do not count */
	verify_msg(h.data, "Hi Bob,\r\n\r\n Lunch   at noon?\r\n\r\n--\r\nAlice\r\n", dns, 2, NOW,
	    false, &r);
	expect(&r, 0, DKIM_PASS, NULL);
	expect(&r, 1, DKIM_PASS, NULL);
	free(s);
	buf_free(&h);
}

/* Replace the first occurrence of from in s with to, into out. */
static void replace(const char *s, const char *from, const char *to, struct buf *out)
{
	const char *p = strstr(s, from);
	assert_non_null(p);
	buf_reset(out);
	buf_append(out, s, (size_t)(p - s));
	buf_puts(out, to);
	buf_puts(out, p + strlen(from));
}

static void test_tampered(void **state)
{
	struct keys *k = *state;
	struct buf h = BUF_INIT, m = BUF_INIT;
	struct fake_txt dns[2];
	struct results r;
	dns_for(k, dns);
	signed_header(k, HDR, BODY, &h);

	/* one body byte */
	verify_msg(h.data, "Hi Bob,\r\n\r\n  Lunch at  noon!\t\r\n\r\n-- \r\nAlice\r\n", dns, 2,
	    NOW, false, &r);
	expect(&r, 0, DKIM_FAIL, "body hash");
	expect(&r, 1, DKIM_FAIL, "body hash");
	/* a line added at the end */
	verify_msg(h.data, "Hi Bob,\r\n\r\n  Lunch at  noon?\t\r\n\r\n-- \r\nAlice\r\nP.S.\r\n",
	    dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_FAIL, "body hash");
	/* an empty body */
	verify_msg(h.data, "", dns, 2, NOW, false, &r);
	expect(&r, 1, DKIM_FAIL, "body hash");

	/* a second From field, below or above the first */
	replace(h.data, "From: Alice", "From: Mallory <m@evil.example>\r\nFrom: Alice", &m);
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_FAIL, "did not verify");
	expect(&r, 1, DKIM_FAIL, "did not verify");
	replace(h.data, "Subject:", "From: Mallory <m@evil.example>\r\nSubject:", &m);
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_FAIL, "did not verify");
	expect(&r, 1, DKIM_FAIL, "did not verify");
	replace(h.data, "\r\n\r\n", "\r\nFrom: Mallory <m@evil.example>\r\n\r\n", &m);
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_FAIL, "did not verify");
	/* a signed field changed, or one of those signed because present added */
	replace(h.data, "Subject: Lunch", "Subject: Dinner", &m);
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_FAIL, "did not verify");
	expect(&r, 1, DKIM_FAIL, "did not verify");
	replace(h.data, "Carol", "Carl", &m);
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 1, DKIM_FAIL, "did not verify");
	/* a changed b= or bh= value (the first characters after "bh=") */
	replace(h.data, "bh=", "bh=A", &m); /* 45 characters: no longer base64 */
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PERMERROR, "bh=");
	expect(&r, 1, DKIM_PASS, NULL);
	replace(h.data, "bh=", "bh=AAAA", &m); /* base64, but another hash */
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_FAIL, "body hash");
	replace(h.data, "\tb=", "\tb=AAAA", &m); /* 4 more bytes of signature */
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_FAIL, "did not verify");
	expect(&r, 1, DKIM_PASS, NULL);

	/* harmless: relaxed header whitespace and case, an unsigned field, a
	 * Received on top */
	replace(h.data, "Subject: Lunch  tomorrow", "SUBJECT:\tLunch tomorrow  ", &m);
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PASS, NULL);
	expect(&r, 1, DKIM_PASS, NULL);
	replace(h.data, "X-Unsigned: yes", "X-Unsigned: no\r\nX-Spam: 0", &m);
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PASS, NULL);
	buf_reset(&m);
	buf_puts(&m, "Received: from b.example.com by c.example.net\r\n");
	buf_puts(&m, h.data);
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PASS, NULL);
	expect(&r, 1, DKIM_PASS, NULL);
	/* the two fields swapped: still both pass (each signs only itself) */
	const char *second = strstr(h.data + 1, "DKIM-Signature:");
	const char *rest = strstr(h.data, "Received:");
	buf_reset(&m);
	buf_append(&m, second, (size_t)(rest - second));
	buf_append(&m, h.data, (size_t)(second - h.data));
	buf_puts(&m, rest);
	verify_msg(m.data, BODY, dns, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PASS, NULL);
	expect(&r, 1, DKIM_PASS, NULL);
	assert_string_equal(r.a[0], "ed25519-sha256");
	buf_free(&h);
	buf_free(&m);
}

static void test_keys_answers(void **state)
{
	struct keys *k = *state;
	struct buf h = BUF_INIT, rec = BUF_INIT;
	struct results r;
	signed_header(k, HDR, BODY, &h);

	/* no record, a temporary failure */
	struct fake_txt none[] = {{"rsa._domainkey.example.com", DKIM_DNS_NONE, NULL},
	    {"ed._domainkey.example.com", DKIM_DNS_TEMP, NULL}};
	verify_msg(h.data, BODY, none, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PERMERROR, "no key record");
	expect(&r, 1, DKIM_TEMPERROR, "temporarily");
	/* an OK answer without records is none */
	struct fake_txt empty[] = {{"rsa._domainkey.example.com", DKIM_DNS_OK, NULL},
	    {"ed._domainkey.example.com", DKIM_DNS_OK, NULL}};
	verify_msg(h.data, BODY, empty, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PERMERROR, "no key record");
	/* the keys swapped: each is of the other type */
	struct fake_txt swapped[] = {{"rsa._domainkey.example.com", DKIM_DNS_OK, k->ed_rec},
	    {"ed._domainkey.example.com", DKIM_DNS_OK, k->rsa_rec}};
	verify_msg(h.data, BODY, swapped, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PERMERROR, "type");
	expect(&r, 1, DKIM_PERMERROR, "type");
	/* another key of the right type: the signature does not verify, though
	 * the body hash does */
	EVP_PKEY *other = dkim_keygen(true);
	assert_non_null(other);
	assert_true(dkim_key_record(other, &rec));
	EVP_PKEY_free(other);
	struct fake_txt wrong[] = {{"ed._domainkey.example.com", DKIM_DNS_OK, rec.data}};
	verify_msg(h.data, BODY, wrong, 1, NOW, false, &r);
	expect(&r, 0, DKIM_PERMERROR, "no key record");
	expect(&r, 1, DKIM_FAIL, "signature did not verify");
	/* revoked; h=sha1 only; a bad record; t=y passes and says so */
	struct fake_txt bad[] = {{"rsa._domainkey.example.com", DKIM_DNS_OK, "v=DKIM1; k=rsa; p="},
	    {"ed._domainkey.example.com", DKIM_DNS_OK, "v=DKIM1; k=ed25519; p=%%%"}};
	verify_msg(h.data, BODY, bad, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PERMERROR, "revoked");
	expect(&r, 1, DKIM_PERMERROR, "base64");
	buf_reset(&rec);
	replace(k->rsa_rec, "k=rsa;", "k=rsa; h=sha1;", &rec);
	char edt[160];
	snprintf(edt, sizeof edt, "v=DKIM1; t=y; %s", k->ed_rec + 9);
	struct fake_txt flags[] = {{"rsa._domainkey.example.com", DKIM_DNS_OK, rec.data},
	    {"ed._domainkey.example.com", DKIM_DNS_OK, edt}};
	verify_msg(h.data, BODY, flags, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PERMERROR, "sha256");
	expect(&r, 1, DKIM_PASS, NULL);
	assert_true(r.testing[1]);
	/* t=s: the signer's i= is @d exactly, so it passes */
	snprintf(edt, sizeof edt, "v=DKIM1; t=s; %s", k->ed_rec + 9);
	verify_msg(h.data, BODY, flags, 2, NOW, false, &r);
	expect(&r, 1, DKIM_PASS, NULL);
	assert_false(r.testing[1]);

	/* of several records, the first that parses is used */
	struct dkim_verify *v = dkim_verify_new(h.data, h.len, NOW);
	dkim_verify_body(v, BODY, strlen(BODY));
	dkim_verify_body_end(v);
	const char *txt[] = {"v=spf1 -all", "garbage", k->rsa_rec};
	size_t lens[] = {11, 7, strlen(k->rsa_rec)};
	dkim_verify_key_answer(v, 0, DKIM_DNS_OK, txt, lens, 3);
	dkim_verify_key_answer(v, 1, DKIM_DNS_OK, txt, lens, 2);
	/* a second answer is ignored */
	dkim_verify_key_answer(v, 0, DKIM_DNS_NONE, NULL, NULL, 0);
	assert_true(dkim_verify_done(v));
	assert_int_equal(dkim_verify_result(v, 0)->result, DKIM_PASS);
	assert_int_equal(dkim_verify_result(v, 1)->result, DKIM_PERMERROR);
	dkim_verify_free(v);
	dkim_verify_free(NULL);

	/* the signer writes no x=: a century later it still passes */
	struct fake_txt dns[2];
	dns_for(k, dns);
	verify_msg(h.data, BODY, dns, 2, (int64_t)NOW + 100 * 365 * 86400LL, false, &r);
	expect(&r, 0, DKIM_PASS, NULL);
	buf_free(&h);
	buf_free(&rec);
}

static void test_signer_errors(void **state)
{
	struct keys *k = *state;
	struct buf out = BUF_INIT, why = BUF_INIT;
	/* no From: refused, nothing written */
	assert_false(sign_msg(k, "To: bob@example.org\r\nSubject: x\r\n", BODY, &out, &why));
	assert_non_null(strstr(buf_cstr(&why), "From"));
	assert_int_equal(out.len, 0);
	buf_reset(&why);
	assert_false(sign_msg(k, "", "", &out, &why));
	buf_reset(&why);
	/* "From" as a prefix of another name is not a From field */
	assert_false(sign_msg(k, "From-X: a\r\nX-From: b\r\n", "", &out, &why));
	buf_reset(&why);

	/* bad domains, selectors and keys, too many or no keys */
	struct dkim_sign_key sk[DKIM_SIGS_MAX + 1];
	for (size_t i = 0; i < N_ELEM(sk); i++)
		sk[i] = (struct dkim_sign_key){"sel", k->ed};
	assert_null(dkim_signer_new("example.com", sk, 0, NOW));
	assert_null(dkim_signer_new("example.com", sk, DKIM_SIGS_MAX + 1, NOW));
	assert_null(dkim_signer_new("exa mple.com", sk, 1, NOW));
	assert_null(dkim_signer_new("", sk, 1, NOW));
	struct dkim_sign_key badsel = {"a;b", k->ed};
	assert_null(dkim_signer_new("example.com", &badsel, 1, NOW));
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct dkim_sign_key eck = {"sel", ec};
	assert_null(dkim_signer_new("example.com", &eck, 1, NOW));
	EVP_PKEY_free(ec);
	struct dkim_sign_key nok = {"sel", NULL};
	assert_null(dkim_signer_new("example.com", &nok, 1, NOW));
	dkim_signer_free(NULL);

	/* DKIM_SIGS_MAX keys at once: all of them verify */
	struct dkim_signer *s = dkim_signer_new("Example.COM", sk, DKIM_SIGS_MAX, NOW);
	assert_non_null(s);
	dkim_signer_body(s, BODY, strlen(BODY));
	assert_true(dkim_signer_finish(s, HDR, strlen(HDR), &out, &why));
	dkim_signer_free(s);
	buf_puts(&out, HDR);
	buf_puts(&out, "\r\n");
	struct fake_txt dns[] = {{"sel._domainkey.example.com", DKIM_DNS_OK, k->ed_rec}};
	struct results r;
	verify_msg(out.data, BODY, dns, 1, NOW, false, &r);
	assert_int_equal(r.n, DKIM_SIGS_MAX);
	for (size_t i = 0; i < r.n; i++)
		expect(&r, i, DKIM_PASS, NULL);
	assert_string_equal(r.d[0], "example.com"); /* lower-cased by the signer */

	/* an empty body and a message of only a From field */
	buf_reset(&out);
	assert_true(sign_msg(k, "From: a@example.com\r\n", "", &out, &why));
	buf_puts(&out, "From: a@example.com\r\n\r\n");
	struct fake_txt dns2[2];
	dns_for(k, dns2);
	verify_msg(out.data, "", dns2, 2, NOW, false, &r);
	expect(&r, 0, DKIM_PASS, NULL);
	expect(&r, 1, DKIM_PASS, NULL);
	verify_msg(out.data, "\r\n\r\n", dns2, 2, NOW, false, &r); /* relaxed: the same */
	expect(&r, 0, DKIM_PASS, NULL);
	buf_free(&out);
	buf_free(&why);
}

/* Signatures the verifier refuses before any key is asked for, and the
 * limit on how many are checked. */
static void test_verify_limits(void **state)
{
	(void)state;
	struct results r;
	/* no signature */
	verify_msg("From: a@example.com\r\n\r\n", "x\r\n", NULL, 0, NOW, false, &r);
	assert_int_equal(r.n, 0);
	/* rsa-sha1, an expired x=, a parse error: decided up front */
	const char *h =
	    "DKIM-Signature: v=1; a=rsa-sha1; d=example.com; s=sel; h=from; " BH "; " B "\r\n"
	    "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH "; " B
	    "; t=100; x=200\r\n"
	    "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; " BH "; " B "\r\n"
	    "dkim-signature : v=1; a=rsa-sha256; d=Example.com; s=sel; h=from;\r\n"
	    "\t" BH ";\r\n\t" B "\r\n"
	    "From: a@example.com\r\n\r\n";
	struct dkim_verify *v = dkim_verify_new(h, strlen(h), 300);
	assert_int_equal(dkim_verify_count(v), 4);
	assert_null(dkim_verify_key_name(v, 0));
	assert_null(dkim_verify_key_name(v, 1));
	assert_null(dkim_verify_key_name(v, 2));
	assert_string_equal(dkim_verify_key_name(v, 3), "sel._domainkey.example.com");
	dkim_verify_free(v);
	verify_msg(h, "", NULL, 0, 300, false, &r);
	expect(&r, 0, DKIM_PERMERROR, "rsa-sha1");
	expect(&r, 1, DKIM_FAIL, "expired");
	expect(&r, 2, DKIM_PERMERROR, "no h=");
	expect(&r, 3, DKIM_PERMERROR, "no key record");
	/* at x= itself the signature has not expired yet */
	verify_msg(h, "", NULL, 0, 200, false, &r);
	expect(&r, 1, DKIM_PERMERROR, "no key record");

	/* more than DKIM_SIGS_MAX: the rest are not checked */
	struct buf m = BUF_INIT;
	for (int i = 0; i < DKIM_SIGS_MAX + 3; i++)
		buf_puts(&m, "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH
		             "; " B "\r\n");
	buf_puts(&m, "From: a@example.com\r\n\r\n");
	verify_msg(m.data, "", NULL, 0, NOW, false, &r);
	assert_int_equal(r.n, DKIM_SIGS_MAX);
	/* a signature field that is not a tag list */
	buf_reset(&m);
	buf_puts(&m, "DKIM-Signature: \x01\r\nDKIM-Signature:\r\nFrom: a@example.com\r\n\r\n");
	verify_msg(m.data, "", NULL, 0, NOW, false, &r);
	assert_int_equal(r.n, 2);
	expect(&r, 0, DKIM_PERMERROR, NULL);
	expect(&r, 1, DKIM_PERMERROR, "no v=");
	assert_string_equal(r.d[0], "");
	assert_string_equal(r.a[0], "");
	buf_free(&m);

	assert_string_equal(dkim_result_name(DKIM_NONE), "none");
	assert_string_equal(dkim_result_name(DKIM_PASS), "pass");
	assert_string_equal(dkim_result_name(DKIM_FAIL), "fail");
	assert_string_equal(dkim_result_name(DKIM_NEUTRAL), "neutral");
	assert_string_equal(dkim_result_name(DKIM_TEMPERROR), "temperror");
	assert_string_equal(dkim_result_name(DKIM_PERMERROR), "permerror");
	assert_string_equal(dkim_alg_name(DKIM_RSA_SHA1), "rsa-sha1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tags),
	    cmocka_unit_test(test_tags_offsets),
	    cmocka_unit_test(test_canon_header),
	    cmocka_unit_test(test_canon_body),
	    cmocka_unit_test(test_canon_body_long),
	    cmocka_unit_test(test_body_offset),
	    cmocka_unit_test(test_sig_parse),
	    cmocka_unit_test(test_sig_fields),
	    cmocka_unit_test(test_key_parse),
	    cmocka_unit_test(test_sign_verify),
	    cmocka_unit_test(test_tampered),
	    cmocka_unit_test(test_keys_answers),
	    cmocka_unit_test(test_signer_errors),
	    cmocka_unit_test(test_verify_limits),
	};
	return cmocka_run_group_tests(tests, keys_setup, keys_teardown);
}
