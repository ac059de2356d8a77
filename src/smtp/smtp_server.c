/*
 * smtp_server.c - listeners, worker threads, connection limits, signals.
 *
 * The main thread owns the listeners: it accepts, checks the limits (sessions
 * in total, sessions per client IP) and either refuses with a 421 line or
 * hands the socket to a worker loop, round-robin. Limits are enforced before
 * any session memory is allocated, so a flood of connections costs little.
 *
 * SIGINT/SIGTERM stop accepting, stop the loops, then wait for the accept
 * path to finish pending commits (nothing acknowledged is ever lost; a
 * message whose 250 was not yet sent may be sent again by its client).
 */
#include "smtp/smtp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "auth/pwcheck.h"
#include "auth/dmarc.h"
#include "core/log.h"
#include "dns/dns.h"
#include "core/tls.h"
#include "core/util.h"
#include "queue/delivery.h" /* delivery (issue 4) */
#include "store/store.h"

#define IP_BUCKETS 4096

struct worker_conn {
	int fd;
	struct sockaddr_storage ss;
	enum listener_kind kind;
	struct worker_conn *next;
};

struct user_count {
	char *user;
	time_t start; /* the hour counted from here */
	unsigned msgs, rcpts;
	struct user_count *next;
};

struct ip_count {
	unsigned char addr[16];
	unsigned count;
	struct ip_count *next;
};

struct listener {
	struct evconnlistener *lev;
	enum listener_kind kind;
	struct server *srv;
	char *addr;
};

struct server {
	const struct config *cfg;
	struct event_base *base;
	struct worker *workers;
	unsigned nworkers;
	unsigned next_worker;
	struct listener *listeners;
	size_t nlisteners;
	struct accept_ctx *accept;
	struct delivery *delivery; /* delivery (issue 4): the queue runner */
	pthread_mutex_t conn_mu;
	unsigned nconns;
	struct ip_count *ips[IP_BUCKETS];
	struct event *sig_int, *sig_term, *sig_hup;
	struct tls_server *tls;
	struct pwcheck_pool *pw;
	struct auth_throttle *throttle;
	struct dmarc_psl *psl; /* the Public Suffix List, when checks.dmarc */
	pthread_mutex_t user_mu;
	struct user_count *users[IP_BUCKETS];
};

/* ---------------------------------------------------------------- limits */

static void ip_key(const struct sockaddr_storage *ss, unsigned char key[16])
{
	memset(key, 0, 16);
	if (ss->ss_family == AF_UNIX)
		memset(key, 0xff, 16); /* every local connection counts as one client */
	else if (ss->ss_family == AF_INET6)
		memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	else
		memcpy(key, &((const struct sockaddr_in *)ss)->sin_addr, 4);
}

static unsigned ip_hash(const unsigned char key[16])
{
	uint32_t h = 2166136261u;
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h % IP_BUCKETS;
}

/* Take a connection slot; NULL reason on success, else the 421 text. */
static const char *conn_acquire(struct server *srv, const struct sockaddr_storage *ss)
{
	unsigned char key[16];
	ip_key(ss, key);
	unsigned h = ip_hash(key);
	const char *why = NULL;
	pthread_mutex_lock(&srv->conn_mu);
	struct ip_count *c = srv->ips[h];
	while (c && memcmp(c->addr, key, 16) != 0)
		c = c->next;
	if (srv->nconns >= srv->cfg->limits.sessions) {
		why = "421 4.3.2 Too many sessions, try again later\r\n";
	} else if (c && c->count >= srv->cfg->limits.connections_per_ip) {
		why = "421 4.7.0 Too many connections from your address, try again later\r\n";
	} else {
		if (c == NULL) {
			c = calloc(1, sizeof *c);
			if (c == NULL) {
				pthread_mutex_unlock(&srv->conn_mu);
				return "421 4.3.0 Temporary failure, try again later\r\n";
			}
			memcpy(c->addr, key, 16);
			c->next = srv->ips[h];
			srv->ips[h] = c;
		}
		c->count++;
		srv->nconns++;
	}
	pthread_mutex_unlock(&srv->conn_mu);
	return why;
}

void server_conn_release(struct server *srv, const struct sockaddr_storage *ss)
{
	unsigned char key[16];
	ip_key(ss, key);
	unsigned h = ip_hash(key);
	pthread_mutex_lock(&srv->conn_mu);
	struct ip_count **pp = &srv->ips[h];
	while (*pp && memcmp((*pp)->addr, key, 16) != 0)
		pp = &(*pp)->next;
	if (*pp == NULL)
		abort(); /* released a slot never taken */
	if (--(*pp)->count == 0) {
		struct ip_count *dead = *pp;
		*pp = dead->next;
		free(dead);
	}
	srv->nconns--;
	pthread_mutex_unlock(&srv->conn_mu);
}

