/*
 * store.h - the mail store: domains, users, aliases, mailboxes, messages,
 * the queue, and the blob files that hold message bodies.
 *
 * This is the whole contract between protocol code and storage; the SQLite
 * backend (store_sqlite.c) implements it today and a PostgreSQL backend can
 * implement it later without touching protocol code.
 *
 * Threading: a struct store is one connection; use one per thread. Several
 * processes (the server and the CLI) may open the same store at once.
 *
 * Names: domains are stored and compared in lower case; local parts compare
 * case-insensitively (ASCII). Addresses passed in are "local@domain".
 *
 * Return values: STORE_OK (0) or one of the negative codes below; functions
 * that fail with STORE_ERR put a message into the store's last error
 * (store_error()). A struct buf filled by a function (hash, path, dir) has
 * its previous contents replaced.
 */
#ifndef DAKIYA_STORE_H
#define DAKIYA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"

enum store_rc {
	STORE_OK = 0,
	STORE_NOTFOUND = -1, /* no such domain/user/alias/message */
	STORE_EXISTS = -2,   /* already there */
	STORE_NOTLOCAL = -3, /* the domain is not one of ours */
	STORE_INVALID = -4,  /* bad argument (syntax of an address, ...) */
	STORE_BUSY = -5,     /* temporary: locked, try again */
	STORE_ERR = -6,      /* anything else; see store_error() */
};

struct store;

/* Open (creating if needed) the store under data_dir: data_dir/dakiya.db
 * (SQLite, WAL) and data_dir/blobs/. Runs schema migrations. NULL on error
 * with the reason in err. */
struct store *store_open(const char *data_dir, struct buf *err);
void store_close(struct store *st); /* accepts NULL */
const char *store_error(const struct store *st);
const char *store_data_dir(const struct store *st);

/* ---- domains ---- */
int store_domain_add(struct store *st, const char *domain);
int store_domain_del(struct store *st, const char *domain);    /* also its users, aliases, mail */
int store_domain_exists(struct store *st, const char *domain); /* STORE_OK or STORE_NOTFOUND */
int store_domain_list(struct store *st, void (*cb)(void *arg, const char *domain), void *arg);

/* ---- users ---- */
/* Adds the user and its mailboxes INBOX, Sent, Drafts, Junk, Trash (with their
 * special-use roles). The domain must exist (else STORE_NOTLOCAL). pwhash is a
 * crypt(3) hash string. */
int store_user_add(struct store *st, const char *address, const char *pwhash);
int store_user_del(struct store *st, const char *address);
int store_user_passwd(struct store *st, const char *address, const char *pwhash);
/* The user's crypt(3) hash into out. */
int store_user_get_hash(struct store *st, const char *address, struct buf *out);
/* The user's address as stored ("local@domain": local part in the case it
 * was added with, domain lower case) into out; address may differ in case. */
int store_user_canonical(struct store *st, const char *address, struct buf *out);
/* All users (domain == NULL) or those of one domain. */
int store_user_list(
    struct store *st, const char *domain, void (*cb)(void *arg, const char *address), void *arg);

/* ---- aliases ---- */
/* address is "local@domain", or "@domain" for a catch-all. target is any
 * address (local or remote). One row per (address, target). */
int store_alias_add(struct store *st, const char *address, const char *target);
/* target == NULL removes every target of address. */
int store_alias_del(struct store *st, const char *address, const char *target);
int store_alias_list(struct store *st, const char *domain,
    void (*cb)(void *arg, const char *address, const char *target), void *arg);

/* ---- sender ownership (submission) ---- */
/* Whether the user (an existing user's address) may send as address:
 * STORE_OK if address is the user's own address or an alias one of whose
 * DIRECT targets is the user. Case-insensitive. "local+tag@domain" counts
 * as "local@domain" when local+tag itself is neither a user nor an alias
 * (the order store_resolve_rcpt uses). A catch-all alias owns nothing, and
 * nor do targets reached only through further aliases. STORE_NOTFOUND
 * otherwise (also when user is not a user, or address is not in a local
 * domain); STORE_INVALID for a malformed address (also "" for <>). */
int store_user_owns(struct store *st, const char *user, const char *address);

