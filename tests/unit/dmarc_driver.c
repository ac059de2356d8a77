/*
 * dmarc_driver.c - feeds DMARC vectors to the pure DMARC functions; the
 * harness (dmarc_vectors.py) sends the vectors of ../shared/conformance/dmarc
 * and compares. Input lines (tab-separated):
 *   P PATH|-           load a Public Suffix List file (- = the system's)
 *   R HEX              parse a record: "ok p sp np adkim aspf fo pct psd t rua ruf" or the error
 * word O DOMAIN           the Organizational Domain A A B s|r          "aligned" or "not-aligned"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dmarc.h"
#include "driver_hex.h"

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
		} else if (strcmp(f[0], "O") == 0 && n == 2) {
			dmarc_org_domain(psl, f[1], &out);
			printf("%s\n", buf_cstr(&out));
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
