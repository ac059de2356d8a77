/*
 * smtp_parse.c - pure SMTP parsers (contract in smtp_parse.h).
 *
 * Everything here works on caller-supplied bytes only: no I/O, no globals,
 * no allocation except through the caller's struct buf. Every function is
 * covered by tests/unit/test_smtp_parse.c and fuzz/fuzz_smtp_*.c.
 *
 * Security-relevant invariants:
 * - The DATA parser ends a message only on <CRLF>.<CRLF>. Its output for a
 *   given input is the same however the input is split across calls (the
 *   only state carried between calls is the enum state and the flags).
 * - Path parsing is strict RFC 5321 4.1.2 (plus RFC 6531 UTF-8); every byte
 *   written into struct smtp_path is bounds-checked against its array.
 * - Nothing here is quadratic in its input: the DATA fast path scans with
 *   memchr() and appends whole runs.
 */
#include "smtp/smtp_parse.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- character classes ---- */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 5322 atext (ASCII part). */
static bool is_atext(unsigned char c)
{
	return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Length of the well-formed UTF-8 sequence (RFC 3629) starting at s, at most
 * avail bytes long, or 0 if it is malformed: overlong forms, surrogates and
 * code points above U+10FFFF are rejected. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */

	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0;
	if (c < 0xE0) {
		n = 2;
	} else if (c < 0xF0) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c < 0xF5) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

/* ---- command lines ---- */

static const struct {
	const char *name;
	enum smtp_verb verb;
} smtp_verbs[] = {
    {"HELO", SMTP_CMD_HELO},
    {"EHLO", SMTP_CMD_EHLO},
    {"MAIL", SMTP_CMD_MAIL},
    {"RCPT", SMTP_CMD_RCPT},
    {"DATA", SMTP_CMD_DATA},
    {"BDAT", SMTP_CMD_BDAT},
    {"RSET", SMTP_CMD_RSET},
    {"NOOP", SMTP_CMD_NOOP},
    {"QUIT", SMTP_CMD_QUIT},
    {"VRFY", SMTP_CMD_VRFY},
    {"EXPN", SMTP_CMD_EXPN},
    {"HELP", SMTP_CMD_HELP},
    {"STARTTLS", SMTP_CMD_STARTTLS},
    {"AUTH", SMTP_CMD_AUTH},
};

/* Verbs of HTTP requests; they count only when followed by a space. */
static const char *const http_verbs[] = {"GET", "POST", "HEAD", "PUT", "CONNECT"};

enum smtp_verb smtp_parse_verb(const char *line, size_t len, const char **arg)
{
	size_t vlen = 0;
	while (vlen < len && line[vlen] != ' ')
		vlen++;
	size_t a = vlen;
	while (a < len && line[a] == ' ')
		a++;
	if (arg != NULL)
		*arg = line + a;

	for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
		const char *name = smtp_verbs[i].name;
		if (strlen(name) == vlen && strncasecmp(line, name, vlen) == 0)
			return smtp_verbs[i].verb;
	}
	if (vlen < len) { /* a space follows the verb */
		for (size_t i = 0; i < sizeof(http_verbs) / sizeof(http_verbs[0]); i++) {
			const char *name = http_verbs[i];
			if (strlen(name) == vlen && strncasecmp(line, name, vlen) == 0)
				return SMTP_CMD_HTTP;
		}
	}
	return SMTP_CMD_UNKNOWN;
}

bool smtp_line_ok_max(const char *line, size_t len, size_t max)
{
	if (len > max)
		return false;
	if (len == 0)
		return true;
	return memchr(line, '\0', len) == NULL && memchr(line, '\r', len) == NULL &&
	       memchr(line, '\n', len) == NULL;
}

bool smtp_line_ok(const char *line, size_t len)
{
	return smtp_line_ok_max(line, len, SMTP_LINE_MAX);
}

/* ---- numbers ---- */