/* ---- recipients ---- */
#define STORE_RCPT_MAX_TARGETS 64
struct store_rcpt {
	size_t n;
	/* final local mailbox owners, "local@domain" as stored (canonical case) */
	char *users[STORE_RCPT_MAX_TARGETS];
	/* remote targets reached through aliases (for the outbound queue) */
	size_t nremote;
	char *remote[STORE_RCPT_MAX_TARGETS];
};
/* Resolve a recipient: exact user; exact alias; the same without "+tag";
 * catch-all "@domain". Aliases expand recursively (depth <= 8, loops cut).
 * Returns STORE_OK with targets filled (free with store_rcpt_free),
 * STORE_NOTFOUND (our domain, nobody there), STORE_NOTLOCAL (not our domain),
 * STORE_BUSY/STORE_ERR on trouble. */
int store_resolve_rcpt(
    struct store *st, const char *local, const char *domain, struct store_rcpt *out);
void store_rcpt_free(struct store_rcpt *r);

/* ---- blobs ---- */
/* Message bodies are files data_dir/blobs/<bucket>/<id>, written once,
 * fsynced, never changed. blob_path gives the path for an id (bucket derived
 * from the id); the directory is created if missing. */
int store_blob_path(struct store *st, const char *id, struct buf *path);
/* The directory part of store_blob_path (for fsync of the directory). */
int store_blob_dir(struct store *st, const char *id, struct buf *dir);

/* ---- events: the message journey (dakiya trace) ---- */
/* Append an event (kind: "received", "stored", "queued", "deferred", "sent",
 * "bounced", ...) for a queue id, timestamped now (ms). rcpt and text may be
 * NULL; text holds key=value details. store_deliver_batch records "stored"
 * (text "uid=N modseq=M"), "queued" and "dropped" events itself. */
int store_event_add(
    struct store *st, const char *queue_id, const char *kind, const char *rcpt, const char *text);
/* The events of a queue id, oldest first; STORE_NOTFOUND if there are none. */
int store_event_list(struct store *st, const char *queue_id,
    void (*cb)(void *arg, int64_t time_ms, const char *kind, const char *rcpt, const char *text),
    void *arg);

/* ---- delivery ---- */
struct store_delivery {
	const char *blob; /* blob id (the queue id) */
	uint64_t size;    /* bytes in the blob */
	time_t internal_date;
	const char *mail_from;  /* envelope sender ("" for <>) */
	const char *message_id; /* header summary, may be NULL */
	const char *from;
	const char *subject;
	const char *date;
	const char *const *users;   /* local owners */
	const char *const *folders; /* per user: mailbox name, NULL = INBOX */
	size_t nusers;
	/* remote recipients to queue (outbound); may be 0 */
	const char *const *remote;
	size_t nremote;
	/* DSN (RFC 3461), for the queue entry; NULL = not given. Per remote
	 * recipient (the arrays may be NULL): NOTIFY as "FAILURE,DELAY" and
	 * ORCPT as "type;xtext" */
	const char *envid; /* decoded */
	const char *ret;   /* "FULL" or "HDRS" */
	const char *const *remote_notify;
	const char *const *remote_orcpt;
	/* out, may be NULL: per user, set when that user's mailbox no longer
	 * existed at commit time (deleted since RCPT), so nothing was stored for
	 * them; the caller tells the sender */
	bool *dropped;
	/* the DMARC result of a received message, NULL if none */
	const struct store_dmarc_row *dmarc;
};
/* Commit a batch of accepted messages in ONE transaction: each delivered into
 * its users' mailboxes (new UID and MODSEQ per mailbox), remote recipients
 * into the queue. The blob files must already be on stable storage. On
 * return STORE_OK everything is durable (synchronous=FULL). */
int store_deliver_batch(struct store *st, const struct store_delivery *d, size_t n);

/* ---- DKIM keys (dakiya dkim) ----
 * A domain's signing keys: the row holds the public record, the private key
 * is the file store_dkim_path() names (mode 0600 in a 0700 directory). Of
 * each algorithm the newest key signs; older ones are still listed (and
 * published by `dns records`) so that mail signed with them still verifies,
 * until they are deleted. */
struct store_dkim_key {
	const char *selector;
	const char *algorithm; /* "rsa" or "ed25519" */
	const char *record;    /* "v=DKIM1; k=rsa; p=..." */
	time_t created;
	bool signing; /* the newest active key of its algorithm */
	bool active;  /* may sign; false: made while others signed, waits for activate */
};
/* STORE_NOTLOCAL when the domain is not ours, STORE_EXISTS for a selector
 * the domain already has. */
