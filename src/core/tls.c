/*
 * tls.c - server TLS for the listeners (see tls.h), OpenSSL 3.
 *
 * Two kinds of SSL_CTX, so that a reload changes the certificate but not
 * the sessions clients may resume:
 *
 *  - the session context, built by tls_server_new() and kept until
 *    tls_server_free(). Every SSL is created from it (SSL_new), and OpenSSL
 *    reads the session-id cache, the session id context and the session-ticket
 *    keys from s->session_ctx, which SSL_set_SSL_CTX() never changes. So a
 *    session id or ticket that a client got before a SIGHUP still resumes
 *    after it, in a later connection, on any worker thread.
 *  - the certificate context: the current certificate chain and key. The
 *    first one is the session context itself; tls_server_reload() builds a
 *    new one from the files and swaps it in under mu. tls_server_ssl() moves
 *    each new SSL onto the current one with SSL_set_SSL_CTX() (as SNI does),
 *    which gives the SSL that context's certificate, chain and key. An SSL
 *    holds a reference to its contexts, so a reload never disturbs a live
 *    connection; the old certificate context is freed with its last SSL.
 *
 * Every context gets the same policy (ctx_new_with_policy), so whichever of
 * the two OpenSSL consults for a setting gives the same answer.
 *
 * Security: private keys are read with a passphrase callback that refuses
 * (never a prompt on the terminal); the key must match the certificate; no
 * file content reaches an error message, only names and OpenSSL's reasons.
 * Session tickets are encrypted with keys OpenSSL generates per session
 * context: they live as long as the process (restart to rotate them).
 */
#include "core/tls.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/log.h"

#define TLS_FILE_MAX ((size_t)1024 * 1024) /* a PEM chain or key is a few KB */
#define TLS_SESSION_TIMEOUT 3600L          /* seconds; sessions and tickets (as Postfix) */
#define TLS_SID_CTX "dakiya"

struct tls_server {
	char *cert_file;
	char *key_file;
	SSL_CTX *session_ctx; /* owns sessions and ticket keys; never replaced */
	pthread_mutex_t mu;   /* guards cur */
	SSL_CTX *cur;         /* the current certificate context (a reference) */
};

/* ------------------------------------------------------------- helpers */

/* Append "(openssl: REASON)" for the oldest queued OpenSSL error, and clear
 * the queue, so one failure never leaks into the next call's message. */
static void put_ssl_reason(struct buf *err)
{
	unsigned long e = ERR_peek_error();
	if (e != 0) {
		const char *r = ERR_reason_error_string(e);
		if (r != NULL)
			buf_printf(err, " (openssl: %s)", r);
		else
			buf_printf(err, " (openssl error %lx)", e);
	}
	ERR_clear_error();
}

/* Read a whole regular file (at most TLS_FILE_MAX bytes) into out. */
static int read_small_file(const char *path, const char *option, struct buf *out, struct buf *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		buf_printf(err, "cannot read %s: %s; check %s in the configuration", path,
		    strerror(errno), option);
		return -1;
	}
	struct stat sb;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		buf_printf(
		    err, "%s is not a regular file; check %s in the configuration", path, option);
		close(fd);
		return -1;
	}
	if ((size_t)sb.st_size > TLS_FILE_MAX) {
		buf_printf(err,
		    "%s is larger than %zu bytes, too large for a PEM file; check %s "
		    "in the configuration",
		    path, TLS_FILE_MAX, option);
		close(fd);
		return -1;
	}
	buf_reset(out);
	for (;;) {
		char *p = buf_reserve(out, 4096);
		if (p == NULL) {
			buf_printf(err, "out of memory reading %s", path);
			close(fd);
			return -1;
		}
		ssize_t n = read(fd, p, 4096);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			buf_printf(err, "cannot read %s: %s; check %s in the configuration", path,
			    strerror(errno), option);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		out->data[out->len] = '\0';
		if (out->len > TLS_FILE_MAX) {
			buf_printf(err, "%s grew past %zu bytes while being read; check %s", path,
			    TLS_FILE_MAX, option);
			close(fd);
			return -1;
		}
	}
	close(fd);
	return 0;
}

