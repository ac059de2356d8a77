/*
 * dkim.h - DomainKeys Identified Mail (RFC 6376), with RFC 8301 (no
 * rsa-sha1, RSA keys of at least 1024 bits) and RFC 8463 (ed25519-sha256):
 * verifying the signatures of received mail and signing what our users
 * send.
 *
 * Everything here is pure apart from OpenSSL's arithmetic: no I/O. The
 * verifier takes the header section at once and the body in pieces, and
 * asks for one key record per signature (dkim_verify_key_name), which the
 * caller looks up (asynchronously, in the MX) and hands back
 * (dkim_verify_key_answer). Results are known once every key has been
 * answered and the body has ended, in either order, so that key lookups
 * run while the body is still arriving.
 *
 * Input is mail in SMTP form: CRLF line ends. Header fields are taken as
 * they are (RFC 5322 folding); the body canonicalizers work a byte at a
 * time and keep no line in memory, so a body of any size costs constant
 * memory.
 *
 * Limits (STYLE.md 7): DKIM_SIGS_MAX signatures are checked per message
 * (the ones above are counted, not checked); DKIM_HEADERS_MAX fields per
 * header section; an h= of at most DKIM_H_MAX names; signatures of at
 * most 1024 bytes (RSA-8192); keys of at most 8192 bits.
 */
#ifndef DAKIYA_DKIM_H
#define DAKIYA_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef struct evp_pkey_st EVP_PKEY;

/* RFC 8601 2.7.1 result words */
enum dkim_result {
	DKIM_NONE,
	DKIM_PASS,
	DKIM_FAIL,
	DKIM_NEUTRAL,
	DKIM_TEMPERROR,
	DKIM_PERMERROR,
};
const char *dkim_result_name(enum dkim_result r);

enum dkim_alg {
	DKIM_RSA_SHA256,
	DKIM_ED25519_SHA256,
	DKIM_RSA_SHA1, /* recognised to be refused (RFC 8301 3.1) */
};
const char *dkim_alg_name(enum dkim_alg a); /* "rsa-sha256", ... */

#define DKIM_SIGS_MAX 8
#define DKIM_HEADERS_MAX 1000
#define DKIM_H_MAX 64
#define DKIM_TAGS_MAX 32
#define DKIM_SIG_BYTES_MAX 1024
#define DKIM_DOMAIN_MAX 253
#define DKIM_AUID_MAX 512

/* ---- tag lists (RFC 6376 3.2) ---- */

struct dkim_tag {
	const char *name;
	size_t nlen;
	const char *val; /* without the FWS around it; may hold inner FWS */
	size_t vlen;
	size_t vstart, vend; /* offsets of the whole value region: after "=",
	                      * up to the ";" or the end (FWS included) */
};
/* Split a tag list; a duplicate tag name, a name that is not ALPHA
 * *(ALNUM/"_"), a missing "=", a value byte outside 0x21-0x7e (FWS apart)
 * or more than max tags is a syntax error: false, why says which. */
bool dkim_tags_parse(
    const char *p, size_t n, struct dkim_tag *tags, size_t max, size_t *ntags, struct buf *why);

/* ---- signatures (RFC 6376 3.5) ---- */

struct dkim_sig {
	enum dkim_alg alg;
	bool hdr_relaxed, body_relaxed;
	char d[DKIM_DOMAIN_MAX + 1]; /* lower case */
	char s[DKIM_DOMAIN_MAX + 1];
	char i[DKIM_AUID_MAX + 1]; /* the AUID, "@d" when not given */
	bool has_l;
	uint64_t l;
	bool has_t, has_x;
	int64_t t, x;
	size_t nh;
	char h[DKIM_H_MAX][80]; /* signed field names, as listed */
	unsigned char b[DKIM_SIG_BYTES_MAX];
	size_t blen;
	unsigned char bh[64];
	size_t bhlen;
	char b_prefix[9]; /* the first 8 characters of b= (RFC 6008 header.b) */
};
/* Parse a DKIM-Signature value (after the colon). false: permerror, why
 * says why (a missing required tag, v not 1, an unknown a= or c=, i= not
 * in d=, From not signed, x= before t=, ...). An unknown algorithm still
 * fills what it can. */
bool dkim_sig_parse(const char *v, size_t n, struct dkim_sig *sig, struct buf *why);

/* ---- key records (RFC 6376 3.6.1) ---- */

struct dkim_key {
	EVP_PKEY *pkey; /* NULL when revoked (empty p=) */
	bool ed25519;   /* k=ed25519, else rsa */
	bool revoked;
	bool testing;     /* t=y */
	bool strict_auid; /* t=s: i= must be d= exactly */
	bool sha1_ok, sha256_ok;
	unsigned bits;
};
/* Parse a key TXT record. false: permerror (v= other than DKIM1, unknown
 * k=, a service type that excludes email, a p= that is not a key of that
 * type, an RSA key under 1024 bits), why says which. Free with
 * dkim_key_free, also after failure. */
