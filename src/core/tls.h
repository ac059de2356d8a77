/*
 * tls.h - TLS for the listeners (OpenSSL 3): the server's certificate and
 * key, one SSL_CTX shared by every thread, re-read on SIGHUP without
 * dropping sessions, session resumption by session ids and tickets, and the
 * self-signed certificate that `quickstart --dev` creates.
 *
 * Policy: TLS 1.2 and 1.3 only; OpenSSL's default cipher lists (forward
 * secrecy, AEAD first); the server's cipher preference; no compression, no
 * renegotiation. A session keeps the context it started with (SSL_new takes
 * a reference), so a reload only affects new handshakes; session ids and
 * tickets issued before a reload still resume after it (see tls.c). A TCP
 * close without close_notify reads as a plain end of file
 * (SSL_OP_IGNORE_UNEXPECTED_EOF): SMTP, IMAP and POP3 frame their own data,
 * so a truncation cannot pass for a complete command or message.
 */
#ifndef DAKIYA_TLS_H
#define DAKIYA_TLS_H

#include <stdbool.h>

#include <openssl/ssl.h>

#include "core/buf.h"

struct tls_server;

/* Load the certificate chain (PEM: leaf first, then intermediates) and the
 * private key; check that they match. NULL with the reason in err (naming the
 * file and what to do). */
struct tls_server *tls_server_new(const char *cert_file, const char *key_file, struct buf *err);
void tls_server_free(struct tls_server *t); /* accepts NULL */
/* Re-read the same files. On error the old certificate stays in use and -1
 * is returned with the reason in err. Thread-safe. */
int tls_server_reload(struct tls_server *t, struct buf *err);
/* A new server-side SSL for one connection, on the current context.
 * Thread-safe. NULL on error (out of memory). */
SSL *tls_server_ssl(struct tls_server *t);
/* Facts about the current certificate for a log line at start-up and after
 * a reload: cert=/x/cert.pem subject="/CN=mail.example.com" expires_in_days=89
 * (values escaped as log_escape() does).
 * Thread-safe. */
void tls_server_cert_info(struct tls_server *t, struct buf *out);

/* Call on a connection whose handshake finished, just before freeing it,
 * when it ends normally (QUIT answered, or the peer hung up between
 * commands). It sends close_notify if the socket takes it (never blocks) and
 * marks the SSL as shut down: OpenSSL's SSL_free() removes the session of an
 * SSL that was not shut down from the cache, so without this call a later
 * connection cannot resume by session id (libevent's bufferevent_openssl
 * frees the SSL without shutting it down). Not after a TLS error or a
 * timeout in the middle of a command. Accepts NULL. */
void tls_shutdown(SSL *ssl);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384 256" style facts of an established
 * connection, for logs and the Received: header:
 * out gets "version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 resumed=no". */
void tls_describe(SSL *ssl, struct buf *out);
/* The RFC 8314 style comment for Received:, e.g.
 * "version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256". */
void tls_received_comment(SSL *ssl, struct buf *out);

/* Create a self-signed certificate for hostname (RSA 2048, SHA-256, SAN
 * DNS:hostname, valid for days), written as PEM to cert_file (0644) and
 * key_file (0600), never overwriting existing files. 0, or -1 with err. */
int tls_make_self_signed(const char *hostname, const char *cert_file, const char *key_file,
    unsigned days, struct buf *err);

/* ---- client side (outbound SMTP, STARTTLS) ----
 *
 * Policy: TLS 1.2 and 1.3, OpenSSL's default ciphers, no compression, no
 * renegotiation, SNI. MX TLS is opportunistic (RFC 3207, RFC 7435): the
 * handshake never fails because of the peer's certificate (SSL_VERIFY_NONE),
 * but the chain is still checked against the system CA store and the MX
 * host name, and tls_client_peer() reports the verdict so that logs and the
 * journey can say "verified" or why not. Nothing here is a trust decision;
 * DANE or MTA-STS, when added, turn the verdict into one. */
struct tls_client;

/* A client context with the policy above; NULL with the reason in err. */
struct tls_client *tls_client_new(struct buf *err);
void tls_client_free(struct tls_client *t); /* accepts NULL */
/* A client-side SSL for one connection to host (the MX name: sent as SNI
 * and checked against the certificate; NULL or "" for neither).
 * Thread-safe. NULL on error (out of memory). */
SSL *tls_client_ssl(struct tls_client *t, const char *host);

/* What a finished client handshake established, for logs and the journey. */
struct tls_peer {
	char version[16];      /* "TLSv1.3" */
	char cipher[64];       /* "TLS_AES_256_GCM_SHA384" */
	int bits;              /* symmetric key bits */
	bool verified;         /* chain verified against the system CA store and
	                        * the host name given to tls_client_ssl() matched */
	char verify_error[96]; /* why not verified ("self-signed certificate"), "" if verified */
	char name[256];        /* the certificate's subject CN, else its first DNS SAN; ""
	                        * if none; peer-supplied: escape before logging */
};
/* Fill out for an established connection (all empty/false if ssl is NULL
 * or the handshake has not finished). */
void tls_client_peer(SSL *ssl, struct tls_peer *out);

#endif
