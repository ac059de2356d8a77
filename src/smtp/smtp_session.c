/*
 * smtp_session.c - one SMTP server session: a state machine on one event
 * loop (RFC 5321 with PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES,
 * SMTPUTF8, CHUNKING).
 *
 * Shape: the I/O layer (a libevent bufferevent) delivers bytes; smtp_process()
 * turns them into command lines, DATA content or BDAT chunks; commands go
 * through one table {verb, states allowed, handler}; every transition goes
 * through enter_state(). Parsing is in smtp_parse.c (pure functions).
 *
 * Security-relevant invariants:
 * - 250 after DATA/BDAT is sent only from commit_done(), after the accept
 *   path reports the message durable.
 * - End of data is <CRLF>.<CRLF> only; a message with a bare LF or CR is
 *   refused (554) after its real end, so smuggled commands stay data.
 * - Only local recipients are accepted on this listener: anything that is
 *   not a local domain, and any local part with relay syntax, is refused.
 * - Every input is bounded: line length, message size, recipients, errors,
 *   junk commands, messages per session, time per command and per chunk.
 * - Peer-supplied text reaches logs only escaped (log_str) and the Received:
 *   header only sanitised.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/dkim.h"
#include "auth/msgcheck.h"
#include "auth/pwcheck.h"
#include "auth/sasl.h"
#include "auth/spf.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/tls.h"
#include "mime/addr.h"
#include "core/util.h"
#include "queue/accept.h"
#include "queue/dsn.h"
#include "smtp/smtp_input.h"
#include "smtp/smtp_parse.h"
#include "smtp/smtp_server.h"
#include "store/store.h"

#define OUT_FLUSH (64 * 1024)     /* write content to the blob in chunks this big */
#define OUTPUT_PAUSE (256 * 1024) /* stop reading while this much output waits */
#define INPUT_HIGH (256 * 1024)   /* read at most this far ahead of processing */
#define HELO_MAX 255

enum smtp_state {
	S_GREETING,   /* banner sent, waiting for HELO/EHLO */
	S_READY,      /* greeted, no transaction */
	S_MAIL,       /* MAIL accepted, waiting for RCPT */
	S_RCPT,       /* at least one RCPT accepted */
	S_DATA,       /* reading DATA content */
	S_BDAT,       /* reading a BDAT chunk */
	S_BDAT_WAIT,  /* between BDAT chunks of one transaction */
	S_COMMIT,     /* waiting for the durable commit (input paused) */
	S_TLS,        /* TLS handshake in progress */
	S_AUTH,       /* AUTH: waiting for the client's next SASL response line */
	S_AUTH_CHECK, /* AUTH: password check (or failure delay) pending, input paused */
	S_SPF_WAIT,   /* DATA/BDAT waits for the SPF check of MAIL FROM, input paused */
	S_CHECK_WAIT, /* end of data waits for DKIM keys and DMARC records, input paused */
	S_CLOSING,    /* last reply queued; close once it is written */
};

static const char *state_name(enum smtp_state st)
{
	switch (st) {
	case S_GREETING:
		return "greeting";
	case S_READY:
		return "ready";
	case S_MAIL:
		return "mail";
	case S_RCPT:
		return "rcpt";
	case S_DATA:
		return "data";
	case S_BDAT:
		return "bdat";
	case S_BDAT_WAIT:
		return "bdat-wait";
	case S_COMMIT:
		return "commit";
	case S_TLS:
		return "tls-handshake";
	case S_AUTH:
		return "auth";
	case S_AUTH_CHECK:
		return "auth-check";
	case S_SPF_WAIT:
		return "spf-wait";
	case S_CHECK_WAIT:
		return "check-wait";
	case S_CLOSING:
		return "closing";
	default:
		abort();
	}
}

struct txn {
	char *mail_from; /* "" for <> */
	bool smtputf8;
	uint64_t declared_size;
	size_t nrcpts;    /* accepted RCPT commands */
	char *first_rcpt; /* for "for <...>" in Received: when nrcpts == 1 */
	char **users;     /* distinct local owners */
	size_t nusers, ausers;
	char **remote; /* remote alias targets */
	size_t nremote, aremote;
	/* DSN (RFC 3461): MAIL's RET and ENVID (decoded), NULL if not given;
	 * per remote recipient (parallel to remote) its NOTIFY and ORCPT as
	 * passed on; every RCPT that reached local mailboxes (for reports) */
	char *ret;
	char *envid;
	char **remote_notify;
	char **remote_orcpt;
	struct accept_rcpt *lrcpts;
	size_t nlrcpts;
	/* SPF of the sender (smtp listeners, not for our own users): started at
	 * MAIL, awaited by DATA/BDAT, reported in Authentication-Results */
	struct spf_req *spf_req; /* pending */
	struct spf_eval *spf;    /* done */
	struct event *spf_timer; /* bounds the check: checks.timeout */
	bool spf_timed_out;
	/* DKIM, DMARC and the policy (received mail): set up when the header
	 * section is complete, decided at the end of data; the blob is in late
	 * mode, Authentication-Results goes in front at the end */
	struct msgcheck *mc;
	bool body_out; /* the header section went to the blob: the rest is body */
	/* submission: DKIM signing with the From domain's keys (late mode) */
	struct dkim_signer *signer;
	struct accept_msg *msg;
	struct buf out;          /* content waiting to be written to the blob */
	struct smtp_hdr_scan hs; /* where the header section ends */
	uint64_t hdr_limit;
	bool hdr_too_big;       /* the header section exceeds limits.header_size */
	bool submission;        /* from an authenticated user: fix up and check headers */
	bool strip_ar;          /* received mail: drop forged Authentication-Results */
	bool hdr_fixed;         /* submission: the header section was inspected */
	size_t scanned;         /* bytes of out already fed to hs */
	const char *from_reply; /* submission: why the From: header is refused */
	char *from_detail;      /* ... and which address */
	bool failed;            /* BDAT: the transaction already failed */
	const char *fail_reply;
	uint64_t bdat_total;
};

struct smtp_session {
	char id[UTIL_QID_LEN + 1];
	struct worker *w;
	struct bufferevent *bev;
	struct sockaddr_storage ss;
	char ip[INET6_ADDRSTRLEN];
	enum listener_kind kind;
	enum smtp_state state;
	char *helo;
	bool esmtp;
	bool output_paused; /* reading stopped until output drains */
	bool dead;          /* connection gone while a commit was pending */
	const char *end_reason;
	unsigned nerrors, njunk, nmessages;
	enum smtp_state bdat_prev; /* state to return to after a refused chunk */
	bool bdat_last;
	const char *bdat_reply; /* reply for a chunk read only to be discarded */
	struct smtp_input in;   /* framing of the input stream */
	struct txn *tx;
	/* TLS */
	bool tls;          /* the connection is encrypted */
	char *tls_comment; /* for Received: */
	/* local submission (unix socket): the peer's account */
	char *local_user;
	unsigned local_uid;
	/* AUTH */
	char *auth_user; /* the authenticated user ("local@domain"), NULL if none */
	enum { AUTH_NONE, AUTH_PLAIN, AUTH_LOGIN_USER, AUTH_LOGIN_PASS } auth_step;
	struct buf auth_login;        /* LOGIN: the user name, until the password comes */
	struct pwcheck_req *auth_req; /* pending check (owned by the pool until its callback) */
	struct event *auth_delay;     /* delays a failure reply */
	struct event *close_timer;    /* STARTTLS sessions: waits for the last bytes to leave */
	/* S_SPF_WAIT: the DATA or BDAT line to handle once SPF is done */
	char *parked_line;
	size_t parked_len;
	enum smtp_state parked_state;
	unsigned close_polls;
};

static void smtp_process(struct smtp_session *s);
static void session_free(struct smtp_session *s);
static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* ---------------------------------------------------------------- replies */

static void reply(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void reply(struct smtp_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static void enter_state(struct smtp_session *s, enum smtp_state st)
{
	if (s->state != st)
		log_debug(s->id, "event=state from=%s to=%s", state_name(s->state), state_name(st));
	s->state = st;
	const struct config_limits *l = &s->w->cfg->limits;
	struct timeval rt = {
	    (st == S_DATA || st == S_BDAT) ? l->data_timeout : l->command_timeout, 0};
	struct timeval wt = {l->command_timeout, 0};
	bufferevent_set_timeouts(s->bev, &rt, &wt);
}

static void close_timer_cb(evutil_socket_t fd, short what, void *arg);

/* Check from the loop (soon) whether the last bytes have left, then free. */
static void arm_close_check(struct smtp_session *s)
{
	static const struct timeval now = {0, 0};
	if (s->close_timer == NULL)
		s->close_timer = evtimer_new(s->w->base, close_timer_cb, s);
	if (s->close_timer == NULL)
		abort(); /* out of memory for one small event: no way to end the session */
	evtimer_add(s->close_timer, &now);
}

/* Close once the queued last reply is written. The session is never freed
 * synchronously here: callers may still look at its state. */
static void close_after_reply(struct smtp_session *s, const char *why)
{
	if (s->end_reason == NULL)
		s->end_reason = why;
	enter_state(s, S_CLOSING);
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
	/* Usually the queued reply makes the write callback run once it is
	 * written; a TLS bufferevent may have taken it already, so check again
	 * from the loop. */
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		arm_close_check(s);
}

/* A client error: counts toward the error limit. Returns false if the
 * session was closed for it. */
static bool count_error(struct smtp_session *s)
{
	if (++s->nerrors > s->w->cfg->limits.errors) {
		reply(s, "421 4.7.0 %s Error: too many errors, closing connection",
		    s->w->cfg->hostname);
		close_after_reply(s, "too-many-errors");
		return false;
	}
	return true;
}

static bool count_junk(struct smtp_session *s)
{
	if (++s->njunk > s->w->cfg->limits.junk_commands) {
		reply(s, "421 4.7.0 %s Error: too many commands without mail, closing connection",
		    s->w->cfg->hostname);
		close_after_reply(s, "too-many-junk-commands");
		return false;
	}
	return true;
}

static bool is_submission(const struct smtp_session *s)
{
	return s->kind != LISTEN_SMTP;
}

/* Mail from this session may go to any domain: an authenticated user's, or a
 * trusted local program's. */
static bool may_relay(const struct smtp_session *s)
{
	return s->auth_user || s->local_user;
}

/* A client whose mail gets the trust checks: not one of our users, not a
 * local program, not on a submission listener. */
static bool checked_client(const struct smtp_session *s)
{
	return !is_submission(s) && !may_relay(s) && s->ss.ss_family != AF_UNIX;
}

static bool peer_loopback(const struct smtp_session *s)
{
	if (s->ss.ss_family == AF_UNIX)
		return false;
	if (s->ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&s->ss;
		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&s->ss;
	return IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
}

/* AUTH is offered on the submission listeners, over TLS (or, when the
 * operator allows it for tests, to loopback clients in the clear). */
static bool auth_offered(const struct smtp_session *s)
{
	return is_submission(s) && s->kind != LISTEN_LOCAL &&
	       (s->tls || (s->w->cfg->submission.plain_auth_loopback && peer_loopback(s)));
}

static bool tls_offered(const struct smtp_session *s)
{
	return !s->tls && server_tls(s->w->server) != NULL;
}

/* The client's address as bytes, for the login throttle. */
static const void *peer_key(const struct smtp_session *s, size_t *len)
{
	if (s->ss.ss_family == AF_INET6) {
		*len = 16;
		return &((const struct sockaddr_in6 *)&s->ss)->sin6_addr;
	}
	*len = 4;
	return &((const struct sockaddr_in *)&s->ss)->sin_addr;
}

/* ---------------------------------------------------------------- transaction */

static void txn_free(struct txn *t)
{
	if (t == NULL)
		return;
	free(t->mail_from);
	free(t->first_rcpt);
	free(t->from_detail);
	for (size_t i = 0; i < t->nusers; i++)
		free(t->users[i]);
	free(t->users);
	for (size_t i = 0; i < t->nremote; i++) {
		free(t->remote[i]);
		if (t->remote_notify)
			free(t->remote_notify[i]);
		if (t->remote_orcpt)
			free(t->remote_orcpt[i]);
	}
	free(t->remote);
	free(t->remote_notify);
	free(t->remote_orcpt);
	free(t->ret);
	free(t->envid);
	accept_rcpts_free(t->lrcpts, t->nlrcpts);
	spf_cancel(t->spf_req);
	spf_eval_free(t->spf);
	msgcheck_free(t->mc);
	dkim_signer_free(t->signer);
	if (t->spf_timer)
		event_free(t->spf_timer);
	accept_abort(t->msg);
	buf_free(&t->out);
	free(t);
}

static void txn_reset(struct smtp_session *s)
{
	txn_free(s->tx);
	s->tx = NULL;
}

/* The message of this transaction was refused (the reply is queued): drop
 * it, back to the ready state; the refusal counts as a client error. */
static void txn_refused(struct smtp_session *s)
{
	txn_reset(s);
	enter_state(s, S_READY);
	count_error(s);
}

/* Add str to a set of strings (exact compare); false on OOM. */
static bool set_add(char ***v, size_t *n, size_t *a, const char *str)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i], str) == 0)
			return true;
	if (*n == *a) {
		size_t na = *a ? *a * 2 : 4;
		char **nv = realloc(*v, na * sizeof *nv);
		if (nv == NULL)
			return false;
		*v = nv;
		*a = na;
	}
	char *d = strdup(str);
	if (d == NULL)
		return false;
	(*v)[(*n)++] = d;
	return true;
}

