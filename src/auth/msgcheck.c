/*
 * msgcheck.c - DKIM, DMARC and the policy of one received message (see
 * msgcheck.h).
 *
 * Lookups: one TXT query per DKIM signature (s._domainkey.d), and the two
 * DMARC names (_dmarc.<From domain>, _dmarc.<its Organizational Domain>)
 * fetched up front; dmarc_evaluate() then reads them from memory, so the
 * evaluation stays pure.
 */
#include "auth/msgcheck.h"

#include <ctype.h>
#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "dns/dns.h"
#include "mime/addr.h"
#include "smtp/smtp_parse.h"

/* A uniform number below n (n <= 65536). */
static unsigned random_below(unsigned n)
{
	uint32_t r;
	util_random(&r, sizeof r);
	return (unsigned)(r % n);
}

struct query {
	struct msgcheck *mc;
	struct dns_req *req;
	size_t sig;              /* DKIM: the signature; DMARC: -1 */
	char name[DNS_NAME_MAX]; /* DMARC: the name asked */
	struct dns_answer *ans;  /* DMARC: kept for the evaluation */
};

struct msgcheck {
	struct dns_resolver *dns;
	const struct dmarc_psl *psl;
	bool want_dkim, want_dmarc;
	int64_t now;
	bool have_header, ended;
	struct dkim_verify *dkim;
	struct query keys[DKIM_SIGS_MAX];
	struct query dm[2];
	size_t ndm;
	unsigned pending;
	msgcheck_cb cb;
	void *cb_arg;
	char from[DKIM_DOMAIN_MAX + 1];
	enum msgcheck_from from_status;
	bool finished, evaluated;
	struct dmarc_verdict verdict;
	enum msgcheck_action action;
	char why[400];
	const char *disposition;
};

const char *msgcheck_action_name(enum msgcheck_action a)
{
	return a == MSGCHECK_REFUSE ? "refuse" : a == MSGCHECK_JUNK ? "junk" : "deliver";
}

struct msgcheck *msgcheck_new(
    struct dns_resolver *r, const struct dmarc_psl *psl, bool dkim, bool dmarc, int64_t now)
{
	struct msgcheck *mc = calloc(1, sizeof *mc);
	if (mc == NULL)
		return NULL;
	mc->dns = r;
	mc->psl = psl;
	mc->want_dkim = dkim;
	mc->want_dmarc = dmarc && psl != NULL;
	mc->now = now;
	mc->disposition = "none";
	return mc;
}

static void maybe_done(struct msgcheck *mc)
{
	if (mc->pending == 0 && mc->ended && mc->cb != NULL) {
		msgcheck_cb cb = mc->cb;
		mc->cb = NULL;
		cb(mc, mc->cb_arg);
	}
}

static void key_answer(struct dns_answer *a, void *arg)
{
	struct query *q = arg;
	struct msgcheck *mc = q->mc;
	q->req = NULL;
	mc->pending--;
	const char *v[DNS_MAX_RECORDS];
	size_t lens[DNS_MAX_RECORDS], n = 0;
	enum dkim_dns st = a->status == DNS_OK               ? DKIM_DNS_OK
	                   : dns_status_permanent(a->status) ? DKIM_DNS_NONE
	                                                     : DKIM_DNS_TEMP;
	for (size_t i = 0; st == DKIM_DNS_OK && i < a->n && n < DNS_MAX_RECORDS; i++) {
		v[n] = a->txt[i].data;
		lens[n++] = a->txt[i].len;
	}
	dkim_verify_key_answer(mc->dkim, q->sig, st, v, lens, n);
	dns_answer_free(a);
	maybe_done(mc);
}

static void dmarc_answer(struct dns_answer *a, void *arg)
{
	struct query *q = arg;
	q->req = NULL;
	q->ans = a;
	q->mc->pending--;
	maybe_done(q->mc);
}

/* The domain of the first author in the From field, lower case; "" when
 * there is no From, it cannot be parsed, or it has no domain. */
/* Lower-case domain d (n bytes, outer dots dropped) into out, a UTF-8
 * (U-label) name as its A-labels, the form DNS and d= use (RFC 5890);
 * false when it does not fit, is a literal or is no valid IDN. */
