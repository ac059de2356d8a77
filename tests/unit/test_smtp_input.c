/*
 * test_smtp_input.c - table-driven unit tests for src/smtp/smtp_input.c.
 *
 * Each case is a whole client stream and the events it must give: command
 * lines, DATA contents, chunk contents, over-long line reports. A small
 * driver switches modes as the session does (a "DATA" line starts DATA, a
 * "BDAT n [LAST]" line starts a chunk of n bytes). Every stream is fed
 * whole, byte at a time, split in two at every point and in pseudo-random
 * pieces (fixed seed), and again in discard mode: the events, and the state
 * left at the end, must be the same each way.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_input.h"
#include "smtp/smtp_parse.h"

#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))
#define X10(s) s s s s s s s s s s
#define MAX_LINE_DEFAULT 64

/* ---- the driver ---- */

struct drv {
	struct smtp_input in;
	struct buf log;     /* the events, one record each, comparable with memcmp */
	struct buf content; /* DATA or chunk content since it started */
	uint64_t counted;   /* bytes used by the current chunk */
	bool discard;       /* set in->discard on every DATA and chunk */
};

static void drv_init(struct drv *d, size_t max_line, bool discard)
{
	smtp_input_init(&d->in, max_line);
	buf_init(&d->log, 0);
	buf_init(&d->content, 0);
	d->counted = 0;
	d->discard = discard;
}

static void drv_free(struct drv *d)
{
	smtp_input_free(&d->in);
	buf_free(&d->log);
	buf_free(&d->content);
}

/* One event record: kind, a size, then the bytes. */
static void log_rec(struct buf *log, char kind, uint64_t size, const char *s, size_t n)
{
	buf_printf(log, "%c%" PRIu64 ":", kind, size);
	buf_append(log, s, n);
	buf_putc(log, '\n');
}

/* After a command line: switch modes as the session would. */
static void drv_line(struct drv *d)
{
	const char *arg;
	uint64_t n;
	bool last;
	enum smtp_verb v = smtp_parse_verb(d->in.line.data, d->in.line.len, &arg);
	if (v == SMTP_CMD_DATA && *arg == '\0') {
		smtp_input_start_data(&d->in);
		d->in.discard = d->discard;
		buf_reset(&d->content);
	} else if (v == SMTP_CMD_BDAT && smtp_parse_bdat(arg, &n, &last)) {
		smtp_input_start_chunk(&d->in, n);
		d->in.discard = d->discard;
		buf_reset(&d->content);
		d->counted = 0;
	}
}

static void drv_feed(struct drv *d, const char *p, size_t len)
{
	for (;;) {
		enum smtp_in_mode mode = d->in.mode;
		size_t used = SIZE_MAX;
		enum smtp_in_event e = smtp_input_feed(&d->in, p, len, &used, &d->content);
		assert_true(used <= len);
		assert_true(d->in.line.len <= d->in.max_line);
		if (mode == SMTP_IN_CHUNK)
			d->counted += used;
		if (used > 0) {
			p += used;
			len -= used;
		}
		switch (e) {
		case SMTP_IN_NEED_MORE:
			assert_int_equal(len, 0);
			assert_int_equal(d->in.mode, mode);
			return;
		case SMTP_IN_GOT_LINE:
			assert_int_equal(mode, SMTP_IN_LINE);
			assert_true(used > 0);
			assert_non_null(d->in.line.data);
			assert_int_equal(d->in.line.data[d->in.line.len], '\0');
			assert_null(memchr(d->in.line.data, '\n', d->in.line.len));
			assert_true(d->in.line.len < d->in.max_line);
			log_rec(&d->log, 'L', d->in.line.len, d->in.line.data, d->in.line.len);
			drv_line(d);
			break;
		case SMTP_IN_LINE_TOO_LONG:
			assert_int_equal(mode, SMTP_IN_LINE);
			assert_true(used > 0);
			log_rec(&d->log, 'T', 0, "", 0);
			break;
		case SMTP_IN_DATA_END:
			assert_int_equal(mode, SMTP_IN_DATA);
			assert_int_equal(d->in.mode, SMTP_IN_LINE);
			assert_true(used > 0);
			log_rec(
			    &d->log, 'D', d->in.data.size, buf_cstr(&d->content), d->content.len);
			buf_reset(&d->content);
			break;
		case SMTP_IN_CHUNK_END:
			assert_int_equal(mode, SMTP_IN_CHUNK);
			assert_int_equal(d->in.mode, SMTP_IN_LINE);
			log_rec(&d->log, 'C', d->counted, buf_cstr(&d->content), d->content.len);
			buf_reset(&d->content);
			break;
		default:
			fail_msg("unknown event %d", (int)e);
		}
	}
}

