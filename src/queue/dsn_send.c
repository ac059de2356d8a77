/*
 * dsn_send.c - make a delivery status notification durable (see dsn_send.h).
 */
#include "queue/dsn_send.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "smtp/smtp_parse.h"
#include "store/store.h"

static char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (p == NULL)
		abort();
	return p;
}

int dsn_send(
    struct store *st, const char *orig_id, const char *to, struct buf *msg, bool *remote_out)
{
	char qid[UTIL_QID_LEN + 1];
	util_queue_id(qid);
	struct buf path = BUF_INIT, dir = BUF_INIT, v = BUF_INIT;
	buf_init(&v, 2048);
	int ret = -1, fd = -1;
	struct store_rcpt rr;
	memset(&rr, 0, sizeof rr);
	if (store_blob_path(st, qid, &path) != STORE_OK ||
	    store_blob_dir(st, qid, &dir) != STORE_OK) {
		log_err(orig_id, "event=dsn-failed error=\"%s\"", log_str(store_error(st)));
		goto out;
	}
	fd = open(buf_cstr(&path), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	size_t off = 0;
	while (fd >= 0 && off < msg->len) {
		ssize_t w = write(fd, msg->data + off, msg->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	if (fd < 0 || off != msg->len || fdatasync(fd) != 0 || close(fd) != 0 ||
	    util_fsync_dir(buf_cstr(&dir)) != 0) {
		log_err(orig_id, "event=dsn-failed path=%s error=\"%s\"", buf_cstr(&path),
		    strerror(errno));
		if (fd >= 0)
			unlink(buf_cstr(&path));
		fd = -1;
		goto out;
	}
	fd = -1;
	/* local sender: its mailboxes (and remote targets of an alias) */
	const char *at = strrchr(to, '@');
	char local[256];
	const char *remote1[1] = {to};
	const char *const *users = NULL, *const *remote = remote1;
	size_t nusers = 0, nremote = 1;
	int rc = STORE_INVALID;
	if (at != NULL && (size_t)(at - to) < sizeof local) {
		snprintf(local, sizeof local, "%.*s", (int)(at - to), to);
		rc = store_resolve_rcpt(st, local, at + 1, &rr);
	}
	/* a local part no user of ours can have (too long, odd characters) is
	 * still a fine address elsewhere: VERP and SRS senders look like that */
	if (rc == STORE_INVALID && at != NULL && store_domain_exists(st, at + 1) == STORE_NOTFOUND)
		rc = STORE_NOTLOCAL;
	if (rc == STORE_OK) {
		users = (const char *const *)rr.users;
		nusers = rr.n;
		remote = (const char *const *)rr.remote;
		nremote = rr.nremote;
	} else if (rc != STORE_NOTLOCAL) {
		log_warn(orig_id, "event=dsn-dropped to=%s reason=%s", log_str(to),
		    rc == STORE_NOTFOUND  ? "no-such-local-user"
		    : rc == STORE_INVALID ? "invalid-address"
		                          : "store-error");
		unlink(buf_cstr(&path));
		goto out;
	}
	char *sum[3];
	static const char *const names[3] = {"Message-ID", "From", "Subject"};
	for (int i = 0; i < 3; i++) {
		smtp_header_get(msg->data, msg->len, names[i], &v, 998);
		sum[i] = xstrdup(buf_err(&v) ? "" : buf_cstr(&v));
	}
	struct store_delivery sd = {
	    .blob = qid,
	    .size = msg->len,
	    .internal_date = time(NULL),
	    .mail_from = "",
	    .message_id = sum[0],
	    .from = sum[1],
	    .subject = sum[2],
	    .date = "",
	    .users = users,
	    .nusers = nusers,
	    .remote = remote,
	    .nremote = nremote,
	};
	for (int attempt = 0; attempt < 20; attempt++) {
		rc = store_deliver_batch(st, &sd, 1);
		if (rc != STORE_BUSY)
			break;
		usleep(50000);
	}
	for (int i = 0; i < 3; i++)
		free(sum[i]);
	if (rc != STORE_OK) {
		log_err(orig_id, "event=dsn-failed error=\"%s\"", log_str(store_error(st)));
		unlink(buf_cstr(&path));
		goto out;
	}
	log_info(orig_id, "event=dsn-queued dsn=%s to=%s local=%zu remote=%zu", qid, log_str(to),
	    nusers, nremote);
	store_event_add(st, qid, "received", NULL, "from=mailer-daemon");
	*remote_out = nremote > 0;
	ret = 0;
out:
	store_rcpt_free(&rr);
	buf_free(&path);
	buf_free(&dir);
	buf_free(&v);
	return ret;
}
