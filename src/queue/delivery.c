/*
 * delivery.c - the queue runner (see delivery.h).
 *
 * Everything below runs on the delivery thread's loop except
 * delivery_start/stop/notify. Objects:
 *   job   one queue entry being attempted (its pending recipients, their
 *         results for this attempt, the events to record);
 *   dom   the recipients of one job in one domain: a DNS lookup, then one
 *         connection at a time over the targets;
 *   dest  a destination domain: counts its open connections against
 *         delivery.connections_per_domain, keeps its idle connections for
 *         reuse and the doms waiting for a connection (FIFO);
 *   conn  one outbound connection, owned by the delivery rather than by a
 *         job, because it outlives the message it carried when it is kept
 *         for the next message to the same domain.
 * A job ends when all its doms have; then bounces/warnings are made
 * durable and the job waits (still in d->jobs, so that no scan starts its
 * entry again) until a 1 ms timer records the attempts of every job that
 * ended meanwhile in one store transaction: one commit and one fsync for a
 * batch (group commit), not one per message.
 *
 * Connection rules: a dom that has not had a connection yet takes an idle
 * one of its domain if there is one (RSET, then the next MAIL); otherwise it
 * opens one to its next untried address if both limits allow, else waits
 * (closing an idle connection that holds the slot it needs). Once a message
 * is done, the connection goes idle for connection_cache_time seconds (at
 * most connection_reuse_max messages) and the domain's waiting doms are
 * served; a connection that ends frees a slot for every waiting domain.
 * Recipients that got a 4xx go on to the next address, as before: a dom
 * that came in on a kept connection skips that connection's address.
 */
#include "queue/delivery.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/tls.h"
#include "core/util.h"
#include "dns/dns.h"
#include "queue/dsn.h"
#include "queue/dsn_send.h"
#include "smtp/smtp_client.h"
#include "smtp/smtp_parse.h"
#include "store/store.h"

#define DELIVERY_JOBS_MIN 32 /* entries in progress at once, at least (see jobs_max) */
#define REPLY_MAX 1000       /* bytes of a reply kept per recipient */

enum rstate { R_TODO, R_SENT, R_FAILED, R_TEMP };

struct rcpt {
	const struct store_due_rcpt *due;
	enum rstate state;
	unsigned notify; /* DSN_NOTIFY_* (default when not given) */
	bool notify_given;
	struct dsn_orcpt orcpt;
	bool has_orcpt;
	char esc[SMTP_REPLY_ESC_MAX]; /* status for the DSN */
	char *reply;                  /* last reply or our reason */
	char *remote_mta;             /* host that gave it, NULL if none */
	struct dom *dom;
	bool relayed; /* sent to a next hop that does not offer DSN (RFC 3461 5.2.2) */
};

struct dest {
	char *name;        /* lower case */
	unsigned nconns;   /* open connections: busy, idle or closing */
	unsigned ndoms;    /* doms that refer to it */
	struct conn *idle; /* idle connections, newest first */
	struct dom *wait_head, *wait_tail;
	struct dest *next;
};

struct conn {
	struct delivery *d;
	struct dest *dest;
	struct smtp_client *c;
	struct dom *m; /* the dom whose message it carries; NULL: idle or closing */
	char ip[INET6_ADDRSTRLEN];
	unsigned messages; /* messages it carried */
	bool idle;
	struct conn *next_idle;
	struct conn *next; /* d->conns */
};

struct dom {
	struct job *job;
	char *name;
	struct dest *dest;
	size_t *idx; /* indices into job->r */
	size_t n;
	struct dns_req *req;
	struct dns_targets *t;
	size_t host, addr;
	bool notls;    /* the next connection goes without STARTTLS */
	bool had_conn; /* it had a connection: no more kept ones for it */
	bool cached;   /* the current connection is a kept one (host/addr do not name it) */
	char skip_ip[INET6_ADDRSTRLEN]; /* an address already tried over a kept connection */
	bool waiting;                   /* in dest's wait list */
	struct dom *wait_next;
	struct conn *conn;
	struct smtp_client_msg msg;
	struct smtp_client_rcpt *crcpts;
	size_t *cidx;     /* crcpts[i] is job->r[cidx[i]] */
	char *conn_reply; /* what the message got on this connection (for the event) */
	bool done;
};

struct job {
	struct delivery *d;
	struct store_due *due; /* owned: one element */
	struct rcpt *r;
	struct dom *doms;
	size_t ndoms, doms_left;
	bool eightbit, smtputf8;
	enum dsn_ret ret;
	/* finished: the attempt to record (att, updates), and its figures */
	bool finished;
	bool stopped; /* ended by delivery_stop, not by its domains */
	struct store_attempt att;
	struct store_rcpt_update *updates;
	size_t nsent, nfailed, npending;
	long long retry_in;
	/* events to record with the attempt */
	struct store_event_rec *ev;
	struct buf *evtext;
	size_t nev;
	struct job *next;
};

struct delivery {
	const struct config *cfg;
	struct event_base *base;
	struct event *wake;
	struct event *timer;
	struct event *flush; /* records the finished jobs' attempts */
	size_t nfinished;
	struct store *st;
	struct dns_resolver *dns;
	struct tls_client *tls;
	enum dns_family family;
	struct sockaddr_storage src4, src6;
	bool has_src4, has_src6;
	pthread_t thread;
	struct job *jobs;
	size_t njobs, jobs_max;
	struct dest *dests;
	struct conn *conns;
	unsigned nconns;
	bool stopping;
};

/* What dom_try_next did with a dom. */
enum dom_step {
	DOM_BUSY,    /* a connection carries its message */
	DOM_WAITING, /* in its destination's wait list */
	DOM_DONE,    /* nothing more to try: job_dom_done ran (the job may be gone) */
};

