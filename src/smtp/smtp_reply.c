/*
 * smtp_reply.c - pure parser of SMTP server replies (contract in smtp_reply.h).
 *
 * Invariants:
 * - The parser's output for a given byte stream is the same however the
 *   stream is split across calls: the only state carried between calls is
 *   the current partial line (bounded by SMTP_REPLY_LINE_MAX + 2 bytes, in a
 *   fixed array), the reply under construction and a few flags.
 * - Nothing is quadratic: each byte is looked at a constant number of times.
 * - reply.text is capped at SMTP_REPLY_MAX bytes by its struct buf.
 */
#include "smtp/smtp_reply.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_parse.h"

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_kw_char(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
	buf_init(&p->reply.text, SMTP_REPLY_MAX);
}

void smtp_reply_parser_free(struct smtp_reply_parser *p)
{
	if (p == NULL)
		return;
	buf_free(&p->reply.text);
}

static void reply_reset(struct smtp_reply_parser *p)
{
	p->reply.code = 0;
	p->reply.esc[0] = '\0';
	p->reply.nlines = 0;
	buf_reset(&p->reply.text);
	p->line_len = 0;
	p->total = 0;
	p->in_reply = false;
	p->done = false;
}

bool smtp_esc_valid(const char *s, size_t len)
{
	size_t i = 0;
	if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < len && is_digit((unsigned char)s[i]) && i - start < 4)
			i++;
		if (i == start || i - start > 3)
			return false;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return false;
			i++;
		}
	}
	return i == len;
}

/* Append text to the reply, control bytes (other than TAB) made harmless. */
static bool text_append(struct buf *b, const char *s, size_t n)
{
	char *dst = buf_reserve(b, n);
	if (dst == NULL)
		return false;
	for (size_t k = 0; k < n; k++) {
		unsigned char c = (unsigned char)s[k];
		dst[k] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
	}
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}

/* Length of the token at s (up to a space or the end). */
static size_t token_len(const char *s, size_t n)
{
	size_t k = 0;
	while (k < n && s[k] != ' ')
		k++;
	return k;
}

/* One complete line l[0..n) (line end removed). Returns false on error
 * (p->err set); *last tells whether it ended the reply. */
static bool process_line(struct smtp_reply_parser *p, const char *l, size_t n, bool *last)
{
	struct smtp_reply *r = &p->reply;

	if (n < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '5' ||
	    !is_digit((unsigned char)l[2]) || (n > 3 && l[3] != ' ' && l[3] != '-')) {
		p->err = SMTP_REPLY_ERR_SYNTAX;
		return false;
	}
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (r->nlines > 0 && code != r->code) {
		p->err = SMTP_REPLY_ERR_CODE_MISMATCH;
		return false;
	}
	r->code = code;
	*last = n == 3 || l[3] == ' ';

	const char *t = n > 4 ? l + 4 : l + n;
	size_t tn = n > 4 ? n - 4 : 0;
	size_t k = token_len(t, tn);
	if (r->nlines == 0) {
		/* the enhanced status code counts only if its class is the reply's */
		if (k < sizeof(r->esc) && smtp_esc_valid(t, k) && t[0] == l[0]) {
			memcpy(r->esc, t, k);
			r->esc[k] = '\0';
		} else {
			k = 0;
		}
	} else if (!(r->esc[0] != '\0' && k == strlen(r->esc) && memcmp(t, r->esc, k) == 0)) {
		k = 0;
	}
	if (k > 0) {
		t += k;
		tn -= k;
		while (tn > 0 && *t == ' ') {
			t++;
			tn--;
		}
	}
	if ((r->nlines > 0 && !buf_putc(&r->text, '\n')) || !text_append(&r->text, t, tn)) {
		p->err = SMTP_REPLY_ERR_NOMEM; /* unreachable within SMTP_REPLY_MAX unless OOM */
		return false;
	}
	r->nlines++;
	return true;
}

enum smtp_reply_rc smtp_reply_feed(
    struct smtp_reply_parser *p, const char *in, size_t len, size_t *used)
{
	*used = 0;
	if (p->err != SMTP_REPLY_OK)
		return SMTP_REPLY_ERROR;
	if (p->done)
		reply_reset(p);

	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (++p->total > SMTP_REPLY_MAX) {
			p->err = SMTP_REPLY_ERR_TOO_LONG;
			*used = i + 1;
			return SMTP_REPLY_ERROR;
		}
		if (c == '\n') {
			size_t n = p->line_len;
			if (n > 0 && p->line[n - 1] == '\r')
				n--;
			bool last = false;
			p->line_len = 0;
			*used = i + 1;
			if (!process_line(p, p->line, n, &last))
				return SMTP_REPLY_ERROR;
			if (last) {
				p->done = true;
				p->in_reply = false;
				return SMTP_REPLY_DONE;
			}
			p->in_reply = true;
			continue;
		}
		/* room for SMTP_REPLY_LINE_MAX bytes, then only the CR of a CRLF */
		if (p->line_len > SMTP_REPLY_LINE_MAX ||
		    (p->line_len == SMTP_REPLY_LINE_MAX && c != '\r')) {
			p->err = SMTP_REPLY_ERR_LINE_TOO_LONG;
			*used = i + 1;
			return SMTP_REPLY_ERROR;
		}
		p->line[p->line_len++] = c;
	}
	*used = len;
	return SMTP_REPLY_NEED_MORE;
}

