/*
 * dkim.c - DKIM signing and verifying (see dkim.h).
 *
 * Structure: the tag-list parser under everything; the signature and key
 * record parsers over it; the canonicalizers; then the header hash input
 * (the fields h= names, picked bottom-up, then the signature field with
 * its b= value removed); the verifier and the signer share that and the
 * body canonicalizer. OpenSSL does SHA-256, RSA and Ed25519; base64 is
 * decoded here because DKIM's base64 carries folding whitespace that
 * OpenSSL's decoders do not skip.
 */
#include "auth/dkim.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include <strings.h>

const char *dkim_result_name(enum dkim_result r)
{
	switch (r) {
	case DKIM_NONE:
		return "none";
	case DKIM_PASS:
		return "pass";
	case DKIM_FAIL:
		return "fail";
	case DKIM_NEUTRAL:
		return "neutral";
	case DKIM_TEMPERROR:
		return "temperror";
	case DKIM_PERMERROR:
		return "permerror";
	}
	return "permerror";
}

const char *dkim_alg_name(enum dkim_alg a)
{
	switch (a) {
	case DKIM_RSA_SHA256:
		return "rsa-sha256";
	case DKIM_ED25519_SHA256:
		return "ed25519-sha256";
	case DKIM_RSA_SHA1:
		return "rsa-sha1";
	}
	return "?";
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool eqn(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* Copy a string into a fixed field, truncated (src may lie in the same
 * struct, so memmove). */
static void scopy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);
	memmove(dst, src, n);
	dst[n] = '\0';
}

/* ---------------------------------------------------------------- tags */

bool dkim_tags_parse(
    const char *p, size_t n, struct dkim_tag *tags, size_t max, size_t *ntags, struct buf *why)
{
	size_t pos = 0, nt = 0;
	*ntags = 0;
	while (pos < n) {
		while (pos < n && is_fws(p[pos]))
			pos++;
		if (pos == n)
			break;
		if (p[pos] == ';') { /* an empty tag-spec: tolerated */
			pos++;
			continue;
		}
		size_t ns = pos;
		if (!isalpha((unsigned char)p[pos])) {
			buf_puts(why, "a tag name must start with a letter");
			return false;
		}
		while (pos < n && (isalnum((unsigned char)p[pos]) || p[pos] == '_'))
			pos++;
		size_t ne = pos;
		while (pos < n && is_fws(p[pos]))
			pos++;
		if (pos == n || p[pos] != '=') {
			buf_printf(why, "tag \"%.*s\" has no \"=\"",
			    (int)(ne - ns > 20 ? 20 : ne - ns), p + ns);
			return false;
		}
		pos++;
		size_t vs = pos;
		while (pos < n && p[pos] != ';') {
			unsigned char c = (unsigned char)p[pos];
			if (!is_fws((char)c) && (c < 0x21 || c > 0x7e)) {
				buf_printf(why, "tag \"%.*s\" holds a byte that is not allowed",
				    (int)(ne - ns > 20 ? 20 : ne - ns), p + ns);
				return false;
			}
			pos++;
		}
		size_t ve = pos;
		size_t a = vs, b = ve;
		while (a < b && is_fws(p[a]))
			a++;
		while (b > a && is_fws(p[b - 1]))
			b--;
		for (size_t k = 0; k < nt; k++)
			if (tags[k].nlen == ne - ns && memcmp(tags[k].name, p + ns, ne - ns) == 0) {
				buf_printf(why, "tag \"%.*s\" appears twice",
				    (int)(ne - ns > 20 ? 20 : ne - ns), p + ns);
				return false;
			}
		if (nt == max) {
			buf_puts(why, "too many tags");
			return false;
		}
		tags[nt++] = (struct dkim_tag){
		    .name = p + ns,
		    .nlen = ne - ns,
		    .val = p + a,
		    .vlen = b - a,
		    .vstart = vs,
		    .vend = ve,
		};
		if (pos < n)
			pos++; /* the ";" */
	}
	*ntags = nt;
	return true;
}

static const struct dkim_tag *tag_get(const struct dkim_tag *t, size_t n, const char *name)
{
	size_t l = strlen(name);
	for (size_t i = 0; i < n; i++)
		if (t[i].nlen == l && memcmp(t[i].name, name, l) == 0)
			return &t[i];
	return NULL;
}

/* ---------------------------------------------------------------- base64 */

/* Decode base64 with folding whitespace in it into out (at most max
 * bytes); false on a bad character, bad padding or too much data. */
static bool b64_decode(const char *p, size_t n, unsigned char *out, size_t max, size_t *olen)
{
	uint32_t acc = 0;
	unsigned bits = 0, pad = 0;
	size_t o = 0, chars = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (is_fws((char)c))
			continue;
		if (c == '=') {
			pad++;
			chars++;
			continue;
		}
		int v = util_base64_value(c);
		if (v < 0 || pad > 0)
			return false;
		chars++;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == max)
				return false;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	if (pad > 2 || chars % 4 != 0)
		return false;
	*olen = o;
	return true;
}

static void b64_encode(const unsigned char *p, size_t n, struct buf *out)
{
	char *d = buf_reserve(out, 4 * ((n + 2) / 3) + 1);
	if (d == NULL)
		return;
	int w = EVP_EncodeBlock((unsigned char *)d, p, (int)n);
	out->len += (size_t)w;
}

/* ---------------------------------------------------------------- signatures */

/* A domain name: LDH labels, no empty label, at most DKIM_DOMAIN_MAX, into
 * out in lower case. Underscores are allowed when selector. */
