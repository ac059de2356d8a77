/*
 * test_smtp_client.c - the outbound SMTP client (src/smtp/smtp_client.c)
 * against a scripted fake SMTP server on 127.0.0.1, both on one real event
 * loop.
 *
 * The fake server accepts connections and follows one script per
 * connection: a list of {expected command prefix, reply, action}. It
 * records every line it receives (the transcript), the message content as
 * it arrived on the wire (dot-stuffed), and whether commands arrived
 * pipelined (more input already buffered when a command was processed).
 * A command that does not match its step is recorded as a script error
 * and every test checks that there were none.
 *
 * STARTTLS uses the server side of our own TLS module with a self-signed
 * certificate made in a temporary directory, so the client's "not
 * verified, but encrypted" path is exercised for real.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/tls.h"
#include "queue/dsn.h"
#include "smtp/smtp_client.h"

static char tmpdir[64];
static struct tls_server *srv_tls;
static struct tls_client *cli_tls;

/* ------------------------------------------------------------ fake server */

enum act {
	A_END = 0,     /* end of the script */
	A_GREET,       /* sent on accept */
	A_REPLY,       /* reply to a matching command */
	A_DATA,        /* reply (354) to DATA, then read content up to "." */
	A_DOT,         /* expect ".": the reply to the end of data */
	A_STARTTLS,    /* reply, then TLS (server side) */
	A_CLOSE,       /* close at once, no reply */
	A_REPLY_CLOSE, /* reply, then close once it is written */
	A_STALL,       /* never reply */
	A_DATA_CLOSE,  /* 354, then close as soon as content arrives */
};

struct step {
	const char *expect; /* prefix of the command line */
	const char *reply;  /* lines without the final CRLF */
	enum act act;
};

struct fake;

struct fconn {
	struct fake *f;
	struct bufferevent *bev;
	const struct step *script;
	size_t step;
	bool content; /* reading DATA content */
	bool closing; /* free once the output is written */
	bool stalled;
	struct buf *cur; /* content of the current message */
};

#define MAX_CONNS 4
#define MAX_MSGS 4

struct fake {
	struct event_base *base;
	struct evconnlistener *lis;
	struct sockaddr_in addr;
	const struct step *scripts[MAX_CONNS];
	size_t nscripts, nconns;
	struct fconn *conns[MAX_CONNS];
	struct buf transcript;        /* "LINE\n" per command received */
	struct buf content[MAX_MSGS]; /* as received, up to and including ".\r\n" */
	size_t nmsgs;
	unsigned errors;
	char error[512];
	bool pipelined; /* a command came with more input already buffered */
};

static void fconn_free(struct fconn *fc)
{
	if (fc == NULL || fc->bev == NULL)
		return;
	bufferevent_free(fc->bev);
	fc->bev = NULL;
}

static void fake_error(struct fake *f, const char *fmt, ...)
{
	va_list ap;
	if (f->errors++ > 0)
		return;
	va_start(ap, fmt);
	vsnprintf(f->error, sizeof f->error, fmt, ap);
	va_end(ap);
}

static void fsend(struct fconn *fc, const char *reply)
{
	struct evbuffer *out = bufferevent_get_output(fc->bev);
	evbuffer_add_printf(out, "%s\r\n", reply);
}

static void fread_cb(struct bufferevent *bev, void *arg);
static void fwrite_cb(struct bufferevent *bev, void *arg);
static void fevent_cb(struct bufferevent *bev, short what, void *arg);

static void fstart_tls(struct fconn *fc)
{
	SSL *ssl = tls_server_ssl(srv_tls);
	assert_non_null(ssl);
	struct bufferevent *b = bufferevent_openssl_filter_new(
	    fc->f->base, fc->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(b);
	bufferevent_openssl_set_allow_dirty_shutdown(b, 1);
	fc->bev = b;
	bufferevent_setcb(b, fread_cb, fwrite_cb, fevent_cb, fc);
	bufferevent_enable(b, EV_READ | EV_WRITE);
}

/* Content: append what is there; true once "<CRLF>.<CRLF>" (or "." first). */
static bool fcontent(struct fconn *fc, struct evbuffer *in)
{
	struct buf *b = fc->cur;
	char tmp[4096];
	int n;
	while ((n = evbuffer_remove(in, tmp, sizeof tmp)) > 0) {
		for (int i = 0; i < n; i++) {
			buf_putc(b, tmp[i]);
			if ((b->len == 3 && memcmp(b->data, ".\r\n", 3) == 0) ||
			    (b->len >= 5 && memcmp(b->data + b->len - 5, "\r\n.\r\n", 5) == 0)) {
				/* put the rest back */
				evbuffer_prepend(in, tmp + i + 1, (size_t)(n - i - 1));
				return true;
			}
		}
	}
	return false;
}

static void fprocess(struct fconn *fc)
{
	struct fake *f = fc->f;
	for (;;) {
		if (fc->bev == NULL || fc->closing || fc->stalled)
			return;
		struct evbuffer *in = bufferevent_get_input(fc->bev);
		if (fc->content) {
			const struct step *s = &fc->script[fc->step];
			if (s->act == A_DATA_CLOSE) {
				if (evbuffer_get_length(in) > 0) {
					fconn_free(fc);
					return;
				}
				return;
			}
			if (!fcontent(fc, in))
				return;
			fc->content = false;
			fc->step++;
			s = &fc->script[fc->step];
			if (s->act != A_DOT) {
				fake_error(f, "script: step %zu after DATA is not A_DOT", fc->step);
				return;
			}
			fc->step++;
			fsend(fc, s->reply);
			continue;
		}
		size_t n = 0;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT);
		if (line == NULL)
			return;
		if (evbuffer_get_length(in) > 0)
			f->pipelined = true;
		buf_printf(&f->transcript, "%s\n", line);
		const struct step *s = &fc->script[fc->step];
		if (s->act == A_END || s->expect == NULL ||
		    strncmp(line, s->expect, strlen(s->expect)) != 0) {
			fake_error(f, "step %zu: expected \"%s\", got \"%s\"", fc->step,
			    s->expect ? s->expect : "(end)", line);
			free(line);
			fsend(fc, "500 5.5.1 unexpected command");
			continue;
		}
		free(line);
		switch (s->act) {
		case A_REPLY:
			fc->step++;
			fsend(fc, s->reply);
			break;
		case A_DATA:
		case A_DATA_CLOSE:
			fsend(fc, s->reply);
			fc->content = true;
			if (f->nmsgs < MAX_MSGS)
				fc->cur = &f->content[f->nmsgs++];
			break;
		case A_STARTTLS:
			fc->step++;
			fsend(fc, s->reply);
			fstart_tls(fc);
			break;
		case A_CLOSE:
			fconn_free(fc);
			return;
		case A_REPLY_CLOSE:
			fc->step++;
			fsend(fc, s->reply);
			fc->closing = true;
			return;
		case A_STALL:
			fc->stalled = true;
			return;
		default:
			fake_error(f, "script: bad action at step %zu", fc->step);
			return;
		}
	}
}

