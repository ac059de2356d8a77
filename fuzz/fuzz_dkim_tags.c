/*
 * fuzz_dkim_tags.c - libFuzzer target for DKIM's record parsers (dkim.h):
 * the tag-list parser, the DKIM-Signature parser and the key record
 * parser, all three over every input.
 *
 * Invariants: every parse gives the same answer twice; a tag list has at
 * most max tags, distinct names of ALPHA *(ALNUM/"_"), and each value
 * inside its region, both inside the input; a failure says why. A parsed
 * signature has a lower-case d= (with i= within it), a From in h=, b= and
 * bh= of sizes that fit, x= not before t=; a parsed key is either revoked
 * with no key or holds a key of its type and of an accepted size. Any
 * violation aborts.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "auth/dkim.h"

#include "fuzz_check.h"

static void tags(const char *p, size_t n, size_t max)
{
	struct dkim_tag t[DKIM_TAGS_MAX], t2[DKIM_TAGS_MAX];
	size_t nt = 0, nt2 = 0;
	struct buf why = BUF_INIT;
	bool ok = dkim_tags_parse(p, n, t, max, &nt, &why);
	bool ok2 = dkim_tags_parse(p, n, t2, max, &nt2, &why);
	CHECK(ok == ok2);
	if (!ok) {
		CHECK(why.len > 0);
		buf_free(&why);
		return;
	}
	CHECK(nt == nt2 && nt <= max);
	CHECK(memcmp(t, t2, nt * sizeof *t) == 0);
	for (size_t i = 0; i < nt; i++) {
		CHECK(t[i].nlen > 0 && t[i].name >= p && t[i].name + t[i].nlen <= p + n);
		CHECK(isalpha((unsigned char)t[i].name[0]));
		for (size_t k = 0; k < t[i].nlen; k++)
			CHECK(isalnum((unsigned char)t[i].name[k]) || t[i].name[k] == '_');
		CHECK(t[i].vstart <= t[i].vend && t[i].vend <= n);
		CHECK(t[i].name + t[i].nlen <= p + t[i].vstart);
		CHECK(p[t[i].vstart - 1] == '=');
		CHECK(t[i].vend == n || p[t[i].vend] == ';');
		CHECK(t[i].val >= p + t[i].vstart && t[i].val + t[i].vlen <= p + t[i].vend);
		for (size_t k = 0; k < t[i].vlen; k++) {
			unsigned char c = (unsigned char)t[i].val[k];
			CHECK(c != ';' && (c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
			                      (c >= 0x21 && c <= 0x7e)));
		}
		if (t[i].vlen > 0) {
			CHECK(t[i].val[0] != ' ' && t[i].val[0] != '\t');
			CHECK(t[i].val[t[i].vlen - 1] != ' ' && t[i].val[t[i].vlen - 1] != '\t');
		}
		for (size_t j = 0; j < i; j++)
			CHECK(
			    t[j].nlen != t[i].nlen || memcmp(t[j].name, t[i].name, t[i].nlen) != 0);
		if (i > 0)
			CHECK(t[i - 1].vend < t[i].vstart);
	}
	buf_free(&why);
}

static void sig(const char *p, size_t n)
{
	struct dkim_sig s, s2;
	struct buf why = BUF_INIT, why2 = BUF_INIT;
	bool ok = dkim_sig_parse(p, n, &s, &why);
	bool ok2 = dkim_sig_parse(p, n, &s2, &why2);
	CHECK(ok == ok2);
	CHECK(memcmp(&s, &s2, sizeof s) == 0);
	CHECK(why.len == why2.len && memcmp(buf_cstr(&why), buf_cstr(&why2), why.len) == 0);
	CHECK(strnlen(s.d, sizeof s.d) < sizeof s.d && strnlen(s.s, sizeof s.s) < sizeof s.s);
	CHECK(strnlen(s.i, sizeof s.i) < sizeof s.i);
	CHECK(strnlen(s.b_prefix, sizeof s.b_prefix) < sizeof s.b_prefix);
	if (!ok) {
		CHECK(why.len > 0);
	} else {
		CHECK(s.alg == DKIM_RSA_SHA256 || s.alg == DKIM_ED25519_SHA256 ||
		      s.alg == DKIM_RSA_SHA1);
		CHECK(s.d[0] != '\0' && s.s[0] != '\0');
		for (const char *c = s.d; *c; c++)
			CHECK(!isupper((unsigned char)*c));
		const char *at = strchr(s.i, '@');
		CHECK(at != NULL);
		size_t ld = strlen(s.d), la = strlen(at + 1);
		CHECK(la >= ld && strcasecmp(at + 1 + la - ld, s.d) == 0);
		CHECK(la == ld || at[la - ld] == '.');
		CHECK(s.nh >= 1 && s.nh <= DKIM_H_MAX);
		bool from = false;
		for (size_t i = 0; i < s.nh; i++) {
			CHECK(s.h[i][0] != '\0' && strnlen(s.h[i], sizeof s.h[i]) < sizeof s.h[i]);
			from |= strcasecmp(s.h[i], "from") == 0;
		}
		CHECK(from);
		CHECK(s.blen > 0 && s.blen <= sizeof s.b);
		CHECK(s.bhlen > 0 && s.bhlen <= sizeof s.bh);
		CHECK(!(s.has_t && s.has_x) || s.x >= s.t);
		CHECK(!s.has_t || s.t >= 0);
		CHECK(!s.has_x || s.x >= 0);
	}
	buf_free(&why);
	buf_free(&why2);
}

static void key(const char *p, size_t n)
{
	struct dkim_key k;
	struct buf why = BUF_INIT;
	bool ok = dkim_key_parse(p, n, &k, &why);
	if (!ok) {
		CHECK(why.len > 0);
		CHECK(k.pkey == NULL); /* nothing left to leak */
	} else {
		CHECK(k.revoked == (k.pkey == NULL));
		if (!k.revoked) {
			const char *type = dkim_key_type(k.pkey);
			CHECK(type != NULL && strcmp(type, k.ed25519 ? "ed25519" : "rsa") == 0);
			CHECK(k.ed25519 ? k.bits == 256 : (k.bits >= 1024 && k.bits <= 8192));
			struct buf rec = BUF_INIT;
			CHECK(dkim_key_record(k.pkey, &rec)); /* and it parses back */
			struct dkim_key k2;
			CHECK(dkim_key_parse(rec.data, rec.len, &k2, &why));
			CHECK(k2.ed25519 == k.ed25519 && k2.bits == k.bits);
			dkim_key_free(&k2);
			buf_free(&rec);
		}
	}
	dkim_key_free(&k);
	buf_free(&why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	tags(p, size, DKIM_TAGS_MAX);
	tags(p, size, 3); /* the limit on the number of tags */
	sig(p, size);
	key(p, size);
	return 0;
}