static bool domain_copy(const char *p, size_t n, bool selector, char *out)
{
	if (n == 0 || n > DKIM_DOMAIN_MAX || p[0] == '.' || p[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		bool ok = isalnum(c) || c == '-' || (c == '.' && p[i - 1] != '.') ||
		          (selector && c == '_');
		if (!ok)
			return false;
		out[i] = (char)tolower(c);
	}
	out[n] = '\0';
	return true;
}

static bool digits(const char *p, size_t n, size_t maxd, uint64_t *out)
{
	if (n == 0 || n > maxd)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return false;
		unsigned d = (unsigned)(p[i] - '0');
		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
	}
	*out = v;
	return true;
}

bool dkim_sig_parse(const char *v, size_t n, struct dkim_sig *sig, struct buf *why)
{
	memset(sig, 0, sizeof *sig);
	struct dkim_tag t[DKIM_TAGS_MAX];
	size_t nt;
	if (!dkim_tags_parse(v, n, t, DKIM_TAGS_MAX, &nt, why))
		return false;
	static const char *const required[] = {"v", "a", "b", "bh", "d", "h", "s"};
	for (size_t k = 0; k < sizeof required / sizeof *required; k++)
		if (tag_get(t, nt, required[k]) == NULL) {
			buf_printf(why, "the signature has no %s= tag", required[k]);
			return false;
		}
	const struct dkim_tag *x = tag_get(t, nt, "v");
	if (!eqn(x->val, x->vlen, "1")) {
		buf_puts(why, "the signature's version is not v=1");
		return false;
	}
	const struct dkim_tag *d = tag_get(t, nt, "d");
	if (!domain_copy(d->val, d->vlen, false, sig->d)) {
		buf_puts(why, "the signature's d= is not a domain name");
		return false;
	}
	const struct dkim_tag *s = tag_get(t, nt, "s");
	if (!domain_copy(s->val, s->vlen, true, sig->s)) {
		buf_puts(why, "the signature's s= is not a selector");
		return false;
	}
	const struct dkim_tag *b = tag_get(t, nt, "b");
	size_t k = 0;
	for (size_t j = 0; j < b->vlen && k < 8; j++)
		if (!is_fws(b->val[j]))
			sig->b_prefix[k++] = b->val[j];
	sig->b_prefix[k] = '\0';
	x = tag_get(t, nt, "a");
	if (eqn(x->val, x->vlen, "rsa-sha256"))
		sig->alg = DKIM_RSA_SHA256;
	else if (eqn(x->val, x->vlen, "ed25519-sha256"))
		sig->alg = DKIM_ED25519_SHA256;
	else if (eqn(x->val, x->vlen, "rsa-sha1"))
		sig->alg = DKIM_RSA_SHA1;
	else {
		buf_printf(why, "unknown signing algorithm \"%.*s\"",
		    (int)(x->vlen > 30 ? 30 : x->vlen), x->val);
		return false;
	}
	if (!b64_decode(b->val, b->vlen, sig->b, sizeof sig->b, &sig->blen) || sig->blen == 0) {
		buf_puts(why, "the signature's b= is not base64 (or is too long)");
		return false;
	}
	x = tag_get(t, nt, "bh");
	if (!b64_decode(x->val, x->vlen, sig->bh, sizeof sig->bh, &sig->bhlen) || sig->bhlen == 0) {
		buf_puts(why, "the signature's bh= is not base64");
		return false;
	}
	x = tag_get(t, nt, "c");
	if (x != NULL) {
		const char *slash = memchr(x->val, '/', x->vlen);
		size_t hl = slash ? (size_t)(slash - x->val) : x->vlen;
		const char *bp = slash ? slash + 1 : NULL;
		size_t bl = slash ? x->vlen - hl - 1 : 0;
		bool ok = true;
		if (eqn(x->val, hl, "relaxed"))
			sig->hdr_relaxed = true;
		else if (!eqn(x->val, hl, "simple"))
			ok = false;
		if (bp != NULL) {
			if (eqn(bp, bl, "relaxed"))
				sig->body_relaxed = true;
			else if (!eqn(bp, bl, "simple"))
				ok = false;
		}
		if (!ok) {
			buf_puts(why, "unknown canonicalization in c=");
			return false;
		}
	}
	x = tag_get(t, nt, "h");
	bool from = false;
	for (size_t j = 0; j < x->vlen;) {
		while (j < x->vlen && is_fws(x->val[j]))
			j++;
		size_t st = j;
		while (j < x->vlen && x->val[j] != ':')
			j++;
		size_t en = j;
		while (en > st && is_fws(x->val[en - 1]))
			en--;
		if (j < x->vlen)
			j++;
		if (en == st) {
			buf_puts(why, "an empty field name in h=");
			return false;
		}
		if (sig->nh == DKIM_H_MAX || en - st >= sizeof sig->h[0]) {
			buf_puts(why, "h= is too long");
			return false;
		}
		for (size_t q = st; q < en; q++)
			if (is_fws(x->val[q])) {
				buf_puts(why, "a field name in h= holds whitespace");
				return false;
			}
		memcpy(sig->h[sig->nh], x->val + st, en - st);
		sig->h[sig->nh][en - st] = '\0';
		from |= strcasecmp(sig->h[sig->nh], "from") == 0;
		sig->nh++;
	}
	if (!from) {
		buf_puts(why, "the From field is not signed (h= lacks from)");
		return false;
	}
	x = tag_get(t, nt, "i");
	if (x != NULL) {
		const char *at = memchr(x->val, '@', x->vlen);
		char dom[DKIM_DOMAIN_MAX + 1];
		if (at == NULL || x->vlen > DKIM_AUID_MAX ||
		    !domain_copy(at + 1, x->vlen - (size_t)(at + 1 - x->val), false, dom)) {
			buf_puts(why, "the signature's i= is not an address or @domain");
			return false;
		}
		if (!util_domain_within(dom, sig->d)) {
			buf_puts(why, "the signature's i= is not within d=");
			return false;
		}
		memcpy(sig->i, x->val, x->vlen);
		sig->i[x->vlen] = '\0';
	} else {
		snprintf(sig->i, sizeof sig->i, "@%s", sig->d);
	}
	x = tag_get(t, nt, "l");
	if (x != NULL) {
		if (!digits(x->val, x->vlen, 76, &sig->l)) {
			buf_puts(why, "the signature's l= is not a number");
			return false;
		}
		sig->has_l = true;
	}
	x = tag_get(t, nt, "q");
	if (x != NULL) {
		bool dns = false;
		for (size_t j = 0; j + 7 <= x->vlen; j++)
			if (strncasecmp(x->val + j, "dns/txt", 7) == 0 &&
			    (j == 0 || x->val[j - 1] == ':' || is_fws(x->val[j - 1])))
				dns = true;
		if (!dns) {
			buf_puts(why, "the signature's q= does not offer dns/txt");
			return false;
		}
	}
	uint64_t tv;
	x = tag_get(t, nt, "t");
	if (x != NULL) {
		if (!digits(x->val, x->vlen, 12, &tv)) {
			buf_puts(why, "the signature's t= is not a time");
			return false;
		}
		sig->has_t = true;
		sig->t = (int64_t)tv;
	}
	x = tag_get(t, nt, "x");
	if (x != NULL) {
		if (!digits(x->val, x->vlen, 12, &tv)) {
			buf_puts(why, "the signature's x= is not a time");
			return false;
		}
		sig->has_x = true;
		sig->x = (int64_t)tv;
		if (sig->has_t && sig->x < sig->t) {
			buf_puts(why, "the signature expires (x=) before it was made (t=)");
			return false;
		}
	}
	return true;
}