/* A fresh server context with dakiya's policy and no certificate. */
static SSL_CTX *ctx_new_with_policy(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		return NULL;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_session_id_context(
	        ctx, (const unsigned char *)TLS_SID_CTX, sizeof TLS_SID_CTX - 1) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	/*
	 * IGNORE_UNEXPECTED_EOF: mail clients often close TCP without a
	 * close_notify. SMTP, IMAP and POP3 carry their own end markers (a
	 * message is committed only after "<CRLF>.<CRLF>"), so a truncation
	 * cannot pass for a complete command; without this option OpenSSL 3
	 * reports such an EOF as a protocol error, libevent 2.1 as
	 * BEV_EVENT_ERROR, and the session cannot tell a plain hang-up from an
	 * attack in its logs.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                             SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
	/* idle connections (thousands of them) give their I/O buffers back */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_timeout(ctx, TLS_SESSION_TIMEOUT);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

/* pem_password_cb: an encrypted key is an error, never a terminal prompt. */
static int refuse_passphrase(char *buf, int size, int rwflag, void *u)
{
	*(bool *)u = true;
	return -1;
}

/* Parse the chain and the key, check that they belong together, and put
 * them into ctx. */
static int ctx_load_files(
    SSL_CTX *ctx, const char *cert_file, const char *key_file, struct buf *err)
{
	int rc = -1;
	struct buf pem = BUF_INIT;
	BIO *bio = NULL;
	X509 *leaf = NULL;
	EVP_PKEY *pkey = NULL;

	ERR_clear_error();
	if (read_small_file(cert_file, "tls.cert", &pem, err) != 0)
		goto out;
	bio = BIO_new_mem_buf(pem.data, (int)pem.len);
	if (bio == NULL) {
		buf_printf(err, "out of memory reading %s", cert_file);
		goto out;
	}
	leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
	if (leaf == NULL) {
		buf_printf(err,
		    "%s holds no PEM certificate (-----BEGIN CERTIFICATE-----); check "
		    "tls.cert in the configuration: it must be the certificate chain, "
		    "server certificate first",
		    cert_file);
		put_ssl_reason(err);
		goto out;
	}
	if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
		buf_printf(err, "cannot use the certificate in %s", cert_file);
		put_ssl_reason(err);
		buf_puts(err, "; check tls.cert in the configuration");
		goto out;
	}
	SSL_CTX_clear_chain_certs(ctx);
	for (int n = 2;; n++) {
		X509 *ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		if (ca == NULL) {
			unsigned long e = ERR_peek_last_error();
			if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
			    ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
				ERR_clear_error(); /* the normal end of the file */
				break;
			}
			buf_printf(err, "certificate %d in %s cannot be parsed", n, cert_file);
			put_ssl_reason(err);
			buf_puts(err, "; check tls.cert in the configuration");
			goto out;
		}
		if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
			X509_free(ca);
			buf_printf(err, "cannot use certificate %d in %s as part of the chain", n,
			    cert_file);
			put_ssl_reason(err);
			goto out;
		}
	}
	BIO_free(bio);
	bio = NULL;

	if (read_small_file(key_file, "tls.key", &pem, err) != 0)
		goto out;
	bio = BIO_new_mem_buf(pem.data, (int)pem.len);
	if (bio == NULL) {
		buf_printf(err, "out of memory reading %s", key_file);
		goto out;
	}
	bool encrypted = false;
	pkey = PEM_read_bio_PrivateKey(bio, NULL, refuse_passphrase, &encrypted);
	if (pkey == NULL) {
		if (encrypted) {
			buf_printf(err,
			    "%s is protected by a passphrase, which a server cannot "
			    "type; write an unencrypted copy (openssl pkey -in %s -out "
			    "NEW.pem, mode 0600) and point tls.key at it",
			    key_file, key_file);
			ERR_clear_error();
		} else {
			buf_printf(err, "%s holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
			    key_file);
			put_ssl_reason(err);
			buf_puts(err, "; check tls.key in the configuration");
		}
		goto out;
	}
	if (X509_check_private_key(leaf, pkey) != 1) {
		ERR_clear_error();
		buf_printf(err,
		    "the key in %s does not match the certificate in %s; tls.cert and "
		    "tls.key must belong together (with certbot: fullchain.pem and "
		    "privkey.pem from the same live/ directory)",
		    key_file, cert_file);
		goto out;
	}
	if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		buf_printf(err, "cannot use the key in %s", key_file);
		put_ssl_reason(err);
		buf_puts(err, "; check tls.key in the configuration");
		goto out;
	}
	rc = 0;
