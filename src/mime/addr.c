/*
 * addr.c - RFC 5322 address lists (From:, To:, Cc:, ...): a pure parser over
 * (bytes, len) and the matching renderer. The contract is in addr.h.
 *
 * The parser is a single left-to-right pass. Each list element starts with a
 * run of "items" (words and dots with CFWS between them) that is only
 * understood at the character that stops the run: '@' makes it a local part,
 * '<' a display name, ':' a group name. Two words with nothing but CFWS
 * between them are a phrase, never a local part.
 *
 * Leniency, on purpose (real mail has it): empty list elements, CFWS around
 * dots (obs-local-part, obs-domain), dots anywhere in a local part
 * ("a..b@x", "foo.@x", as some mobile carriers issue), obs-phrase with dots
 * ("Joe Q. Public"), obs-route in angle-addr (discarded), LF+WSP folding as
 * well as CRLF+WSP, and one trailing line end.
 *
 * Strictness, also on purpose: non-ASCII bytes must be well-formed UTF-8;
 * control characters other than TAB are refused everywhere (also as
 * quoted-pairs), so no output field ever holds CR, LF or NUL; "<>" is not a
 * mailbox; groups do not nest and must end with ';'.
 *
 * Comments are dropped: "a@b (Name)" has display "" (RFC 5322 gives
 * comments no meaning).
 *
 * Resource use: linear in len; comment nesting is counted, not recursed.
 */
#include "mime/addr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

struct p {
	const char *s;
	size_t len, i;
	bool bad; /* syntax error seen */
};

static bool eof(const struct p *p)
{
	return p->i >= p->len;
}
static int peek(const struct p *p)
{
	return eof(p) ? -1 : (unsigned char)p->s[p->i];
}