int store_dkim_add(struct store *st, const char *domain, const char *selector,
    const char *algorithm, const char *record, bool active);
int store_dkim_del(struct store *st, const char *domain, const char *selector);
/* The key may sign from now on (the newest active key of each algorithm does). */
int store_dkim_activate(struct store *st, const char *domain, const char *selector);
/* Oldest first; STORE_NOTLOCAL when the domain is not ours. */
int store_dkim_list(struct store *st, const char *domain,
    void (*cb)(void *arg, const struct store_dkim_key *k), void *arg);
/* data_dir/dkim/<domain>/<selector>.pem (domain lower case) */
int store_dkim_path(struct store *st, const char *domain, const char *selector, struct buf *path);

/* ---- DMARC results, for aggregate reports ---- */
struct store_dmarc_row {
	int64_t time;
	const char *queue_id;
	const char *source_ip;
	const char *header_from;
	const char *envelope_from;
	const char *policy_domain;
	const char *policy;
	const char *disposition;
	const char *dmarc;
	const char *spf;
	bool spf_aligned;
	const char *dkim;
	bool dkim_aligned;
	const char *rua;
};
/* One row on its own (a refused message); the accepted ones go with their
 * delivery (store_delivery.dmarc). */
int store_dmarc_add(struct store *st, const struct store_dmarc_row *r);
/* Every row of policy_domain (all if NULL) since time, oldest first. */
int store_dmarc_list(struct store *st, const char *policy_domain, int64_t since,
    void (*cb)(void *arg, const struct store_dmarc_row *r), void *arg);

/* ---- the outbound queue (dakiya queue) ---- */
/* A queue entry is one accepted message with remote recipients (queue and
 * queue_rcpts rows; its body is blob "id"). Nothing in this section delivers;
 * it is what the operator sees and changes. Admin changes are recorded as
 * events (kinds "retry", "held", "released", "deleted", text "by=admin"). */
struct store_queue_rcpt {
	const char *rcpt;
	const char *status; /* "pending", "sent" or "failed" */
	int64_t attempts;
	const char *last_reply; /* "" if none */
};
struct store_queue_entry {
	const char *id;
	const char *sender; /* envelope sender, "" for <> */
	uint64_t size;
	time_t created;
	time_t next_attempt;
	int64_t attempts;
	const char *last_error; /* "" if none */
	bool held;
	const struct store_queue_rcpt *rcpts; /* every recipient, any status */
	size_t nrcpts;
};
/* Every entry, oldest first (the pointers live only during the callback). */
int store_queue_list(
    struct store *st, void (*cb)(void *arg, const struct store_queue_entry *e), void *arg);
/* One entry; STORE_NOTFOUND if there is none with that id. Its events are
 * store_event_list(id). */
int store_queue_get(struct store *st, const char *id,
    void (*cb)(void *arg, const struct store_queue_entry *e), void *arg);
/* Make entry id due now (next_attempt = min(next_attempt, now)); held stays
 * held. id == NULL: every entry that is not held. *n (may be NULL) gets the
 * number of entries changed. STORE_NOTFOUND if id is not queued. */
int store_queue_retry(struct store *st, const char *id, size_t *n);
/* Hold: the scheduler must skip the entry until released. Release: not held
 * any more and due now. Both idempotent; STORE_NOTFOUND if id is not queued. */
int store_queue_hold(struct store *st, const char *id);
int store_queue_release(struct store *st, const char *id);
/* Remove the entry and its recipients (no bounce is sent). Its blob row and
 * file go too unless a mailbox message still uses them; if the process dies
 * between the commit and the unlink, the file is left without a row, which
 * `dakiya store check` reports. STORE_NOTFOUND if id is not queued. */
int store_queue_delete(struct store *st, const char *id);

/* ---- the delivery thread's side of the queue ----
 * One delivery thread works the queue. store_queue_due() only reads: the
 * caller keeps the ids it is working on in memory (so a restart tries them
 * again at once: at worst a message goes twice, never not at all). */
