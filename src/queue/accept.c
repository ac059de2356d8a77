/*
 * accept.c - durable commit of accepted messages (see accept.h).
 *
 * Pipeline: session --accept_commit--> sync threads (fdatasync each blob,
 * concurrently) --> committer thread (fsync blob dirs once per batch, one
 * store transaction for the batch) --> the session's loop (doneq).
 *
 * Invariant: a message reaches its callback with rc == 0 only after its blob
 * file, the directory entry and the store rows are on stable storage.
 */
#include "queue/accept.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth/dkim.h"
#include "core/log.h"
#include "queue/dsn.h"
#include "queue/dsn_send.h"
#include "smtp/smtp_parse.h"
#include "store/store.h"

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (d == NULL)
		abort();
	return d;
}

#define COMMIT_BATCH_MAX 512

/* A DMARC row and the strings it points to. */
struct store_dmarc_row_copy {
	struct store_dmarc_row row;
	char *s[11];
};
#define SUMMARY_MAX 998

struct mq {
	struct accept_msg *head, *tail;
	size_t n;
};

struct accept_ctx {
	pthread_mutex_t mu;
	pthread_cond_t sync_cv;   /* work for the sync threads */
	pthread_cond_t commit_cv; /* work for the committer */
	struct mq sync_q;
	struct mq commit_q;
	bool stop;
	unsigned nsync;
	pthread_t *sync_threads;
	pthread_t committer;
	struct store *store;
	char *hostname;
	unsigned busy_syncs;     /* sync threads currently working */
	accept_notify_fn notify; /* remote recipients committed (under mu) */
	void *notify_arg;
};

static void mq_push(struct mq *q, struct accept_msg *m)
{
	m->next = NULL;
	if (q->tail)
		q->tail->next = m;
	else
		q->head = m;
	q->tail = m;
	q->n++;
}

static struct accept_msg *mq_pop(struct mq *q)
{
	struct accept_msg *m = q->head;
	if (m) {
		q->head = m->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->n--;
		m->next = NULL;
	}
	return m;
}

static void done_on_loop(struct loopq_item *it)
{
	struct accept_msg *m = LOOPQ_CONTAINER(it, struct accept_msg, done_item);
	m->cb(m, m->cb_arg);
}

/* Hand a finished message back to its loop. Called from any thread. */
static void finish(struct accept_msg *m)
{
	m->done_item.fn = done_on_loop;
	loopq_post(m->doneq, &m->done_item);
}

/* The DKIM signatures of a message in late mode, in front of its prefix. */
static void sign_late(struct accept_msg *m)
{
	const char *h = m->hdr.data ? m->hdr.data : "";
	size_t off = dkim_body_offset(h, m->hdr.len);
	struct buf sigs = BUF_INIT, why = BUF_INIT;
	buf_init(&sigs, 64 * 1024);
	buf_init(&why, 256);
	if (off == m->hdr.len && m->hdr.len >= ACCEPT_HDR_MAX)
		log_warn(m->qid, "event=dkim-sign-skipped reason=\"header section too big\"");
	else if (!dkim_signer_finish(m->signer, h, off, &sigs, &why))
		log_warn(m->qid, "event=dkim-sign-failed reason=%s", log_str(buf_cstr(&why)));
	else
		accept_prepend(m, sigs.data, sigs.len);
	buf_free(&sigs);
	buf_free(&why);
	dkim_signer_free(m->signer);
	m->signer = NULL;
}