out:
	BIO_free(bio);
	X509_free(leaf);
	EVP_PKEY_free(pkey);
	if (pem.data != NULL)
		OPENSSL_cleanse(pem.data, pem.alloc); /* the key's bytes */
	buf_free(&pem);
	return rc;
}

/* A certificate context for the files, or NULL with err. */
static SSL_CTX *ctx_build(const char *cert_file, const char *key_file, struct buf *err)
{
	SSL_CTX *ctx = ctx_new_with_policy();
	if (ctx == NULL) {
		buf_puts(err, "cannot create a TLS context");
		put_ssl_reason(err);
		return NULL;
	}
	if (ctx_load_files(ctx, cert_file, key_file, err) != 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* -------------------------------------------------------------- server */

struct tls_server *tls_server_new(const char *cert_file, const char *key_file, struct buf *err)
{
	if (cert_file == NULL || cert_file[0] == '\0' || key_file == NULL || key_file[0] == '\0') {
		buf_puts(err, "no TLS certificate configured; set tls.cert and tls.key in the "
		              "configuration");
		return NULL;
	}
	struct tls_server *t = calloc(1, sizeof *t);
	if (t == NULL) {
		buf_puts(err, "out of memory");
		return NULL;
	}
	t->cert_file = strdup(cert_file);
	t->key_file = strdup(key_file);
	if (t->cert_file == NULL || t->key_file == NULL) {
		buf_puts(err, "out of memory");
		goto fail;
	}
	t->session_ctx = ctx_build(cert_file, key_file, err);
	if (t->session_ctx == NULL)
		goto fail;
	if (pthread_mutex_init(&t->mu, NULL) != 0) {
		buf_puts(err, "cannot create a mutex");
		goto fail;
	}
	SSL_CTX_up_ref(t->session_ctx);
	t->cur = t->session_ctx;
	return t;
fail:
	SSL_CTX_free(t->session_ctx);
	free(t->cert_file);
	free(t->key_file);
	free(t);
	return NULL;
}

void tls_server_free(struct tls_server *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->cur);
	SSL_CTX_free(t->session_ctx);
	pthread_mutex_destroy(&t->mu);
	free(t->cert_file);
	free(t->key_file);
	free(t);
}

int tls_server_reload(struct tls_server *t, struct buf *err)
{
	SSL_CTX *fresh = ctx_build(t->cert_file, t->key_file, err); /* no lock: slow file I/O */
	if (fresh == NULL)
		return -1;
	pthread_mutex_lock(&t->mu);
	SSL_CTX *old = t->cur;
	t->cur = fresh;
	pthread_mutex_unlock(&t->mu);
	SSL_CTX_free(old); /* live connections hold their own references */
	return 0;
}

SSL *tls_server_ssl(struct tls_server *t)
{
	SSL *ssl = SSL_new(t->session_ctx);
	if (ssl == NULL) {
		ERR_clear_error();
		return NULL;
	}
	pthread_mutex_lock(&t->mu);
	SSL_CTX *cur = t->cur;
	SSL_CTX_up_ref(cur);
	pthread_mutex_unlock(&t->mu);
	SSL_CTX *set = SSL_set_SSL_CTX(ssl, cur);
	SSL_CTX_free(cur);
	if (set != cur) {
		ERR_clear_error();
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

void tls_shutdown(SSL *ssl)
{
	if (ssl == NULL || !SSL_is_init_finished(ssl))
		return;
	ERR_set_mark();
	(void)SSL_shutdown(ssl); /* may not get through; the flag below is what matters */
	SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
	ERR_pop_to_mark();
}

void tls_server_cert_info(struct tls_server *t, struct buf *out)
{
	pthread_mutex_lock(&t->mu);
	SSL_CTX *cur = t->cur;
	SSL_CTX_up_ref(cur);
	pthread_mutex_unlock(&t->mu);

	buf_puts(out, "cert=");
	log_escape(out, t->cert_file, strlen(t->cert_file), 4096);
	X509 *x = SSL_CTX_get0_certificate(cur);
	if (x != NULL) {
		char subject[256];
		if (X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject) == NULL)
			subject[0] = '\0';
		buf_puts(out, " subject=");
		log_escape(out, subject, strlen(subject), sizeof subject);
		int days = 0, secs = 0;
		if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) == 1)
			buf_printf(out, " expires_in_days=%d", days);
	}
	SSL_CTX_free(cur);
}