static bool put_domain(const char *d, size_t n, char *out, size_t max)
{
	while (n > 0 && d[n - 1] == '.')
		n--;
	while (n > 0 && d[0] == '.') {
		d++;
		n--;
	}
	if (n == 0 || n >= max || d[0] == '[')
		return false;
	bool utf8 = false;
	for (size_t i = 0; i < n; i++) {
		out[i] = (char)((d[i] >= 'A' && d[i] <= 'Z') ? d[i] + 32 : d[i]);
		utf8 |= (unsigned char)d[i] >= 0x80;
	}
	out[n] = '\0';
	if (!utf8)
		return true;
	char *a = NULL;
	bool ok = idn2_to_ascii_8z(out, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) == IDN2_OK &&
	          strlen(a) < max;
	if (ok)
		snprintf(out, max, "%s", a);
	else
		out[0] = '\0';
	idn2_free(a);
	return ok;
}

/* The number of From fields (name compared as relaxed canonicalization
 * would: case-insensitive, whitespace before the colon ignored). */
static size_t from_fields(const char *h, size_t n)
{
	size_t count = 0;
	for (size_t pos = 0; pos < n;) {
		const char *lf = memchr(h + pos, '\n', n - pos);
		size_t end = lf ? (size_t)(lf - h) + 1 : n;
		if (end - pos <= 2 && (h[pos] == '\r' || h[pos] == '\n'))
			break; /* the empty line */
		if (h[pos] != ' ' && h[pos] != '\t') {
			size_t k = pos;
			while (k < end && h[k] != ':')
				k++;
			size_t e = k;
			while (e > pos && (h[e - 1] == ' ' || h[e - 1] == '\t'))
				e--;
			if (k < end && e - pos == 4 && strncasecmp(h + pos, "from", 4) == 0)
				count++;
		}
		pos = end;
	}
	return count;
}

enum msgcheck_from msgcheck_author_domain(const char *hdr, size_t hlen, char *out, size_t max)
{
	out[0] = '\0';
	size_t nfrom = from_fields(hdr, hlen);
	if (nfrom == 0)
		return MSGCHECK_FROM_NONE;
	struct buf v = BUF_INIT;
	buf_init(&v, hlen + 16);
	struct mime_addr_list l = {0};
	enum msgcheck_from st = nfrom > 1 ? MSGCHECK_FROM_MANY : MSGCHECK_FROM_ONE;
	/* the whole value, however long: a cut one could hide its author */
	if (!smtp_header_get(hdr, hlen, "From", &v, hlen + 1)) {
		buf_free(&v);
		return nfrom > 1 ? MSGCHECK_FROM_MANY : MSGCHECK_FROM_NONE;
	}
	if (mime_addr_list_parse(v.data, v.len, &l) == MIME_ADDR_OK && l.n > 0) {
		for (size_t i = 0; i < l.n; i++) {
			char d[256];
			if (l.v[i].domain == NULL ||
			    !put_domain(l.v[i].domain, strlen(l.v[i].domain), d,
			        sizeof d < max ? sizeof d : max))
				continue;
			if (out[0] == '\0')
				snprintf(out, max, "%s", d);
			else if (strcmp(out, d) != 0 && st == MSGCHECK_FROM_ONE)
				st = MSGCHECK_FROM_DOMAINS;
		}
		if (out[0] == '\0' && st == MSGCHECK_FROM_ONE)
			st = MSGCHECK_FROM_NONE; /* an empty group: no author named */
	} else {
		/* A From the grammar refuses still names its author to a reader,
		 * so DMARC must not be skipped (a forger would only have to break
		 * the syntax): the domain after the last "@", as OpenDMARC does
		 * for "Mail From:<a@b>", "<<<><a@b>>>" or an unquoted comma. */
		const char *p = v.data ? v.data : "";
		const char *at = NULL;
		for (size_t i = 0; i < v.len; i++)
			if (p[i] == '@')
				at = p + i;
		if (at != NULL) {
			size_t n = 0;
			while (at + 1 + n < p + v.len &&
			       (isalnum((unsigned char)at[1 + n]) || at[1 + n] == '-' ||
			           at[1 + n] == '.' || at[1 + n] == '_'))
				n++;
			put_domain(at + 1, n, out, max);
		}
		if (out[0] == '\0' && st == MSGCHECK_FROM_ONE)
			st = MSGCHECK_FROM_NONE;
	}
	mime_addr_list_free(&l);
	buf_free(&v);
	return st;
}

static void ask_dmarc(struct msgcheck *mc, const char *domain)
{
	struct query *q = &mc->dm[mc->ndm++];
	q->mc = mc;
	snprintf(q->name, sizeof q->name, "_dmarc.%s", domain);
	mc->pending++;
	q->req = dns_query(mc->dns, q->name, DNS_TXT, dmarc_answer, q);
}

