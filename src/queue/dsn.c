/*
 * dsn.c - delivery status notifications and RFC 3461 parameters (contract
 * in dsn.h).
 *
 * Invariants:
 * - Every byte that comes from outside (addresses, ENVID, ORCPT, the remote
 *   reply and host, the original Subject) goes through put_clean() or one of
 *   the address encoders before it reaches the output, so the only CR LF in
 *   the headers and the report are ours. The original message in part 3 is
 *   copied with its line ends made CRLF; it cannot end the part because the
 *   boundary is chosen not to occur in it.
 * - Every line we write stays under 998 octets (RFC 5322 2.1.1): long fields
 *   are folded at spaces, and a run of more than WORD_MAX bytes without a
 *   space is broken (which adds a space to an absurd diagnostic, nothing
 *   worse). Lines of the returned original message are copied as they are.
 * - dsn_build() either appends the whole notification or leaves out as it
 *   was.
 */
#include "queue/dsn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "smtp/smtp_parse.h"
#include "smtp/smtp_reply.h"

#define WORD_MAX 900    /* longest unbroken run in a folded line */
#define HEADER_WIDTH 78 /* fold header fields beyond this column */
#define TEXT_WIDTH 76   /* wrap the human-readable part here */
#define ADDR_MAX 512    /* envelope addresses longer than this are refused */
#define SUBJECT_MAX 200 /* bytes of the original Subject quoted */
#define BOUNDARY_TRIES 16
#define ID_TOKEN_MAX 255 /* bytes of queue id and host name in Message-ID */

/* ---- characters ---- */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int hex_val(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode one UTF-8 sequence at s[0..n): its length (1..4) with the code
 * point in *cp, or 0 if it is not valid UTF-8 (overlong forms, surrogates
 * and values past U+10FFFF included). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t v, min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[k] & 0x3fu);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

static bool has_8bit(const char *s, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if ((unsigned char)s[k] >= 0x80)
			return true;
	return false;
}

static bool word_is(const char *w, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(w, name, n) == 0;
}

/* ---- xtext (RFC 3461 4) ---- */

/* allow_8bit: bytes >= 0x80 pass as they are (RFC 6533 utf-8-addr-unitext
 * in ORCPT); the caller validates the UTF-8. */
static bool xtext_decode(const char *in, size_t len, struct buf *out, bool allow_8bit)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '+') {
			if (len - i < 3)
				return false;
			int h = hex_val((unsigned char)in[i + 1]),
			    l = hex_val((unsigned char)in[i + 2]);
			if (h < 0 || l < 0)
				return false;
			buf_putc(out, (char)(h * 16 + l));
			i += 2;
		} else if ((c >= 0x21 && c <= 0x7e && c != '=') || (allow_8bit && c >= 0x80)) {
			buf_putc(out, (char)c);
		} else {
			return false;
		}
	}
	return !buf_err(out);
}

bool dsn_xtext_decode(const char *in, size_t len, struct buf *out)
{
	return xtext_decode(in, len, out, false);
}

bool dsn_xtext_encode(const void *in, size_t len, struct buf *out)
{
	const unsigned char *s = in;
	for (size_t i = 0; i < len; i++) {
		if (s[i] >= 0x21 && s[i] <= 0x7e && s[i] != '+' && s[i] != '=')
			buf_putc(out, (char)s[i]);
		else
			buf_printf(out, "+%02X", s[i]);
	}
	return !buf_err(out);
}

/* RFC 6533 utf-8-addr-xtext: QCHAR as it is, everything else as \x{HEX}.
 * keep_backslash: the input is already in that form (a decoded ORCPT of
 * type utf-8), so its "\x{..}" escapes stay. Invalid UTF-8 bytes become
 * \x{FFFD} when lenient, else the call fails. */
static bool put_utf8_xtext(
    struct buf *out, const char *addr, size_t len, bool keep_backslash, bool lenient)
{
	const unsigned char *s = (const unsigned char *)addr;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t l = utf8_next(s + i, len - i, &cp);
		if (l == 0) {
			if (!lenient)
				return false;
			cp = 0xfffd;
			l = 1;
		}
		if (cp >= 0x21 && cp <= 0x7e && cp != '+' && cp != '=' &&
		    (cp != '\\' || keep_backslash))
			buf_putc(out, (char)cp);
		else
			buf_printf(out, "\\x{%02X}", (unsigned)cp);
		i += l;
	}
	return !buf_err(out);
}