/* The state left at the end of the stream, as a record. */
static void drv_end(const struct drv *d, struct buf *out)
{
	size_t partial = d->in.line_ready ? 0 : d->in.line.len;
	buf_printf(out,
	    "E mode=%d skipping=%d chunk_left=%" PRIu64 " size=%" PRIu64 " line=", (int)d->in.mode,
	    (int)d->in.skipping, d->in.chunk_left, d->in.data.size);
	buf_append(out, buf_cstr(&d->in.line), partial);
	buf_puts(out, " content=");
	buf_append(out, buf_cstr(&d->content), d->content.len);
}

/* ---- the cases ---- */

struct ev {
	char kind;     /* 'L' line, 'T' too long, 'D' DATA content, 'C' chunk content */
	const char *s; /* NULL for 'T' */
	size_t n;      /* 0: strlen(s) */
};

struct input_case {
	const char *name;
	const char *stream;
	size_t len;      /* 0: strlen(stream) */
	size_t max_line; /* 0: MAX_LINE_DEFAULT */
	enum smtp_in_mode end_mode;
	struct ev ev[12]; /* up to the first kind 0 */
};

#define L(s)                                                                                       \
	{                                                                                          \
		'L', s, 0                                                                          \
	}
#define T                                                                                          \
	{                                                                                          \
		'T', NULL, 0                                                                       \
	}
#define D(s)                                                                                       \
	{                                                                                          \
		'D', s, 0                                                                          \
	}
#define C(s)                                                                                       \
	{                                                                                          \
		'C', s, 0                                                                          \
	}

