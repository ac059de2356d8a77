/*
 * dmarc.c - DMARC records, Organizational Domains and alignment (see
 * dmarc.h).
 */
#include "auth/dmarc.h"

#include <ctype.h>
#include <libpsl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *dmarc_policy_name(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_NONE:
		return "none";
	case DMARC_QUARANTINE:
		return "quarantine";
	case DMARC_REJECT:
		return "reject";
	default:
		abort();
	}
}

const char *dmarc_parse_name(enum dmarc_parse e)
{
	switch (e) {
	case DMARC_OK:
		return "ok";
	case DMARC_ERR_EMPTY:
		return "error-empty";
	case DMARC_ERR_VERSION:
		return "error-bad-version";
	case DMARC_ERR_VALUE:
		return "error-bad-value";
	case DMARC_ERR_NO_POLICY:
		return "error-no-required-p";
	default:
		abort();
	}
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* s[0..n) trimmed of whitespace on both sides */
static void trim(const char **s, size_t *n)
{
	while (*n > 0 && is_wsp(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && is_wsp((*s)[*n - 1]))
		(*n)--;
}

static bool eq(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

static bool parse_policy(const char *v, size_t n, enum dmarc_policy *out)
{
	if (eq(v, n, "none"))
		*out = DMARC_NONE;
	else if (eq(v, n, "quarantine"))
		*out = DMARC_QUARANTINE;
	else if (eq(v, n, "reject"))
		*out = DMARC_REJECT;
	else
		return false;
	return true;
}

static bool parse_uint(const char *v, size_t n, unsigned long max, unsigned *out)
{
	if (n == 0 || n > 10)
		return false;
	unsigned long x = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)v[i]))
			return false;
		x = x * 10 + (unsigned long)(v[i] - '0');
	}
	if (x > max)
		return false;
	*out = (unsigned)x;
	return true;
}

/* A ":"-list of words from allowed (single letters or words), each once;
 * the canonical form (allowed order) into out (fo), or just checked. */
static bool parse_list(
    const char *v, size_t n, const char *const *allowed, size_t nallowed, char *out, size_t outsz)
{
	bool seen[8] = {false};
	size_t i = 0;
	if (n == 0)
		return false;
	while (i <= n) {
		size_t s = i;
		while (i < n && v[i] != ':')
			i++;
		const char *w = v + s;
		size_t wn = i - s;
		trim(&w, &wn);
		size_t k;
		for (k = 0; k < nallowed; k++)
			if (eq(w, wn, allowed[k]))
				break;
		if (k == nallowed)
			return false;
		seen[k] = true;
		i++;
	}
	if (out != NULL) {
		size_t o = 0;
		out[0] = '\0';
		for (size_t k = 0; k < nallowed; k++)
			if (seen[k])
				o += (size_t)snprintf(
				    out + o, outsz - o, "%s%s", o ? ":" : "", allowed[k]);
	}
	return true;
}

/* rua=/ruf=: URIs separated by ","; keep the mailto: addresses. Returns
 * how many mailto: URIs were syntactically valid. */
static size_t parse_uris(const char *v, size_t n, char (*addr)[DMARC_ADDR_MAX + 1], size_t *na)
{
	size_t valid = 0, i = 0;
	*na = 0;
	while (i <= n) {
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		const char *u = v + s;
		size_t un = i - s;
		trim(&u, &un);
		const char *bang = memchr(u, '!', un);
		if (bang)
			un = (size_t)(bang - u);
		trim(&u, &un);
		if (un > 7 && strncasecmp(u, "mailto:", 7) == 0) {
			const char *a = u + 7;
			size_t an = un - 7;
			const char *at = memchr(a, '@', an);
			bool clean = true; /* a URI is printable ASCII (and no NUL) */
			for (size_t k = 0; k < an && clean; k++)
				clean = (unsigned char)a[k] > 0x20 && (unsigned char)a[k] < 0x7f;
			if (clean && at && at > a && at < a + an - 1 &&
			    memchr(a, '/', an) == NULL && an <= DMARC_ADDR_MAX) {
				valid++;
				if (*na < DMARC_URIS_MAX) {
					memcpy(addr[*na], a, an);
					addr[*na][an] = '\0';
					(*na)++;
				}
			}
		}
		i++;
	}
	return valid;
}

