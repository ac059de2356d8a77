/*
 * test_smtp_reply.c - table-driven unit tests for src/smtp/smtp_reply.c.
 *
 * Every case is fed three ways: whole, one byte at a time, and in chunks of
 * 7 bytes. The three must give the same replies (code, enhanced status code,
 * text, line count) and end in the same state (need more input, or an error
 * with the expected code). EHLO capability parsing and the limits have
 * their own tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "smtp/smtp_reply.h"

#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))
#define MAXR 4

struct want {
	int code;
	const char *esc;
	const char *text;
	size_t nlines;
};

static const struct rcase {
	const char *in;
	size_t nwant;
	struct want want[MAXR];
	enum smtp_reply_err err; /* the state after all input */
	bool pending;            /* a reply is cut short at the end */
} cases[] = {
    {.in = "220 mx.example.test ESMTP ready\r\n",
        .nwant = 1,
        .want = {{220, "", "mx.example.test ESMTP ready", 1}}},
    {.in = "250 2.1.0 Ok\r\n", .nwant = 1, .want = {{250, "2.1.0", "Ok", 1}}},
    {.in = "250 2.1.0\r\n", .nwant = 1, .want = {{250, "2.1.0", "", 1}}},
    {.in = "250 2.1.0   spaced\r\n", .nwant = 1, .want = {{250, "2.1.0", "spaced", 1}}},
    {.in = "250 Ok\n", .nwant = 1, .want = {{250, "", "Ok", 1}}},      /* bare LF */
    {.in = "250 Ok\r\r\n", .nwant = 1, .want = {{250, "", "Ok?", 1}}}, /* a stray CR is text */
    {.in = "250\r\n", .nwant = 1, .want = {{250, "", "", 1}}},
    {.in = "250 \r\n", .nwant = 1, .want = {{250, "", "", 1}}},
    {.in = "250-\r\n250 x\r\n", .nwant = 1, .want = {{250, "", "\nx", 2}}},
    {.in = "250-mx.example.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
        .nwant = 1,
        .want = {{250, "", "mx.example.test\nPIPELINING\nSIZE 1000", 3}}},
    {.in = "550-5.1.1 The account\r\n550-5.1.1 does not exist.\r\n550 5.1.1 Try again\r\n",
        .nwant = 1,
        .want = {{550, "5.1.1", "The account\ndoes not exist.\nTry again", 3}}},
    /* a different code on a later line stays in the text */
    {.in = "250-2.0.0 a\r\n250 2.0.1 b\r\n", .nwant = 1, .want = {{250, "2.0.0", "a\n2.0.1 b", 2}}},
    /* only the first line decides whether there is an enhanced code */
    {.in = "250-hello\r\n250 2.0.0 x\r\n", .nwant = 1, .want = {{250, "", "hello\n2.0.0 x", 2}}},
    /* the class must be the reply's */
    {.in = "550 2.1.0 weird\r\n", .nwant = 1, .want = {{550, "", "2.1.0 weird", 1}}},
    {.in = "250 2.1 short\r\n", .nwant = 1, .want = {{250, "", "2.1 short", 1}}},
    {.in = "250 2.1.1000 long\r\n", .nwant = 1, .want = {{250, "", "2.1.1000 long", 1}}},
    {.in = "250 2.1.0.1 four\r\n", .nwant = 1, .want = {{250, "", "2.1.0.1 four", 1}}},
    {.in = "452 4.5.3 Too many recipients\r\n",
        .nwant = 1,
        .want = {{452, "4.5.3", "Too many recipients", 1}}},
    /* pipelined replies come out one at a time */
    {.in = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
        .nwant = 3,
        .want = {{250, "2.1.0", "Ok", 1}, {250, "2.1.5", "Ok", 1},
            {354, "", "End data with <CR><LF>.<CR><LF>", 1}}},
    /* control bytes are replaced, UTF-8 is kept */
    {.in = "250 a\x01"
           "b\rc\x7f\r\n",
        .nwant = 1,
        .want = {{250, "", "a?b?c?", 1}}},
    {.in = "250 a\tb\r\n", .nwant = 1, .want = {{250, "", "a\tb", 1}}},
    {.in = "250 h\xc3\xa9llo\r\n", .nwant = 1, .want = {{250, "", "h\xc3\xa9llo", 1}}},
    {.in = "250 nul\0x\r\n", .nwant = 1, .want = {{250, "", "nul?x", 1}}},
    /* incomplete */
    {.in = "", .nwant = 0, .err = SMTP_REPLY_OK, .pending = false},
    {.in = "250", .nwant = 0, .err = SMTP_REPLY_OK, .pending = true},
    {.in = "250-a\r\n250 b", .nwant = 0, .err = SMTP_REPLY_OK, .pending = true},
    {.in = "250-a\r\n", .nwant = 0, .err = SMTP_REPLY_OK, .pending = true},
    {.in = "250 a\r\n250-b\r\n",
        .nwant = 1,
        .want = {{250, "", "a", 1}},
        .err = SMTP_REPLY_OK,
        .pending = true},
    /* errors */
    {.in = "250-a\r\n251 b\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_CODE_MISMATCH},
    {.in = "250-a\r\n350 b\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_CODE_MISMATCH},
    {.in = "abc\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    {.in = "25\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    {.in = "\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    {.in = "250x\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    {.in = "250\tOk\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    {.in = "650 no\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    {.in = "150 no\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    {.in = "260 no\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    {.in = "25a no\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    {.in = " 250 no\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    {.in = "HTTP/1.1 400 Bad Request\r\n", .nwant = 0, .err = SMTP_REPLY_ERR_SYNTAX},
    /* an error after a good reply: the good one comes out first */
    {.in = "220 hi\r\nbogus\r\n",
        .nwant = 1,
        .want = {{220, "", "hi", 1}},
        .err = SMTP_REPLY_ERR_SYNTAX},
};

struct result {
	size_t n;
	int code[MAXR + 4];
	char esc[MAXR + 4][SMTP_REPLY_ESC_MAX];
	char *text[MAXR + 4];
	size_t nlines[MAXR + 4];
	enum smtp_reply_err err;
	bool pending;
};

static void result_free(struct result *r)
{
	for (size_t k = 0; k < r->n; k++)
		free(r->text[k]);
}

/* Feed in[0..len) in chunks of `chunk` bytes (0: all at once). */
static void run(const char *in, size_t len, size_t chunk, struct result *res)
{
	struct smtp_reply_parser p;
	smtp_reply_parser_init(&p);
	memset(res, 0, sizeof(*res));
	size_t off = 0;
	while (off < len) {
		size_t n = chunk == 0 || len - off < chunk ? len - off : chunk;
		size_t used = 0;
		enum smtp_reply_rc rc = smtp_reply_feed(&p, in + off, n, &used);
		assert_true(used <= n);
		off += used;
		if (rc == SMTP_REPLY_ERROR)
			break;
		if (rc == SMTP_REPLY_DONE) {
			assert_true(res->n < N_ELEM(res->code));
			res->code[res->n] = p.reply.code;
			memcpy(res->esc[res->n], p.reply.esc, SMTP_REPLY_ESC_MAX);
			res->text[res->n] = strdup(buf_cstr(&p.reply.text));
			res->nlines[res->n] = p.reply.nlines;
			assert_int_equal(strlen(res->text[res->n]), p.reply.text.len);
			res->n++;
		} else {
			assert_int_equal(used, n);
		}
	}
	res->err = p.err;
	res->pending = smtp_reply_pending(&p);
	if (p.err != SMTP_REPLY_OK) {
		size_t used = 99;
		assert_int_equal(smtp_reply_feed(&p, "250 ok\r\n", 8, &used), SMTP_REPLY_ERROR);
		assert_int_equal(used, 0);
	}
	smtp_reply_parser_free(&p);
}

static void check(size_t i, const char *how, const struct rcase *c, const struct result *r)
{
	if (r->n != c->nwant)
		fail_msg("case %zu (%s): %zu replies, want %zu", i, how, r->n, c->nwant);
	for (size_t k = 0; k < r->n; k++) {
		const struct want *w = &c->want[k];
		if (r->code[k] != w->code || strcmp(r->esc[k], w->esc) != 0 ||
		    strcmp(r->text[k], w->text) != 0 || r->nlines[k] != w->nlines)
			fail_msg(
			    "case %zu (%s) reply %zu: %d [%s] \"%s\" %zu, want %d [%s] \"%s\" %zu",
			    i, how, k, r->code[k], r->esc[k], r->text[k], r->nlines[k], w->code,
			    w->esc, w->text, w->nlines);
	}
	if (r->err != c->err)
		fail_msg("case %zu (%s): err %d, want %d", i, how, (int)r->err, (int)c->err);
	if (c->err == SMTP_REPLY_OK && r->pending != c->pending)
		fail_msg("case %zu (%s): pending %d, want %d", i, how, r->pending, c->pending);
}

/* The case's input: a string, with the NUL case as the one exception. */
static size_t case_len(const struct rcase *c)
{
	if (strncmp(c->in, "250 nul", 7) == 0)
		return strlen(c->in) + 1 + strlen(c->in + strlen(c->in) + 1);
	return strlen(c->in);
}

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_ELEM(cases); i++) {
		size_t len = case_len(&cases[i]);
		static const size_t chunks[] = {0, 1, 7};
		static const char *const how[] = {"whole", "byte-at-a-time", "7-byte chunks"};
		for (size_t k = 0; k < N_ELEM(chunks); k++) {
			struct result r;
			run(cases[i].in, len, chunks[k], &r);
			check(i, how[k], &cases[i], &r);
			result_free(&r);
		}
	}
}

/* A line of exactly SMTP_REPLY_LINE_MAX bytes passes (with CRLF or bare LF);
 * one byte more fails before its line end arrives. */
static void test_line_limit(void **state)
{
	(void)state;
	size_t max = SMTP_REPLY_LINE_MAX;
	char *line = malloc(max + 8);
	assert_non_null(line);
	memcpy(line, "250 ", 4);
	memset(line + 4, 'x', max - 4);

	const char *ends[] = {"\r\n", "\n"};
	for (size_t e = 0; e < 2; e++) {
		memcpy(line + max, ends[e], strlen(ends[e]));
		struct result r;
		run(line, max + strlen(ends[e]), 1, &r);
		assert_int_equal(r.n, 1);
		assert_int_equal(strlen(r.text[0]), max - 4);
		assert_int_equal(r.err, SMTP_REPLY_OK);
		result_free(&r);
	}

	/* one byte too many, no line end yet: refused now */
	line[max] = 'x';
	struct smtp_reply_parser p;
	smtp_reply_parser_init(&p);
	size_t used;
	assert_int_equal(smtp_reply_feed(&p, line, max, &used), SMTP_REPLY_NEED_MORE);
	assert_int_equal(smtp_reply_feed(&p, line + max, 1, &used), SMTP_REPLY_ERROR);
	assert_int_equal(p.err, SMTP_REPLY_ERR_LINE_TOO_LONG);
	smtp_reply_parser_free(&p);

	/* a CR at the limit followed by something other than LF */
	line[max] = '\r';
	line[max + 1] = 'y';
	smtp_reply_parser_init(&p);
	assert_int_equal(smtp_reply_feed(&p, line, max + 2, &used), SMTP_REPLY_ERROR);
	assert_int_equal(p.err, SMTP_REPLY_ERR_LINE_TOO_LONG);
	smtp_reply_parser_free(&p);
	free(line);
}

/* A multi-line reply over SMTP_REPLY_MAX bytes is refused; each reply is
 * counted on its own. */
static void test_reply_limit(void **state)
{
	(void)state;
	struct buf in = BUF_INIT;
	char text[1001];
	memset(text, 'y', 1000);
	text[1000] = '\0';
	size_t lines = SMTP_REPLY_MAX / 1000 + 1;
	for (size_t k = 0; k < lines; k++)
		buf_printf(&in, "250-%s\r\n", text);
	buf_puts(&in, "250 end\r\n");

	struct result r;
	run(buf_cstr(&in), in.len, 0, &r);
	assert_int_equal(r.n, 0);
	assert_int_equal(r.err, SMTP_REPLY_ERR_TOO_LONG);
	result_free(&r);

	/* just under the limit, twice in a row: both fine */
	buf_reset(&in);
	size_t per = 1000 + 6;
	for (int rep = 0; rep < 2; rep++) {
		for (size_t k = 0; k < SMTP_REPLY_MAX / per - 1; k++)
			buf_printf(&in, "250-%s\r\n", text);
		buf_puts(&in, "250 end\r\n");
	}
	run(buf_cstr(&in), in.len, 0, &r);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.err, SMTP_REPLY_OK);
	result_free(&r);
	buf_free(&in);
}

static void test_esc_valid(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		bool ok;
	} t[] = {
	    {"2.0.0", true},
	    {"5.1.1", true},
	    {"4.7.1", true},
	    {"5.123.456", true},
	    {"5.7.26", true},
	    {"3.0.0", false},
	    {"1.0.0", false},
	    {"5.1", false},
	    {"5..1", false},
	    {"5.1.", false},
	    {"5.1.1.", false},
	    {"5.1234.1", false},
	    {"5.1.1234", false},
	    {"5-1-1", false},
	    {"", false},
	    {"55.1.1", false},
	    {"5.a.1", false},
	};
	for (size_t i = 0; i < N_ELEM(t); i++)
		if (smtp_esc_valid(t[i].s, strlen(t[i].s)) != t[i].ok)
			fail_msg("esc \"%s\": want %d", t[i].s, t[i].ok);
}

static void test_format(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} t[] = {
	    {"550-5.1.1 The account\r\n550 5.1.1 does not exist\r\n",
	        "550 5.1.1 The account does not exist"},
	    {"250\r\n", "250"},
	    {"250 2.0.0\r\n", "250 2.0.0"},
	    {"421 mx busy\r\n", "421 mx busy"},
	};
	for (size_t i = 0; i < N_ELEM(t); i++) {
		struct smtp_reply_parser p;
		smtp_reply_parser_init(&p);
		size_t used;
		assert_int_equal(
		    smtp_reply_feed(&p, t[i].in, strlen(t[i].in), &used), SMTP_REPLY_DONE);
		struct buf out = BUF_INIT;
		assert_true(smtp_reply_format(&p.reply, &out));
		assert_string_equal(buf_cstr(&out), t[i].want);
		buf_free(&out);
		smtp_reply_parser_free(&p);
	}
}

/* ---- EHLO capabilities ---- */

static void parse_caps(const char *in, struct smtp_caps *caps)
{
	struct smtp_reply_parser p;
	smtp_reply_parser_init(&p);
	size_t used;
	assert_int_equal(smtp_reply_feed(&p, in, strlen(in), &used), SMTP_REPLY_DONE);
	smtp_caps_parse(&p.reply, caps);
	smtp_reply_parser_free(&p);
}

static void test_caps(void **state)
{
	(void)state;
	struct smtp_caps c;

	parse_caps("250-mx.example.test Hello client.test [192.0.2.1]\r\n"
	           "250-PIPELINING\r\n"
	           "250-SIZE 52428800\r\n"
	           "250-ETRN\r\n"
	           "250-STARTTLS\r\n"
	           "250-AUTH PLAIN LOGIN SCRAM-SHA-256 GSSAPI\r\n"
	           "250-ENHANCEDSTATUSCODES\r\n"
	           "250-8BITMIME\r\n"
	           "250-DSN\r\n"
	           "250-SMTPUTF8\r\n"
	           "250-BINARYMIME\r\n"
	           "250-REQUIRETLS\r\n"
	           "250 CHUNKING\r\n",
	    &c);
	assert_true(c.pipelining && c.size && c.starttls && c.auth && c.enhancedstatuscodes &&
	            c.eightbitmime && c.dsn && c.smtputf8 && c.chunking && c.binarymime &&
	            c.requiretls);
	assert_true(c.size_max == 52428800);
	assert_int_equal(c.auth_mechs,
	    SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN | SMTP_AUTH_SCRAM_SHA_256 | SMTP_AUTH_OTHER);

	/* case-insensitive; the old AUTH= form; SIZE without a value */
	parse_caps("250-mx\r\n250-pipelining\r\n250-Size\r\n250-AUTH=LOGIN cram-md5\r\n"
	           "250 starttls\r\n",
	    &c);
	assert_true(c.pipelining && c.size && c.starttls && c.auth);
	assert_true(c.size_max == 0);
	assert_int_equal(c.auth_mechs, SMTP_AUTH_LOGIN | SMTP_AUTH_CRAM_MD5);
	assert_false(c.dsn || c.chunking || c.eightbitmime || c.smtputf8);

	/* SIZE values that are no number, or too big: no limit known */
	parse_caps("250-mx\r\n250 SIZE 99999999999999999999999\r\n", &c);
	assert_true(c.size && c.size_max == 0);
	parse_caps("250-mx\r\n250 SIZE 12k\r\n", &c);
	assert_true(c.size && c.size_max == 0);
	parse_caps("250-mx\r\n250 SIZE 0\r\n", &c);
	assert_true(c.size && c.size_max == 0);

	/* the first line is the greeting, never a keyword */
	parse_caps("250-STARTTLS\r\n250 SIZE 10\r\n", &c);
	assert_false(c.starttls);
	assert_true(c.size && c.size_max == 10);
	parse_caps("250 PIPELINING\r\n", &c);
	assert_false(c.pipelining);

	/* keywords must be whole words */
	parse_caps("250-mx\r\n250-PIPELININGX\r\n250-XDSN\r\n250-STARTTLS=1\r\n250 DSN2\r\n", &c);
	assert_false(c.pipelining || c.dsn || c.starttls);

	/* a stray space before the keyword is tolerated */
	parse_caps("250-mx\r\n250  STARTTLS\r\n", &c);
	assert_true(c.starttls);

	/* not a 250: nothing */
	parse_caps("550-mx\r\n550 STARTTLS\r\n", &c);
	assert_false(c.starttls);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_line_limit),
	    cmocka_unit_test(test_reply_limit),
	    cmocka_unit_test(test_esc_valid),
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