/* ---------------------------------------------------------------- keys */

void dkim_key_free(struct dkim_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	k->pkey = NULL;
}

/* Does the colon-separated list hold word (case-insensitively)? */
static bool list_has(const char *p, size_t n, const char *word)
{
	for (size_t j = 0; j < n;) {
		while (j < n && is_fws(p[j]))
			j++;
		size_t st = j;
		while (j < n && p[j] != ':')
			j++;
		size_t en = j;
		while (en > st && is_fws(p[en - 1]))
			en--;
		if (eqn(p + st, en - st, word))
			return true;
		j++;
	}
	return false;
}

bool dkim_key_parse(const char *txt, size_t n, struct dkim_key *k, struct buf *why)
{
	memset(k, 0, sizeof *k);
	struct dkim_tag t[DKIM_TAGS_MAX];
	size_t nt;
	if (!dkim_tags_parse(txt, n, t, DKIM_TAGS_MAX, &nt, why))
		return false;
	const struct dkim_tag *x = tag_get(t, nt, "v");
	if (x != NULL && (x != &t[0] || !eqn(x->val, x->vlen, "DKIM1"))) {
		buf_puts(why, "the key record's version is not v=DKIM1 (first)");
		return false;
	}
	x = tag_get(t, nt, "k");
	if (x != NULL && eqn(x->val, x->vlen, "ed25519"))
		k->ed25519 = true;
	else if (x != NULL && !eqn(x->val, x->vlen, "rsa")) {
		buf_printf(
		    why, "unknown key type k=%.*s", (int)(x->vlen > 20 ? 20 : x->vlen), x->val);
		return false;
	}
	x = tag_get(t, nt, "h");
	k->sha1_ok = k->sha256_ok = true;
	if (x != NULL) {
		k->sha1_ok = list_has(x->val, x->vlen, "sha1");
		k->sha256_ok = list_has(x->val, x->vlen, "sha256");
	}
	x = tag_get(t, nt, "s");
	if (x != NULL && !list_has(x->val, x->vlen, "*") && !list_has(x->val, x->vlen, "email")) {
		buf_puts(why, "the key is not for email (s=)");
		return false;
	}
	x = tag_get(t, nt, "t");
	if (x != NULL) {
		k->testing = list_has(x->val, x->vlen, "y");
		k->strict_auid = list_has(x->val, x->vlen, "s");
	}
	x = tag_get(t, nt, "p");
	if (x == NULL) {
		buf_puts(why, "the key record has no p= tag");
		return false;
	}
	unsigned char der[2048];
	size_t dlen;
	if (!b64_decode(x->val, x->vlen, der, sizeof der, &dlen)) {
		buf_puts(why, "the key's p= is not base64 (or too long)");
		return false;
	}
	if (dlen == 0) {
		k->revoked = true;
		return true;
	}
	if (k->ed25519) {
		if (dlen == 32)
			k->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, dlen);
		if (k->pkey == NULL) {
			buf_puts(why, "the key's p= is not an Ed25519 public key");
			return false;
		}
		k->bits = 256;
		return true;
	}
	const unsigned char *q = der;
	k->pkey = d2i_PUBKEY(NULL, &q, (long)dlen);
	if (k->pkey == NULL) { /* some publish the bare PKCS#1 RSAPublicKey */
		q = der;
		k->pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &q, (long)dlen);
	}
	if (k->pkey == NULL || EVP_PKEY_get_base_id(k->pkey) != EVP_PKEY_RSA) {
		buf_puts(why, "the key's p= is not an RSA public key");
		dkim_key_free(k);
		return false;
	}
	k->bits = (unsigned)EVP_PKEY_get_bits(k->pkey);
	if (k->bits < 1024 || k->bits > 8192) {
		buf_printf(
		    why, "an RSA key of %u bits is not accepted (RFC 8301: 1024 or more)", k->bits);
		dkim_key_free(k);
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------- canonicalization */

void dkim_canon_header(bool relaxed, const char *f, size_t n, struct buf *out)
{
	while (n > 0 && (f[n - 1] == '\n' || f[n - 1] == '\r'))
		n--;
	if (!relaxed) {
		buf_append(out, f, n);
		buf_puts(out, "\r\n");
		return;
	}
	const char *colon = memchr(f, ':', n);
	size_t nl = colon ? (size_t)(colon - f) : n;
	size_t ne = nl;
	while (ne > 0 && is_wsp(f[ne - 1]))
		ne--;
	for (size_t i = 0; i < ne; i++)
		buf_putc(out, (char)tolower((unsigned char)f[i]));
	buf_putc(out, ':');
	if (colon == NULL) {
		buf_puts(out, "\r\n");
		return;
	}
	bool wsp = false, started = false;
	for (size_t i = nl + 1; i < n; i++) {
		char c = f[i];
		if (c == '\r' && i + 1 < n && f[i + 1] == '\n')
			continue; /* unfold: the CRLF goes, its WSP follows */
		if (c == '\n')
			continue;
		if (is_wsp(c)) {
			wsp = true;
			continue;
		}
		if (wsp && started)
			buf_putc(out, ' ');
		wsp = false;
		started = true;
		buf_putc(out, c);
	}
	buf_puts(out, "\r\n");
}

void dkim_body_canon_init(struct dkim_body_canon *c, bool relaxed)
{
	memset(c, 0, sizeof *c);
	c->relaxed = relaxed;
}

static void bc_flush(struct dkim_body_canon *c, dkim_emit_fn emit, void *arg)
{
	if (c->nout > 0)
		emit(arg, c->out, c->nout);
	c->nout = 0;
}

static void bc_put(struct dkim_body_canon *c, char ch, dkim_emit_fn emit, void *arg)
{
	if (c->nout == sizeof c->out)
		bc_flush(c, emit, arg);
	c->out[c->nout++] = ch;
	c->any = true;
}

static void bc_content(struct dkim_body_canon *c, char ch, dkim_emit_fn emit, void *arg)
{
	for (; c->nl > 0; c->nl--) {
		bc_put(c, '\r', emit, arg);
		bc_put(c, '\n', emit, arg);
	}
	if (c->wsp)
		bc_put(c, ' ', emit, arg);
	c->wsp = false;
	bc_put(c, ch, emit, arg);
	c->content = true;
}

static void bc_eol(struct dkim_body_canon *c, dkim_emit_fn emit, void *arg)
{
	c->wsp = false; /* relaxed: whitespace at the end of a line goes */
	if (c->content) {
		bc_put(c, '\r', emit, arg);
		bc_put(c, '\n', emit, arg);
		c->content = false;
	} else {
		c->nl++; /* held back: it may be one of the trailing empty lines */
	}
}

void dkim_body_canon_feed(
    struct dkim_body_canon *c, const char *p, size_t n, dkim_emit_fn emit, void *arg)
{
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (c->cr) {
			c->cr = false;
			if (ch == '\n') {
				bc_eol(c, emit, arg);
				continue;
			}
			bc_content(c, '\r', emit, arg); /* a bare CR is content */
		}
		if (ch == '\r')
			c->cr = true;
		else if (ch == '\n')
			bc_eol(c, emit, arg); /* a bare LF ends the line too */
		else if (c->relaxed && is_wsp(ch))
			c->wsp = true;
		else
			bc_content(c, ch, emit, arg);
	}
	bc_flush(c, emit, arg);
}

