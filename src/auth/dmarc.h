/*
 * dmarc.h - DMARC (RFC 7489), the pure parts: the policy record, the
 * Organizational Domain (Public Suffix List, libpsl) and identifier
 * alignment. Record discovery, the policy decision and reporting build on
 * these (issue 5).
 *
 * Record syntax (RFC 7489 6.3, 6.4): "v=DMARC1" first and exactly; tags
 * separated by ";" with optional whitespace; p/sp (and RFC 9989's np) none,
 * quarantine or reject; adkim/aspf r or s; pct 0-100; ri seconds; fo a
 * ":"-list of 0 1 d s; rf a ":"-list of afrf; rua/ruf ","-lists of URIs
 * with an optional "!size" (the mailto: ones are kept); unknown tags are
 * ignored. A record without a valid p= but with a valid mailto: rua= acts
 * as p=none (6.6.3); without either it is no policy.
 */
#ifndef DAKIYA_DMARC_H
#define DAKIYA_DMARC_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

enum dmarc_policy {
	DMARC_NONE = 0,
	DMARC_QUARANTINE,
	DMARC_REJECT,
};
const char *dmarc_policy_name(enum dmarc_policy p); /* "none", "quarantine", "reject" */

enum dmarc_parse {
	DMARC_OK = 0,
	DMARC_ERR_EMPTY,     /* no record text */
	DMARC_ERR_VERSION,   /* not "v=DMARC1" first */
	DMARC_ERR_VALUE,     /* a known tag with a bad value */
	DMARC_ERR_NO_POLICY, /* no valid p= and no mailto: rua= to fall back on */
};
/* "ok", "error-empty", "error-bad-version", "error-bad-value", "error-no-required-p" */
const char *dmarc_parse_name(enum dmarc_parse e);

#define DMARC_URIS_MAX 8 /* report addresses kept per list */
#define DMARC_ADDR_MAX 254

struct dmarc_record {
	enum dmarc_policy p, sp, np; /* sp defaults to p, np to sp */
	bool p_implied;              /* p= was missing or invalid: p=none by 6.6.3 */
	bool adkim_strict, aspf_strict;
	unsigned pct; /* 0-100, default 100 */
	unsigned ri;  /* default 86400 */
	char fo[8];   /* canonical order, e.g. "0", "1", "d:s"; default "0" */
	char psd;     /* RFC 9989: 'y', 'n' or 'u' (default) */
	bool t;       /* RFC 9989 testing flag */
	size_t nrua, nruf;
	char rua[DMARC_URIS_MAX][DMARC_ADDR_MAX + 1]; /* mailto: addresses */
	char ruf[DMARC_URIS_MAX][DMARC_ADDR_MAX + 1];
};

/* Parse a TXT record. On an error *r is zeroed and why says what (for
 * logs); pure. */
enum dmarc_parse dmarc_record_parse(
    const char *txt, size_t len, struct dmarc_record *r, struct buf *why);

/* ---- Organizational Domain and alignment ---- */

struct dmarc_psl;
/* The Public Suffix List: the system's (Debian publicsuffix, through libpsl)
 * when path is NULL, else that file. NULL if it cannot be loaded. */
struct dmarc_psl *dmarc_psl_load(const char *path);
void dmarc_psl_free(struct dmarc_psl *p);
/* The Organizational Domain of domain (RFC 7489 3.2: the public suffix and
 * one more label; the domain itself when it is a public suffix or shorter),
 * lower case, without leading or trailing dots, into out. */
void dmarc_org_domain(const struct dmarc_psl *p, const char *domain, struct buf *out);
/* Are two domains aligned (RFC 7489 3.1): strict, the same name; relaxed,
 * the same Organizational Domain? Case and outer dots do not count. */
bool dmarc_aligned(const struct dmarc_psl *p, const char *a, const char *b, bool strict);

/* ---- the evaluation (RFC 7489 6.6) ---- */

/* How the evaluation asks for the TXT records of a name: DMARC_TXT_OK with
 * n strings in txt (valid during the call that asked), DMARC_TXT_NONE (no
 * such name or no TXT), DMARC_TXT_TEMP (DNS trouble). */
enum dmarc_txt { DMARC_TXT_OK, DMARC_TXT_NONE, DMARC_TXT_TEMP };
typedef enum dmarc_txt (*dmarc_txt_fn)(
    void *arg, const char *name, const char *const **txt, const size_t **lens, size_t *n);

enum dmarc_align { DMARC_ALIGN_NONE, DMARC_ALIGN_PASS, DMARC_ALIGN_FAIL };
/* "none" (no passing identifier), "pass" (passed and aligned), "fail" (passed, not aligned) */
const char *dmarc_align_name(enum dmarc_align a);

enum dmarc_result {
	DMARC_RESULT_NONE,
	DMARC_RESULT_PASS,
	DMARC_RESULT_FAIL,
	DMARC_RESULT_TEMPERROR
};
const char *dmarc_result_name(enum dmarc_result r); /* "none" "pass" "fail" "temperror" */

struct dmarc_dkim {
	const char *d; /* the signature's d= */
	bool pass;     /* it verified */
};

struct dmarc_input {
	const char *from_domain;      /* RFC5322.From domain */
	const char *mail_from_domain; /* RFC5321.MailFrom domain ("" for <>: SPF's HELO domain) */
	bool spf_pass;
	const struct dmarc_dkim *dkim;
	size_t ndkim;
};

struct dmarc_verdict {
	enum dmarc_result result;
	enum dmarc_align spf, dkim;
	bool have_policy;         /* a record applies */
	enum dmarc_policy policy; /* p, or sp when the record is the Organizational Domain's */
	struct dmarc_record rec;  /* the record that applies */
	char record_domain[256];  /* where it was found */
	char org_domain[256];
};

/* Record discovery (_dmarc.<From domain>, then _dmarc.<its Organizational
 * Domain>: more than one DMARC record at a name counts as none), identifier
 * alignment, the result and the policy that applies. */
void dmarc_evaluate(const struct dmarc_psl *psl, const struct dmarc_input *in, dmarc_txt_fn txt,
    void *arg, struct dmarc_verdict *out);

#endif