/* A remote recipient with its DSN parameters (NULL: not given). An address
 * already there keeps the parameters of its first RCPT. */
static bool remote_add(struct txn *t, const char *addr, const char *notify, const char *orcpt)
{
	size_t before = t->nremote;
	if (!set_add(&t->remote, &t->nremote, &t->aremote, addr))
		return false;
	if (t->nremote == before)
		return true;
	char **nn = realloc(t->remote_notify, t->aremote * sizeof *nn);
	if (nn != NULL)
		t->remote_notify = nn;
	char **no = nn ? realloc(t->remote_orcpt, t->aremote * sizeof *no) : NULL;
	if (no != NULL)
		t->remote_orcpt = no;
	char *dn = notify ? strdup(notify) : NULL, *dor = orcpt ? strdup(orcpt) : NULL;
	if (nn == NULL || no == NULL || (notify && dn == NULL) || (orcpt && dor == NULL)) {
		free(dn);
		free(dor);
		free(t->remote[--t->nremote]);
		return false;
	}
	t->remote_notify[before] = dn;
	t->remote_orcpt[before] = dor;
	return true;
}

/* An RCPT that reached the local mailboxes of users (r->users, already in
 * t->users), with its DSN parameters. */
static bool lrcpt_add(
    struct txn *t, const char *rcpt, const char *orcpt, unsigned notify, const struct store_rcpt *r)
{
	struct accept_rcpt *n = realloc(t->lrcpts, (t->nlrcpts + 1) * sizeof *n);
	if (n == NULL)
		return false;
	t->lrcpts = n;
	struct accept_rcpt lr = {
	    .rcpt = strdup(rcpt),
	    .orcpt = orcpt ? strdup(orcpt) : NULL,
	    .notify = notify,
	    .expanded = r->n + r->nremote > 1,
	    .remote = r->nremote > 0,
	    .users = calloc(r->n, sizeof *lr.users),
	    .nusers = r->n,
	};
	if (lr.rcpt == NULL || (orcpt && lr.orcpt == NULL) || lr.users == NULL) {
		free(lr.rcpt);
		free(lr.orcpt);
		free(lr.users);
		return false;
	}
	for (size_t i = 0; i < r->n; i++)
		for (size_t k = 0; k < t->nusers; k++)
			if (strcmp(t->users[k], r->users[i]) == 0) {
				lr.users[i] = k;
				break;
			}
	t->lrcpts[t->nlrcpts++] = lr;
	return true;
}

/* ---------------------------------------------------------------- Received: */

static bool dot_atom_address(const char *a)
{
	for (; *a; a++) {
		unsigned char c = (unsigned char)*a;
		if (c <= 0x20 || c >= 0x7f || strchr("\"(),:;<>[\\]", c))
			return false;
	}
	return true;
}

static void write_received(struct smtp_session *s)
{
	struct txn *t = s->tx;
	struct buf h = BUF_INIT;
	buf_init(&h, 4096);
	char date[64];
	time_t now = (time_t)(t->msg->received_ms / 1000);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if (s->local_user) {
		/* locally submitted: no network peer to name */
		buf_printf(&h, "Received: by %s (dakiya, from userid %u ", s->w->cfg->hostname,
		    s->local_uid);
		smtp_header_put_word(&h, s->local_user, 64);
		buf_printf(&h, ")\r\n\tid %s", t->msg->qid);
	} else {
		/* RFC 3848 / RFC 6531 protocol names: S = TLS, A = authenticated */
		char proto[16];
		snprintf(proto, sizeof proto, "%s%s%s%s", t->smtputf8 ? "UTF8" : "",
		    s->esmtp ? "ESMTP" : "SMTP", s->tls ? "S" : "", s->auth_user ? "A" : "");
		buf_puts(&h, "Received: from ");
		smtp_header_put_word(&h, s->helo ? s->helo : "unknown", HELO_MAX);
		buf_printf(&h, " (%s%s])", s->ss.ss_family == AF_INET6 ? "[IPv6:" : "[", s->ip);
		if (s->tls_comment)
			buf_printf(&h, "\r\n\t(%s)", s->tls_comment);
		if (s->auth_user && s->w->cfg->submission.received_login) {
			buf_puts(&h, "\r\n\t(authenticated as ");
			smtp_header_put_word(&h, s->auth_user, 300);
			buf_puts(&h, ")");
		}
		buf_printf(&h, "\r\n\tby %s (dakiya) with %s id %s", s->w->cfg->hostname, proto,
		    t->msg->qid);
	}
	if (t->nrcpts == 1 && t->first_rcpt && dot_atom_address(t->first_rcpt) &&
	    strlen(t->first_rcpt) < 300)
		buf_printf(&h, "\r\n\tfor <%s>", t->first_rcpt);
	buf_printf(&h, "; %s\r\n", date);
	if (!buf_err(&h))
		accept_write_prefix(t->msg, h.data, h.len);
	else
		t->msg->write_errno = EOVERFLOW;
	buf_free(&h);
}

/* ---------------------------------------------------------------- commit */

static void commit_done(struct accept_msg *m, void *arg)
{
	struct smtp_session *s = arg;
	struct txn *t = s->tx;
	t->msg = NULL; /* the blob now belongs to the store (or was removed) */
	if (m->rc == 0) {
		log_info(m->qid,
		    "event=accepted session=%s from=<%s> nrcpt=%zu size=%" PRIu64
		    " users=%zu remote=%zu",
		    s->id, *t->mail_from ? log_str(t->mail_from) : "", t->nrcpts, m->size,
		    t->nusers, t->nremote);
		s->nmessages++;
	} else {
		log_err(m->qid, "event=commit-failed session=%s rc=%d", s->id, m->rc);
	}
	if (s->dead) {
		accept_free(m);
		session_free(s);
		return;
	}
	if (m->rc == 0)
		reply(s, "250 2.0.0 Ok: queued as %s", m->qid);
	else
		reply(
		    s, "451 4.3.0 Temporary failure: could not store the message, try again later");
	accept_free(m);
	txn_reset(s);
	enter_state(s, S_READY);
	s->njunk = 0;
	bufferevent_enable(s->bev, EV_READ);
	smtp_process(s);
}

/* Submission: the header section is complete in t->out (or the message has
 * none). Add Date: and Message-ID: when missing (RFC 6409 8.2, 8.3) and check
 * that every From: address belongs to the authenticated user. */
static void fix_headers(struct smtp_session *s, struct txn *t)
{
	const char *h = t->out.data ? t->out.data : "";
	size_t hlen = t->hs.done ? (size_t)t->hs.size : t->out.len;
	struct buf v = BUF_INIT;
	buf_init(&v, 16384);
	char dom[DKIM_DOMAIN_MAX + 1];
	if (s->auth_user == NULL) {
		/* a trusted local program: its From: is its own business */
	} else if (msgcheck_author_domain(h, hlen, dom, sizeof dom) == MSGCHECK_FROM_MANY) {
		/* only the first would be checked here, and every one is signed */
		t->from_reply = "554 5.6.0 Message refused: it has more than one From: header";
	} else if (!smtp_header_get(h, hlen, "From", &v, 8192)) {
		t->from_reply = "554 5.6.0 Message refused: it has no From: header";
	} else {
		struct mime_addr_list l;
		if (mime_addr_list_parse(v.data, v.len, &l) != MIME_ADDR_OK || l.n == 0) {
			t->from_reply =
			    "554 5.6.0 Message refused: the From: header cannot be parsed";
		} else {
			struct buf a = BUF_INIT;
			for (size_t i = 0; i < l.n && t->from_reply == NULL; i++) {
				buf_reset(&a);
				buf_printf(&a, "%s@%s", l.v[i].local, l.v[i].domain);
				int rc = store_user_owns(s->w->store, s->auth_user, buf_cstr(&a));
				if (rc == STORE_OK)
					continue;
				t->from_reply =
				    rc == STORE_NOTFOUND
				        ? "553 5.7.1 From: header address not owned by the "
				          "authenticated user"
				        : "451 4.3.0 Temporary lookup failure, try again later";
				free(t->from_detail);
				t->from_detail = strdup(buf_cstr(&a));
			}
			buf_free(&a);
		}
		mime_addr_list_free(&l);
	}
	struct buf add = BUF_INIT;
	if (!smtp_header_get(h, hlen, "Message-ID", &v, 998)) {
		unsigned char r[8];
		util_random(r, sizeof r);
		buf_printf(&add, "Message-ID: <%s.%02x%02x%02x%02x%02x%02x%02x%02x@%s>\r\n",
		    t->msg->qid, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
		    s->w->cfg->hostname);
	}
	if (!smtp_header_get(h, hlen, "Date", &v, 998)) {
		char date[64];
		time_t now = (time_t)(t->msg->received_ms / 1000);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
		buf_printf(&add, "Date: %s\r\n", date);
	}
	if (add.len)
		accept_write(t->msg, add.data, add.len);
	buf_free(&add);
	buf_free(&v);
}

