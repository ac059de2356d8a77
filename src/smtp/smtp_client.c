/*
 * smtp_client.c - one outbound SMTP connection as a state machine on one
 * event loop (contract and decisions in smtp_client.h).
 *
 * Shape (STYLE.md 1, 4, 5):
 * - The I/O layer is a libevent bufferevent (a socket one, with an OpenSSL
 *   filter on top after STARTTLS). It hands us events: connected, readable,
 *   writable (content drained below the low mark), end of file, error. We
 *   queue commands into its output buffer and never touch the socket.
 * - Replies are framed by the pure parser in smtp_reply.c; each complete
 *   reply goes to handle_reply(), which dispatches on the state. Every
 *   transition goes through enter_state(), which also arms the state's
 *   timeout (one timer, so no state can wait forever).
 * - The transaction is a sequence of commands numbered 0 (MAIL), 1..m (the
 *   RCPTs actually sent) and m+1 (DATA). With PIPELINING all of them go in
 *   one write and the replies are matched by counting (RFC 2920 3.1);
 *   without it the next command goes out after each reply. The same code
 *   handles both.
 * - Callbacks are never made from inside a call of the caller: results are
 *   recorded and a zero-delay event (notify) delivers them, the message's
 *   first, then done. smtp_client_free() inside a callback only marks the
 *   client; it is freed when the callback returns.
 *
 * Invariants:
 * - A message is in one phase: NONE, WAITING (given, not yet on the wire),
 *   ACTIVE (MAIL sent or checks running), DONE (every recipient final,
 *   result not yet delivered). fail() makes every non-final recipient of a
 *   WAITING or ACTIVE message TEMPFAIL, so no recipient is ever left
 *   without a result.
 * - STARTTLS: no byte received in the clear after the 220 may be read as if
 *   it came over TLS (the response injection class of STARTTLS bugs, see
 *   "Why TLS is better without STARTTLS", USENIX Security 2021): leftover
 *   input there is a protocol error.
 * - Nothing from the peer reaches a log unescaped (log_str); nothing from
 *   the envelope reaches the wire with a CR, LF or other control byte
 *   (addresses are checked before MAIL/RCPT are built).
 */
#include "smtp/smtp_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

#define CONTENT_HIGH (256 * 1024) /* fill the output up to this much content */
#define CONTENT_LOW (64 * 1024)   /* ... and refill when it drains below this */
#define READ_CHUNK (64 * 1024)    /* blob bytes read at a time */
#define CMD_MAX 4096              /* one command line, extensions included */
#define ADDR_MAX 1000             /* an envelope address we are willing to send */

enum cstate {
	S_CONNECT,  /* TCP connect in progress */
	S_GREETING, /* waiting for the 220 banner */
	S_EHLO,     /* EHLO sent */
	S_HELO,     /* HELO sent (EHLO was refused) */
	S_STARTTLS, /* STARTTLS sent, waiting for 220 */
	S_TLS,      /* TLS handshake in progress */
	S_IDLE,     /* greeted, no command outstanding */
	S_RSET,     /* RSET sent */
	S_MAIL,     /* waiting for the MAIL reply (pipelined: and all that follow) */
	S_RCPT,     /* waiting for RCPT replies */
	S_DATA,     /* waiting for the DATA reply (354) */
	S_CONTENT,  /* streaming the message */
	S_DOT,      /* "." sent, waiting for the final reply */
	S_QUIT,     /* QUIT sent */
	S_CLOSED,   /* the connection is gone */
};

static const char *state_name(enum cstate st)
{
	switch (st) {
	case S_CONNECT:
		return "connect";
	case S_GREETING:
		return "greeting";
	case S_EHLO:
		return "ehlo";
	case S_HELO:
		return "helo";
	case S_STARTTLS:
		return "starttls";
	case S_TLS:
		return "tls";
	case S_IDLE:
		return "idle";
	case S_RSET:
		return "rset";
	case S_MAIL:
		return "mail";
	case S_RCPT:
		return "rcpt";
	case S_DATA:
		return "data";
	case S_CONTENT:
		return "content";
	case S_DOT:
		return "dot";
	case S_QUIT:
		return "quit";
	case S_CLOSED:
		return "closed";
	default:
		abort();
	}
}

enum msg_phase { MSG_NONE, MSG_WAITING, MSG_ACTIVE, MSG_DONE };

struct rcpt_state {
	bool final;    /* the result for this attempt is known */
	bool accepted; /* 2xx to RCPT: its fate is the DATA/"." reply's */
	char *text;    /* owns rr[i].reply */
};

struct smtp_client {
	struct event_base *base;
	char id[72];
	enum cstate state;
	struct bufferevent *bev;
	struct event *timer;  /* the current state's timeout */
	struct event *notify; /* delivers callbacks from the loop */
	struct smtp_reply_parser rp;
	struct smtp_client_timeouts to;
	char *helo_name;
	char *peer_host;
	struct sockaddr_storage peer, source;
	socklen_t peer_len, source_len;
	char peer_ip[INET6_ADDRSTRLEN];
	struct tls_client *tlsc;
	smtp_client_done_cb done;
	void *done_arg;

	struct smtp_client_info info;
	struct buf reason, greeting, last_reply;
	bool tls_tried;  /* STARTTLS was sent once (never twice) */
	bool quit_asked; /* QUIT when idle */
	bool need_rset;  /* a transaction happened since the last RSET */
	bool done_due, done_called;
	bool in_cb, free_asked;

	/* the message */
	enum msg_phase phase;
	const struct smtp_client_msg *msg;
	smtp_client_msg_cb msg_cb;
	void *msg_arg;
	struct smtp_client_rcpt_result *rr;
	struct rcpt_state *rs;
	size_t *sendable; /* indexes of the recipients sent with RCPT */
	size_t nsendable;
	bool pipelined;
	bool mail_ok;
	bool discard_dot; /* "." only closes a DATA that had no recipient */
	bool reused;
	size_t nsent, nreplied, naccepted;
	int fd; /* the blob while a transaction runs, else -1 */
	uint64_t size;
	struct smtp_dot_stuffer ds;
	struct buf chunk;      /* transformed content on its way to the output */
	char rbuf[READ_CHUNK]; /* blob bytes just read */
	struct buf final_reply;
};

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void session_ready(struct smtp_client *c);
static void start_txn(struct smtp_client *c);
static void really_free(struct smtp_client *c);

