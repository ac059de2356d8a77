/*
 * fuzz_smtp_data.c - libFuzzer target for the DATA stream parser and the
 * header helpers. The first input byte seeds the split pattern; the rest is
 * the stream. The stream is fed whole, byte at a time, in pseudo-random
 * pieces and in discard mode, and compared with a naive reference decoder
 * written straight from RFC 5321 4.5.2; any difference aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parse.h"

#include "fuzz_check.h"

struct result {
	struct buf out;
	size_t consumed;
	struct smtp_data_parser p;
};

/* Feed in pieces of 1..maxpiece bytes (0: all at once), sizes from seed. */
static void run(
    const char *in, size_t len, unsigned seed, size_t maxpiece, bool discard, struct result *r)
{
	buf_init(&r->out, 0);
	smtp_data_init(&r->p);
	r->p.discard = discard;
	size_t pos = 0;
	for (;;) {
		size_t n = len - pos;
		if (maxpiece > 0) {
			seed = seed * 1103515245u + 12345u;
			size_t piece = 1 + (seed >> 16) % maxpiece;
			if (piece < n)
				n = piece;
		}
		size_t c = smtp_data_feed(&r->p, in + pos, n, &r->out);
		CHECK(c <= n);
		pos += c;
		if (smtp_data_done(&r->p))
			break;
		CHECK(c == n);
		if (pos == len)
			break;
	}
	r->consumed = pos;
}

/* The reference: one byte at a time, lines as the RFC describes them. */
static size_t reference(const char *in, size_t len, struct buf *out, bool *done, bool *lf, bool *cr)
{
	bool line_start = true;
	*done = *lf = *cr = false;
	size_t i = 0;
	while (i < len) {
		if (line_start && in[i] == '.') {
			if (i + 2 < len && in[i + 1] == '\r' && in[i + 2] == '\n') {
				*done = true;
				return i + 3;
			}
			if (i + 2 == len && in[i + 1] == '\r')
				return len; /* ".\r" at the end: the CR waits for its LF */
			i++;                /* dot-unstuffing */
			line_start = false;
			continue;
		}
		line_start = false;
		if (in[i] == '\r') {
			if (i + 1 < len && in[i + 1] == '\n') {
				buf_append(out, "\r\n", 2);
				i += 2;
				line_start = true;
				continue;
			}
			if (i + 1 < len)
				*cr = true; /* a CR at the very end may still get its LF */
			buf_putc(out, '\r');
			i++;
			continue;
		}
		if (in[i] == '\n')
			*lf = true;
		buf_putc(out, in[i]);
		i++;
	}
	return len;
}

static void same(const struct result *a, const struct result *b)
{
	CHECK(a->consumed == b->consumed);
	CHECK(a->p.state == b->p.state);
	CHECK(a->p.size == b->p.size);
	CHECK(a->p.bare_lf == b->p.bare_lf && a->p.bare_cr == b->p.bare_cr);
	CHECK(a->out.len == b->out.len);
	CHECK(memcmp(buf_cstr(&a->out), buf_cstr(&b->out), a->out.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned seed = data[0];
	const char *in = (const char *)data + 1;
	size_t len = size - 1;

	struct result whole, bytes, pieces, discard;
	run(in, len, seed, 0, false, &whole);
	run(in, len, seed, 1, false, &bytes);
	run(in, len, seed, 1 + seed % 64, false, &pieces);
	run(in, len, seed, 1 + seed % 16, true, &discard);
	same(&whole, &bytes);
	same(&whole, &pieces);
	CHECK(discard.out.len == 0);
	CHECK(discard.consumed == whole.consumed && discard.p.size == whole.p.size);
	CHECK(whole.p.size == whole.out.len);

	/* the independent reference agrees */
	struct buf ref = BUF_INIT;
	bool done, lf, cr;
	size_t rc = reference(in, len, &ref, &done, &lf, &cr);
	CHECK(rc == whole.consumed);
	CHECK(done == smtp_data_done(&whole.p));
	CHECK(lf == whole.p.bare_lf);
	CHECK(cr == whole.p.bare_cr);
	CHECK(
	    ref.len == whole.out.len && memcmp(buf_cstr(&ref), buf_cstr(&whole.out), ref.len) == 0);
	buf_free(&ref);

	/* the end is exactly the first <CRLF>.<CRLF> (or ".\r\n" first) */
	if (smtp_data_done(&whole.p)) {
		size_t c = whole.consumed;
		CHECK(c == 3 ? memcmp(in, ".\r\n", 3) == 0
		             : c >= 5 && memcmp(in + c - 5, "\r\n.\r\n", 5) == 0);
		if (c > 3)
			CHECK(memmem(in, c, "\r\n.\r\n", 5) == in + c - 5);
	} else {
		CHECK(memmem(in, len, "\r\n.\r\n", 5) == NULL &&
		      (len < 3 || memcmp(in, ".\r\n", 3) != 0));
	}

	/* header helpers on the content */
	const char *msg = buf_cstr(&whole.out);
	size_t mlen = whole.out.len;
	size_t hlen = smtp_header_section_len(msg, mlen);
	CHECK(hlen <= mlen);
	struct buf v = BUF_INIT;
	size_t max = seed % 80;
	if (smtp_header_get(msg, mlen, "subject", &v, max)) {
		CHECK(v.len <= max);
		CHECK(memchr(buf_cstr(&v), '\n', v.len) == NULL);
		if (v.len > 0)
			CHECK(v.data[0] != ' ' && v.data[0] != '\t');
	} else {
		CHECK(v.len == 0);
	}
	buf_free(&v);

	buf_free(&whole.out);
	buf_free(&bytes.out);
	buf_free(&pieces.out);
	buf_free(&discard.out);
	return 0;
}