/* Write all n bytes to fd; 0 or -errno. */
static int write_fd(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Late mode, on a sync thread: the blob file is our header lines and then
 * the content (in memory, or the .part file it spilled to), made durable;
 * the .part file goes. 0 or -errno. */
static int assemble(struct accept_msg *m)
{
	if (m->signer)
		sign_late(m);
	if (buf_err(&m->late_prefix))
		return -EOVERFLOW;
	int out = open(buf_cstr(&m->path), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	int rc = write_fd(out, m->late_prefix.data, m->late_prefix.len);
	if (rc == 0 && m->fd < 0)
		rc = write_fd(out, m->mem.data, m->mem.len);
	off_t in_off = 0;
	uint64_t left = m->fd < 0 ? 0 : m->size;
	while (rc == 0 && left > 0) {
		ssize_t c = copy_file_range(m->fd, &in_off, out, NULL, left, 0);
		if (c < 0 &&
		    (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
			char b[65536];
			c = pread(m->fd, b, sizeof b, in_off);
			if (c > 0) {
				int w = write_fd(out, b, (size_t)c);
				if (w != 0) {
					rc = w;
					break;
				}
				in_off += c;
			}
		}
		if (c < 0 && errno == EINTR)
			continue;
		if (c <= 0) {
			rc = c < 0 ? -errno : -EIO;
			break;
		}
		left -= (uint64_t)c;
	}
	if (rc == 0 && fdatasync(out) < 0)
		rc = -errno;
	if (close(out) < 0 && rc == 0)
		rc = -errno;
	if (rc != 0) {
		unlink(buf_cstr(&m->path));
		return rc;
	}
	if (m->fd >= 0)
		unlink(buf_cstr(&m->part));
	buf_free(&m->mem);
	m->size += m->late_prefix.len;
	m->prefix_len += m->late_prefix.len;
	return 0;
}

static void *sync_main(void *arg)
{
	struct accept_ctx *ctx = arg;
	pthread_mutex_lock(&ctx->mu);
	for (;;) {
		while (ctx->sync_q.head == NULL && !ctx->stop)
			pthread_cond_wait(&ctx->sync_cv, &ctx->mu);
		struct accept_msg *m = mq_pop(&ctx->sync_q);
		if (m == NULL)
			break; /* stopping and nothing left */
		ctx->busy_syncs++;
		pthread_mutex_unlock(&ctx->mu);

		int rc = 0;
		if (m->write_errno)
			rc = -m->write_errno;
		else if (m->late)
			rc = assemble(m);
		else if (fdatasync(m->fd) < 0)
			rc = -errno;
		if (m->fd >= 0 && close(m->fd) < 0 && rc == 0)
			rc = -errno;
		m->fd = -1;

		pthread_mutex_lock(&ctx->mu);
		ctx->busy_syncs--;
		if (rc != 0) {
			pthread_mutex_unlock(&ctx->mu);
			log_err(m->qid, "event=sync-failed path=%s error=\"%s\"",
			    buf_cstr(&m->path), strerror(-rc));
			unlink(buf_cstr(&m->path));
			if (m->spilled)
				unlink(buf_cstr(&m->part));
			m->rc = rc;
			finish(m);
			pthread_mutex_lock(&ctx->mu);
			continue;
		}
		mq_push(&ctx->commit_q, m);
		pthread_cond_signal(&ctx->commit_cv);
	}
	pthread_mutex_unlock(&ctx->mu);
	return NULL;
}

/* Summary header into a malloc'ed string ("" if absent). */
static char *summary(const struct accept_msg *m, const char *name)
{
	struct buf v = BUF_INIT;
	buf_init(&v, SUMMARY_MAX + 8);
	if (!smtp_header_get(m->hdr.data ? m->hdr.data : "", m->hdr.len, name, &v, SUMMARY_MAX) ||
	    buf_err(&v)) {
		buf_free(&v);
		return strdup("");
	}
	return buf_steal(&v);
}

/* After m's commit: one report to its sender about the n recipients in dr,
 * returning the headers only unless full (RET=FULL with a failure); true
 * if it went into the queue. A failure is logged: the message itself is
 * committed, only the notice is missing. */
static bool send_report(struct accept_ctx *ctx, const struct accept_msg *m,
    const struct dsn_recipient *dr, size_t n, bool failure)
{
	const char *what = failure ? "failed" : "delivered";
	if (m->mail_from == NULL || m->mail_from[0] == '\0') {
		log_info(m->qid, "event=dsn-suppressed reason=null-sender action=%s", what);
		return false;
	}
	enum dsn_ret ret = DSN_RET_DEFAULT;
	if (m->ret == NULL || !dsn_parse_ret(m->ret, strlen(m->ret), &ret))
		ret = DSN_RET_DEFAULT;
	if (!failure && ret == DSN_RET_FULL)
		ret = DSN_RET_HDRS; /* a success returns the headers only */
	struct dsn_message dm = {
	    .hostname = ctx->hostname,
	    .queue_id = m->qid,
	    .sender = m->mail_from,
	    .envid = m->envid,
	    .ret = ret,
	    .arrival = (time_t)(m->received_ms / 1000),
	    .msg_path = buf_cstr(&m->path),
	    .now = dr[0].last_attempt,
	};
	struct buf out = BUF_INIT;
	buf_init(&out, 16u * 1024 * 1024);
	bool remote = false;
	enum dsn_rc rc = dsn_build(&dm, dr, n, &out);
	if (rc != DSN_OK) {
		log_err(m->qid, "event=dsn-failed action=%s error=%s", what, dsn_rc_str(rc));
	} else if (dsn_send(ctx->store, m->qid, m->mail_from, &out, &remote) == 0) {
		char text[64];
		snprintf(text, sizeof text, "action=%s rcpts=%zu", what, n);
		store_event_add(ctx->store, m->qid, "notice", NULL, text);
	}
	buf_free(&out);
	return remote;
}

/* After m's commit: the reports its local RCPTs are owed (RFC 3461 5.2.3,
 * 6.2.7), each about the address as given in RCPT (an alias's targets stay
 * private):
 * - "failed" when the mailbox went away between RCPT and the commit (for an
 *   expanded alias: when every local target went and none is remote), so
 *   that no accepted recipient is lost without a word, unless NOTIFY left
 *   FAILURE out;
 * - otherwise, with NOTIFY=SUCCESS, "delivered", or "expanded" for an alias
 *   with several targets.
 * True if a report went into the queue. */
static bool commit_reports(struct accept_ctx *ctx, const struct accept_msg *m, const bool *dropped)
{
	bool owed = false; /* the usual case is none: no work for it */
	for (size_t u = 0; dropped && u < m->nusers && !owed; u++)
		owed = dropped[u];
	for (size_t i = 0; i < m->nlrcpts && !owed; i++)
		owed = (m->lrcpts[i].notify & DSN_NOTIFY_SUCCESS) != 0;
	if (!owed)
		return false;
	struct dsn_recipient *fail = calloc(m->nlrcpts, sizeof *fail);
	struct dsn_recipient *ok = calloc(m->nlrcpts, sizeof *ok);
	struct dsn_orcpt *o = calloc(m->nlrcpts, sizeof *o);
	if (fail == NULL || ok == NULL || o == NULL)
		abort();
	size_t nfail = 0, nok = 0;
	time_t now = time(NULL);
	for (size_t i = 0; i < m->nlrcpts; i++) {
		const struct accept_rcpt *lr = &m->lrcpts[i];
		size_t gone = 0;
		for (size_t k = 0; dropped && k < lr->nusers; k++)
			gone += dropped[lr->users[k]];
		bool lost = lr->expanded ? gone == lr->nusers && !lr->remote : gone > 0;
		bool want = lost ? lr->notify == 0 || (lr->notify & DSN_NOTIFY_FAILURE)
		                 : (lr->notify & DSN_NOTIFY_SUCCESS) != 0;
		if (!want)
			continue;
		bool has = lr->orcpt && dsn_parse_orcpt(lr->orcpt, strlen(lr->orcpt), &o[i]);
		struct dsn_recipient r = {
		    .addr = lr->rcpt,
		    .orcpt_type = has ? o[i].type : NULL,
		    .orcpt = has ? o[i].addr : NULL,
		    .action = lost           ? DSN_ACTION_FAILED
		              : lr->expanded ? DSN_ACTION_EXPANDED
		                             : DSN_ACTION_DELIVERED,
		    .status = lost ? "5.1.1" : "2.0.0",
		    .diagnostic =
		        lost ? "the mailbox was removed after the message was accepted" : NULL,
		    .last_attempt = now,
		};
		if (lost)
			fail[nfail++] = r;
		else
			ok[nok++] = r;
	}
	bool queued = false;
	if (nfail > 0)
		queued = send_report(ctx, m, fail, nfail, true);
	if (nok > 0)
		queued |= send_report(ctx, m, ok, nok, false);
	free(fail);
	free(ok);
	free(o);
	return queued;
}

static void commit_batch(struct accept_ctx *ctx, struct accept_msg **ms, size_t n)
{
	/* The blob directories: usually one per batch (ids are time-ordered). */
	const char *last_dir = NULL;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *d = buf_cstr(&ms[i]->dir);
		if (last_dir && strcmp(last_dir, d) == 0)
			continue;
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(buf_cstr(&ms[j]->dir), d) == 0;
		last_dir = d;
		if (!seen && util_fsync_dir(d) < 0) {
			rc = -errno;
			log_err(
			    "-", "event=fsync-dir-failed dir=%s error=\"%s\"", d, strerror(errno));
		}
	}

	struct store_delivery *ds = calloc(n, sizeof *ds);
	char **sums = calloc(n * 4, sizeof *sums);
	bool **dropped = calloc(n, sizeof *dropped);
	if (ds == NULL || sums == NULL || dropped == NULL)
		rc = -ENOMEM;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct accept_msg *m = ms[i];
		sums[i * 4 + 0] = summary(m, "Message-ID");
		sums[i * 4 + 1] = summary(m, "From");
		sums[i * 4 + 2] = summary(m, "Subject");
		sums[i * 4 + 3] = summary(m, "Date");
		ds[i] = (struct store_delivery){
		    .blob = m->qid,
		    .size = m->size,
		    .internal_date = (time_t)(m->received_ms / 1000),
		    .mail_from = m->mail_from ? m->mail_from : "",
		    .message_id = sums[i * 4 + 0],
		    .from = sums[i * 4 + 1],
		    .subject = sums[i * 4 + 2],
		    .date = sums[i * 4 + 3],
		    .users = (const char *const *)m->users,
		    .folders = NULL,
		    .nusers = m->nusers,
		    .remote = (const char *const *)m->remote,
		    .nremote = m->nremote,
		    .envid = m->envid,
		    .ret = m->ret,
		    .remote_notify = (const char *const *)m->remote_notify,
		    .remote_orcpt = (const char *const *)m->remote_orcpt,
		    .dropped = dropped[i] = calloc(m->nusers ? m->nusers : 1, sizeof(bool)),
		    .dmarc = m->dmarc ? &m->dmarc->row : NULL,
		};
		if (m->junk) {
			static const char *const junk[] = {"Junk"};
			/* every user of the message gets the same folder */
			const char **f = calloc(m->nusers ? m->nusers : 1, sizeof *f);
			for (size_t u = 0; f && u < m->nusers; u++)
				f[u] = junk[0];
			ds[i].folders = f;
			if (f == NULL)
				rc = -ENOMEM;
		}
		if (dropped[i] == NULL)
			rc = -ENOMEM;
	}
	if (rc == 0) {
		for (int attempt = 0; attempt < 20; attempt++) {
			rc = store_deliver_batch(ctx->store, ds, n);
			if (rc != STORE_BUSY)
				break;
			usleep(50000);
		}
		if (rc != 0)
			log_err("-", "event=commit-failed messages=%zu rc=%d error=\"%s\"", n, rc,
			    store_error(ctx->store));
	}
	size_t nremote = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		nremote += ms[i]->nremote;
		if (commit_reports(ctx, ms[i], dropped ? dropped[i] : NULL))
			nremote++;
	}
	if (nremote > 0) {
		/* before the sessions hear back: a fast test peer must find it queued */
		pthread_mutex_lock(&ctx->mu);
		accept_notify_fn fn = ctx->notify;
		void *fn_arg = ctx->notify_arg;
		pthread_mutex_unlock(&ctx->mu);
		if (fn != NULL)
			fn(fn_arg);
	}
	for (size_t i = 0; ds && i < n; i++)
		free((void *)ds[i].folders);
	for (size_t i = 0; i < n; i++) {
		if (sums)
			for (int k = 0; k < 4; k++)
				free(sums[i * 4 + k]);
		ms[i]->rc = rc;
		if (rc != 0)
			unlink(buf_cstr(&ms[i]->path));
		finish(ms[i]);
	}
	for (size_t i = 0; dropped && i < n; i++)
		free(dropped[i]);
	free(dropped);
	free(sums);
	free(ds);
}