void msgcheck_header(struct msgcheck *mc, const char *hdr, size_t hlen)
{
	if (mc->have_header)
		return;
	mc->have_header = true;
	if (mc->want_dkim) {
		mc->dkim = dkim_verify_new(hdr, hlen, mc->now);
		for (size_t i = 0; mc->dkim && i < dkim_verify_count(mc->dkim); i++) {
			const char *name = dkim_verify_key_name(mc->dkim, i);
			if (name == NULL)
				continue;
			if (mc->dns == NULL) {
				dkim_verify_key_answer(mc->dkim, i, DKIM_DNS_TEMP, NULL, NULL, 0);
				continue;
			}
			struct query *q = &mc->keys[i];
			q->mc = mc;
			q->sig = i;
			mc->pending++;
			q->req = dns_query(mc->dns, name, DNS_TXT, key_answer, q);
		}
	}
	mc->from_status = msgcheck_author_domain(hdr, hlen, mc->from, sizeof mc->from);
	if (mc->want_dmarc && mc->from[0] && mc->dns != NULL) {
		struct buf org = BUF_INIT;
		buf_init(&org, 512);
		dmarc_org_domain(mc->psl, mc->from, &org);
		ask_dmarc(mc, mc->from);
		if (!buf_err(&org) && org.len > 0 && strcasecmp(buf_cstr(&org), mc->from) != 0)
			ask_dmarc(mc, buf_cstr(&org));
		buf_free(&org);
	}
}

void msgcheck_body(struct msgcheck *mc, const char *p, size_t n)
{
	if (mc->dkim)
		dkim_verify_body(mc->dkim, p, n);
}

bool msgcheck_end(struct msgcheck *mc, msgcheck_cb cb, void *arg)
{
	if (mc->dkim)
		dkim_verify_body_end(mc->dkim);
	mc->ended = true;
	if (mc->pending == 0)
		return true;
	mc->cb = cb;
	mc->cb_arg = arg;
	return false;
}

/* dmarc_evaluate's DNS: from the answers fetched up front. */
static enum dmarc_txt dmarc_txt(
    void *arg, const char *name, const char *const **txt, const size_t **lens, size_t *n)
{
	struct msgcheck *mc = arg;
	static __thread const char *v[DNS_MAX_RECORDS];
	static __thread size_t l[DNS_MAX_RECORDS];
	*n = 0;
	for (size_t k = 0; k < mc->ndm; k++) {
		const struct dns_answer *a = mc->dm[k].ans;
		if (strcasecmp(mc->dm[k].name, name) != 0)
			continue;
		if (a == NULL || a->status == DNS_TEMPFAIL)
			return DMARC_TXT_TEMP;
		if (a->status != DNS_OK)
			return DMARC_TXT_NONE;
		for (size_t i = 0; i < a->n && *n < DNS_MAX_RECORDS; i++) {
			v[*n] = a->txt[i].data;
			l[(*n)++] = a->txt[i].len;
		}
		*txt = v;
		*lens = l;
		return *n ? DMARC_TXT_OK : DMARC_TXT_NONE;
	}
	return DMARC_TXT_TEMP; /* not fetched (no resolver) */
}

