/*
 * accept.h - the accept path: from a session's received bytes to a message
 * on stable storage, then delivered into mailboxes (and, for remote
 * recipients, into the queue).
 *
 * A session creates an accept_msg at DATA/BDAT time (which opens the blob
 * file), writes the content through accept_write() as it arrives, and calls
 * accept_commit() at the end of data. The commit runs off the event loop:
 * a pool of sync threads fdatasync()s each blob file concurrently (the
 * kernel batches concurrent journal commits), then one committer thread
 * fsyncs the blob directories and writes the whole batch of messages in ONE
 * store transaction (group commit). Only then is the session called back,
 * on its own event loop, and only then may it answer 250.
 *
 * Ownership: the session owns the accept_msg except between accept_commit()
 * and its callback; a session that dies meanwhile must wait for the
 * callback before freeing (the message is committed anyway: at worst the
 * client sends it again, never is an acknowledged message lost).
 */
#ifndef DAKIYA_ACCEPT_H
#define DAKIYA_ACCEPT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/loopq.h"
#include "core/util.h"

struct event_base;
struct event;
struct store;
struct accept_ctx;
struct accept_msg;
struct dkim_signer;

typedef void (*accept_cb)(struct accept_msg *m, void *arg);

#define ACCEPT_HDR_MAX (64 * 1024)
#define ACCEPT_LATE_MEM (64 * 1024) /* late mode: content held in memory up to this */

/* One RCPT that reached local mailboxes: the reports it may be owed after
 * the commit are decided from this (RFC 3461 5.2.3, 6.2.7). */
struct accept_rcpt {
	char *rcpt;      /* as given in RCPT */
	char *orcpt;     /* ORCPT as received, NULL if none */
	unsigned notify; /* DSN_NOTIFY_* bits; 0 = not given (failures only) */
	bool expanded;   /* an alias with more than one target */
	bool remote;     /* some of its targets are remote (queued) */
	size_t *users;   /* the mailbox owners it reached: indices into users */
	size_t nusers;
};

struct accept_msg {
	char qid[UTIL_QID_LEN + 1];
	int fd;          /* blob file, open for writing until the sync */
	struct buf path; /* blob file path */
	struct buf dir;  /* its directory */
	uint64_t size;   /* bytes written to the blob */
	int write_errno; /* first write error, 0 if none */
	int64_t received_ms;
	struct buf hdr;    /* the start of the content, to find summary headers */
	size_t prefix_len; /* bytes of our own prepended headers in the blob */
	/* late prefix (accept_begin with late): the content waits in mem, or
	 * once past ACCEPT_LATE_MEM in the file part (the blob path +
	 * ".part", spilled); our header lines wait in late_prefix; the sync
	 * thread writes the blob as late_prefix + content (signing first, if
	 * signer) */
	bool late, spilled;
	struct buf mem;
	struct buf part;
	struct buf late_prefix;
	struct dkim_signer *signer; /* owned; signs the content, see accept_set_signer */
	bool junk;                  /* file into the users' Junk folders (the checks said so) */
	struct store_dmarc_row_copy *dmarc; /* the DMARC result to store, NULL if none */
	/* envelope */
	char *mail_from;
	char **users;
	size_t nusers;
	char **remote;
	size_t nremote;
	/* DSN (RFC 3461), NULL where not given (accept_set_dsn) */
	char *envid;          /* decoded */
	char *ret;            /* "FULL" or "HDRS" */
	char **remote_notify; /* per remote: "SUCCESS,FAILURE" */
	char **remote_orcpt;  /* per remote: "rfc822;a+2Bb@c" */
	/* every RCPT that reached local mailboxes, for the reports owed after
	 * the commit (accept_set_dsn) */
	struct accept_rcpt *lrcpts;
	size_t nlrcpts;
	/* outcome, valid in the callback: 0 = durable, else a STORE_* code or -errno */
	int rc;
	/* completion */
	struct loopq *doneq;
	struct loopq_item done_item;
	accept_cb cb;
	void *cb_arg;
	struct accept_msg *next;
};

/* Start the sync threads and the committer, with their own store connection.
 * hostname is ours, for the success reports the committer sends. */
struct accept_ctx *accept_start(
    const char *data_dir, const char *hostname, unsigned sync_threads, struct buf *err);
/* Finish pending commits, stop the threads, close the store. */
void accept_stop(struct accept_ctx *ctx);

/* Called (on the committer thread) after a batch with remote recipients is
 * durable, so that delivery can start at once; fn must be thread-safe and
 * quick (delivery_notify). NULL turns it off. */
typedef void (*accept_notify_fn)(void *arg);
void accept_set_notify(struct accept_ctx *ctx, accept_notify_fn fn, void *arg);

/* Begin a message: new queue id, blob file created (O_EXCL, 0600). NULL on
 * failure with errno set. st is the caller's store connection (for paths).
 * late: our header lines may still be added at the end of the content
 * (accept_prepend: verdicts known only then), at the cost of one more file
 * and copy per message. */
struct accept_msg *accept_begin(struct store *st, bool late);
/* Append our own prepended header lines (Received:, ...), before any content. */
void accept_write_prefix(struct accept_msg *m, const void *p, size_t n);
/* Late mode: header lines to go in front of everything written so far. */
void accept_prepend(struct accept_msg *m, const void *p, size_t n);
/* Late mode: sign the message (the content as written: header section and
 * body) off the loop, before the sync; m owns signer, which must have been
 * fed the body. A signing failure is logged and the message goes
 * unsigned. */
void accept_set_signer(struct accept_msg *m, struct dkim_signer *signer);
/* The message's DMARC result, stored with it (copied). */
struct store_dmarc_row;
void accept_set_dmarc(struct accept_msg *m, const struct store_dmarc_row *r);
/* Append content; errors are sticky in write_errno. */
void accept_write(struct accept_msg *m, const void *p, size_t n);
/* Envelope: copies the strings. */
bool accept_set_envelope(struct accept_msg *m, const char *mail_from, char *const *users,
    size_t nusers, char *const *remote, size_t nremote);
/* DSN parameters: envid, ret (may be NULL), per remote recipient notify
 * and orcpt (arrays of nremote, entries or arrays may be NULL), and the
 * RCPTs that reached local mailboxes (copied). After accept_set_envelope. */
void accept_set_dsn(struct accept_msg *m, const char *envid, const char *ret,
    char *const *remote_notify, char *const *remote_orcpt, const struct accept_rcpt *lrcpts,
    size_t nlrcpts);
/* Free n accept_rcpt and their strings (accepts NULL). */
void accept_rcpts_free(struct accept_rcpt *v, size_t n);
/* Hand over for the durable commit; cb(m, arg) runs on doneq's loop. */
void accept_commit(
    struct accept_ctx *ctx, struct accept_msg *m, struct loopq *doneq, accept_cb cb, void *arg);
/* Drop a message that will not be committed (file removed). NULL ok. */
void accept_abort(struct accept_msg *m);
/* Free a message after its callback. NULL ok. */
void accept_free(struct accept_msg *m);

#endif
