/*
 * test_tls.c - unit tests for src/core/tls.c: self-signed certificates,
 * loading and refusing certificate/key files, reload, and real handshakes in
 * memory (client and server SSL objects joined by a BIO pair): TLS 1.2 and
 * 1.3 accepted, TLS 1.1 refused, resumption in a later connection by session
 * id (TLS 1.2) and by ticket (TLS 1.2 and 1.3), also across a reload.
 *
 * Files go to a fresh directory under /tmp, removed at the end.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/buf.h"
#include "core/tls.h"

static char tmpdir[64];

/* dir/name in a static slot, one of 8 used in turn: copy what must live longer */
static const char *path(const char *name)
{
	static char slots[8][256];
	static unsigned next;
	char *p = slots[next++ % 8];
	int n = snprintf(p, sizeof slots[0], "%s/%s", tmpdir, name);
	assert_true(n > 0 && (size_t)n < sizeof slots[0]);
	return p;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(p);
}

static int group_setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/dakiya-test-tls-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	/* a pair shared by most tests, and a second one for mismatches */
	struct buf err = BUF_INIT;
	if (tls_make_self_signed("mail.a.test", path("a.crt"), path("a.key"), 825, &err) != 0 ||
	    tls_make_self_signed("mail.b.test", path("b.crt"), path("b.key"), 30, &err) != 0) {
		fprintf(stderr, "setup: %s\n", buf_cstr(&err));
		buf_free(&err);
		return -1;
	}
	buf_free(&err);
	return 0;
}