const char *smtp_client_outcome_name(enum smtp_client_outcome o)
{
	switch (o) {
	case SMTP_CLIENT_OK:
		return "ok";
	case SMTP_CLIENT_CONNECT_FAILED:
		return "connect-failed";
	case SMTP_CLIENT_REFUSED:
		return "refused";
	case SMTP_CLIENT_TIMEOUT:
		return "timeout";
	case SMTP_CLIENT_CLOSED:
		return "closed";
	case SMTP_CLIENT_PROTOCOL:
		return "protocol";
	case SMTP_CLIENT_TLS_FAILED:
		return "tls-failed";
	case SMTP_CLIENT_LOCAL:
		return "local";
	default:
		abort();
	}
}

const char *smtp_rcpt_status_name(enum smtp_rcpt_status s)
{
	switch (s) {
	case SMTP_RCPT_SENT:
		return "sent";
	case SMTP_RCPT_TEMPFAIL:
		return "tempfail";
	case SMTP_RCPT_PERMFAIL:
		return "permfail";
	default:
		abort();
	}
}

/* ---------------------------------------------------------------- dot-stuffing */

void smtp_dot_stuff_init(struct smtp_dot_stuffer *d)
{
	d->line_start = true;
	d->cr = false;
}

bool smtp_dot_stuff_feed(struct smtp_dot_stuffer *d, const char *in, size_t len, struct buf *out)
{
	/* worst case: every byte a bare LF or a line-starting dot doubles */
	char *o = buf_reserve(out, 2 * len + 2);
	if (o == NULL)
		return false;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		char ch = in[i];
		if (d->cr) {
			d->cr = false;
			o[n++] = '\r';
			o[n++] = '\n';
			d->line_start = true;
			if (ch == '\n')
				continue; /* CRLF */
			                  /* a bare CR ended a line; ch starts the next one */
		}
		if (ch == '\r') {
			d->cr = true;
			continue;
		}
		if (ch == '\n') { /* bare LF */
			o[n++] = '\r';
			o[n++] = '\n';
			d->line_start = true;
			continue;
		}
		if (d->line_start && ch == '.')
			o[n++] = '.';
		o[n++] = ch;
		d->line_start = false;
	}
	out->len += n;
	out->data[out->len] = '\0';
	return true;
}

bool smtp_dot_stuff_end(struct smtp_dot_stuffer *d, struct buf *out)
{
	if (d->cr || !d->line_start)
		buf_puts(out, "\r\n");
	d->cr = false;
	d->line_start = true;
	buf_puts(out, ".\r\n");
	return !buf_err(out);
}

/* ---------------------------------------------------------------- helpers */

static unsigned timeout_of(const struct smtp_client *c, enum cstate st)
{
	const struct smtp_client_timeouts *t = &c->to;
	switch (st) {
	case S_CONNECT:
		return t->connect;
	case S_GREETING:
		return t->greeting;
	case S_EHLO:
	case S_HELO:
		return t->ehlo;
	case S_STARTTLS:
	case S_TLS:
		return t->starttls;
	case S_IDLE:
		return t->idle;
	case S_RSET:
	case S_MAIL:
		return t->mail;
	case S_RCPT:
		return t->rcpt;
	case S_DATA:
		return t->data_init;
	case S_CONTENT:
		return t->data_block;
	case S_DOT:
		return t->data_end;
	case S_QUIT:
		return t->quit;
	case S_CLOSED:
		return 0;
	default:
		abort();
	}
}

/* (Re)start the current state's timeout from now. */
static void arm_timer(struct smtp_client *c)
{
	unsigned secs = timeout_of(c, c->state);
	if (secs == 0) {
		evtimer_del(c->timer);
		return;
	}
	struct timeval tv = {(time_t)secs, 0};
	evtimer_add(c->timer, &tv);
}

static void enter_state(struct smtp_client *c, enum cstate st)
{
	if (c->state != st)
		log_debug(c->id, "event=client-state from=%s to=%s", state_name(c->state),
		    state_name(st));
	c->state = st;
	arm_timer(c);
}

static void schedule_notify(struct smtp_client *c)
{
	static const struct timeval now = {0, 0};
	evtimer_add(c->notify, &now);
}