/* ------------------------------------------------------------ describe */

void tls_describe(SSL *ssl, struct buf *out)
{
	const SSL_CIPHER *c = ssl != NULL ? SSL_get_current_cipher(ssl) : NULL;
	if (c == NULL) {
		buf_puts(out, "version=none cipher=none bits=0 resumed=no");
		return;
	}
	int alg_bits = 0;
	int bits = SSL_CIPHER_get_bits(c, &alg_bits);
	buf_printf(out, "version=%s cipher=%s bits=%d resumed=%s", SSL_get_version(ssl),
	    SSL_CIPHER_get_name(c), bits, SSL_session_reused(ssl) ? "yes" : "no");
}

void tls_received_comment(SSL *ssl, struct buf *out)
{
	const SSL_CIPHER *c = ssl != NULL ? SSL_get_current_cipher(ssl) : NULL;
	if (c == NULL) {
		buf_puts(out, "version=none");
		return;
	}
	const char *v;
	switch (SSL_version(ssl)) {
	case TLS1_3_VERSION:
		v = "TLS1_3";
		break;
	case TLS1_2_VERSION:
		v = "TLS1_2";
		break;
	default: /* not reachable with our policy; say so rather than guess */
		v = "unknown";
		break;
	}
	int alg_bits = 0;
	int bits = SSL_CIPHER_get_bits(c, &alg_bits);
	buf_printf(
	    out, "version=%s cipher=%s bits=%d/%d", v, SSL_CIPHER_get_name(c), bits, alg_bits);
}

/* --------------------------------------------------------- self-signed */

/* A DNS host name: labels of letters, digits and '-', 1..63 bytes each,
 * 253 in total. (It goes into a certificate, so nothing else may pass.) */
