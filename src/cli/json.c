/*
 * json.c - JSON writer (see json.h). Misuse (a value where a key is due,
 * unbalanced ends, nesting deeper than JSON_MAX_DEPTH) is our bug: abort.
 */
#include "cli/json.h"

#include <inttypes.h>
#include <string.h>

#include "core/log.h"

void json_init(struct json *j, struct buf *out)
{
	memset(j, 0, sizeof *j);
	j->out = out;
}

/* Before any value: the comma between elements (not after a key). */
static void before_value(struct json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->has_items[j->depth])
		buf_putc(j->out, ',');
	j->has_items[j->depth] = true;
}

static void open_container(struct json *j, char c)
{
	before_value(j);
	if (j->depth >= JSON_MAX_DEPTH)
		fatalx("json: nesting deeper than %d", JSON_MAX_DEPTH);
	buf_putc(j->out, c);
	j->depth++;
	j->has_items[j->depth] = false;
}

static void close_container(struct json *j, char c)
{
	if (j->depth == 0 || j->after_key)
		fatalx("json: unbalanced '%c'", c);
	j->depth--;
	buf_putc(j->out, c);
}

void json_array_begin(struct json *j)
{
	open_container(j, '[');
}
void json_array_end(struct json *j)
{
	close_container(j, ']');
}
void json_object_begin(struct json *j)
{
	open_container(j, '{');
}
void json_object_end(struct json *j)
{
	close_container(j, '}');
}

void json_key(struct json *j, const char *key)
{
	if (j->after_key || j->depth == 0)
		fatalx("json: key \"%s\" out of place", key);
	if (j->has_items[j->depth])
		buf_putc(j->out, ',');
	j->has_items[j->depth] = true;
	json_escape(j->out, key, strlen(key));
	buf_putc(j->out, ':');
	j->after_key = true;
}

void json_stringn(struct json *j, const char *s, size_t n)
{
	before_value(j);
	json_escape(j->out, s, n);
}

void json_string(struct json *j, const char *s)
{
	if (s == NULL) {
		json_null(j);
		return;
	}
	json_stringn(j, s, strlen(s));
}

void json_int(struct json *j, int64_t v)
{
	before_value(j);
	buf_printf(j->out, "%" PRId64, v);
}

void json_uint(struct json *j, uint64_t v)
{
	before_value(j);
	buf_printf(j->out, "%" PRIu64, v);
}

void json_bool(struct json *j, bool v)
{
	before_value(j);
	buf_puts(j->out, v ? "true" : "false");
}

void json_null(struct json *j)
{
	before_value(j);
	buf_puts(j->out, "null");
}

void json_raw(struct json *j, const char *s, size_t n)
{
	before_value(j);
	buf_append(j->out, s, n);
}

size_t json_utf8_len(const unsigned char *s, size_t n)
{
	if (n == 0)
		return 0;
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp, min;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2, cp = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, cp = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, cp = c & 0x07, min = 0x10000;
	} else {
		return 0; /* continuation byte, 0xc0/0xc1, or > 0xf4 */
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void json_escape(struct buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	buf_putc(out, '"');
	while (i < n) {
		unsigned char c = p[i];
		size_t run = i;
		/* copy the longest run of bytes that need no escaping at once */
		while (
		    run < n && p[run] >= 0x20 && p[run] < 0x7f && p[run] != '"' && p[run] != '\\')
			run++;
		if (run > i) {
			buf_append(out, p + i, run - i);
			i = run;
			continue;
		}
		if (c >= 0x80) {
			size_t l = json_utf8_len(p + i, n - i);
			if (l == 0) {
				buf_puts(out, "\\ufffd");
				i++;
			} else {
				buf_append(out, p + i, l);
				i += l;
			}
			continue;
		}
		switch (c) {
		case '"':
			buf_puts(out, "\\\"");
			break;
		case '\\':
			buf_puts(out, "\\\\");
			break;
		case '\b':
			buf_puts(out, "\\b");
			break;
		case '\f':
			buf_puts(out, "\\f");
			break;
		case '\n':
			buf_puts(out, "\\n");
			break;
		case '\r':
			buf_puts(out, "\\r");
			break;
		case '\t':
			buf_puts(out, "\\t");
			break;
		default: /* other controls and DEL */
			buf_puts(out, "\\u00");
			buf_putc(out, hex[c >> 4]);
			buf_putc(out, hex[c & 0xf]);
			break;
		}
		i++;
	}
	buf_putc(out, '"');
}