/* Received mail: drop Authentication-Results fields that claim our
 * authserv-id (RFC 8601 5), ours is the only one to trust. The header
 * section is complete in t->out. */
static void strip_forged_ar(struct smtp_session *s, struct txn *t)
{
	size_t hlen = t->hs.done ? (size_t)t->hs.size : t->out.len;
	if (t->out.data == NULL || hlen > t->out.len)
		return;
	struct buf n = BUF_INIT;
	buf_init(&n, t->out.cap);
	size_t removed = smtp_strip_auth_results(t->out.data, hlen, s->w->cfg->hostname, &n);
	if (removed == 0) {
		buf_free(&n);
		return;
	}
	buf_append(&n, t->out.data + hlen, t->out.len - hlen);
	log_info(t->msg->qid, "event=removed-auth-results session=%s count=%zu", s->id, removed);
	buf_free(&t->out);
	t->out = n;
}

/* The signing keys of a domain (store_dkim_list's callback): the newest of
 * each algorithm, read from their PEM files. */
struct dkim_keys_found {
	struct store *st;
	const char *domain;
	struct dkim_sign_key keys[DKIM_SIGS_MAX];
	char sel[DKIM_SIGS_MAX][64];
	size_t n;
};

static void keys_found(void *arg, const struct store_dkim_key *k)
{
	struct dkim_keys_found *kf = arg;
	if (!k->signing || kf->n == DKIM_SIGS_MAX || strlen(k->selector) >= sizeof kf->sel[0])
		return;
	struct buf path = BUF_INIT;
	buf_init(&path, 4096);
	EVP_PKEY *pk = NULL;
	if (store_dkim_path(kf->st, kf->domain, k->selector, &path) == STORE_OK) {
		FILE *f = fopen(buf_cstr(&path), "re");
		if (f != NULL) {
			pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
			fclose(f);
		}
		if (pk == NULL)
			log_warn("-", "event=dkim-key-unreadable domain=%s selector=%s path=%s",
			    kf->domain, log_str(k->selector), log_str(buf_cstr(&path)));
	}
	buf_free(&path);
	if (pk == NULL)
		return;
	snprintf(kf->sel[kf->n], sizeof kf->sel[0], "%s", k->selector);
	kf->keys[kf->n] = (struct dkim_sign_key){kf->sel[kf->n], pk};
	kf->n++;
}

static void dkim_keys_found_free(struct dkim_keys_found *kf)
{
	for (size_t i = 0; i < kf->n; i++)
		EVP_PKEY_free(kf->keys[i].pkey);
	kf->n = 0;
}

/* Submission: the signing keys of the From domain, if it has any; the
 * message is signed with them at the end (accept_set_signer). */
static void sign_setup(struct smtp_session *s, struct txn *t, const char *h, size_t hlen)
{
	char dom[DKIM_DOMAIN_MAX + 1];
	msgcheck_author_domain(h, hlen, dom, sizeof dom);
	if (dom[0] == '\0')
		return;
	struct dkim_keys_found kf = {.st = s->w->store, .domain = dom};
	if (store_dkim_list(s->w->store, dom, keys_found, &kf) != STORE_OK || kf.n == 0) {
		dkim_keys_found_free(&kf);
		return;
	}
	t->signer = dkim_signer_new(dom, kf.keys, kf.n, (int64_t)time(NULL));
	if (t->signer == NULL)
		log_warn(t->msg->qid, "event=dkim-sign-failed domain=%s reason=\"bad key\"", dom);
	dkim_keys_found_free(&kf);
}

/* The header section is complete (h, hlen as written to the blob, after
 * our changes): start the checks of received mail, or find the signing
 * keys of a submitted one. */
static void header_complete(struct smtp_session *s, struct txn *t, const char *h, size_t hlen)
{
	if (t->mc)
		msgcheck_header(t->mc, h, hlen);
	if (t->submission && t->msg->late)
		sign_setup(s, t, h, hlen);
}

/* Flush staged content to the blob. A submitted message's header section is
 * held back until it is complete, so that missing Date:/Message-ID: can be
 * added in front of it and its From: checked (unless final: the end). */
static void flush_out(struct smtp_session *s, struct txn *t, bool final)
{
	if (buf_err(&t->out)) {
		/* out of memory (the feeding bounds keep it under its cap) */
		if (t->msg->write_errno == 0)
			t->msg->write_errno = ENOMEM;
		buf_reset(&t->out);
		return;
	}
	if (!t->hs.done && t->out.len > t->scanned) {
		smtp_hdr_scan_feed(&t->hs, t->out.data + t->scanned, t->out.len - t->scanned);
		if (t->hs.size > t->hdr_limit)
			t->hdr_too_big = true;
	}
	t->scanned = t->out.len;
	if ((t->submission || t->strip_ar) && !t->hdr_fixed) {
		if (!t->hs.done && !final && !t->hdr_too_big)
			return; /* hold the header section until it is complete */
		if (!t->hdr_too_big) {
			if (t->submission)
				fix_headers(s, t);
			else
				strip_forged_ar(s, t);
		}
		t->hdr_fixed = true;
	}
	if (t->out.len) {
		size_t body = 0;
		if (!t->body_out && t->hdr_fixed && !t->hdr_too_big) {
			body = dkim_body_offset(t->out.data, t->out.len);
			header_complete(s, t, t->out.data, body);
			t->body_out = true;
		}
		if (t->body_out && t->out.len > body) {
			if (t->mc)
				msgcheck_body(t->mc, t->out.data + body, t->out.len - body);
			if (t->signer)
				dkim_signer_body(t->signer, t->out.data + body, t->out.len - body);
		}
		accept_write(t->msg, t->out.data, t->out.len);
		buf_reset(&t->out);
		t->scanned = 0;
	}
}

static void commit_now(struct smtp_session *s);
static bool apply_checks(struct smtp_session *s);

/* Every DKIM key and DMARC record is in: decide, then commit or refuse. */
static void checks_done(struct msgcheck *mc, void *arg)
{
	(void)mc;
	struct smtp_session *s = arg;
	if (s->state != S_CHECK_WAIT)
		return;
	if (apply_checks(s)) {
		commit_now(s);
		return;
	}
	bufferevent_enable(s->bev, EV_READ);
	smtp_process(s);
}