static void job_dom_done(struct dom *m);
static enum dom_step dom_try_next(struct dom *m);
static void scan(struct delivery *d);

static char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (p == NULL)
		abort();
	return p;
}

/* a reply for logs and the store: one line, capped */
static char *reply_dup(const char *s)
{
	size_t n = s ? strnlen(s, REPLY_MAX) : 0;
	char *p = malloc(n + 1);
	if (p == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		p[i] = (s[i] == '\r' || s[i] == '\n') ? ' ' : s[i];
	p[n] = '\0';
	return p;
}

static void rcpt_set(
    struct rcpt *r, enum rstate st, const char *esc, const char *reply, const char *mta)
{
	/* copies first: reply or mta may be r's own strings */
	char *nr = reply_dup(reply), *nm = mta ? xstrdup(mta) : NULL;
	r->state = st;
	snprintf(r->esc, sizeof r->esc, "%s", esc ? esc : "");
	free(r->reply);
	r->reply = nr;
	free(r->remote_mta);
	r->remote_mta = nm;
}

/* Add an event (kind, rcpt may be NULL) with printf-formatted text. */
static void job_event(struct job *j, const char *kind, const char *rcpt, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void job_event(struct job *j, const char *kind, const char *rcpt, const char *fmt, ...)
{
	struct store_event_rec *e = realloc(j->ev, (j->nev + 1) * sizeof *e);
	struct buf *t = realloc(j->evtext, (j->nev + 1) * sizeof *t);
	if (e == NULL || t == NULL)
		abort();
	j->ev = e;
	j->evtext = t;
	buf_init(&t[j->nev], 8192);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&t[j->nev], fmt, ap);
	va_end(ap);
	e[j->nev] = (struct store_event_rec){kind, rcpt, NULL};
	j->nev++;
}

/* escaped value for key=value text */
static const char *esc_val(const char *s)
{
	return log_str(s ? s : "");
}

/* ---- destinations and connections ---- */

static struct dest *dest_get(struct delivery *d, const char *name)
{
	for (struct dest *t = d->dests; t; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t;
	struct dest *t = calloc(1, sizeof *t);
	if (t == NULL)
		abort();
	t->name = xstrdup(name);
	t->next = d->dests;
	d->dests = t;
	return t;
}

/* Free the destinations nobody uses. Only from the top of a loop callback:
 * never while a dest is being served. */
static void dests_sweep(struct delivery *d)
{
	for (struct dest **p = &d->dests; *p;) {
		struct dest *t = *p;
		if (t->nconns == 0 && t->ndoms == 0 && t->wait_head == NULL) {
			*p = t->next;
			free(t->name);
			free(t);
		} else {
			p = &t->next;
		}
	}
}

static bool slot_free(const struct delivery *d, const struct dest *t)
{
	return t->nconns < d->cfg->delivery.connections_per_domain &&
	       d->nconns < d->cfg->delivery.connections;
}

static void idle_remove(struct conn *k)
{
	for (struct conn **p = &k->dest->idle; *p; p = &(*p)->next_idle)
		if (*p == k) {
			*p = k->next_idle;
			break;
		}
	k->idle = false;
	k->next_idle = NULL;
}

/* QUIT an idle connection of t, or (t NULL) of any destination. Its slot is
 * free once it is over (on_done). */
static bool close_idle(struct delivery *d, struct dest *t)
{
	struct conn *k = t ? t->idle : NULL;
	for (struct dest *o = d->dests; t == NULL && k == NULL && o; o = o->next)
		k = o->idle;
	if (k == NULL)
		return false;
	idle_remove(k);
	smtp_client_quit(k->c);
	return true;
}

static void wait_push(struct dom *m)
{
	struct dest *t = m->dest;
	m->waiting = true;
	m->wait_next = NULL;
	if (t->wait_tail)
		t->wait_tail->wait_next = m;
	else
		t->wait_head = m;
	t->wait_tail = m;
}

static struct dom *wait_pop(struct dest *t)
{
	struct dom *m = t->wait_head;
	if (m == NULL)
		return NULL;
	t->wait_head = m->wait_next;
	if (t->wait_head == NULL)
		t->wait_tail = NULL;
	m->waiting = false;
	m->wait_next = NULL;
	return m;
}

/* Give t's waiting doms what is free now: kept connections and slots. */
static void dest_serve(struct delivery *d, struct dest *t)
{
	while (t->wait_head && (t->idle || slot_free(d, t))) {
		struct dom *m = wait_pop(t);
		if (dom_try_next(m) == DOM_WAITING)
			return; /* it needs what is not free yet */
	}
}

static void serve_all(struct delivery *d)
{
	for (struct dest *t = d->dests; t; t = t->next)
		dest_serve(d, t);
}

static void on_msg(struct smtp_client *c, const struct smtp_client_result *res, void *arg);
static void on_done(struct smtp_client *c, const struct smtp_client_info *info, void *arg);

/* The recipients of m not yet final, as m's message for one connection. */
static void dom_prepare_msg(struct dom *m)
{
	struct job *j = m->job;
	size_t n = 0;
	m->crcpts = calloc(m->n, sizeof *m->crcpts);
	m->cidx = calloc(m->n, sizeof *m->cidx);
	if (m->crcpts == NULL || m->cidx == NULL)
		abort();
	for (size_t i = 0; i < m->n; i++) {
		struct rcpt *r = &j->r[m->idx[i]];
		if (r->state != R_TODO && r->state != R_TEMP)
			continue;
		r->state = R_TODO;
		m->crcpts[n] = (struct smtp_client_rcpt){
		    r->due->rcpt, r->notify_given ? r->notify : 0, r->has_orcpt ? &r->orcpt : NULL};
		m->cidx[n++] = m->idx[i];
	}
	m->msg = (struct smtp_client_msg){
	    .id = j->due->id,
	    .sender = j->due->sender,
	    .rcpts = m->crcpts,
	    .nrcpts = n,
	    .path = j->due->path,
	    .eightbit = j->eightbit,
	    .smtputf8 = j->smtputf8,
	    .ret = j->ret,
	    .envid = j->due->envid,
	};
}

static void dom_drop_msg(struct dom *m)
{
	free(m->crcpts);
	free(m->cidx);
	m->crcpts = NULL;
	m->cidx = NULL;
	m->msg.nrcpts = 0;
}

/* Put m's message on connection k. */
static int conn_send(struct conn *k, struct dom *m, bool cached)
{
	dom_prepare_msg(m);
	k->m = m;
	m->conn = k;
	m->had_conn = true;
	m->cached = cached;
	if (smtp_client_send(k->c, &m->msg, on_msg, k) == 0)
		return 0;
	k->m = NULL;
	m->conn = NULL;
	dom_drop_msg(m);
	return -1;
}

/* Does another domain wait for a slot that only the total limit denies? */
static bool others_wait_for_total(const struct delivery *d, const struct dest *t)
{
	if (d->nconns < d->cfg->delivery.connections)
		return false;
	for (const struct dest *o = d->dests; o; o = o->next)
		if (o != t && o->wait_head && o->nconns < d->cfg->delivery.connections_per_domain)
			return true;
	return false;
}

/* A message is done on k: keep it for the next one to its domain, or end it
 * (also when its slot is wanted by another domain). */
static void conn_release(struct conn *k)
{
	struct delivery *d = k->d;
	const struct config *cfg = d->cfg;
	if (!d->stopping && cfg->delivery.connection_cache_time > 0 &&
	    k->messages < cfg->delivery.connection_reuse_max && smtp_client_usable(k->c) &&
	    (k->dest->wait_head || !others_wait_for_total(d, k->dest))) {
		k->idle = true;
		k->next_idle = k->dest->idle;
		k->dest->idle = k;
		dest_serve(d, k->dest);
		return;
	}
	smtp_client_quit(k->c);
}

/* Open a connection from m to address a of host h. */
static struct conn *conn_open(struct dom *m, const struct dns_host *h, const struct dns_addr *a)
{
	struct job *j = m->job;
	struct delivery *d = j->d;
	struct sockaddr_storage peer;
	socklen_t plen;
	memset(&peer, 0, sizeof peer);
	const struct sockaddr_storage *src = NULL;
	if (a->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&peer;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)d->cfg->delivery.port);
		s4->sin_addr = a->u.v4;
		plen = sizeof *s4;
		src = d->has_src4 ? &d->src4 : NULL;
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&peer;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)d->cfg->delivery.port);
		s6->sin6_addr = a->u.v6;
		plen = sizeof *s6;
		src = d->has_src6 ? &d->src6 : NULL;
	}
	struct conn *k = calloc(1, sizeof *k);
	if (k == NULL)
		abort();
	k->d = d;
	k->dest = m->dest;
	snprintf(k->ip, sizeof k->ip, "%s", a->text);
	unsigned cache = d->cfg->delivery.connection_cache_time;
	struct smtp_client_opts o = {
	    .helo_name = d->cfg->hostname,
	    .peer = (const struct sockaddr *)&peer,
	    .peer_len = plen,
	    .peer_host = h->name,
	    .source = (const struct sockaddr *)src,
	    .source_len = src ? (a->family == AF_INET ? sizeof(struct sockaddr_in)
	                                              : sizeof(struct sockaddr_in6))
	                      : 0,
	    .timeouts = {.idle = cache},
	    .tls = m->notls ? NULL : d->tls,
	    .log_id = j->due->id,
	    .done = on_done,
	    .done_arg = k,
	};
	k->c = smtp_client_new(d->base, &o);
	if (k->c == NULL) {
		free(k);
		return NULL;
	}
	k->next = d->conns;
	d->conns = k;
	k->dest->nconns++;
	d->nconns++;
	return k;
}