struct accept_ctx *server_accept_ctx(struct server *srv)
{
	return srv->accept;
}
const struct dmarc_psl *server_psl(struct server *srv)
{
	return srv->psl;
}

struct tls_server *server_tls(struct server *srv)
{
	return srv->tls;
}
struct pwcheck_pool *server_pwcheck(struct server *srv)
{
	return srv->pw;
}
struct auth_throttle *server_throttle(struct server *srv)
{
	return srv->throttle;
}

bool server_user_allow(struct server *srv, const char *user, unsigned msgs, unsigned rcpts)
{
	const struct config *c = srv->cfg;
	time_t now = time(NULL);
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)user; *p; p++)
		h = (h ^ *p) * 16777619u;
	h %= IP_BUCKETS;
	bool ok = true;
	pthread_mutex_lock(&srv->user_mu);
	struct user_count *u = srv->users[h];
	while (u && strcmp(u->user, user) != 0)
		u = u->next;
	if (u == NULL) {
		u = calloc(1, sizeof *u);
		if (u == NULL || (u->user = strdup(user)) == NULL) {
			free(u);
			pthread_mutex_unlock(&srv->user_mu);
			return false;
		}
		u->start = now;
		u->next = srv->users[h];
		srv->users[h] = u;
	}
	if (now - u->start >= 3600) {
		u->start = now;
		u->msgs = u->rcpts = 0;
	}
	if (u->msgs + msgs > c->submission.user_messages_per_hour ||
	    u->rcpts + rcpts > c->submission.user_recipients_per_hour) {
		ok = false;
	} else {
		u->msgs += msgs;
		u->rcpts += rcpts;
	}
	pthread_mutex_unlock(&srv->user_mu);
	return ok;
}

/* ---------------------------------------------------------------- workers */

static void inbox_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	pthread_mutex_lock(&w->inbox_mu);
	struct worker_conn *c = w->inbox;
	w->inbox = NULL;
	pthread_mutex_unlock(&w->inbox_mu);
	/* the list is newest first; start the oldest first */
	struct worker_conn *rev = NULL;
	while (c) {
		struct worker_conn *n = c->next;
		c->next = rev;
		rev = c;
		c = n;
	}
	while (rev) {
		struct worker_conn *n = rev->next;
		smtp_session_start(w, rev->fd, &rev->ss, rev->kind);
		free(rev);
		rev = n;
	}
}

static void keepalive_cb(evutil_socket_t fd, short what, void *arg) {}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	event_base_dispatch(w->base);
	return NULL;
}

static int worker_init(struct server *srv, struct worker *w, unsigned index, struct buf *err)
{
	w->index = index;
	w->cfg = srv->cfg;
	w->server = srv;
	w->base = event_base_new();
	if (w->base == NULL) {
		buf_puts(err, "cannot create an event loop");
		return -1;
	}
	w->store = store_open(srv->cfg->data_dir, err);
	if (w->store == NULL)
		return -1;
	if (srv->cfg->checks.spf || srv->cfg->checks.dkim || srv->cfg->checks.dmarc) {
		/* SPF, DKIM key and DMARC lookups of received mail: short
		 * per-query timeouts, the session also bounds SPF (checks.timeout) */
		struct dns_options opt = {srv->cfg->resolver, 5000};
		w->dns = dns_resolver_new(w->base, &opt, err);
		if (w->dns == NULL)
			return -1;
	}
	if (loopq_init(&w->doneq, w->base) < 0) {
		buf_puts(err, "cannot create an event");
		return -1;
	}
	pthread_mutex_init(&w->inbox_mu, NULL);
	w->inbox_ev = event_new(w->base, -1, EV_PERSIST, inbox_cb, w);
	if (w->inbox_ev == NULL) {
		buf_puts(err, "cannot create an event");
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- listeners */

static void on_accept(
    struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct listener *l = arg;
	struct server *srv = l->srv;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	memcpy(&ss, sa, (size_t)salen < sizeof ss ? (size_t)salen : sizeof ss);
	const char *why = conn_acquire(srv, &ss);
	if (why) {
		/* a fresh socket's send buffer always takes one short line */
		ssize_t w = send(fd, why, strlen(why), MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)w;
		char ip[INET6_ADDRSTRLEN] = "?";
		if (ss.ss_family == AF_INET6)
			inet_ntop(
			    AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof ip);
		else
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
		log_warn("-", "event=refused-connection ip=%s reason=\"%.*s\"", ip,
		    (int)strlen(why) - 2, why);
		close(fd);
		return;
	}
	int one = 1;
	if (ss.ss_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct worker_conn *c = malloc(sizeof *c);
	if (c == NULL) {
		close(fd);
		server_conn_release(srv, &ss);
		return;
	}
	c->fd = fd;
	c->ss = ss;
	c->kind = l->kind;
	struct worker *w = &srv->workers[srv->next_worker++ % srv->nworkers];
	pthread_mutex_lock(&w->inbox_mu);
	bool was_empty = w->inbox == NULL;
	c->next = w->inbox;
	w->inbox = c;
	pthread_mutex_unlock(&w->inbox_mu);
	if (was_empty)
		event_active(w->inbox_ev, EV_READ, 0);
}

static void on_listen_error(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;
	int e = EVUTIL_SOCKET_ERROR();
	log_err("-", "event=accept-error listener=%s error=\"%s\"", l->addr,
	    evutil_socket_error_to_string(e));
	/* EMFILE and friends: the listener stays; libevent retries on the next event */
}

/* Parse "IP:PORT" or "[IPv6]:PORT". */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	int l = (int)sizeof *ss;
	memset(ss, 0, sizeof *ss);
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)ss, &l) < 0)
		return -1;
	*len = (socklen_t)l;
	return ((struct sockaddr_in *)ss)->sin_port != 0 ? 0 : -1;
}

