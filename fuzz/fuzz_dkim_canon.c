/*
 * fuzz_dkim_canon.c - libFuzzer target for DKIM canonicalization and the
 * verifier (dkim.h).
 *
 * The first byte is control, the rest the input:
 *   - header canonicalization, simple and relaxed, of the input as one
 *     field: simple keeps the bytes (less trailing CR/LF) and adds CRLF;
 *     relaxed ends in CRLF, has no other LF, no run of WSP, no WSP next
 *     to the colon or before the CRLF, no upper case in the name, and is
 *     stable when canonicalized again;
 *   - body canonicalization, simple and relaxed: the output is the same
 *     whether the input comes at once, a byte at a time or in pieces
 *     whose sizes come from the control byte; it ends in CRLF (or is
 *     empty, relaxed only), never in an empty line, and canonicalizing it
 *     again changes nothing;
 *   - the verifier on the input as a message (a fixed DKIM-Signature may
 *     be put on top, by the control byte), the body in pieces, every key
 *     name answered (before or after the body) with one of a few fixed
 *     records: real keys that signed nothing here, a revoked one, bad
 *     ones, no record, a temporary failure. Every signature must end
 *     with a valid result that is never "pass" (nothing here can be
 *     signed by those keys).
 * Any violation aborts.
 */
#include <openssl/evp.h>
#include <string.h>

#include "auth/dkim.h"

#include "fuzz_check.h"

static struct buf rsa_rec = BUF_INIT, ed_rec = BUF_INIT;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	EVP_PKEY *rsa = dkim_keygen(false), *ed = dkim_keygen(true);
	CHECK(rsa != NULL && ed != NULL);
	CHECK(dkim_key_record(rsa, &rsa_rec) && dkim_key_record(ed, &ed_rec));
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ed);
	return 0;
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static void header(const char *p, size_t n)
{
	struct buf s = BUF_INIT, r = BUF_INIT, rr = BUF_INIT;
	dkim_canon_header(false, p, n, &s);
	size_t m = n;
	while (m > 0 && (p[m - 1] == '\r' || p[m - 1] == '\n'))
		m--;
	CHECK(s.len == m + 2 && memcmp(s.data, p, m) == 0);
	CHECK(memcmp(s.data + m, "\r\n", 2) == 0);

	dkim_canon_header(true, p, n, &r);
	CHECK(r.len >= 3 && memcmp(r.data + r.len - 2, "\r\n", 2) == 0);
	const char *colon = memchr(r.data, ':', r.len);
	CHECK(colon != NULL);
	size_t c = (size_t)(colon - r.data);
	CHECK(c == 0 || !is_wsp(r.data[c - 1]));
	CHECK(c + 1 == r.len - 2 || !is_wsp(r.data[c + 1]));
	for (size_t i = c + 1; i + 2 < r.len; i++) {
		CHECK(r.data[i] != '\n' && r.data[i] != '\t');
		CHECK(!(r.data[i] == ' ' && r.data[i + 1] == ' '));
		CHECK(!(r.data[i] == '\r' && r.data[i + 1] == '\n'));
	}
	CHECK(r.len == c + 3 || !is_wsp(r.data[r.len - 3]));
	for (size_t i = 0; i < c; i++)
		CHECK(r.data[i] < 'A' || r.data[i] > 'Z');
	/* stable, unless the value ends in a bare CR, which the second pass
	 * takes for part of the line end */
	if (r.data[r.len - 3] != '\r') {
		dkim_canon_header(true, r.data, r.len, &rr);
		CHECK(rr.len == r.len && memcmp(rr.data, r.data, r.len) == 0);
	}
	buf_free(&s);
	buf_free(&r);
	buf_free(&rr);
}

static void collect(void *arg, const char *p, size_t n)
{
	CHECK(n > 0);
	buf_append(arg, p, n);
}

/* The canonical body of p in pieces: step 0 at once, else the sizes cycle
 * through sizes[]. */
static void canon(
    bool relaxed, const char *p, size_t n, const size_t *sizes, size_t nsizes, struct buf *out)
{
	struct dkim_body_canon c;
	dkim_body_canon_init(&c, relaxed);
	for (size_t pos = 0, k = 0; pos < n; k++) {
		size_t take = nsizes ? sizes[k % nsizes] : n;
		if (take > n - pos)
			take = n - pos;
		dkim_body_canon_feed(&c, p + pos, take, collect, out);
		pos += take;
	}
	dkim_body_canon_end(&c, collect, out);
	CHECK(!buf_err(out));
}