bool dsn_utf8_addr_encode(const char *addr, size_t len, struct buf *out)
{
	return put_utf8_xtext(out, addr, len, false, false);
}

/* ---- RFC 3461 parameters ---- */

bool dsn_parse_notify(const char *v, size_t len, unsigned *out)
{
	unsigned bits = 0;
	size_t i = 0;

	if (len == 0)
		return false;
	for (;;) {
		size_t j = i;
		while (j < len && v[j] != ',')
			j++;
		unsigned bit;
		if (word_is(v + i, j - i, "NEVER"))
			bit = DSN_NOTIFY_NEVER;
		else if (word_is(v + i, j - i, "SUCCESS"))
			bit = DSN_NOTIFY_SUCCESS;
		else if (word_is(v + i, j - i, "FAILURE"))
			bit = DSN_NOTIFY_FAILURE;
		else if (word_is(v + i, j - i, "DELAY"))
			bit = DSN_NOTIFY_DELAY;
		else
			return false; /* unknown or empty element */
		if (bits & bit)
			return false;
		bits |= bit;
		if (j == len)
			break;
		i = j + 1; /* a trailing comma gives an empty element: refused */
	}
	if ((bits & DSN_NOTIFY_NEVER) && bits != DSN_NOTIFY_NEVER)
		return false;
	*out = bits;
	return true;
}

bool dsn_notify_render(unsigned bits, struct buf *out)
{
	const unsigned all = DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY;
	if (bits == DSN_NOTIFY_NEVER)
		return buf_puts(out, "NEVER");
	if (bits == 0 || (bits & ~all) != 0)
		return false;
	const char *sep = "";
	if (bits & DSN_NOTIFY_SUCCESS) {
		buf_puts(out, "SUCCESS");
		sep = ",";
	}
	if (bits & DSN_NOTIFY_FAILURE) {
		buf_printf(out, "%sFAILURE", sep);
		sep = ",";
	}
	if (bits & DSN_NOTIFY_DELAY)
		buf_printf(out, "%sDELAY", sep);
	return !buf_err(out);
}

bool dsn_parse_ret(const char *v, size_t len, enum dsn_ret *out)
{
	if (word_is(v, len, "FULL"))
		*out = DSN_RET_FULL;
	else if (word_is(v, len, "HDRS"))
		*out = DSN_RET_HDRS;
	else
		return false;
	return true;
}

bool dsn_parse_envid(const char *v, size_t len, struct buf *out)
{
	buf_reset(out);
	if (len == 0 || len > 3 * DSN_ENVID_MAX || !dsn_xtext_decode(v, len, out))
		return false;
	if (out->len == 0 || out->len > DSN_ENVID_MAX)
		return false;
	for (size_t k = 0; k < out->len; k++) {
		unsigned char c = (unsigned char)out->data[k];
		if (c < 0x20 || c > 0x7e)
			return false;
	}
	return true;
}

bool dsn_parse_orcpt(const char *v, size_t len, struct dsn_orcpt *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0 || len > DSN_ORCPT_MAX)
		return false;
	size_t t = 0;
	while (t < len && (is_alnum((unsigned char)v[t]) || v[t] == '-'))
		t++;
	if (t == 0 || t > DSN_ADDR_TYPE_MAX || t == len || v[t] != ';')
		return false;
	bool utf8 = word_is(v, t, "utf-8");

	struct buf a = BUF_INIT;
	buf_init(&a, DSN_ORCPT_MAX);
	bool ok = xtext_decode(v + t + 1, len - t - 1, &a, utf8) && a.len > 0;
	const unsigned char *s = (const unsigned char *)buf_cstr(&a);
	for (size_t i = 0; ok && i < a.len;) {
		uint32_t cp;
		size_t l = utf8 ? utf8_next(s + i, a.len - i, &cp) : 1;
		if (!utf8)
			cp = s[i];
		/* no control characters (C0, DEL, C1), and ASCII unless utf-8 */
		if (l == 0 || cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || (!utf8 && cp > 0x7e))
			ok = false;
		i += l ? l : 1;
	}
	if (ok) {
		memcpy(out->type, v, t);
		out->type[t] = '\0';
		memcpy(out->addr, s, a.len); /* a.len <= DSN_ORCPT_MAX by a's cap */
		out->addr[a.len] = '\0';
	}
	buf_free(&a);
	return ok;
}