void dkim_body_canon_end(struct dkim_body_canon *c, dkim_emit_fn emit, void *arg)
{
	if (c->cr) {
		c->cr = false;
		bc_content(c, '\r', emit, arg);
	}
	if (c->content) { /* the last line had no CRLF: it gets one */
		bc_put(c, '\r', emit, arg);
		bc_put(c, '\n', emit, arg);
		c->content = false;
	}
	c->nl = 0; /* trailing empty lines are not part of the body */
	if (!c->relaxed && !c->any) {
		bc_put(c, '\r', emit, arg); /* simple: an empty body is one CRLF */
		bc_put(c, '\n', emit, arg);
	}
	bc_flush(c, emit, arg);
}

/* ---------------------------------------------------------------- header section */

struct field {
	const char *p; /* the whole field, with its CRLF */
	size_t n;
	size_t nlen; /* the name, without trailing WSP */
};

/* Split a header section into fields (up to the empty line); lines that
 * are not fields (no colon) are kept with nlen 0. Returns the count; *more
 * is set when fields beyond max were left out (nobody may rely on the
 * rest: a From added there would be invisible to oversigning). */
static size_t split_fields(const char *h, size_t hlen, struct field *f, size_t max, bool *more)
{
	size_t pos = 0, nf = 0;
	*more = false;
	while (pos < hlen) {
		if (h[pos] == '\n' || (h[pos] == '\r' && pos + 1 < hlen && h[pos + 1] == '\n'))
			break; /* the empty line */
		if (nf == max) {
			*more = true;
			break;
		}
		size_t st = pos;
		for (;;) {
			const char *lf = memchr(h + pos, '\n', hlen - pos);
			pos = lf ? (size_t)(lf - h) + 1 : hlen;
			if (pos >= hlen || !is_wsp(h[pos]))
				break;
		}
		const char *colon = memchr(h + st, ':', pos - st);
		size_t nlen = colon ? (size_t)(colon - (h + st)) : 0;
		while (nlen > 0 && is_wsp(h[st + nlen - 1]))
			nlen--;
		f[nf++] = (struct field){h + st, pos - st, nlen};
	}
	return nf;
}

size_t dkim_body_offset(const char *msg, size_t n)
{
	size_t pos = 0;
	while (pos < n) {
		if (msg[pos] == '\n')
			return pos + 1;
		if (msg[pos] == '\r' && pos + 1 < n && msg[pos + 1] == '\n')
			return pos + 2;
		const char *lf = memchr(msg + pos, '\n', n - pos);
		if (lf == NULL)
			return n;
		pos = (size_t)(lf - msg) + 1;
	}
	return n;
}