/* Queue one command line. Commands are built by us from checked values. */
static void send_cmd(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void send_cmd(struct smtp_client *c, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static void send_buf(struct smtp_client *c, const struct buf *b)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_add(out, b->data, b->len);
	evbuffer_add(out, "\r\n", 2);
}

/* The default enhanced status for a reply code's class (RFC 3463). */
static void esc_default(int code, char *esc, size_t n)
{
	snprintf(esc, n, "%d.0.0", code / 100 >= 2 && code / 100 <= 5 ? code / 100 : 4);
}

static void free_msg_state(struct smtp_client *c)
{
	if (c->rs != NULL && c->msg != NULL)
		for (size_t i = 0; i < c->msg->nrcpts; i++)
			free(c->rs[i].text);
	free(c->rs);
	free(c->rr);
	free(c->sendable);
	c->rs = NULL;
	c->rr = NULL;
	c->sendable = NULL;
	c->nsendable = 0;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->msg = NULL;
	c->msg_cb = NULL;
	c->phase = MSG_NONE;
	buf_reset(&c->final_reply);
}

/* Set recipient i's result for this attempt. */
static void set_rcpt(struct smtp_client *c, size_t i, enum smtp_rcpt_status st, int code,
    const char *esc, const char *text, bool remote)
{
	struct smtp_client_rcpt_result *r = &c->rr[i];
	char *t = strdup(text);
	free(c->rs[i].text);
	c->rs[i].text = t;
	c->rs[i].final = true;
	r->status = st;
	r->code = code;
	if (esc != NULL && esc[0] != '\0')
		snprintf(r->esc, sizeof r->esc, "%s", esc);
	else
		esc_default(code, r->esc, sizeof r->esc);
	r->reply = t != NULL ? t : "(out of memory)";
	r->remote = remote;
}

/* Set recipient i's result from a reply of the peer (4xx, 5xx; 2xx only
 * for the final "." reply). */
static void set_rcpt_reply(struct smtp_client *c, size_t i, const struct smtp_reply *r)
{
	enum smtp_rcpt_status st = r->code < 300   ? SMTP_RCPT_SENT
	                           : r->code < 500 ? SMTP_RCPT_TEMPFAIL
	                                           : SMTP_RCPT_PERMFAIL;
	set_rcpt(c, i, st, r->code, r->esc, buf_cstr(&c->last_reply), true);
}

/* Every recipient is final: log them and have the callback delivered. */
static void message_finished(struct smtp_client *c)
{
	const struct smtp_client_msg *m = c->msg;
	for (size_t i = 0; i < m->nrcpts; i++) {
		if (!c->rs[i].final) /* our bug: every path sets every recipient */
			fatalx("smtp_client: recipient %zu without a result in state %s", i,
			    state_name(c->state));
		const struct smtp_client_rcpt_result *r = &c->rr[i];
		log_info(m->id ? m->id : c->id,
		    "event=smtp-rcpt to=%s status=%s host=%s ip=%s tls=%s reply=%s%s",
		    log_str(m->rcpts[i].addr), smtp_rcpt_status_name(r->status),
		    log_str(c->peer_host), c->peer_ip, c->info.tls ? c->info.tlsp.version : "none",
		    log_str(r->reply), r->remote ? "" : " local=yes");
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->phase = MSG_DONE;
	schedule_notify(c);
}

/* Close the connection now (no QUIT). */
static void close_now(struct smtp_client *c, bool clean)
{
	if (c->bev != NULL) {
		if (clean && c->info.tls)
			tls_shutdown(bufferevent_openssl_get_ssl(c->bev));
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->state != S_CLOSED) {
		log_info(c->id,
		    "event=smtp-disconnect host=%s ip=%s outcome=%s state=%s messages=%u%s%s",
		    log_str(c->peer_host), c->peer_ip, smtp_client_outcome_name(c->info.outcome),
		    state_name(c->state), c->info.messages, c->reason.len ? " reason=" : "",
		    c->reason.len ? log_str(buf_cstr(&c->reason)) : "");
		c->info.state = state_name(c->state); /* where it ended */
	}
	c->state = S_CLOSED;
	evtimer_del(c->timer);
	c->done_due = true;
	schedule_notify(c);
}

/* Record the connection's outcome (the first one wins) and make every
 * pending recipient TEMPFAIL with reply (a 421 from the peer) or our text. */
__attribute__((format(printf, 4, 0))) static void record_failure(struct smtp_client *c,
    enum smtp_client_outcome o, const struct smtp_reply *reply, const char *fmt, va_list ap)
{
	if (c->info.outcome == SMTP_CLIENT_OK) {
		c->info.outcome = o;
		buf_reset(&c->reason);
		buf_vprintf(&c->reason, fmt, ap);
	}
	if (c->phase != MSG_WAITING && c->phase != MSG_ACTIVE)
		return;
	const char *esc;
	switch (o) {
	case SMTP_CLIENT_CONNECT_FAILED:
		esc = "4.4.1"; /* no answer from host */
		break;
	case SMTP_CLIENT_REFUSED:
		esc = "4.3.2"; /* system not accepting messages */
		break;
	case SMTP_CLIENT_TIMEOUT:
	case SMTP_CLIENT_CLOSED:
		esc = "4.4.2"; /* bad connection */
		break;
	case SMTP_CLIENT_PROTOCOL:
		esc = "4.5.0"; /* other or undefined protocol status */
		break;
	case SMTP_CLIENT_TLS_FAILED:
		esc = "4.7.5"; /* cryptographic failure */
		break;
	case SMTP_CLIENT_LOCAL:
		esc = "4.3.0";
		break;
	case SMTP_CLIENT_OK:
	default:
		abort();
	}
	for (size_t i = 0; i < c->msg->nrcpts; i++) {
		if (c->rs[i].final)
			continue;
		if (reply != NULL)
			set_rcpt(c, i, SMTP_RCPT_TEMPFAIL, reply->code,
			    reply->esc[0] ? reply->esc : "4.0.0", buf_cstr(&c->last_reply), true);
		else
			set_rcpt(c, i, SMTP_RCPT_TEMPFAIL, 451, esc, buf_cstr(&c->reason), false);
	}
	message_finished(c);
}

/* The connection failed: record why, settle the message, close at once. */
static void fail(struct smtp_client *c, enum smtp_client_outcome o, const struct smtp_reply *r,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail(struct smtp_client *c, enum smtp_client_outcome o, const struct smtp_reply *r,
    const char *fmt, ...)
{
	if (c->state == S_CLOSED)
		return;
	va_list ap;
	va_start(ap, fmt);
	record_failure(c, o, r, fmt, ap);
	va_end(ap);
	close_now(c, false);
}

/* The peer turned the session down with a reply (not 421): say QUIT, as
 * RFC 5321 3.1 asks after a 554 greeting, and close after its reply. */
static void refuse_and_quit(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void refuse_and_quit(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	record_failure(c, SMTP_CLIENT_REFUSED, NULL, fmt, ap);
	va_end(ap);
	send_cmd(c, "QUIT");
	enter_state(c, S_QUIT);
}

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* May this address go between <> on the wire? No control bytes (so no
 * CR/LF injection), no angle brackets, a sane length. */
static bool addr_ok(const char *a)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)a; *p; p++, n++)
		if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return false;
	return n <= ADDR_MAX;
}

/* ---------------------------------------------------------------- session set-up */

static void send_ehlo(struct smtp_client *c)
{
	send_cmd(c, "EHLO %s", c->helo_name);
	enter_state(c, S_EHLO);
}

/* Greeted (after EHLO or HELO): STARTTLS first if we can, else ready. */
static void after_ehlo(struct smtp_client *c)
{
	if (!c->info.tls && c->tlsc != NULL && c->info.caps.starttls && !c->tls_tried) {
		c->tls_tried = true;
		send_cmd(c, "STARTTLS");
		enter_state(c, S_STARTTLS);
		return;
	}
	session_ready(c);
}

/* Put TLS over the plain socket bufferevent (RFC 3207). */
static void start_tls(struct smtp_client *c)
{
	SSL *ssl = tls_client_ssl(c->tlsc, c->peer_host);
	if (ssl == NULL) {
		fail(c, SMTP_CLIENT_LOCAL, NULL, "cannot set up TLS (out of memory)");
		return;
	}
	struct bufferevent *b = bufferevent_openssl_filter_new(
	    c->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (b == NULL) {
		SSL_free(ssl);
		fail(c, SMTP_CLIENT_LOCAL, NULL, "cannot set up TLS (out of memory)");
		return;
	}
	/* The filter writes its records into the socket bufferevent as long as
	 * that one's output stays under its high mark; without a mark the whole
	 * message would pile up there in memory (libevent checks it in the
	 * filter's BIO only). */
	bufferevent_setwatermark(bufferevent_get_underlying(b), EV_WRITE, 0, CONTENT_HIGH);
	/* servers often close without close_notify; SMTP frames its own data */
	bufferevent_openssl_set_allow_dirty_shutdown(b, 1);
	c->bev = b; /* frees the socket bufferevent when freed */
	bufferevent_setcb(b, on_read, on_write, on_event, c);
	enter_state(c, S_TLS);
	bufferevent_enable(b, EV_READ | EV_WRITE);
}

static void tls_established(struct smtp_client *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	c->info.tls = true;
	tls_client_peer(ssl, &c->info.tlsp);
	log_info(c->id,
	    "event=smtp-tls host=%s version=%s cipher=%s bits=%d verified=%s%s%s name=%s",
	    log_str(c->peer_host), c->info.tlsp.version, c->info.tlsp.cipher, c->info.tlsp.bits,
	    c->info.tlsp.verified ? "yes" : "no", c->info.tlsp.verified ? "" : " verify_error=",
	    c->info.tlsp.verified ? "" : log_str(c->info.tlsp.verify_error),
	    log_str(c->info.tlsp.name));
	/* RFC 3207 4.2: forget what the clear-text EHLO said, ask again */
	memset(&c->info.caps, 0, sizeof c->info.caps);
	c->info.esmtp = false;
	smtp_reply_parser_free(&c->rp);
	smtp_reply_parser_init(&c->rp);
	send_ehlo(c);
}

/* The session can carry a message: start the waiting one, or QUIT. */
static void session_ready(struct smtp_client *c)
{
	enter_state(c, S_IDLE);
	if (c->phase == MSG_WAITING) {
		start_txn(c);
		return;
	}
	if (c->quit_asked && c->phase == MSG_NONE) {
		send_cmd(c, "QUIT");
		enter_state(c, S_QUIT);
	}
}

/* ---------------------------------------------------------------- the transaction */

/* Every recipient not yet final gets the same local result. */
static void refuse_all(
    struct smtp_client *c, enum smtp_rcpt_status st, int code, const char *esc, const char *text)
{
	for (size_t i = 0; i < c->msg->nrcpts; i++)
		if (!c->rs[i].final)
			set_rcpt(c, i, st, code, esc, text, false);
}

static bool build_mail(struct smtp_client *c, bool utf8, struct buf *cmd)
{
	const struct smtp_client_msg *m = c->msg;
	const struct smtp_caps *caps = &c->info.caps;
	buf_printf(cmd, "MAIL FROM:<%s>", m->sender);
	if (c->info.esmtp) {
		if (caps->size)
			buf_printf(cmd, " SIZE=%" PRIu64, c->size);
		if (m->eightbit)
			buf_puts(cmd, " BODY=8BITMIME");
		if (utf8)
			buf_puts(cmd, " SMTPUTF8");
		if (caps->dsn) {
			if (m->ret == DSN_RET_FULL)
				buf_puts(cmd, " RET=FULL");
			else if (m->ret == DSN_RET_HDRS)
				buf_puts(cmd, " RET=HDRS");
			if (m->envid != NULL && m->envid[0] != '\0') {
				buf_puts(cmd, " ENVID=");
				dsn_xtext_encode(m->envid, strlen(m->envid), cmd);
			}
		}
	}
	return !buf_err(cmd);
}

static bool build_rcpt(struct smtp_client *c, size_t i, struct buf *cmd)
{
	const struct smtp_client_rcpt *r = &c->msg->rcpts[i];
	buf_printf(cmd, "RCPT TO:<%s>", r->addr);
	if (c->info.esmtp && c->info.caps.dsn) {
		size_t mark = cmd->len;
		if (r->notify != 0) {
			buf_puts(cmd, " NOTIFY=");
			if (!dsn_notify_render(r->notify, cmd)) { /* invalid bits: leave it out */
				cmd->len = mark;
				cmd->data[mark] = '\0';
				cmd->err = false;
			}
		}
		if (r->orcpt != NULL) {
			buf_puts(cmd, " ORCPT=");
			dsn_orcpt_render(r->orcpt, cmd);
		}
	}
	return !buf_err(cmd);
}

static void send_rcpt(struct smtp_client *c, size_t k)
{
	struct buf cmd;
	buf_init(&cmd, CMD_MAX);
	if (!build_rcpt(c, c->sendable[k], &cmd)) {
		/* only an ORCPT near its limit can do this; send the plain form */
		buf_reset(&cmd);
		buf_printf(&cmd, "RCPT TO:<%s>", c->msg->rcpts[c->sendable[k]].addr);
	}
	send_buf(c, &cmd);
	buf_free(&cmd);
}

/* The transaction ended before the content: RSET (so the next message
 * starts clean) and report. */
static void txn_abort(struct smtp_client *c)
{
	message_finished(c);
	c->need_rset = false;
	send_cmd(c, "RSET");
	enter_state(c, S_RSET);
}

/* Start the waiting message on an idle session. */
static void start_txn(struct smtp_client *c)
{
	const struct smtp_client_msg *m = c->msg;
	if (c->need_rset) {
		/* reuse: RSET first, which also proves the connection still works */
		send_cmd(c, "RSET");
		enter_state(c, S_RSET);
		return;
	}
	c->phase = MSG_ACTIVE;
	c->info.messages++;
	c->reused = c->info.messages > 1;
	c->pipelined = c->info.esmtp && c->info.caps.pipelining;
	c->mail_ok = false;
	c->discard_dot = false;
	c->nsent = c->nreplied = c->naccepted = 0;
	buf_reset(&c->final_reply);

	/* checks that need no round trip, in RFC order of importance */
	bool utf8 = m->smtputf8 || !is_ascii(m->sender);
	for (size_t i = 0; i < m->nrcpts; i++)
		utf8 = utf8 || !is_ascii(m->rcpts[i].addr);
	if (!addr_ok(m->sender)) {
		refuse_all(c, SMTP_RCPT_PERMFAIL, 553, "5.1.7",
		    "the envelope sender cannot be sent over SMTP (bad syntax)");
		message_finished(c);
		session_ready(c);
		return;
	}
	if (utf8 && !(c->info.esmtp && c->info.caps.smtputf8)) {
		refuse_all(c, SMTP_RCPT_PERMFAIL, 553, "5.6.7",
		    "the message needs SMTPUTF8 and the receiving server does not offer it");
		message_finished(c);
		session_ready(c);
		return;
	}
	if (m->eightbit && !(c->info.esmtp && c->info.caps.eightbitmime)) {
		refuse_all(c, SMTP_RCPT_PERMFAIL, 554, "5.6.3",
		    "conversion required but not supported: 8-bit message and the receiving "
		    "server does not offer 8BITMIME");
		message_finished(c);
		session_ready(c);
		return;
	}
	c->fd = open(m->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat sb;
	if (c->fd < 0 || fstat(c->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		char text[300];
		snprintf(text, sizeof text, "cannot read the message: %s",
		    c->fd < 0 ? strerror(errno) : "not a regular file");
		log_err(m->id ? m->id : c->id, "event=smtp-blob-error path=%s error=%s",
		    log_str(m->path), log_str(text));
		refuse_all(c, SMTP_RCPT_TEMPFAIL, 451, "4.3.0", text);
		message_finished(c);
		session_ready(c);
		return;
	}
	c->size = (uint64_t)sb.st_size;
	if (c->info.esmtp && c->info.caps.size && c->info.caps.size_max > 0 &&
	    c->size > c->info.caps.size_max) {
		char text[200];
		snprintf(text, sizeof text,
		    "message too big for the receiving server (%" PRIu64 " bytes, its SIZE limit "
		    "is %" PRIu64 ")",
		    c->size, c->info.caps.size_max);
		refuse_all(c, SMTP_RCPT_PERMFAIL, 552, "5.3.4", text);
		message_finished(c);
		session_ready(c);
		return;
	}
	c->nsendable = 0;
	for (size_t i = 0; i < m->nrcpts; i++) {
		if (addr_ok(m->rcpts[i].addr))
			c->sendable[c->nsendable++] = i;
		else
			set_rcpt(c, i, SMTP_RCPT_PERMFAIL, 553, "5.1.3",
			    "the recipient address cannot be sent over SMTP (bad syntax)", false);
	}
	if (c->nsendable == 0) {
		message_finished(c);
		session_ready(c);
		return;
	}

	struct buf cmd;
	buf_init(&cmd, CMD_MAX);
	if (!build_mail(c, utf8, &cmd)) {
		buf_free(&cmd);
		refuse_all(
		    c, SMTP_RCPT_PERMFAIL, 553, "5.1.7", "the MAIL command would be too long");
		message_finished(c);
		session_ready(c);
		return;
	}
	log_debug(m->id ? m->id : c->id, "event=smtp-mail host=%s rcpts=%zu pipelining=%s",
	    log_str(c->peer_host), c->nsendable, c->pipelined ? "yes" : "no");
	send_buf(c, &cmd);
	buf_free(&cmd);
	c->nsent = 1;
	if (c->pipelined) {
		/* RFC 2920 3.1: MAIL, the RCPTs and DATA as one group */
		for (size_t k = 0; k < c->nsendable; k++)
			send_rcpt(c, k);
		send_cmd(c, "DATA");
		c->nsent += c->nsendable + 1;
	}
	enter_state(c, S_MAIL);
}

/* Fill the output with content up to the high mark; at the end of the
 * blob, the final "." and on to S_DOT. */
static void pump_content(struct smtp_client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char *in = c->rbuf;
	while (evbuffer_get_length(out) < CONTENT_HIGH) {
		ssize_t n = read(c->fd, in, sizeof c->rbuf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			/* the message cannot be completed: never send a truncated one */
			log_err(c->msg->id ? c->msg->id : c->id,
			    "event=smtp-blob-error path=%s error=%s", log_str(c->msg->path),
			    strerror(errno));
			fail(c, SMTP_CLIENT_LOCAL, NULL, "cannot read the message: %s",
			    strerror(errno));
			return;
		}
		buf_reset(&c->chunk);
		if (n == 0) {
			smtp_dot_stuff_end(&c->ds, &c->chunk);
			evbuffer_add(out, c->chunk.data, c->chunk.len);
			close(c->fd);
			c->fd = -1;
			enter_state(c, S_DOT);
			return;
		}
		if (!smtp_dot_stuff_feed(&c->ds, in, (size_t)n, &c->chunk)) {
			fail(c, SMTP_CLIENT_LOCAL, NULL, "out of memory sending the message");
			return;
		}
		evbuffer_add(out, c->chunk.data, c->chunk.len);
	}
	arm_timer(c); /* progress: the data block timeout starts again */
}

static void start_content(struct smtp_client *c)
{
	if (lseek(c->fd, 0, SEEK_SET) != 0) {
		fail(c, SMTP_CLIENT_LOCAL, NULL, "cannot read the message: %s", strerror(errno));
		return;
	}
	smtp_dot_stuff_init(&c->ds);
	enter_state(c, S_CONTENT);
	bufferevent_setwatermark(c->bev, EV_WRITE, CONTENT_LOW, 0);
	pump_content(c);
}

static bool is_class(int code, int cls)
{
	return code / 100 == cls;
}

/* A reply to command number k of the transaction (0 MAIL, 1..m RCPT, m+1
 * DATA), in order. */
static void txn_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	size_t k = c->nreplied++;
	size_t m = c->nsendable;
	const char *last = buf_cstr(&c->last_reply);

	if (k == 0) { /* MAIL */
		if (is_class(r->code, 2)) {
			c->mail_ok = true;
		} else if (is_class(r->code, 4) || is_class(r->code, 5)) {
			for (size_t j = 0; j < m; j++)
				set_rcpt_reply(c, c->sendable[j], r);
		} else {
			fail(c, SMTP_CLIENT_PROTOCOL, NULL, "unexpected reply to MAIL: %s", last);
			return;
		}
		if (c->pipelined) {
			enter_state(c, S_RCPT);
		} else if (c->mail_ok) {
			send_rcpt(c, 0);
			c->nsent++;
			enter_state(c, S_RCPT);
		} else {
			txn_abort(c);
		}
		return;
	}
	if (k <= m) { /* RCPT */
		size_t i = c->sendable[k - 1];
		if (!is_class(r->code, 2) && !is_class(r->code, 4) && !is_class(r->code, 5)) {
			fail(c, SMTP_CLIENT_PROTOCOL, NULL, "unexpected reply to RCPT: %s", last);
			return;
		}
		if (c->mail_ok) {
			if (is_class(r->code, 2)) {
				c->rs[i].accepted = true;
				c->naccepted++;
			} else {
				set_rcpt_reply(c, i, r);
			}
		}
		if (c->pipelined) {
			if (k == m)
				enter_state(c, S_DATA);
			else
				arm_timer(c); /* the next RCPT reply gets its own time */
			return;
		}
		if (k < m) {
			send_rcpt(c, k);
			c->nsent++;
			arm_timer(c);
		} else if (c->naccepted > 0) {
			send_cmd(c, "DATA");
			c->nsent++;
			enter_state(c, S_DATA);
		} else {
			txn_abort(c); /* every recipient refused: no DATA */
		}
		return;
	}
	if (k == m + 1) { /* DATA */
		if (r->code == 354) {
			if (c->naccepted == 0) {
				/* pipelined, and nobody to send to: end the empty content at
				 * once (RFC 2920 3.1) and ignore its reply */
				send_cmd(c, ".");
				c->discard_dot = true;
				enter_state(c, S_DOT);
				return;
			}
			start_content(c);
		} else if (is_class(r->code, 4) || is_class(r->code, 5)) {
			for (size_t j = 0; j < c->msg->nrcpts; j++)
				if (c->rs[j].accepted && !c->rs[j].final)
					set_rcpt_reply(c, j, r);
			txn_abort(c);
		} else {
			fail(c, SMTP_CLIENT_PROTOCOL, NULL, "unexpected reply to DATA: %s", last);
		}
		return;
	}
	fail(c, SMTP_CLIENT_PROTOCOL, NULL, "reply without a command: %s", last);
}

/* The reply to the final ".": the fate of every accepted recipient. */
static void dot_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	if (c->discard_dot) {
		txn_abort(c);
		return;
	}
	if (!is_class(r->code, 2) && !is_class(r->code, 4) && !is_class(r->code, 5)) {
		fail(c, SMTP_CLIENT_PROTOCOL, NULL, "unexpected reply to the end of data: %s",
		    buf_cstr(&c->last_reply));
		return;
	}
	buf_reset(&c->final_reply);
	buf_puts(&c->final_reply, buf_cstr(&c->last_reply));
	for (size_t j = 0; j < c->msg->nrcpts; j++)
		if (c->rs[j].accepted && !c->rs[j].final)
			set_rcpt_reply(c, j, r);
	c->need_rset = true;
	message_finished(c);
	session_ready(c);
}

/* ---------------------------------------------------------------- replies */

static void handle_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	buf_reset(&c->last_reply);
	smtp_reply_format(r, &c->last_reply);
	const char *last = buf_cstr(&c->last_reply);
	log_debug(c->id, "event=smtp-reply state=%s reply=%s", state_name(c->state), log_str(last));

	if (r->code == 421 && c->state != S_QUIT) {
		/* the peer is closing the channel: everything pending is temporary */
		fail(c, SMTP_CLIENT_REFUSED, r, "the server is closing the connection: %s", last);
		return;
	}
	switch (c->state) {
	case S_GREETING:
		if (r->code != 220) {
			refuse_and_quit(c, "greeting: %s", last);
			return;
		}
		buf_reset(&c->greeting);
		buf_puts(&c->greeting, last);
		send_ehlo(c);
		return;
	case S_EHLO:
		if (r->code == 250) {
			c->info.esmtp = true;
			smtp_caps_parse(r, &c->info.caps);
			after_ehlo(c);
		} else if (r->code == 500 || r->code == 502 || r->code == 504 || r->code == 550) {
			send_cmd(c, "HELO %s", c->helo_name);
			enter_state(c, S_HELO);
		} else {
			refuse_and_quit(c, "EHLO refused: %s", last);
		}
		return;
	case S_HELO:
		if (r->code != 250) {
			refuse_and_quit(c, "HELO refused: %s", last);
			return;
		}
		c->info.esmtp = false;
		memset(&c->info.caps, 0, sizeof c->info.caps);
		after_ehlo(c);
		return;
	case S_STARTTLS:
		if (r->code == 220) {
			if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 ||
			    smtp_reply_pending(&c->rp)) {
				fail(c, SMTP_CLIENT_PROTOCOL, NULL,
				    "data sent in the clear after 220 to STARTTLS");
				return;
			}
			start_tls(c);
			return;
		}
		/* opportunistic: a refused STARTTLS leaves the session as it was */
		log_info(c->id, "event=smtp-starttls-refused host=%s reply=%s",
		    log_str(c->peer_host), log_str(last));
		session_ready(c);
		return;
	case S_RSET:
		if (!is_class(r->code, 2)) {
			fail(c, SMTP_CLIENT_PROTOCOL, NULL, "RSET refused: %s", last);
			return;
		}
		c->need_rset = false;
		session_ready(c);
		return;
	case S_MAIL:
	case S_RCPT:
	case S_DATA:
		txn_reply(c, r);
		return;
	case S_DOT:
		dot_reply(c, r);
		return;
	case S_QUIT:
		close_now(c, true);
		return;
	case S_IDLE:
	case S_CONTENT:
	case S_CONNECT:
	case S_TLS:
		fail(c, SMTP_CLIENT_PROTOCOL, NULL, "unexpected reply in state %s: %s",
		    state_name(c->state), last);
		return;
	case S_CLOSED:
	default:
		abort();
	}
}