bool dsn_orcpt_render(const struct dsn_orcpt *o, struct buf *out)
{
	size_t n = strlen(o->addr);
	buf_printf(out, "%s;", o->type);
	if (util_streq_ci(o->type, "utf-8"))
		return put_utf8_xtext(out, o->addr, n, true, false);
	return dsn_xtext_encode(o->addr, n, out);
}

/* ---- building blocks of the notification ---- */

/* Append s[0..n) with each run of control characters (CR and LF included)
 * as one space. Non-ASCII: kept when utf8 and valid (C1 controls excepted),
 * else '?'. */
static void put_clean(struct buf *b, const char *s, size_t n, bool utf8)
{
	const unsigned char *u = (const unsigned char *)s;
	bool ctl = false;
	for (size_t i = 0; i < n;) {
		unsigned char c = u[i];
		if (c < 0x20 || c == 0x7f) {
			if (!ctl)
				buf_putc(b, ' ');
			ctl = true;
			i++;
			continue;
		}
		ctl = false;
		if (c < 0x80) {
			buf_putc(b, (char)c);
			i++;
			continue;
		}
		uint32_t cp;
		size_t l = utf8_next(u + i, n - i, &cp);
		if (utf8 && l > 0 && cp >= 0xa0)
			buf_append(b, s + i, l);
		else
			buf_putc(b, '?');
		i += l ? l : 1;
	}
}

static void put_clean_str(struct buf *b, const char *s, bool utf8)
{
	put_clean(b, s, strlen(s), utf8);
}

/* Append text t[0..n) (clean: no CR/LF) starting at column col, breaking
 * lines at spaces before width with cont ("\r\n" and the indentation of
 * the next line: " " folds a header field). Runs of spaces become one. */
static void put_wrapped(
    struct buf *b, size_t col, const char *t, size_t n, const char *cont, size_t width)
{
	size_t cont_col = strlen(cont) - 2;
	bool first = true;
	size_t i = 0;
	while (i < n) {
		while (i < n && t[i] == ' ')
			i++;
		if (i == n)
			break;
		size_t j = i;
		while (j < n && t[j] != ' ')
			j++;
		size_t wl = j - i;
		if (!first) {
			if (col + 1 + wl > width && col > cont_col) {
				buf_puts(b, cont);
				col = cont_col;
			} else {
				buf_putc(b, ' ');
				col++;
			}
		}
		first = false;
		while (wl > 0) {
			size_t take = wl;
			if (take > WORD_MAX) {
				take = WORD_MAX;
				/* never split a UTF-8 sequence */
				while (take > 1 && ((unsigned char)t[i + take] & 0xc0) == 0x80)
					take--;
			}
			buf_append(b, t + i, take);
			col += take;
			i += take;
			wl -= take;
			if (wl > 0) {
				buf_puts(b, cont);
				col = cont_col;
			}
		}
	}
}

/* A header or report field "Name: value\r\n", value cleaned and folded. */
static void put_field(struct buf *b, const char *name, const char *value, size_t n, bool utf8)
{
	struct buf v = BUF_INIT;
	put_clean(&v, value, n, utf8);
	buf_printf(b, "%s: ", name);
	put_wrapped(b, strlen(name) + 2, buf_cstr(&v), v.len, "\r\n ", HEADER_WIDTH);
	buf_puts(b, "\r\n");
	if (buf_err(&v))
		b->err = true;
	buf_free(&v);
}

/* Text for the human-readable part: cleaned, wrapped, one paragraph line. */
static void put_text(struct buf *b, const char *indent, const char *s, size_t n)
{
	struct buf v = BUF_INIT;
	put_clean(&v, s, n, true);
	char cont[16] = "\r\n";
	size_t il = strlen(indent);
	if (il > sizeof(cont) - 3)
		abort(); /* our own constant */
	memcpy(cont + 2, indent, il + 1);
	buf_puts(b, indent);
	put_wrapped(b, il, buf_cstr(&v), v.len, cont, TEXT_WIDTH);
	buf_puts(b, "\r\n");
	if (buf_err(&v))
		b->err = true;
	buf_free(&v);
}

static void put_text_str(struct buf *b, const char *indent, const char *s)
{
	put_text(b, indent, s, strlen(s));
}