static bool field_is(const struct field *f, const char *name)
{
	return f->nlen > 0 && eqn(f->p, f->nlen, name);
}

/* The signed fields of h=, each time the bottom-most one not yet used
 * (RFC 6376 5.4.2; a name with no field left adds nothing), canonical,
 * into out. used has nf entries. */
static void hash_fields(const struct field *f, size_t nf, bool *used, char (*h)[80], size_t nh,
    bool relaxed, struct buf *out)
{
	memset(used, 0, nf * sizeof *used);
	for (size_t k = 0; k < nh; k++)
		for (size_t j = nf; j-- > 0;)
			if (!used[j] && field_is(&f[j], h[k])) {
				used[j] = true;
				dkim_canon_header(relaxed, f[j].p, f[j].n, out);
				break;
			}
}

/* The signature field itself, b='s value emptied, canonical, without the
 * final CRLF (RFC 6376 3.7). */
static void hash_self(const struct field *f, bool relaxed, struct buf *out)
{
	const char *colon = memchr(f->p, ':', f->n);
	size_t voff = (size_t)(colon - f->p) + 1;
	size_t vlen = f->n - voff;
	while (vlen > 0 && (f->p[voff + vlen - 1] == '\n' || f->p[voff + vlen - 1] == '\r'))
		vlen--;
	struct dkim_tag t[DKIM_TAGS_MAX];
	size_t nt;
	struct buf why = BUF_INIT, copy = BUF_INIT;
	buf_init(&why, 256);
	buf_init(&copy, f->n + 1);
	if (dkim_tags_parse(f->p + voff, vlen, t, DKIM_TAGS_MAX, &nt, &why)) {
		const struct dkim_tag *b = tag_get(t, nt, "b");
		buf_append(&copy, f->p, voff + b->vstart);
		buf_append(&copy, f->p + voff + b->vend, vlen - b->vend);
	}
	buf_free(&why);
	size_t before = out->len;
	dkim_canon_header(relaxed, copy.data ? copy.data : "", copy.len, out);
	if (out->len >= before + 2 && !buf_err(out))
		out->len -= 2;
	buf_free(&copy);
}

/* ---------------------------------------------------------------- verifying */

struct vsig {
	struct dkim_sig sig;
	struct dkim_sig_result res;
	bool decided; /* res is final */
	bool answered;
	char keyname[2 * DKIM_DOMAIN_MAX + 16];
	struct buf hdata;    /* the header hash input */
	EVP_MD_CTX *bh;      /* body hash */
	uint64_t hashed;     /* canonical body bytes hashed */
	bool hdr_ok;         /* the signature verified over the headers */
	enum dkim_result kr; /* after the key: PASS (go on) or the error */
	char kwhy[160];
	bool testing;
};

struct dkim_verify {
	int64_t now;
	size_t found, n;
	struct vsig s[DKIM_SIGS_MAX];
	struct dkim_body_canon canon[2]; /* simple, relaxed */
	bool need[2];
	uint64_t clen[2]; /* canonical body length */
	bool body_ended;
};

static void decide(struct vsig *s, enum dkim_result r, const char *why)
{
	s->res.result = r;
	scopy(s->res.reason, sizeof s->res.reason, why);
	s->decided = true;
}

struct dkim_verify *dkim_verify_new(const char *hdr, size_t hlen, int64_t now)
{
	struct dkim_verify *v = calloc(1, sizeof *v);
	struct field *f = calloc(DKIM_HEADERS_MAX, sizeof *f);
	bool *used = calloc(DKIM_HEADERS_MAX, sizeof *used);
	if (v == NULL || f == NULL || used == NULL) {
		free(v);
		free(f);
		free(used);
		return NULL;
	}
	v->now = now;
	dkim_body_canon_init(&v->canon[0], false);
	dkim_body_canon_init(&v->canon[1], true);
	bool more;
	size_t nf = split_fields(hdr, hlen, f, DKIM_HEADERS_MAX, &more);
	struct buf why = BUF_INIT;
	buf_init(&why, 256);
	for (size_t j = 0; j < nf; j++) {
		if (!field_is(&f[j], "DKIM-Signature"))
			continue;
		v->found++;
		if (v->n == DKIM_SIGS_MAX)
			continue;
		struct vsig *s = &v->s[v->n++];
		const char *colon = memchr(f[j].p, ':', f[j].n);
		size_t voff = (size_t)(colon - f[j].p) + 1;
		size_t vlen = f[j].n - voff;
		while (vlen > 0 &&
		       (f[j].p[voff + vlen - 1] == '\n' || f[j].p[voff + vlen - 1] == '\r'))
			vlen--;
		buf_reset(&why);
		bool ok = dkim_sig_parse(f[j].p + voff, vlen, &s->sig, &why);
		scopy(s->res.d, sizeof s->res.d, s->sig.d);
		scopy(s->res.s, sizeof s->res.s, s->sig.s);
		scopy(s->res.i, sizeof s->res.i, s->sig.i);
		scopy(s->res.a, sizeof s->res.a, ok ? dkim_alg_name(s->sig.alg) : "");
		scopy(s->res.b_prefix, sizeof s->res.b_prefix, s->sig.b_prefix);
		if (!ok) {
			decide(s, DKIM_PERMERROR, buf_err(&why) ? "bad signature" : buf_cstr(&why));
			continue;
		}
		if (more) {
			decide(
			    s, DKIM_PERMERROR, "the header section has too many fields to check");
			continue;
		}
		if (s->sig.alg == DKIM_RSA_SHA1) {
			decide(s, DKIM_PERMERROR, "rsa-sha1 is not accepted (RFC 8301)");
			continue;
		}
		if (s->sig.has_x && now > s->sig.x) {
			decide(s, DKIM_FAIL, "the signature has expired (x=)");
			continue;
		}
		char kn[sizeof s->keyname];
		snprintf(kn, sizeof kn, "%s._domainkey.%s", s->sig.s, s->sig.d);
		scopy(s->keyname, sizeof s->keyname, kn);
		buf_init(&s->hdata, 1024 * 1024);
		hash_fields(f, nf, used, s->sig.h, s->sig.nh, s->sig.hdr_relaxed, &s->hdata);
		hash_self(&f[j], s->sig.hdr_relaxed, &s->hdata);
		s->bh = EVP_MD_CTX_new();
		if (buf_err(&s->hdata) || s->bh == NULL ||
		    EVP_DigestInit_ex(s->bh, EVP_sha256(), NULL) != 1) {
			decide(s, DKIM_TEMPERROR, "out of memory");
			continue;
		}
		v->need[s->sig.body_relaxed] = true;
	}
	buf_free(&why);
	free(f);
	free(used);
	return v;
}