static const struct input_case cases[] = {
    {"plain commands", "EHLO client.example\r\nNOOP\r\nHELP\r\nQUIT\r\n", 0, 0, SMTP_IN_LINE,
        {L("EHLO client.example"), L("NOOP"), L("HELP"), L("QUIT")}},
    {"bare LF line ends", "EHLO a\nNOOP\r\nRSET\nQUIT\n", 0, 0, SMTP_IN_LINE,
        {L("EHLO a"), L("NOOP"), L("RSET"), L("QUIT")}},
    {"empty lines; only one CR is removed", "\r\n\n\r\r\nNOOP\r\n\r\n", 0, 0, SMTP_IN_LINE,
        {L(""), L(""), L("\r"), L("NOOP"), L("")}},
    {"CR inside a line is kept", "NO\rOP\r\n", 0, 0, SMTP_IN_LINE, {L("NO\rOP")}},
    {"NUL inside a line is kept", "NO\0OP\r\nQUIT\r\n", 13, 0, SMTP_IN_LINE,
        {{'L', "NO\0OP", 5}, L("QUIT")}},
    {"unterminated last line", "NOOP\r\nQUI", 0, 0, SMTP_IN_LINE, {L("NOOP")}},
    {"empty stream", "", 0, 0, SMTP_IN_LINE, {{0}}},
    {"pipelined transaction",
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n"
        "DATA\r\nSubject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n",
        0, 0, SMTP_IN_LINE,
        {L("MAIL FROM:<a@example.org>"), L("RCPT TO:<b@example.net>"), L("RCPT TO:<c@example.net>"),
            L("DATA"), D("Subject: hi\r\n\r\nhello\r\n"), L("QUIT")}},
    {"DATA after a bare-LF command line", "data\nx\r\n.\r\nNOOP\n", 0, 0, SMTP_IN_LINE,
        {L("data"), D("x\r\n"), L("NOOP")}},
    {"DATA with an argument is only a line", "DATA x\r\n.\r\n", 0, 0, SMTP_IN_LINE,
        {L("DATA x"), L(".")}},
    {"empty DATA", "DATA\r\n.\r\nQUIT\r\n", 0, 0, SMTP_IN_LINE, {L("DATA"), D(""), L("QUIT")}},
    {"dot-stuffing", "DATA\r\n..a\r\n...\r\n..\r\nb.\r\n. \r\n.\r\nNOOP\r\n", 0, 0, SMTP_IN_LINE,
        {L("DATA"), D(".a\r\n..\r\n.\r\nb.\r\n \r\n"), L("NOOP")}},
    {"smuggling: bare LF and CR never end DATA",
        "DATA\r\nx\n.\nMAIL FROM:<e@f>\r\ny\r.\rRCPT TO:<g@h>\r\nw\n.\r\nDATA\r\n.\r\nQUIT\r\n", 0,
        0, SMTP_IN_LINE,
        {L("DATA"), D("x\n.\nMAIL FROM:<e@f>\r\ny\r.\rRCPT TO:<g@h>\r\nw\n.\r\nDATA\r\n"),
            L("QUIT")}},
    {"smuggling: <CRLF>.<LF> and <CRLF>.<CR> are data",
        "DATA\r\na\r\n.\nb\r\n.\rc\r\n.\r\nNOOP\r\n", 0, 0, SMTP_IN_LINE,
        {L("DATA"), D("a\r\n\nb\r\n\rc\r\n"), L("NOOP")}},
    {"two messages back to back", "DATA\r\none\r\n.\r\nDATA\r\ntwo\r\n.\r\n", 0, 0, SMTP_IN_LINE,
        {L("DATA"), D("one\r\n"), L("DATA"), D("two\r\n")}},
    {"unfinished DATA", "DATA\r\nabc\r\n.\r", 0, 0, SMTP_IN_DATA, {L("DATA")}},
    {"BDAT chunks, next command right after each",
        "BDAT 5\r\nabcdeBDAT 7\r\n\r\n.\r\nxyBDAT 0 LAST\r\nQUIT\r\n", 0, 0, SMTP_IN_LINE,
        {L("BDAT 5"), C("abcde"), L("BDAT 7"), C("\r\n.\r\nxy"), L("BDAT 0 LAST"), C(""),
            L("QUIT")}},
    {"BDAT chunk holding command lines", "bdat 12 last\r\nDATA\r\nQUIT\r\nNOOP\r\n", 0, 0,
        SMTP_IN_LINE, {L("bdat 12 last"), C("DATA\r\nQUIT\r\n"), L("NOOP")}},
    {"BDAT 0 at the end of the stream", "BDAT 0 LAST\r\n", 0, 0, SMTP_IN_LINE,
        {L("BDAT 0 LAST"), C("")}},
    {"BDAT then DATA", "BDAT 3\nabcDATA\r\nx\r\n.\r\n", 0, 0, SMTP_IN_LINE,
        {L("BDAT 3"), C("abc"), L("DATA"), D("x\r\n")}},
    {"bad BDAT stays in line mode", "BDAT x\r\nBDAT 1 FIRST\r\nNOOP\r\n", 0, 0, SMTP_IN_LINE,
        {L("BDAT x"), L("BDAT 1 FIRST"), L("NOOP")}},
    {"unfinished chunk", "BDAT 10\r\nabc", 0, 0, SMTP_IN_CHUNK, {L("BDAT 10")}},
    {"line length: max_line accepted, max_line + 1 reported once",
        "12345678\r\n123456789\n123456789\r\n1234567890\nNOOP\r\n", 0, 10, SMTP_IN_LINE,
        {L("12345678"), L("123456789"), T, T, L("NOOP")}},
    {"line length: reported before its LF, then skipped", "12345678901234567890x\r\nNOOP\r\n", 0,
        10, SMTP_IN_LINE, {T, L("NOOP")}},
    {"line length: two long lines", "12345678901\r\n" X10("a") "bc\nNOOP\n", 0, 10, SMTP_IN_LINE,
        {T, T, L("NOOP")}},
    {"line length: max_line bytes without LF are kept, not yet reported", "NOOP\r\n0123456789", 0,
        10, SMTP_IN_LINE, {L("NOOP")}},
    {"line length: never ends", X10("x") "xxxx", 0, 10, SMTP_IN_LINE, {T}},
    {"line length: very long line then a command", X10(X10(X10("y"))) "\r\nMAIL FROM:<a@b>\r\n", 0,
        0, SMTP_IN_LINE, {T, L("MAIL FROM:<a@b>")}},
    {"line length: max_line 1", "\n\r\nNOOP\n\n", 0, 1, SMTP_IN_LINE, {L(""), T, T, L("")}},
    {"line length: not applied to DATA", "DATA\r\n" X10(X10("z")) "\r\n.\r\nNOOP\r\n", 0, 16,
        SMTP_IN_LINE, {L("DATA"), D(X10(X10("z")) "\r\n"), L("NOOP")}},
    {"line length: not applied to a chunk", "BDAT 100 LAST\r\n" X10(X10("z")) "NOOP\r\n", 0, 16,
        SMTP_IN_LINE, {L("BDAT 100 LAST"), C(X10(X10("z"))), L("NOOP")}},
};

