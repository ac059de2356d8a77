/*
 * smtp_input.h - pure framing of an SMTP server's input stream: command
 * lines, DATA content (through smtp_data_feed) and BDAT chunks of a known
 * size. No I/O: the session feeds it the bytes it has, it says what it
 * found and how many bytes it used; what it did not use stays with the
 * caller for the next call (pipelining).
 *
 * The session decides the mode after each event, as RFC 5321/3030 say:
 * after a "DATA" line it answers 354 and switches to SMTP_IN_DATA; after
 * "BDAT n" it switches to SMTP_IN_CHUNK with n bytes; after the end of data
 * or of a chunk the input is back in SMTP_IN_LINE by itself.
 *
 * Limits: a command line longer than max_line bytes (including its CRLF) is
 * reported once (SMTP_IN_LINE_TOO_LONG) as soon as more than max_line bytes
 * arrived without a LF, and skipped through its LF, never buffered whole.
 */
#ifndef DAKIYA_SMTP_INPUT_H
#define DAKIYA_SMTP_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "smtp/smtp_parse.h"

enum smtp_in_mode {
	SMTP_IN_LINE = 0, /* command lines */
	SMTP_IN_DATA,     /* DATA content up to <CRLF>.<CRLF> */
	SMTP_IN_CHUNK,    /* a BDAT chunk: exactly chunk_left more bytes */
};

enum smtp_in_event {
	SMTP_IN_NEED_MORE = 0, /* everything given was used; feed more */
	SMTP_IN_GOT_LINE,      /* a command line is in in->line (CR LF removed, NUL-terminated) */
	SMTP_IN_LINE_TOO_LONG, /* reported once per over-long line; it is being skipped */
	SMTP_IN_DATA_END,      /* the DATA content ended; mode is SMTP_IN_LINE again */
	SMTP_IN_CHUNK_END,     /* the BDAT chunk is complete; mode is SMTP_IN_LINE again */
};

struct smtp_input {
	enum smtp_in_mode mode;
	size_t max_line;       /* bytes of a command line including CRLF */
	bool skipping;         /* inside an over-long line, discarding to its LF */
	struct buf line;       /* the current (partial) command line */
	struct smtp_data_parser data; /* valid in SMTP_IN_DATA */
	uint64_t chunk_left;   /* valid in SMTP_IN_CHUNK */
	bool discard;          /* content is counted but not output (over size, failed) */
	bool line_ready;       /* in->line holds a complete line; the next feed starts anew */
};

void smtp_input_init(struct smtp_input *in, size_t max_line);
void smtp_input_free(struct smtp_input *in); /* accepts NULL */
/* Switch to DATA mode (a fresh smtp_data_parser) or CHUNK mode (n bytes).
 * Both clear discard: the caller sets it after the switch if this DATA or
 * chunk is to be counted only. After SMTP_IN_DATA_END, in->data (size,
 * bare_lf, bare_cr) stays valid until the next smtp_input_start_data(). */
void smtp_input_start_data(struct smtp_input *in);
void smtp_input_start_chunk(struct smtp_input *in, uint64_t n);

/* Use bytes of p[0..len) until one event happens or p is used up. *used
 * tells how many bytes were consumed (the caller drops them and calls again
 * with the rest). Content of DATA (unstuffed) and of chunks (as-is) is
 * appended to content unless in->discard is set (or content is NULL); the
 * caller bounds how much it passes per call to bound how much content grows.
 * SMTP_IN_NEED_MORE always uses all len bytes; of the other events only
 * SMTP_IN_CHUNK_END (of a 0-byte chunk) can use none. p may be NULL when
 * len is 0. A line given by SMTP_IN_GOT_LINE stays in in->line until the
 * next call to any smtp_input_ function. */
enum smtp_in_event smtp_input_feed(struct smtp_input *in, const char *p, size_t len,
    size_t *used, struct buf *content);

#endif