size_t dkim_verify_count(const struct dkim_verify *v)
{
	return v->n;
}

const char *dkim_verify_key_name(const struct dkim_verify *v, size_t i)
{
	const struct vsig *s = &v->s[i];
	return s->decided || s->answered ? NULL : s->keyname;
}

/* The key and the header signature of s (kr, hdr_ok). */
static void check_key(struct vsig *s, const struct dkim_key *k)
{
	s->kr = DKIM_PERMERROR;
	s->testing = k->testing;
	bool ed = s->sig.alg == DKIM_ED25519_SHA256;
	const char *why = NULL;
	if (k->revoked)
		why = "the key has been revoked (empty p=)";
	else if (ed != k->ed25519)
		why = "the key is not of the signature's type";
	else if (!k->sha256_ok)
		why = "the key does not allow sha256 (h=)";
	else if (k->strict_auid) {
		const char *at = strrchr(s->sig.i, '@');
		if (at == NULL || strcasecmp(at + 1, s->sig.d) != 0)
			why = "the key allows no subdomain in i= (t=s)";
	}
	if (why != NULL) {
		scopy(s->kwhy, sizeof s->kwhy, why);
		return;
	}
	s->kr = DKIM_PASS;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL) {
		s->kr = DKIM_TEMPERROR;
		scopy(s->kwhy, sizeof s->kwhy, "out of memory");
		return;
	}
	int ok;
	if (ed) {
		unsigned char h[32];
		unsigned hl = 0;
		ok = EVP_Digest(s->hdata.data, s->hdata.len, h, &hl, EVP_sha256(), NULL) == 1 &&
		     EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
		     EVP_DigestVerify(ctx, s->sig.b, s->sig.blen, h, hl) == 1;
	} else {
		ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
		     EVP_DigestVerify(ctx, s->sig.b, s->sig.blen,
		         (const unsigned char *)s->hdata.data, s->hdata.len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	s->hdr_ok = ok;
}

void dkim_verify_key_answer(struct dkim_verify *v, size_t i, enum dkim_dns st,
    const char *const *txt, const size_t *lens, size_t n)
{
	struct vsig *s = &v->s[i];
	if (s->decided || s->answered)
		return;
	s->answered = true;
	if (st == DKIM_DNS_TEMP) {
		s->kr = DKIM_TEMPERROR;
		scopy(s->kwhy, sizeof s->kwhy, "the key lookup failed temporarily");
		return;
	}
	if (st != DKIM_DNS_OK || n == 0) {
		s->kr = DKIM_PERMERROR;
		char w[sizeof s->kwhy];
		snprintf(w, sizeof w, "no key record at %s", s->keyname);
		scopy(s->kwhy, sizeof s->kwhy, w);
		return;
	}
	struct buf why = BUF_INIT;
	buf_init(&why, 256);
	struct dkim_key k;
	bool parsed = false;
	char first[160] = "";
	for (size_t j = 0; j < n && !parsed; j++) {
		buf_reset(&why);
		parsed = dkim_key_parse(txt[j], lens[j], &k, &why);
		if (!parsed && j == 0)
			snprintf(
			    first, sizeof first, "%s", buf_err(&why) ? "bad key" : buf_cstr(&why));
		if (!parsed)
			dkim_key_free(&k);
	}
	buf_free(&why);
	if (!parsed) {
		s->kr = DKIM_PERMERROR;
		scopy(s->kwhy, sizeof s->kwhy, first);
		return;
	}
	check_key(s, &k);
	dkim_key_free(&k);
}

static void verify_emit(void *arg, const char *p, size_t n)
{
	struct dkim_body_canon *c = ((void **)arg)[1];
	struct dkim_verify *v = ((void **)arg)[0];
	v->clen[c->relaxed] += n;
	for (size_t i = 0; i < v->n; i++) {
		struct vsig *s = &v->s[i];
		if (s->decided || s->sig.body_relaxed != c->relaxed)
			continue;
		size_t take = n;
		if (s->sig.has_l && s->sig.l - s->hashed < take)
			take = (size_t)(s->sig.l - s->hashed);
		if (take > 0 && EVP_DigestUpdate(s->bh, p, take) == 1)
			s->hashed += take;
	}
}

void dkim_verify_body(struct dkim_verify *v, const char *p, size_t n)
{
	if (v->body_ended)
		return;
	for (int r = 0; r < 2; r++)
		if (v->need[r]) {
			void *arg[2] = {v, &v->canon[r]};
			dkim_body_canon_feed(&v->canon[r], p, n, verify_emit, arg);
		}
}

void dkim_verify_body_end(struct dkim_verify *v)
{
	if (v->body_ended)
		return;
	for (int r = 0; r < 2; r++)
		if (v->need[r]) {
			void *arg[2] = {v, &v->canon[r]};
			dkim_body_canon_end(&v->canon[r], verify_emit, arg);
		}
	v->body_ended = true;
}

bool dkim_verify_done(const struct dkim_verify *v)
{
	if (!v->body_ended)
		return false;
	for (size_t i = 0; i < v->n; i++)
		if (!v->s[i].decided && !v->s[i].answered)
			return false;
	return true;
}

/* Both halves known: the verdict of s. */
static void finish_sig(struct dkim_verify *v, struct vsig *s)
{
	if (s->decided)
		return;
	if (!s->answered || !v->body_ended) {
		s->res.result = DKIM_TEMPERROR;
		scopy(s->res.reason, sizeof s->res.reason, "the key lookup did not finish");
		return;
	}
	if (s->kr != DKIM_PASS) {
		decide(s, s->kr, s->kwhy);
	} else {
		unsigned char h[EVP_MAX_MD_SIZE];
		unsigned hl = 0;
		bool bh_ok = EVP_DigestFinal_ex(s->bh, h, &hl) == 1 && hl == s->sig.bhlen &&
		             CRYPTO_memcmp(h, s->sig.bh, hl) == 0;
		if (s->sig.has_l && s->sig.l > v->clen[s->sig.body_relaxed])
			decide(s, DKIM_FAIL, "l= is longer than the body");
		else if (!bh_ok)
			decide(s, DKIM_FAIL, "the body hash did not verify");
		else if (!s->hdr_ok)
			decide(s, DKIM_FAIL, "the signature did not verify");
		else
			decide(s, DKIM_PASS,
			    s->sig.has_l ? "good signature (of part of the body, l=)"
			                 : "good signature");
	}
	s->res.testing = s->testing;
}

const struct dkim_sig_result *dkim_verify_result(const struct dkim_verify *v, size_t i)
{
	struct dkim_verify *m = (struct dkim_verify *)v; /* finishing is idempotent */
	finish_sig(m, &m->s[i]);
	return &v->s[i].res;
}

void dkim_verify_free(struct dkim_verify *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->n; i++) {
		buf_free(&v->s[i].hdata);
		EVP_MD_CTX_free(v->s[i].bh);
	}
	free(v);
}

