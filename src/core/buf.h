/*
 * buf.h - the one growable byte buffer of dakiya.
 *
 * A buf is length-tracked and binary-safe, always NUL-terminated for
 * convenience (the NUL is not counted in len), and carries a hard cap: an
 * append that would grow it past cap sets the sticky error flag instead and
 * leaves the contents unchanged. Callers append freely and check buf_err()
 * once at the end, so no fixed-size array ever receives unbounded input.
 *
 * Invariants: data == NULL iff alloc == 0; len < alloc when data != NULL;
 * data[len] == '\0'.
 */
#ifndef DAKIYA_BUF_H
#define DAKIYA_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define BUF_CAP_DEFAULT ((size_t)64 * 1024 * 1024)

struct buf {
	char *data;
	size_t len;
	size_t alloc;
	size_t cap; /* hard limit on len; 0 means BUF_CAP_DEFAULT */
	bool err;   /* sticky: an append failed (cap reached or out of memory) */
};

#define BUF_INIT { NULL, 0, 0, 0, false }

void buf_init(struct buf *b, size_t cap);
void buf_free(struct buf *b); /* accepts NULL; leaves an empty, reusable buf */
void buf_reset(struct buf *b); /* len = 0, err cleared, memory kept */

bool buf_append(struct buf *b, const void *p, size_t n);
bool buf_puts(struct buf *b, const char *s);
bool buf_putc(struct buf *b, char c);
bool buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Make room for n more bytes; returns a pointer to the free space or NULL. */
char *buf_reserve(struct buf *b, size_t n);
/* The contents as a C string ("" for an empty buf, never NULL). */
const char *buf_cstr(const struct buf *b);
/* Detach the data (caller frees); the buf becomes empty. Never NULL unless OOM. */
char *buf_steal(struct buf *b);

static inline bool buf_err(const struct buf *b) { return b->err; }

#endif
