/*
 * dmarc_driver.c - feeds DMARC vectors to the pure DMARC functions; the
 * harness (dmarc_vectors.py) sends the vectors of ../shared/conformance/dmarc
 * and compares. Input lines (tab-separated):
 *   P PATH|-           load a Public Suffix List file (- = the system's)
 *   R HEX              parse a record: "ok p sp np adkim aspf fo pct psd t rua ruf",
 *                      or the error word
 *   O DOMAIN           the Organizational Domain
 *   A A B s|r          "aligned" or "not-aligned"
 *   X                  forget the TXT records
 *   D NAME HEX         a TXT record at NAME (e.g. _dmarc.example.com)
 *   F HEX              the author domain of a From field value (msgcheck's
 *                      extraction): the domain, or "-"
 *   E FROM MAILFROM "SPF DKIM"
 *                      evaluate: SPF pass or another word; DKIM "d:pass,d:fail" or
 *                      "-"; prints "spf_aligned dkim_aligned result policy|absent"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/dmarc.h"
#include "auth/msgcheck.h"
#include "driver_hex.h"

#define TXT_MAX 64
static char *txt_name[TXT_MAX], *txt_val[TXT_MAX];
static size_t txt_len[TXT_MAX], ntxt;

static enum dmarc_txt lookup(
    void *arg, const char *name, const char *const **v, const size_t **lens, size_t *n)
{
	(void)arg;
	static const char *found[TXT_MAX];
	static size_t flen[TXT_MAX];
	*n = 0;
	for (size_t i = 0; i < ntxt; i++)
		if (strcasecmp(txt_name[i], name) == 0) {
			found[*n] = txt_val[i];
			flen[(*n)++] = txt_len[i];
		}
	*v = found;
	*lens = flen;
	return *n ? DMARC_TXT_OK : DMARC_TXT_NONE;
}

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	struct dmarc_psl *psl = NULL;
	struct buf b = BUF_INIT, why = BUF_INIT, out = BUF_INIT;
	while ((got = getline(&line, &cap, stdin)) > 0) {
		if (line[got - 1] == '\n')
			line[--got] = '\0';
		char *f[4] = {NULL};
		size_t n = 0;
		char *save = NULL;
		for (char *t = strtok_r(line, "\t", &save); t && n < 4;
		     t = strtok_r(NULL, "\t", &save))
			f[n++] = t;
		if (n == 0)
			continue;
		if (strcmp(f[0], "P") == 0 && n == 2) {
			dmarc_psl_free(psl);
			psl = dmarc_psl_load(strcmp(f[1], "-") == 0 ? NULL : f[1]);
			if (psl == NULL) {
				fprintf(stderr, "cannot load the PSL %s\n", f[1]);
				return 2;
			}
		} else if (strcmp(f[0], "R") == 0 && n == 2) {
			driver_unhex(f[1], &b);
			struct dmarc_record r;
			buf_reset(&why);
			enum dmarc_parse e =
			    dmarc_record_parse(b.data ? b.data : "", b.len, &r, &why);
			if (e != DMARC_OK) {
				printf("%s\n", dmarc_parse_name(e));
				continue;
			}
			printf("ok\t%s\t%s\t%s\t%c\t%c\t%s\t%u\t%c\t%s\t", dmarc_policy_name(r.p),
			    dmarc_policy_name(r.sp), dmarc_policy_name(r.np),
			    r.adkim_strict ? 's' : 'r', r.aspf_strict ? 's' : 'r', r.fo, r.pct,
			    r.psd, r.t ? "y" : "n");
			for (size_t i = 0; i < r.nrua; i++)
				printf("%s%s", i ? "," : "", r.rua[i]);
			printf("\t");
			for (size_t i = 0; i < r.nruf; i++)
				printf("%s%s", i ? "," : "", r.ruf[i]);
			printf("\n");
		} else if (strcmp(f[0], "F") == 0 && n == 2) {
			driver_unhex(f[1], &b);
			struct buf h = BUF_INIT;
			buf_printf(&h, "From: %s\r\nSubject: x\r\n\r\n", buf_cstr(&b));
			char d[256];
			msgcheck_author_domain(h.data, h.len, d, sizeof d);
			printf("%s\n", d[0] ? d : "-");
			buf_free(&h);
		} else if (strcmp(f[0], "O") == 0 && n == 2) {
			dmarc_org_domain(psl, f[1], &out);
			printf("%s\n", buf_cstr(&out));
		} else if (strcmp(f[0], "X") == 0) {
			for (size_t i = 0; i < ntxt; i++) {
				free(txt_name[i]);
				free(txt_val[i]);
			}
			ntxt = 0;
		} else if (strcmp(f[0], "D") == 0 && n == 3 && ntxt < TXT_MAX) {
			driver_unhex(f[2], &b);
			txt_name[ntxt] = strdup(f[1]);
			txt_val[ntxt] = strndup(b.data ? b.data : "", b.len);
			txt_len[ntxt++] = b.len;
		} else if (strcmp(f[0], "E") == 0 && n == 4) {
			char *spf = f[3], *dk = strchr(f[3], ' ');
			if (dk)
				*dk++ = '\0';
			struct dmarc_dkim sig[16];
			size_t ns = 0;
			char *save2 = NULL;
			for (char *t = dk && strcmp(dk, "-") != 0 ? strtok_r(dk, ",", &save2)
			                                          : NULL;
			     t && ns < 16; t = strtok_r(NULL, ",", &save2)) {
				char *c = strrchr(t, ':');
				if (c)
					*c++ = '\0';
				sig[ns++] = (struct dmarc_dkim){t, c && strcmp(c, "pass") == 0};
			}
			struct dmarc_input in = {f[1], strcmp(f[2], "-") == 0 ? "" : f[2],
			    strcmp(spf, "pass") == 0, sig, ns};
			struct dmarc_verdict vd;
			dmarc_evaluate(psl, &in, lookup, NULL, &vd);
			printf("%s\t%s\t%s\t%s\n", dmarc_align_name(vd.spf),
			    dmarc_align_name(vd.dkim), dmarc_result_name(vd.result),
			    vd.have_policy ? dmarc_policy_name(vd.policy) : "absent");
		} else if (strcmp(f[0], "A") == 0 && n == 4) {
			printf("%s\n", dmarc_aligned(psl, f[1], f[2], f[3][0] == 's')
			                   ? "aligned"
			                   : "not-aligned");
		} else {
			fprintf(stderr, "bad line\n");
			return 2;
		}
		fflush(stdout);
	}
	free(line);
	buf_free(&b);
	buf_free(&why);
	buf_free(&out);
	dmarc_psl_free(psl);
	return 0;
}
