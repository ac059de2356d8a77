/*
 * smtp_server.h - the listeners, the worker threads and what sessions share.
 *
 * The main thread binds the listeners and accepts connections; it enforces
 * the session limits (in total and per client IP) before a session exists,
 * then hands the socket to a worker thread round-robin. Each worker runs one
 * libevent loop with its own store connection (for recipient lookups); a
 * session lives on one loop and never blocks it.
 */
#ifndef DAKIYA_SMTP_SERVER_H
#define DAKIYA_SMTP_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "core/config.h"
#include "queue/accept.h"

struct event_base;
struct store;
struct server;
struct tls_server;
struct pwcheck_pool;
struct auth_throttle;

enum listener_kind {
	LISTEN_SMTP = 0,    /* inbound MX, port 25 */
	LISTEN_SUBMISSION,  /* 587, STARTTLS */
	LISTEN_SUBMISSIONS, /* 465, implicit TLS */
	LISTEN_LOCAL,       /* unix socket for local programs (dakiya sendmail) */
	LISTEN__COUNT
};

struct dns_resolver;

struct worker {
	unsigned index;
	pthread_t thread;
	struct event_base *base;
	struct store *store; /* this thread's connection */
	struct dns_resolver
	    *dns; /* this loop's resolver (SPF, DKIM, DMARC); NULL when all are off */
	const struct config *cfg;
	struct server *server;
	struct loopq doneq;     /* work finished by helper threads for this loop */
	struct event *inbox_ev; /* new connections handed over */
	pthread_mutex_t inbox_mu;
	struct worker_conn *inbox;
	unsigned nsessions; /* sessions alive on this loop */
	bool stopping;
};

/* Run the server until SIGTERM/SIGINT. Returns the process exit code. */
int smtp_server_run(const struct config *cfg);

/* For sessions: give back the connection slot of a closed session. */
void server_conn_release(struct server *srv, const struct sockaddr_storage *ss);
struct accept_ctx *server_accept_ctx(struct server *srv);
/* NULL when no certificate is configured. */
struct tls_server *server_tls(struct server *srv);
struct pwcheck_pool *server_pwcheck(struct server *srv);
/* The Public Suffix List for DMARC; NULL when DMARC is off. */
struct dmarc_psl;
const struct dmarc_psl *server_psl(struct server *srv);
struct auth_throttle *server_throttle(struct server *srv);
/* Per-user hourly sending limits: count msgs messages and rcpts recipients
 * for user; false (nothing counted) if that would pass a limit. Thread-safe. */
bool server_user_allow(struct server *srv, const char *user, unsigned msgs, unsigned rcpts);

/* Session entry point (smtp_session.c): takes ownership of fd. */
void smtp_session_start(
    struct worker *w, int fd, const struct sockaddr_storage *ss, enum listener_kind kind);

#endif
