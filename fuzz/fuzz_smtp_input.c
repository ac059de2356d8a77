/*
 * fuzz_smtp_input.c - libFuzzer target for the SMTP input framer.
 *
 * Input: byte 0 seeds the split pattern, byte 1 gives max_line (1..256),
 * the rest is the client stream. A driver switches modes as the session
 * does ("DATA" line: DATA mode; "BDAT n [LAST]": a chunk of n bytes). The
 * stream is fed whole, byte at a time, split in two, in pseudo-random
 * pieces and in discard mode; the events (lines, over-long reports, DATA
 * and chunk contents) and the state at the end must be the same each way
 * and the same as a naive byte-at-a-time reference written from the
 * contract in smtp_input.h. Any difference aborts. The command line buffer
 * never holds more than max_line bytes.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_input.h"
#include "smtp/smtp_parse.h"

#include "fuzz_check.h"

/* One event: kind, size, and (in the full log) the bytes. */
static void log_rec(struct buf *log, char kind, uint64_t size, const char *s, size_t n)
{
	buf_printf(log, "%c%" PRIu64 ":", kind, size);
	buf_append(log, s, n);
	buf_putc(log, '\n');
}

/* After a command line, the mode the session would switch to. */
enum next { NEXT_LINE, NEXT_DATA, NEXT_CHUNK };
static enum next after_line(const char *line, size_t len, uint64_t *n)
{
	const char *arg;
	bool last;
	enum smtp_verb v = smtp_parse_verb(line, len, &arg);
	if (v == SMTP_CMD_DATA && *arg == '\0')
		return NEXT_DATA;
	if (v == SMTP_CMD_BDAT && smtp_parse_bdat(arg, n, &last))
		return NEXT_CHUNK;
	return NEXT_LINE;
}

static void end_rec(struct buf *out, int mode, bool skipping, uint64_t left, uint64_t size,
    const struct buf *line, const struct buf *content)
{
	buf_printf(out, "E%d %d %" PRIu64 " %" PRIu64 " line=", mode, (int)skipping, left, size);
	buf_append(out, buf_cstr(line), line->len);
	buf_puts(out, " content=");
	buf_append(out, buf_cstr(content), content->len);
}

/* ---- the framer under test ---- */

struct drv {
	struct smtp_input in;
	struct buf ev;      /* events with sizes only */
	struct buf full;    /* events with their bytes */
	struct buf content; /* DATA or chunk content since it started */
	uint64_t counted;
	bool discard;
};

static void drv_feed(struct drv *d, const char *p, size_t len)
{
	for (;;) {
		enum smtp_in_mode mode = d->in.mode;
		size_t used = SIZE_MAX;
		uint64_t n;
		enum smtp_in_event e = smtp_input_feed(&d->in, p, len, &used, &d->content);
		CHECK(used <= len);
		CHECK(d->in.line.len <= d->in.max_line);
		CHECK(!buf_err(&d->in.line));
		if (mode == SMTP_IN_CHUNK)
			d->counted += used;
		if (used > 0) {
			p += used;
			len -= used;
		}
		if (d->discard)
			CHECK(d->content.len == 0);
		switch (e) {
		case SMTP_IN_NEED_MORE:
			CHECK(len == 0 && d->in.mode == mode);
			return;
		case SMTP_IN_GOT_LINE:
			CHECK(mode == SMTP_IN_LINE && used > 0);
			CHECK(d->in.line.len < d->in.max_line);
			CHECK(d->in.line.data != NULL && d->in.line.data[d->in.line.len] == '\0');
			CHECK(memchr(d->in.line.data, '\n', d->in.line.len) == NULL);
			log_rec(&d->ev, 'L', d->in.line.len, d->in.line.data, d->in.line.len);
			log_rec(&d->full, 'L', d->in.line.len, d->in.line.data, d->in.line.len);
			switch (after_line(d->in.line.data, d->in.line.len, &n)) {
			case NEXT_DATA:
				smtp_input_start_data(&d->in);
				d->in.discard = d->discard;
				buf_reset(&d->content);
				break;
			case NEXT_CHUNK:
				smtp_input_start_chunk(&d->in, n);
				d->in.discard = d->discard;
				buf_reset(&d->content);
				d->counted = 0;
				break;
			case NEXT_LINE:
				break;
			default:
				abort();
			}
			break;
		case SMTP_IN_LINE_TOO_LONG:
			CHECK(mode == SMTP_IN_LINE && used > 0 && d->in.line.len == 0);
			log_rec(&d->ev, 'T', 0, "", 0);
			log_rec(&d->full, 'T', 0, "", 0);
			break;
		case SMTP_IN_DATA_END:
			CHECK(mode == SMTP_IN_DATA && d->in.mode == SMTP_IN_LINE && used > 0);
			CHECK(d->discard || d->in.data.size == d->content.len);
			log_rec(&d->ev, 'D', d->in.data.size, "", 0);
			log_rec(
			    &d->full, 'D', d->in.data.size, buf_cstr(&d->content), d->content.len);
			buf_reset(&d->content);
			break;
		case SMTP_IN_CHUNK_END:
			CHECK(mode == SMTP_IN_CHUNK && d->in.mode == SMTP_IN_LINE);
			CHECK(d->discard || d->counted == d->content.len);
			log_rec(&d->ev, 'C', d->counted, "", 0);
			log_rec(&d->full, 'C', d->counted, buf_cstr(&d->content), d->content.len);
			buf_reset(&d->content);
			break;
		default:
			abort();
		}
	}
}

struct result {
	struct buf ev, full, end;
};

static void result_free(struct result *r)
{
	buf_free(&r->ev);
	buf_free(&r->full);
	buf_free(&r->end);
}