enum dmarc_parse dmarc_record_parse(
    const char *txt, size_t len, struct dmarc_record *r, struct buf *why)
{
	memset(r, 0, sizeof *r);
	const char *t = txt;
	size_t n = len;
	trim(&t, &n);
	if (n == 0) {
		buf_puts(why, "empty record");
		return DMARC_ERR_EMPTY;
	}
	bool first = true, have_p = false, have_sp = false, have_np = false, bad_p = false;
	size_t rua_valid = 0;
	r->pct = 100;
	r->ri = 86400;
	snprintf(r->fo, sizeof r->fo, "0");
	r->psd = 'u';
	size_t i = 0;
	while (i < n) {
		size_t s = i;
		while (i < n && t[i] != ';')
			i++;
		const char *tag = t + s;
		size_t tn = i - s;
		i++;
		trim(&tag, &tn);
		if (tn == 0) {
			if (first)
				break;
			continue;
		}
		const char *eqs = memchr(tag, '=', tn);
		const char *k = tag, *v = eqs ? eqs + 1 : tag + tn;
		size_t kn = eqs ? (size_t)(eqs - tag) : tn, vn = eqs ? tn - kn - 1 : 0;
		trim(&k, &kn);
		trim(&v, &vn);
		if (first) {
			/* 6.4: v=DMARC1 first, exactly */
			if (!eqs || !eq(k, kn, "v") || vn != 6 || memcmp(v, "DMARC1", 6) != 0) {
				buf_puts(why, "the record does not start with v=DMARC1");
				memset(r, 0, sizeof *r);
				return DMARC_ERR_VERSION;
			}
			first = false;
			continue;
		}
		if (!eqs)
			continue; /* not a tag=value: ignored like an unknown tag */
		bool ok = true;
		if (eq(k, kn, "p")) {
			ok = parse_policy(v, vn, &r->p);
			if (ok)
				have_p = true;
			else
				bad_p = true;
		} else if (eq(k, kn, "sp")) {
			ok = have_sp = parse_policy(v, vn, &r->sp);
		} else if (eq(k, kn, "np")) {
			ok = have_np = parse_policy(v, vn, &r->np);
		} else if (eq(k, kn, "adkim") || eq(k, kn, "aspf")) {
			bool *st = eq(k, kn, "adkim") ? &r->adkim_strict : &r->aspf_strict;
			ok = eq(v, vn, "r") || eq(v, vn, "s");
			*st = eq(v, vn, "s");
		} else if (eq(k, kn, "pct")) {
			ok = parse_uint(v, vn, 100, &r->pct);
		} else if (eq(k, kn, "ri")) {
			ok = parse_uint(v, vn, 0xffffffffUL, &r->ri);
		} else if (eq(k, kn, "fo")) {
			static const char *const fo[] = {"0", "1", "d", "s"};
			ok = parse_list(v, vn, fo, 4, r->fo, sizeof r->fo);
		} else if (eq(k, kn, "rf")) {
			static const char *const rf[] = {"afrf"};
			ok = parse_list(v, vn, rf, 1, NULL, 0);
		} else if (eq(k, kn, "rua")) {
			rua_valid = parse_uris(v, vn, r->rua, &r->nrua);
		} else if (eq(k, kn, "ruf")) {
			parse_uris(v, vn, r->ruf, &r->nruf);
		} else if (eq(k, kn, "psd")) {
			ok = eq(v, vn, "y") || eq(v, vn, "n") || eq(v, vn, "u");
			if (ok)
				r->psd = (char)tolower((unsigned char)v[0]);
		} else if (eq(k, kn, "t")) {
			ok = eq(v, vn, "y") || eq(v, vn, "n");
			r->t = eq(v, vn, "y");
		}
		/* any other tag: ignored (6.3) */
		if (!ok && !eq(k, kn, "p")) {
			buf_printf(why, "bad value for %.*s=", (int)(kn > 20 ? 20 : kn), k);
			memset(r, 0, sizeof *r);
			return DMARC_ERR_VALUE;
		}
	}
	if (first) {
		buf_puts(why, "the record does not start with v=DMARC1");
		memset(r, 0, sizeof *r);
		return DMARC_ERR_VERSION;
	}
	if (!have_p) {
		/* 6.6.3: a valid rua= means act as p=none; else no policy */
		if (rua_valid == 0) {
			buf_puts(why, bad_p ? "bad value for p=" : "no p= tag");
			memset(r, 0, sizeof *r);
			return bad_p ? DMARC_ERR_VALUE : DMARC_ERR_NO_POLICY;
		}
		r->p = DMARC_NONE;
		r->p_implied = true;
	}
	if (!have_sp)
		r->sp = r->p;
	if (!have_np)
		r->np = r->sp;
	return DMARC_OK;
}