static void fread_cb(struct bufferevent *bev, void *arg)
{
	fprocess(arg);
}

static void fwrite_cb(struct bufferevent *bev, void *arg)
{
	struct fconn *fc = arg;
	if (fc->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		fconn_free(fc);
}

static void fevent_cb(struct bufferevent *bev, short what, void *arg)
{
	struct fconn *fc = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		fconn_free(fc);
}

static void faccept(
    struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	struct fake *f = arg;
	if (f->nconns >= f->nscripts) {
		fake_error(f, "unexpected connection %zu", f->nconns + 1);
		close(fd);
		return;
	}
	struct fconn *fc = calloc(1, sizeof *fc);
	assert_non_null(fc);
	fc->f = f;
	fc->script = f->scripts[f->nconns];
	f->conns[f->nconns++] = fc;
	fc->bev = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(fc->bev, fread_cb, fwrite_cb, fevent_cb, fc);
	bufferevent_enable(fc->bev, EV_READ | EV_WRITE);
	const struct step *s = &fc->script[0];
	if (s->act == A_GREET) {
		fc->step++;
		fsend(fc, s->reply);
	} else if (s->act == A_CLOSE) {
		fconn_free(fc);
	}
}

static void fake_start(struct fake *f, struct event_base *base)
{
	memset(f, 0, sizeof *f);
	f->base = base;
	f->addr.sin_family = AF_INET;
	f->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->addr.sin_port = 0;
	f->lis =
	    evconnlistener_new_bind(base, faccept, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	        (struct sockaddr *)&f->addr, sizeof f->addr);
	assert_non_null(f->lis);
	socklen_t sl = sizeof f->addr;
	assert_int_equal(
	    getsockname(evconnlistener_get_fd(f->lis), (struct sockaddr *)&f->addr, &sl), 0);
	buf_init(&f->transcript, 0);
	for (int i = 0; i < MAX_MSGS; i++)
		buf_init(&f->content[i], 0);
}

static void fake_stop(struct fake *f)
{
	for (size_t i = 0; i < f->nconns; i++) {
		fconn_free(f->conns[i]);
		free(f->conns[i]);
	}
	evconnlistener_free(f->lis);
	buf_free(&f->transcript);
	for (int i = 0; i < MAX_MSGS; i++)
		buf_free(&f->content[i]);
}

/* ------------------------------------------------------------ client side */

#define MAX_RCPTS 8

struct got_msg {
	size_t sent, temp, perm;
	enum smtp_rcpt_status st[MAX_RCPTS];
	int code[MAX_RCPTS];
	char esc[MAX_RCPTS][SMTP_REPLY_ESC_MAX];
	char reply[MAX_RCPTS][256];
	bool remote[MAX_RCPTS];
	char final[256];
	bool reused;
};

struct run {
	struct event_base *base;
	struct fake f;
	struct smtp_client *c;
	const struct smtp_client_msg *msgs[MAX_MSGS];
	size_t nmsgs, next, ngot;
	struct got_msg got[MAX_MSGS];
	bool done;
	unsigned ndone;
	enum smtp_client_outcome outcome;
	char state[32];
	char reason[512];
	bool esmtp, tls;
	struct tls_peer tlsp;
	unsigned messages;
	bool timed_out;
};

static void msg_cb(struct smtp_client *c, const struct smtp_client_result *r, void *arg)
{
	struct run *run = arg;
	assert_true(run->ngot < MAX_MSGS);
	struct got_msg *g = &run->got[run->ngot++];
	g->sent = r->sent;
	g->temp = r->tempfailed;
	g->perm = r->permfailed;
	g->reused = r->reused;
	snprintf(g->final, sizeof g->final, "%s", r->final_reply);
	assert_int_equal(r->sent + r->tempfailed + r->permfailed, r->msg->nrcpts);
	for (size_t i = 0; i < r->msg->nrcpts && i < MAX_RCPTS; i++) {
		g->st[i] = r->rcpts[i].status;
		g->code[i] = r->rcpts[i].code;
		snprintf(g->esc[i], sizeof g->esc[i], "%s", r->rcpts[i].esc);
		snprintf(g->reply[i], sizeof g->reply[i], "%s", r->rcpts[i].reply);
		g->remote[i] = r->rcpts[i].remote;
	}
	if (run->next < run->nmsgs && smtp_client_usable(c))
		assert_int_equal(smtp_client_send(c, run->msgs[run->next++], msg_cb, run), 0);
	else
		smtp_client_quit(c);
}

static void done_cb(struct smtp_client *c, const struct smtp_client_info *info, void *arg)
{
	struct run *run = arg;
	run->ndone++;
	run->done = true;
	run->outcome = info->outcome;
	snprintf(run->state, sizeof run->state, "%s", info->state);
	snprintf(run->reason, sizeof run->reason, "%s", info->reason);
	run->esmtp = info->esmtp;
	run->tls = info->tls;
	run->tlsp = info->tlsp;
	run->messages = info->messages;
	smtp_client_free(c); /* allowed inside done */
	run->c = NULL;
	event_base_loopbreak(run->base);
}

static void safety_cb(evutil_socket_t fd, short what, void *arg)
{
	struct run *run = arg;
	run->timed_out = true;
	event_base_loopbreak(run->base);
}

static struct smtp_client_timeouts short_timeouts(void)
{
	struct smtp_client_timeouts t = {
	    .connect = 3,
	    .greeting = 3,
	    .ehlo = 3,
	    .starttls = 3,
	    .mail = 3,
	    .rcpt = 3,
	    .data_init = 3,
	    .data_block = 3,
	    .data_end = 3,
	    .quit = 3,
	    .idle = 3,
	};
	return t;
}

/* Run the client against scripts (one per connection) with msgs sent one
 * after the other on the same connection. */
static void run_client(struct run *run, const struct step *const *scripts, size_t nscripts,
    const struct smtp_client_msg *const *msgs, size_t nmsgs, struct tls_client *tls,
    const struct smtp_client_timeouts *to)
{
	memset(run, 0, sizeof *run);
	run->base = event_base_new();
	assert_non_null(run->base);
	fake_start(&run->f, run->base);
	for (size_t i = 0; i < nscripts; i++)
		run->f.scripts[i] = scripts[i];
	run->f.nscripts = nscripts;
	for (size_t i = 0; i < nmsgs; i++)
		run->msgs[i] = msgs[i];
	run->nmsgs = nmsgs;

	struct smtp_client_opts o = {
	    .helo_name = "client.test",
	    .peer = (const struct sockaddr *)&run->f.addr,
	    .peer_len = sizeof run->f.addr,
	    .peer_host = "mx.test",
	    .timeouts = to ? *to : short_timeouts(),
	    .tls = tls,
	    .log_id = "test",
	    .done = done_cb,
	    .done_arg = run,
	};
	run->c = smtp_client_new(run->base, &o);
	assert_non_null(run->c);
	if (nmsgs > 0) {
		assert_int_equal(smtp_client_send(run->c, msgs[0], msg_cb, run), 0);
		run->next = 1;
		/* a second message while one is active is refused */
		assert_int_equal(smtp_client_send(run->c, msgs[0], msg_cb, run), -1);
	} else {
		smtp_client_quit(run->c);
	}
	struct event *safety = evtimer_new(run->base, safety_cb, run);
	struct timeval tv = {15, 0};
	evtimer_add(safety, &tv);
	event_base_dispatch(run->base);
	event_free(safety);
	assert_false(run->timed_out);
	assert_true(run->done);
	assert_int_equal(run->ndone, 1);
	assert_int_equal(run->ngot, nmsgs);
}

static void run_end(struct run *run)
{
	smtp_client_free(run->c);
	fake_stop(&run->f);
	event_base_free(run->base);
}

static void assert_no_script_errors(struct run *run)
{
	if (run->f.errors > 0)
		fail_msg(
		    "fake server: %s\ntranscript:\n%s", run->f.error, buf_cstr(&run->f.transcript));
}

static bool has_line(struct run *run, const char *s)
{
	return strstr(buf_cstr(&run->f.transcript), s) != NULL;
}

/* A blob file in tmpdir with these bytes; returns its path (static slot). */
static const char *blob(const char *name, const char *data, size_t len)
{
	static char slots[8][256];
	static unsigned next;
	char *p = slots[next++ % 8];
	snprintf(p, sizeof slots[0], "%s/%s", tmpdir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		assert_true(w > 0);
		off += (size_t)w;
	}
	close(fd);
	return p;
}

#define SIMPLE_BODY "From: s@a.test\r\nTo: r@b.test\r\nSubject: hi\r\n\r\nHello.\r\n"

/* ------------------------------------------------------------ scripts */

#define GREET                                                                                      \
	{                                                                                          \
		NULL, "220 mx.test ESMTP fake", A_GREET                                            \
	}
#define EHLO_FULL                                                                                  \
	{                                                                                          \
		"EHLO client.test",                                                                \
		    "250-mx.test hello\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250-8BITMIME\r\n" \
		    "250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8",                                     \
		    A_REPLY                                                                        \
	}
#define EHLO_LOCKSTEP                                                                              \
	{                                                                                          \
		"EHLO client.test",                                                                \
		    "250-mx.test hello\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES", A_REPLY        \
	}
#define QUIT                                                                                       \
	{                                                                                          \
		"QUIT", "221 2.0.0 bye", A_REPLY                                                   \
	}
#define END                                                                                        \
	{                                                                                          \
		NULL, NULL, A_END                                                                  \
	}

static const struct smtp_client_rcpt two_rcpts[] = {{"r1@b.test", 0, NULL}, {"r2@b.test", 0, NULL}};

/* ------------------------------------------------------------ tests */

static void test_pipelined_happy(void **state)
{
	static const struct step script[] = {GREET, EHLO_FULL,
	    {"MAIL FROM:<s@a.test> SIZE=", "250 2.1.0 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "250 2.1.5 ok", A_REPLY},
	    {"RCPT TO:<r2@b.test>", "250 2.1.5 ok", A_REPLY}, {"DATA", "354 go ahead", A_DATA},
	    {".", "250 2.0.0 Ok: queued as ABC", A_DOT}, QUIT, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {.id = "q1",
	    .sender = "s@a.test",
	    .rcpts = two_rcpts,
	    .nrcpts = 2,
	    .path = blob("m1", SIMPLE_BODY, strlen(SIMPLE_BODY)),
	    .eightbit = true};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_OK);
	assert_true(run.esmtp);
	assert_false(run.tls);
	assert_int_equal(run.got[0].sent, 2);
	assert_int_equal(run.got[0].st[0], SMTP_RCPT_SENT);
	assert_string_equal(run.got[0].esc[1], "2.0.0");
	assert_string_equal(run.got[0].reply[1], "250 2.0.0 Ok: queued as ABC");
	assert_true(run.got[0].remote[0]);
	assert_string_equal(run.got[0].final, "250 2.0.0 Ok: queued as ABC");
	assert_false(run.got[0].reused);
	assert_true(run.f.pipelined);
	char mail[128];
	snprintf(mail, sizeof mail, "MAIL FROM:<s@a.test> SIZE=%zu BODY=8BITMIME\n",
	    strlen(SIMPLE_BODY));
	assert_true(has_line(&run, mail));
	/* no DSN offered: no DSN parameters, no SMTPUTF8 when not needed */
	assert_false(has_line(&run, "NOTIFY="));
	assert_false(has_line(&run, "RET="));
	assert_false(has_line(&run, "SMTPUTF8"));
	assert_string_equal(buf_cstr(&run.f.content[0]), SIMPLE_BODY ".\r\n");
	assert_int_equal(run.messages, 1);
	run_end(&run);
}

static void test_lockstep(void **state)
{
	static const struct step script[] = {GREET, EHLO_LOCKSTEP,
	    {"MAIL FROM:<> BODY=8BITMIME", "250 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY}, {"RCPT TO:<r2@b.test>", "250 ok", A_REPLY},
	    {"DATA", "354 go", A_DATA}, {".", "250 queued", A_DOT}, QUIT, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {.sender = "",
	    .rcpts = two_rcpts,
	    .nrcpts = 2,
	    .path = blob("m2", SIMPLE_BODY, strlen(SIMPLE_BODY)),
	    .eightbit = true};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_false(run.f.pipelined);
	assert_int_equal(run.got[0].sent, 2);
	/* no ENHANCEDSTATUSCODES in the reply: the class default */
	assert_string_equal(run.got[0].esc[0], "2.0.0");
	assert_false(has_line(&run, "SIZE="));
	run_end(&run);
}

static void test_rcpt_mix(void **state)
{
	static const struct step script[] = {GREET, EHLO_FULL, {"MAIL FROM:", "250 ok", A_REPLY},
	    {"RCPT TO:<a@b.test>", "250 2.1.5 ok", A_REPLY},
	    {"RCPT TO:<b@b.test>", "550-5.1.1 no such user\r\n550 5.1.1 here, sorry", A_REPLY},
	    {"RCPT TO:<c@b.test>", "451 4.2.0 try later", A_REPLY},
	    {"RCPT TO:<d@b.test>", "452 too many recipients", A_REPLY}, {"DATA", "354 go", A_DATA},
	    {".", "250 2.0.0 queued", A_DOT}, QUIT, END};
	const struct step *scripts[] = {script};
	static const struct smtp_client_rcpt r[] = {{"a@b.test", 0, NULL}, {"b@b.test", 0, NULL},
	    {"c@b.test", 0, NULL}, {"d@b.test", 0, NULL}};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = r, .nrcpts = 4, .path = blob("m3", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	struct got_msg *g = &run.got[0];
	assert_int_equal(g->sent, 1);
	assert_int_equal(g->perm, 1);
	assert_int_equal(g->temp, 2);
	assert_int_equal(g->st[0], SMTP_RCPT_SENT);
	assert_int_equal(g->st[1], SMTP_RCPT_PERMFAIL);
	assert_int_equal(g->code[1], 550);
	assert_string_equal(g->esc[1], "5.1.1");
	assert_string_equal(g->reply[1], "550 5.1.1 no such user here, sorry");
	assert_int_equal(g->st[2], SMTP_RCPT_TEMPFAIL);
	assert_string_equal(g->esc[2], "4.2.0");
	assert_int_equal(g->st[3], SMTP_RCPT_TEMPFAIL);
	assert_string_equal(g->esc[3], "4.0.0");
	assert_string_equal(buf_cstr(&run.f.content[0]), "x\r\n.\r\n");
	run_end(&run);
}

static void test_all_refused_lockstep(void **state)
{
	static const struct step script[] = {GREET, EHLO_LOCKSTEP,
	    {"MAIL FROM:", "250 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "550 5.1.1 unknown", A_REPLY},
	    {"RCPT TO:<r2@b.test>", "553 5.1.3 bad", A_REPLY}, {"RSET", "250 ok", A_REPLY}, QUIT,
	    END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m4", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.got[0].perm, 2);
	assert_false(has_line(&run, "DATA"));
	assert_true(has_line(&run, "RSET"));
	assert_int_equal(run.outcome, SMTP_CLIENT_OK);
	run_end(&run);
}

static void test_all_refused_pipelined(void **state)
{
	static const struct step script[] = {GREET, EHLO_FULL, {"MAIL FROM:", "250 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "550 5.1.1 unknown", A_REPLY},
	    {"RCPT TO:<r2@b.test>", "450 4.2.1 busy", A_REPLY},
	    {"DATA", "554 5.5.1 no valid recipients", A_REPLY}, {"RSET", "250 ok", A_REPLY}, QUIT,
	    END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m5", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.got[0].perm, 1);
	assert_int_equal(run.got[0].temp, 1);
	assert_string_equal(run.got[0].reply[1], "450 4.2.1 busy");
	run_end(&run);
}

static void test_mail_refused_pipelined(void **state)
{
	/* MAIL refused: the pipelined RCPTs and DATA get 503, DATA's reply is
	 * consumed, every recipient carries MAIL's reply */
	static const struct step script[] = {GREET, EHLO_FULL,
	    {"MAIL FROM:", "550 5.7.1 sender rejected", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "503 5.5.1 need MAIL", A_REPLY},
	    {"RCPT TO:<r2@b.test>", "503 5.5.1 need MAIL", A_REPLY},
	    {"DATA", "503 5.5.1 need RCPT", A_REPLY}, {"RSET", "250 ok", A_REPLY}, QUIT, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m6", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.got[0].perm, 2);
	assert_string_equal(run.got[0].reply[0], "550 5.7.1 sender rejected");
	assert_string_equal(run.got[0].esc[1], "5.7.1");
	run_end(&run);
}

static void test_421_mid_transaction(void **state)
{
	static const struct step script[] = {GREET, EHLO_LOCKSTEP,
	    {"MAIL FROM:", "250 ok", A_REPLY}, {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY},
	    {"RCPT TO:<r2@b.test>", "421 4.3.2 shutting down", A_REPLY_CLOSE}, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m7", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_REFUSED);
	assert_int_equal(run.got[0].temp, 2);
	assert_int_equal(run.got[0].code[0], 421);
	assert_string_equal(run.got[0].esc[0], "4.3.2");
	assert_string_equal(run.got[0].reply[1], "421 4.3.2 shutting down");
	assert_true(run.got[0].remote[0]);
	assert_false(has_line(&run, "DATA"));
	assert_non_null(strstr(run.reason, "421"));
	run_end(&run);
}

static void test_helo_fallback(void **state)
{
	static const struct step script[] = {GREET,
	    {"EHLO client.test", "502 5.5.2 what?", A_REPLY},
	    {"HELO client.test", "250 mx.test", A_REPLY},
	    {"MAIL FROM:<s@a.test>", "250 ok", A_REPLY}, {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY},
	    {"DATA", "354 go", A_DATA}, {".", "250 ok", A_DOT}, QUIT, END};
	const struct step *scripts[] = {script};
	static const struct smtp_client_rcpt r[] = {{"r1@b.test", DSN_NOTIFY_SUCCESS, NULL}};
	struct smtp_client_msg m = {.sender = "s@a.test",
	    .rcpts = r,
	    .nrcpts = 1,
	    .path = blob("m8", "x\r\n", 3),
	    .ret = DSN_RET_FULL};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_false(run.esmtp);
	assert_int_equal(run.got[0].sent, 1);
	assert_true(has_line(&run, "MAIL FROM:<s@a.test>\n"));
	assert_true(has_line(&run, "RCPT TO:<r1@b.test>\n"));
	run_end(&run);
}

static void test_ehlo_refused(void **state)
{
	/* a 554 to EHLO is not a "command unknown": no HELO, the session is over */
	static const struct step script[] = {
	    GREET, {"EHLO client.test", "554 5.7.1 go away", A_REPLY}, QUIT, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m9", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_REFUSED);
	assert_int_equal(run.got[0].temp, 2);
	assert_false(run.got[0].remote[0]);
	assert_false(has_line(&run, "HELO"));
	run_end(&run);
}

static void test_greeting_554(void **state)
{
	static const struct step script[] = {{NULL, "554 5.3.2 no service", A_GREET}, QUIT, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m10", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_REFUSED);
	assert_int_equal(run.got[0].temp, 2);
	assert_string_equal(run.got[0].esc[0], "4.3.2");
	assert_true(has_line(&run, "QUIT"));
	assert_false(has_line(&run, "EHLO"));
	run_end(&run);
}

static void test_dot_stuffing_wire(void **state)
{
	static const char body[] = "Subject: x\r\n\r\n.hello\r\n..two\r\nend.\r\n.\r\nbare\nLF\r\n"
	                           "cr\ronly\r\n.\nlast";
	static const char wire[] =
	    "Subject: x\r\n\r\n..hello\r\n...two\r\nend.\r\n..\r\nbare\r\nLF\r\n"
	    "cr\r\nonly\r\n..\r\nlast\r\n.\r\n";
	static const struct step script[] = {GREET, EHLO_FULL, {"MAIL FROM:", "250 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY}, {"DATA", "354 go", A_DATA},
	    {".", "250 ok", A_DOT}, QUIT, END};
	const struct step *scripts[] = {script};
	static const struct smtp_client_rcpt r[] = {{"r1@b.test", 0, NULL}};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = r, .nrcpts = 1, .path = blob("m11", body, strlen(body))};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_string_equal(buf_cstr(&run.f.content[0]), wire);
	run_end(&run);
}

/* A message of several MB with dot lines streams through the output
 * high/low marks and arrives exactly as the pure transformation says. */
static void big_message(struct tls_client *tls, const char *name)
{
	size_t n = 3 * 1024 * 1024 + 17;
	char *body = malloc(n);
	assert_non_null(body);
	for (size_t i = 0; i < n; i++)
		body[i] = (i % 77 == 76) ? '\n' : (i % 77 == 0) ? '.' : (char)('a' + i % 26);
	struct buf expect;
	buf_init(&expect, 0);
	struct smtp_dot_stuffer d;
	smtp_dot_stuff_init(&d);
	assert_true(smtp_dot_stuff_feed(&d, body, n, &expect));
	assert_true(smtp_dot_stuff_end(&d, &expect));

	static const struct step plain[] = {GREET, EHLO_FULL, {"MAIL FROM:", "250 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY}, {"DATA", "354 go", A_DATA},
	    {".", "250 ok", A_DOT}, QUIT, END};
	static const struct step tlss[] = {GREET,
	    {"EHLO client.test", "250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS", A_REPLY},
	    {"STARTTLS", "220 2.0.0 go ahead", A_STARTTLS},
	    {"EHLO client.test", "250-mx.test\r\n250 PIPELINING", A_REPLY},
	    {"MAIL FROM:", "250 ok", A_REPLY}, {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY},
	    {"DATA", "354 go", A_DATA}, {".", "250 ok", A_DOT}, QUIT, END};
	const struct step *scripts[] = {tls ? tlss : plain};
	static const struct smtp_client_rcpt r[] = {{"r1@b.test", 0, NULL}};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = r, .nrcpts = 1, .path = blob(name, body, n)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, tls, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.got[0].sent, 1);
	assert_int_equal(run.tls, tls != NULL);
	assert_int_equal(run.f.content[0].len, expect.len);
	assert_memory_equal(run.f.content[0].data, expect.data, expect.len);
	run_end(&run);
	buf_free(&expect);
	free(body);
}

static void test_big_message(void **state)
{
	big_message(NULL, "big1");
}

static void test_big_message_tls(void **state)
{
	big_message(cli_tls, "big2");
}

static void test_size_limit(void **state)
{
	static const struct step script[] = {GREET,
	    {"EHLO client.test", "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100", A_REPLY}, QUIT,
	    END};
	const struct step *scripts[] = {script};
	char body[500];
	memset(body, 'x', sizeof body);
	struct smtp_client_msg m = {.sender = "s@a.test",
	    .rcpts = two_rcpts,
	    .nrcpts = 2,
	    .path = blob("m12", body, sizeof body)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.got[0].perm, 2);
	assert_string_equal(run.got[0].esc[0], "5.3.4");
	assert_false(run.got[0].remote[0]);
	assert_false(has_line(&run, "MAIL"));
	assert_int_equal(run.outcome, SMTP_CLIENT_OK);
	run_end(&run);
}

static void test_8bit_without_8bitmime(void **state)
{
	static const struct step script[] = {
	    GREET, {"EHLO client.test", "250-mx.test\r\n250 PIPELINING", A_REPLY}, QUIT, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {.sender = "s@a.test",
	    .rcpts = two_rcpts,
	    .nrcpts = 2,
	    .path = blob("m13", "caf\xc3\xa9\r\n", 7),
	    .eightbit = true};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.got[0].perm, 2);
	assert_string_equal(run.got[0].esc[1], "5.6.3");
	assert_false(has_line(&run, "MAIL"));
	run_end(&run);
}

static void test_smtputf8_needed(void **state)
{
	/* not offered: 5.6.7, also when only an address says so */
	static const struct step script[] = {GREET, EHLO_LOCKSTEP, QUIT, END};
	const struct step *scripts[] = {script};
	static const struct smtp_client_rcpt r[] = {{"j\xc3\xb6rg@b.test", 0, NULL}};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = r, .nrcpts = 1, .path = blob("m14", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.got[0].perm, 1);
	assert_string_equal(run.got[0].esc[0], "5.6.7");
	run_end(&run);

	/* offered: SMTPUTF8 on MAIL */
	static const struct step script2[] = {GREET, EHLO_FULL,
	    {"MAIL FROM:<s@a.test> SIZE=3 SMTPUTF8", "250 ok", A_REPLY},
	    {"RCPT TO:<j\xc3\xb6rg@b.test>", "250 ok", A_REPLY}, {"DATA", "354 go", A_DATA},
	    {".", "250 ok", A_DOT}, QUIT, END};
	const struct step *scripts2[] = {script2};
	run_client(&run, scripts2, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.got[0].sent, 1);
	run_end(&run);
}

static void test_dsn_params(void **state)
{
	static const struct step script_ok[] = {GREET,
	    {"EHLO client.test", "250-mx.test\r\n250-PIPELINING\r\n250 DSN", A_REPLY},
	    {"MAIL FROM:<s@a.test> RET=HDRS ENVID=id+2Bx", "250 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bx@b.test", "250 ok",
	        A_REPLY},
	    {"RCPT TO:<r2@b.test>", "250 ok", A_REPLY}, {"DATA", "354 go", A_DATA},
	    {".", "250 ok", A_DOT}, QUIT, END};
	const struct step *scripts[] = {script_ok};
	static struct dsn_orcpt orcpt = {"rfc822", "orig+x@b.test"};
	static const struct smtp_client_rcpt r[] = {
	    {"r1@b.test", DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE, &orcpt},
	    {"r2@b.test", DSN_NOTIFY_NEVER, NULL}};
	struct smtp_client_msg m = {.sender = "s@a.test",
	    .rcpts = r,
	    .nrcpts = 2,
	    .path = blob("m15", "x\r\n", 3),
	    .ret = DSN_RET_HDRS,
	    .envid = "id+x"};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_true(has_line(&run, "RCPT TO:<r2@b.test> NOTIFY=NEVER\n"));
	assert_int_equal(run.got[0].sent, 2);
	run_end(&run);

	/* the same message to a peer without DSN: no parameters at all */
	static const struct step script_no2[] = {GREET, EHLO_FULL,
	    {"MAIL FROM:", "250 ok", A_REPLY}, {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY},
	    {"RCPT TO:<r2@b.test>", "250 ok", A_REPLY}, {"DATA", "354 go", A_DATA},
	    {".", "250 ok", A_DOT}, QUIT, END};
	const struct step *scripts2[] = {script_no2};
	run_client(&run, scripts2, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_true(has_line(&run, "MAIL FROM:<s@a.test> SIZE=3\n"));
	assert_true(has_line(&run, "RCPT TO:<r1@b.test>\n"));
	assert_true(has_line(&run, "RCPT TO:<r2@b.test>\n"));
	run_end(&run);
}

static void test_reuse(void **state)
{
	static const struct step script[] = {GREET, EHLO_FULL,
	    {"MAIL FROM:<s1@a.test>", "250 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY}, {"DATA", "354 go", A_DATA},
	    {".", "250 2.0.0 first", A_DOT}, {"RSET", "250 2.0.0 ok", A_REPLY},
	    {"MAIL FROM:<s2@a.test>", "250 ok", A_REPLY},
	    {"RCPT TO:<r2@b.test>", "250 ok", A_REPLY}, {"DATA", "354 go", A_DATA},
	    {".", "250 2.0.0 second", A_DOT}, QUIT, END};
	const struct step *scripts[] = {script};
	static const struct smtp_client_rcpt r1[] = {{"r1@b.test", 0, NULL}};
	static const struct smtp_client_rcpt r2[] = {{"r2@b.test", 0, NULL}};
	struct smtp_client_msg m1 = {
	    .sender = "s1@a.test", .rcpts = r1, .nrcpts = 1, .path = blob("m16", "one\r\n", 5)};
	struct smtp_client_msg m2 = {
	    .sender = "s2@a.test", .rcpts = r2, .nrcpts = 1, .path = blob("m17", ".two\r\n", 6)};
	const struct smtp_client_msg *msgs[] = {&m1, &m2};
	struct run run;
	run_client(&run, scripts, 1, msgs, 2, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.f.nconns, 1);
	assert_int_equal(run.messages, 2);
	assert_string_equal(run.got[0].final, "250 2.0.0 first");
	assert_false(run.got[0].reused);
	assert_string_equal(run.got[1].final, "250 2.0.0 second");
	assert_true(run.got[1].reused);
	assert_string_equal(buf_cstr(&run.f.content[0]), "one\r\n.\r\n");
	assert_string_equal(buf_cstr(&run.f.content[1]), "..two\r\n.\r\n");
	run_end(&run);
}

static void test_timeout(void **state)
{
	static const struct step script[] = {GREET, EHLO_LOCKSTEP,
	    {"MAIL FROM:", "250 ok", A_REPLY}, {"RCPT TO:<r1@b.test>", NULL, A_STALL}, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m18", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct smtp_client_timeouts to = short_timeouts();
	to.rcpt = 1;
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, &to);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_TIMEOUT);
	assert_string_equal(run.state, "rcpt");
	assert_int_equal(run.got[0].temp, 2);
	assert_string_equal(run.got[0].esc[0], "4.4.2");
	assert_false(run.got[0].remote[0]);
	run_end(&run);
}

static void test_greeting_timeout(void **state)
{
	static const struct step script[] = {{NULL, NULL, A_STALL}, END};
	const struct step *scripts[] = {script};
	struct smtp_client_timeouts to = short_timeouts();
	to.greeting = 1;
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m27", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, &to);
	assert_int_equal(run.outcome, SMTP_CLIENT_TIMEOUT);
	assert_string_equal(run.state, "greeting");
	assert_int_equal(run.got[0].temp, 2);
	run_end(&run);
}

static void test_connect_refused(void **state)
{
	/* a port nobody listens on: bind one, note it, close it */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t sl = sizeof a;
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &sl), 0);
	close(s);

	struct run run;
	memset(&run, 0, sizeof run);
	run.base = event_base_new();
	fake_start(&run.f, run.base);
	struct smtp_client_opts o = {.helo_name = "client.test",
	    .peer = (struct sockaddr *)&a,
	    .peer_len = sizeof a,
	    .peer_host = "mx.test",
	    .timeouts = short_timeouts(),
	    .done = done_cb,
	    .done_arg = &run};
	run.c = smtp_client_new(run.base, &o);
	assert_non_null(run.c);
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m19", "x\r\n", 3)};
	assert_int_equal(smtp_client_send(run.c, &m, msg_cb, &run), 0);
	event_base_dispatch(run.base);
	assert_true(run.done);
	assert_int_equal(run.outcome, SMTP_CLIENT_CONNECT_FAILED);
	assert_int_equal(run.ngot, 1);
	assert_int_equal(run.got[0].temp, 2);
	assert_string_equal(run.got[0].esc[0], "4.4.1");
	assert_non_null(strstr(run.reason, "refused"));
	run_end(&run);
}

static void test_close_mid_data(void **state)
{
	static const struct step script[] = {GREET, EHLO_FULL, {"MAIL FROM:", "250 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY}, {"RCPT TO:<r2@b.test>", "550 no", A_REPLY},
	    {"DATA", "354 go", A_DATA_CLOSE}, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {.sender = "s@a.test",
	    .rcpts = two_rcpts,
	    .nrcpts = 2,
	    .path = blob("m20", SIMPLE_BODY, strlen(SIMPLE_BODY))};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_CLOSED);
	assert_int_equal(run.got[0].st[0], SMTP_RCPT_TEMPFAIL);
	assert_string_equal(run.got[0].esc[0], "4.4.2");
	assert_int_equal(run.got[0].st[1], SMTP_RCPT_PERMFAIL);
	run_end(&run);
}

static void test_starttls(void **state)
{
	static const struct step script[] = {GREET,
	    {"EHLO client.test", "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS",
	        A_REPLY},
	    {"STARTTLS", "220 2.0.0 go ahead", A_STARTTLS},
	    /* after TLS: a different capability list, which the client must use */
	    {"EHLO client.test", "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME", A_REPLY},
	    {"MAIL FROM:<s@a.test> BODY=8BITMIME", "250 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY}, {"RCPT TO:<r2@b.test>", "250 ok", A_REPLY},
	    {"DATA", "354 go", A_DATA}, {".", "250 ok", A_DOT}, QUIT, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {.sender = "s@a.test",
	    .rcpts = two_rcpts,
	    .nrcpts = 2,
	    .path = blob("m21", SIMPLE_BODY, strlen(SIMPLE_BODY)),
	    .eightbit = true};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, cli_tls, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_OK);
	assert_true(run.tls);
	assert_true(
	    strcmp(run.tlsp.version, "TLSv1.3") == 0 || strcmp(run.tlsp.version, "TLSv1.2") == 0);
	assert_true(run.tlsp.cipher[0] != '\0');
	assert_true(run.tlsp.bits >= 128);
	/* self-signed: encrypted, delivered, and recorded as not verified */
	assert_false(run.tlsp.verified);
	assert_true(run.tlsp.verify_error[0] != '\0');
	assert_string_equal(run.tlsp.name, "mx.test");
	assert_int_equal(run.got[0].sent, 2);
	assert_false(has_line(&run, "SIZE="));
	assert_string_equal(buf_cstr(&run.f.content[0]), SIMPLE_BODY ".\r\n");
	run_end(&run);
}

static void test_starttls_refused(void **state)
{
	/* 454: go on in the clear on the same connection */
	static const struct step script[] = {GREET,
	    {"EHLO client.test", "250-mx.test\r\n250 STARTTLS", A_REPLY},
	    {"STARTTLS", "454 4.7.0 TLS not available", A_REPLY}, {"MAIL FROM:", "250 ok", A_REPLY},
	    {"RCPT TO:<r1@b.test>", "250 ok", A_REPLY}, {"RCPT TO:<r2@b.test>", "250 ok", A_REPLY},
	    {"DATA", "354 go", A_DATA}, {".", "250 ok", A_DOT}, QUIT, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m22", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, cli_tls, NULL);
	assert_no_script_errors(&run);
	assert_false(run.tls);
	assert_int_equal(run.got[0].sent, 2);
	run_end(&run);
}

static void test_starttls_handshake_fails(void **state)
{
	static const struct step script[] = {GREET,
	    {"EHLO client.test", "250-mx.test\r\n250 STARTTLS", A_REPLY},
	    {"STARTTLS", "220 go ahead", A_REPLY_CLOSE}, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m23", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, cli_tls, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_TLS_FAILED);
	assert_int_equal(run.got[0].temp, 2);
	assert_string_equal(run.got[0].esc[0], "4.7.5");
	run_end(&run);
}

static void test_starttls_injection(void **state)
{
	/* bytes after the 220, sent in the clear, must not be taken as TLS data */
	static const struct step script[] = {GREET,
	    {"EHLO client.test", "250-mx.test\r\n250 STARTTLS", A_REPLY},
	    {"STARTTLS", "220 go ahead\r\n250 injected", A_REPLY}, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m24", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, cli_tls, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_PROTOCOL);
	assert_int_equal(run.got[0].temp, 2);
	run_end(&run);
}

static void test_no_tls_client_no_starttls(void **state)
{
	static const struct step script[] = {
	    GREET, {"EHLO client.test", "250-mx.test\r\n250 STARTTLS", A_REPLY}, QUIT, END};
	const struct step *scripts[] = {script};
	struct run run;
	run_client(&run, scripts, 1, NULL, 0, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_OK);
	assert_false(has_line(&run, "STARTTLS"));
	run_end(&run);
}

static void test_bad_reply(void **state)
{
	static const struct step script[] = {
	    GREET, {"EHLO client.test", "250-mx.test\r\n251 mismatch", A_REPLY}, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m = {
	    .sender = "s@a.test", .rcpts = two_rcpts, .nrcpts = 2, .path = blob("m25", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m};
	struct run run;
	run_client(&run, scripts, 1, msgs, 1, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.outcome, SMTP_CLIENT_PROTOCOL);
	assert_int_equal(run.got[0].temp, 2);
	run_end(&run);
}

static void test_missing_blob_and_bad_address(void **state)
{
	/* an unreadable blob: TEMPFAIL, no MAIL, the connection stays usable */
	static const struct step script[] = {GREET, EHLO_FULL,
	    {"MAIL FROM:<s@a.test>", "250 ok", A_REPLY}, {"RCPT TO:<ok@b.test>", "250 ok", A_REPLY},
	    {"DATA", "354 go", A_DATA}, {".", "250 ok", A_DOT}, QUIT, END};
	const struct step *scripts[] = {script};
	struct smtp_client_msg m1 = {.sender = "s@a.test",
	    .rcpts = two_rcpts,
	    .nrcpts = 2,
	    .path = "/nonexistent/dakiya/blob"};
	static const struct smtp_client_rcpt r[] = {
	    {"bad\r\nRSET@b.test", 0, NULL}, {"ok@b.test", 0, NULL}};
	struct smtp_client_msg m2 = {
	    .sender = "s@a.test", .rcpts = r, .nrcpts = 2, .path = blob("m26", "x\r\n", 3)};
	const struct smtp_client_msg *msgs[] = {&m1, &m2};
	struct run run;
	run_client(&run, scripts, 1, msgs, 2, NULL, NULL);
	assert_no_script_errors(&run);
	assert_int_equal(run.got[0].temp, 2);
	assert_string_equal(run.got[0].esc[0], "4.3.0");
	assert_int_equal(run.got[1].perm, 1);
	assert_string_equal(run.got[1].esc[0], "5.1.3");
	assert_int_equal(run.got[1].sent, 1);
	run_end(&run);
}

/* ------------------------------------------------------------ pure */

static void stuff_all(const char *in, size_t n, size_t step, struct buf *out)
{
	struct smtp_dot_stuffer d;
	smtp_dot_stuff_init(&d);
	for (size_t i = 0; i < n; i += step)
		assert_true(smtp_dot_stuff_feed(&d, in + i, n - i < step ? n - i : step, out));
	assert_true(smtp_dot_stuff_end(&d, out));
}

static void test_dot_stuff_pure(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"", ".\r\n"},
	    {"a", "a\r\n.\r\n"},
	    {"a\r\n", "a\r\n.\r\n"},
	    {".", "..\r\n.\r\n"},
	    {".\r\n", "..\r\n.\r\n"},
	    {"a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
	    {"a\n.b\n", "a\r\n..b\r\n.\r\n"},
	    {"a\r.b\r", "a\r\n..b\r\n.\r\n"},
	    {"a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"},
	    {"x.y\r\n..\r\n", "x.y\r\n...\r\n.\r\n"},
	    {"\r\n", "\r\n.\r\n"},
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		for (size_t step = 1; step <= 4; step++) {
			struct buf out;
			buf_init(&out, 0);
			stuff_all(cases[k].in, strlen(cases[k].in), step, &out);
			if (strcmp(buf_cstr(&out), cases[k].out) != 0)
				fail_msg("case %zu step %zu: got \"%s\"", k, step, buf_cstr(&out));
			buf_free(&out);
		}
	}
}

static void test_names(void **state)
{
	assert_string_equal(smtp_client_outcome_name(SMTP_CLIENT_TLS_FAILED), "tls-failed");
	assert_string_equal(smtp_rcpt_status_name(SMTP_RCPT_PERMFAIL), "permfail");
	/* invalid options: NULL, and nothing called back */
	struct smtp_client_opts o = {.helo_name = "x"};
	assert_null(smtp_client_new(NULL, &o));
	smtp_client_free(NULL);
}

/* ------------------------------------------------------------ main */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(p);
}

static int group_setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/dakiya-test-smtpc-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	char crt[128], key[128];
	snprintf(crt, sizeof crt, "%s/mx.crt", tmpdir);
	snprintf(key, sizeof key, "%s/mx.key", tmpdir);
	struct buf err = BUF_INIT;
	if (tls_make_self_signed("mx.test", crt, key, 30, &err) != 0 ||
	    (srv_tls = tls_server_new(crt, key, &err)) == NULL ||
	    (cli_tls = tls_client_new(&err)) == NULL) {
		fprintf(stderr, "setup: %s\n", buf_cstr(&err));
		buf_free(&err);
		return -1;
	}
	buf_free(&err);
	return 0;
}

static int group_teardown(void **state)
{
	tls_server_free(srv_tls);
	tls_client_free(cli_tls);
	nftw(tmpdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_set_level(getenv("DAKIYA_TEST_DEBUG") ? LOG_DEBUG : LOG_ERR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_dot_stuff_pure),
	    cmocka_unit_test(test_pipelined_happy),
	    cmocka_unit_test(test_lockstep),
	    cmocka_unit_test(test_rcpt_mix),
	    cmocka_unit_test(test_all_refused_lockstep),
	    cmocka_unit_test(test_all_refused_pipelined),
	    cmocka_unit_test(test_mail_refused_pipelined),
	    cmocka_unit_test(test_421_mid_transaction),
	    cmocka_unit_test(test_helo_fallback),
	    cmocka_unit_test(test_ehlo_refused),
	    cmocka_unit_test(test_greeting_554),
	    cmocka_unit_test(test_dot_stuffing_wire),
	    cmocka_unit_test(test_big_message),
	    cmocka_unit_test(test_big_message_tls),
	    cmocka_unit_test(test_size_limit),
	    cmocka_unit_test(test_8bit_without_8bitmime),
	    cmocka_unit_test(test_smtputf8_needed),
	    cmocka_unit_test(test_dsn_params),
	    cmocka_unit_test(test_reuse),
	    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_greeting_timeout),
	    cmocka_unit_test(test_connect_refused),
	    cmocka_unit_test(test_close_mid_data),
	    cmocka_unit_test(test_starttls),
	    cmocka_unit_test(test_starttls_refused),
	    cmocka_unit_test(test_starttls_handshake_fails),
	    cmocka_unit_test(test_starttls_injection),
	    cmocka_unit_test(test_no_tls_client_no_starttls),
	    cmocka_unit_test(test_bad_reply),
	    cmocka_unit_test(test_missing_blob_and_bad_address),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