bool dkim_key_parse(const char *txt, size_t n, struct dkim_key *k, struct buf *why);
void dkim_key_free(struct dkim_key *k);

/* ---- canonicalization (RFC 6376 3.4) ---- */

/* One header field as it appears (name, colon, value, folding, the final
 * CRLF optional) into out, canonical, with CRLF. */
void dkim_canon_header(bool relaxed, const char *field, size_t n, struct buf *out);

typedef void (*dkim_emit_fn)(void *arg, const char *p, size_t n);
struct dkim_body_canon {
	bool relaxed;
	bool cr;       /* a CR waits for its LF */
	bool wsp;      /* relaxed: whitespace waits to become one SP */
	bool content;  /* the current line has content */
	bool any;      /* something was emitted */
	uint64_t nl;   /* empty lines held back (they may be trailing) */
	char out[512]; /* emitted bytes not yet passed on */
	size_t nout;
};
void dkim_body_canon_init(struct dkim_body_canon *c, bool relaxed);
void dkim_body_canon_feed(
    struct dkim_body_canon *c, const char *p, size_t n, dkim_emit_fn emit, void *arg);
void dkim_body_canon_end(struct dkim_body_canon *c, dkim_emit_fn emit, void *arg);

/* Where the body of a message starts: after the empty line that ends the
 * header section (CRLF or LF), or n when there is none. */
size_t dkim_body_offset(const char *msg, size_t n);

/* ---- verifying ---- */

struct dkim_sig_result {
	enum dkim_result result;
	char reason[160];
	char d[DKIM_DOMAIN_MAX + 1]; /* "" when the signature could not be parsed */
	char s[DKIM_DOMAIN_MAX + 1];
	char i[DKIM_AUID_MAX + 1];
	char a[16];
	char b_prefix[9];
	bool testing; /* the key says t=y */
};

enum dkim_dns { DKIM_DNS_OK, DKIM_DNS_NONE, DKIM_DNS_TEMP };

struct dkim_verify;
/* The signatures of a message: hdr is its header section (up to the empty
 * line, which may be included); now the time to check x= against. NULL
 * when out of memory. */
struct dkim_verify *dkim_verify_new(const char *hdr, size_t hlen, int64_t now);
/* DKIM-Signature fields found (at most DKIM_SIGS_MAX are checked). */
size_t dkim_verify_count(const struct dkim_verify *v);
/* The TXT name signature i needs ("s._domainkey.d"), or NULL when it
 * needs none (already decided, or answered). */
const char *dkim_verify_key_name(const struct dkim_verify *v, size_t i);
/* The answer to that name: the n TXT records (the first that parses is
 * used). */
void dkim_verify_key_answer(struct dkim_verify *v, size_t i, enum dkim_dns st,
    const char *const *txt, const size_t *lens, size_t n);
/* The body, after the empty line, in any pieces. */
void dkim_verify_body(struct dkim_verify *v, const char *p, size_t n);
void dkim_verify_body_end(struct dkim_verify *v);
/* Every result known: the body ended and every key answered. */
bool dkim_verify_done(const struct dkim_verify *v);
/* Signature i (i < dkim_verify_count, top-down); a key still unanswered
 * counts as temperror. */
const struct dkim_sig_result *dkim_verify_result(const struct dkim_verify *v, size_t i);
void dkim_verify_free(struct dkim_verify *v);

/* ---- signing ---- */

struct dkim_sign_key {
	const char *selector;
	EVP_PKEY *pkey; /* RSA or Ed25519 */
};
struct dkim_signer;
/* Signatures by domain d with each of the n keys (n <= DKIM_SIGS_MAX),
 * relaxed/relaxed, t=now; the signer holds its own reference to each key.
 * NULL on a bad key or out of memory. */
struct dkim_signer *dkim_signer_new(
    const char *d, const struct dkim_sign_key *keys, size_t n, int64_t now);
void dkim_signer_body(struct dkim_signer *s, const char *p, size_t n);
/* With the header section: the DKIM-Signature fields (CRLF ended, folded)
 * appended to out, one per key, the first key's on top. The From field
 * is signed once more than it occurs (no From may be added), and of the
 * usual fields those present. false: no From field, or a crypto failure
 * (why says which). Ends the body. */
bool dkim_signer_finish(
    struct dkim_signer *s, const char *hdr, size_t hlen, struct buf *out, struct buf *why);
void dkim_signer_free(struct dkim_signer *s);

/* ---- keys ---- */

/* A new key: RSA-2048 (ed25519 false) or Ed25519; NULL on failure. */
EVP_PKEY *dkim_keygen(bool ed25519);
/* The key record to publish for pkey: "v=DKIM1; k=rsa; p=..." */
bool dkim_key_record(EVP_PKEY *pkey, struct buf *out);
/* "rsa" or "ed25519" for a private or public key, NULL for other types */
const char *dkim_key_type(EVP_PKEY *pkey);

#endif