static void body(bool relaxed, const char *p, size_t n, unsigned ctl)
{
	static const size_t one[] = {1};
	size_t sizes[3] = {(ctl & 7) + 1, ((ctl >> 3) & 3) + 1, 509};
	struct buf whole = BUF_INIT, bytes = BUF_INIT, pieces = BUF_INIT, again = BUF_INIT;
	canon(relaxed, p, n, NULL, 0, &whole);
	canon(relaxed, p, n, one, 1, &bytes);
	canon(relaxed, p, n, sizes, 3, &pieces);
	CHECK(whole.len == bytes.len && memcmp(buf_cstr(&whole), buf_cstr(&bytes), whole.len) == 0);
	CHECK(
	    whole.len == pieces.len && memcmp(buf_cstr(&whole), buf_cstr(&pieces), whole.len) == 0);
	if (!relaxed)
		CHECK(whole.len >= 2);
	if (whole.len > 0) {
		CHECK(whole.len >= 2 && memcmp(whole.data + whole.len - 2, "\r\n", 2) == 0);
		CHECK(whole.len == 2 || whole.data[whole.len - 3] != '\n');
		CHECK(!relaxed || whole.len > 2);
	}
	for (size_t i = 0; i < whole.len; i++) {
		char ch = whole.data[i];
		CHECK(ch != '\n' || (i > 0 && whole.data[i - 1] == '\r')); /* LF only in CRLF */
		if (relaxed && ch == ' ') { /* one SP, never at the end of a line */
			CHECK(i + 2 < whole.len && whole.data[i + 1] != ' ');
			CHECK(whole.data[i + 1] != '\r' || whole.data[i + 2] != '\n');
		}
		CHECK(!relaxed || ch != '\t');
	}
	canon(relaxed, buf_cstr(&whole), whole.len, NULL, 0, &again);
	CHECK(again.len == whole.len && memcmp(buf_cstr(&again), buf_cstr(&whole), whole.len) == 0);
	buf_free(&whole);
	buf_free(&bytes);
	buf_free(&pieces);
	buf_free(&again);
}

#define BH "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
static const char *const fixed_sig[] = {
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=rsa;\r\n"
    "\th=from:to:subject:from; bh=" BH ";\r\n\tb=dGVzdA==\r\n",
    "DKIM-Signature: v=1; a=ed25519-sha256; c=simple/simple; d=example.com; s=ed;\r\n"
    "\th=from; l=10; t=1; x=2000000000; i=@sub.example.com; bh=" BH ";\r\n"
    "\tb=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"
    "Pw==\r\n",
};

static void verify(const char *p, size_t n, unsigned ctl)
{
	struct buf msg = BUF_INIT;
	if (ctl & 1)
		buf_puts(&msg, fixed_sig[(ctl >> 1) & 1]);
	buf_append(&msg, p, n);
	const char *m = buf_cstr(&msg);
	size_t off = dkim_body_offset(m, msg.len);
	CHECK(off <= msg.len);
	struct dkim_verify *v = dkim_verify_new(m, off, 1700000000);
	CHECK(v != NULL);
	size_t count = dkim_verify_count(v);
	CHECK(count <= DKIM_SIGS_MAX);
	bool keys_first = ctl & 4;
	size_t step = ((ctl >> 3) & 7) * 3 + 1;
	for (int pass = 0; pass < 2; pass++) {
		if ((pass == 0) == keys_first) {
			for (size_t i = 0; i < count; i++) {
				const char *name = dkim_verify_key_name(v, i);
				if (name == NULL)
					continue;
				CHECK(strstr(name, "._domainkey.") != NULL);
				const char *txt[2];
				size_t len[2], nt = 0;
				enum dkim_dns st = DKIM_DNS_OK;
				switch ((ctl + i + strlen(name)) % 8) {
				case 0:
					txt[nt++] = rsa_rec.data;
					break;
				case 1:
					txt[nt++] = ed_rec.data;
					break;
				case 2:
					txt[nt++] = "v=DKIM1; p=";
					break;
				case 3:
					txt[nt++] = "v=DKIM1; k=ed25519; p=AAAA";
					txt[nt++] = ed_rec.data;
					break;
				case 4:
					txt[nt++] = "v=DKIM1; t=s:y; h=sha1; p=MIGfMA0G";
					break;
				case 5:
					st = DKIM_DNS_NONE;
					break;
				case 6:
					st = DKIM_DNS_TEMP;
					break;
				default:
					txt[nt++] = rsa_rec.data;
					txt[nt++] = "v=DKIM1; k=rsa; t=s; p=";
					break;
				}
				for (size_t k = 0; k < nt; k++)
					len[k] = strlen(txt[k]);
				dkim_verify_key_answer(v, i, st, txt, len, nt);
				CHECK(dkim_verify_key_name(v, i) == NULL);
			}
		} else {
			for (size_t pos = off; pos < msg.len; pos += step)
				dkim_verify_body(
				    v, m + pos, msg.len - pos < step ? msg.len - pos : step);
			CHECK(!dkim_verify_done(v));
			dkim_verify_body_end(v);
		}
	}
	CHECK(dkim_verify_done(v));
	for (size_t i = 0; i < count; i++) {
		const struct dkim_sig_result *r = dkim_verify_result(v, i);
		CHECK(r->result >= DKIM_NONE && r->result <= DKIM_PERMERROR);
		CHECK(r->result != DKIM_PASS && r->result != DKIM_NONE);
		CHECK(strnlen(r->reason, sizeof r->reason) < sizeof r->reason && r->reason[0]);
		CHECK(strnlen(r->d, sizeof r->d) < sizeof r->d);
		CHECK(strnlen(r->i, sizeof r->i) < sizeof r->i);
		CHECK(strnlen(r->a, sizeof r->a) < sizeof r->a);
		CHECK(strnlen(r->b_prefix, sizeof r->b_prefix) < sizeof r->b_prefix);
		CHECK(dkim_verify_result(v, i) == r);
	}
	dkim_verify_free(v);
	buf_free(&msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	unsigned ctl = data[0];
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	header(p, n);
	body(false, p, n, ctl);
	body(true, p, n, ctl);
	verify(p, n, ctl);
	return 0;
}