/* The log the case expects (contents left out in discard mode). */
static void expected_log(const struct input_case *c, bool discard, struct buf *out)
{
	for (size_t i = 0; i < N_ELEM(c->ev) && c->ev[i].kind != 0; i++) {
		const struct ev *e = &c->ev[i];
		size_t n = e->s == NULL ? 0 : e->n ? e->n : strlen(e->s);
		if (e->kind == 'T')
			log_rec(out, 'T', 0, "", 0);
		else if (e->kind == 'L' || !discard)
			log_rec(out, e->kind, n, e->s, n);
		else
			log_rec(out, e->kind, n, "", 0);
	}
}

static void same(const char *name, const char *how, const struct buf *want, const struct buf *got)
{
	if (want->len == got->len && memcmp(buf_cstr(want), buf_cstr(got), got->len) == 0)
		return;
	printf("case \"%s\" fed %s:\n--- want (%zu bytes)\n%s\n--- got (%zu bytes)\n%s\n", name,
	    how, want->len, buf_cstr(want), got->len, buf_cstr(got));
	fail_msg("case \"%s\" fed %s: events differ", name, how);
}

/* Feed stream in pieces cut at cuts[0..ncuts) (ascending), log and end state. */
static void run_cuts(const char *s, size_t len, size_t max_line, bool discard, const size_t *cuts,
    size_t ncuts, struct buf *log, struct buf *end)
{
	struct drv d;
	drv_init(&d, max_line, discard);
	size_t at = 0;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		drv_feed(&d, s + at, to - at);
		at = to;
	}
	buf_append(log, buf_cstr(&d.log), d.log.len);
	drv_end(&d, end);
	drv_free(&d);
}