/* The per-message record: log line and attempt event. */
static void attempt_record(struct dom *m, const struct smtp_client_info *info, bool reused)
{
	struct job *j = m->job;
	const char *tls = info->tls ? info->tlsp.version : "no";
	const char *what = m->conn_reply ? m->conn_reply : info->last_reply;
	log_info(j->due->id,
	    "event=attempt domain=%s host=%s ip=%s port=%u tls=%s verified=%s reused=%s "
	    "outcome=%s reply=%s reason=%s",
	    log_str(m->name), log_str(info->peer_host), info->peer_ip, info->peer_port, tls,
	    info->tls ? (info->tlsp.verified ? "yes" : "no") : "-", reused ? "yes" : "no",
	    smtp_client_outcome_name(info->outcome), log_str(what), log_str(info->reason));
	struct buf reply = BUF_INIT;
	buf_puts(&reply, esc_val(what));
	job_event(j, "attempt", NULL, "domain=%s host=%s ip=%s tls=%s outcome=%s reply=%s",
	    esc_val(m->name), esc_val(info->peer_host), info->peer_ip, esc_val(tls),
	    smtp_client_outcome_name(info->outcome), buf_cstr(&reply));
	buf_free(&reply);
	free(m->conn_reply);
	m->conn_reply = NULL;
}

/* The message of k's dom is done (for every recipient, with the
 * connection's fate if it broke): record, free k, go on with the dom. */