/* Feed in pieces of 1..maxpiece bytes (0: all at once; SIZE_MAX: two pieces
 * cut at seed % (len + 1)). */
static void run(const char *s, size_t len, size_t max_line, unsigned seed, size_t maxpiece,
    bool discard, struct result *r)
{
	struct drv d;
	smtp_input_init(&d.in, max_line);
	buf_init(&d.ev, 0);
	buf_init(&d.full, 0);
	buf_init(&d.content, 0);
	d.counted = 0;
	d.discard = discard;
	size_t at = 0;
	if (maxpiece == SIZE_MAX) {
		at = seed % (len + 1);
		drv_feed(&d, s, at);
	}
	while (at < len) {
		size_t n = len - at;
		if (maxpiece > 0 && maxpiece != SIZE_MAX) {
			seed = seed * 1103515245u + 12345u;
			size_t piece = 1 + (seed >> 16) % maxpiece;
			if (piece < n)
				n = piece;
		}
		drv_feed(&d, s + at, n);
		at += n;
	}
	if (len == 0)
		drv_feed(&d, NULL, 0);
	struct buf partial = BUF_INIT;
	if (!d.in.line_ready)
		buf_append(&partial, buf_cstr(&d.in.line), d.in.line.len);
	buf_init(&r->end, 0);
	end_rec(&r->end, (int)d.in.mode, d.in.skipping,
	    d.in.mode == SMTP_IN_CHUNK ? d.in.chunk_left : 0, d.in.data.size, &partial, &d.content);
	buf_free(&partial);
	r->ev = d.ev;
	r->full = d.full;
	buf_free(&d.content);
	smtp_input_free(&d.in);
}

/* ---- the reference: one byte at a time, straight from the contract ---- */

static void reference(const char *s, size_t len, size_t max_line, struct result *r)
{
	enum smtp_in_mode mode = SMTP_IN_LINE;
	struct buf line = BUF_INIT, content = BUF_INIT;
	struct smtp_data_parser dp;
	bool skipping = false;
	uint64_t left = 0, counted = 0, n;

	smtp_data_init(&dp);
	buf_init(&r->full, 0);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		switch (mode) {
		case SMTP_IN_LINE:
			if (skipping) {
				skipping = c != '\n';
				break;
			}
			if (c != '\n' && line.len + 1 > max_line) {
				/* more than max_line bytes and no LF */
				log_rec(&r->full, 'T', 0, "", 0);
				skipping = true;
				buf_reset(&line);
				break;
			}
			if (c != '\n') {
				buf_putc(&line, c);
				break;
			}
			if (line.len + 1 > max_line) {
				log_rec(&r->full, 'T', 0, "", 0);
				buf_reset(&line);
				break;
			}
			if (line.len > 0 && line.data[line.len - 1] == '\r')
				line.data[--line.len] = '\0';
			log_rec(&r->full, 'L', line.len, buf_cstr(&line), line.len);
			switch (after_line(buf_cstr(&line), line.len, &n)) {
			case NEXT_DATA:
				mode = SMTP_IN_DATA;
				smtp_data_init(&dp);
				break;
			case NEXT_CHUNK:
				if (n == 0) {
					log_rec(&r->full, 'C', 0, "", 0);
				} else {
					mode = SMTP_IN_CHUNK;
					left = n;
					counted = 0;
				}
				break;
			case NEXT_LINE:
				break;
			default:
				abort();
			}
			buf_reset(&line);
			break;
		case SMTP_IN_DATA:
			CHECK(smtp_data_feed(&dp, &c, 1, &content) == 1);
			if (smtp_data_done(&dp)) {
				log_rec(&r->full, 'D', dp.size, buf_cstr(&content), content.len);
				buf_reset(&content);
				mode = SMTP_IN_LINE;
			}
			break;
		case SMTP_IN_CHUNK:
			buf_putc(&content, c);
			counted++;
			if (--left == 0) {
				log_rec(&r->full, 'C', counted, buf_cstr(&content), content.len);
				buf_reset(&content);
				mode = SMTP_IN_LINE;
			}
			break;
		default:
			abort();
		}
	}
	buf_init(&r->end, 0);
	end_rec(&r->end, (int)mode, skipping, left, dp.size, &line, &content);
	buf_init(&r->ev, 0);
	buf_free(&line);
	buf_free(&content);
}

static bool eq(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && memcmp(buf_cstr(a), buf_cstr(b), a->len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	unsigned seed = data[0];
	size_t max_line = 1 + (size_t)data[1];
	const char *s = (const char *)data + 2;
	size_t len = size - 2;

	struct result whole, bytes, split, pieces, discard, ref;
	run(s, len, max_line, seed, 0, false, &whole);
	run(s, len, max_line, seed, 1, false, &bytes);
	run(s, len, max_line, seed * 2654435761u, SIZE_MAX, false, &split);
	run(s, len, max_line, seed, 1 + seed % 64, false, &pieces);
	run(s, len, max_line, seed, 1 + seed % 16, true, &discard);
	reference(s, len, max_line, &ref);

	CHECK(eq(&whole.full, &bytes.full) && eq(&whole.end, &bytes.end));
	CHECK(eq(&whole.full, &split.full) && eq(&whole.end, &split.end));
	CHECK(eq(&whole.full, &pieces.full) && eq(&whole.end, &pieces.end));
	CHECK(eq(&whole.ev, &bytes.ev) && eq(&whole.ev, &discard.ev));
	CHECK(eq(&whole.full, &ref.full));
	CHECK(eq(&whole.end, &ref.end));

	result_free(&whole);
	result_free(&bytes);
	result_free(&split);
	result_free(&pieces);
	result_free(&discard);
	result_free(&ref);
	return 0;
}