/* Turn buffered input into replies until it runs out or the state stops
 * reading (closed, or the TLS handshake took the connection over). */
static void process_input(struct smtp_client *c)
{
	while (c->state != S_CLOSED && c->state != S_TLS && c->bev != NULL) {
		struct evbuffer *in = bufferevent_get_input(c->bev);
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			return;
		size_t used = 0;
		enum smtp_reply_rc rc = smtp_reply_feed(&c->rp, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (rc == SMTP_REPLY_ERROR) {
			fail(c, SMTP_CLIENT_PROTOCOL, NULL, "bad reply in state %s: %s",
			    state_name(c->state), smtp_reply_err_str(c->rp.err));
			return;
		}
		if (rc == SMTP_REPLY_DONE)
			handle_reply(c, &c->rp.reply);
	}
}

/* ---------------------------------------------------------------- I/O events */

static void on_read(struct bufferevent *bev, void *arg)
{
	process_input(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;
	if (c->state == S_CONTENT)
		pump_content(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *c = arg;
	if (c->state == S_CONNECT) {
		if (what & BEV_EVENT_CONNECTED) {
			log_info(c->id, "event=smtp-connect host=%s ip=%s port=%u",
			    log_str(c->peer_host), c->peer_ip, c->info.peer_port);
			enter_state(c, S_GREETING);
			bufferevent_enable(c->bev, EV_READ | EV_WRITE);
			return;
		}
		int e = EVUTIL_SOCKET_ERROR();
		fail(c, SMTP_CLIENT_CONNECT_FAILED, NULL, "cannot connect to %s port %u: %s",
		    c->peer_ip, c->info.peer_port, e ? strerror(e) : "connection failed");
		return;
	}
	if (c->state == S_TLS) {
		if (what & BEV_EVENT_CONNECTED) {
			tls_established(c);
			return;
		}
		unsigned long e = bufferevent_get_openssl_error(bev);
		char msg[256] = "connection closed during the handshake";
		if (e != 0)
			ERR_error_string_n(e, msg, sizeof msg);
		ERR_clear_error();
		fail(c, SMTP_CLIENT_TLS_FAILED, NULL, "TLS handshake failed: %s", msg);
		return;
	}
	if (c->state == S_QUIT) { /* the peer closed first: fine */
		close_now(c, false);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		fail(c, SMTP_CLIENT_CLOSED, NULL, "connection closed by the server in state %s",
		    state_name(c->state));
		return;
	}
	unsigned long se = c->info.tls ? bufferevent_get_openssl_error(bev) : 0;
	int e = EVUTIL_SOCKET_ERROR();
	char msg[256];
	if (se != 0)
		ERR_error_string_n(se, msg, sizeof msg);
	else
		snprintf(msg, sizeof msg, "%s", e ? strerror(e) : "connection error");
	ERR_clear_error();
	fail(c, SMTP_CLIENT_CLOSED, NULL, "connection lost in state %s: %s", state_name(c->state),
	    msg);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	switch (c->state) {
	case S_CONNECT:
		fail(c, SMTP_CLIENT_CONNECT_FAILED, NULL, "cannot connect to %s port %u: timeout",
		    c->peer_ip, c->info.peer_port);
		return;
	case S_TLS:
		fail(c, SMTP_CLIENT_TLS_FAILED, NULL, "TLS handshake timed out");
		return;
	case S_IDLE: /* nothing to send for a while: end politely */
		c->quit_asked = true;
		send_cmd(c, "QUIT");
		enter_state(c, S_QUIT);
		return;
	case S_QUIT: /* no reply to QUIT: nothing is lost, just close */
		close_now(c, false);
		return;
	case S_CLOSED:
		return;
	default:
		fail(c, SMTP_CLIENT_TIMEOUT, NULL, "timeout in state %s (%u s)",
		    state_name(c->state), timeout_of(c, c->state));
		return;
	}
}

/* Deliver due callbacks: the message's result, then done. */
static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	c->in_cb = true;
	if (c->phase == MSG_DONE) {
		/* move the message out first: the callback may send the next one */
		const struct smtp_client_msg *m = c->msg;
		smtp_client_msg_cb cb = c->msg_cb;
		void *cb_arg = c->msg_arg;
		struct smtp_client_rcpt_result *rr = c->rr;
		struct rcpt_state *rs = c->rs;
		struct buf final = c->final_reply;
		buf_init(&c->final_reply, SMTP_REPLY_MAX);
		struct smtp_client_result res = {
		    .msg = m,
		    .rcpts = rr,
		    .final_reply = buf_cstr(&final),
		    .reused = c->reused,
		    .info = smtp_client_get_info(c),
		};
		for (size_t i = 0; i < m->nrcpts; i++) {
			if (rr[i].status == SMTP_RCPT_SENT)
				res.sent++;
			else if (rr[i].status == SMTP_RCPT_TEMPFAIL)
				res.tempfailed++;
			else
				res.permfailed++;
		}
		c->rr = NULL;
		c->rs = NULL;
		free(c->sendable);
		c->sendable = NULL;
		c->msg = NULL;
		c->msg_cb = NULL;
		c->phase = MSG_NONE;
		size_t nrcpts = m->nrcpts; /* m may be gone once cb returns */
		cb(c, &res, cb_arg);
		for (size_t i = 0; i < nrcpts; i++)
			free(rs[i].text);
		free(rs);
		free(rr);
		buf_free(&final);
		if (c->free_asked) {
			really_free(c);
			return;
		}
		/* quit asked while the message was active, session idle now */
		if (c->quit_asked && c->state == S_IDLE && c->phase == MSG_NONE) {
			send_cmd(c, "QUIT");
			enter_state(c, S_QUIT);
		}
	}
	if (c->done_due && !c->done_called && c->phase == MSG_NONE) {
		c->done_called = true;
		c->done(c, smtp_client_get_info(c), c->done_arg);
		if (c->free_asked) {
			really_free(c);
			return;
		}
	}
	c->in_cb = false;
}

/* ---------------------------------------------------------------- API */

struct smtp_client *smtp_client_new(struct event_base *base, const struct smtp_client_opts *o)
{
	if (o->helo_name == NULL || o->helo_name[0] == '\0' || !addr_ok(o->helo_name) ||
	    o->peer == NULL || o->peer_len > sizeof(struct sockaddr_storage) ||
	    (o->peer->sa_family != AF_INET && o->peer->sa_family != AF_INET6) || o->done == NULL ||
	    (o->source != NULL && (o->source_len > sizeof(struct sockaddr_storage) ||
	                              o->source->sa_family != o->peer->sa_family)))
		return NULL;
	struct smtp_client *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->base = base;
	c->fd = -1;
	c->state = S_CONNECT;
	c->tlsc = o->tls;
	c->done = o->done;
	c->done_arg = o->done_arg;
	if (o->log_id != NULL)
		snprintf(c->id, sizeof c->id, "%s", o->log_id);
	else
		util_session_id(c->id);
	c->helo_name = strdup(o->helo_name);
	c->peer_host = strdup(o->peer_host ? o->peer_host : "");
	memcpy(&c->peer, o->peer, o->peer_len);
	c->peer_len = o->peer_len;
	if (o->source != NULL) {
		memcpy(&c->source, o->source, o->source_len);
		c->source_len = o->source_len;
	}
	c->to = o->timeouts;
	struct smtp_client_timeouts *t = &c->to;
	t->connect = t->connect ? t->connect : 30;
	t->greeting = t->greeting ? t->greeting : 300;
	t->ehlo = t->ehlo ? t->ehlo : 300;
	t->starttls = t->starttls ? t->starttls : 300;
	t->mail = t->mail ? t->mail : 300;
	t->rcpt = t->rcpt ? t->rcpt : 300;
	t->data_init = t->data_init ? t->data_init : 120;
	t->data_block = t->data_block ? t->data_block : 180;
	t->data_end = t->data_end ? t->data_end : 600;
	t->quit = t->quit ? t->quit : 60;
	t->idle = t->idle ? t->idle : 300;
	if (c->peer.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&c->peer;
		inet_ntop(AF_INET6, &s6->sin6_addr, c->peer_ip, sizeof c->peer_ip);
		c->info.peer_port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&c->peer;
		inet_ntop(AF_INET, &s4->sin_addr, c->peer_ip, sizeof c->peer_ip);
		c->info.peer_port = ntohs(s4->sin_port);
	}
	buf_init(&c->reason, 4096);
	buf_init(&c->greeting, SMTP_REPLY_MAX);
	buf_init(&c->last_reply, SMTP_REPLY_MAX);
	buf_init(&c->final_reply, SMTP_REPLY_MAX);
	buf_init(&c->chunk, 2 * READ_CHUNK + 64);
	smtp_reply_parser_init(&c->rp);
	c->timer = evtimer_new(base, timer_cb, c);
	c->notify = evtimer_new(base, notify_cb, c);
	if (c->helo_name == NULL || c->peer_host == NULL || c->timer == NULL || c->notify == NULL) {
		really_free(c);
		return NULL;
	}

	/* the socket is ours, so that it can be bound to the source address */
	int fd = socket(c->peer.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fail(c, SMTP_CLIENT_LOCAL, NULL, "cannot create a socket: %s", strerror(errno));
		return c; /* done comes from the loop */
	}
	if (c->source_len > 0 &&
	    bind(fd, (const struct sockaddr *)&c->source, c->source_len) != 0) {
		char src[INET6_ADDRSTRLEN] = "?";
		if (c->source.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&c->source)->sin6_addr,
			    src, sizeof src);
		else
			inet_ntop(AF_INET, &((const struct sockaddr_in *)&c->source)->sin_addr, src,
			    sizeof src);
		int e = errno;
		close(fd);
		fail(c, SMTP_CLIENT_LOCAL, NULL,
		    "cannot bind to the source address %s: %s; check delivery.source", src,
		    strerror(e));
		return c;
	}
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		fail(c, SMTP_CLIENT_LOCAL, NULL, "out of memory");
		return c;
	}
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	enter_state(c, S_CONNECT);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->peer, (int)c->peer_len) !=
	    0) {
		int e = EVUTIL_SOCKET_ERROR();
		fail(c, SMTP_CLIENT_CONNECT_FAILED, NULL, "cannot connect to %s port %u: %s",
		    c->peer_ip, c->info.peer_port, e ? strerror(e) : "connect failed");
	}
	return c;
}