/* RFC 5322 date-time in UTC. */
static void put_date(struct buf *b, time_t t)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {
	    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 1900) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	buf_printf(b, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
	    months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static const char *action_str(enum dsn_action a)
{
	switch (a) {
	case DSN_ACTION_FAILED:
		return "failed";
	case DSN_ACTION_DELAYED:
		return "delayed";
	case DSN_ACTION_DELIVERED:
		return "delivered";
	case DSN_ACTION_RELAYED:
		return "relayed";
	case DSN_ACTION_EXPANDED:
		return "expanded";
	default:
		abort();
	}
}

/* The status to report: the given one if it is valid and fits the action,
 * else the action's default. */
static const char *status_for(const struct dsn_recipient *r)
{
	const char *def, *s = r->status;
	switch (r->action) {
	case DSN_ACTION_FAILED:
		def = "5.0.0";
		break;
	case DSN_ACTION_DELAYED:
		def = "4.0.0";
		break;
	case DSN_ACTION_DELIVERED:
	case DSN_ACTION_RELAYED:
	case DSN_ACTION_EXPANDED:
		def = "2.0.0";
		break;
	default:
		abort();
	}
	if (s == NULL || !smtp_esc_valid(s, strlen(s)))
		return def;
	if (s[0] == def[0] || (r->action == DSN_ACTION_FAILED && s[0] == '4'))
		return s;
	return def;
}

static bool is_ascii(const char *s)
{
	return !has_8bit(s, strlen(s));
}

/* Final-Recipient / Original-Recipient value: "rfc822;addr" for ASCII,
 * "utf-8;" and the RFC 6533 encoding otherwise. */
static void put_recipient_field(
    struct buf *b, const char *name, const char *type, const char *addr, bool encoded)
{
	struct buf v = BUF_INIT;
	if (type == NULL)
		type = is_ascii(addr) ? "rfc822" : "utf-8";
	for (const char *t = type; *t != '\0'; t++)
		buf_putc(&v, is_alnum((unsigned char)*t) || *t == '-' ? *t : '-');
	buf_putc(&v, ';');
	if (util_streq_ci(type, "utf-8"))
		put_utf8_xtext(&v, addr, strlen(addr), encoded, true);
	else
		put_clean_str(&v, addr, false);
	put_field(b, name, buf_cstr(&v), v.len, false);
	if (buf_err(&v))
		b->err = true;
	buf_free(&v);
}

/* Cut a diagnostic to DSN_DIAG_MAX bytes, on a UTF-8 boundary. */
static size_t diag_len(const char *d)
{
	size_t n = strlen(d);
	if (n <= DSN_DIAG_MAX)
		return n;
	n = DSN_DIAG_MAX;
	while (n > 0 && ((unsigned char)d[n] & 0xc0) == 0x80)
		n--;
	return n;
}

/* Does the diagnostic look like an SMTP reply ("550 ...")? */
static bool diag_is_smtp(const char *d)
{
	return d[0] >= '2' && d[0] <= '5' && is_digit((unsigned char)d[1]) &&
	       is_digit((unsigned char)d[2]) && (d[3] == ' ' || d[3] == '-' || d[3] == '\0');
}

static void report_recipient(
    struct buf *b, const struct dsn_message *m, const struct dsn_recipient *r)
{
	buf_puts(b, "\r\n");
	if (r->orcpt_type != NULL && r->orcpt != NULL && r->orcpt_type[0] != '\0')
		put_recipient_field(b, "Original-Recipient", r->orcpt_type, r->orcpt, true);
	put_recipient_field(b, "Final-Recipient", NULL, r->addr, false);
	buf_printf(b, "Action: %s\r\n", action_str(r->action));
	buf_printf(b, "Status: %s\r\n", status_for(r));
	if (r->remote_mta != NULL && r->remote_mta[0] != '\0') {
		struct buf v = BUF_INIT;
		buf_puts(&v, "dns; ");
		put_clean_str(&v, r->remote_mta, false);
		put_field(b, "Remote-MTA", buf_cstr(&v), v.len, false);
		buf_free(&v);
	}
	if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
		struct buf v = BUF_INIT;
		buf_puts(&v, diag_is_smtp(r->diagnostic) ? "smtp; " : "X-Dakiya; ");
		put_clean(&v, r->diagnostic, diag_len(r->diagnostic), false);
		put_field(b, "Diagnostic-Code", buf_cstr(&v), v.len, false);
		buf_free(&v);
	}
	if (r->last_attempt != 0) {
		buf_puts(b, "Last-Attempt-Date: ");
		put_date(b, r->last_attempt);
		buf_puts(b, "\r\n");
	}
	if (r->action == DSN_ACTION_DELAYED && m->retry_until != 0) {
		buf_puts(b, "Will-Retry-Until: ");
		put_date(b, m->retry_until);
		buf_puts(b, "\r\n");
	}
}