static void on_msg(struct smtp_client *c, const struct smtp_client_result *res, void *arg)
{
	(void)c;
	struct conn *k = arg;
	struct dom *m = k->m;
	struct job *j = m->job;
	const struct smtp_client_info *info = res->info;
	/* the attempt's reply: the first refusal, else the reply to the final dot */
	const char *what = res->final_reply;
	for (size_t i = 0; i < res->msg->nrcpts; i++)
		if (res->rcpts[i].status != SMTP_RCPT_SENT) {
			what = res->rcpts[i].reply;
			break;
		}
	free(m->conn_reply);
	m->conn_reply = reply_dup(what && *what ? what : info->reason);
	for (size_t i = 0; i < res->msg->nrcpts; i++) {
		const struct smtp_client_rcpt_result *rr = &res->rcpts[i];
		struct rcpt *r = &j->r[m->cidx[i]];
		const char *mta = rr->remote ? info->peer_host : NULL;
		switch (rr->status) {
		case SMTP_RCPT_SENT:
			rcpt_set(r, R_SENT, rr->esc, rr->reply, info->peer_host);
			r->relayed = !info->caps.dsn;
			break;
		case SMTP_RCPT_PERMFAIL:
			rcpt_set(r, R_FAILED, rr->esc, rr->reply, mta);
			break;
		case SMTP_RCPT_TEMPFAIL:
			rcpt_set(r, R_TEMP, rr->esc, rr->reply, mta);
			break;
		default:
			abort();
		}
	}
	attempt_record(m, info, res->reused);
	k->messages++;
	k->m = NULL;
	m->conn = NULL;
	dom_drop_msg(m);
	/* where the recipients still pending go next */
	if (info->outcome == SMTP_CLIENT_TLS_FAILED && !m->notls) {
		m->notls = true; /* the same address again, in the clear */
	} else if (m->cached) {
		/* host/addr still point at the start: try the list afresh, without
		 * the kept connection's address unless the connection itself broke
		 * (the peer may have timed it out: a new one may do) */
		if (info->outcome == SMTP_CLIENT_OK)
			snprintf(m->skip_ip, sizeof m->skip_ip, "%s", k->ip);
	} else {
		m->notls = false;
		m->addr++;
	}
	m->cached = false;
	conn_release(k);
	dom_try_next(m);
}

/* k is over: its slot is free for whoever waits. */
static void on_done(struct smtp_client *c, const struct smtp_client_info *info, void *arg)
{
	struct conn *k = arg;
	struct delivery *d = k->d;
	if (k->m != NULL) {
		/* smtp_client.h: the message's callback always comes first */
		log_err("-", "event=impossible where=delivery-on-done");
		abort();
	}
	log_debug("-",
	    "event=connection-closed domain=%s host=%s ip=%s messages=%u outcome=%s reason=%s",
	    log_str(k->dest->name), log_str(info->peer_host), info->peer_ip, k->messages,
	    smtp_client_outcome_name(info->outcome), log_str(info->reason));
	if (k->idle)
		idle_remove(k);
	for (struct conn **p = &d->conns; *p; p = &(*p)->next)
		if (*p == k) {
			*p = k->next;
			break;
		}
	k->dest->nconns--;
	d->nconns--;
	smtp_client_free(c);
	free(k);
	serve_all(d);
	dests_sweep(d);
}

static bool dom_unfinished(const struct dom *m)
{
	for (size_t i = 0; i < m->n; i++) {
		enum rstate s = m->job->r[m->idx[i]].state;
		if (s == R_TODO || s == R_TEMP)
			return true;
	}
	return false;
}

/* Put m's pending recipients on a kept connection, or on a new one to the
 * next address not tried yet, or wait for a slot, or end the domain. */
static enum dom_step dom_try_next(struct dom *m)
{
	struct job *j = m->job;
	struct delivery *d = j->d;
	struct dest *t = m->dest;
	if (!m->had_conn && t->idle && dom_unfinished(m)) {
		struct conn *k = t->idle;
		idle_remove(k);
		if (conn_send(k, m, true) == 0)
			return DOM_BUSY;
		smtp_client_quit(k->c); /* not usable after all: a new one below */
	}
	while (dom_unfinished(m) && m->host < m->t->nhosts) {
		struct dns_host *h = &m->t->hosts[m->host];
		if (m->addr >= h->naddrs) {
			m->host++;
			m->addr = 0;
			continue;
		}
		const struct dns_addr *a = &h->addrs[m->addr];
		if (strcmp(a->text, m->skip_ip) == 0) {
			m->addr++;
			continue;
		}
		if (!slot_free(d, t)) {
			/* make room where the limit is: this domain's, else any idle one */
			close_idle(
			    d, t->nconns >= d->cfg->delivery.connections_per_domain ? t : NULL);
			wait_push(m);
			return DOM_WAITING;
		}
		struct conn *k = conn_open(m, h, a);
		if (k != NULL && conn_send(k, m, false) == 0)
			return DOM_BUSY; /* on_msg, then on_done */
		log_err(j->due->id, "event=client-failed host=%s ip=%s", log_str(h->name), a->text);
		if (k != NULL)
			smtp_client_quit(k->c); /* its on_done frees it */
		for (size_t i = 0; i < m->n; i++) {
			struct rcpt *r = &j->r[m->idx[i]];
			if (r->state == R_TODO || r->state == R_TEMP)
				rcpt_set(
				    r, R_TEMP, "4.3.0", "local error starting a connection", NULL);
		}
		m->addr++;
	}
	/* every address tried (or all final): untried recipients are temporary */
	for (size_t i = 0; i < m->n; i++) {
		struct rcpt *r = &j->r[m->idx[i]];
		if (r->state == R_TODO)
			rcpt_set(r, R_TEMP, "4.4.1", "no host could be reached", NULL);
	}
	job_dom_done(m);
	return DOM_DONE;
}

/* ---- DNS ---- */

static void dom_fail_all(struct dom *m, enum rstate st, const char *esc, const char *reason)
{
	for (size_t i = 0; i < m->n; i++)
		rcpt_set(&m->job->r[m->idx[i]], st, esc, reason, NULL);
}