static int group_teardown(void **state)
{
	return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static X509 *read_cert(const char *file)
{
	FILE *f = fopen(file, "r");
	assert_non_null(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb");
	assert_non_null(in);
	FILE *out = fopen(to, "wb");
	assert_non_null(out);
	char b[4096];
	size_t n;
	while ((n = fread(b, 1, sizeof b, in)) > 0)
		assert_int_equal(fwrite(b, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* ------------------------------------------------------- self-signed */

static void test_self_signed_files(void **state)
{
	struct buf err = BUF_INIT;
	char crt[256], key[256]; /* path()'s slots rotate; keep these */
	snprintf(crt, sizeof crt, "%s", path("ss.crt"));
	snprintf(key, sizeof key, "%s", path("ss.key"));
	mode_t old = umask(077); /* the cert must still come out 0644 */
	int rc = tls_make_self_signed("mx.example.test", crt, key, 825, &err);
	umask(old);
	assert_int_equal(rc, 0);

	struct stat sb;
	assert_int_equal(stat(key, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(stat(crt, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0644);

	X509 *x = read_cert(crt);
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_int_equal(X509_check_host(x, "mx.example.test", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "other.example.test", 0, 0, NULL), 0);
	GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(san);
	assert_int_equal(sk_GENERAL_NAME_num(san), 1);
	int type;
	ASN1_IA5STRING *dns = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(san, 0), &type);
	assert_int_equal(type, GEN_DNS);
	assert_string_equal((const char *)ASN1_STRING_get0_data(dns), "mx.example.test");
	GENERAL_NAMES_free(san);

	/* a leaf for servers: not a CA, serverAuth, signature + key encipherment */
	assert_int_equal(X509_check_ca(x), 0);
	assert_true(X509_get_extension_flags(x) & EXFLAG_XKUSAGE);
	assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
	assert_int_equal(X509_get_signature_nid(x), NID_sha256WithRSAEncryption);
	EVP_PKEY *pub = X509_get0_pubkey(x);
	assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_RSA);
	assert_int_equal(EVP_PKEY_get_bits(pub), 2048);
	/* serial: positive, about 128 random bits */
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	assert_false(BN_is_negative(bn));
	assert_true(BN_num_bits(bn) > 100);
	BN_free(bn);
	/* valid now, for 825 days */
	int days = 0, secs = 0;
	assert_int_equal(
	    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
	assert_int_equal(days, 825);
	assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) <= 0);
	X509_free(x);

	/* never overwrites: neither file changes */
	buf_reset(&err);
	assert_int_equal(tls_make_self_signed("mx.example.test", crt, key, 825, &err), -1);
	assert_non_null(strstr(buf_cstr(&err), "already exists"));
	assert_non_null(strstr(buf_cstr(&err), key));
	buf_reset(&err);
	assert_int_equal(
	    tls_make_self_signed("mx.example.test", path("new.crt"), key, 825, &err), -1);
	assert_int_equal(stat(path("new.crt"), &sb), -1); /* nothing half-made */
	buf_reset(&err);
	assert_int_equal(
	    tls_make_self_signed("mx.example.test", crt, path("new.key"), 825, &err), -1);
	assert_non_null(strstr(buf_cstr(&err), crt));
	assert_int_equal(stat(path("new.key"), &sb), -1);

	/* the pair loads */
	buf_reset(&err);
	struct tls_server *t = tls_server_new(crt, key, &err);
	assert_non_null(t);
	tls_server_free(t);
	buf_free(&err);
}

static void test_self_signed_bad_input(void **state)
{
	struct buf err = BUF_INIT;
	const char *bad[] = {"", "a,DNS:evil.test", "a b", ".a", "a..b", "a/b", "-\n"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		buf_reset(&err);
		assert_int_equal(
		    tls_make_self_signed(bad[i], path("x.crt"), path("x.key"), 825, &err), -1);
		assert_non_null(strstr(buf_cstr(&err), "host name"));
	}
	buf_reset(&err);
	assert_int_equal(tls_make_self_signed("a.test", path("x.crt"), path("x.key"), 0, &err), -1);
	buf_reset(&err);
	assert_int_equal(
	    tls_make_self_signed("a.test", path("x.crt"), "/nonexistent-dir/x.key", 825, &err), -1);
	assert_non_null(strstr(buf_cstr(&err), "/nonexistent-dir/x.key"));
	struct stat sb;
	assert_int_equal(stat(path("x.crt"), &sb), -1);
	assert_int_equal(stat(path("x.key"), &sb), -1);
	buf_free(&err);
}

/* ----------------------------------------------------------- loading */

static void test_load_errors(void **state)
{
	struct buf err = BUF_INIT;
	struct tls_server *t;

	t = tls_server_new(path("missing.crt"), path("a.key"), &err);
	assert_null(t);
	assert_non_null(strstr(buf_cstr(&err), "cannot read "));
	assert_non_null(strstr(buf_cstr(&err), "missing.crt: No such file or directory"));
	assert_non_null(strstr(buf_cstr(&err), "check tls.cert in the configuration"));

	buf_reset(&err);
	t = tls_server_new(path("a.crt"), path("missing.key"), &err);
	assert_null(t);
	assert_non_null(strstr(buf_cstr(&err), "missing.key: No such file or directory"));
	assert_non_null(strstr(buf_cstr(&err), "check tls.key"));

	/* a key that belongs to another certificate */
	buf_reset(&err);
	t = tls_server_new(path("a.crt"), path("b.key"), &err);
	assert_null(t);
	assert_non_null(strstr(buf_cstr(&err), "does not match the certificate"));
	assert_non_null(strstr(buf_cstr(&err), "b.key"));
	assert_non_null(strstr(buf_cstr(&err), "a.crt"));

	/* cert and key swapped */
	buf_reset(&err);
	t = tls_server_new(path("a.key"), path("a.crt"), &err);
	assert_null(t);
	assert_non_null(strstr(buf_cstr(&err), "holds no PEM certificate"));

	/* not PEM at all; a directory */
	FILE *f = fopen(path("junk.pem"), "w");
	assert_non_null(f);
	fputs("hello\n", f);
	fclose(f);
	buf_reset(&err);
	assert_null(tls_server_new(path("a.crt"), path("junk.pem"), &err));
	assert_non_null(strstr(buf_cstr(&err), "holds no PEM private key"));
	buf_reset(&err);
	assert_null(tls_server_new(tmpdir, path("a.key"), &err));
	assert_non_null(strstr(buf_cstr(&err), "not a regular file"));
	buf_reset(&err);
	assert_null(tls_server_new("", "", &err));
	assert_non_null(strstr(buf_cstr(&err), "tls.cert and tls.key"));

	/* a passphrase-protected key is refused, never prompted for */
	f = fopen(path("a.key"), "r");
	assert_non_null(f);
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(k);
	f = fopen(path("enc.key"), "w");
	assert_non_null(f);
	assert_int_equal(
	    PEM_write_PKCS8PrivateKey(f, k, EVP_aes_256_cbc(), "secret", 6, NULL, NULL), 1);
	fclose(f);
	EVP_PKEY_free(k);
	buf_reset(&err);
	assert_null(tls_server_new(path("a.crt"), path("enc.key"), &err));
	assert_non_null(strstr(buf_cstr(&err), "passphrase"));

	/* a chain file: leaf then another certificate; the key in the same file is fine */
	FILE *out = fopen(path("chain.pem"), "w");
	assert_non_null(out);
	fclose(out);
	copy_file(path("a.crt"), path("chain.pem"));
	out = fopen(path("chain.pem"), "a");
	FILE *in = fopen(path("b.crt"), "r");
	char line[256];
	while (fgets(line, sizeof line, in) != NULL)
		fputs(line, out);
	fclose(in);
	fclose(out);
	buf_reset(&err);
	t = tls_server_new(path("chain.pem"), path("a.key"), &err);
	assert_non_null(t);
	buf_reset(&err);
	tls_server_cert_info(t, &err);
	assert_non_null(strstr(buf_cstr(&err), "subject=\"/CN=mail.a.test\""));
	assert_true(strstr(buf_cstr(&err), "expires_in_days=824") != NULL ||
	            strstr(buf_cstr(&err), "expires_in_days=825") != NULL);
	tls_server_free(t);
	tls_server_free(NULL);

	/* OpenSSL's error queue is left clean */
	assert_int_equal(ERR_peek_error(), 0);
	buf_free(&err);
}

/* --------------------------------------------------------- handshakes */

struct conn {
	SSL *client, *server;
};

/* Drive both ends until the handshake completes (1) or fails (0). */
static int handshake(SSL_CTX *cctx, struct tls_server *t, SSL_SESSION *resume, struct conn *c)
{
	c->client = SSL_new(cctx);
	c->server = tls_server_ssl(t);
	assert_non_null(c->client);
	assert_non_null(c->server);
	BIO *cb, *sb;
	assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
	SSL_set_bio(c->client, cb, cb);
	SSL_set_bio(c->server, sb, sb);
	SSL_set_connect_state(c->client);
	SSL_set_accept_state(c->server);
	if (resume != NULL)
		assert_int_equal(SSL_set_session(c->client, resume), 1);
	bool cdone = false, sdone = false;
	for (int i = 0; i < 100 && !(cdone && sdone); i++) {
		if (!cdone) {
			int r = SSL_do_handshake(c->client);
			if (r == 1)
				cdone = true;
			else if (SSL_get_error(c->client, r) != SSL_ERROR_WANT_READ &&
			         SSL_get_error(c->client, r) != SSL_ERROR_WANT_WRITE)
				return 0;
		}
		if (!sdone) {
			int r = SSL_do_handshake(c->server);
			if (r == 1)
				sdone = true;
			else if (SSL_get_error(c->server, r) != SSL_ERROR_WANT_READ &&
			         SSL_get_error(c->server, r) != SSL_ERROR_WANT_WRITE)
				return 0;
		}
	}
	return cdone && sdone;
}

/* A short SMTP-like exchange (which also lets a TLS 1.3 client read its
 * tickets), a clean close, and the client's session for a later connection. */
static SSL_SESSION *converse_and_close(struct conn *c, bool clean)
{
	char b[64];
	assert_int_equal(SSL_write(c->server, "220 hi\r\n", 8), 8);
	assert_int_equal(SSL_read(c->client, b, sizeof b), 8);
	assert_memory_equal(b, "220 hi\r\n", 8);
	assert_int_equal(SSL_write(c->client, "QUIT\r\n", 6), 6);
	assert_int_equal(SSL_read(c->server, b, sizeof b), 6);
	SSL_SESSION *s = SSL_get1_session(c->client);
	assert_non_null(s);
	assert_true(SSL_SESSION_is_resumable(s));
	/* the client closes cleanly: OpenSSL marks the session of an SSL freed
	 * without a shutdown as not resumable, on either side */
	SSL_shutdown(c->client);
	if (clean)
		tls_shutdown(c->server);
	SSL_free(c->server);
	SSL_free(c->client);
	c->server = c->client = NULL;
	return s;
}

static void conn_free(struct conn *c)
{
	SSL_free(c->client);
	SSL_free(c->server);
	c->client = c->server = NULL;
}

static SSL_CTX *client_ctx(int version, bool tickets)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx);
	if (version < TLS1_2_VERSION)
		SSL_CTX_set_security_level(ctx, 0); /* let the client even try */
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, version), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(ctx, version), 1);
	if (!tickets)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	return ctx;
}

static struct tls_server *server_a(void)
{
	struct buf err = BUF_INIT;
	struct tls_server *t = tls_server_new(path("a.crt"), path("a.key"), &err);
	if (t == NULL)
		fail_msg("%s", buf_cstr(&err));
	buf_free(&err);
	return t;
}

static void test_handshake_versions(void **state)
{
	struct tls_server *t = server_a();
	struct buf d = BUF_INIT;
	struct conn c;

	SSL_CTX *c13 = client_ctx(TLS1_3_VERSION, true);
	assert_int_equal(handshake(c13, t, NULL, &c), 1);
	assert_int_equal(SSL_version(c.server), TLS1_3_VERSION);
	tls_describe(c.server, &d);
	assert_string_equal(
	    buf_cstr(&d), "version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 resumed=no");
	buf_reset(&d);
	tls_received_comment(c.server, &d);
	assert_string_equal(
	    buf_cstr(&d), "version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256");
	/* the client sees our certificate */
	X509 *peer = SSL_get1_peer_certificate(c.client);
	X509 *mine = read_cert(path("a.crt"));
	assert_int_equal(X509_cmp(peer, mine), 0);
	X509_free(peer);
	X509_free(mine);
	/* no renegotiation, no compression */
	assert_true(SSL_get_options(c.server) & SSL_OP_NO_RENEGOTIATION);
	assert_null(SSL_get_current_compression(c.server));
	conn_free(&c);

	SSL_CTX *c12 = client_ctx(TLS1_2_VERSION, true);
	assert_int_equal(handshake(c12, t, NULL, &c), 1);
	buf_reset(&d);
	tls_describe(c.server, &d);
	assert_string_equal(
	    buf_cstr(&d), "version=TLSv1.2 cipher=ECDHE-RSA-AES256-GCM-SHA384 bits=256 resumed=no");
	buf_reset(&d);
	tls_received_comment(c.server, &d);
	assert_string_equal(
	    buf_cstr(&d), "version=TLS1_2 cipher=ECDHE-RSA-AES256-GCM-SHA384 bits=256/256");
	conn_free(&c);

	SSL_CTX *c11 = client_ctx(TLS1_1_VERSION, true);
	assert_int_equal(handshake(c11, t, NULL, &c), 0);
	unsigned long e = ERR_peek_error();
	assert_int_equal(ERR_GET_REASON(e), SSL_R_UNSUPPORTED_PROTOCOL);
	ERR_clear_error();
	conn_free(&c);

	/* nothing established */
	buf_reset(&d);
	tls_describe(NULL, &d);
	assert_string_equal(buf_cstr(&d), "version=none cipher=none bits=0 resumed=no");
	buf_reset(&d);
	SSL *fresh = tls_server_ssl(t);
	tls_received_comment(fresh, &d);
	assert_string_equal(buf_cstr(&d), "version=none");
	SSL_free(fresh);

	SSL_CTX_free(c13);
	SSL_CTX_free(c12);
	SSL_CTX_free(c11);
	buf_free(&d);
	tls_server_free(t);
}

/* A first connection, then a later one that resumes its session. */
static void check_resumption(struct tls_server *t, SSL_CTX *cctx, bool reload_between)
{
	struct conn c;
	assert_int_equal(handshake(cctx, t, NULL, &c), 1);
	assert_false(SSL_session_reused(c.server));
	SSL_SESSION *s = converse_and_close(&c, true);

	if (reload_between) {
		struct buf err = BUF_INIT;
		assert_int_equal(tls_server_reload(t, &err), 0);
		buf_free(&err);
	}

	assert_int_equal(handshake(cctx, t, s, &c), 1);
	assert_true(SSL_session_reused(c.client));
	assert_true(SSL_session_reused(c.server));
	struct buf d = BUF_INIT;
	tls_describe(c.server, &d);
	assert_non_null(strstr(buf_cstr(&d), " resumed=yes"));
	buf_free(&d);
	SSL_SESSION_free(s);
	/* and again from the session of the resumed connection */
	s = converse_and_close(&c, true);
	assert_int_equal(handshake(cctx, t, s, &c), 1);
	assert_true(SSL_session_reused(c.server));
	conn_free(&c);
	SSL_SESSION_free(s);
}

static void test_resume_tls12_session_id(void **state)
{
	struct tls_server *t = server_a();
	SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, false); /* no tickets: the cache */
	check_resumption(t, cctx, false);
	check_resumption(t, cctx, true);

	/* a server SSL freed without tls_shutdown() loses its cache entry:
	 * this is why the session layer must call it */
	struct conn c;
	assert_int_equal(handshake(cctx, t, NULL, &c), 1);
	SSL_SESSION *s = converse_and_close(&c, false);
	assert_int_equal(handshake(cctx, t, s, &c), 1);
	assert_false(SSL_session_reused(c.server));
	conn_free(&c);
	SSL_SESSION_free(s);

	SSL_CTX_free(cctx);
	tls_server_free(t);
}