/* The message/delivery-status body (RFC 3464 2.1). */
static void build_report(
    struct buf *b, const struct dsn_message *m, const struct dsn_recipient *r, size_t n)
{
	if (m->envid != NULL && m->envid[0] != '\0')
		put_field(b, "Original-Envelope-Id", m->envid, strlen(m->envid), false);
	buf_printf(b, "Reporting-MTA: dns; %s\r\n", m->hostname);
	if (m->queue_id != NULL && m->queue_id[0] != '\0')
		put_field(b, "X-Dakiya-Queue-ID", m->queue_id, strlen(m->queue_id), false);
	if (m->arrival != 0) {
		buf_puts(b, "Arrival-Date: ");
		put_date(b, m->arrival);
		buf_puts(b, "\r\n");
	}
	for (size_t k = 0; k < n; k++)
		report_recipient(b, m, &r[k]);
}

static void put_utf8(struct buf *b, uint32_t cp)
{
	if (cp < 0x80) {
		buf_putc(b, (char)cp);
	} else if (cp < 0x800) {
		buf_putc(b, (char)(0xc0 | (cp >> 6)));
		buf_putc(b, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		buf_putc(b, (char)(0xe0 | (cp >> 12)));
		buf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		buf_putc(b, (char)(0x80 | (cp & 0x3f)));
	} else {
		buf_putc(b, (char)(0xf0 | (cp >> 18)));
		buf_putc(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
		buf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		buf_putc(b, (char)(0x80 | (cp & 0x3f)));
	}
}

/* The ORCPT address for people: a utf-8 one with its \x{HEX} escapes
 * turned back into characters (RFC 6533); put_text() cleans the result. */
static void orcpt_display(struct buf *b, const char *type, const char *s)
{
	bool utf8 = type != NULL && util_streq_ci(type, "utf-8");
	while (*s != '\0') {
		if (utf8 && s[0] == '\\' && s[1] == 'x' && s[2] == '{') {
			uint32_t cp = 0;
			size_t k = 3;
			while (k < 9 && hex_val((unsigned char)s[k]) >= 0)
				cp = cp * 16 + (uint32_t)hex_val((unsigned char)s[k++]);
			if (s[k] == '}' && k > 3 && cp > 0 && cp <= 0x10ffff &&
			    !(cp >= 0xd800 && cp <= 0xdfff)) {
				put_utf8(b, cp);
				s += k + 1;
				continue;
			}
		}
		buf_putc(b, *s++);
	}
}

/* One recipient in the human-readable part. */
static void text_recipient(struct buf *b, const struct dsn_recipient *r)
{
	struct buf l = BUF_INIT;
	buf_printf(&l, "<%s>", r->addr);
	if (r->orcpt != NULL && r->orcpt[0] != '\0') {
		struct buf o = BUF_INIT;
		orcpt_display(&o, r->orcpt_type, r->orcpt);
		if (strcmp(buf_cstr(&o), r->addr) != 0)
			buf_printf(&l, " (originally addressed to %s)", buf_cstr(&o));
		if (buf_err(&o))
			l.err = true;
		buf_free(&o);
	}
	if (r->action == DSN_ACTION_RELAYED)
		buf_puts(&l, ": passed on to a system that does not confirm delivery");
	else if (r->action == DSN_ACTION_EXPANDED)
		buf_puts(&l, ": delivered to its list of addresses");
	put_text(b, "  ", l.data ? l.data : "", l.len);
	buf_reset(&l);
	if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
		if (r->remote_mta != NULL && r->remote_mta[0] != '\0')
			buf_printf(&l, "host %s said: ", r->remote_mta);
		else
			buf_puts(&l, "reason: ");
		buf_append(&l, r->diagnostic, diag_len(r->diagnostic));
		put_text(b, "      ", buf_cstr(&l), l.len);
	}
	if (buf_err(&l))
		b->err = true;
	buf_free(&l);
	buf_puts(b, "\r\n");
}

struct counts {
	size_t failed, delayed, ok;
};

static void build_text(struct buf *b, const struct dsn_message *m, const struct dsn_recipient *r,
    size_t n, const struct counts *c, const char *subject, const char *part3_note)
{
	buf_printf(b, "This is the mail system at %s.\r\n\r\n", m->hostname);
	if (c->failed > 0) {
		put_text_str(b, "",
		    c->failed == 1 ? "Your message could not be delivered to the recipient below. "
		                     "The problem is permanent: the mail system has given up and "
		                     "will not try again."
		                   : "Your message could not be delivered to the recipients below. "
		                     "The problem is permanent: the mail system has given up and "
		                     "will not try again.");
		buf_puts(b, "\r\n");
		for (size_t k = 0; k < n; k++)
			if (r[k].action == DSN_ACTION_FAILED)
				text_recipient(b, &r[k]);
	}
	if (c->delayed > 0) {
		struct buf s = BUF_INIT;
		buf_printf(&s,
		    "Your message has not yet been delivered to the %s below. The mail "
		    "system will keep trying",
		    c->delayed == 1 ? "recipient" : "recipients");
		if (m->retry_until != 0) {
			buf_puts(&s, " until ");
			put_date(&s, m->retry_until);
		}
		buf_puts(&s, ". You do not need to send the message again. If it still cannot be "
		             "delivered by then, you will get another notice.");
		put_text(b, "", buf_cstr(&s), s.len);
		if (buf_err(&s))
			b->err = true;
		buf_free(&s);
		buf_puts(b, "\r\n");
		for (size_t k = 0; k < n; k++)
			if (r[k].action == DSN_ACTION_DELAYED)
				text_recipient(b, &r[k]);
	}
	if (c->ok > 0) {
		put_text_str(b, "", "Your message was delivered as follows:");
		buf_puts(b, "\r\n");
		for (size_t k = 0; k < n; k++)
			if (r[k].action != DSN_ACTION_FAILED && r[k].action != DSN_ACTION_DELAYED)
				text_recipient(b, &r[k]);
	}
	if (subject != NULL) {
		struct buf s = BUF_INIT;
		buf_printf(&s, "Subject of your message: %s", subject);
		put_text(b, "", buf_cstr(&s), s.len);
		buf_free(&s);
	}
	if (m->queue_id != NULL && m->queue_id[0] != '\0') {
		struct buf s = BUF_INIT;
		buf_printf(&s, "Queue ID: %s", m->queue_id);
		if (m->arrival != 0) {
			buf_puts(&s, ", received ");
			put_date(&s, m->arrival);
		}
		put_text(b, "", buf_cstr(&s), s.len);
		buf_free(&s);
	}
	if (part3_note != NULL)
		put_text_str(b, "", part3_note);
	if (c->failed > 0) {
		buf_puts(b, "\r\n");
		put_text_str(b, "",
		    "If you need help, forward this report to your mail "
		    "administrator.");
	}
}

/* Append s[0..n) with every line end (CRLF, bare LF, bare CR) as CRLF and a
 * final CRLF if the last line had none. */
static void put_crlf(struct buf *b, const char *s, size_t n)
{
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\r' && s[i] != '\n')
			continue;
		buf_append(b, s + start, i - start);
		buf_puts(b, "\r\n");
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			i++;
		start = i + 1;
	}
	if (start < n) {
		buf_append(b, s + start, n - start);
		buf_puts(b, "\r\n");
	}
}