static void on_targets(struct dns_targets *t, void *arg)
{
	struct dom *m = arg;
	struct job *j = m->job;
	m->req = NULL;
	m->t = t;
	struct buf why = BUF_INIT;
	buf_printf(&why, "%s: %s", m->name, t->reason ? t->reason : dns_status_name(t->status));
	switch (t->status) {
	case DNS_OK:
		break;
	case DNS_NULLMX:
		buf_reset(&why);
		buf_printf(&why, "556 5.1.10 %s does not accept mail (null MX)", m->name);
		dom_fail_all(m, R_FAILED, "5.1.10", buf_cstr(&why));
		break;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		buf_reset(&why);
		buf_printf(&why, "550 5.1.2 %s: no mail server found (%s)", m->name,
		    t->reason ? t->reason : dns_status_name(t->status));
		dom_fail_all(m, R_FAILED, "5.1.2", buf_cstr(&why));
		break;
	case DNS_TEMPFAIL:
		buf_reset(&why);
		buf_printf(&why, "451 4.4.3 %s: DNS lookup failed (%s)", m->name,
		    t->reason ? t->reason : "temporary failure");
		dom_fail_all(m, R_TEMP, "4.4.3", buf_cstr(&why));
		break;
	default:
		abort();
	}
	if (t->status != DNS_OK) {
		log_info(j->due->id, "event=dns domain=%s status=%s reason=%s", log_str(m->name),
		    dns_status_name(t->status), log_str(t->reason));
		job_event(j, "attempt", NULL, "domain=%s dns=%s reply=%s", esc_val(m->name),
		    dns_status_name(t->status), esc_val(buf_cstr(&why)));
		buf_free(&why);
		job_dom_done(m);
		return;
	}
	buf_free(&why);
	dom_try_next(m);
}

/* ---- the end of an attempt ---- */

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : "";
}

/* Build and deliver a DSN about the recipients of j that action is about
 * (failed; pending, for a delay warning; sent to a next hop without DSN,
 * for "relayed") and whose NOTIFY asks for bit. */
static void job_dsn(struct job *j, enum dsn_action action, unsigned bit, time_t now)
{
	struct delivery *d = j->d;
	struct store_due *e = j->due;
	size_t nr = e->nrcpts, n = 0;
	bool remote = false;
	struct dsn_recipient *dr = calloc(nr, sizeof *dr);
	if (dr == NULL)
		abort();
	for (size_t i = 0; i < nr; i++) {
		struct rcpt *r = &j->r[i];
		bool want;
		switch (action) {
		case DSN_ACTION_FAILED:
			want = r->state == R_FAILED;
			break;
		case DSN_ACTION_DELAYED:
			want = r->state == R_TEMP;
			break;
		case DSN_ACTION_RELAYED:
			want = r->state == R_SENT && r->relayed;
			break;
		default:
			abort();
		}
		if (!want || !(r->notify & bit))
			continue;
		dr[n++] = (struct dsn_recipient){
		    .addr = r->due->rcpt,
		    .orcpt_type = r->has_orcpt ? r->orcpt.type : NULL,
		    .orcpt = r->has_orcpt ? r->orcpt.addr : NULL,
		    .action = action,
		    .status = r->esc[0] ? r->esc : NULL,
		    .diagnostic = r->reply,
		    .remote_mta = r->remote_mta,
		    .last_attempt = now,
		};
	}
	if (n == 0) {
		free(dr);
		return;
	}
	if (e->sender[0] == '\0') {
		/* RFC 3461 6.2: never a report about a report */
		for (size_t i = 0; i < n; i++)
			log_info(e->id, "event=dsn-suppressed rcpt=%s reason=null-sender action=%s",
			    log_str(dr[i].addr),
			    action == DSN_ACTION_FAILED    ? "failed"
			    : action == DSN_ACTION_DELAYED ? "delayed"
			                                   : "relayed");
		free(dr);
		return;
	}
	struct dsn_message dm = {
	    .hostname = d->cfg->hostname,
	    .queue_id = e->id,
	    .sender = e->sender,
	    .envid = e->envid,
	    .ret = j->ret,
	    .arrival = e->created,
	    .retry_until = e->created + (time_t)d->cfg->delivery.max_lifetime,
	    .msg_path = e->path,
	    .now = now,
	};
	struct buf out = BUF_INIT;
	buf_init(&out, 64u * 1024 * 1024);
	enum dsn_rc rc = dsn_build(&dm, dr, n, &out);
	if (rc != DSN_OK) {
		log_err(e->id, "event=dsn-failed error=%s", dsn_rc_str(rc));
	} else if (dsn_send(d->st, e->id, e->sender, &out, &remote) == 0) {
		if (remote)
			event_active(d->wake, EV_READ, 0);
		job_event(j,
		    action == DSN_ACTION_FAILED    ? "bounced"
		    : action == DSN_ACTION_DELAYED ? "delay-warning"
		                                   : "relayed-notice",
		    NULL, "to=%s rcpts=%zu", esc_val(e->sender), n);
	}
	buf_free(&out);
	free(dr);
}

static void job_free(struct job *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; i < j->ndoms; i++) {
		struct dom *m = &j->doms[i];
		if (m->req)
			dns_cancel(m->req);
		if (m->dest)
			m->dest->ndoms--; /* the conns and dests go in delivery_main */
		dns_targets_free(m->t);
		free(m->name);
		free(m->idx);
		free(m->crcpts);
		free(m->cidx);
		free(m->conn_reply);
	}
	free(j->doms);
	for (size_t i = 0; j->r && i < j->due->nrcpts; i++) {
		free(j->r[i].reply);
		free(j->r[i].remote_mta);
	}
	free(j->r);
	for (size_t i = 0; i < j->nev; i++)
		buf_free(&j->evtext[i]);
	free(j->ev);
	free(j->evtext);
	free(j->updates);
	store_due_free(j->due, 1);
	free(j);
}