/* Length of the well-formed UTF-8 sequence of a non-ASCII lead at s[i], or 0. */
static size_t utf8_seq(const char *s, size_t len, size_t i)
{
	const unsigned char *u = (const unsigned char *)s + i;
	size_t left = len - i, n;
	uint32_t min, cp;
	if (u[0] >= 0xc2 && u[0] <= 0xdf) {
		n = 2, min = 0x80, cp = u[0] & 0x1f;
	} else if (u[0] >= 0xe0 && u[0] <= 0xef) {
		n = 3, min = 0x800, cp = u[0] & 0x0f;
	} else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
		n = 4, min = 0x10000, cp = u[0] & 0x07;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (size_t k = 1; k < n; k++) {
		if ((u[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (u[k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static bool is_atext_ascii(int c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c > 0 && c < 0x80 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* A line end that folds: CRLF or LF followed by WSP. Returns its length. */
static size_t fold_at(const struct p *p)
{
	size_t k = p->i;
	if (k < p->len && p->s[k] == '\r')
		k++;
	if (k < p->len && p->s[k] == '\n' && k + 1 < p->len &&
	    (p->s[k + 1] == ' ' || p->s[k + 1] == '\t'))
		return k + 1 - p->i;
	return 0;
}

/* A line end that ends the input (the caller passed the field's last CRLF). */
static bool final_eol(const struct p *p)
{
	size_t rest = p->len - p->i;
	return (rest == 1 && p->s[p->i] == '\n') ||
	       (rest == 2 && p->s[p->i] == '\r' && p->s[p->i + 1] == '\n');
}

/* Skip FWS; true if anything was skipped. */
static bool skip_fws(struct p *p)
{
	size_t start = p->i;
	for (;;) {
		int c = peek(p);
		size_t f;
		if (c == ' ' || c == '\t')
			p->i++;
		else if ((f = fold_at(p)) > 0)
			p->i += f;
		else if ((c == '\r' || c == '\n') && final_eol(p))
			p->i = p->len;
		else
			return p->i > start;
	}
}

/* Take one character of qtext/ctext/dtext-like content or a quoted-pair at
 * p->i into out (unquoted when unquote is set, else verbatim). Refuses
 * control characters and malformed UTF-8. */
static bool take_char(struct p *p, struct buf *out, bool unquote)
{
	int c = peek(p);
	if (c == '\\') {
		if (p->i + 1 >= p->len)
			return false;
		int q = (unsigned char)p->s[p->i + 1];
		if (q < 0x80 && (q < 0x20 || q == 0x7f) && q != '\t')
			return false;
		size_t n = q >= 0x80 ? utf8_seq(p->s, p->len, p->i + 1) : 1;
		if (n == 0)
			return false;
		if (!unquote)
			buf_putc(out, '\\');
		buf_append(out, p->s + p->i + 1, n);
		p->i += 1 + n;
		return true;
	}
	if (c >= 0x80) {
		size_t n = utf8_seq(p->s, p->len, p->i);
		if (n == 0)
			return false;
		buf_append(out, p->s + p->i, n);
		p->i += n;
		return true;
	}
	if (c < 0x20 || c == 0x7f) /* TAB and folds are handled by the callers */
		return false;
	buf_putc(out, (char)c);
	p->i++;
	return true;
}

/* A comment at '(' (nesting counted, not recursed); its text is dropped. */
static bool skip_comment(struct p *p, struct buf *scratch)
{
	size_t depth = 0;
	do {
		int c = peek(p);
		size_t f;
		if (c < 0)
			return false;
		if (c == '(') {
			depth++;
			p->i++;
		} else if (c == ')') {
			depth--;
			p->i++;
		} else if (c == ' ' || c == '\t') {
			p->i++;
		} else if ((f = fold_at(p)) > 0) {
			p->i += f;
		} else {
			buf_reset(scratch);
			if (!take_char(p, scratch, true))
				return false;
		}
	} while (depth > 0);
	return true;
}

/* Skip CFWS; true if anything was skipped. Sets p->bad on a broken comment. */
static bool skip_cfws(struct p *p, struct buf *scratch)
{
	bool any = false;
	for (;;) {
		if (skip_fws(p))
			any = true;
		if (peek(p) != '(')
			return any;
		if (!skip_comment(p, scratch)) {
			p->bad = true;
			return any;
		}
		any = true;
	}
}

/* An atom (atext, UTF-8 included) appended to out; false if there is none. */
static bool take_atom(struct p *p, struct buf *out)
{
	size_t start = p->i;
	for (;;) {
		int c = peek(p);
		if (is_atext_ascii(c)) {
			buf_putc(out, (char)c);
			p->i++;
		} else if (c >= 0x80) {
			size_t n = utf8_seq(p->s, p->len, p->i);
			if (n == 0) {
				p->bad = true;
				return false;
			}
			buf_append(out, p->s + p->i, n);
			p->i += n;
		} else {
			return p->i > start;
		}
	}
}

/* A quoted string at '"', unquoted and unfolded into out. */
static bool take_quoted(struct p *p, struct buf *out)
{
	p->i++;
	for (;;) {
		int c = peek(p);
		size_t f;
		if (c < 0)
			return false;
		if (c == '"') {
			p->i++;
			return true;
		}
		if (c == ' ' || c == '\t') {
			buf_putc(out, (char)c);
			p->i++;
		} else if ((f = fold_at(p)) > 0) {
			p->i += f; /* unfolding removes the line end, keeps the WSP */
		} else if (!take_char(p, out, true)) {
			return false;
		}
	}
}

/* The run of words and dots before '@', '<' or ':', read both ways. */
struct items {
	struct buf phrase; /* words joined by one space where CFWS separated them */
	struct buf local;  /* words and dots concatenated */
	size_t nitems, nwords;
	bool adjacent_words; /* two words without a dot between them */
};

static void items_reset(struct items *it)
{
	buf_reset(&it->phrase);
	buf_reset(&it->local);
	it->nitems = it->nwords = 0;
	it->adjacent_words = false;
}

static void scan_items(struct p *p, struct items *it, struct buf *scratch)
{
	bool last_word = false;
	items_reset(it);
	for (;;) {
		bool sp = skip_cfws(p, scratch);
		if (p->bad)
			return;
		int c = peek(p);
		if (sp && it->nitems > 0 &&
		    (c == '"' || c == '.' || is_atext_ascii(c) || c >= 0x80))
			buf_putc(&it->phrase, ' ');
		if (c == '.') {
			buf_putc(&it->phrase, '.');
			buf_putc(&it->local, '.');
			p->i++;
			last_word = false;
		} else if (c == '"' || is_atext_ascii(c) || c >= 0x80) {
			buf_reset(scratch);
			bool ok = c == '"' ? take_quoted(p, scratch) : take_atom(p, scratch);
			if (!ok) {
				p->bad = true;
				return;
			}
			buf_append(&it->phrase, buf_cstr(scratch), scratch->len);
			buf_append(&it->local, buf_cstr(scratch), scratch->len);
			if (last_word)
				it->adjacent_words = true;
			last_word = true;
			it->nwords++;
		} else {
			return;
		}
		it->nitems++;
	}
}

/* A domain after '@' (leading CFWS allowed): dot-atom, obs-domain with CFWS
 * around the dots, or a domain literal kept as written. Trailing CFWS is
 * consumed. */
static bool take_domain(struct p *p, struct buf *out, struct buf *scratch)
{
	buf_reset(out);
	skip_cfws(p, scratch);
	if (p->bad)
		return false;
	if (peek(p) == '[') {
		buf_putc(out, '[');
		p->i++;
		for (;;) {
			int c = peek(p);
			size_t f;
			if (c < 0 || c == '[')
				return false;
			if (c == ']') {
				buf_putc(out, ']');
				p->i++;
				break;
			}
			if (c == ' ' || c == '\t') {
				buf_putc(out, (char)c);
				p->i++;
			} else if ((f = fold_at(p)) > 0) {
				p->i += f;
			} else if (!take_char(p, out, false)) {
				return false;
			}
		}
		skip_cfws(p, scratch);
		return !p->bad;
	}
	for (;;) {
		if (!take_atom(p, out))
			return false;
		skip_cfws(p, scratch);
		if (p->bad)
			return false;
		if (peek(p) != '.')
			return true;
		buf_putc(out, '.');
		p->i++;
		skip_cfws(p, scratch);
		if (p->bad)
			return false;
	}
}

struct ctx {
	struct p p;
	struct mime_addr_list *out;
	size_t alloc;
	struct items it;
	struct buf domain, scratch, group;
	bool in_group;
};

static char *dup_buf(const struct buf *b)
{
	return strndup(buf_cstr(b), b->len);
}

static enum mime_addr_rc add_addr(struct ctx *c, const struct buf *display)
{
	struct mime_addr_list *l = c->out;
	if (l->n >= MIME_ADDR_MAX)
		return MIME_ADDR_TOO_MANY;
	if (l->n == c->alloc) {
		size_t na = c->alloc ? c->alloc * 2 : 4;
		if (na > MIME_ADDR_MAX)
			na = MIME_ADDR_MAX;
		struct mime_addr *v = realloc(l->v, na * sizeof *v);
		if (v == NULL)
			return MIME_ADDR_NOMEM;
		l->v = v;
		c->alloc = na;
	}
	struct mime_addr *a = &l->v[l->n];
	a->display = display ? dup_buf(display) : strdup("");
	a->local = dup_buf(&c->it.local);
	a->domain = dup_buf(&c->domain);
	a->group = c->in_group ? dup_buf(&c->group) : NULL;
	l->n++; /* counted first so that a partial entry is freed */
	if (!a->display || !a->local || !a->domain || (c->in_group && !a->group))
		return MIME_ADDR_NOMEM;
	return MIME_ADDR_OK;
}

/* Items just scanned and stopped at '@': the local part, then the domain. */
static bool finish_addr_spec(struct ctx *c)
{
	if (c->it.nwords == 0 || c->it.adjacent_words || peek(&c->p) != '@')
		return false;
	c->p.i++;
	return take_domain(&c->p, &c->domain, &c->scratch);
}

/* angle-addr at '<': [obs-route] addr-spec '>'. Display saved by the caller. */
static bool take_angle(struct ctx *c)
{
	struct p *p = &c->p;
	p->i++;
	skip_cfws(p, &c->scratch);
	if (peek(p) == ',' || peek(p) == '@') { /* obs-route "@a,@b:" (discarded) */
		for (;;) {
			while (peek(p) == ',') {
				p->i++;
				skip_cfws(p, &c->scratch);
			}
			if (p->bad || peek(p) != '@')
				return false;
			p->i++;
			if (!take_domain(p, &c->domain, &c->scratch))
				return false;
			if (peek(p) == ':')
				break;
			if (peek(p) != ',')
				return false;
		}
		p->i++;
	}
	scan_items(p, &c->it, &c->scratch);
	if (p->bad || !finish_addr_spec(c) || peek(p) != '>')
		return false;
	p->i++;
	return true;
}

static enum mime_addr_rc parse(struct ctx *c)
{
	struct p *p = &c->p;
	struct buf display = BUF_INIT;
	enum mime_addr_rc rc = MIME_ADDR_SYNTAX;
	for (;;) {
		skip_cfws(p, &c->scratch);
		if (p->bad)
			goto out;
		int ch = peek(p);
		if (ch < 0) {
			rc = c->in_group ? MIME_ADDR_SYNTAX : MIME_ADDR_OK;
			goto out;
		}
		if (ch == ',') { /* empty element (obs-addr-list) */
			p->i++;
			continue;
		}
		if (ch == ';') {
			if (!c->in_group)
				goto out;
			p->i++;
			c->in_group = false;
			skip_cfws(p, &c->scratch);
			if (p->bad || (!eof(p) && peek(p) != ','))
				goto out;
			continue;
		}
		scan_items(p, &c->it, &c->scratch);
		if (p->bad)
			goto out;
		switch (peek(p)) {
		case ':':
			if (c->in_group || c->it.nitems == 0)
				goto out;
			p->i++;
			buf_reset(&c->group);
			buf_append(&c->group, buf_cstr(&c->it.phrase), c->it.phrase.len);
			c->in_group = true;
			continue;
		case '<':
			buf_reset(&display);
			buf_append(&display, buf_cstr(&c->it.phrase), c->it.phrase.len);
			if (!take_angle(c))
				goto out;
			rc = add_addr(c, &display);
			break;
		case '@':
			if (!finish_addr_spec(c))
				goto out;
			rc = add_addr(c, NULL);
			break;
		default: /* a word without '@', or a character that starts nothing */
			goto out;
		}
		if (rc != MIME_ADDR_OK)
			goto out;
		rc = MIME_ADDR_SYNTAX;
		skip_cfws(p, &c->scratch);
		if (p->bad)
			goto out;
		if (peek(p) == ',')
			p->i++;
		else if (!eof(p) && !(peek(p) == ';' && c->in_group))
			goto out;
	}
out:
	if (buf_err(&display) || buf_err(&c->it.phrase) || buf_err(&c->it.local) ||
	    buf_err(&c->domain) || buf_err(&c->scratch) || buf_err(&c->group))
		rc = MIME_ADDR_NOMEM;
	buf_free(&display);
	return rc;
}

enum mime_addr_rc mime_addr_list_parse(const char *s, size_t len, struct mime_addr_list *out)
{
	struct ctx c;
	memset(&c, 0, sizeof c);
	out->v = NULL;
	out->n = 0;
	c.p.s = s;
	c.p.len = len;
	c.out = out;
	buf_init(&c.it.phrase, 0);
	buf_init(&c.it.local, 0);
	buf_init(&c.domain, 0);
	buf_init(&c.scratch, 0);
	buf_init(&c.group, 0);
	enum mime_addr_rc rc = len > 0 && s == NULL ? MIME_ADDR_SYNTAX : parse(&c);
	buf_free(&c.it.phrase);
	buf_free(&c.it.local);
	buf_free(&c.domain);
	buf_free(&c.scratch);
	buf_free(&c.group);
	if (rc != MIME_ADDR_OK)
		mime_addr_list_free(out);
	return rc;
}

void mime_addr_list_free(struct mime_addr_list *l)
{
	if (l == NULL)
		return;
	for (size_t k = 0; k < l->n; k++) {
		free(l->v[k].display);
		free(l->v[k].local);
		free(l->v[k].domain);
		free(l->v[k].group);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* ---- rendering ---- */

/* True if s holds a control character other than TAB or bad UTF-8. */
static bool has_ctl(const char *s)
{
	size_t len = strlen(s);
	for (size_t k = 0; k < len; k++) {
		unsigned char c = (unsigned char)s[k];
		if (c >= 0x80) {
			size_t n = utf8_seq(s, len, k);
			if (n == 0)
				return true;
			k += n - 1;
		} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
			return true;
		}
	}
	return false;
}

/* atext+ runs separated by single sep characters, nothing at either end. */
static bool is_runs(const char *s, char sep)
{
	bool need = true; /* an atext byte must come next */
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == (unsigned char)sep) {
			if (need)
				return false;
			need = true;
		} else if (is_atext_ascii(c) || c >= 0x80) {
			need = false;
		} else {
			return false;
		}
	}
	return !need;
}

static void put_quoted(struct buf *out, const char *s)
{
	buf_putc(out, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_putc(out, '\\');
		buf_putc(out, *s);
	}
	buf_putc(out, '"');
}

static void put_phrase(struct buf *out, const char *s)
{
	if (is_runs(s, ' '))
		buf_puts(out, s);
	else
		put_quoted(out, s);
}

static bool put_mailbox(struct buf *out, const struct mime_addr *a)
{
	if (has_ctl(a->display) || has_ctl(a->local) || has_ctl(a->domain) ||
	    (a->group && has_ctl(a->group)))
		return false;
	bool literal = a->domain[0] == '[';
	if (!literal && !is_runs(a->domain, '.'))
		return false;
	if (a->display[0] != '\0') {
		put_phrase(out, a->display);
		buf_puts(out, " <");
	}
	if (is_runs(a->local, '.'))
		buf_puts(out, a->local);
	else
		put_quoted(out, a->local);
	buf_putc(out, '@');
	buf_puts(out, a->domain);
	if (a->display[0] != '\0')
		buf_putc(out, '>');
	return true;
}

bool mime_addr_list_render(const struct mime_addr_list *l, struct buf *out)
{
	const char *group = NULL;
	for (size_t k = 0; k < l->n; k++) {
		const struct mime_addr *a = &l->v[k];
		bool same = group && a->group && strcmp(group, a->group) == 0;
		if (group && !same) {
			buf_puts(out, ";");
			group = NULL;
		}
		if (k > 0)
			buf_puts(out, ", ");
		if (a->group && !same) {
			put_phrase(out, a->group);
			buf_puts(out, ": ");
			group = a->group;
		}
		if (!put_mailbox(out, a))
			return false;
	}
	if (group)
		buf_putc(out, ';');
	return !buf_err(out);
}