/* All the ways of feeding one stream must give want (and the same end). */
static void check_stream(const char *name, const char *s, size_t len, size_t max_line, bool discard,
    const struct buf *want, enum smtp_in_mode end_mode, size_t split_step)
{
	struct buf log0 = BUF_INIT, end0 = BUF_INIT, log = BUF_INIT, end = BUF_INIT;
	char how[64];

	/* whole, and the end state every other way must leave */
	struct drv d;
	drv_init(&d, max_line, discard);
	drv_feed(&d, s, len);
	assert_int_equal(d.in.mode, end_mode);
	buf_append(&log0, buf_cstr(&d.log), d.log.len);
	drv_end(&d, &end0);
	drv_free(&d);
	same(name, "whole", want, &log0);

	/* byte at a time */
	drv_init(&d, max_line, discard);
	for (size_t i = 0; i < len; i++)
		drv_feed(&d, s + i, 1);
	drv_end(&d, &end);
	same(name, "byte at a time", want, &d.log);
	same(name, "byte at a time (end)", &end0, &end);
	drv_free(&d);

	/* every 2-way split, the empty pieces at both ends included */
	for (size_t k = 0; k <= len; k += split_step) {
		buf_reset(&log);
		buf_reset(&end);
		run_cuts(s, len, max_line, discard, &k, 1, &log, &end);
		snprintf(how, sizeof(how), "split at %zu", k);
		same(name, how, want, &log);
		same(name, how, &end0, &end);
	}

	/* random pieces, fixed seed */
	uint32_t seed = 12345;
	for (int round = 0; round < 40; round++) {
		size_t cuts[4096], ncuts = 0, at = 0, maxpiece = 2 + (size_t)round % 17;
		while (ncuts < N_ELEM(cuts)) {
			seed = seed * 1103515245u + 12345u;
			at += 1 + (seed >> 16) % maxpiece;
			if (at >= len)
				break;
			cuts[ncuts++] = at;
		}
		buf_reset(&log);
		buf_reset(&end);
		run_cuts(s, len, max_line, discard, cuts, ncuts, &log, &end);
		snprintf(how, sizeof(how), "in random pieces (round %d)", round);
		same(name, how, want, &log);
		same(name, how, &end0, &end);
	}

	buf_free(&log0);
	buf_free(&end0);
	buf_free(&log);
	buf_free(&end);
}

static void test_cases(void **state)
{
	for (size_t i = 0; i < N_ELEM(cases); i++) {
		const struct input_case *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->stream);
		size_t max_line = c->max_line ? c->max_line : MAX_LINE_DEFAULT;
		for (int discard = 0; discard <= 1; discard++) {
			struct buf want = BUF_INIT;
			expected_log(c, discard, &want);
			check_stream(
			    c->name, c->stream, len, max_line, discard, &want, c->end_mode, 1);
			buf_free(&want);
		}
	}
}

/* A real-size session: default line length, long lines, big DATA and BDAT. */
static void test_big(void **state)
{
	const size_t max_line = SMTP_LINE_MAX;
	struct buf s = BUF_INIT, want = BUF_INIT, want_discard = BUF_INIT, body = BUF_INIT;

	for (size_t i = 0; i < 10000; i++)
		buf_putc(&s, (char)('a' + i % 26));
	buf_puts(&s, "\r\n");
	log_rec(&want, 'T', 0, "", 0);
	/* the longest line allowed: max_line - 2 bytes and CRLF */
	const size_t noop_at = s.len;
	size_t at = s.len;
	buf_puts(&s, "NOOP ");
	while (s.len - at < max_line - 2)
		buf_putc(&s, 'n');
	log_rec(&want, 'L', max_line - 2, s.data + at, max_line - 2);
	buf_puts(&s, "\r\nDATA\r\n");
	log_rec(&want, 'L', 4, "DATA", 4);
	for (size_t i = 0; i < 3000; i++)
		buf_printf(&body, "%s%zu line of the message\r\n", i % 7 == 0 ? "." : "", i);
	buf_puts(&s, buf_cstr(&body));
	buf_puts(&s, ".\r\nBDAT 20000 LAST\r\n");
	struct buf unstuffed = BUF_INIT; /* the body without the stuffed dots */
	for (size_t i = 0; i < 3000; i++)
		buf_printf(&unstuffed, "%zu line of the message\r\n", i);
	log_rec(&want, 'D', unstuffed.len, unstuffed.data, unstuffed.len);
	log_rec(&want, 'L', 15, "BDAT 20000 LAST", 15);
	at = s.len;
	for (size_t i = 0; i < 20000; i++)
		buf_putc(&s, i % 100 == 99 ? '\n' : (char)('A' + i % 26));
	log_rec(&want, 'C', 20000, s.data + at, 20000);
	buf_puts(&s, "QUIT\r\n");
	log_rec(&want, 'L', 4, "QUIT", 4);
	assert_false(buf_err(&s) || buf_err(&want));

	/* the same events, contents left out */
	log_rec(&want_discard, 'T', 0, "", 0);
	log_rec(&want_discard, 'L', max_line - 2, s.data + noop_at, max_line - 2);
	log_rec(&want_discard, 'L', 4, "DATA", 4);
	log_rec(&want_discard, 'D', unstuffed.len, "", 0);
	log_rec(&want_discard, 'L', 15, "BDAT 20000 LAST", 15);
	log_rec(&want_discard, 'C', 20000, "", 0);
	log_rec(&want_discard, 'L', 4, "QUIT", 4);

	check_stream("big", s.data, s.len, max_line, false, &want, SMTP_IN_LINE, 97);
	check_stream(
	    "big (discard)", s.data, s.len, max_line, true, &want_discard, SMTP_IN_LINE, 997);

	buf_free(&s);
	buf_free(&want);
	buf_free(&want_discard);
	buf_free(&body);
	buf_free(&unstuffed);
}