/* Parse exactly n decimal digits (n >= 1) without overflow. */
static bool parse_u64n(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!is_digit(c))
			return false;
		unsigned d = c - '0';
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

bool smtp_parse_u64(const char *s, uint64_t *out)
{
	if (s == NULL)
		return false;
	return parse_u64n(s, strlen(s), out);
}

bool smtp_parse_bdat(const char *arg, uint64_t *size, bool *last)
{
	const char *p = arg;
	while (*p == ' ')
		p++;
	size_t n = 0;
	while (is_digit((unsigned char)p[n]))
		n++;
	uint64_t v;
	if (!parse_u64n(p, n, &v))
		return false;
	p += n;
	bool l = false;
	if (*p != '\0' && *p != ' ')
		return false;
	while (*p == ' ')
		p++;
	if (strncasecmp(p, "LAST", 4) == 0) {
		l = true;
		p += 4;
		while (*p == ' ')
			p++;
	}
	if (*p != '\0')
		return false;
	*size = v;
	*last = l;
	return true;
}

/* ---- domains ---- */

/* "[1.2.3.4]" or "[IPv6:...]"; d[0] == '[' and d[n-1] == ']' are checked here. */
static bool literal_ok(const char *d, size_t n)
{
	if (n < 2 || d[0] != '[' || d[n - 1] != ']')
		return false;
	const char *s = d + 1;
	size_t m = n - 2;

	if (m >= 5 && strncasecmp(s, "IPv6:", 5) == 0) {
		char tmp[INET6_ADDRSTRLEN + 1];
		struct in6_addr a6;
		if (m - 5 >= sizeof(tmp))
			return false;
		memcpy(tmp, s + 5, m - 5);
		tmp[m - 5] = '\0';
		return inet_pton(AF_INET6, tmp, &a6) == 1;
	}
	/* IPv4: four Snum (1*3DIGIT, 0-255) separated by dots */
	size_t i = 0;
	for (int part = 0; part < 4; part++) {
		if (part > 0) {
			if (i >= m || s[i] != '.')
				return false;
			i++;
		}
		unsigned v = 0;
		size_t nd = 0;
		while (i < m && is_digit((unsigned char)s[i]) && nd < 3) {
			v = v * 10 + (unsigned)(s[i] - '0');
			i++;
			nd++;
		}
		if (nd == 0 || v > 255)
			return false;
	}
	return i == m;
}

/* Check the domain or address literal d[0..n). SMTP_PATH_OK, SMTP_PATH_SYNTAX,
 * or SMTP_PATH_TOO_LONG (syntax is fine but the name or an ASCII label is
 * over its limit). Sets *utf8 when non-ASCII bytes are present. */
static enum smtp_path_err domain_check(
    const char *d, size_t n, bool utf8_ok, bool *utf8, bool *literal)
{
	const unsigned char *s = (const unsigned char *)d;
	bool too_long = n > SMTP_DOMAIN_MAX;

	if (n == 0)
		return SMTP_PATH_SYNTAX;
	if (s[0] == '[') {
		for (size_t i = 1; i + 1 < n; i++)
			if (s[i] < 33 || s[i] > 126 || s[i] == '[' || s[i] == ']' || s[i] == '\\')
				return SMTP_PATH_SYNTAX;
		if (!literal_ok(d, n))
			return SMTP_PATH_SYNTAX;
		if (literal != NULL)
			*literal = true;
		return too_long ? SMTP_PATH_TOO_LONG : SMTP_PATH_OK;
	}

	size_t label = 0; /* start of the current label */
	bool label_ascii = true;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			size_t llen = i - label;
			if (llen == 0 || s[label] == '-' || s[i - 1] == '-')
				return SMTP_PATH_SYNTAX;
			if (label_ascii && llen > 63)
				too_long = true;
			label = i + 1;
			label_ascii = true;
			continue;
		}
		if (is_alnum(s[i]) || s[i] == '-')
			continue;
		if (s[i] < 0x80 || !utf8_ok)
			return SMTP_PATH_SYNTAX;
		size_t k = utf8_seq(s + i, n - i);
		if (k == 0)
			return SMTP_PATH_SYNTAX;
		if (utf8 != NULL)
			*utf8 = true;
		label_ascii = false;
		i += k - 1;
	}
	return too_long ? SMTP_PATH_TOO_LONG : SMTP_PATH_OK;
}