static void job_unlink(struct job *j)
{
	struct delivery *d = j->d;
	for (struct job **p = &d->jobs; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			d->njobs--;
			return;
		}
}

/* All domains are done: bounces, warning, the attempt record. */
static void job_finish(struct job *j)
{
	struct delivery *d = j->d;
	const struct config *cfg = d->cfg;
	struct store_due *e = j->due;
	time_t now = time(NULL);
	bool expired = now - e->created >= (time_t)cfg->delivery.max_lifetime;
	size_t pending = 0, sent = 0, failed = 0;
	for (size_t i = 0; i < e->nrcpts; i++) {
		struct rcpt *r = &j->r[i];
		if (r->state == R_TEMP && expired) {
			char why[REPLY_MAX + 64];
			snprintf(why, sizeof why, "%s (gave up after %lld attempts)",
			    r->reply ? r->reply : "", (long long)e->attempts + 1);
			char esc[SMTP_REPLY_ESC_MAX];
			snprintf(esc, sizeof esc, "%s", r->esc[0] == '4' ? r->esc : "4.4.7");
			rcpt_set(r, R_FAILED, esc, why, r->remote_mta);
		}
		switch (r->state) {
		case R_SENT:
			sent++;
			job_event(j, "sent", r->due->rcpt, "host=%s reply=%s",
			    esc_val(r->remote_mta), esc_val(r->reply));
			break;
		case R_FAILED:
			failed++;
			job_event(j, "failed", r->due->rcpt, "host=%s status=%s reply=%s",
			    esc_val(r->remote_mta), r->esc, esc_val(r->reply));
			break;
		case R_TEMP:
			pending++;
			job_event(j, "deferred", r->due->rcpt, "status=%s reply=%s", r->esc,
			    esc_val(r->reply));
			break;
		default:
			abort();
		}
	}
	/* the reports first: a crash before the record repeats them, never loses them */
	if (failed > 0)
		job_dsn(j, DSN_ACTION_FAILED, DSN_NOTIFY_FAILURE, now);
	if (sent > 0) /* NOTIFY=SUCCESS, and the next hop cannot take the request on */
		job_dsn(j, DSN_ACTION_RELAYED, DSN_NOTIFY_SUCCESS, now);
	bool warn = false;
	if (pending > 0 && !e->warned && cfg->delivery.delay_warning > 0 &&
	    now - e->created >= (time_t)cfg->delivery.delay_warning) {
		warn = true;
		job_dsn(j, DSN_ACTION_DELAYED, DSN_NOTIFY_DELAY, now);
	}
	uint64_t delay = cfg->delivery.retry_min;
	for (int64_t i = 0; i < e->attempts && delay < cfg->delivery.retry_max; i++)
		delay *= 2;
	if (delay > cfg->delivery.retry_max)
		delay = cfg->delivery.retry_max;
	time_t next = j->stopped ? now : now + (time_t)delay; /* stopped: due at the next start */

	struct store_rcpt_update *u = calloc(e->nrcpts, sizeof *u);
	if (u == NULL)
		abort();
	const char *last_error = NULL;
	for (size_t i = 0; i < e->nrcpts; i++) {
		struct rcpt *r = &j->r[i];
		u[i].rcpt = r->due->rcpt;
		u[i].status = r->state == R_SENT     ? "sent"
		              : r->state == R_FAILED ? "failed"
		                                     : "pending";
		u[i].reply = r->reply;
		if (r->state == R_TEMP && last_error == NULL)
			last_error = r->reply;
	}
	for (size_t i = 0; i < j->nev; i++)
		j->ev[i].text = buf_cstr(&j->evtext[i]);
	j->att = (struct store_attempt){
	    .id = e->id,
	    .rcpts = u,
	    .nrcpts = e->nrcpts,
	    .next_attempt = next,
	    .last_error = last_error ? last_error : "",
	    .warned = warn,
	    .events = j->ev,
	    .nevents = j->nev,
	};
	j->updates = u;
	j->nsent = sent;
	j->nfailed = failed;
	j->npending = pending;
	j->retry_in = pending ? (long long)delay : 0;
	/* recorded with the others that end about now, in one commit; the job
	 * stays in d->jobs until then, so that no scan starts the entry again */
	j->finished = true;
	d->nfinished++;
	if (!evtimer_pending(d->flush, NULL)) {
		struct timeval tv = {0, 1000};
		evtimer_add(d->flush, &tv);
	}
}