/* The call-level contract: what *used says, what stays with the caller. */
static void test_used(void **state)
{
	struct smtp_input in;
	struct buf content = BUF_INIT;
	size_t used;
	const char *p = "NOOP\r\nQUIT\r\nRS";

	smtp_input_init(&in, 64);
	/* an empty line on a fresh input is still a C string */
	assert_int_equal(smtp_input_feed(&in, "\n", 1, &used, &content), SMTP_IN_GOT_LINE);
	assert_int_equal(used, 1);
	assert_non_null(in.line.data);
	assert_string_equal(in.line.data, "");
	/* one event per call; the rest stays with the caller */
	assert_int_equal(smtp_input_feed(&in, p, strlen(p), &used, &content), SMTP_IN_GOT_LINE);
	assert_int_equal(used, 6);
	assert_string_equal(in.line.data, "NOOP");
	assert_int_equal(in.line.len, 4);
	p += used;
	assert_int_equal(smtp_input_feed(&in, p, strlen(p), &used, &content), SMTP_IN_GOT_LINE);
	assert_int_equal(used, 6);
	assert_string_equal(in.line.data, "QUIT");
	p += used;
	assert_int_equal(smtp_input_feed(&in, p, strlen(p), &used, &content), SMTP_IN_NEED_MORE);
	assert_int_equal(used, 2);
	assert_int_equal(smtp_input_feed(&in, NULL, 0, &used, &content), SMTP_IN_NEED_MORE);
	assert_int_equal(used, 0);
	assert_int_equal(smtp_input_feed(&in, "ET\r\n", 4, &used, &content), SMTP_IN_GOT_LINE);
	assert_string_equal(in.line.data, "RSET");

	/* DATA: the bytes after ".\r\n" are not used; the flags stay readable */
	p = "a\nb\r\n.\r\nQUIT\r\n";
	smtp_input_start_data(&in);
	assert_int_equal(in.mode, SMTP_IN_DATA);
	assert_int_equal(smtp_input_feed(&in, p, strlen(p), &used, &content), SMTP_IN_DATA_END);
	assert_int_equal(used, 8);
	assert_int_equal(in.mode, SMTP_IN_LINE);
	assert_string_equal(buf_cstr(&content), "a\nb\r\n");
	assert_true(in.data.bare_lf);
	assert_false(in.data.bare_cr);
	assert_int_equal(in.data.size, 5);
	assert_int_equal(smtp_input_feed(&in, p + 8, 6, &used, &content), SMTP_IN_GOT_LINE);
	assert_string_equal(in.line.data, "QUIT");

	/* discard: counted, not output; start_data clears it again */
	buf_reset(&content);
	smtp_input_start_data(&in);
	in.discard = true;
	assert_int_equal(
	    smtp_input_feed(&in, "abc\r\n.\r\n", 8, &used, &content), SMTP_IN_DATA_END);
	assert_int_equal(content.len, 0);
	assert_int_equal(in.data.size, 5);
	smtp_input_start_data(&in);
	assert_false(in.discard);
	assert_int_equal(
	    smtp_input_feed(&in, "abc\r\n.\r\n", 8, &used, &content), SMTP_IN_DATA_END);
	assert_string_equal(buf_cstr(&content), "abc\r\n");

	/* a 0-byte chunk ends at the first call, even one with no bytes */
	buf_reset(&content);
	smtp_input_start_chunk(&in, 0);
	assert_int_equal(smtp_input_feed(&in, NULL, 0, &used, &content), SMTP_IN_CHUNK_END);
	assert_int_equal(used, 0);
	assert_int_equal(in.mode, SMTP_IN_LINE);
	smtp_input_start_chunk(&in, 0);
	assert_int_equal(smtp_input_feed(&in, "NOOP\r\n", 6, &used, &content), SMTP_IN_CHUNK_END);
	assert_int_equal(used, 0);

	/* a chunk: exactly its bytes, in as many calls as needed; NULL content */
	smtp_input_start_chunk(&in, 5);
	assert_int_equal(smtp_input_feed(&in, "abc", 3, &used, &content), SMTP_IN_NEED_MORE);
	assert_int_equal(used, 3);
	assert_int_equal(in.chunk_left, 2);
	assert_int_equal(smtp_input_feed(&in, "deNOOP", 6, &used, NULL), SMTP_IN_CHUNK_END);
	assert_int_equal(used, 2);
	assert_string_equal(buf_cstr(&content), "abc");
	assert_int_equal(smtp_input_feed(&in, "NOOP\r\n", 6, &used, &content), SMTP_IN_GOT_LINE);

	/* a chunk past the content's cap: the sticky error, framing goes on */
	struct buf small;
	buf_init(&small, 4);
	smtp_input_start_chunk(&in, 10);
	assert_int_equal(
	    smtp_input_feed(&in, "0123456789QUIT\n", 15, &used, &small), SMTP_IN_CHUNK_END);
	assert_int_equal(used, 10);
	assert_true(buf_err(&small));
	assert_int_equal(smtp_input_feed(&in, "QUIT\n", 5, &used, &content), SMTP_IN_GOT_LINE);
	assert_string_equal(in.line.data, "QUIT");
	buf_free(&small);

	/* an over-long line: reported once, then skipped to its LF */
	smtp_input_free(&in);
	smtp_input_init(&in, 8);
	assert_int_equal(smtp_input_feed(&in, "1234567\n", 8, &used, &content), SMTP_IN_GOT_LINE);
	assert_int_equal(smtp_input_feed(&in, "12345678", 8, &used, &content), SMTP_IN_NEED_MORE);
	assert_int_equal(in.line.len, 8);
	assert_false(in.skipping);
	assert_int_equal(smtp_input_feed(&in, "\n", 1, &used, &content), SMTP_IN_LINE_TOO_LONG);
	assert_int_equal(used, 1);
	assert_false(in.skipping);
	assert_int_equal(smtp_input_feed(&in, "1234567", 7, &used, &content), SMTP_IN_NEED_MORE);
	assert_int_equal(smtp_input_feed(&in, "89", 2, &used, &content), SMTP_IN_LINE_TOO_LONG);
	assert_int_equal(used, 2);
	assert_true(in.skipping);
	assert_int_equal(in.line.len, 0);
	assert_int_equal(
	    smtp_input_feed(&in, "0123456789", 10, &used, &content), SMTP_IN_NEED_MORE);
	assert_int_equal(
	    smtp_input_feed(&in, "\r\nNOOP\r\n", 8, &used, &content), SMTP_IN_GOT_LINE);
	assert_int_equal(used, 8);
	assert_string_equal(in.line.data, "NOOP");
	assert_false(in.skipping);

	smtp_input_free(&in);
	smtp_input_free(NULL);
	buf_free(&content);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_big),
	    cmocka_unit_test(test_used),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