int smtp_client_send(
    struct smtp_client *c, const struct smtp_client_msg *m, smtp_client_msg_cb cb, void *arg)
{
	if (c->phase != MSG_NONE || c->state == S_CLOSED || c->quit_asked || c->state == S_QUIT ||
	    m == NULL || m->nrcpts == 0 || m->rcpts == NULL || m->path == NULL ||
	    m->sender == NULL || cb == NULL)
		return -1;
	for (size_t i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].addr == NULL)
			return -1;
	c->rr = calloc(m->nrcpts, sizeof *c->rr);
	c->rs = calloc(m->nrcpts, sizeof *c->rs);
	c->sendable = calloc(m->nrcpts, sizeof *c->sendable);
	if (c->rr == NULL || c->rs == NULL || c->sendable == NULL) {
		free(c->rr);
		free(c->rs);
		free(c->sendable);
		c->rr = NULL;
		c->rs = NULL;
		c->sendable = NULL;
		return -1;
	}
	c->msg = m;
	c->msg_cb = cb;
	c->msg_arg = arg;
	c->phase = MSG_WAITING;
	if (c->state == S_IDLE)
		start_txn(c);
	return 0;
}

bool smtp_client_usable(const struct smtp_client *c)
{
	return c->state != S_CLOSED && c->state != S_QUIT && !c->quit_asked &&
	       c->phase == MSG_NONE && c->info.outcome == SMTP_CLIENT_OK;
}

