/*
 * dkim_driver.c - verifies and signs messages for the DKIM harness
 * (dkim_vectors.py) and the cross-checks with dkimpy. Input lines
 * (tab-separated, "-" is empty):
 *   D NAME HEX         a TXT record at NAME (several at one name allowed)
 *   X                  forget the TXT records
 *   V HEX NOW          verify the message HEX at time NOW: prints the number
 *                      of signatures, then "result<TAB>d<TAB>reason" for
 *                      each, top-down, all on one line separated by "|"
 *   S HEX D SEL:PEM[,SEL:PEM] NOW
 *                      sign the message with those keys (PEM files): prints
 *                      the DKIM-Signature fields, hex, or "error why"
 * Names without a record answer NXDOMAIN; a value "TEMP" a temporary error.
 */
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/dkim.h"
#include "driver_hex.h"

#define TXT_MAX 64
static char *txt_name[TXT_MAX], *txt_val[TXT_MAX];
static size_t txt_len[TXT_MAX], ntxt;

static void verify(const struct buf *m, long long now)
{
	size_t off = dkim_body_offset(m->data ? m->data : "", m->len);
	struct dkim_verify *v = dkim_verify_new(m->data ? m->data : "", off, now);
	/* the body in small pieces, to cross chunk boundaries */
	for (size_t p = off; p < m->len; p += 7)
		dkim_verify_body(v, m->data + p, m->len - p < 7 ? m->len - p : 7);
	dkim_verify_body_end(v);
	for (size_t i = 0; i < dkim_verify_count(v); i++) {
		const char *name = dkim_verify_key_name(v, i);
		if (name == NULL)
			continue;
		const char *vals[TXT_MAX];
		size_t lens[TXT_MAX], n = 0;
		enum dkim_dns st = DKIM_DNS_NONE;
		for (size_t k = 0; k < ntxt; k++)
			if (strcasecmp(txt_name[k], name) == 0) {
				if (strcmp(txt_val[k], "TEMP") == 0) {
					st = DKIM_DNS_TEMP;
					break;
				}
				vals[n] = txt_val[k];
				lens[n++] = txt_len[k];
				st = DKIM_DNS_OK;
			}
		dkim_verify_key_answer(v, i, st, vals, lens, n);
	}
	printf("%zu", dkim_verify_count(v));
	for (size_t i = 0; i < dkim_verify_count(v); i++) {
		const struct dkim_sig_result *r = dkim_verify_result(v, i);
		printf(
		    "%s%s\t%s\t%s", i ? "|" : "\t", dkim_result_name(r->result), r->d, r->reason);
	}
	printf("\n");
	dkim_verify_free(v);
}

static void sign(const struct buf *m, const char *d, char *keys, long long now)
{
	struct dkim_sign_key k[DKIM_SIGS_MAX];
	size_t n = 0;
	char *save = NULL;
	for (char *t = strtok_r(keys, ",", &save); t && n < DKIM_SIGS_MAX;
	     t = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(t, ':');
		if (colon == NULL)
			break;
		*colon = '\0';
		FILE *f = fopen(colon + 1, "r");
		EVP_PKEY *pk = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
		if (f)
			fclose(f);
		if (pk == NULL) {
			printf("error cannot read key %s\n", colon + 1);
			return;
		}
		k[n++] = (struct dkim_sign_key){t, pk};
	}
	struct dkim_signer *s = dkim_signer_new(d, k, n, now);
	struct buf out = BUF_INIT, why = BUF_INIT;
	if (s == NULL) {
		printf("error bad signer\n");
	} else {
		size_t off = dkim_body_offset(m->data ? m->data : "", m->len);
		for (size_t p = off; p < m->len; p += 5)
			dkim_signer_body(s, m->data + p, m->len - p < 5 ? m->len - p : 5);
		if (dkim_signer_finish(s, m->data ? m->data : "", off, &out, &why)) {
			for (size_t i = 0; i < out.len; i++)
				printf("%02x", (unsigned char)out.data[i]);
			printf("\n");
		} else {
			printf("error %s\n", buf_cstr(&why));
		}
	}
	dkim_signer_free(s);
	for (size_t i = 0; i < n; i++)
		EVP_PKEY_free(k[i].pkey);
	buf_free(&out);
	buf_free(&why);
}

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	struct buf b = BUF_INIT;
	while ((got = getline(&line, &cap, stdin)) > 0) {
		if (line[got - 1] == '\n')
			line[--got] = '\0';
		char *f[5] = {NULL};
		size_t n = 0;
		char *save = NULL;
		for (char *t = strtok_r(line, "\t", &save); t && n < 5;
		     t = strtok_r(NULL, "\t", &save))
			f[n++] = t;
		if (n == 0)
			continue;
		if (strcmp(f[0], "D") == 0 && n == 3 && ntxt < TXT_MAX) {
			driver_unhex(f[2], &b);
			txt_name[ntxt] = strdup(f[1]);
			txt_val[ntxt] = malloc(b.len + 1);
			memcpy(txt_val[ntxt], b.data ? b.data : "", b.len);
			txt_val[ntxt][b.len] = '\0';
			txt_len[ntxt++] = b.len;
		} else if (strcmp(f[0], "X") == 0) {
			for (size_t i = 0; i < ntxt; i++) {
				free(txt_name[i]);
				free(txt_val[i]);
			}
			ntxt = 0;
		} else if (strcmp(f[0], "V") == 0 && n == 3) {
			driver_unhex(f[1], &b);
			verify(&b, atoll(f[2]));
		} else if (strcmp(f[0], "S") == 0 && n == 5) {
			driver_unhex(f[1], &b);
			sign(&b, f[2], f[3], atoll(f[4]));
		} else {
			printf("error bad line\n");
		}
		fflush(stdout);
	}
	for (size_t i = 0; i < ntxt; i++) {
		free(txt_name[i]);
		free(txt_val[i]);
	}
	free(line);
	buf_free(&b);
	return 0;
}
