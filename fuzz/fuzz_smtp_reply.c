/*
 * fuzz_smtp_reply.c - libFuzzer target for the SMTP reply parser and the
 * EHLO capability reader.
 *
 * The first input byte seeds the split pattern; the rest is the byte stream
 * from a server. It is fed whole, one byte at a time and in pseudo-random
 * pieces; the three runs must give the same replies and end in the same
 * state. Every reply must satisfy the contract: code 200..559, an enhanced
 * status code that is valid and of the reply's class (or none), text within
 * SMTP_REPLY_MAX without CR or NUL, nlines - 1 newlines in the text. Any
 * difference aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_reply.h"

#include "fuzz_check.h"

/* All replies of a run, serialised, and the final state. */
struct result {
	struct buf log;
	enum smtp_reply_err err;
	bool pending;
};

static void check_reply(const struct smtp_reply *r)
{
	CHECK(r->code >= 200 && r->code <= 559);
	CHECK(r->nlines >= 1);
	size_t el = strlen(r->esc);
	CHECK(el == 0 || (smtp_esc_valid(r->esc, el) && r->esc[0] == '0' + r->code / 100));
	CHECK(r->text.len <= SMTP_REPLY_MAX);
	const char *t = buf_cstr(&r->text);
	CHECK(strlen(t) == r->text.len);
	size_t nl = 0;
	for (size_t k = 0; k < r->text.len; k++) {
		CHECK(t[k] != '\r');
		nl += t[k] == '\n';
	}
	CHECK(nl == r->nlines - 1);

	struct smtp_caps caps;
	smtp_caps_parse(r, &caps);
	CHECK(r->code == 250 || (!caps.pipelining && !caps.size && !caps.auth));
	CHECK(caps.size || caps.size_max == 0);

	struct buf f = BUF_INIT;
	CHECK(smtp_reply_format(r, &f));
	CHECK(memchr(f.data, '\n', f.len) == NULL && memchr(f.data, '\r', f.len) == NULL);
	buf_free(&f);
}

static void run(const char *in, size_t len, unsigned seed, size_t maxpiece, struct result *res)
{
	struct smtp_reply_parser p;
	smtp_reply_parser_init(&p);
	buf_init(&res->log, 0);
	size_t pos = 0;
	while (pos < len) {
		size_t n = len - pos;
		if (maxpiece > 0) {
			seed = seed * 1103515245u + 12345u;
			size_t piece = 1 + (seed >> 16) % maxpiece;
			if (piece < n)
				n = piece;
		}
		size_t used = 0;
		enum smtp_reply_rc rc = smtp_reply_feed(&p, in + pos, n, &used);
		CHECK(used <= n);
		pos += used;
		if (rc == SMTP_REPLY_ERROR) {
			CHECK(p.err != SMTP_REPLY_OK);
			break;
		}
		if (rc == SMTP_REPLY_NEED_MORE) {
			CHECK(used == n);
			continue;
		}
		CHECK(rc == SMTP_REPLY_DONE);
		check_reply(&p.reply);
		buf_printf(&res->log, "%d|%s|%zu|", p.reply.code, p.reply.esc, p.reply.nlines);
		buf_append(&res->log, p.reply.text.data ? p.reply.text.data : "", p.reply.text.len);
		buf_putc(&res->log, '\0');
	}
	res->err = p.err;
	res->pending = smtp_reply_pending(&p);
	CHECK(!buf_err(&res->log));
	smtp_reply_parser_free(&p);
}

static bool same(const struct result *a, const struct result *b)
{
	return a->err == b->err && (a->err != SMTP_REPLY_OK || a->pending == b->pending) &&
	       a->log.len == b->log.len &&
	       (a->log.len == 0 || memcmp(a->log.data, b->log.data, a->log.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned seed = data[0];
	const char *in = (const char *)data + 1;
	size_t len = size - 1;

	struct result whole, bytes, pieces;
	run(in, len, seed, 0, &whole);
	run(in, len, seed, 1, &bytes);
	run(in, len, seed, 1 + seed % 64, &pieces);
	CHECK(same(&whole, &bytes));
	CHECK(same(&whole, &pieces));
	buf_free(&whole.log);
	buf_free(&bytes.log);
	buf_free(&pieces.log);
	return 0;
}