void smtp_client_quit(struct smtp_client *c)
{
	if (c->quit_asked || c->state == S_CLOSED || c->state == S_QUIT)
		return;
	c->quit_asked = true;
	if (c->state == S_CONNECT) {
		if (c->phase == MSG_NONE)
			close_now(c, false);
		return;
	}
	if (c->state == S_IDLE && c->phase == MSG_NONE) {
		send_cmd(c, "QUIT");
		enter_state(c, S_QUIT);
	}
	/* otherwise: once the session is ready and the message is done */
}

const struct smtp_client_info *smtp_client_get_info(const struct smtp_client *c)
{
	struct smtp_client *w = (struct smtp_client *)c; /* fills in the string pointers */
	if (w->state != S_CLOSED || w->info.state == NULL)
		w->info.state = state_name(w->state);
	w->info.reason = buf_cstr(&w->reason);
	w->info.peer_host = w->peer_host;
	w->info.peer_ip = w->peer_ip;
	w->info.greeting = buf_cstr(&w->greeting);
	w->info.last_reply = buf_cstr(&w->last_reply);
	return &w->info;
}

static void really_free(struct smtp_client *c)
{
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->notify != NULL)
		event_free(c->notify);
	free_msg_state(c);
	smtp_reply_parser_free(&c->rp);
	buf_free(&c->reason);
	buf_free(&c->greeting);
	buf_free(&c->last_reply);
	buf_free(&c->final_reply);
	buf_free(&c->chunk);
	free(c->helo_name);
	free(c->peer_host);
	free(c);
}

void smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return;
	if (c->in_cb) {
		c->free_asked = true;
		return;
	}
	really_free(c);
}