static void start_commit(struct smtp_session *s)
{
	struct txn *t = s->tx;
	flush_out(s, t, true);
	if (t->msg->write_errno) {
		log_err(t->msg->qid, "event=write-failed session=%s error=\"%s\"", s->id,
		    strerror(t->msg->write_errno));
		reply(
		    s, "451 4.3.0 Temporary failure: could not store the message, try again later");
		txn_reset(s);
		enter_state(s, S_READY);
		return;
	}
	if (!t->body_out)
		header_complete(s, t, "", 0); /* an empty message */
	if (t->mc != NULL) {
		if (!msgcheck_end(t->mc, checks_done, s)) {
			enter_state(s, S_CHECK_WAIT);
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		if (!apply_checks(s))
			return;
	}
	commit_now(s);
}

static void commit_now(struct smtp_session *s)
{
	struct txn *t = s->tx;
	if (t->signer != NULL) {
		accept_set_signer(t->msg, t->signer);
		t->signer = NULL;
	}
	accept_set_envelope(t->msg, t->mail_from, t->users, t->nusers, t->remote, t->nremote);
	accept_set_dsn(
	    t->msg, t->envid, t->ret, t->remote_notify, t->remote_orcpt, t->lrcpts, t->nlrcpts);
	enter_state(s, S_COMMIT);
	bufferevent_disable(s->bev, EV_READ);
	accept_commit(server_accept_ctx(s->w->server), t->msg, &s->w->doneq, commit_done, s);
}

/* The SPF verdict as the checks take it. */
static void spf_for_checks(struct smtp_session *s, struct msgcheck_spf *sp)
{
	struct txn *t = s->tx;
	msgcheck_spf_of(sp, t->spf, t->mail_from, s->helo ? s->helo : "");
	if (t->spf == NULL && t->spf_timed_out) {
		sp->checked = true;
		sp->result = SPF_TEMPERROR;
		sp->reason = "the check took too long";
	}
}

/* The end of data of received mail, every answer in: DKIM, DMARC and the
 * policy. Writes Authentication-Results in front of the message and files
 * it in Junk if so decided; or refuses it (the reply is queued, the
 * transaction is gone). true: go on and commit. */
static bool apply_checks(struct smtp_session *s)
{
	struct txn *t = s->tx;
	const struct config *c = s->w->cfg;
	struct msgcheck_spf sp;
	spf_for_checks(s, &sp);
	struct msgcheck_policy pol = {
	    msgcheck_action_named(c->checks.dmarc_reject),
	    msgcheck_action_named(c->checks.dmarc_quarantine),
	    msgcheck_action_named(c->checks.spf_fail),
	};
	msgcheck_finish(t->mc, &sp, &pol);
	enum msgcheck_action act = msgcheck_action(t->mc);
	const struct dmarc_verdict *v = msgcheck_dmarc(t->mc);
	struct buf dk = BUF_INIT, spf = BUF_INIT, rua = BUF_INIT;
	buf_init(&dk, 4096);
	buf_init(&spf, 1024);
	buf_init(&rua, 4096);
	msgcheck_dkim_summary(t->mc, &dk);
	log_info(t->msg->qid,
	    "event=checks session=%s from_domain=%s spf=%s dkim=%s dmarc=%s policy=%s "
	    "action=%s reason=%s",
	    s->id, log_str(msgcheck_from_domain(t->mc)),
	    sp.checked ? spf_result_name(sp.result) : "-", log_str(buf_cstr(&dk)),
	    v ? dmarc_result_name(v->result) : "-",
	    v && v->have_policy ? dmarc_policy_name(v->policy) : "-", msgcheck_action_name(act),
	    log_str(msgcheck_why(t->mc)));
	struct store_dmarc_row row = {0};
	if (v != NULL) {
		buf_printf(&spf, "%s %s", sp.checked ? spf_result_name(sp.result) : "none",
		    sp.domain ? sp.domain : "");
		for (size_t i = 0; v->have_policy && i < v->rec.nrua; i++)
			buf_printf(&rua, "%s%s", i ? "," : "", v->rec.rua[i]);
		row = (struct store_dmarc_row){
		    .time = (int64_t)time(NULL),
		    .queue_id = t->msg->qid,
		    .source_ip = s->ip,
		    .header_from = msgcheck_from_domain(t->mc),
		    .envelope_from = t->mail_from,
		    .policy_domain = v->have_policy ? v->record_domain : "",
		    .policy = v->have_policy ? dmarc_policy_name(v->policy) : "",
		    .disposition = msgcheck_disposition(t->mc),
		    .dmarc = dmarc_result_name(v->result),
		    .spf = buf_cstr(&spf),
		    .spf_aligned = v->spf == DMARC_ALIGN_PASS,
		    .dkim = buf_cstr(&dk),
		    .dkim_aligned = v->dkim == DMARC_ALIGN_PASS,
		    .rua = buf_cstr(&rua),
		};
	}
	bool go_on = true;
	if (act == MSGCHECK_REFUSE) {
		if (v != NULL && store_dmarc_add(s->w->store, &row) != STORE_OK)
			log_warn(t->msg->qid, "event=dmarc-row-failed error=%s",
			    log_str(store_error(s->w->store)));
		log_info(t->msg->qid, "event=reject session=%s code=550 reason=checks ip=%s", s->id,
		    s->ip);
		reply(s, "550 5.7.1 Message refused: %s", msgcheck_why(t->mc));
		txn_reset(s);
		enter_state(s, S_READY);
		go_on = false;
	} else {
		struct buf h = BUF_INIT;
		buf_init(&h, 16384);
		msgcheck_auth_results(t->mc, c->hostname, &sp, &h);
		if (buf_err(&h))
			t->msg->write_errno = EOVERFLOW;
		else
			accept_prepend(t->msg, h.data, h.len);
		buf_free(&h);
		t->msg->junk = act == MSGCHECK_JUNK;
		if (v != NULL)
			accept_set_dmarc(t->msg, &row);
	}
	buf_free(&dk);
	buf_free(&spf);
	buf_free(&rua);
	return go_on;
}

/* Authentication-Results (RFC 8601) when SPF is the only check (without
 * late mode: DKIM and DMARC, when on, write the whole field at the end). */
static void write_auth_results(struct smtp_session *s)
{
	struct txn *t = s->tx;
	struct msgcheck_spf sp;
	spf_for_checks(s, &sp);
	if (!sp.checked)
		return;
	struct buf h = BUF_INIT;
	buf_init(&h, 4096);
	msgcheck_spf_results(s->w->cfg->hostname, &sp, &h);
	accept_write_prefix(t->msg, h.data, h.len);
	buf_free(&h);
}

static void count_key(void *arg, const struct store_dkim_key *k)
{
	(void)k;
	(*(size_t *)arg)++;
}

/* Could this submission be signed: does the user's domain have DKIM keys
 * (local programs: always maybe)? Saves late mode for domains without. */
static bool may_sign(struct smtp_session *s)
{
	const char *at = s->auth_user ? strrchr(s->auth_user, '@') : NULL;
	if (at == NULL)
		return true;
	size_t n = 0;
	return store_dkim_list(s->w->store, at + 1, count_key, &n) != STORE_OK || n > 0;
}

/* Open the blob and write our Received: header. false: the caller replies 451. */
static bool begin_message(struct smtp_session *s)
{
	struct txn *t = s->tx;
	const struct config *c = s->w->cfg;
	bool check = checked_client(s) && s->w->dns != NULL && (c->checks.dkim || c->checks.dmarc);
	bool sign = may_relay(s) && c->submission.dkim_sign && may_sign(s);
	t->msg = accept_begin(s->w->store, check || sign);
	if (t->msg != NULL && check) {
		t->mc = msgcheck_new(s->w->dns, server_psl(s->w->server), c->checks.dkim,
		    c->checks.dmarc, (int64_t)time(NULL));
		if (t->mc == NULL)
			log_warn(s->id, "event=checks-off reason=\"out of memory\"");
	}
	if (t->msg == NULL) {
		log_err(s->id, "event=blob-create-failed error=\"%s\"", strerror(errno));
		return false;
	}
	/* content is fed in pieces of at most OUT_FLUSH and flushed at OUT_FLUSH,
	 * and unstuffing never grows it, so out stays below 2 * OUT_FLUSH */
	t->hdr_limit = s->w->cfg->limits.header_size;
	t->submission = may_relay(s);
	t->strip_ar = !t->submission;
	buf_init(&t->out, t->hdr_limit + 2 * OUT_FLUSH + 16);
	smtp_hdr_scan_init(&t->hs);
	if (t->mc == NULL)
		write_auth_results(s); /* SPF alone: known already */
	write_received(s);
	return true;
}

/* ---------------------------------------------------------------- commands */

typedef void (*cmd_fn)(struct smtp_session *s, char *arg);

static void handle_line(struct smtp_session *s, char *line, size_t len);
static void smtp_process(struct smtp_session *s);

/* ---- SPF of the sender (RFC 7208), started at MAIL, awaited at DATA/BDAT */

/* DATA or BDAT was parked for SPF: handle it now and read on. */
static void spf_resume(struct smtp_session *s)
{
	if (s->state != S_SPF_WAIT)
		return;
	enter_state(s, s->parked_state);
	char *line = s->parked_line;
	size_t len = s->parked_len;
	s->parked_line = NULL;
	handle_line(s, line, len);
	free(line);
	if (s->state == S_CLOSING)
		return;
	bufferevent_enable(s->bev, EV_READ);
	smtp_process(s);
}

static void spf_done(struct spf_eval *e, void *arg)
{
	struct smtp_session *s = arg;
	struct txn *t = s->tx;
	t->spf_req = NULL;
	t->spf = e;
	if (t->spf_timer) {
		event_free(t->spf_timer);
		t->spf_timer = NULL;
	}
	log_info(s->id, "event=spf result=%s identity=%s domain=%s lookups=%u reason=%s",
	    spf_result_name(spf_eval_result(e)), spf_eval_identity(e), log_str(spf_eval_domain(e)),
	    spf_eval_lookups(e), log_str(spf_eval_reason(e)));
	spf_resume(s);
}

static void spf_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_session *s = arg;
	struct txn *t = s->tx;
	spf_cancel(t->spf_req);
	t->spf_req = NULL;
	t->spf_timed_out = true;
	log_warn(s->id, "event=spf result=temperror reason=timeout seconds=%u",
	    s->w->cfg->checks.timeout);
	spf_resume(s);
}

/* At MAIL from a client that is not one of our users: check its SPF. */
static void spf_start(struct smtp_session *s, struct txn *t)
{
	if (!s->w->cfg->checks.spf || s->w->dns == NULL || !checked_client(s))
		return;
	struct spf_params p = {
	    .ip = s->ip,
	    .helo = s->helo ? s->helo : "",
	    .sender = t->mail_from,
	    .receiver = s->w->cfg->hostname,
	};
	t->spf_req = spf_check(s->w->base, s->w->dns, &p, spf_done, s);
	t->spf_timer = t->spf_req ? evtimer_new(s->w->base, spf_timeout_cb, s) : NULL;
	struct timeval tv = {(time_t)s->w->cfg->checks.timeout, 0};
	if (t->spf_req == NULL || t->spf_timer == NULL || evtimer_add(t->spf_timer, &tv) != 0) {
		/* out of memory: no verdict rather than a wrong one */
		spf_cancel(t->spf_req);
		t->spf_req = NULL;
		log_warn(s->id, "event=spf result=none reason=\"could not start the check\"");
	}
}

/* DATA or BDAT while SPF is still running: wait for it (the verdict goes
 * into the header written at the start of the content). true: parked. */
static bool spf_park(struct smtp_session *s, const char *line, size_t len)
{
	if (s->tx == NULL || s->tx->spf_req == NULL)
		return false;
	free(s->parked_line);
	s->parked_line = malloc(len + 1);
	if (s->parked_line == NULL)
		return false; /* go on without waiting: the header says nothing */
	memcpy(s->parked_line, line, len);
	s->parked_line[len] = '\0';
	s->parked_len = len;
	s->parked_state = s->state;
	enter_state(s, S_SPF_WAIT);
	bufferevent_disable(s->bev, EV_READ);
	return true;
}

