/*
 * json.h - a small JSON writer over struct buf, for --json output.
 *
 * The writer tracks nesting so callers never place commas themselves:
 *
 *   struct json j;
 *   json_init(&j, &out);
 *   json_array_begin(&j);
 *   json_object_begin(&j);
 *   json_key(&j, "uid"); json_uint(&j, 7);
 *   json_object_end(&j);
 *   json_array_end(&j);          -> [{"uid":7}]
 *
 * Strings are escaped per RFC 8259: '"' and '\\' and every control character
 * below 0x20 (and DEL) are escaped; valid UTF-8 passes through unchanged;
 * each byte of an invalid UTF-8 sequence (overlong, surrogate, > U+10FFFF,
 * truncated) becomes \ufffd, so the output is always valid UTF-8 JSON.
 * Errors (out of memory, the buf's cap) are the buf's sticky error flag.
 */
#ifndef DAKIYA_JSON_H
#define DAKIYA_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define JSON_MAX_DEPTH 32

struct json {
	struct buf *out;
	unsigned depth;
	bool has_items[JSON_MAX_DEPTH + 1]; /* the container at that depth has an element */
	bool after_key;                     /* a key was written; its value comes next */
};

void json_init(struct json *j, struct buf *out);
void json_array_begin(struct json *j);
void json_array_end(struct json *j);
void json_object_begin(struct json *j);
void json_object_end(struct json *j);
void json_key(struct json *j, const char *key);
void json_string(struct json *j, const char *s); /* NULL writes null */
void json_stringn(struct json *j, const char *s, size_t n);
void json_int(struct json *j, int64_t v);
void json_uint(struct json *j, uint64_t v);
void json_bool(struct json *j, bool v);
void json_null(struct json *j);
/* A value that is JSON already (another writer's output), n bytes. */
void json_raw(struct json *j, const char *s, size_t n);

/* Append s (n bytes) to out as a quoted, escaped JSON string. */
void json_escape(struct buf *out, const char *s, size_t n);
/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if the
 * bytes there are not one. */
size_t json_utf8_len(const unsigned char *s, size_t n);

#endif