void msgcheck_finish(
    struct msgcheck *mc, const struct msgcheck_spf *spf, const struct msgcheck_policy *pol)
{
	mc->finished = true;
	mc->action = MSGCHECK_DELIVER;
	mc->disposition = "none";
	snprintf(mc->why, sizeof mc->why, "no policy applies");
	if (mc->want_dmarc && mc->from[0]) {
		struct dmarc_dkim dk[DKIM_SIGS_MAX];
		size_t nd = 0;
		for (size_t i = 0; i < msgcheck_ndkim(mc); i++) {
			const struct dkim_sig_result *r = msgcheck_dkim(mc, i);
			if (r->d[0])
				dk[nd++] = (struct dmarc_dkim){r->d, r->result == DKIM_PASS};
		}
		struct dmarc_input in = {
		    .from_domain = mc->from,
		    .mail_from_domain = spf && spf->domain ? spf->domain : "",
		    .spf_pass = spf && spf->checked && spf->result == SPF_PASS,
		    .dkim = dk,
		    .ndkim = nd,
		};
		dmarc_evaluate(mc->psl, &in, dmarc_txt, mc, &mc->verdict);
		mc->evaluated = true;
		struct dmarc_verdict *vd = &mc->verdict;
		/* A fail that an identifier we could not check might have turned
		 * into a pass is not a fail (RFC 7489 6.6.2: temporary errors):
		 * an aligned signature whose key could not be fetched, or SPF in
		 * temperror (or not checked) for an aligned MAIL FROM domain. */
		bool unknown = false;
		for (size_t i = 0; vd->result == DMARC_RESULT_FAIL && i < msgcheck_ndkim(mc); i++) {
			const struct dkim_sig_result *r = msgcheck_dkim(mc, i);
			unknown |= r->result == DKIM_TEMPERROR && r->d[0] &&
			           dmarc_aligned(mc->psl, r->d, mc->from, vd->rec.adkim_strict);
		}
		bool spf_unknown = spf == NULL || !spf->checked || spf->result == SPF_TEMPERROR;
		if (vd->result == DMARC_RESULT_FAIL && spf_unknown && in.mail_from_domain[0] &&
		    dmarc_aligned(mc->psl, in.mail_from_domain, mc->from, vd->rec.aspf_strict))
			unknown = true;
		if (unknown)
			vd->result = DMARC_RESULT_TEMPERROR;
	}
	if ((mc->from_status == MSGCHECK_FROM_MANY || mc->from_status == MSGCHECK_FROM_DOMAINS) &&
	    mc->want_dmarc) {
		/* RFC 5322 3.6: one From; RFC 7489 6.6.1: several authors would
		 * each need their policy, and a forger hides behind the first.
		 * (No From at all names no author to impersonate: no DMARC.) */
		mc->action = MSGCHECK_REFUSE;
		snprintf(mc->why, sizeof mc->why, "%s",
		    mc->from_status == MSGCHECK_FROM_MANY ? "it has more than one From field"
		                                          : "its From field names authors of "
		                                            "different domains");
		mc->disposition = "reject";
		return;
	}
	const struct dmarc_verdict *v = mc->evaluated ? &mc->verdict : NULL;
	if (v && v->result == DMARC_RESULT_FAIL && v->have_policy && v->policy != DMARC_NONE) {
		enum dmarc_policy p = v->policy;
		/* pct (RFC 7489 6.6.4): outside the sample, the next milder policy */
		if (v->rec.pct < 100 && random_below(100) >= v->rec.pct)
			p = p == DMARC_REJECT ? DMARC_QUARANTINE : DMARC_NONE;
		if (p == DMARC_REJECT) {
			mc->action = pol->dmarc_reject;
			snprintf(mc->why, sizeof mc->why, "DMARC policy of %s is reject",
			    v->record_domain);
		} else if (p == DMARC_QUARANTINE) {
			mc->action = pol->dmarc_quarantine;
			snprintf(mc->why, sizeof mc->why, "DMARC policy of %s is quarantine",
			    v->record_domain);
		} else {
			snprintf(mc->why, sizeof mc->why, "DMARC policy of %s (pct=%u) says none",
			    v->record_domain, v->rec.pct);
		}
	} else if (v == NULL || (!v->have_policy && v->result != DMARC_RESULT_TEMPERROR)) {
		if (spf && spf->checked && spf->result == SPF_FAIL) {
			mc->action = pol->spf_fail;
			snprintf(mc->why, sizeof mc->why,
			    "SPF fail for %s, which has no DMARC policy",
			    spf->domain ? spf->domain : "the sender");
		}
	}
	mc->disposition = mc->action == MSGCHECK_REFUSE ? "reject"
	                  : mc->action == MSGCHECK_JUNK ? "quarantine"
	                                                : "none";
}

size_t msgcheck_ndkim(const struct msgcheck *mc)
{
	return mc->dkim ? dkim_verify_count(mc->dkim) : 0;
}

const struct dkim_sig_result *msgcheck_dkim(const struct msgcheck *mc, size_t i)
{
	return dkim_verify_result(mc->dkim, i);
}

const char *msgcheck_from_domain(const struct msgcheck *mc)
{
	return mc->from;
}

const struct dmarc_verdict *msgcheck_dmarc(const struct msgcheck *mc)
{
	return mc->evaluated ? &mc->verdict : NULL;
}

enum msgcheck_action msgcheck_action(const struct msgcheck *mc)
{
	return mc->action;
}

const char *msgcheck_why(const struct msgcheck *mc)
{
	return mc->why;
}

const char *msgcheck_disposition(const struct msgcheck *mc)
{
	return mc->disposition;
}

enum msgcheck_action msgcheck_action_named(const char *name)
{
	return strcmp(name, "refuse") == 0 ? MSGCHECK_REFUSE
	       : strcmp(name, "junk") == 0 ? MSGCHECK_JUNK
	                                   : MSGCHECK_DELIVER;
}