static void *committer_main(void *arg)
{
	struct accept_ctx *ctx = arg;
	struct accept_msg **batch = calloc(COMMIT_BATCH_MAX, sizeof *batch);
	if (batch == NULL)
		abort();
	pthread_mutex_lock(&ctx->mu);
	for (;;) {
		while (ctx->commit_q.head == NULL &&
		       !(ctx->stop && ctx->sync_q.head == NULL && ctx->busy_syncs == 0))
			pthread_cond_wait(&ctx->commit_cv, &ctx->mu);
		if (ctx->commit_q.head == NULL)
			break;
		size_t n = 0;
		struct accept_msg *m;
		while (n < COMMIT_BATCH_MAX && (m = mq_pop(&ctx->commit_q)) != NULL)
			batch[n++] = m;
		pthread_mutex_unlock(&ctx->mu);
		commit_batch(ctx, batch, n);
		pthread_mutex_lock(&ctx->mu);
	}
	pthread_mutex_unlock(&ctx->mu);
	free(batch);
	return NULL;
}

struct accept_ctx *accept_start(
    const char *data_dir, const char *hostname, unsigned sync_threads, struct buf *err)
{
	struct accept_ctx *ctx = calloc(1, sizeof *ctx);
	if (ctx == NULL) {
		buf_puts(err, "out of memory");
		return NULL;
	}
	ctx->store = store_open(data_dir, err);
	if (ctx->store == NULL) {
		free(ctx);
		return NULL;
	}
	ctx->hostname = xstrdup(hostname);
	pthread_mutex_init(&ctx->mu, NULL);
	pthread_cond_init(&ctx->sync_cv, NULL);
	pthread_cond_init(&ctx->commit_cv, NULL);
	ctx->nsync = sync_threads ? sync_threads : 8;
	ctx->sync_threads = calloc(ctx->nsync, sizeof *ctx->sync_threads);
	if (ctx->sync_threads == NULL)
		abort();
	for (unsigned i = 0; i < ctx->nsync; i++)
		if (pthread_create(&ctx->sync_threads[i], NULL, sync_main, ctx) != 0)
			abort();
	if (pthread_create(&ctx->committer, NULL, committer_main, ctx) != 0)
		abort();
	return ctx;
}