static int add_listeners(struct server *srv, char **addrs, enum listener_kind kind, struct buf *err)
{
	for (size_t i = 0; addrs && addrs[i]; i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		if (parse_listen(addrs[i], &ss, &len) < 0) {
			buf_printf(err,
			    "invalid listen address \"%s\" (use IP:PORT or [IPv6]:PORT)", addrs[i]);
			return -1;
		}
		struct listener *nl =
		    realloc(srv->listeners, (srv->nlisteners + 1) * sizeof *srv->listeners);
		if (nl == NULL)
			return -1;
		srv->listeners = nl;
		struct listener *l = &srv->listeners[srv->nlisteners];
		l->kind = kind;
		l->srv = srv;
		l->addr = addrs[i];
		l->lev = evconnlistener_new_bind(srv->base, on_accept, l,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 1024,
		    (struct sockaddr *)&ss, (int)len);
		if (l->lev == NULL) {
			buf_printf(err, "cannot listen on %s: %s", addrs[i], strerror(errno));
			return -1;
		}
		srv->nlisteners++;
		log_info("-", "event=listen address=%s service=%s", addrs[i],
		    kind == LISTEN_SMTP         ? "smtp"
		    : kind == LISTEN_SUBMISSION ? "submission"
		                                : "submissions");
	}
	return 0;
}

/* The unix socket of local submission: created (replacing a stale one) with
 * mode 0666; who may use it is checked per connection (peer credentials). */
static int add_local_listener(struct server *srv, const char *path, struct buf *err)
{
	if (path == NULL || *path == '\0')
		return 0;
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		buf_printf(err, "local.socket \"%s\" is too long for a unix socket path", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	char *dir = strdup(path);
	if (dir == NULL)
		return -1;
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (util_mkdir_p(dir, 0755) < 0) {
			buf_printf(
			    err, "cannot create %s for local.socket: %s", dir, strerror(errno));
			free(dir);
			return -1;
		}
	}
	free(dir);
	struct stat sb;
	if (lstat(path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			buf_printf(err,
			    "local.socket %s exists and is not a socket; remove it or choose "
			    "another path",
			    path);
			return -1;
		}
		unlink(path);
	}
	struct listener *nl =
	    realloc(srv->listeners, (srv->nlisteners + 1) * sizeof *srv->listeners);
	if (nl == NULL)
		return -1;
	srv->listeners = nl;
	struct listener *l = &srv->listeners[srv->nlisteners];
	l->kind = LISTEN_LOCAL;
	l->srv = srv;
	l->addr = (char *)path;
	l->lev = evconnlistener_new_bind(srv->base, on_accept, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128, (struct sockaddr *)&sun,
	    (int)sizeof sun);
	if (l->lev == NULL) {
		buf_printf(err, "cannot listen on %s: %s", path, strerror(errno));
		return -1;
	}
	if (chmod(path, 0666) < 0) {
		buf_printf(err, "cannot chmod %s: %s", path, strerror(errno));
		return -1;
	}
	srv->nlisteners++;
	log_info("-", "event=listen address=%s service=local", path);
	return 0;
}