/* Read at most limit bytes of path into b. */
static enum dsn_rc read_file(const char *path, size_t limit, struct buf *b)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return DSN_ERR_IO;
	enum dsn_rc rc = DSN_OK;
	while (b->len < limit) {
		size_t want = limit - b->len;
		if (want > 65536)
			want = 65536;
		char *p = buf_reserve(b, want);
		if (p == NULL) {
			rc = DSN_ERR_NOMEM;
			break;
		}
		ssize_t got = read(fd, p, want);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = DSN_ERR_IO;
			break;
		}
		if (got == 0)
			break;
		b->len += (size_t)got;
		b->data[b->len] = '\0';
	}
	close(fd);
	return rc;
}

const char *dsn_rc_str(enum dsn_rc rc)
{
	switch (rc) {
	case DSN_OK:
		return "ok";
	case DSN_ERR_NULL_SENDER:
		return "null sender: no notification";
	case DSN_ERR_INVALID:
		return "invalid notification request";
	case DSN_ERR_IO:
		return "cannot read the original message";
	case DSN_ERR_NOMEM:
		return "out of memory or size limit";
	default:
		abort();
	}
}

static bool contains(const char *hay, size_t n, const char *needle)
{
	return memmem(hay, n, needle, strlen(needle)) != NULL;
}