bool smtp_domain_ok(const char *d, bool utf8_ok)
{
	if (d == NULL)
		return false;
	return domain_check(d, strlen(d), utf8_ok, NULL, NULL) == SMTP_PATH_OK;
}

/* Length of the span at s that can belong to a domain or address literal in
 * a path; the caller checks what follows it. */
static size_t domain_span(const char *p)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t n = 0;
	if (s[0] == '[') {
		n = 1;
		while (s[n] != '\0' && s[n] != ']' && s[n] != '>')
			n++;
		return s[n] == ']' ? n + 1 : n;
	}
	while (is_alnum(s[n]) || s[n] == '-' || s[n] == '.' || s[n] >= 0x80)
		n++;
	return n;
}

/* ---- paths ---- */

/* Worst of two results: a syntax error beats an over-long part. */
static enum smtp_path_err worst(enum smtp_path_err a, enum smtp_path_err b)
{
	if (a == SMTP_PATH_SYNTAX || b == SMTP_PATH_SYNTAX)
		return SMTP_PATH_SYNTAX;
	if (a == SMTP_PATH_TOO_LONG || b == SMTP_PATH_TOO_LONG)
		return SMTP_PATH_TOO_LONG;
	return SMTP_PATH_OK;
}

/* Append one byte to the local part if it fits; count it anyway. */
static void local_put(struct smtp_path *path, size_t *len, unsigned char c)
{
	if (*len < SMTP_LOCAL_MAX)
		path->local[*len] = (char)c;
	(*len)++;
}

/* Parse a Local-part at *pp (Dot-string or Quoted-string), store it unquoted
 * and advance *pp past it. */
static enum smtp_path_err parse_local(const char **pp, struct smtp_path *path)
{
	const unsigned char *s = (const unsigned char *)*pp;
	size_t len = 0, i = 0;

	if (s[0] == '"') {
		path->quoted = true;
		for (i = 1;; i++) {
			unsigned char c = s[i];
			if (c == '"')
				break;
			if (c == '\\') {
				c = s[++i];
				if (c < 32 || c > 126)
					return SMTP_PATH_SYNTAX;
			} else if (c >= 0x80) {
				size_t k = utf8_seq(s + i, strlen((const char *)s + i));
				if (k == 0)
					return SMTP_PATH_SYNTAX;
				path->utf8 = true;
				for (size_t j = 0; j < k; j++)
					local_put(path, &len, s[i + j]);
				i += k - 1;
				continue;
			} else if (c < 32 || c == 127) {
				return SMTP_PATH_SYNTAX; /* includes the end of the string */
			}
			if (c == '@' || c == '%' || c == '!')
				path->relay_syntax = true;
			local_put(path, &len, c);
		}
		i++; /* the closing quote */
	} else {
		bool need_atom = true; /* at the start or after a dot */
		for (;; i++) {
			unsigned char c = s[i];
			if (c == '.') {
				if (need_atom)
					return SMTP_PATH_SYNTAX;
				need_atom = true;
			} else if (is_atext(c)) {
				if (c == '%' || c == '!')
					path->relay_syntax = true;
				need_atom = false;
			} else if (c >= 0x80) {
				size_t k = utf8_seq(s + i, strlen((const char *)s + i));
				if (k == 0)
					return SMTP_PATH_SYNTAX;
				path->utf8 = true;
				for (size_t j = 0; j + 1 < k; j++)
					local_put(path, &len, s[i + j]);
				i += k - 1;
				c = s[i];
				need_atom = false;
			} else {
				break;
			}
			local_put(path, &len, c);
		}
		if (need_atom) /* empty, or a trailing dot */
			return SMTP_PATH_SYNTAX;
	}
	path->local[len < SMTP_LOCAL_MAX ? len : SMTP_LOCAL_MAX] = '\0';
	*pp += i;
	return len > SMTP_LOCAL_MAX ? SMTP_PATH_TOO_LONG : SMTP_PATH_OK;
}