/* Record every finished job's attempt in one transaction, then free them. */
static void flush_attempts(struct delivery *d)
{
	if (d->nfinished == 0)
		return;
	struct store_attempt *a = calloc(d->nfinished, sizeof *a);
	struct job **js = calloc(d->nfinished, sizeof *js);
	int *rcs = calloc(d->nfinished, sizeof *rcs);
	bool *removed = calloc(d->nfinished, sizeof *removed);
	if (a == NULL || js == NULL || rcs == NULL || removed == NULL)
		abort();
	size_t n = 0;
	for (struct job *j = d->jobs; j; j = j->next)
		if (j->finished) {
			js[n] = j;
			a[n++] = j->att;
		}
	int rc = STORE_BUSY;
	for (int attempt = 0; attempt < 20 && rc == STORE_BUSY; attempt++) {
		rc = store_queue_attempts(d->st, a, n, rcs, removed);
		if (rc == STORE_BUSY)
			usleep(50000);
	}
	if (rc != STORE_OK && !d->stopping) {
		/* nothing was written (disk full, a long lock): keep the jobs, so
		 * that no scan starts their entries again, and try again soon */
		log_err("-", "event=attempts-unrecorded jobs=%zu retry_in=1 error=\"%s\"", n,
		    log_str(store_error(d->st)));
		struct timeval tv = {1, 0};
		evtimer_add(d->flush, &tv);
		free(a);
		free(js);
		free(rcs);
		free(removed);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		struct job *j = js[k];
		const char *id = j->due->id;
		if (rcs[k] == STORE_NOTFOUND)
			log_info(id, "event=attempt-unrecorded reason=deleted-meanwhile");
		else if (rcs[k] != STORE_OK)
			log_err(id, "event=attempt-unrecorded error=\"%s\"",
			    log_str(store_error(d->st)));
		log_info(id,
		    "event=attempt-done sent=%zu failed=%zu pending=%zu retry_in=%lld removed=%s "
		    "batch=%zu",
		    j->nsent, j->nfailed, j->npending, j->retry_in, removed[k] ? "yes" : "no", n);
		job_unlink(j);
		job_free(j);
	}
	d->nfinished = 0;
	free(a);
	free(js);
	free(rcs);
	free(removed);
	/* room for more: scan again once half the room is free, so that a busy
	 * queue is read in batches */
	if (!d->stopping && d->njobs <= d->jobs_max / 2)
		event_active(d->wake, EV_READ, 0);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush_attempts(arg);
}

/* End j at once (delivery_stop): what is not final yet stays pending. */
static void job_stop(struct job *j)
{
	for (size_t i = 0; i < j->due->nrcpts; i++)
		if (j->r[i].state == R_TODO)
			rcpt_set(&j->r[i], R_TEMP, "4.3.2",
			    "delivery stopped (the server shut down)", NULL);
	j->stopped = true;
	job_finish(j);
}

static void job_dom_done(struct dom *m)
{
	m->done = true;
	struct job *j = m->job;
	if (--j->doms_left == 0)
		job_finish(j);
}

/* ---- starting jobs ---- */

static bool job_running(struct delivery *d, const char *id)
{
	for (struct job *j = d->jobs; j; j = j->next)
		if (strcmp(j->due->id, id) == 0)
			return true;
	return false;
}

/* Does the blob have bytes >= 0x80 (needs 8BITMIME)? */
static bool file_eightbit(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	char b[65536];
	ssize_t n;
	bool eight = false;
	while (!eight && (n = read(fd, b, sizeof b)) > 0)
		for (ssize_t i = 0; i < n && !eight; i++)
			eight = (unsigned char)b[i] >= 0x80;
	close(fd);
	return eight;
}