/* listener callbacks need stable pointers: fix them up after all reallocs */
static void listeners_rebind(struct server *srv)
{
	for (size_t i = 0; i < srv->nlisteners; i++) {
		evconnlistener_set_cb(srv->listeners[i].lev, on_accept, &srv->listeners[i]);
		evconnlistener_set_error_cb(srv->listeners[i].lev, on_listen_error);
	}
}

/* ---------------------------------------------------------------- run */

/* Listeners the configuration names that this version does not serve yet. */
static void warn_unserved(const struct config *cfg)
{
	static const struct {
		const char *name;
		size_t off;
	} l[] = {
	    {"imap", offsetof(struct config_listen, imap)},
	    {"imaps", offsetof(struct config_listen, imaps)},
	    {"pop3", offsetof(struct config_listen, pop3)},
	    {"pop3s", offsetof(struct config_listen, pop3s)},
	};
	for (size_t i = 0; i < sizeof l / sizeof l[0]; i++) {
		char **addrs = *(char **const *)((const char *)&cfg->listen + l[i].off);
		if (addrs && addrs[0])
			log_warn("-",
			    "event=listener-not-served service=%s address=%s "
			    "reason=\"not implemented in this version\"",
			    l[i].name, addrs[0]);
	}
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	if (srv->tls == NULL) {
		log_info("-", "event=reload result=nothing-to-reload");
		return;
	}
	struct buf err = BUF_INIT;
	if (tls_server_reload(srv->tls, &err) < 0)
		log_err("-", "event=reload result=failed error=\"%s\" old-certificate=kept",
		    buf_cstr(&err));
	else
		log_info("-", "event=reload result=ok what=tls-certificate");
	buf_free(&err);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	log_info("-", "event=shutdown signal=%d", (int)sig);
	event_base_loopbreak(srv->base);
}