/* Parse "<...>" at *pp; advance *pp past the '>'. */
static enum smtp_path_err parse_path(const char **pp, struct smtp_path *path, bool is_mail)
{
	const char *p = *pp;
	enum smtp_path_err res = SMTP_PATH_OK;

	if (*p++ != '<')
		return SMTP_PATH_SYNTAX;
	if (*p == '>') {
		if (!is_mail)
			return SMTP_PATH_SYNTAX;
		path->null = true;
		*pp = p + 1;
		return SMTP_PATH_OK;
	}
	if (*p == '@') { /* A-d-l ":" -- checked, then ignored */
		path->route = true;
		for (;;) {
			if (*p++ != '@')
				return SMTP_PATH_SYNTAX;
			size_t n = domain_span(p);
			bool u = false;
			res = worst(res, domain_check(p, n, true, &u, NULL));
			if (res == SMTP_PATH_SYNTAX)
				return res;
			path->utf8 |= u;
			p += n;
			if (*p == ':') {
				p++;
				break;
			}
			if (*p++ != ',')
				return SMTP_PATH_SYNTAX;
		}
	}

	res = worst(res, parse_local(&p, path));
	if (res == SMTP_PATH_SYNTAX)
		return res;

	if (*p == '>' && !is_mail && !path->route && !path->quoted &&
	    strcasecmp(path->local, "postmaster") == 0) {
		path->postmaster = true;
		*pp = p + 1;
		return res;
	}
	if (*p++ != '@')
		return SMTP_PATH_SYNTAX;
	size_t n = domain_span(p);
	res = worst(res, domain_check(p, n, true, &path->utf8, &path->literal));
	if (res == SMTP_PATH_SYNTAX)
		return res;
	if (p[n] != '>')
		return SMTP_PATH_SYNTAX;
	if (n <= SMTP_DOMAIN_MAX) {
		memcpy(path->domain, p, n);
		path->domain[n] = '\0';
	}
	*pp = p + n + 1;
	return res;
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool param_keyword_ok(const char *k)
{
	if (!is_alnum((unsigned char)*k))
		return false;
	for (k++; *k; k++)
		if (!is_alnum((unsigned char)*k) && *k != '-')
			return false;
	return true;
}

/* esmtp-value = 1*(%d33-60 / %d62-126) */
static bool param_value_ok(const char *v)
{
	if (*v == '\0')
		return false;
	for (; *v; v++)
		if ((unsigned char)*v < 33 || (unsigned char)*v > 126 || *v == '=')
			return false;
	return true;
}

/* Split "KEY[=VALUE] ..." in place into out->params. */
static enum smtp_path_err parse_params(char *p, struct smtp_mail_args *out)
{
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return SMTP_PATH_OK;
		if (out->nparams == SMTP_PARAMS_MAX)
			return SMTP_PATH_PARAMS;
		char *key = p;
		while (*p != '\0' && *p != ' ')
			p++;
		if (*p == ' ')
			*p++ = '\0';
		char *eq = strchr(key, '=');
		char *value = NULL;
		if (eq != NULL) {
			*eq = '\0';
			value = eq + 1;
			if (!param_value_ok(value))
				return SMTP_PATH_PARAMS;
		}
		if (!param_keyword_ok(key))
			return SMTP_PATH_PARAMS;
		out->params[out->nparams].key = key;
		out->params[out->nparams].value = value;
		out->nparams++;
	}
}

