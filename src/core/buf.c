/*
 * buf.c - growable, capped byte buffer (see buf.h for the contract).
 */
#include "core/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t buf_cap(const struct buf *b) { return b->cap ? b->cap : BUF_CAP_DEFAULT; }

void buf_init(struct buf *b, size_t cap)
{
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->cap = cap;
	b->err = false;
}

void buf_free(struct buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->err = false;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->err = false;
	if (b->data)
		b->data[0] = '\0';
}

char *buf_reserve(struct buf *b, size_t n)
{
	if (b->err)
		return NULL;
	if (n > buf_cap(b) || b->len > buf_cap(b) - n) {
		b->err = true;
		return NULL;
	}
	size_t need = b->len + n + 1;
	if (need > b->alloc) {
		size_t na = b->alloc ? b->alloc : 64;
		while (na < need)
			na = na > SIZE_MAX / 2 ? need : na * 2;
		char *p = realloc(b->data, na);
		if (p == NULL) {
			b->err = true;
			return NULL;
		}
		b->data = p;
		b->alloc = na;
	}
	return b->data + b->len;
}

bool buf_append(struct buf *b, const void *p, size_t n)
{
	char *dst = buf_reserve(b, n);
	if (dst == NULL)
		return false;
	if (n)
		memcpy(dst, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}

bool buf_puts(struct buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

bool buf_putc(struct buf *b, char c) { return buf_append(b, &c, 1); }

bool buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0) {
		b->err = true;
		return false;
	}
	char *dst = buf_reserve(b, (size_t)n);
	if (dst == NULL)
		return false;
	vsnprintf(dst, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return true;
}

bool buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	bool ok = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return ok;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		/* empty it, keeping the sticky error flag */
		b->len = 0;
		if (b->data)
			b->data[0] = '\0';
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

const char *buf_cstr(const struct buf *b) { return b->data ? b->data : ""; }

char *buf_steal(struct buf *b)
{
	char *p = b->data;
	if (p == NULL)
		p = calloc(1, 1);
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->err = false;
	return p;
}