/* ---- Organizational Domain ---- */

struct dmarc_psl {
	psl_ctx_t *ctx;
	bool owned;
};

struct dmarc_psl *dmarc_psl_load(const char *path)
{
	struct dmarc_psl *p = calloc(1, sizeof *p);
	if (p == NULL)
		return NULL;
	if (path) {
		p->ctx = psl_load_file(path);
		p->owned = true;
	} else {
		p->ctx = psl_latest(NULL);
		p->owned = true;
		if (p->ctx == NULL) {
			p->ctx = (psl_ctx_t *)psl_builtin();
			p->owned = false;
		}
	}
	if (p->ctx == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

void dmarc_psl_free(struct dmarc_psl *p)
{
	if (p == NULL)
		return;
	if (p->owned)
		psl_free(p->ctx);
	free(p);
}

/* lower case, outer dots gone */
static void norm(const char *d, struct buf *out)
{
	buf_reset(out);
	size_t n = strlen(d);
	while (n > 0 && *d == '.') {
		d++;
		n--;
	}
	while (n > 0 && d[n - 1] == '.')
		n--;
	for (size_t i = 0; i < n; i++)
		buf_putc(out, (char)tolower((unsigned char)d[i]));
}

void dmarc_org_domain(const struct dmarc_psl *p, const char *domain, struct buf *out)
{
	struct buf d = BUF_INIT;
	norm(domain, &d);
	const char *reg = p ? psl_registrable_domain(p->ctx, buf_cstr(&d)) : NULL;
	buf_reset(out);
	buf_puts(out, reg ? reg : buf_cstr(&d));
	buf_free(&d);
}

bool dmarc_aligned(const struct dmarc_psl *p, const char *a, const char *b, bool strict)
{
	struct buf x = BUF_INIT, y = BUF_INIT;
	bool r;
	if (strict) {
		norm(a, &x);
		norm(b, &y);
	} else {
		dmarc_org_domain(p, a, &x);
		dmarc_org_domain(p, b, &y);
	}
	r = x.len > 0 && strcmp(buf_cstr(&x), buf_cstr(&y)) == 0;
	buf_free(&x);
	buf_free(&y);
	return r;
}

/* ---- the evaluation ---- */

const char *dmarc_align_name(enum dmarc_align a)
{
	switch (a) {
	case DMARC_ALIGN_NONE:
		return "none";
	case DMARC_ALIGN_PASS:
		return "pass";
	case DMARC_ALIGN_FAIL:
		return "fail";
	default:
		abort();
	}
}

const char *dmarc_result_name(enum dmarc_result r)
{
	switch (r) {
	case DMARC_RESULT_NONE:
		return "none";
	case DMARC_RESULT_PASS:
		return "pass";
	case DMARC_RESULT_FAIL:
		return "fail";
	case DMARC_RESULT_TEMPERROR:
		return "temperror";
	default:
		abort();
	}
}

/* The one DMARC record at _dmarc.domain: 1 found (parsed into r), 0 none
 * (no record, or more than one, or none that parses), -1 DNS trouble. */
static int find_record(const char *domain, dmarc_txt_fn txt, void *arg, struct dmarc_record *r)
{
	char name[300];
	if ((size_t)snprintf(name, sizeof name, "_dmarc.%s", domain) >= sizeof name)
		return 0;
	const char *const *v;
	const size_t *lens;
	size_t n = 0;
	enum dmarc_txt t = txt(arg, name, &v, &lens, &n);
	if (t == DMARC_TXT_TEMP)
		return -1;
	if (t != DMARC_TXT_OK)
		return 0;
	size_t found = 0;
	struct buf why = BUF_INIT;
	for (size_t i = 0; i < n; i++) {
		/* 6.6.3: records that do not start with v=DMARC1 are discarded */
		if (lens[i] < 8 || strncmp(v[i], "v=DMARC1", 8) != 0)
			continue;
		struct dmarc_record tmp;
		if (dmarc_record_parse(v[i], lens[i], &tmp, &why) == DMARC_OK) {
			*r = tmp;
			found++;
		} else {
			found += 2; /* a broken DMARC record still makes the set ambiguous */
		}
	}
	buf_free(&why);
	return found == 1 ? 1 : 0;
}

void dmarc_evaluate(const struct dmarc_psl *psl, const struct dmarc_input *in, dmarc_txt_fn txt,
    void *arg, struct dmarc_verdict *out)
{
	memset(out, 0, sizeof *out);
	struct buf from = BUF_INIT, org = BUF_INIT;
	norm(in->from_domain, &from);
	dmarc_org_domain(psl, buf_cstr(&from), &org);
	snprintf(out->org_domain, sizeof out->org_domain, "%s", buf_cstr(&org));
	int rc = find_record(buf_cstr(&from), txt, arg, &out->rec);
	bool at_org = false;
	if (rc == 0 && strcmp(buf_cstr(&from), buf_cstr(&org)) != 0) {
		rc = find_record(buf_cstr(&org), txt, arg, &out->rec);
		at_org = rc == 1;
	}
	/* the record's modes decide strict or relaxed alignment */
	bool aspf = rc == 1 && out->rec.aspf_strict, adkim = rc == 1 && out->rec.adkim_strict;
	if (in->spf_pass)
		out->spf = in->mail_from_domain && *in->mail_from_domain &&
		                   dmarc_aligned(psl, in->mail_from_domain, buf_cstr(&from), aspf)
		               ? DMARC_ALIGN_PASS
		               : DMARC_ALIGN_FAIL;
	for (size_t i = 0; i < in->ndkim; i++) {
		if (!in->dkim[i].pass)
			continue;
		if (dmarc_aligned(psl, in->dkim[i].d, buf_cstr(&from), adkim))
			out->dkim = DMARC_ALIGN_PASS;
		else if (out->dkim == DMARC_ALIGN_NONE)
			out->dkim = DMARC_ALIGN_FAIL;
	}
	if (rc != 1) {
		/* no policy applies: DMARC evaluates nothing, so nothing is aligned */
		out->spf = out->dkim = DMARC_ALIGN_NONE;
		out->result = rc < 0 ? DMARC_RESULT_TEMPERROR : DMARC_RESULT_NONE;
	} else {
		out->have_policy = true;
		out->policy = at_org ? out->rec.sp : out->rec.p;
		snprintf(out->record_domain, sizeof out->record_domain, "%s",
		    at_org ? buf_cstr(&org) : buf_cstr(&from));
		out->result = out->spf == DMARC_ALIGN_PASS || out->dkim == DMARC_ALIGN_PASS
		                  ? DMARC_RESULT_PASS
		                  : DMARC_RESULT_FAIL;
	}
	buf_free(&from);
	buf_free(&org);
}