static enum smtp_path_err parse_mail_rcpt(
    char *arg, struct smtp_mail_args *out, const char *kw, bool is_mail)
{
	memset(out, 0, sizeof(*out));
	size_t kwlen = strlen(kw);
	if (arg == NULL || strncasecmp(arg, kw, kwlen) != 0)
		return SMTP_PATH_SYNTAX;
	const char *p = arg + kwlen;
	while (*p == ' ')
		p++;
	enum smtp_path_err res = parse_path(&p, &out->path, is_mail);
	if (res != SMTP_PATH_OK)
		return res;
	if (*p != '\0' && *p != ' ')
		return SMTP_PATH_SYNTAX;
	return parse_params(arg + (p - arg), out);
}

enum smtp_path_err smtp_parse_mail(char *arg, struct smtp_mail_args *out)
{
	return parse_mail_rcpt(arg, out, "FROM:", true);
}

enum smtp_path_err smtp_parse_rcpt(char *arg, struct smtp_mail_args *out)
{
	return parse_mail_rcpt(arg, out, "TO:", false);
}

/* ---- DATA stream ---- */

void smtp_data_init(struct smtp_data_parser *p)
{
	p->state = SMTP_DATA_LINE_START;
	p->size = 0;
	p->bare_lf = false;
	p->bare_cr = false;
	p->discard = false;
}

static void data_emit(struct smtp_data_parser *p, struct buf *out, const char *s, size_t n)
{
	if (n == 0)
		return;
	p->size += n;
	if (!p->discard && out != NULL)
		buf_append(out, s, n);
}

/*
 * Bytes are output verbatim except a dot at the start of a line (always
 * dropped) and the CR of ".\r" (held in DOT_CR until the next byte shows
 * whether it ends the data). So the loop only tracks `run`, the start of the
 * pending verbatim span [run, i), and flushes it around those two cases. A CR
 * in MIDLINE is output at once: whether or not a LF follows, it is content.
 */
size_t smtp_data_feed(struct smtp_data_parser *p, const char *in, size_t len, struct buf *out)
{
	size_t i = 0, run = 0;

	if (len == 0)
		return 0; /* in may be NULL then */
	while (i < len && p->state != SMTP_DATA_END) {
		switch (p->state) {
		case SMTP_DATA_MIDLINE: {
			const char *s = in + i;
			size_t n = len - i;
			const char *cr = memchr(s, '\r', n);
			size_t lim = cr != NULL ? (size_t)(cr - s) : n;
			/* a LF here is bare; it does not start a line, so the
			 * state stays MIDLINE and the scan just goes on */
			if (!p->bare_lf && memchr(s, '\n', lim) != NULL)
				p->bare_lf = true;
			if (cr == NULL) {
				i = len;
			} else {
				i += lim + 1;
				p->state = SMTP_DATA_CR;
			}
			break;
		}
		case SMTP_DATA_CR:
			if (in[i] == '\n') {
				i++;
				p->state = SMTP_DATA_LINE_START;
			} else {
				p->bare_cr = true; /* the CR is already output */
				p->state = SMTP_DATA_MIDLINE;
			}
			break;
		case SMTP_DATA_LINE_START:
			if (in[i] == '.') {
				data_emit(p, out, in + run, i - run);
				i++;
				run = i;
				p->state = SMTP_DATA_DOT;
			} else {
				p->state = SMTP_DATA_MIDLINE;
			}
			break;
		case SMTP_DATA_DOT:
			if (in[i] == '\r') {
				i++;
				run = i; /* the CR is held until we know */
				p->state = SMTP_DATA_DOT_CR;
			} else {
				p->state = SMTP_DATA_MIDLINE; /* dot-unstuffed */
			}
			break;
		case SMTP_DATA_DOT_CR:
			if (in[i] == '\n') {
				i++;
				run = i;
				p->state = SMTP_DATA_END;
			} else {
				/* ".\r" + other: the held CR was bare; run is empty */
				p->bare_cr = true;
				data_emit(p, out, "\r", 1);
				p->state = SMTP_DATA_MIDLINE;
			}
			break;
		case SMTP_DATA_END:
		default:
			abort();
		}
	}
	data_emit(p, out, in + run, i - run);
	return i;
}

