/*
 * log.c - one line per event on stderr, with escaping of peer-supplied text.
 * Lines are formatted into a buffer and written with a single write(2) so that
 * lines from different threads never interleave.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_min = LOG_INFO;

void log_set_level(enum log_level lvl) { log_min = lvl; }

static const char *level_name(enum log_level l)
{
	switch (l) {
	case LOG_DEBUG:
		return "debug";
	case LOG_INFO:
		return "info";
	case LOG_WARN:
		return "warn";
	case LOG_ERR:
		return "error";
	default:
		abort();
	}
}

void log_msg(enum log_level lvl, const char *id, const char *fmt, ...)
{
	if (lvl < log_min)
		return;
	char line[2048];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (int)(tv.tv_usec / 1000), level_name(lvl), id ? id : "-");
	if (n < 0)
		return;
	size_t off = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + off, sizeof line - off, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	off += (size_t)m;
	if (off >= sizeof line - 1) {
		/* truncated: mark it, keep the newline */
		off = sizeof line - 5;
		memcpy(line + off, "...", 3);
		off += 3;
	}
	line[off++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, off);
	(void)w;
}

void log_escape(struct buf *b, const char *s, size_t n, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	bool quote = n == 0;
	size_t lim = n < max ? n : max;
	for (size_t i = 0; i < lim && !quote; i++)
		if (s[i] == ' ' || s[i] == '"' || s[i] == '=')
			quote = true;
	if (quote)
		buf_putc(b, '"');
	for (size_t i = 0; i < lim; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '\\' || c == '"') {
			char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
			buf_append(b, e, 4);
		} else {
			buf_putc(b, (char)c);
		}
	}
	if (n > max)
		buf_puts(b, "...");
	if (quote)
		buf_putc(b, '"');
}

const char *log_strn(const char *s, size_t n)
{
	static _Thread_local struct buf slots[8];
	static _Thread_local unsigned next;
	struct buf *b = &slots[next++ % 8];
	buf_reset(b);
	if (s == NULL)
		return "-";
	log_escape(b, s, n, 200);
	return b->err ? "?" : buf_cstr(b);
}

const char *log_str(const char *s) { return log_strn(s, s ? strlen(s) : 0); }