int smtp_server_run(const struct config *cfg)
{
	struct buf err = BUF_INIT;
	struct server srv;
	memset(&srv, 0, sizeof srv);
	srv.cfg = cfg;
	pthread_mutex_init(&srv.conn_mu, NULL);
	pthread_mutex_init(&srv.user_mu, NULL);
	signal(SIGPIPE, SIG_IGN);
	int rc = 1;

	if (evthread_use_pthreads() < 0) {
		log_err("-", "event=startup-failed error=\"libevent has no thread support\"");
		return 1;
	}
	srv.base = event_base_new();
	if (srv.base == NULL)
		return 1;
	/* Signals first: a SIGTERM that arrives while we start (the listeners
	 * accept connections before the loop runs) is handled, not fatal. */
	srv.sig_int = evsignal_new(srv.base, SIGINT, on_signal, &srv);
	srv.sig_term = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
	srv.sig_hup = evsignal_new(srv.base, SIGHUP, on_hup, &srv);
	if (srv.sig_int == NULL || srv.sig_term == NULL || srv.sig_hup == NULL ||
	    event_add(srv.sig_int, NULL) < 0 || event_add(srv.sig_term, NULL) < 0 ||
	    event_add(srv.sig_hup, NULL) < 0) {
		log_err("-", "event=startup-failed error=\"cannot set up signal handling\"");
		return 1;
	}

	/* certificate and key are read before the switch of user: they may be
	 * readable by root only */
	if (cfg->tls.cert && *cfg->tls.cert) {
		srv.tls = tls_server_new(cfg->tls.cert, cfg->tls.key, &err);
		if (srv.tls == NULL) {
			log_err("-", "event=startup-failed error=\"%s\"", buf_cstr(&err));
			goto out;
		}
	} else if (cfg->listen.submissions && cfg->listen.submissions[0]) {
		log_err("-",
		    "event=startup-failed error=\"listen.submissions needs a certificate: set "
		    "tls { cert key } or remove the submissions listener\"");
		goto out;
	}
	if (add_listeners(&srv, cfg->listen.smtp, LISTEN_SMTP, &err) < 0 ||
	    add_listeners(&srv, cfg->listen.submission, LISTEN_SUBMISSION, &err) < 0 ||
	    add_listeners(&srv, cfg->listen.submissions, LISTEN_SUBMISSIONS, &err) < 0 ||
	    add_local_listener(&srv, cfg->local.socket, &err) < 0) {
		log_err("-", "event=startup-failed error=\"%s\"", buf_cstr(&err));
		goto out;
	}
	listeners_rebind(&srv);
	if (srv.nlisteners == 0) {
		log_err("-",
		    "event=startup-failed error=\"no SMTP listener configured (listen { smtp = ... "
		    "submission = ... })\"");
		goto out;
	}
	warn_unserved(cfg);
	if (util_drop_privileges(cfg->user, &err) < 0) {
		log_err("-", "event=startup-failed error=\"%s\"", buf_cstr(&err));
		goto out;
	}

	/* opening the store here runs migrations once, before the workers; after
	 * the switch of user, so that every file it creates is the user's */
	struct store *st = store_open(cfg->data_dir, &err);
	if (st == NULL) {
		log_err("-", "event=startup-failed error=\"cannot open the store: %s\"",
		    buf_cstr(&err));
		goto out;
	}
	store_close(st);

	srv.pw = pwcheck_pool_new(cfg->data_dir, 2, &err);
	if (srv.pw == NULL) {
		log_err("-", "event=startup-failed error=\"%s\"", buf_cstr(&err));
		goto out;
	}
	srv.throttle = auth_throttle_new(100000, 10, 900);
	if (cfg->checks.dmarc) {
		srv.psl = dmarc_psl_load(NULL);
		if (srv.psl == NULL)
			log_warn("-", "event=dmarc-off reason=\"the Public Suffix List cannot be "
			              "loaded (install publicsuffix)\"");
	}
	srv.accept = accept_start(cfg->data_dir, cfg->hostname, 8, &err);
	if (srv.accept == NULL) {
		log_err("-", "event=startup-failed error=\"%s\"", buf_cstr(&err));
		goto out;
	}
	/* delivery (issue 4): the queue runner, woken by the accept path */
	if (cfg->delivery.enabled) {
		srv.delivery = delivery_start(cfg, &err);
		if (srv.delivery == NULL) {
			log_err("-", "event=startup-failed error=\"%s\"", buf_cstr(&err));
			goto out;
		}
		accept_set_notify(srv.accept, delivery_notify, srv.delivery);
	} else {
		log_info("-", "event=delivery-disabled");
	}

	srv.nworkers = cfg->workers;
	if (srv.nworkers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		srv.nworkers = n > 0 ? (unsigned)n : 1;
	}
	srv.workers = calloc(srv.nworkers, sizeof *srv.workers);
	if (srv.workers == NULL)
		goto out;
	for (unsigned i = 0; i < srv.nworkers; i++) {
		if (worker_init(&srv, &srv.workers[i], i, &err) < 0) {
			log_err("-", "event=startup-failed error=\"%s\"", buf_cstr(&err));
			srv.nworkers = i + 1;
			goto out_workers;
		}
	}
	for (unsigned i = 0; i < srv.nworkers; i++) {
		/* keep the loops alive while idle: the inbox event is persistent but
		 * never added, so add a long timer */
		static const struct timeval forever = {86400 * 365, 0};
		struct event *keep =
		    event_new(srv.workers[i].base, -1, EV_PERSIST, keepalive_cb, NULL);
		event_add(keep, &forever);
		if (pthread_create(&srv.workers[i].thread, NULL, worker_main, &srv.workers[i]) != 0)
			abort();
	}

	log_info("-", "event=ready hostname=%s workers=%u data_dir=%s", cfg->hostname, srv.nworkers,
	    cfg->data_dir);
	event_base_dispatch(srv.base);
	rc = 0;

	for (size_t i = 0; i < srv.nlisteners; i++)
		evconnlistener_free(srv.listeners[i].lev);
	srv.nlisteners = 0;
	for (unsigned i = 0; i < srv.nworkers; i++) {
		event_base_loopbreak(srv.workers[i].base);
		pthread_join(srv.workers[i].thread, NULL);
	}
	/* pending commits finish here; their sessions are gone */
	accept_stop(srv.accept);
	delivery_stop(srv.delivery); /* delivery (issue 4): after the last notify */
	pwcheck_pool_free(srv.pw);
	srv.accept = NULL;
	log_info("-", "event=stopped");
	_exit(0); /* sessions still hold sockets and memory; the kernel frees them */

out_workers:
	for (unsigned i = 0; i < srv.nworkers; i++) {
		dns_resolver_free(srv.workers[i].dns);
		store_close(srv.workers[i].store);
	}
out:
	accept_stop(srv.accept);
	delivery_stop(srv.delivery); /* delivery (issue 4) */
	pwcheck_pool_free(srv.pw);
	auth_throttle_free(srv.throttle);
	dmarc_psl_free(srv.psl);
	tls_server_free(srv.tls);
	for (size_t i = 0; i < srv.nlisteners; i++)
		evconnlistener_free(srv.listeners[i].lev);
	free(srv.listeners);
	if (srv.sig_int)
		event_free(srv.sig_int);
	if (srv.sig_term)
		event_free(srv.sig_term);
	if (srv.sig_hup)
		event_free(srv.sig_hup);
	if (srv.base)
		event_base_free(srv.base);
	buf_free(&err);
	return rc;
}