static void test_resume_tls12_ticket(void **state)
{
	struct tls_server *t = server_a();
	SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, true);
	check_resumption(t, cctx, false);
	check_resumption(t, cctx, true);
	SSL_CTX_free(cctx);
	tls_server_free(t);
}

static void test_resume_tls13_ticket(void **state)
{
	struct tls_server *t = server_a();
	SSL_CTX *cctx = client_ctx(TLS1_3_VERSION, true);
	check_resumption(t, cctx, false);
	check_resumption(t, cctx, true);
	SSL_CTX_free(cctx);
	tls_server_free(t);
}

/* ------------------------------------------------------------ reload */

static void test_reload(void **state)
{
	struct buf err = BUF_INIT;
	char crt[256], key[256]; /* path()'s slots rotate; keep these */
	snprintf(crt, sizeof crt, "%s", path("r.crt"));
	snprintf(key, sizeof key, "%s", path("r.key"));
	copy_file(path("a.crt"), crt);
	copy_file(path("a.key"), key);
	struct tls_server *t = tls_server_new(crt, key, &err);
	assert_non_null(t);
	SSL_CTX *cctx = client_ctx(TLS1_3_VERSION, true);

	/* a connection is set up on the old certificate ... */
	struct conn before;
	assert_int_equal(handshake(cctx, t, NULL, &before), 1);
	SSL *pending = tls_server_ssl(t); /* ... and one not yet handshaken */

	/* swap the files for b's and reload */
	copy_file(path("b.crt"), crt);
	copy_file(path("b.key"), key);
	assert_int_equal(tls_server_reload(t, &err), 0);
	buf_reset(&err);
	tls_server_cert_info(t, &err);
	assert_non_null(strstr(buf_cstr(&err), "subject=\"/CN=mail.b.test\""));

	/* the old connection goes on working */
	char b[16];
	assert_int_equal(SSL_write(before.server, "250 ok\r\n", 8), 8);
	assert_int_equal(SSL_read(before.client, b, sizeof b), 8);
	X509 *peer = SSL_get1_peer_certificate(before.client);
	X509 *a = read_cert(path("a.crt")), *bc = read_cert(path("b.crt"));
	assert_int_equal(X509_cmp(peer, a), 0);
	X509_free(peer);
	conn_free(&before);
	SSL_free(pending); /* created before the reload: still freeable */

	/* new connections get the new certificate */
	struct conn after;
	assert_int_equal(handshake(cctx, t, NULL, &after), 1);
	peer = SSL_get1_peer_certificate(after.client);
	assert_int_equal(X509_cmp(peer, bc), 0);
	X509_free(peer);
	conn_free(&after);

	/* a broken file on reload: error, and the last good certificate stays */
	copy_file(path("a.key"), key); /* b.crt with a.key */
	buf_reset(&err);
	assert_int_equal(tls_server_reload(t, &err), -1);
	assert_non_null(strstr(buf_cstr(&err), "does not match"));
	assert_int_equal(handshake(cctx, t, NULL, &after), 1);
	peer = SSL_get1_peer_certificate(after.client);
	assert_int_equal(X509_cmp(peer, bc), 0);
	X509_free(peer);
	conn_free(&after);
	unlink(crt);
	buf_reset(&err);
	assert_int_equal(tls_server_reload(t, &err), -1);
	assert_non_null(strstr(buf_cstr(&err), "No such file or directory"));
	assert_int_equal(handshake(cctx, t, NULL, &after), 1);
	conn_free(&after);

	X509_free(a);
	X509_free(bc);
	SSL_CTX_free(cctx);
	tls_server_free(t);
	buf_free(&err);
}