bool smtp_reply_pending(const struct smtp_reply_parser *p)
{
	return !p->done && (p->line_len > 0 || p->in_reply);
}

bool smtp_reply_format(const struct smtp_reply *r, struct buf *out)
{
	buf_printf(out, "%03d", r->code);
	if (r->esc[0] != '\0')
		buf_printf(out, " %s", r->esc);
	if (r->text.len > 0) {
		buf_putc(out, ' ');
		const char *t = buf_cstr(&r->text);
		for (size_t k = 0; k < r->text.len; k++)
			buf_putc(out, t[k] == '\n' ? ' ' : t[k]);
	}
	return !buf_err(out);
}

const char *smtp_reply_err_str(enum smtp_reply_err e)
{
	switch (e) {
	case SMTP_REPLY_OK:
		return "ok";
	case SMTP_REPLY_ERR_SYNTAX:
		return "reply syntax";
	case SMTP_REPLY_ERR_CODE_MISMATCH:
		return "reply code changes within a multi-line reply";
	case SMTP_REPLY_ERR_LINE_TOO_LONG:
		return "reply line too long";
	case SMTP_REPLY_ERR_TOO_LONG:
		return "reply too long";
	case SMTP_REPLY_ERR_NOMEM:
		return "out of memory";
	default:
		abort();
	}
}

/* ---- EHLO capabilities ---- */

static bool word_is(const char *w, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(w, name, n) == 0;
}

static unsigned auth_mech_bit(const char *w, size_t n)
{
	static const struct {
		const char *name;
		unsigned bit;
	} mechs[] = {
	    {"PLAIN", SMTP_AUTH_PLAIN},
	    {"LOGIN", SMTP_AUTH_LOGIN},
	    {"CRAM-MD5", SMTP_AUTH_CRAM_MD5},
	    {"SCRAM-SHA-1", SMTP_AUTH_SCRAM_SHA_1},
	    {"SCRAM-SHA-256", SMTP_AUTH_SCRAM_SHA_256},
	    {"XOAUTH2", SMTP_AUTH_XOAUTH2},
	};
	for (size_t k = 0; k < sizeof(mechs) / sizeof(mechs[0]); k++)
		if (word_is(w, n, mechs[k].name))
			return mechs[k].bit;
	return SMTP_AUTH_OTHER;
}

/* The SIZE parameter: digits only, no overflow; anything else is "no limit
 * known" (0). */
static uint64_t size_param(const char *w, size_t n)
{
	char tmp[24];
	uint64_t v = 0;
	if (n == 0 || n >= sizeof(tmp))
		return 0;
	memcpy(tmp, w, n);
	tmp[n] = '\0';
	return smtp_parse_u64(tmp, &v) ? v : 0;
}

/* One capability line l[0..n). */
static void caps_line(const char *l, size_t n, struct smtp_caps *caps)
{
	size_t k = 0;
	while (k < n && is_kw_char((unsigned char)l[k]))
		k++;
	const char *kw = l;
	size_t kwn = k;
	if (kwn == 0 || (k < n && l[k] != ' ' && !(l[k] == '=' && word_is(kw, kwn, "AUTH"))))
		return; /* not "keyword *(SP param)" */

	/* the parameters, one at a time */
	const char *params = l + k + (k < n ? 1 : 0);
	size_t pn = n - (size_t)(params - l);
	if (word_is(kw, kwn, "AUTH")) {
		caps->auth = true;
		while (pn > 0) {
			while (pn > 0 && *params == ' ') {
				params++;
				pn--;
			}
			size_t w = token_len(params, pn);
			if (w > 0)
				caps->auth_mechs |= auth_mech_bit(params, w);
			params += w;
			pn -= w;
		}
	} else if (word_is(kw, kwn, "SIZE")) {
		caps->size = true;
		caps->size_max = size_param(params, token_len(params, pn));
	} else if (word_is(kw, kwn, "PIPELINING")) {
		caps->pipelining = true;
	} else if (word_is(kw, kwn, "8BITMIME")) {
		caps->eightbitmime = true;
	} else if (word_is(kw, kwn, "SMTPUTF8")) {
		caps->smtputf8 = true;
	} else if (word_is(kw, kwn, "STARTTLS")) {
		caps->starttls = true;
	} else if (word_is(kw, kwn, "DSN")) {
		caps->dsn = true;
	} else if (word_is(kw, kwn, "CHUNKING")) {
		caps->chunking = true;
	} else if (word_is(kw, kwn, "BINARYMIME")) {
		caps->binarymime = true;
	} else if (word_is(kw, kwn, "ENHANCEDSTATUSCODES")) {
		caps->enhancedstatuscodes = true;
	} else if (word_is(kw, kwn, "REQUIRETLS")) {
		caps->requiretls = true;
	}
}

void smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps)
{
	memset(caps, 0, sizeof(*caps));
	if (r->code != 250)
		return;
	const char *t = buf_cstr(&r->text);
	size_t n = r->text.len;
	const char *nl = memchr(t, '\n', n);
	while (nl != NULL) {
		const char *l = nl + 1;
		size_t rest = n - (size_t)(l - t);
		nl = memchr(l, '\n', rest);
		size_t ln = nl ? (size_t)(nl - l) : rest;
		/* a stray space before the keyword is tolerated */
		while (ln > 0 && *l == ' ') {
			l++;
			ln--;
		}
		caps_line(l, ln, caps);
	}
}
