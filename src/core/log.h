/*
 * log.h - grep-able log lines on stderr.
 *
 * Every line: "TIMESTAMP LEVEL ID key=value key=value ...", where ID is a
 * session id or a queue id (or "-"). Values that come from a peer must pass
 * through log_escape()/log_kv_str() so that no control character or space
 * reaches the log unescaped. Passwords and AUTH payloads are never logged.
 */
#ifndef DAKIYA_LOG_H
#define DAKIYA_LOG_H

#include <stddef.h>
#include <stdlib.h>

#include "core/buf.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERR };

void log_set_level(enum log_level lvl);
/* Write one line: id (may be NULL) then the printf-formatted fields. */
void log_msg(enum log_level lvl, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Append s (len n) to b, escaped: quoted with "" if it holds space or '"',
 * bytes < 0x20, '\\', '"' and >= 0x7f as \xHH; at most max bytes of input. */
void log_escape(struct buf *b, const char *s, size_t n, size_t max);

/* Convenience: a static-per-thread escaped copy of s (truncated to 200 bytes
 * of input), valid until the next call from the same thread (8 rotating slots). */
const char *log_str(const char *s);
const char *log_strn(const char *s, size_t n);

#define log_info(id, ...) log_msg(LOG_INFO, id, __VA_ARGS__)
#define log_warn(id, ...) log_msg(LOG_WARN, id, __VA_ARGS__)
#define log_err(id, ...) log_msg(LOG_ERR, id, __VA_ARGS__)
#define log_debug(id, ...) log_msg(LOG_DEBUG, id, __VA_ARGS__)

/* Our own bug: log and abort. */
#define fatalx(...)                                                                                \
	do {                                                                                       \
		log_msg(LOG_ERR, "-", __VA_ARGS__);                                                \
		abort();                                                                           \
	} while (0)

#endif