/* ----------------------------------------------------------- threads */

struct worker_arg {
	struct tls_server *t;
	SSL_CTX *cctx;
	int ok;
};

/* Handshakes on a worker thread (no cmocka asserts here: they longjmp). */
static void *worker(void *p)
{
	struct worker_arg *a = p;
	for (int i = 0; i < 8; i++) {
		SSL *c = SSL_new(a->cctx), *s = tls_server_ssl(a->t);
		BIO *cb, *sb;
		if (c == NULL || s == NULL || BIO_new_bio_pair(&cb, 0, &sb, 0) != 1) {
			SSL_free(c);
			SSL_free(s);
			continue;
		}
		SSL_set_bio(c, cb, cb);
		SSL_set_bio(s, sb, sb);
		SSL_set_connect_state(c);
		SSL_set_accept_state(s);
		int cd = 0, sd = 0;
		for (int k = 0; k < 50 && !(cd == 1 && sd == 1); k++) {
			if (cd != 1)
				cd = SSL_do_handshake(c);
			if (sd != 1)
				sd = SSL_do_handshake(s);
		}
		if (cd == 1 && sd == 1)
			a->ok++;
		tls_shutdown(s);
		SSL_free(s);
		SSL_free(c);
	}
	ERR_clear_error();
	return NULL;
}

/* Connections on several threads while the certificate is reloaded. */
static void test_threads_and_reload(void **state)
{
	struct tls_server *t = server_a();
	SSL_CTX *cctx = client_ctx(TLS1_3_VERSION, true);
	struct worker_arg args[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct worker_arg){t, cctx, 0};
		assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
	}
	struct buf err = BUF_INIT;
	for (int i = 0; i < 5; i++)
		assert_int_equal(tls_server_reload(t, &err), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].ok, 8);
	}
	buf_free(&err);
	SSL_CTX_free(cctx);
	tls_server_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_self_signed_files),
	    cmocka_unit_test(test_self_signed_bad_input),
	    cmocka_unit_test(test_load_errors),
	    cmocka_unit_test(test_handshake_versions),
	    cmocka_unit_test(test_resume_tls12_session_id),
	    cmocka_unit_test(test_resume_tls12_ticket),
	    cmocka_unit_test(test_resume_tls13_ticket),
	    cmocka_unit_test(test_reload),
	    cmocka_unit_test(test_threads_and_reload),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
