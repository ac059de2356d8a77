/*
 * smtp_input.c - pure framing of an SMTP server's input stream (see
 * smtp_input.h for the contract).
 *
 * Invariants:
 * - In SMTP_IN_LINE, in->line holds the bytes of the current line that
 *   arrived so far (never its LF), and in->line.len <= max_line: a line is
 *   given up (SMTP_IN_LINE_TOO_LONG, then skipped to its LF) as soon as
 *   more than max_line bytes arrived without a LF, so memory per session is
 *   bounded by max_line whatever the peer sends.
 * - A line counts its CR and LF: with max_line 10, "12345678\r\n" is
 *   accepted and "123456789\r\n" is too long (as is "1234567890\n").
 * - The result depends only on the bytes, never on how they were split
 *   between calls; the unit test and the fuzzer check this.
 *
 * Speed: lines are found with memchr and copied once; DATA content goes
 * through smtp_data_feed's own bulk scanning; chunks are appended whole.
 */
#include "smtp/smtp_input.h"

#include <stdlib.h>
#include <string.h>

void smtp_input_init(struct smtp_input *in, size_t max_line)
{
	memset(in, 0, sizeof(*in));
	in->mode = SMTP_IN_LINE;
	in->max_line = max_line;
	/* the cap is a second fence: a partial line is never longer than max_line
	 * (cap 0 would mean the default, so max_line 0 gets 1) */
	buf_init(&in->line, max_line > 0 ? max_line : 1);
	smtp_data_init(&in->data);
}

void smtp_input_free(struct smtp_input *in)
{
	if (in == NULL)
		return;
	buf_free(&in->line);
	in->line_ready = false;
	in->skipping = false;
}

/* Forget the line given by the last SMTP_IN_GOT_LINE (or a partial one). */
static void line_clear(struct smtp_input *in)
{
	buf_reset(&in->line);
	in->line_ready = false;
}

void smtp_input_start_data(struct smtp_input *in)
{
	line_clear(in);
	in->skipping = false;
	in->mode = SMTP_IN_DATA;
	in->discard = false;
	smtp_data_init(&in->data);
}

void smtp_input_start_chunk(struct smtp_input *in, uint64_t n)
{
	line_clear(in);
	in->skipping = false;
	in->mode = SMTP_IN_CHUNK;
	in->discard = false;
	in->chunk_left = n;
}

/* Append to the line; the length was checked against max_line, so only the
 * allocator can fail here, as in any other small allocation of ours. */
static void line_append(struct smtp_input *in, const char *p, size_t n)
{
	if (!buf_append(&in->line, p, n))
		abort();
}

static enum smtp_in_event feed_line(struct smtp_input *in, const char *p, size_t len, size_t *used)
{
	size_t i = 0;

	if (in->line_ready)
		line_clear(in);
	if (in->skipping) {
		/* the rest of an over-long line, already reported: drop it */
		const char *lf = len > 0 ? memchr(p, '\n', len) : NULL;
		if (lf == NULL) {
			*used = len;
			return SMTP_IN_NEED_MORE;
		}
		i = (size_t)(lf - p) + 1;
		in->skipping = false;
	}

	size_t rest = len - i;
	size_t have = in->line.len; /* <= max_line */
	if (rest == 0) {
		*used = len;
		return SMTP_IN_NEED_MORE; /* (p may be NULL: no arithmetic on it) */
	}
	const char *s = p + i;
	const char *lf = memchr(s, '\n', rest);
	if (lf == NULL) {
		if (rest > in->max_line - have) {
			/* more than max_line bytes and still no LF */
			line_clear(in);
			in->skipping = true;
			*used = len;
			return SMTP_IN_LINE_TOO_LONG;
		}
		line_append(in, s, rest);
		*used = len;
		return SMTP_IN_NEED_MORE;
	}

	size_t n = (size_t)(lf - s);
	*used = i + n + 1;
	if (n >= in->max_line - have) {
		/* have + n + LF > max_line: too long, and it ends right here */
		line_clear(in);
		return SMTP_IN_LINE_TOO_LONG;
	}
	line_append(in, s, n); /* also when n == 0: line.data is then non-NULL */
	if (in->line.len > 0 && in->line.data[in->line.len - 1] == '\r')
		in->line.data[--in->line.len] = '\0';
	in->line_ready = true;
	return SMTP_IN_GOT_LINE;
}

static enum smtp_in_event feed_data(
    struct smtp_input *in, const char *p, size_t len, size_t *used, struct buf *content)
{
	in->data.discard = in->discard || content == NULL;
	*used = smtp_data_feed(&in->data, p, len, content);
	if (!smtp_data_done(&in->data))
		return SMTP_IN_NEED_MORE; /* smtp_data_feed used all of it */
	in->mode = SMTP_IN_LINE;
	return SMTP_IN_DATA_END;
}

static enum smtp_in_event feed_chunk(
    struct smtp_input *in, const char *p, size_t len, size_t *used, struct buf *content)
{
	size_t n = in->chunk_left < (uint64_t)len ? (size_t)in->chunk_left : len;
	/* an append that fails sets content's sticky error for the caller */
	if (n > 0 && !in->discard && content != NULL)
		buf_append(content, p, n);
	in->chunk_left -= n;
	*used = n;
	if (in->chunk_left > 0)
		return SMTP_IN_NEED_MORE; /* n == len here */
	in->mode = SMTP_IN_LINE;
	return SMTP_IN_CHUNK_END;
}

enum smtp_in_event smtp_input_feed(
    struct smtp_input *in, const char *p, size_t len, size_t *used, struct buf *content)
{
	*used = 0;
	switch (in->mode) {
	case SMTP_IN_LINE:
		return feed_line(in, p, len, used);
	case SMTP_IN_DATA:
		return feed_data(in, p, len, used, content);
	case SMTP_IN_CHUNK:
		return feed_chunk(in, p, len, used, content);
	default:
		abort();
	}
}