/* ---------------------------------------------------------------- signing */

struct dkim_signer {
	char d[DKIM_DOMAIN_MAX + 1];
	int64_t now;
	size_t n;
	struct dkim_sign_key keys[DKIM_SIGS_MAX];
	char sel[DKIM_SIGS_MAX][DKIM_DOMAIN_MAX + 1];
	struct dkim_body_canon canon;
	EVP_MD_CTX *bh;
	bool ended;
};

/* Fields signed when present (RFC 6376 5.4.1), besides From. */
static const char *const sign_fields[] = {"reply-to", "subject", "date", "to", "cc", "resent-date",
    "resent-from", "resent-to", "resent-cc", "in-reply-to", "references", "list-id", "list-help",
    "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive", "message-id",
    "mime-version", "content-type", "content-transfer-encoding", "content-id",
    "content-description", "sender"};

const char *dkim_key_type(EVP_PKEY *pkey)
{
	int id = pkey ? EVP_PKEY_get_base_id(pkey) : 0;
	return id == EVP_PKEY_RSA ? "rsa" : id == EVP_PKEY_ED25519 ? "ed25519" : NULL;
}

struct dkim_signer *dkim_signer_new(
    const char *d, const struct dkim_sign_key *keys, size_t n, int64_t now)
{
	if (n == 0 || n > DKIM_SIGS_MAX)
		return NULL;
	struct dkim_signer *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	if (!domain_copy(d, strlen(d), false, s->d))
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (dkim_key_type(keys[i].pkey) == NULL ||
		    !domain_copy(keys[i].selector, strlen(keys[i].selector), true, s->sel[i]) ||
		    EVP_PKEY_up_ref(keys[i].pkey) != 1)
			goto fail;
		s->keys[i] = (struct dkim_sign_key){s->sel[i], keys[i].pkey};
		s->n = i + 1;
	}
	s->now = now;
	dkim_body_canon_init(&s->canon, true);
	s->bh = EVP_MD_CTX_new();
	if (s->bh == NULL || EVP_DigestInit_ex(s->bh, EVP_sha256(), NULL) != 1)
		goto fail;
	return s;
fail:
	dkim_signer_free(s);
	return NULL;
}

static void sign_emit(void *arg, const char *p, size_t n)
{
	EVP_DigestUpdate(arg, p, n);
}

void dkim_signer_body(struct dkim_signer *s, const char *p, size_t n)
{
	if (!s->ended)
		dkim_body_canon_feed(&s->canon, p, n, sign_emit, s->bh);
}

/* Append word to a header field being built, folding before it when the
 * line would pass 76 columns; *col is the current column. */
static void fold_put(struct buf *out, size_t *col, const char *word, size_t n)
{
	if (*col + n > 76 && *col > 1) {
		buf_puts(out, "\r\n\t");
		*col = 1;
	}
	buf_append(out, word, n);
	*col += n;
}