/* ---- header summary ---- */

/* Index just past the line starting at i (past its LF), or len. */
static size_t line_end(const char *msg, size_t len, size_t i)
{
	const char *lf = memchr(msg + i, '\n', len - i);
	return lf != NULL ? (size_t)(lf - msg) + 1 : len;
}

/* Is the line at i empty ("\r\n" or "\n")? */
static bool line_empty(const char *msg, size_t len, size_t i)
{
	return msg[i] == '\n' || (msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n');
}

size_t smtp_header_section_len(const char *msg, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (line_empty(msg, len, i))
			return line_end(msg, len, i);
		i = line_end(msg, len, i);
	}
	return len;
}

/* Is the byte at i (in [a, b)) part of a folding line break? */
static bool is_fold(const char *msg, size_t b, size_t i)
{
	return msg[i] == '\n' || (msg[i] == '\r' && i + 1 < b && msg[i + 1] == '\n');
}

bool smtp_header_get(const char *msg, size_t len, const char *name, struct buf *out, size_t max)
{
	size_t nlen = strlen(name);
	size_t i = 0;

	buf_reset(out);
	while (i < len && !line_empty(msg, len, i)) {
		size_t next = line_end(msg, len, i);
		size_t c = i;
		while (c < next && msg[c] != ':' && msg[c] != '\n')
			c++;
		/* the name, tolerating WSP before the colon (RFC 5322 obs-syntax) */
		size_t ne = c;
		while (ne > i && is_wsp((unsigned char)msg[ne - 1]))
			ne--;
		if (is_wsp((unsigned char)msg[i]) || c == next || msg[c] != ':' || ne - i != nlen ||
		    strncasecmp(msg + i, name, nlen) != 0) {
			i = next;
			continue;
		}
		/* found: the field runs on while lines start with WSP */
		size_t end = next;
		while (end < len && is_wsp((unsigned char)msg[end]))
			end = line_end(msg, len, end);
		/* drop the final line break */
		size_t b = end;
		if (b > c + 1 && msg[b - 1] == '\n') {
			b--;
			if (b > c + 1 && msg[b - 1] == '\r')
				b--;
		}
		size_t a = c + 1;
		/* trim WSP and folds at both ends */
		while (a < b && (is_wsp((unsigned char)msg[a]) || is_fold(msg, b, a)))
			a++;
		while (b > a && (is_wsp((unsigned char)msg[b - 1]) || msg[b - 1] == '\n' ||
		                    (msg[b - 1] == '\r' && b < end && msg[b] == '\n')))
			b--;
		/* copy, unfolded, at most max bytes */
		size_t n = 0;
		bool truncated = false;
		for (size_t k = a; k < b; k++) {
			if (is_fold(msg, b, k))
				continue;
			if (n == max) {
				truncated = true;
				break;
			}
			buf_putc(out, msg[k]);
			n++;
		}
		/* do not leave a partial UTF-8 sequence at the cut */
		if (truncated && out->len > 0) {
			size_t s = out->len, back = 0;
			while (
			    s > 0 && back < 4 && ((unsigned char)out->data[s - 1] & 0xC0) == 0x80) {
				s--;
				back++;
			}
			if (s > 0) {
				unsigned char lead = (unsigned char)out->data[s - 1];
				size_t want = lead >= 0xF0   ? 4
				              : lead >= 0xE0 ? 3
				              : lead >= 0xC0 ? 2
				                             : 1;
				if (lead >= 0xC0 && want > back + 1) {
					out->len = s - 1;
					out->data[out->len] = '\0';
				}
			}
		}
		return true;
	}
	return false;
}