/* Letters, digits, '.', '-' as they are, anything else as '-', at most
 * ID_TOKEN_MAX of them: for Message-ID's parts (a field we do not fold). */
static void put_id_token(struct buf *b, const char *s)
{
	for (size_t n = 0; *s != '\0' && n < ID_TOKEN_MAX; s++, n++)
		buf_putc(b, is_alnum((unsigned char)*s) || *s == '.' || *s == '-' ? *s : '-');
}

static void put_hex(struct buf *b, const unsigned char *p, size_t n)
{
	for (size_t k = 0; k < n; k++)
		buf_printf(b, "%02x", p[k]);
}

enum dsn_rc dsn_build(
    const struct dsn_message *m, const struct dsn_recipient *r, size_t n, struct buf *out)
{
	if (m->sender == NULL || m->sender[0] == '\0' || strcmp(m->sender, "<>") == 0)
		return DSN_ERR_NULL_SENDER;
	if (m->hostname == NULL || !smtp_domain_ok(m->hostname, false) || n == 0 ||
	    n > DSN_RCPT_MAX || strlen(m->sender) > ADDR_MAX)
		return DSN_ERR_INVALID;
	struct counts c = {0, 0, 0};
	for (size_t k = 0; k < n; k++) {
		if (r[k].addr == NULL || r[k].addr[0] == '\0' || strlen(r[k].addr) > ADDR_MAX)
			return DSN_ERR_INVALID;
		switch (r[k].action) {
		case DSN_ACTION_FAILED:
			c.failed++;
			break;
		case DSN_ACTION_DELAYED:
			c.delayed++;
			break;
		case DSN_ACTION_DELIVERED:
		case DSN_ACTION_RELAYED:
		case DSN_ACTION_EXPANDED:
			c.ok++;
			break;
		default:
			return DSN_ERR_INVALID; /* caller's bad data, not our state */
		}
	}

	size_t full_max = m->full_max ? m->full_max : DSN_FULL_MAX;
	bool want_full = m->ret == DSN_RET_FULL && c.failed > 0;
	struct buf file = BUF_INIT, text = BUF_INIT, report = BUF_INIT, subj = BUF_INIT;
	struct buf boundary = BUF_INIT;
	enum dsn_rc rc = DSN_OK;

	/* the original message, or as much of it as we may need */
	const char *o = m->msg;
	size_t olen = m->msg_len;
	bool have = o != NULL;
	if (!have && m->msg_path != NULL) {
		size_t limit = want_full && full_max > DSN_HEADERS_MAX ? full_max : DSN_HEADERS_MAX;
		rc = read_file(m->msg_path, limit + 1, &file);
		if (rc != DSN_OK)
			goto done;
		o = buf_cstr(&file);
		olen = file.len;
		have = true;
	}

	/* part 3: the whole message, or its header section */
	bool full = have && want_full && olen <= full_max;
	const char *p3 = o;
	size_t p3len = 0;
	const char *note = NULL;
	if (have && full) {
		p3len = olen;
	} else if (have) {
		size_t scan = olen < DSN_HEADERS_MAX ? olen : DSN_HEADERS_MAX;
		p3len = smtp_header_section_len(o, scan);
		if (p3len == scan && scan < olen) {
			/* no end of headers within the limit: cut after a whole line */
			while (p3len > 0 && o[p3len - 1] != '\n')
				p3len--;
		}
		/* drop the empty line that ends the header section */
		if (p3len >= 2 && o[p3len - 1] == '\n' && o[p3len - 2] == '\n')
			p3len--;
		else if (p3len >= 4 && memcmp(o + p3len - 4, "\r\n\r\n", 4) == 0)
			p3len -= 2;
		else if (p3len <= 2 && (p3len == 0 || o[0] == '\r' || o[0] == '\n'))
			p3len = 0; /* the message starts with its body */
		if (want_full)
			note = "Your message is too large to be returned in full; its headers are "
			       "attached.";
	} else {
		note = "The original message is no longer available.";
	}
	if (have) {
		size_t hl =
		    smtp_header_section_len(o, olen < DSN_HEADERS_MAX ? olen : DSN_HEADERS_MAX);
		buf_init(&subj, SUBJECT_MAX + 1);
		if (!smtp_header_get(o, hl, "Subject", &subj, SUBJECT_MAX))
			buf_reset(&subj);
	}

	build_text(&text, m, r, n, &c, subj.len > 0 ? buf_cstr(&subj) : NULL, note);
	build_report(&report, m, r, n);
	if (buf_err(&text) || buf_err(&report)) {
		rc = DSN_ERR_NOMEM;
		goto done;
	}

	/* a boundary that occurs in none of the parts */
	void (*rnd)(void *, size_t) = m->random ? m->random : util_random;
	unsigned char rb[12];
	int tries = 0;
	for (;;) {
		if (++tries > BOUNDARY_TRIES) {
			rc = DSN_ERR_INVALID; /* only a broken random source gets here */
			goto done;
		}
		rnd(rb, sizeof(rb));
		buf_reset(&boundary);
		buf_puts(&boundary, "=_dsn_");
		put_hex(&boundary, rb, sizeof(rb));
		const char *bs = buf_cstr(&boundary);
		/* the sender (in To:) too: harmless there, but then the boundary
		 * occurs only where MIME needs it */
		if (!contains(text.data, text.len, bs) && !contains(report.data, report.len, bs) &&
		    !(p3len > 0 && contains(p3, p3len, bs)) && strstr(m->sender, bs) == NULL)
			break;
	}
	const char *bnd = buf_cstr(&boundary);

	time_t now = m->now ? m->now : time(NULL);
	bool text8 = has_8bit(text.data, text.len);
	bool p3_8 = has_8bit(p3, p3len);
	const char *subject = c.failed > 0    ? "Undelivered Mail Returned to Sender"
	                      : c.delayed > 0 ? "Delayed Mail (still being retried)"
	                                      : "Successful Mail Delivery Report";

	size_t old_len = out->len;
	bool old_err = out->err;
	buf_printf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", m->hostname);
	{
		struct buf to = BUF_INIT;
		buf_putc(&to, '<');
		put_clean_str(&to, m->sender, true);
		buf_putc(&to, '>');
		put_field(out, "To", buf_cstr(&to), to.len, true);
		if (buf_err(&to))
			out->err = true;
		buf_free(&to);
	}
	buf_printf(out, "Subject: %s\r\n", subject);
	buf_puts(out, "Date: ");
	put_date(out, now);
	buf_puts(out, "\r\nMessage-ID: <");
	rnd(rb, 8);
	put_hex(out, rb, 8);
	if (m->queue_id != NULL && m->queue_id[0] != '\0') {
		buf_putc(out, '.');
		put_id_token(out, m->queue_id);
	}
	buf_putc(out, '@');
	put_id_token(out, m->hostname);
	buf_puts(out, ">\r\n");
	buf_puts(out, "Auto-Submitted: auto-replied\r\n");
	buf_puts(out, "MIME-Version: 1.0\r\n");
	buf_printf(out,
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n",
	    bnd);
	if (text8 || p3_8)
		buf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_puts(out, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	buf_printf(out, "--%s\r\n", bnd);
	buf_puts(out, "Content-Description: Notification\r\n");
	buf_printf(out, "Content-Type: text/plain; charset=%s\r\n", text8 ? "utf-8" : "us-ascii");
	if (text8)
		buf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_puts(out, "\r\n");
	buf_append(out, text.data ? text.data : "", text.len);

	buf_printf(out, "\r\n--%s\r\n", bnd);
	buf_puts(out, "Content-Description: Delivery report\r\n");
	buf_puts(out, "Content-Type: message/delivery-status\r\n\r\n");
	buf_append(out, report.data ? report.data : "", report.len);

	if (have) {
		buf_printf(out, "\r\n--%s\r\n", bnd);
		if (full) {
			buf_puts(out, "Content-Description: Undelivered message\r\n");
			buf_puts(out, "Content-Type: message/rfc822\r\n");
		} else {
			buf_puts(out, "Content-Description: Message headers\r\n");
			buf_puts(out, "Content-Type: text/rfc822-headers\r\n");
		}
		if (p3_8)
			buf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
		buf_puts(out, "\r\n");
		put_crlf(out, p3, p3len);
	}
	buf_printf(out, "\r\n--%s--\r\n", bnd);

	if (buf_err(out)) {
		/* leave out as it was */
		out->len = old_len;
		if (out->data)
			out->data[old_len] = '\0';
		out->err = old_err;
		rc = DSN_ERR_NOMEM;
	}
done:
	buf_free(&file);
	buf_free(&text);
	buf_free(&report);
	buf_free(&subj);
	buf_free(&boundary);
	return rc;
}