void accept_stop(struct accept_ctx *ctx)
{
	if (ctx == NULL)
		return;
	pthread_mutex_lock(&ctx->mu);
	ctx->stop = true;
	pthread_cond_broadcast(&ctx->sync_cv);
	pthread_mutex_unlock(&ctx->mu);
	for (unsigned i = 0; i < ctx->nsync; i++)
		pthread_join(ctx->sync_threads[i], NULL);
	pthread_mutex_lock(&ctx->mu);
	pthread_cond_broadcast(&ctx->commit_cv);
	pthread_mutex_unlock(&ctx->mu);
	pthread_join(ctx->committer, NULL);
	free(ctx->sync_threads);
	free(ctx->hostname);
	store_close(ctx->store);
	pthread_cond_destroy(&ctx->sync_cv);
	pthread_cond_destroy(&ctx->commit_cv);
	pthread_mutex_destroy(&ctx->mu);
	free(ctx);
}

void accept_set_notify(struct accept_ctx *ctx, accept_notify_fn fn, void *arg)
{
	pthread_mutex_lock(&ctx->mu);
	ctx->notify = fn;
	ctx->notify_arg = arg;
	pthread_mutex_unlock(&ctx->mu);
}

struct accept_msg *accept_begin(struct store *st, bool late)
{
	struct accept_msg *m = calloc(1, sizeof *m);
	if (m == NULL)
		return NULL;
	m->fd = -1;
	m->late = late;
	buf_init(&m->path, 4096);
	buf_init(&m->dir, 4096);
	buf_init(&m->part, 4096 + 8);
	buf_init(&m->late_prefix, ACCEPT_HDR_MAX);
	buf_init(&m->hdr, ACCEPT_HDR_MAX);
	util_queue_id(m->qid);
	m->received_ms = util_now_ms();
	if (store_blob_path(st, m->qid, &m->path) != STORE_OK ||
	    store_blob_dir(st, m->qid, &m->dir) != STORE_OK) {
		accept_free(m);
		errno = EIO;
		return NULL;
	}
	if (late) {
		/* the content waits in memory, or past ACCEPT_LATE_MEM in a
		 * .part file, until the blob is assembled */
		buf_printf(&m->part, "%s.part", buf_cstr(&m->path));
		buf_init(&m->mem, ACCEPT_LATE_MEM);
		return m;
	}
	m->fd = open(buf_cstr(&m->path), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (m->fd < 0) {
		int e = errno;
		accept_free(m);
		errno = e;
		return NULL;
	}
	return m;
}

static void write_all(struct accept_msg *m, const char *p, size_t n)
{
	if (m->write_errno)
		return;
	if (m->late && m->fd < 0) {
		if (m->mem.len + n <= ACCEPT_LATE_MEM) {
			if (!buf_append(&m->mem, p, n))
				m->write_errno = ENOMEM; /* never a short blob */
			else
				m->size += n;
			return;
		}
		/* too big to hold: on to the .part file (read back at assembly) */
		m->fd = open(buf_cstr(&m->part), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (m->fd < 0) {
			m->write_errno = errno;
			return;
		}
		m->spilled = true;
		int rc = write_fd(m->fd, m->mem.data, m->mem.len);
		buf_free(&m->mem);
		if (rc != 0) {
			m->write_errno = -rc;
			return;
		}
	}
	int rc = write_fd(m->fd, p, n);
	if (rc != 0)
		m->write_errno = -rc;
	else
		m->size += n;
}

void accept_write_prefix(struct accept_msg *m, const void *p, size_t n)
{
	if (m->late) {
		buf_append(&m->late_prefix, p, n);
		return;
	}
	write_all(m, p, n);
	m->prefix_len += n;
}

void accept_prepend(struct accept_msg *m, const void *p, size_t n)
{
	if (!m->late || n == 0)
		return;
	struct buf b = BUF_INIT;
	buf_init(&b, ACCEPT_HDR_MAX);
	buf_append(&b, p, n);
	buf_append(&b, m->late_prefix.data, m->late_prefix.len);
	if (buf_err(&b) || buf_err(&m->late_prefix))
		b.err = true;
	buf_free(&m->late_prefix);
	m->late_prefix = b;
}

static void dmarc_copy_free(struct store_dmarc_row_copy *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < sizeof c->s / sizeof c->s[0]; i++)
		free(c->s[i]);
	free(c);
}

void accept_set_dmarc(struct accept_msg *m, const struct store_dmarc_row *r)
{
	dmarc_copy_free(m->dmarc);
	struct store_dmarc_row_copy *c = calloc(1, sizeof *c);
	if (c == NULL)
		abort();
	const char *from[11] = {r->queue_id, r->source_ip, r->header_from, r->envelope_from,
	    r->policy_domain, r->policy, r->disposition, r->dmarc, r->spf, r->dkim, r->rua};
	for (size_t i = 0; i < 11; i++)
		c->s[i] = xstrdup(from[i]);
	c->row = *r;
	c->row.queue_id = c->s[0];
	c->row.source_ip = c->s[1];
	c->row.header_from = c->s[2];
	c->row.envelope_from = c->s[3];
	c->row.policy_domain = c->s[4];
	c->row.policy = c->s[5];
	c->row.disposition = c->s[6];
	c->row.dmarc = c->s[7];
	c->row.spf = c->s[8];
	c->row.dkim = c->s[9];
	c->row.rua = c->s[10];
	m->dmarc = c;
}

void accept_set_signer(struct accept_msg *m, struct dkim_signer *signer)
{
	dkim_signer_free(m->signer);
	m->signer = signer;
}

void accept_write(struct accept_msg *m, const void *p, size_t n)
{
	if (m->hdr.len < ACCEPT_HDR_MAX) {
		size_t room = ACCEPT_HDR_MAX - m->hdr.len;
		buf_append(&m->hdr, p, n < room ? n : room);
	}
	write_all(m, p, n);
}

static char *dup_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* A copy of n strings (a NULL entry stays NULL); NULL if v is. */
static char **dup_list(char *const *v, size_t n)
{
	if (v == NULL)
		return NULL;
	char **d = calloc(n ? n : 1, sizeof *d);
	if (d == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		d[i] = dup_null(v[i]);
	return d;
}

void accept_rcpts_free(struct accept_rcpt *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].rcpt);
		free(v[i].orcpt);
		free(v[i].users);
	}
	free(v);
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void accept_set_dsn(struct accept_msg *m, const char *envid, const char *ret,
    char *const *remote_notify, char *const *remote_orcpt, const struct accept_rcpt *lrcpts,
    size_t nlrcpts)
{
	m->envid = dup_null(envid);
	m->ret = dup_null(ret);
	m->remote_notify = dup_list(remote_notify, m->nremote);
	m->remote_orcpt = dup_list(remote_orcpt, m->nremote);
	if (nlrcpts > 0) {
		m->lrcpts = calloc(nlrcpts, sizeof *m->lrcpts);
		if (m->lrcpts == NULL)
			abort();
		for (size_t i = 0; i < nlrcpts; i++) {
			struct accept_rcpt *d = &m->lrcpts[i];
			*d = lrcpts[i];
			d->rcpt = xstrdup(lrcpts[i].rcpt);
			d->orcpt = dup_null(lrcpts[i].orcpt);
			d->users = calloc(d->nusers ? d->nusers : 1, sizeof *d->users);
			if (d->users == NULL)
				abort();
			memcpy(d->users, lrcpts[i].users, d->nusers * sizeof *d->users);
		}
		m->nlrcpts = nlrcpts;
	}
}

