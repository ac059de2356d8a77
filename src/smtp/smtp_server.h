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

enum listener_kind {
	LISTEN_SMTP = 0,   /* inbound MX, port 25 */
	LISTEN_SUBMISSION, /* 587, STARTTLS */
	LISTEN_SUBMISSIONS,/* 465, implicit TLS */
	LISTEN__COUNT
};

struct worker {
	unsigned index;
	pthread_t thread;
	struct event_base *base;
	struct store *store;       /* this thread's connection */
	const struct config *cfg;
	struct server *server;
	struct loopq doneq;        /* work finished by helper threads for this loop */
	struct event *inbox_ev;    /* new connections handed over */
	pthread_mutex_t inbox_mu;
	struct worker_conn *inbox;
	unsigned nsessions;        /* sessions alive on this loop */
	bool stopping;
};

/* Run the server until SIGTERM/SIGINT. Returns the process exit code. */
int smtp_server_run(const struct config *cfg);

/* For sessions: give back the connection slot of a closed session. */
void server_conn_release(struct server *srv, const struct sockaddr_storage *ss);
struct accept_ctx *server_accept_ctx(struct server *srv);

/* Session entry point (smtp_session.c): takes ownership of fd. */
void smtp_session_start(struct worker *w, int fd, const struct sockaddr_storage *ss,
    enum listener_kind kind);
/* Ask every session of this worker to finish (421) and close. */
void smtp_sessions_shutdown(struct worker *w);

#endif