static bool valid_dns_name(const char *h)
{
	size_t n = strlen(h), label = 0;
	if (n == 0 || n > 253)
		return false;
	for (const char *p = h; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!isalnum(ch) && ch != '-')
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Write the contents of a memory BIO to a new file with exactly mode. */
static int write_new_pem(const char *path, mode_t mode, BIO *mem, struct buf *err)
{
	char *data = NULL;
	long n = BIO_get_mem_data(mem, &data);
	if (n <= 0 || data == NULL) {
		buf_printf(err, "cannot encode %s", path);
		put_ssl_reason(err);
		return -1;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0) {
		buf_printf(err, "cannot create %s: %s; %s", path, strerror(errno),
		    errno == EEXIST ? "it is never overwritten: remove it or choose another name"
		                    : "check that its directory exists and is writable");
		return -1;
	}
	if (fchmod(fd, mode) != 0 || write_all(fd, data, (size_t)n) != 0 || fsync(fd) != 0) {
		buf_printf(err, "cannot write %s: %s; check the disk", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	if (close(fd) != 0) {
		buf_printf(err, "cannot write %s: %s; check the disk", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

/* Add one extension given in openssl.cnf syntax (constant strings only). */
static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, v3, nid, value);
	if (ext == NULL)
		return -1;
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

/* subjectAltName = DNS:host, built as a structure: host never passes
 * through the openssl.cnf parser, where a comma would add names. */
static int add_san(X509 *x, const char *host)
{
	int rc = -1;
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	if (gens == NULL || gn == NULL || ia5 == NULL || ASN1_STRING_set(ia5, host, -1) != 1) {
		ASN1_IA5STRING_free(ia5);
		GENERAL_NAME_free(gn);
		goto out;
	}
	GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
	if (sk_GENERAL_NAME_push(gens, gn) <= 0) {
		GENERAL_NAME_free(gn);
		goto out;
	}
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1)
		rc = 0;
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

/* A signed self-signed certificate for key, or NULL. */
static X509 *make_cert(const char *host, EVP_PKEY *key, unsigned days)
{
	X509 *x = X509_new();
	BIGNUM *bn = NULL;
	unsigned char serial[16];
	if (x == NULL || X509_set_version(x, X509_VERSION_3) != 1)
		goto fail;
	/* a random positive 127-bit serial (CA/B forum: at least 64 random bits) */
	if (RAND_bytes(serial, sizeof serial) != 1)
		goto fail;
	serial[0] &= 0x7f;
	serial[sizeof serial - 1] |= 0x01; /* never zero */
	bn = BN_bin2bn(serial, sizeof serial, NULL);
	if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
		goto fail;
	/* not backdated: notAfter - notBefore stays within the 825 days that Apple
	 * clients accept */
	if (X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) == NULL)
		goto fail;
	X509_NAME *name = X509_get_subject_name(x);
	/* CN is limited to 64 bytes; clients match on the SAN anyway */
	if (strlen(host) <= 64)
		X509_NAME_add_entry_by_txt(
		    name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0);
	else
		X509_NAME_add_entry_by_txt(
		    name, "O", MBSTRING_ASC, (const unsigned char *)"dakiya", -1, -1, 0);
	if (X509_NAME_entry_count(name) != 1 || X509_set_issuer_name(x, name) != 1 ||
	    X509_set_pubkey(x, key) != 1)
		goto fail;
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	if (add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
	    add_ext(x, &v3, NID_key_usage, "critical,digitalSignature,keyEncipherment") != 0 ||
	    add_ext(x, &v3, NID_ext_key_usage, "serverAuth") != 0 ||
	    add_ext(x, &v3, NID_subject_key_identifier, "hash") != 0 || add_san(x, host) != 0)
		goto fail;
	if (X509_sign(x, key, EVP_sha256()) <= 0)
		goto fail;
	BN_free(bn);
	return x;
fail:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

int tls_make_self_signed(const char *hostname, const char *cert_file, const char *key_file,
    unsigned days, struct buf *err)
{
	int rc = -1;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	BIO *kmem = NULL, *cmem = NULL;
	bool key_written = false;

	ERR_clear_error();
	if (!valid_dns_name(hostname)) {
		buf_printf(err,
		    "'%s' is not a DNS host name; a certificate needs one like "
		    "mail.example.com",
		    hostname);
		return -1;
	}
	if (days == 0 || days > 36500) {
		buf_printf(
		    err, "a certificate valid for %u days makes no sense; use 1 to 36500", days);
		return -1;
	}
	struct stat sb;
	const char *exists = lstat(key_file, &sb) == 0    ? key_file
	                     : lstat(cert_file, &sb) == 0 ? cert_file
	                                                  : NULL;
	if (exists != NULL) {
		buf_printf(err,
		    "%s already exists and is never overwritten; remove it (and its "
		    "partner) to make a new certificate, or use the existing one",
		    exists);
		return -1;
	}

	key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (key == NULL) {
		buf_puts(err, "cannot generate an RSA key");
		put_ssl_reason(err);
		goto out;
	}
	x = make_cert(hostname, key, days);
	if (x == NULL) {
		buf_printf(err, "cannot make a certificate for %s", hostname);
		put_ssl_reason(err);
		goto out;
	}
	kmem = BIO_new(BIO_s_secmem()); /* cleared when freed */
	cmem = BIO_new(BIO_s_mem());
	if (kmem == NULL || cmem == NULL ||
	    PEM_write_bio_PrivateKey(kmem, key, NULL, NULL, 0, NULL, NULL) != 1 ||
	    PEM_write_bio_X509(cmem, x) != 1) {
		buf_puts(err, "cannot encode the key and certificate as PEM");
		put_ssl_reason(err);
		goto out;
	}
	if (write_new_pem(key_file, 0600, kmem, err) != 0)
		goto out;
	key_written = true;
	if (write_new_pem(cert_file, 0644, cmem, err) != 0)
		goto out;
	rc = 0;
out:
	if (rc != 0 && key_written)
		unlink(key_file); /* never leave a key without its certificate */
	BIO_free(kmem);
	BIO_free(cmem);
	X509_free(x);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

/* -------------------------------------------------------------- client */

struct tls_client {
	SSL_CTX *ctx;
};

struct tls_client *tls_client_new(struct buf *err)
{
	struct tls_client *t = calloc(1, sizeof *t);
	if (t == NULL) {
		buf_puts(err, "out of memory");
		return NULL;
	}
	ERR_clear_error();
	t->ctx = SSL_CTX_new(TLS_client_method());
	if (t->ctx == NULL || SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION) != 1) {
		buf_puts(err, "cannot create a TLS client context");
		put_ssl_reason(err);
		SSL_CTX_free(t->ctx);
		free(t);
		return NULL;
	}
	/* IGNORE_UNEXPECTED_EOF: see ctx_new_with_policy; SMTP frames its own data */
	SSL_CTX_set_options(
	    t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
	/* Opportunistic: verify for the record, never abort the handshake. A
	 * missing CA store only makes every peer "not verified". */
	if (SSL_CTX_set_default_verify_paths(t->ctx) != 1)
		ERR_clear_error();
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
	return t;
}

void tls_client_free(struct tls_client *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

SSL *tls_client_ssl(struct tls_client *t, const char *host)
{
	SSL *ssl = SSL_new(t->ctx);
	if (ssl == NULL) {
		ERR_clear_error();
		return NULL;
	}
	if (host != NULL && host[0] != '\0' && valid_dns_name(host)) {
		/* SNI and the name the verification result is about */
		if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1) {
			ERR_clear_error();
			SSL_free(ssl);
			return NULL;
		}
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	}
	return ssl;
}

/* Copy at most n - 1 bytes of s into out (NUL-terminated). */
static void copy_str(char *out, size_t n, const char *s, size_t len)
{
	if (len >= n)
		len = n - 1;
	memcpy(out, s, len);
	out[len] = '\0';
}

void tls_client_peer(SSL *ssl, struct tls_peer *out)
{
	memset(out, 0, sizeof *out);
	const SSL_CIPHER *c = ssl != NULL ? SSL_get_current_cipher(ssl) : NULL;
	if (c == NULL || !SSL_is_init_finished(ssl))
		return;
	const char *v = SSL_get_version(ssl);
	copy_str(out->version, sizeof out->version, v, strlen(v));
	const char *cn = SSL_CIPHER_get_name(c);
	copy_str(out->cipher, sizeof out->cipher, cn, strlen(cn));
	int alg_bits = 0;
	out->bits = SSL_CIPHER_get_bits(c, &alg_bits);

	X509 *x = SSL_get0_peer_certificate(ssl);
	if (x == NULL) {
		copy_str(out->verify_error, sizeof out->verify_error, "no peer certificate", 19);
		return;
	}
	long vr = SSL_get_verify_result(ssl);
	out->verified = vr == X509_V_OK;
	if (!out->verified) {
		const char *e = X509_verify_cert_error_string(vr);
		copy_str(out->verify_error, sizeof out->verify_error, e, strlen(e));
	}
	char name[256];
	int n = X509_NAME_get_text_by_NID(
	    X509_get_subject_name(x), NID_commonName, name, (int)sizeof name);
	if (n > 0) {
		copy_str(out->name, sizeof out->name, name, (size_t)n);
		return;
	}
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == GEN_DNS) {
			const ASN1_IA5STRING *s = g->d.dNSName;
			copy_str(out->name, sizeof out->name,
			    (const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
			break;
		}
	}
	GENERAL_NAMES_free(gens);
	ERR_clear_error();
}