bool dkim_signer_finish(
    struct dkim_signer *s, const char *hdr, size_t hlen, struct buf *out, struct buf *why)
{
	if (!s->ended) {
		dkim_body_canon_end(&s->canon, sign_emit, s->bh);
		s->ended = true;
	}
	unsigned char bh[32];
	unsigned bhl = 0;
	if (EVP_DigestFinal_ex(s->bh, bh, &bhl) != 1) {
		buf_puts(why, "the body hash failed");
		return false;
	}
	struct field *f = calloc(DKIM_HEADERS_MAX, sizeof *f);
	bool *used = calloc(DKIM_HEADERS_MAX, sizeof *used);
	char(*h)[80] = calloc(DKIM_H_MAX, sizeof *h);
	bool ok = f != NULL && used != NULL && h != NULL;
	bool more = false;
	size_t nf = ok ? split_fields(hdr, hlen, f, DKIM_HEADERS_MAX, &more) : 0, nh = 0, nfrom = 0;
	if (more) {
		buf_puts(why, "the header section has too many fields to sign");
		ok = false;
	}
	for (size_t j = 0; j < nf; j++)
		nfrom += field_is(&f[j], "from");
	if (ok && nfrom == 0) {
		buf_puts(why, "the message has no From field");
		ok = false;
	}
	/* From once more than it occurs: a From added later breaks the signature */
	for (size_t k = 0; ok && k <= nfrom && nh < DKIM_H_MAX; k++)
		snprintf(h[nh++], sizeof h[0], "from");
	for (size_t q = 0; ok && q < sizeof sign_fields / sizeof *sign_fields; q++)
		for (size_t j = 0; j < nf && nh < DKIM_H_MAX; j++)
			if (field_is(&f[j], sign_fields[q]))
				snprintf(h[nh++], sizeof h[0], "%s", sign_fields[q]);
	struct buf data = BUF_INIT, field = BUF_INIT, b64 = BUF_INIT;
	unsigned char sig[DKIM_SIG_BYTES_MAX];
	buf_init(&data, 1024 * 1024);
	buf_init(&field, 16384);
	buf_init(&b64, 4096);
	if (ok)
		hash_fields(f, nf, used, h, nh, true, &data);
	size_t base = data.len;
	for (size_t i = 0; ok && i < s->n; i++) {
		const struct dkim_sign_key *k = &s->keys[i];
		bool ed = strcmp(dkim_key_type(k->pkey), "ed25519") == 0;
		buf_reset(&field);
		buf_reset(&b64);
		b64_encode(bh, bhl, &b64);
		buf_printf(&field,
		    "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s;\r\n\ts=%s; t=%lld;",
		    ed ? "ed25519-sha256" : "rsa-sha256", s->d, k->selector, (long long)s->now);
		buf_puts(&field, "\r\n\th=");
		size_t col = 3;
		for (size_t q = 0; q < nh; q++) {
			char w[84];
			int wl = snprintf(w, sizeof w, "%s%s", h[q], q + 1 < nh ? ":" : ";");
			fold_put(&field, &col, w, (size_t)wl);
		}
		buf_printf(&field, "\r\n\tbh=%s;\r\n\tb=", buf_cstr(&b64));
		data.len = base;
		struct field self = {field.data, field.len, 14};
		hash_self(&self, true, &data);
		size_t siglen = DKIM_SIG_BYTES_MAX;
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		unsigned char hh[32];
		unsigned hhl = 0;
		bool signed_ok = ctx != NULL && !buf_err(&data) && !buf_err(&field);
		if (signed_ok && ed)
			signed_ok =
			    EVP_Digest(data.data, data.len, hh, &hhl, EVP_sha256(), NULL) == 1 &&
			    EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
			    EVP_DigestSign(ctx, sig, &siglen, hh, hhl) == 1;
		else if (signed_ok)
			signed_ok =
			    EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
			    EVP_DigestSign(ctx, NULL, &siglen, NULL, 0) == 1 &&
			    siglen <= DKIM_SIG_BYTES_MAX &&
			    EVP_DigestSign(
			        ctx, sig, &siglen, (const unsigned char *)data.data, data.len) == 1;
		EVP_MD_CTX_free(ctx);
		if (!signed_ok) {
			buf_printf(why, "signing with selector %s failed", k->selector);
			ok = false;
			break;
		}
		buf_reset(&b64);
		b64_encode(sig, siglen, &b64);
		col = 3;
		for (size_t o = 0; o < b64.len; o += 72) {
			size_t take = b64.len - o < 72 ? b64.len - o : 72;
			if (o > 0)
				buf_puts(&field, "\r\n\t ");
			buf_append(&field, b64.data + o, take);
		}
		buf_puts(&field, "\r\n");
		if (buf_err(&field)) {
			buf_puts(why, "the signature field is too long");
			ok = false;
			break;
		}
		buf_append(out, field.data, field.len);
	}
	buf_free(&data);
	buf_free(&field);
	buf_free(&b64);
	free(f);
	free(used);
	free(h);
	return ok && !buf_err(out);
}

void dkim_signer_free(struct dkim_signer *s)
{
	if (s == NULL)
		return;
	EVP_MD_CTX_free(s->bh);
	for (size_t i = 0; i < s->n; i++)
		EVP_PKEY_free(s->keys[i].pkey);
	free(s);
}

/* ---------------------------------------------------------------- keys */

EVP_PKEY *dkim_keygen(bool ed25519)
{
	if (ed25519)
		return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
}

bool dkim_key_record(EVP_PKEY *pkey, struct buf *out)
{
	const char *type = dkim_key_type(pkey);
	if (type == NULL)
		return false;
	unsigned char raw[32];
	unsigned char *der = NULL;
	size_t n = sizeof raw;
	bool ok;
	buf_printf(out, "v=DKIM1; k=%s; p=", type);
	if (strcmp(type, "ed25519") == 0) {
		ok = EVP_PKEY_get_raw_public_key(pkey, raw, &n) == 1;
		if (ok)
			b64_encode(raw, n, out);
	} else {
		int l = i2d_PUBKEY(pkey, &der);
		ok = l > 0;
		if (ok)
			b64_encode(der, (size_t)l, out);
		OPENSSL_free(der);
	}
	return ok && !buf_err(out);
}