bool accept_set_envelope(struct accept_msg *m, const char *mail_from, char *const *users,
    size_t nusers, char *const *remote, size_t nremote)
{
	m->mail_from = xstrdup(mail_from);
	m->users = dup_list(users, nusers);
	m->nusers = nusers;
	m->remote = dup_list(remote, nremote);
	m->nremote = nremote;
	return true;
}

void accept_commit(
    struct accept_ctx *ctx, struct accept_msg *m, struct loopq *doneq, accept_cb cb, void *arg)
{
	m->doneq = doneq;
	m->cb = cb;
	m->cb_arg = arg;
	pthread_mutex_lock(&ctx->mu);
	mq_push(&ctx->sync_q, m);
	pthread_cond_signal(&ctx->sync_cv);
	pthread_mutex_unlock(&ctx->mu);
}

void accept_abort(struct accept_msg *m)
{
	if (m == NULL)
		return;
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	if (m->spilled)
		unlink(buf_cstr(&m->part));
	else if (!m->late && m->path.len)
		unlink(buf_cstr(&m->path));
	accept_free(m);
}

void accept_free(struct accept_msg *m)
{
	if (m == NULL)
		return;
	if (m->fd >= 0)
		close(m->fd);
	buf_free(&m->path);
	buf_free(&m->dir);
	buf_free(&m->hdr);
	buf_free(&m->part);
	buf_free(&m->mem);
	buf_free(&m->late_prefix);
	dkim_signer_free(m->signer);
	dmarc_copy_free(m->dmarc);
	free(m->mail_from);
	free_list(m->users, m->nusers);
	free_list(m->remote, m->nremote);
	free_list(m->remote_notify, m->nremote);
	free_list(m->remote_orcpt, m->nremote);
	free(m->envid);
	free(m->ret);
	accept_rcpts_free(m->lrcpts, m->nlrcpts);
	free(m);
}