/* ---- header section size ---- */

void smtp_hdr_scan_init(struct smtp_hdr_scan *h)
{
	h->size = 0;
	/* as if the content were preceded by a line end: an empty first line
	 * ends the (empty) header section at once */
	h->prev[0] = '\r';
	h->prev[1] = '\n';
	h->done = false;
}

/* The authserv-id of an Authentication-Results value v[0..n): after CFWS
 * (spaces, folding, nested comments), a token or quoted-string up to ';',
 * whitespace or a comment. Is it id? */
static bool ar_is_ours(const char *v, size_t n, const char *id)
{
	size_t i = 0;
	for (;;) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
			i++;
		if (i < n && v[i] == '(') {
			int depth = 0;
			for (; i < n; i++) {
				if (v[i] == '\\' && i + 1 < n) {
					i++;
					continue;
				}
				if (v[i] == '(')
					depth++;
				else if (v[i] == ')' && --depth == 0) {
					i++;
					break;
				}
			}
			continue;
		}
		break;
	}
	size_t s = i, e;
	if (i < n && v[i] == '"') {
		s = ++i;
		while (i < n && v[i] != '"')
			i++;
		e = i;
	} else {
		while (i < n && v[i] != ';' && v[i] != ' ' && v[i] != '\t' && v[i] != '(' &&
		       v[i] != '\r' && v[i] != '\n')
			i++;
		e = i;
	}
	size_t idl = strlen(id);
	return e - s == idl && idl > 0 && strncasecmp(v + s, id, idl) == 0;
}

size_t smtp_strip_auth_results(const char *h, size_t len, const char *id, struct buf *out)
{
	static const char name[] = "Authentication-Results";
	const size_t nl = sizeof name - 1;
	size_t removed = 0, i = 0;
	while (i < len) {
		/* one field: up to a line end not followed by a space or tab */
		size_t s = i;
		for (;;) {
			const char *lf = memchr(h + i, '\n', len - i);
			i = lf ? (size_t)(lf - h) + 1 : len;
			if (i >= len || (h[i] != ' ' && h[i] != '\t'))
				break;
		}
		size_t flen = i - s;
		const char *f = h + s;
		bool ours = flen > nl && strncasecmp(f, name, nl) == 0;
		if (ours) {
			size_t k = nl;
			while (k < flen && (f[k] == ' ' || f[k] == '\t'))
				k++;
			ours = k < flen && f[k] == ':' && ar_is_ours(f + k + 1, flen - k - 1, id);
		}
		if (ours)
			removed++;
		else
			buf_append(out, f, flen);
	}
	return removed;
}

bool smtp_hdr_scan_feed(struct smtp_hdr_scan *h, const char *p, size_t len)
{
	for (size_t i = 0; i < len && !h->done; i++) {
		unsigned char c = (unsigned char)p[i];
		h->size++;
		/* an empty line: LF right after a line end (CRLF or LF), optionally
		 * with a CR in between */
		if (c == '\n' && (h->prev[1] == '\n' || (h->prev[1] == '\r' && h->prev[0] == '\n')))
			h->done = true;
		h->prev[0] = h->prev[1];
		h->prev[1] = c;
	}
	return h->done;
}

void smtp_header_put_word(struct buf *b, const char *p, size_t max)
{
	for (size_t i = 0; p[i] && i < max; i++) {
		unsigned char c = (unsigned char)p[i];
		bool ok = c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\' && c != ';';
		buf_putc(b, ok ? (char)c : '_');
	}
}

void smtp_header_put_comment(struct buf *b, const char *p, size_t max)
{
	for (size_t i = 0; p[i] && i < max; i++) {
		unsigned char c = (unsigned char)p[i];
		bool ok = c >= 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\';
		buf_putc(b, ok ? (char)c : ' ');
	}
}