void msgcheck_spf_of(
    struct msgcheck_spf *sp, const struct spf_eval *e, const char *mail_from, const char *helo)
{
	*sp = (struct msgcheck_spf){0};
	bool h = e ? strcmp(spf_eval_identity(e), "helo") == 0 : !mail_from[0];
	sp->helo = h;
	sp->value = h ? helo : mail_from;
	const char *at = strrchr(mail_from, '@');
	sp->domain = h ? helo : at ? at + 1 : "";
	if (e != NULL) {
		sp->checked = true;
		sp->result = spf_eval_result(e);
		sp->reason = spf_eval_reason(e);
	}
}

/* ";\r\n\tspf=RESULT (reason) smtp.mailfrom=VALUE", if SPF was checked */
static void put_spf(struct buf *out, const struct msgcheck_spf *spf)
{
	if (spf == NULL || !spf->checked)
		return;
	buf_printf(out, ";\r\n\tspf=%s (", spf_result_name(spf->result));
	smtp_header_put_comment(out, spf->reason ? spf->reason : "", 200);
	buf_printf(out, ") smtp.%s=", spf->helo ? "helo" : "mailfrom");
	smtp_header_put_word(out, spf->value ? spf->value : "", 320);
}

void msgcheck_spf_results(const char *authserv_id, const struct msgcheck_spf *spf, struct buf *out)
{
	buf_printf(out, "Authentication-Results: %s", authserv_id);
	put_spf(out, spf);
	buf_puts(out, "\r\n");
}

void msgcheck_auth_results(const struct msgcheck *mc, const char *authserv_id,
    const struct msgcheck_spf *spf, struct buf *out)
{
	buf_printf(out, "Authentication-Results: %s", authserv_id);
	put_spf(out, spf);
	if (mc->want_dkim && msgcheck_ndkim(mc) == 0)
		buf_puts(out, ";\r\n\tdkim=none (no signature)");
	for (size_t i = 0; i < msgcheck_ndkim(mc); i++) {
		const struct dkim_sig_result *r = msgcheck_dkim(mc, i);
		buf_printf(out, ";\r\n\tdkim=%s (", dkim_result_name(r->result));
		smtp_header_put_comment(out, r->reason, 160);
		if (r->testing)
			buf_puts(out, ", key in test mode");
		buf_puts(out, ")");
		if (r->d[0]) {
			buf_puts(out, " header.d=");
			smtp_header_put_word(out, r->d, 253);
			buf_puts(out, " header.i=");
			smtp_header_put_word(out, r->i, 320);
			buf_puts(out, " header.s=");
			smtp_header_put_word(out, r->s, 253);
			if (r->a[0])
				buf_printf(out, " header.a=%s", r->a);
			if (r->b_prefix[0]) {
				buf_puts(out, " header.b=");
				smtp_header_put_word(out, r->b_prefix, 8);
			}
		}
	}
	const struct dmarc_verdict *v = msgcheck_dmarc(mc);
	if (v != NULL) {
		buf_printf(out, ";\r\n\tdmarc=%s", dmarc_result_name(v->result));
		if (v->have_policy)
			buf_printf(
			    out, " (p=%s dis=%s)", dmarc_policy_name(v->policy), mc->disposition);
		buf_puts(out, " header.from=");
		smtp_header_put_word(out, mc->from, 253);
	}
	if (!(spf && spf->checked) && msgcheck_ndkim(mc) == 0 && !mc->want_dkim && v == NULL)
		buf_puts(out, "; none");
	buf_puts(out, "\r\n");
}

void msgcheck_dkim_summary(const struct msgcheck *mc, struct buf *out)
{
	for (size_t i = 0; i < msgcheck_ndkim(mc); i++) {
		const struct dkim_sig_result *r = msgcheck_dkim(mc, i);
		buf_printf(
		    out, "%sd=%s s=%s %s", i ? "; " : "", r->d, r->s, dkim_result_name(r->result));
	}
}

void msgcheck_free(struct msgcheck *mc)
{
	if (mc == NULL)
		return;
	for (size_t i = 0; i < DKIM_SIGS_MAX; i++)
		dns_cancel(mc->keys[i].req);
	for (size_t k = 0; k < mc->ndm; k++) {
		dns_cancel(mc->dm[k].req);
		dns_answer_free(mc->dm[k].ans);
	}
	dkim_verify_free(mc->dkim);
	free(mc);
}