struct store_due_rcpt {
	char *rcpt;
	char *notify; /* DSN NOTIFY as stored ("FAILURE,DELAY"), NULL if not given */
	char *orcpt;  /* DSN ORCPT as stored ("rfc822;a+40b"), NULL if not given */
	int64_t attempts;
};
struct store_due {
	char *id;
	char *path;   /* the blob file */
	char *sender; /* "" for <> */
	char *envid;  /* NULL if none */
	char *ret;    /* "FULL", "HDRS" or NULL */
	uint64_t size;
	time_t created;
	int64_t attempts;
	bool warned;                  /* a delay warning was sent */
	struct store_due_rcpt *rcpts; /* the PENDING recipients only, in order */
	size_t nrcpts;
};
/* Up to max entries that are not held, have pending recipients and
 * next_attempt <= now, oldest first, into *out (free with store_due_free).
 * *n may be 0. */
int store_queue_due(struct store *st, time_t now, size_t max, struct store_due **out, size_t *n);
void store_due_free(struct store_due *d, size_t n); /* accepts NULL */

struct store_rcpt_update {
	const char *rcpt;
	const char *status; /* "sent", "failed" or "pending" */
	const char *reply;  /* the last reply (or our reason); NULL keeps the old one */
};
struct store_event_rec {
	const char *kind; /* "attempt", "sent", "deferred", "bounced", ... */
	const char *rcpt; /* may be NULL */
	const char *text; /* key=value details; may be NULL */
};
struct store_attempt {
	const char *id;
	const struct store_rcpt_update *rcpts; /* each one's attempts + 1 */
	size_t nrcpts;
	time_t next_attempt;
	const char *last_error; /* NULL keeps the old one */
	bool warned;            /* mark the delay warning as sent */
	const struct store_event_rec *events;
	size_t nevents;
};
/* Record one delivery attempt of entry a->id in ONE transaction: the
 * recipients' status and reply, the entry's attempts + 1, next_attempt,
 * last_error, and the events. If no recipient is pending any more the entry
 * is removed (as store_queue_finish) and *removed (may be NULL) says so.
 * STORE_NOTFOUND if the entry is gone (deleted by the admin meanwhile). */
int store_queue_attempt(struct store *st, const struct store_attempt *a, bool *removed);
/* Record n attempts in ONE transaction (one commit, one fsync: the
 * delivery thread's group commit). rcs[k] is each one's result: STORE_OK,
 * STORE_NOTFOUND, or STORE_INVALID for an attempt that is malformed (it is
 * skipped, the others are written); removed[k] (removed may be NULL) as
 * above. The return value is STORE_OK, or the error that rolled back all of
 * them (STORE_BUSY, STORE_ERR; every valid one's rcs[k] is that error). */
int store_queue_attempts(
    struct store *st, const struct store_attempt *a, size_t n, int *rcs, bool *removed);
/* Remove entry id if none of its recipients is pending: its rows, its blob
 * row and file unless a mailbox message still uses them. *removed (may be
 * NULL) says whether it did. STORE_NOTFOUND if id is not queued. */
int store_queue_finish(struct store *st, const char *id, bool *removed);

/* ---- reading mailboxes ---- */
enum store_flag {
	STORE_FLAG_SEEN = 1,
	STORE_FLAG_ANSWERED = 2,
	STORE_FLAG_FLAGGED = 4,
	STORE_FLAG_DELETED = 8,
	STORE_FLAG_DRAFT = 16,
};
struct store_msginfo {
	uint32_t uid;
	uint64_t modseq;
	uint64_t size;
	time_t internal_date;
	unsigned flags;       /* enum store_flag bits */
	const char *keywords; /* space-separated, "" if none */
	const char *blob;
	const char *message_id; /* "" if none */
	const char *from;
	const char *subject;
	const char *date;
};
/* Messages of address's folder (NULL = INBOX), by UID. */
int store_mailbox_list(struct store *st, const char *address, const char *folder,
    void (*cb)(void *arg, const struct store_msginfo *m), void *arg);
/* Path of the blob holding message uid of that folder. */
int store_message_path(
    struct store *st, const char *address, const char *folder, uint32_t uid, struct buf *path);
/* Folder names of a user with their special-use ("" if none). */
int store_folder_list(struct store *st, const char *address,
    void (*cb)(void *arg, const char *name, const char *special_use, uint32_t uidvalidity,
        uint32_t uidnext),
    void *arg);

#endif