static void cmd_helo(struct smtp_session *s, char *arg, bool esmtp)
{
	const char *verb = esmtp ? "EHLO" : "HELO";
	if (*arg == '\0' || strlen(arg) > HELO_MAX || strchr(arg, ' ')) {
		reply(s, "501 5.5.4 Syntax: %s hostname", verb);
		count_error(s);
		return;
	}
	if (s->state != S_GREETING && !count_junk(s))
		return;
	free(s->helo);
	s->helo = strdup(arg);
	s->esmtp = esmtp;
	txn_reset(s);
	enter_state(s, S_READY);
	const struct config *c = s->w->cfg;
	if (!esmtp) {
		reply(s, "250 %s", c->hostname);
		return;
	}
	reply(s, "250-%s", c->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %" PRIu64, c->limits.message_size);
	reply(s, "250-8BITMIME");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-SMTPUTF8");
	reply(s, "250-DSN");
	if (tls_offered(s))
		reply(s, "250-STARTTLS");
	if (auth_offered(s))
		reply(s, "250-AUTH PLAIN LOGIN");
	reply(s, "250 CHUNKING");
}

static void cmd_ehlo(struct smtp_session *s, char *arg)
{
	cmd_helo(s, arg, true);
}
static void cmd_helo_plain(struct smtp_session *s, char *arg)
{
	cmd_helo(s, arg, false);
}

/* MAIL, with a buffer for its ENVID (cmd_mail frees it on every path). */
static void mail_with(struct smtp_session *s, char *arg, struct buf *envid)
{
	const struct config *c = s->w->cfg;
	if (s->state == S_GREETING) {
		reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		count_error(s);
		return;
	}
	if (s->state != S_READY) {
		reply(s, "503 5.5.1 Error: nested MAIL command");
		count_error(s);
		return;
	}
	if (s->nmessages >= c->limits.messages_per_session) {
		reply(s, "421 4.7.0 %s Error: too many messages in one session, reconnect",
		    c->hostname);
		close_after_reply(s, "too-many-messages");
		return;
	}
	if (is_submission(s) && !may_relay(s)) {
		reply(s, "530 5.7.0 Authentication required");
		count_error(s);
		return;
	}
	struct smtp_mail_args a;
	enum smtp_path_err pe = smtp_parse_mail(arg, &a);
	if (pe == SMTP_PATH_PARAMS) {
		reply(s, "501 5.5.4 Syntax error in parameters");
		count_error(s);
		return;
	}
	if (pe != SMTP_PATH_OK) {
		reply(s, "501 5.1.7 Bad sender address syntax");
		count_error(s);
		return;
	}
	bool smtputf8 = false;
	uint64_t size = 0;
	enum dsn_ret ret = DSN_RET_DEFAULT;
	bool has_envid = false;
	for (size_t i = 0; i < a.nparams; i++) {
		const char *k = a.params[i].key, *v = a.params[i].value;
		if (!s->esmtp) {
			reply(s, "555 5.5.4 Parameters need EHLO");
			count_error(s);
			return;
		}
		if (util_streq_ci(k, "RET") || util_streq_ci(k, "ENVID")) {
			bool is_ret = util_streq_ci(k, "RET");
			bool dup = is_ret ? ret != DSN_RET_DEFAULT : has_envid;
			bool ok = !dup && v != NULL &&
			          (is_ret ? dsn_parse_ret(v, strlen(v), &ret)
			                  : (has_envid = dsn_parse_envid(v, strlen(v), envid)));
			if (!ok) {
				reply(s, "501 5.5.4 %s %s parameter", dup ? "Duplicate" : "Bad",
				    is_ret ? "RET" : "ENVID");
				count_error(s);
				return;
			}
		} else if (util_streq_ci(k, "SIZE") && v && smtp_parse_u64(v, &size)) {
			if (size > c->limits.message_size) {
				reply(
				    s, "552 5.3.4 Message size exceeds fixed maximum message size");
				count_error(s);
				return;
			}
		} else if (util_streq_ci(k, "BODY") && v &&
		           (util_streq_ci(v, "7BIT") || util_streq_ci(v, "8BITMIME"))) {
			/* both are stored as received */
		} else if (util_streq_ci(k, "SMTPUTF8") && v == NULL) {
			smtputf8 = true;
		} else if (util_streq_ci(k, "AUTH") && v && auth_offered(s)) {
			/* RFC 4954 5: accepted; we do not relay the identity on */
		} else {
			reply(s, "555 5.5.4 Unsupported parameter %s", log_str(k));
			count_error(s);
			return;
		}
	}
	if (a.path.utf8 && !smtputf8) {
		reply(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
		count_error(s);
		return;
	}
	if (s->auth_user) {
		struct buf from = BUF_INIT;
		if (!a.path.null)
			buf_printf(&from, "%s@%s", a.path.local, a.path.domain);
		int rc = a.path.null ? STORE_NOTFOUND
		                     : store_user_owns(s->w->store, s->auth_user, buf_cstr(&from));
		if (rc != STORE_OK) {
			log_info(s->id, "event=reject cmd=MAIL user=%s from=<%s> reason=%s",
			    log_str(s->auth_user), log_str(buf_cstr(&from)),
			    rc == STORE_NOTFOUND ? "not-owned" : "lookup-failed");
			if (rc == STORE_NOTFOUND)
				reply(s, "553 5.7.1 <%s>: Sender address not owned by user %s",
				    log_str(buf_cstr(&from)), log_str(s->auth_user));
			else
				reply(s, "451 4.3.0 Temporary lookup failure, try again later");
			buf_free(&from);
			count_error(s);
			return;
		}
		buf_free(&from);
		if (!server_user_allow(s->w->server, s->auth_user, 1, 0)) {
			log_warn(s->id, "event=rate-limited user=%s what=messages limit=%u/hour",
			    log_str(s->auth_user), s->w->cfg->submission.user_messages_per_hour);
			reply(s,
			    "451 4.7.1 Sending limit reached (%u messages per hour), try again "
			    "later",
			    s->w->cfg->submission.user_messages_per_hour);
			return;
		}
	}
	struct txn *t = calloc(1, sizeof *t);
	if (t == NULL) {
		reply(s, "451 4.3.0 Temporary failure, try again later");
		return;
	}
	struct buf from = BUF_INIT;
	if (!a.path.null)
		buf_printf(&from, "%s@%s", a.path.local, a.path.domain);
	t->mail_from = buf_steal(&from);
	t->smtputf8 = smtputf8;
	t->declared_size = size;
	if (ret != DSN_RET_DEFAULT)
		t->ret = strdup(ret == DSN_RET_FULL ? "FULL" : "HDRS");
	if (has_envid)
		t->envid = strdup(buf_cstr(envid));
	s->tx = t;
	if ((ret != DSN_RET_DEFAULT && t->ret == NULL) || (has_envid && t->envid == NULL)) {
		txn_reset(s);
		reply(s, "451 4.3.0 Temporary failure, try again later");
		return;
	}
	spf_start(s, t);
	enter_state(s, S_MAIL);
	reply(s, "250 2.1.0 Ok");
}

static void cmd_mail(struct smtp_session *s, char *arg)
{
	struct buf envid = BUF_INIT;
	buf_init(&envid, DSN_ENVID_MAX * 3 + 8);
	mail_with(s, arg, &envid);
	buf_free(&envid);
}

/* The postmaster domain for "RCPT TO:<postmaster>": our hostname's parent
 * domain, else the hostname itself. */
static int resolve_postmaster(struct smtp_session *s, struct store_rcpt *r)
{
	const char *h = s->w->cfg->hostname;
	const char *dot = strchr(h, '.');
	int rc = STORE_NOTLOCAL;
	if (dot)
		rc = store_resolve_rcpt(s->w->store, "postmaster", dot + 1, r);
	if (rc == STORE_NOTLOCAL)
		rc = store_resolve_rcpt(s->w->store, "postmaster", h, r);
	return rc == STORE_NOTLOCAL ? STORE_NOTFOUND : rc;
}

static void cmd_rcpt(struct smtp_session *s, char *arg)
{
	const struct config *c = s->w->cfg;
	if (s->state != S_MAIL && s->state != S_RCPT) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		count_error(s);
		return;
	}
	struct txn *t = s->tx;
	if (t->nrcpts >= c->limits.recipients) {
		reply(s, "452 4.5.3 Error: too many recipients");
		count_error(s);
		return;
	}
	struct smtp_mail_args a;
	enum smtp_path_err pe = smtp_parse_rcpt(arg, &a);
	if (pe == SMTP_PATH_PARAMS) {
		reply(s, "501 5.5.4 Syntax error in parameters");
		count_error(s);
		return;
	}
	if (pe != SMTP_PATH_OK || a.path.null) {
		reply(s, "501 5.1.3 Bad recipient address syntax");
		count_error(s);
		return;
	}
	/* DSN: NOTIFY and ORCPT, each at most once; ORCPT is kept as received
	 * (at most DSN_ORCPT_MAX bytes, checked by dsn_parse_orcpt) */
	unsigned notify = 0;
	struct dsn_orcpt orcpt;
	const char *orcpt_v = NULL;
	for (size_t i = 0; i < a.nparams; i++) {
		const char *k = a.params[i].key, *v = a.params[i].value;
		bool is_notify = util_streq_ci(k, "NOTIFY");
		if (!is_notify && !util_streq_ci(k, "ORCPT")) {
			reply(s, "555 5.5.4 Unsupported parameter %s", log_str(k));
			count_error(s);
			return;
		}
		if (!s->esmtp) {
			reply(s, "555 5.5.4 Parameters need EHLO");
			count_error(s);
			return;
		}
		bool dup = is_notify ? notify != 0 : orcpt_v != NULL;
		bool ok = !dup && v != NULL &&
		          (is_notify ? dsn_parse_notify(v, strlen(v), &notify)
		                     : dsn_parse_orcpt(v, strlen(v), &orcpt));
		if (!ok) {
			reply(s, "501 5.5.4 %s %s parameter", dup ? "Duplicate" : "Bad",
			    is_notify ? "NOTIFY" : "ORCPT");
			count_error(s);
			return;
		}
		if (!is_notify)
			orcpt_v = v;
	}
	char notify_s[64] = "";
	if (notify) {
		struct buf b = BUF_INIT;
		buf_init(&b, sizeof notify_s - 1);
		dsn_notify_render(notify, &b);
		snprintf(notify_s, sizeof notify_s, "%s", buf_cstr(&b));
		buf_free(&b);
	}
	if (a.path.utf8 && !t->smtputf8) {
		reply(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
		count_error(s);
		return;
	}
	struct buf addr = BUF_INIT;
	buf_init(&addr, 1024);
	if (a.path.postmaster)
		buf_puts(&addr, "postmaster");
	else
		buf_printf(&addr, "%s@%s", a.path.local, a.path.domain);
	const char *shown = log_str(buf_cstr(&addr));

	if (a.path.relay_syntax || a.path.literal) {
		log_info(s->id, "event=reject cmd=RCPT code=550 reason=relay-syntax rcpt=%s ip=%s",
		    shown, s->ip);
		reply(s, "550 5.7.1 <%s>: Relay access denied", shown);
		buf_free(&addr);
		count_error(s);
		return;
	}
	util_lower(a.path.domain);
	struct store_rcpt r;
	memset(&r, 0, sizeof r);
	int rc = a.path.postmaster
	             ? resolve_postmaster(s, &r)
	             : store_resolve_rcpt(s->w->store, a.path.local, a.path.domain, &r);
	switch (rc) {
	case STORE_OK:
		break;
	case STORE_NOTLOCAL:
		if (may_relay(s)) {
			/* an authenticated user's mail to another domain: queued */
			r.nremote = 1;
			r.remote[0] = strdup(buf_cstr(&addr));
			if (r.remote[0] == NULL)
				r.nremote = 0;
			break;
		}
		log_info(s->id, "event=reject cmd=RCPT code=550 reason=relay rcpt=%s ip=%s", shown,
		    s->ip);
		reply(s, "550 5.7.1 <%s>: Relay access denied", shown);
		buf_free(&addr);
		count_error(s);
		return;
	case STORE_NOTFOUND:
	case STORE_INVALID:
		log_info(s->id, "event=reject cmd=RCPT code=550 reason=unknown-user rcpt=%s ip=%s",
		    shown, s->ip);
		reply(s, "550 5.1.1 <%s>: Recipient address rejected: User unknown", shown);
		buf_free(&addr);
		count_error(s);
		return;
	default:
		log_warn(s->id, "event=lookup-failed rcpt=%s rc=%d", shown, rc);
		reply(s, "451 4.3.0 <%s>: Temporary lookup failure, try again later", shown);
		buf_free(&addr);
		return;
	}
	if (s->auth_user && !server_user_allow(s->w->server, s->auth_user, 0, 1)) {
		store_rcpt_free(&r);
		buf_free(&addr);
		log_warn(s->id, "event=rate-limited user=%s what=recipients limit=%u/hour",
		    log_str(s->auth_user), s->w->cfg->submission.user_recipients_per_hour);
		reply(s,
		    "451 4.7.1 Sending limit reached (%u recipients per hour), try again later",
		    s->w->cfg->submission.user_recipients_per_hour);
		return;
	}
	bool ok = true;
	for (size_t i = 0; i < r.n && ok; i++)
		ok = set_add(&t->users, &t->nusers, &t->ausers, r.users[i]);
	/* RFC 3461 6.2.7: an alias with one target passes NOTIFY on; one that
	 * expands to several reports "expanded" itself for SUCCESS, which its
	 * remote targets then do not ask for again */
	bool expanded = r.n + r.nremote > 1;
	char notify_on[64] = "";
	if (notify && expanded && (notify & DSN_NOTIFY_SUCCESS)) {
		unsigned rest = notify & ~DSN_NOTIFY_SUCCESS;
		struct buf b = BUF_INIT;
		buf_init(&b, sizeof notify_on - 1);
		dsn_notify_render(rest ? rest : DSN_NOTIFY_NEVER, &b);
		snprintf(notify_on, sizeof notify_on, "%s", buf_cstr(&b));
		buf_free(&b);
	} else if (notify) {
		snprintf(notify_on, sizeof notify_on, "%s", notify_s);
	}
	for (size_t i = 0; i < r.nremote && ok; i++)
		ok = remote_add(t, r.remote[i], notify_on[0] ? notify_on : NULL, orcpt_v);
	if (ok && r.n > 0)
		ok = lrcpt_add(t, buf_cstr(&addr), orcpt_v, notify, &r);
	store_rcpt_free(&r);
	if (!ok) {
		reply(s, "451 4.3.0 Temporary failure, try again later");
		buf_free(&addr);
		return;
	}
	if (t->nrcpts++ == 0)
		t->first_rcpt = buf_steal(&addr);
	buf_free(&addr);
	enter_state(s, S_RCPT);
	reply(s, "250 2.1.5 Ok");
}

static void cmd_data(struct smtp_session *s, char *arg)
{
	if (*arg) {
		reply(s, "501 5.5.4 Syntax: DATA");
		count_error(s);
		return;
	}
	if (s->state == S_BDAT_WAIT) {
		reply(s, "503 5.5.1 Error: DATA after BDAT");
		count_error(s);
		return;
	}
	if (s->state != S_RCPT) {
		if (s->state == S_MAIL)
			reply(s, "554 5.5.1 Error: no valid recipients");
		else
			reply(s, "503 5.5.1 Error: need RCPT command");
		count_error(s);
		return;
	}
	if (!begin_message(s)) {
		reply(s,
		    "451 4.3.0 Temporary failure: cannot create the message file, try again later");
		return;
	}
	smtp_input_start_data(&s->in);
	enter_state(s, S_DATA);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void cmd_bdat(struct smtp_session *s, char *arg)
{
	uint64_t size;
	bool last;
	if (!smtp_parse_bdat(arg, &size, &last)) {
		/* the chunk size is unknown: no way to find the next command */
		reply(s, "501 5.5.4 Syntax: BDAT chunk-size [LAST]; closing connection");
		close_after_reply(s, "bad-bdat");
		return;
	}
	s->bdat_last = last;
	s->bdat_reply = NULL;
	s->bdat_prev = s->state;
	if (s->state != S_RCPT && s->state != S_BDAT_WAIT) {
		s->bdat_reply = s->state == S_MAIL ? "554 5.5.1 Error: no valid recipients"
		                                   : "503 5.5.1 Error: need MAIL and RCPT first";
	} else {
		struct txn *t = s->tx;
		if (t->msg == NULL && !t->failed && !begin_message(s)) {
			t->failed = true;
			t->fail_reply =
			    "451 4.3.0 Temporary failure: cannot create the message file";
		}
		if (!t->failed && t->bdat_total + size > s->w->cfg->limits.message_size) {
			t->failed = true;
			t->fail_reply = "552 5.3.4 Message size exceeds fixed maximum message size";
		}
		t->bdat_total += size;
		if (t->failed && s->bdat_reply == NULL)
			s->bdat_reply =
			    t->fail_reply ? t->fail_reply : "554 5.5.1 Transaction failed";
	}
	smtp_input_start_chunk(&s->in, size);
	if (s->bdat_reply)
		s->in.discard = true;
	enter_state(s, S_BDAT);
}

static void cmd_rset(struct smtp_session *s, char *arg)
{
	if (*arg) {
		reply(s, "501 5.5.4 Syntax: RSET");
		count_error(s);
		return;
	}
	if (!count_junk(s))
		return;
	txn_reset(s);
	if (s->state != S_GREETING)
		enter_state(s, S_READY);
	reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct smtp_session *s, char *arg)
{
	if (!count_junk(s))
		return;
	reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct smtp_session *s, char *arg)
{
	reply(s, "221 2.0.0 Bye");
	close_after_reply(s, "quit");
}

static void cmd_vrfy(struct smtp_session *s, char *arg)
{
	if (!count_junk(s))
		return;
	reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct smtp_session *s, char *arg)
{
	reply(s, "502 5.5.1 EXPN not available");
	count_error(s);
}

static void cmd_help(struct smtp_session *s, char *arg)
{
	if (!count_junk(s))
		return;
	reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP");
}

/* ---------------------------------------------------------------- TLS */

/* Put TLS on the connection: over the plain socket bufferevent (STARTTLS,
 * after the 220 queued on it) or on the bare socket (fd >= 0: implicit TLS).
 * The session waits in S_TLS for the handshake. */
static bool start_tls(struct smtp_session *s, int fd)
{
	SSL *ssl = tls_server_ssl(server_tls(s->w->server));
	if (ssl == NULL)
		return false;
	struct bufferevent *b;
	if (fd >= 0)
		b = bufferevent_openssl_socket_new(
		    s->w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	else
		b = bufferevent_openssl_filter_new(
		    s->w->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (b == NULL)
		return false;
	/* clients often close without close_notify; that is no error for SMTP */
	bufferevent_openssl_set_allow_dirty_shutdown(b, 1);
	s->bev = b;
	bufferevent_setcb(b, on_read, on_write, on_event, s);
	bufferevent_setwatermark(b, EV_READ, 0, INPUT_HIGH);
	bufferevent_setwatermark(b, EV_WRITE, OUTPUT_PAUSE / 2, 0);
	enter_state(s, S_TLS);
	bufferevent_enable(b, EV_READ | EV_WRITE);
	return true;
}

/* The handshake is done: everything learnt before it is forgotten (RFC 3207
 * 4.2); the client starts again with EHLO. */
static void tls_established(struct smtp_session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	s->tls = true;
	struct buf b = BUF_INIT;
	tls_describe(ssl, &b);
	log_info(s->id, "event=tls %s", buf_cstr(&b));
	buf_reset(&b);
	tls_received_comment(ssl, &b);
	free(s->tls_comment);
	s->tls_comment = buf_err(&b) ? NULL : buf_steal(&b);
	buf_free(&b);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	/* RFC 3207 4.2: nothing learnt in the clear survives, a login included */
	free(s->auth_user);
	s->auth_user = NULL;
	txn_reset(s);
	enter_state(s, S_GREETING);
	if (s->kind == LISTEN_SUBMISSIONS)
		reply(s, "220 %s ESMTP dakiya", s->w->cfg->hostname);
	smtp_process(s);
}

static void cmd_starttls(struct smtp_session *s, char *arg)
{
	if (*arg) {
		reply(s, "501 5.5.4 Syntax: STARTTLS");
		count_error(s);
		return;
	}
	if (s->tls) {
		reply(s, "503 5.5.1 Error: TLS already active");
		count_error(s);
		return;
	}
	if (server_tls(s->w->server) == NULL) {
		reply(s, "502 5.5.1 Error: command not implemented");
		count_error(s);
		return;
	}
	if (s->tx) {
		reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		count_error(s);
		return;
	}
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
		/* bytes sent in the clear after STARTTLS would be taken as if they
		 * came over TLS (the STARTTLS command injection class of bugs) */
		log_warn(s->id, "event=reject reason=starttls-pipelining ip=%s", s->ip);
		reply(s, "554 5.5.1 Error: command pipelined after STARTTLS; closing connection");
		close_after_reply(s, "starttls-pipelining");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	if (!start_tls(s, -1)) {
		log_err(s->id, "event=tls-failed error=\"cannot set up TLS\"");
		reply(s, "454 4.7.0 TLS not available due to temporary reason");
		close_after_reply(s, "tls-setup-failed");
	}
}

/* ---------------------------------------------------------------- AUTH */

static void auth_reset(struct smtp_session *s)
{
	s->auth_step = AUTH_NONE;
	if (s->auth_login.data)
		explicit_bzero(s->auth_login.data, s->auth_login.alloc);
	buf_free(&s->auth_login);
}

/* Back to commands after an AUTH exchange. */
static void auth_resume(struct smtp_session *s)
{
	auth_reset(s);
	enter_state(s, S_READY);
	bufferevent_enable(s->bev, EV_READ);
	smtp_process(s);
}

static void auth_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	reply(s, "535 5.7.8 Authentication credentials invalid");
	if (!count_error(s))
		return;
	auth_resume(s);
}

static void auth_done(struct pwcheck_req *req, void *arg)
{
	struct smtp_session *s = arg;
	s->auth_req = NULL;
	if (s->dead) {
		pwcheck_req_free(req);
		session_free(s);
		return;
	}
	size_t klen;
	const void *key = peer_key(s, &klen);
	switch (req->result) {
	case PWCHECK_OK:
		free(s->auth_user);
		s->auth_user = strdup(req->canonical);
		auth_throttle_success(server_throttle(s->w->server), key, klen);
		log_info(s->id, "event=auth result=ok user=%s ip=%s", log_str(s->auth_user), s->ip);
		reply(s, "235 2.7.0 Authentication successful");
		pwcheck_req_free(req);
		auth_resume(s);
		return;
	case PWCHECK_FAIL: {
		unsigned ms =
		    auth_throttle_fail(server_throttle(s->w->server), key, klen, time(NULL));
		log_info(s->id, "event=auth result=failed user=%s ip=%s delay_ms=%u",
		    log_str(req->user), s->ip, ms);
		pwcheck_req_free(req);
		if (s->auth_delay == NULL)
			s->auth_delay = evtimer_new(s->w->base, auth_delay_cb, s);
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		if (s->auth_delay == NULL || evtimer_add(s->auth_delay, &tv) < 0)
			auth_delay_cb(-1, 0, s);
		return; /* still parked in S_AUTH_CHECK until the reply */
	}
	case PWCHECK_TEMPFAIL:
		log_warn(s->id, "event=auth result=tempfail user=%s", log_str(req->user));
		reply(s, "454 4.7.0 Temporary authentication failure, try again later");
		pwcheck_req_free(req);
		auth_resume(s);
		return;
	default:
		abort();
	}
}

/* Check user and password off the loop; the session waits. */
static void auth_check(struct smtp_session *s, const char *user, const char *password)
{
	struct pwcheck_req *req = pwcheck_req_new(user, password);
	if (req == NULL) {
		reply(s, "454 4.7.0 Temporary authentication failure, try again later");
		auth_reset(s);
		enter_state(s, S_READY);
		return;
	}
	req->q = &s->w->doneq;
	req->cb = auth_done;
	req->arg = s;
	s->auth_req = req;
	enter_state(s, S_AUTH_CHECK);
	bufferevent_disable(s->bev, EV_READ);
	pwcheck_submit(server_pwcheck(s->w->server), req);
}

/* A SASL decoding problem: the reply for rc (never SASL_OK). */
static void auth_bad(struct smtp_session *s, enum sasl_rc rc)
{
	switch (rc) {
	case SASL_CANCELLED:
		reply(s, "501 5.0.0 Authentication cancelled");
		break;
	case SASL_TOO_LONG:
		reply(s, "500 5.5.6 Authentication exchange line is too long");
		break;
	case SASL_BAD_BASE64:
	case SASL_BAD_FORMAT:
		reply(s, "501 5.5.2 Cannot decode the AUTH response");
		break;
	default:
		abort();
	}
	auth_reset(s);
	enter_state(s, S_READY);
	count_error(s);
}

static void auth_plain(struct smtp_session *s, const char *b64, size_t len)
{
	struct buf authz = BUF_INIT, authc = BUF_INIT, pw = BUF_INIT;
	enum sasl_rc rc = sasl_plain_decode(b64, len, &authz, &authc, &pw);
	if (rc != SASL_OK) {
		auth_bad(s, rc);
	} else if (authz.len && !util_streq_ci(buf_cstr(&authz), buf_cstr(&authc))) {
		/* acting as another user is not supported: a failed login */
		auth_check(s, buf_cstr(&authz), "");
	} else {
		auth_check(s, buf_cstr(&authc), buf_cstr(&pw));
	}
	if (pw.data)
		explicit_bzero(pw.data, pw.alloc);
	buf_free(&pw);
	buf_free(&authz);
	buf_free(&authc);
}

/* A response line during an AUTH exchange. */
static void auth_line(struct smtp_session *s, const char *line, size_t len)
{
	struct buf v = BUF_INIT;
	enum sasl_rc rc;
	switch (s->auth_step) {
	case AUTH_PLAIN:
		auth_plain(s, line, len);
		break;
	case AUTH_LOGIN_USER:
		rc = sasl_login_decode(line, len, &s->auth_login);
		if (rc != SASL_OK) {
			auth_bad(s, rc);
			break;
		}
		s->auth_step = AUTH_LOGIN_PASS;
		reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
		break;
	case AUTH_LOGIN_PASS:
		rc = sasl_login_decode(line, len, &v);
		if (rc != SASL_OK)
			auth_bad(s, rc);
		else
			auth_check(s, buf_cstr(&s->auth_login), buf_cstr(&v));
		break;
	case AUTH_NONE:
	default:
		abort();
	}
	if (v.data)
		explicit_bzero(v.data, v.alloc);
	buf_free(&v);
}

static void cmd_auth(struct smtp_session *s, char *arg)
{
	if (!is_submission(s)) {
		reply(s, "502 5.5.1 Error: AUTH is available on the submission ports only");
		count_error(s);
		return;
	}
	if (s->state == S_GREETING) {
		reply(s, "503 5.5.1 Error: send EHLO first");
		count_error(s);
		return;
	}
	if (s->auth_user) {
		reply(s, "503 5.5.1 Error: already authenticated");
		count_error(s);
		return;
	}
	if (s->tx) {
		reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		count_error(s);
		return;
	}
	if (!auth_offered(s)) {
		reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		count_error(s);
		return;
	}
	size_t klen;
	const void *key = peer_key(s, &klen);
	if (auth_throttle_blocked(server_throttle(s->w->server), key, klen, time(NULL))) {
		log_warn(s->id, "event=auth result=blocked ip=%s", s->ip);
		reply(s, "421 4.7.0 %s Too many failed logins from your address, try again later",
		    s->w->cfg->hostname);
		close_after_reply(s, "auth-blocked");
		return;
	}
	char *mech = arg, *ir = strchr(arg, ' ');
	if (ir) {
		*ir++ = '\0';
		while (*ir == ' ')
			ir++;
	}
	if (util_streq_ci(mech, "PLAIN")) {
		if (ir && *ir) {
			auth_plain(s, ir, strlen(ir));
			return;
		}
		s->auth_step = AUTH_PLAIN;
		enter_state(s, S_AUTH);
		reply(s, "334 ");
	} else if (util_streq_ci(mech, "LOGIN")) {
		buf_init(&s->auth_login, SASL_FIELD_MAX + 16);
		if (ir && *ir) {
			enum sasl_rc rc = sasl_login_decode(ir, strlen(ir), &s->auth_login);
			if (rc != SASL_OK) {
				auth_bad(s, rc);
				return;
			}
			s->auth_step = AUTH_LOGIN_PASS;
			enter_state(s, S_AUTH);
			reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
			return;
		}
		s->auth_step = AUTH_LOGIN_USER;
		enter_state(s, S_AUTH);
		reply(s, "334 VXNlcm5hbWU6"); /* "Username:" */
	} else {
		reply(s, "504 5.5.4 Unrecognized authentication type");
		count_error(s);
	}
}

static void cmd_http(struct smtp_session *s, char *arg)
{
	log_info(s->id, "event=reject reason=http-command ip=%s", s->ip);
	reply(s, "554 5.7.0 Error: this is an SMTP server, not HTTP; closing connection");
	close_after_reply(s, "http");
}

static void cmd_unknown(struct smtp_session *s, char *arg)
{
	reply(s, "500 5.5.2 Error: command not recognized");
	count_error(s);
}

struct smtp_cmd_entry {
	enum smtp_verb verb;
	const char *name;
	cmd_fn fn;
};

static const struct smtp_cmd_entry cmd_table[SMTP_CMD__COUNT] = {
    [SMTP_CMD_UNKNOWN] = {SMTP_CMD_UNKNOWN, "unknown", cmd_unknown},
    [SMTP_CMD_HELO] = {SMTP_CMD_HELO, "HELO", cmd_helo_plain},
    [SMTP_CMD_EHLO] = {SMTP_CMD_EHLO, "EHLO", cmd_ehlo},
    [SMTP_CMD_MAIL] = {SMTP_CMD_MAIL, "MAIL", cmd_mail},
    [SMTP_CMD_RCPT] = {SMTP_CMD_RCPT, "RCPT", cmd_rcpt},
    [SMTP_CMD_DATA] = {SMTP_CMD_DATA, "DATA", cmd_data},
    [SMTP_CMD_BDAT] = {SMTP_CMD_BDAT, "BDAT", cmd_bdat},
    [SMTP_CMD_RSET] = {SMTP_CMD_RSET, "RSET", cmd_rset},
    [SMTP_CMD_NOOP] = {SMTP_CMD_NOOP, "NOOP", cmd_noop},
    [SMTP_CMD_QUIT] = {SMTP_CMD_QUIT, "QUIT", cmd_quit},
    [SMTP_CMD_VRFY] = {SMTP_CMD_VRFY, "VRFY", cmd_vrfy},
    [SMTP_CMD_EXPN] = {SMTP_CMD_EXPN, "EXPN", cmd_expn},
    [SMTP_CMD_HELP] = {SMTP_CMD_HELP, "HELP", cmd_help},
    [SMTP_CMD_STARTTLS] = {SMTP_CMD_STARTTLS, "STARTTLS", cmd_starttls},
    [SMTP_CMD_AUTH] = {SMTP_CMD_AUTH, "AUTH", cmd_auth},
    [SMTP_CMD_HTTP] = {SMTP_CMD_HTTP, "HTTP", cmd_http},
};

/* In a BDAT transaction only BDAT, RSET, NOOP, QUIT (and HELP) make sense. */
static bool allowed_in_bdat(enum smtp_verb v)
{
	return v == SMTP_CMD_BDAT || v == SMTP_CMD_RSET || v == SMTP_CMD_NOOP ||
	       v == SMTP_CMD_QUIT || v == SMTP_CMD_HELP || v == SMTP_CMD_DATA;
}

static void handle_line(struct smtp_session *s, char *line, size_t len)
{
	if (s->state == S_AUTH) {
		auth_line(s, line, len);
		return;
	}
	if (!smtp_line_ok_max(line, len, s->w->cfg->limits.line_length)) {
		reply(s, "500 5.5.2 Error: bad characters in command line");
		count_error(s);
		return;
	}
	const char *arg;
	enum smtp_verb v = smtp_parse_verb(line, len, &arg);
	if (v >= SMTP_CMD__COUNT || cmd_table[v].fn == NULL)
		abort();
	if (s->state == S_BDAT_WAIT && !allowed_in_bdat(v)) {
		reply(
		    s, "503 5.5.1 Error: only BDAT, RSET, NOOP or QUIT during a BDAT transaction");
		count_error(s);
		return;
	}
	/* the content starts with our Authentication-Results: SPF must be done */
	if ((v == SMTP_CMD_DATA || v == SMTP_CMD_BDAT) && spf_park(s, line, len))
		return;
	cmd_table[v].fn(s, (char *)arg);
}

/* ---------------------------------------------------------------- input */

static void finish_data(struct smtp_session *s)
{
	struct txn *t = s->tx;
	const struct config *c = s->w->cfg;
	const struct smtp_data_parser *dp = &s->in.data;
	if (dp->bare_lf || dp->bare_cr) {
		log_info(t->msg->qid, "event=reject session=%s code=554 reason=bare-%s ip=%s",
		    s->id, dp->bare_lf ? "lf" : "cr", s->ip);
		reply(s,
		    "554 5.6.0 Message refused: bare %s in message data; lines must end with CRLF",
		    dp->bare_lf ? "LF" : "CR");
		txn_refused(s);
		return;
	}
	flush_out(s, t, true);
	if (t->from_reply) {
		log_info(t->msg->qid,
		    "event=reject session=%s user=%s reason=from-header from=%s reply=\"%.3s\"",
		    s->id, log_str(s->auth_user), log_str(t->from_detail), t->from_reply);
		reply(s, "%s", t->from_reply);
		txn_refused(s);
		return;
	}
	if (t->hdr_too_big) {
		log_info(t->msg->qid, "event=reject session=%s code=552 reason=header-size", s->id);
		reply(s, "552 5.3.4 Message header section exceeds the limit of %" PRIu64 " bytes",
		    t->hdr_limit);
		txn_refused(s);
		return;
	}
	if (dp->size > c->limits.message_size) {
		log_info(t->msg->qid, "event=reject session=%s code=552 reason=size size=%" PRIu64,
		    s->id, dp->size);
		reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		txn_refused(s);
		return;
	}
	start_commit(s);
}

static void chunk_done(struct smtp_session *s)
{
	if (s->bdat_reply) {
		reply(s, "%s", s->bdat_reply);
		if (s->tx && s->tx->msg != NULL && s->bdat_last) {
			txn_reset(s);
			enter_state(s, S_READY);
		} else if (s->tx && s->tx->msg != NULL) {
			enter_state(s, S_BDAT_WAIT);
		} else {
			/* refused before any transaction content: the state is unchanged */
			enter_state(s, s->bdat_prev);
		}
		count_error(s);
		return;
	}
	flush_out(s, s->tx, s->bdat_last);
	if (s->tx->hdr_too_big) {
		/* this chunk and the rest of the transaction fail */
		s->tx->failed = true;
		s->tx->fail_reply = "552 5.3.4 Message header section exceeds the limit";
		s->bdat_reply = s->tx->fail_reply;
		chunk_done(s);
		return;
	}
	if (s->bdat_last && s->tx->from_reply) {
		log_info(s->tx->msg->qid,
		    "event=reject session=%s user=%s reason=from-header from=%s", s->id,
		    log_str(s->auth_user), log_str(s->tx->from_detail));
		reply(s, "%s", s->tx->from_reply);
		txn_refused(s);
		return;
	}
	if (!s->bdat_last) {
		reply(s, "250 2.0.0 %" PRIu64 " bytes received", s->tx->bdat_total);
		enter_state(s, S_BDAT_WAIT);
		return;
	}
	start_commit(s);
}

/* After content was fed: write it out in big pieces, stop storing what will
 * be refused anyway (over the size or header limits). */
static void after_content(struct smtp_session *s)
{
	struct txn *t = s->tx;
	if (t == NULL || t->msg == NULL)
		return;
	if (s->in.mode == SMTP_IN_DATA && !s->in.discard &&
	    s->in.data.size > s->w->cfg->limits.message_size) {
		s->in.discard = true; /* read on to the end, store nothing more */
		buf_reset(&t->out);
	}
	if (t->out.len >= OUT_FLUSH || buf_err(&t->out))
		flush_out(s, t, false);
	if (t->hdr_too_big)
		s->in.discard = true;
}

/* Turn buffered input into commands, DATA content and BDAT chunks until the
 * input runs out or the session parks (commit) or closes. */
static void smtp_process(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	for (;;) {
		if (s->state == S_COMMIT || s->state == S_CLOSING || s->state == S_TLS ||
		    s->state == S_AUTH_CHECK || s->state == S_SPF_WAIT || s->state == S_CHECK_WAIT)
			return;
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUTPUT_PAUSE) {
			/* the peer does not read its replies: wait for the output to drain */
			s->output_paused = true;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		const char *p = NULL;
		size_t len = 0;
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) >= 1) {
			p = v.iov_base;
			len = v.iov_len;
		}
		bool content_mode = s->in.mode != SMTP_IN_LINE;
		/* a chunk of 0 bytes ends without input */
		if (len == 0 && !(s->in.mode == SMTP_IN_CHUNK && s->in.chunk_left == 0))
			return;
		/* content is fed in pieces of at most OUT_FLUSH (see begin_message) */
		if (content_mode && len > OUT_FLUSH)
			len = OUT_FLUSH;
		struct buf *content =
		    content_mode && s->tx && s->tx->msg && !s->bdat_reply ? &s->tx->out : NULL;
		size_t used = 0;
		enum smtp_in_event ev = smtp_input_feed(&s->in, p, len, &used, content);
		evbuffer_drain(in, used);
		if (content_mode)
			after_content(s);
		switch (ev) {
		case SMTP_IN_NEED_MORE:
			break;
		case SMTP_IN_GOT_LINE:
			handle_line(s, s->in.line.data, s->in.line.len);
			break;
		case SMTP_IN_LINE_TOO_LONG:
			reply(s, "500 5.5.2 Error: line too long");
			count_error(s);
			break;
		case SMTP_IN_DATA_END:
			finish_data(s);
			break;
		case SMTP_IN_CHUNK_END:
			chunk_done(s);
			break;
		default:
			abort();
		}
	}
}

/* ---------------------------------------------------------------- I/O events */

static void on_read(struct bufferevent *bev, void *arg)
{
	smtp_process(arg);
}

/* Closing: everything queued has left (for STARTTLS sessions, also the
 * encrypted bytes in the socket bufferevent under the TLS filter). */
static bool output_flushed(struct smtp_session *s)
{
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return false;
	struct bufferevent *u = bufferevent_get_underlying(s->bev);
	return u == NULL || evbuffer_get_length(bufferevent_get_output(u)) == 0;
}

static void close_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	static const struct timeval tick = {0, 10000};
	/* give a slow peer up to 10 s to take the last reply */
	if (output_flushed(s) || ++s->close_polls > 1000) {
		session_free(s);
		return;
	}
	evtimer_add(s->close_timer, &tick);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	if (s->state == S_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
			return;
		if (output_flushed(s)) {
			session_free(s);
			return;
		}
		arm_close_check(s);
		return;
	}
	if (s->output_paused &&
	    evbuffer_get_length(bufferevent_get_output(bev)) < OUTPUT_PAUSE / 2) {
		s->output_paused = false;
		bufferevent_enable(bev, EV_READ);
		smtp_process(s);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	if (s->state == S_TLS) {
		if (what & BEV_EVENT_CONNECTED) {
			tls_established(s);
			return;
		}
		unsigned long e = bufferevent_get_openssl_error(bev);
		char msg[256] = "connection closed";
		if (e)
			ERR_error_string_n(e, msg, sizeof msg);
		else if (what & BEV_EVENT_TIMEOUT)
			snprintf(msg, sizeof msg, "timeout");
		log_info(s->id, "event=tls-failed ip=%s error=\"%s\"", s->ip, msg);
		s->end_reason = "tls-handshake-failed";
		/* let OpenSSL's alert (e.g. protocol_version) reach the client: under
		 * STARTTLS it waits in the socket bufferevent below the TLS filter */
		struct bufferevent *u = bufferevent_get_underlying(bev);
		if (u != NULL && !(what & (BEV_EVENT_EOF | BEV_EVENT_TIMEOUT))) {
			enter_state(s, S_CLOSING);
			bufferevent_disable(bev, EV_READ | EV_WRITE);
			bufferevent_enable(u, EV_WRITE);
			arm_close_check(s);
			return;
		}
		session_free(s);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && s->state != S_CLOSING) {
		log_info(s->id, "event=timeout state=%s", state_name(s->state));
		reply(s, "421 4.4.2 %s Error: timeout exceeded", s->w->cfg->hostname);
		close_after_reply(s, "timeout");
		return;
	}
	if (s->end_reason == NULL)
		s->end_reason = (what & BEV_EVENT_EOF) ? "eof" : "error";
	if (s->state == S_COMMIT || s->auth_req != NULL) {
		/* the commit or password-check callback still points at us: free there */
		s->dead = true;
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		return;
	}
	session_free(s);
}

static void session_free(struct smtp_session *s)
{
	log_info(s->id, "event=disconnect ip=%s reason=%s state=%s messages=%u errors=%u", s->ip,
	    s->end_reason ? s->end_reason : "closed", state_name(s->state), s->nmessages,
	    s->nerrors);
	txn_reset(s);
	auth_reset(s);
	free(s->parked_line);
	if (s->auth_delay)
		event_free(s->auth_delay);
	if (s->close_timer)
		event_free(s->close_timer);
	free(s->auth_user);
	free(s->local_user);
	free(s->tls_comment);
	if (s->tls && s->end_reason &&
	    (strcmp(s->end_reason, "quit") == 0 || strcmp(s->end_reason, "eof") == 0))
		/* a clean end keeps the TLS session resumable by the client's next connection */
		tls_shutdown(bufferevent_openssl_get_ssl(s->bev));
	bufferevent_free(s->bev);
	server_conn_release(s->w->server, &s->ss);
	s->w->nsessions--;
	free(s->helo);
	smtp_input_free(&s->in);
	free(s);
}

/* Who is on the other end of the local socket, and may they submit? false:
 * refused (the reply is queued). */
static bool local_peer(struct smtp_session *s, int fd)
{
	struct ucred cr;
	socklen_t len = sizeof cr;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		reply(s, "421 4.3.0 Cannot identify the local user");
		return false;
	}
	char pwbuf[4096];
	struct passwd pw, *res = NULL;
	const char *name = NULL;
	char uidname[32];
	if (getpwuid_r(cr.uid, &pw, pwbuf, sizeof pwbuf, &res) == 0 && res != NULL) {
		name = res->pw_name;
	} else {
		snprintf(uidname, sizeof uidname, "#%u", (unsigned)cr.uid);
		name = uidname;
	}
	bool ok = false;
	for (char **u = s->w->cfg->local.users; u && *u && !ok; u++)
		ok = strcmp(*u, "*") == 0 || strcmp(*u, name) == 0;
	if (!ok) {
		log_warn(s->id, "event=reject reason=local-user-not-allowed user=%s uid=%u",
		    log_str(name), (unsigned)cr.uid);
		reply(s,
		    "554 5.7.1 Local user %s may not submit mail (see local.users in the "
		    "configuration)",
		    log_str(name));
		return false;
	}
	s->local_user = strdup(name);
	s->local_uid = (unsigned)cr.uid;
	log_info(s->id, "event=local-user user=%s uid=%u", log_str(name), s->local_uid);
	return s->local_user != NULL;
}

void smtp_session_start(
    struct worker *w, int fd, const struct sockaddr_storage *ss, enum listener_kind kind)
{
	struct smtp_session *s = calloc(1, sizeof *s);
	if (s == NULL) {
		close(fd);
		server_conn_release(w->server, ss);
		return;
	}
	s->w = w;
	s->ss = *ss;
	s->kind = kind;
	util_session_id(s->id);
	if (ss->ss_family == AF_UNIX)
		snprintf(s->ip, sizeof s->ip, "local");
	else if (ss->ss_family == AF_INET6)
		inet_ntop(
		    AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, s->ip, sizeof s->ip);
	else
		inet_ntop(
		    AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, s->ip, sizeof s->ip);
	smtp_input_init(&s->in, w->cfg->limits.line_length);
	if (kind == LISTEN_SUBMISSIONS) {
		w->nsessions++;
		log_info(s->id, "event=connect ip=%s listener=submissions", s->ip);
		if (!start_tls(s, fd)) {
			log_err(s->id, "event=tls-failed error=\"cannot set up TLS\"");
			w->nsessions--;
			close(fd);
			server_conn_release(w->server, ss);
			smtp_input_free(&s->in);
			free(s);
		}
		return;
	}
	s->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		close(fd);
		server_conn_release(w->server, ss);
		smtp_input_free(&s->in);
		free(s);
		return;
	}
	w->nsessions++;
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_HIGH);
	bufferevent_setwatermark(s->bev, EV_WRITE, OUTPUT_PAUSE / 2, 0);
	s->state = S_GREETING;
	enter_state(s, S_GREETING);
	log_info(s->id, "event=connect ip=%s listener=%s", s->ip,
	    kind == LISTEN_SMTP         ? "smtp"
	    : kind == LISTEN_SUBMISSION ? "submission"
	    : kind == LISTEN_LOCAL      ? "local"
	                                : "submissions");
	if (kind == LISTEN_LOCAL && !local_peer(s, fd)) {
		bufferevent_enable(s->bev, EV_WRITE);
		close_after_reply(s, "local-user-refused");
		return;
	}
	reply(s, "220 %s ESMTP dakiya", w->cfg->hostname);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}