static bool str_8bit(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* Take ownership of *e (moved out) and start its attempt. */
static void job_start(struct delivery *d, struct store_due *e)
{
	struct job *j = calloc(1, sizeof *j);
	if (j == NULL)
		abort();
	j->d = d;
	j->due = malloc(sizeof *j->due);
	if (j->due == NULL)
		abort();
	*j->due = *e;
	memset(e, 0, sizeof *e);
	e = j->due;
	j->r = calloc(e->nrcpts, sizeof *j->r);
	j->doms = calloc(e->nrcpts, sizeof *j->doms);
	if (j->r == NULL || j->doms == NULL)
		abort();
	j->ret = DSN_RET_DEFAULT;
	if (e->ret && strcasecmp(e->ret, "FULL") == 0)
		j->ret = DSN_RET_FULL;
	else if (e->ret && strcasecmp(e->ret, "HDRS") == 0)
		j->ret = DSN_RET_HDRS;
	j->eightbit = file_eightbit(e->path);
	j->smtputf8 = str_8bit(e->sender);
	for (size_t i = 0; i < e->nrcpts; i++) {
		struct rcpt *r = &j->r[i];
		r->due = &e->rcpts[i];
		r->notify = DSN_NOTIFY_DEFAULT;
		if (r->due->notify &&
		    dsn_parse_notify(r->due->notify, strlen(r->due->notify), &r->notify))
			r->notify_given = true;
		if (r->due->orcpt &&
		    dsn_parse_orcpt(r->due->orcpt, strlen(r->due->orcpt), &r->orcpt))
			r->has_orcpt = true;
		if (str_8bit(r->due->rcpt))
			j->smtputf8 = true;
		/* group by domain (case-insensitive) */
		const char *dn = domain_of(r->due->rcpt);
		size_t k;
		for (k = 0; k < j->ndoms; k++)
			if (strcasecmp(j->doms[k].name, dn) == 0)
				break;
		struct dom *m = &j->doms[k];
		if (k == j->ndoms) {
			j->ndoms++;
			m->job = j;
			m->name = xstrdup(dn);
			util_lower(m->name);
			m->dest = dest_get(d, m->name);
			m->dest->ndoms++;
			m->idx = calloc(e->nrcpts, sizeof *m->idx);
			if (m->idx == NULL)
				abort();
		}
		m->idx[m->n++] = i;
		r->dom = m;
	}
	j->next = d->jobs;
	d->jobs = j;
	d->njobs++;
	j->doms_left = j->ndoms;
	log_info(e->id, "event=attempt-start sender=%s rcpts=%zu domains=%zu attempt=%lld",
	    log_str(e->sender), e->nrcpts, j->ndoms, (long long)e->attempts + 1);
	/* the lookups complete later on the loop, never inside dns_targets */
	for (size_t k = 0; k < j->ndoms; k++)
		j->doms[k].req =
		    dns_targets(d->dns, j->doms[k].name, d->family, on_targets, &j->doms[k]);
}

static void scan(struct delivery *d)
{
	if (d->stopping || d->njobs >= d->jobs_max)
		return;
	/* the entries in progress are due too (their attempt is not recorded
	 * yet) and, being the oldest, come first: ask for enough to get past them */
	struct store_due *due = NULL;
	size_t n = 0;
	int rc = store_queue_due(d->st, time(NULL), d->jobs_max + d->njobs, &due, &n);
	if (rc != STORE_OK) {
		log_warn("-", "event=queue-scan-failed error=\"%s\"", log_str(store_error(d->st)));
		return;
	}
	for (size_t i = 0; i < n && d->njobs < d->jobs_max; i++)
		if (!job_running(d, due[i].id))
			job_start(d, &due[i]);
	store_due_free(due, n); /* the moved-out ones are zeroed */
	dests_sweep(d);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	scan(arg);
}

static void *delivery_main(void *arg)
{
	struct delivery *d = arg;
	scan(d); /* what was due when we stopped */
	event_base_dispatch(d->base);
	/* stopping: the connections go first (no callbacks any more); every
	 * job still in progress ends as it stands, so that what was sent or
	 * failed is recorded (and bounced) and a restart repeats none of it;
	 * the rest stays pending, due at once at the next start */
	while (d->conns) {
		struct conn *k = d->conns;
		d->conns = k->next;
		smtp_client_free(k->c);
		free(k);
	}
	for (struct job *j = d->jobs; j; j = j->next)
		if (!j->finished)
			job_stop(j);
	flush_attempts(d);
	while (d->jobs) {
		struct job *j = d->jobs;
		d->jobs = j->next;
		job_free(j);
	}
	while (d->dests) {
		struct dest *t = d->dests;
		d->dests = t->next;
		free(t->name);
		free(t);
	}
	return NULL;
}

struct delivery *delivery_start(const struct config *cfg, struct buf *err)
{
	struct delivery *d = calloc(1, sizeof *d);
	if (d == NULL) {
		buf_puts(err, "out of memory");
		return NULL;
	}
	d->cfg = cfg;
	/* enough entries in progress to keep every connection busy */
	d->jobs_max = 2 * (size_t)cfg->delivery.connections;
	if (d->jobs_max < DELIVERY_JOBS_MIN)
		d->jobs_max = DELIVERY_JOBS_MIN;
	if (dns_family_parse(cfg->delivery.family, &d->family) < 0)
		d->family = DNS_FAMILY_ANY;
	const char *src = cfg->delivery.source;
	if (src && *src) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&d->src4;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&d->src6;
		if (inet_pton(AF_INET, src, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			d->has_src4 = true;
		} else if (inet_pton(AF_INET6, src, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			d->has_src6 = true;
		}
		/* a source of one family only: the other family is not used */
		if (d->has_src4 && d->family == DNS_FAMILY_ANY)
			d->family = DNS_FAMILY_IPV4;
		if (d->has_src6 && d->family == DNS_FAMILY_ANY)
			d->family = DNS_FAMILY_IPV6;
	}
	d->base = event_base_new();
	d->st = d->base ? store_open(cfg->data_dir, err) : NULL;
	struct dns_options dopt = {.resolver = cfg->resolver, .timeout_ms = 0};
	if (d->st != NULL)
		d->dns = dns_resolver_new(d->base, &dopt, err);
	if (d->dns != NULL)
		d->tls = tls_client_new(err);
	if (d->tls == NULL)
		goto fail;
	d->wake = event_new(d->base, -1, EV_PERSIST, on_wake, d);
	d->timer = event_new(d->base, -1, EV_PERSIST, on_wake, d);
	d->flush = evtimer_new(d->base, on_flush, d);
	struct timeval tv = {(time_t)cfg->delivery.scan_interval, 0};
	if (d->wake == NULL || d->timer == NULL || d->flush == NULL ||
	    event_add(d->timer, &tv) < 0) {
		buf_puts(err, "delivery: cannot set up events");
		goto fail;
	}
	if (pthread_create(&d->thread, NULL, delivery_main, d) != 0) {
		buf_puts(err, "delivery: cannot start the thread");
		goto fail;
	}
	log_info("-",
	    "event=delivery-started scan_interval=%u retry_min=%u retry_max=%u "
	    "max_lifetime=%u delay_warning=%u port=%u connections=%u per_domain=%u "
	    "cache_time=%u reuse_max=%u",
	    cfg->delivery.scan_interval, cfg->delivery.retry_min, cfg->delivery.retry_max,
	    cfg->delivery.max_lifetime, cfg->delivery.delay_warning, cfg->delivery.port,
	    cfg->delivery.connections, cfg->delivery.connections_per_domain,
	    cfg->delivery.connection_cache_time, cfg->delivery.connection_reuse_max);
	return d;
fail:
	if (d->wake)
		event_free(d->wake);
	if (d->timer)
		event_free(d->timer);
	if (d->flush)
		event_free(d->flush);
	tls_client_free(d->tls);
	dns_resolver_free(d->dns);
	store_close(d->st);
	if (d->base)
		event_base_free(d->base);
	if (buf_cstr(err)[0] == '\0')
		buf_puts(err, "delivery: cannot start");
	free(d);
	return NULL;
}

void delivery_notify(void *arg)
{
	struct delivery *d = arg;
	event_active(d->wake, EV_READ, 0);
}

/* Runs on the loop: mark stopping and leave the loop. */
static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct delivery *d = arg;
	d->stopping = true;
	event_base_loopbreak(d->base);
}

void delivery_stop(struct delivery *d)
{
	if (d == NULL)
		return;
	event_base_once(d->base, -1, EV_TIMEOUT, on_stop, d, NULL);
	pthread_join(d->thread, NULL);
	event_free(d->wake);
	event_free(d->timer);
	event_free(d->flush);
	dns_resolver_free(d->dns);
	tls_client_free(d->tls);
	store_close(d->st);
	event_base_free(d->base);
	free(d);
}
