/*
 * store_sqlite.c - the SQLite backend of store.h.
 *
 * One struct store is one SQLite connection (opened SQLITE_OPEN_NOMUTEX):
 * it may move between threads but must never be used by two at once. The
 * server and the CLI open the same database concurrently; WAL lets readers
 * run beside the one writer, and busy_timeout makes writers wait for each
 * other (STORE_BUSY once it expires).
 *
 * Durability: journal_mode=WAL with synchronous=FULL, so a COMMIT has
 * fsynced the WAL before it returns; store_deliver_batch is one transaction.
 *
 * Speed: every statement is prepared once per connection and cached
 * (SQLITE_PREPARE_PERSISTENT); a cached statement that is already running
 * (a list callback calling back into the store) is replaced by a one-off
 * statement, so callbacks may use the store. Every write that spans more
 * than one statement starts with BEGIN IMMEDIATE so that it never has to
 * upgrade a read lock (which in WAL mode fails without waiting).
 *
 * Security: the database holds password hashes; it is created mode 0600
 * (SQLite gives the -wal and -shm files the same mode). Blob ids become file
 * names, so they are restricted to [A-Za-z0-9_-].
 */
#include "store/store.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_schema.h"

#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_ALIAS_DEPTH 8
#define ADDR_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1 */
#define ADDR_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2 */
#define BLOB_ID_MAX 64
#define BLOB_BUCKET_LEN 6
#define INBOX "INBOX"

/* The cached statements; stmt_sql[] below holds their text. */
enum stmt_id {
	Q_BEGIN,
	Q_BEGIN_READ,
	Q_COMMIT,
	Q_ROLLBACK,
	Q_DOMAIN_ADD,
	Q_DOMAIN_DEL,
	Q_DOMAIN_ID,
	Q_DOMAIN_LIST,
	Q_USER_ADD,
	Q_USER_DEL,
	Q_USER_PASSWD,
	Q_USER_HASH,
	Q_USER_CANON,
	Q_USER_FIND,
	Q_USER_LIST_ALL,
	Q_USER_LIST_DOMAIN,
	Q_UIDVALIDITY_NEXT,
	Q_MAILBOX_ADD,
	Q_ALIAS_ADD,
	Q_ALIAS_DEL_ONE,
	Q_ALIAS_DEL_ALL,
	Q_ALIAS_TARGETS,
	Q_ALIAS_LIST_ALL,
	Q_ALIAS_LIST_DOMAIN,
	Q_MAILBOX_ALLOC,
	Q_BLOB_ADD,
	Q_MESSAGE_ADD,
	Q_QUEUE_ADD,
	Q_QUEUE_RCPT_ADD,
	Q_EVENT_ADD,
	Q_EVENT_LIST,
	Q_MAILBOX_ID,
	Q_MESSAGE_LIST,
	Q_MESSAGE_BLOB,
	Q_FOLDER_LIST,
	Q_QUEUE_LIST,
	Q_QUEUE_GET,
	Q_QUEUE_RETRY,
	Q_QUEUE_RETRY_ALL,
	Q_QUEUE_HOLD,
	Q_QUEUE_RELEASE,
	Q_QUEUE_DELETE,
	Q_BLOB_DEL_UNUSED,
	Q_QUEUE_DUE,
	Q_QUEUE_RCPT_SET,
	Q_QUEUE_ATTEMPT,
	Q_QUEUE_PENDING,
	Q_DKIM_ADD,
	Q_DKIM_DEL,
	Q_DKIM_ACTIVATE,
	Q_DKIM_LIST,
	Q_DMARC_ADD,
	Q_DMARC_LIST,
	Q__COUNT
};

/* "u JOIN d" selecting the user ?1 local part, ?2 domain */
#define USER_BY_ADDR                                                                               \
	"SELECT u.id FROM users u JOIN domains d ON d.id = u.domain_id"                            \
	" WHERE u.local = ?1 AND d.name = ?2"

/* the columns store_queue_list/get read, in queue_row()'s order */
#define QUEUE_COLS                                                                                 \
	"q.id, q.sender, q.size, q.created, q.next_attempt, q.attempts, q.last_error, q.held,"     \
	" r.rcpt, r.status, r.attempts, r.last_reply"

static const char *const stmt_sql[Q__COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_BEGIN_READ] = "BEGIN DEFERRED",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_DOMAIN_ADD] = "INSERT INTO domains(name, created) VALUES (?1, ?2)",
    [Q_DOMAIN_DEL] = "DELETE FROM domains WHERE name = ?1",
    [Q_DOMAIN_ID] = "SELECT id FROM domains WHERE name = ?1",
    [Q_DOMAIN_LIST] = "SELECT name FROM domains ORDER BY name",
    [Q_USER_ADD] = "INSERT INTO users(domain_id, local, pwhash, created)"
                   " SELECT id, ?1, ?3, ?4 FROM domains WHERE name = ?2 RETURNING id",
    [Q_USER_DEL] = "DELETE FROM users WHERE id = (" USER_BY_ADDR ")",
    [Q_USER_PASSWD] = "UPDATE users SET pwhash = ?3 WHERE id = (" USER_BY_ADDR ")",
    [Q_USER_HASH] = "SELECT pwhash FROM users WHERE id = (" USER_BY_ADDR ")",
    [Q_USER_CANON] = "SELECT u.local, d.name FROM users u JOIN domains d ON d.id = u.domain_id"
                     " WHERE u.local = ?1 AND d.name = ?2",
    [Q_USER_FIND] = "SELECT local FROM users WHERE domain_id = ?1 AND local = ?2",
    [Q_USER_LIST_ALL] = "SELECT u.local, d.name FROM users u JOIN domains d ON d.id = u.domain_id"
                        " ORDER BY d.name, u.local",
    [Q_USER_LIST_DOMAIN] = "SELECT u.local, d.name FROM users u JOIN domains d"
                           " ON d.id = u.domain_id WHERE d.name = ?1 ORDER BY u.local",
    [Q_UIDVALIDITY_NEXT] = "UPDATE meta SET value = max(value + 1, ?1) WHERE key = 'uidvalidity'"
                           " RETURNING value",
    [Q_MAILBOX_ADD] = "INSERT INTO mailboxes(user_id, name, special_use, uidvalidity)"
                      " VALUES (?1, ?2, ?3, ?4)",
    /* a further target of an existing alias keeps the first row's case */
    [Q_ALIAS_ADD] = "INSERT INTO aliases(domain_id, local, target)"
                    " SELECT d.id, coalesce((SELECT a.local FROM aliases a"
                    " WHERE a.domain_id = d.id AND a.local = ?1 LIMIT 1), ?1), ?3"
                    " FROM domains d WHERE d.name = ?2",
    [Q_ALIAS_DEL_ONE] = "DELETE FROM aliases WHERE local = ?1 AND target = ?3"
                        " AND domain_id = (SELECT id FROM domains WHERE name = ?2)",
    [Q_ALIAS_DEL_ALL] = "DELETE FROM aliases WHERE local = ?1"
                        " AND domain_id = (SELECT id FROM domains WHERE name = ?2)",
    [Q_ALIAS_TARGETS] =
        "SELECT target FROM aliases WHERE domain_id = ?1 AND local = ?2 ORDER BY id",
    [Q_ALIAS_LIST_ALL] = "SELECT a.local, d.name, a.target FROM aliases a JOIN domains d"
                         " ON d.id = a.domain_id ORDER BY d.name, a.local, a.id",
    [Q_ALIAS_LIST_DOMAIN] = "SELECT a.local, d.name, a.target FROM aliases a JOIN domains d"
                            " ON d.id = a.domain_id WHERE d.name = ?1 ORDER BY a.local, a.id",
    [Q_MAILBOX_ALLOC] = "UPDATE mailboxes SET uidnext = uidnext + 1,"
                        " highestmodseq = highestmodseq + 1"
                        " WHERE user_id = (" USER_BY_ADDR ") AND name = ?3"
                        " RETURNING id, uidnext - 1, highestmodseq",
    [Q_BLOB_ADD] = "INSERT INTO blobs(id, size, created) VALUES (?1, ?2, ?3)"
                   " ON CONFLICT DO NOTHING",
    [Q_MESSAGE_ADD] = "INSERT INTO messages(mailbox_id, uid, modseq, blob, size, internal_date,"
                      " message_id, hdr_from, hdr_subject, hdr_date, mail_from)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [Q_QUEUE_ADD] = "INSERT INTO queue(id, blob, sender, size, created, next_attempt,"
                    " envid, ret) VALUES (?1, ?1, ?2, ?3, ?4, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
    [Q_QUEUE_RCPT_ADD] = "INSERT INTO queue_rcpts(queue_id, rcpt, notify, orcpt)"
                         " VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
    [Q_EVENT_ADD] = "INSERT INTO events(queue_id, time_ms, kind, rcpt, text)"
                    " VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_EVENT_LIST] = "SELECT time_ms, kind, rcpt, text FROM events WHERE queue_id = ?1"
                     " ORDER BY time_ms, id",
    [Q_MAILBOX_ID] = "SELECT id FROM mailboxes WHERE user_id = (" USER_BY_ADDR ") AND name = ?3",
    [Q_MESSAGE_LIST] = "SELECT uid, modseq, size, internal_date, flags, keywords, blob,"
                       " message_id, hdr_from, hdr_subject, hdr_date"
                       " FROM messages WHERE mailbox_id = ?1 ORDER BY uid",
    [Q_MESSAGE_BLOB] = "SELECT blob FROM messages WHERE mailbox_id = ?1 AND uid = ?2",
    [Q_FOLDER_LIST] = "SELECT name, special_use, uidvalidity, uidnext FROM mailboxes"
                      " WHERE user_id = (" USER_BY_ADDR ") ORDER BY id",
    /* queue entries with their recipients, one row per recipient */
    [Q_QUEUE_LIST] = "SELECT " QUEUE_COLS " FROM queue q LEFT JOIN queue_rcpts r"
                     " ON r.queue_id = q.id ORDER BY q.created, q.id, r.id",
    [Q_QUEUE_GET] = "SELECT " QUEUE_COLS " FROM queue q LEFT JOIN queue_rcpts r"
                    " ON r.queue_id = q.id WHERE q.id = ?1 ORDER BY r.id",
    [Q_QUEUE_RETRY] = "UPDATE queue SET next_attempt = min(next_attempt, ?2) WHERE id = ?1",
    [Q_QUEUE_RETRY_ALL] = "UPDATE queue SET next_attempt = min(next_attempt, ?2) WHERE held = 0"
                          " RETURNING id",
    [Q_QUEUE_HOLD] = "UPDATE queue SET held = 1 WHERE id = ?1",
    [Q_QUEUE_RELEASE] = "UPDATE queue SET held = 0, next_attempt = min(next_attempt, ?2)"
                        " WHERE id = ?1",
    [Q_QUEUE_DELETE] = "DELETE FROM queue WHERE id = ?1",
    [Q_BLOB_DEL_UNUSED] = "DELETE FROM blobs WHERE id = ?1"
                          " AND NOT EXISTS (SELECT 1 FROM messages WHERE blob = ?1)"
                          " AND NOT EXISTS (SELECT 1 FROM queue WHERE blob = ?1)",
    /* due entries (?1 now, ?2 how many) with their pending recipients */
    [Q_QUEUE_DUE] = "SELECT q.id, q.blob, q.sender, q.envid, q.ret, q.size, q.created,"
                    " q.attempts, q.warned, r.rcpt, r.notify, r.orcpt, r.attempts"
                    " FROM queue q JOIN queue_rcpts r ON r.queue_id = q.id"
                    " WHERE r.status = 'pending' AND q.id IN (SELECT q2.id FROM queue q2"
                    " WHERE q2.held = 0 AND q2.next_attempt <= ?1 AND EXISTS (SELECT 1"
                    " FROM queue_rcpts r2 WHERE r2.queue_id = q2.id AND r2.status = 'pending')"
                    " ORDER BY q2.created, q2.id LIMIT ?2)"
                    " ORDER BY q.created, q.id, r.id",
    [Q_QUEUE_RCPT_SET] = "UPDATE queue_rcpts SET status = ?3, last_reply = coalesce(?4,"
                         " last_reply), attempts = attempts + 1"
                         " WHERE queue_id = ?1 AND rcpt = ?2",
    [Q_QUEUE_ATTEMPT] = "UPDATE queue SET attempts = attempts + 1, next_attempt = ?2,"
                        " last_error = coalesce(?3, last_error), warned = warned OR ?4"
                        " WHERE id = ?1",
    [Q_QUEUE_PENDING] = "SELECT count(*) FROM queue_rcpts WHERE queue_id = ?1"
                        " AND status = 'pending'",
    [Q_DKIM_ADD] = "INSERT INTO dkim_keys(domain_id, selector, algorithm, record, created,"
                   " active) SELECT id, ?2, ?3, ?4, ?5, ?6 FROM domains WHERE name = ?1",
    [Q_DKIM_ACTIVATE] = "UPDATE dkim_keys SET active = 1 WHERE selector = ?2"
                        " AND domain_id = (SELECT id FROM domains WHERE name = ?1)",
    [Q_DKIM_DEL] = "DELETE FROM dkim_keys WHERE selector = ?2"
                   " AND domain_id = (SELECT id FROM domains WHERE name = ?1)",
    [Q_DKIM_LIST] = "SELECT k.selector, k.algorithm, k.record, k.created,"
                    " k.active AND k.id = (SELECT max(k2.id) FROM dkim_keys k2 WHERE"
                    " k2.domain_id = k.domain_id AND k2.algorithm = k.algorithm"
                    " AND k2.active), k.active"
                    " FROM dkim_keys k JOIN domains d ON d.id = k.domain_id"
                    " WHERE d.name = ?1 ORDER BY k.id",
    [Q_DMARC_ADD] = "INSERT INTO dmarc_results(time, queue_id, source_ip, header_from,"
                    " envelope_from, policy_domain, policy, disposition, dmarc, spf,"
                    " spf_aligned, dkim, dkim_aligned, rua) VALUES"
                    " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    [Q_DMARC_LIST] = "SELECT time, queue_id, source_ip, header_from, envelope_from,"
                     " policy_domain, policy, disposition, dmarc, spf, spf_aligned, dkim,"
                     " dkim_aligned, rua FROM dmarc_results WHERE time >= ?2"
                     " AND (?1 IS NULL OR policy_domain = ?1) ORDER BY id",
};

struct store {
	sqlite3 *db;
	char *data_dir;
	struct buf err;
	sqlite3_stmt *stmt[Q__COUNT];
	char last_bucket[BLOB_BUCKET_LEN + 1]; /* blob directory known to exist */
};

/* An address split into its parts; domain lower-cased, local as given. */
struct addr {
	char local[ADDR_LOCAL_MAX + 1]; /* "" for a catch-all */
	char domain[ADDR_DOMAIN_MAX + 1];
};

static const struct {
	const char *name;
	const char *special_use;
} default_mailboxes[] = {
    {INBOX, ""},
    {"Sent", "\\Sent"},
    {"Drafts", "\\Drafts"},
    {"Junk", "\\Junk"},
    {"Trash", "\\Trash"},
};

/* ---- errors ---- */

static void set_err(struct store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct store *st, const char *fmt, ...)
{
	va_list ap;
	buf_reset(&st->err);
	va_start(ap, fmt);
	buf_vprintf(&st->err, fmt, ap);
	va_end(ap);
}

/* Record an SQLite failure and map it to a store code. */
static int db_fail(struct store *st, int rc, const char *what)
{
	set_err(st, "%s: %s", what, sqlite3_errmsg(st->db));
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return STORE_BUSY;
	default:
		return STORE_ERR;
	}
}

static bool is_unique_violation(int rc)
{
	return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY;
}

const char *store_error(const struct store *st)
{
	return st ? buf_cstr(&st->err) : "no store";
}

const char *store_data_dir(const struct store *st)
{
	return st->data_dir;
}

/* ---- statements ---- */

/* The cached statement id, or a one-off copy if the cached one is running. */
static sqlite3_stmt *q_get(struct store *st, enum stmt_id id)
{
	sqlite3_stmt *s = st->stmt[id];
	if (s != NULL && !sqlite3_stmt_busy(s))
		return s;
	sqlite3_stmt *n = NULL;
	int rc = sqlite3_prepare_v3(
	    st->db, stmt_sql[id], -1, s == NULL ? SQLITE_PREPARE_PERSISTENT : 0, &n, NULL);
	if (rc != SQLITE_OK) {
		db_fail(st, rc, "prepare");
		sqlite3_finalize(n);
		return NULL;
	}
	if (s == NULL)
		st->stmt[id] = n;
	return n;
}

/* Give back a statement from q_get (reset if cached, finalized if not). */
static void q_done(struct store *st, enum stmt_id id, sqlite3_stmt *s)
{
	if (s == NULL)
		return;
	if (s == st->stmt[id]) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	} else {
		sqlite3_finalize(s);
	}
}

static void bind_str(sqlite3_stmt *s, int i, const char *v)
{
	sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_STATIC);
}

/* NULL stays NULL (an optional column) */
static void bind_str_null(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* Run a statement that returns no rows; an SQLite code. */
static int q_run(struct store *st, sqlite3_stmt *s)
{
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	else
		rc = sqlite3_extended_errcode(st->db);
	return rc;
}

/* Run a statement without parameters; a store code. */
static int q_simple(struct store *st, enum stmt_id id, const char *what)
{
	sqlite3_stmt *s = q_get(st, id);
	if (s == NULL)
		return STORE_ERR;
	int rc = q_run(st, s);
	int ret = rc == SQLITE_OK ? STORE_OK : db_fail(st, rc, what);
	q_done(st, id, s);
	return ret;
}

static int tx_begin(struct store *st)
{
	return q_simple(st, Q_BEGIN, "begin");
}

static int tx_commit(struct store *st)
{
	return q_simple(st, Q_COMMIT, "commit");
}

/* Roll back if a transaction is open; keeps the error already recorded. */
static void tx_rollback(struct store *st)
{
	if (sqlite3_get_autocommit(st->db))
		return;
	struct buf keep = st->err;
	buf_init(&st->err, 0);
	if (q_simple(st, Q_ROLLBACK, "rollback") != STORE_OK)
		log_err("-", "store rollback failed: %s", log_str(buf_cstr(&st->err)));
	buf_free(&st->err);
	st->err = keep;
}

/* ---- names ---- */

static bool bad_char(unsigned char c)
{
	return c <= 0x20 || c == 0x7f;
}

static bool domain_valid(const char *d, size_t n)
{
	if (n == 0 || n > ADDR_DOMAIN_MAX || d[0] == '.' || d[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (bad_char(c) || c == '@' || (c == '.' && i > 0 && d[i - 1] == '.'))
			return false;
	}
	return true;
}

/* Split "local@domain" (or "@domain" when catchall is allowed). */
static bool addr_parse(const char *s, struct addr *a, bool catchall)
{
	if (s == NULL)
		return false;
	const char *at = strchr(s, '@');
	if (at == NULL)
		return false;
	size_t nl = (size_t)(at - s);
	const char *dom = at + 1;
	size_t nd = strlen(dom);
	if ((nl == 0 && !catchall) || nl > ADDR_LOCAL_MAX || !domain_valid(dom, nd))
		return false;
	for (size_t i = 0; i < nl; i++)
		if (bad_char((unsigned char)s[i]))
			return false;
	memcpy(a->local, s, nl);
	a->local[nl] = '\0';
	memcpy(a->domain, dom, nd + 1);
	util_lower(a->domain);
	return true;
}

/* A domain alone, lower-cased into out (ADDR_DOMAIN_MAX + 1 bytes). */
static bool domain_parse(const char *d, char *out)
{
	if (d == NULL)
		return false;
	size_t n = strlen(d);
	if (!domain_valid(d, n))
		return false;
	memcpy(out, d, n + 1);
	util_lower(out);
	return true;
}

static bool blob_id_valid(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > BLOB_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* IMAP: INBOX is case-insensitive, every other name is taken as is. */
static const char *folder_name(const char *f)
{
	return (f == NULL || strcasecmp(f, INBOX) == 0) ? INBOX : f;
}

/* ---- open, migrations, close ---- */

static int pragma_int(struct store *st, const char *sql, int64_t *out)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int64(s, 0);
			rc = SQLITE_OK;
		} else {
			rc = sqlite3_extended_errcode(st->db);
		}
	}
	sqlite3_finalize(s);
	return rc == SQLITE_OK ? STORE_OK : db_fail(st, rc, sql);
}

static int exec_sql(struct store *st, const char *sql, const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		set_err(st, "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED ? STORE_BUSY
		                                                                  : STORE_ERR;
	}
	return STORE_OK;
}

/* Apply the missing migration steps, each in its own transaction. The
 * version is read again inside the transaction: another process may have
 * migrated meanwhile. */
static int migrate(struct store *st)
{
	int64_t v = 0;
	int rc = pragma_int(st, "PRAGMA user_version", &v);
	if (rc != STORE_OK)
		return rc;
	if (v > (int64_t)store_nmigrations) {
		set_err(st, "database schema version %lld is newer than this program knows (%zu)",
		    (long long)v, store_nmigrations);
		return STORE_ERR;
	}
	while (v < (int64_t)store_nmigrations) {
		if ((rc = tx_begin(st)) != STORE_OK)
			return rc;
		if ((rc = pragma_int(st, "PRAGMA user_version", &v)) != STORE_OK)
			goto fail;
		if (v >= (int64_t)store_nmigrations) {
			rc = tx_commit(st);
			goto out;
		}
		const struct store_migration *m = &store_migrations[v];
		if ((rc = exec_sql(st, m->sql, m->name)) != STORE_OK)
			goto fail;
		char set[64];
		snprintf(set, sizeof set, "PRAGMA user_version = %lld", (long long)v + 1);
		if ((rc = exec_sql(st, set, "user_version")) != STORE_OK)
			goto fail;
		if ((rc = tx_commit(st)) != STORE_OK)
			goto fail;
		log_info(
		    "-", "store migrated version=%lld step=%s", (long long)v + 1, log_str(m->name));
		v++;
	}
	return STORE_OK;
fail:
	tx_rollback(st);
out:
	return rc;
}

struct store *store_open(const char *data_dir, struct buf *err)
{
	struct buf path = BUF_INIT;
	struct store *st = NULL;
	if (data_dir == NULL || *data_dir == '\0') {
		if (err)
			buf_puts(err, "store: no data directory");
		return NULL;
	}
	st = calloc(1, sizeof *st);
	if (st == NULL || (st->data_dir = strdup(data_dir)) == NULL) {
		if (err)
			buf_puts(err, "store: out of memory");
		goto fail;
	}
	buf_init(&st->err, 4096);
	buf_printf(&path, "%s/blobs", data_dir);
	if (buf_err(&path) || util_mkdir_p(buf_cstr(&path), 0700) < 0) {
		if (err)
			buf_printf(
			    err, "store: cannot create %s: %s", buf_cstr(&path), strerror(errno));
		goto fail;
	}
	buf_reset(&path);
	buf_printf(&path, "%s/dakiya.db", data_dir);
	/* Create the file ourselves so that it is never world-readable (SQLite
	 * gives -wal and -shm the same mode). Only when it does not exist yet:
	 * close() on a descriptor of a database that another connection of this
	 * process has open drops all of the process's POSIX locks on it, and
	 * another process could then take the database for unused, checkpoint
	 * and delete the WAL under our feet (acknowledged commits lost). */
	int fd = open(buf_cstr(&path), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno != EEXIST) {
		if (err)
			buf_printf(
			    err, "store: cannot open %s: %s", buf_cstr(&path), strerror(errno));
		goto fail;
	}
	if (fd >= 0)
		close(fd);
	int rc = sqlite3_open_v2(buf_cstr(&path), &st->db,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (err)
			buf_printf(err, "store: cannot open %s: %s", buf_cstr(&path),
			    st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);

	sqlite3_stmt *s = NULL;
	rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
	if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
	    strcasecmp((const char *)sqlite3_column_text(s, 0), "wal") == 0)
		rc = SQLITE_OK;
	else
		rc = SQLITE_ERROR;
	if (rc != SQLITE_OK && err)
		buf_printf(err, "store: cannot switch %s to WAL: %s", buf_cstr(&path),
		    sqlite3_errmsg(st->db));
	sqlite3_finalize(s);
	if (rc != SQLITE_OK)
		goto fail;
	if (exec_sql(st, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", "pragma") !=
	        STORE_OK ||
	    migrate(st) != STORE_OK) {
		if (err)
			buf_printf(err, "store: %s: %s", buf_cstr(&path), buf_cstr(&st->err));
		goto fail;
	}
	buf_free(&path);
	return st;
fail:
	buf_free(&path);
	store_close(st);
	return NULL;
}

void store_close(struct store *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < Q__COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	if (st->db && sqlite3_close(st->db) != SQLITE_OK)
		log_err("-", "store close: %s", log_str(sqlite3_errmsg(st->db)));
	free(st->data_dir);
	buf_free(&st->err);
	free(st);
}

/* ---- domains ---- */

/* The id of a domain (lower case): STORE_OK, STORE_NOTFOUND, or an error. */
static int domain_id(struct store *st, const char *domain, int64_t *id)
{
	sqlite3_stmt *s = q_get(st, Q_DOMAIN_ID);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, domain);
	int rc = sqlite3_step(s), ret;
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(s, 0);
		ret = STORE_OK;
	} else if (rc == SQLITE_DONE) {
		ret = STORE_NOTFOUND;
	} else {
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "domain lookup");
	}
	q_done(st, Q_DOMAIN_ID, s);
	return ret;
}

int store_domain_add(struct store *st, const char *domain)
{
	char d[ADDR_DOMAIN_MAX + 1];
	if (!domain_parse(domain, d))
		return STORE_INVALID;
	sqlite3_stmt *s = q_get(st, Q_DOMAIN_ADD);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, d);
	sqlite3_bind_int64(s, 2, (int64_t)time(NULL));
	int rc = q_run(st, s), ret = STORE_OK;
	if (is_unique_violation(rc))
		ret = STORE_EXISTS;
	else if (rc != SQLITE_OK)
		ret = db_fail(st, rc, "domain add");
	q_done(st, Q_DOMAIN_ADD, s);
	return ret;
}

int store_domain_del(struct store *st, const char *domain)
{
	char d[ADDR_DOMAIN_MAX + 1];
	if (!domain_parse(domain, d))
		return STORE_INVALID;
	sqlite3_stmt *s = q_get(st, Q_DOMAIN_DEL);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, d);
	int rc = q_run(st, s), ret = STORE_OK;
	if (rc != SQLITE_OK)
		ret = db_fail(st, rc, "domain del");
	else if (sqlite3_changes(st->db) == 0)
		ret = STORE_NOTFOUND;
	q_done(st, Q_DOMAIN_DEL, s);
	return ret;
}

int store_domain_exists(struct store *st, const char *domain)
{
	char d[ADDR_DOMAIN_MAX + 1];
	int64_t id;
	if (!domain_parse(domain, d))
		return STORE_INVALID;
	return domain_id(st, d, &id);
}

int store_domain_list(struct store *st, void (*cb)(void *arg, const char *domain), void *arg)
{
	sqlite3_stmt *s = q_get(st, Q_DOMAIN_LIST);
	if (s == NULL)
		return STORE_ERR;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		cb(arg, (const char *)sqlite3_column_text(s, 0));
	int ret = rc == SQLITE_DONE ? STORE_OK
	                            : db_fail(st, sqlite3_extended_errcode(st->db), "domain list");
	q_done(st, Q_DOMAIN_LIST, s);
	return ret;
}

/* ---- users ---- */

/* After a lookup by address found nothing: NOTLOCAL or NOTFOUND. */
static int user_missing(struct store *st, const struct addr *a)
{
	int64_t id;
	int rc = domain_id(st, a->domain, &id);
	return rc == STORE_NOTFOUND ? STORE_NOTLOCAL : rc == STORE_OK ? STORE_NOTFOUND : rc;
}

static int64_t next_uidvalidity(struct store *st, int *ret)
{
	sqlite3_stmt *s = q_get(st, Q_UIDVALIDITY_NEXT);
	if (s == NULL) {
		*ret = STORE_ERR;
		return 0;
	}
	sqlite3_bind_int64(s, 1, (int64_t)time(NULL));
	int64_t v = 0;
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	else
		*ret = db_fail(st, sqlite3_extended_errcode(st->db), "uidvalidity");
	q_done(st, Q_UIDVALIDITY_NEXT, s);
	return v;
}

int store_user_add(struct store *st, const char *address, const char *pwhash)
{
	struct addr a;
	if (!addr_parse(address, &a, false) || pwhash == NULL)
		return STORE_INVALID;
	int ret = tx_begin(st);
	if (ret != STORE_OK)
		return ret;
	sqlite3_stmt *s = q_get(st, Q_USER_ADD);
	if (s == NULL) {
		ret = STORE_ERR;
		goto out;
	}
	bind_str(s, 1, a.local);
	bind_str(s, 2, a.domain);
	bind_str(s, 3, pwhash);
	sqlite3_bind_int64(s, 4, (int64_t)time(NULL));
	int64_t uid = 0;
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		uid = sqlite3_column_int64(s, 0);
		rc = sqlite3_step(s);
	}
	if (rc != SQLITE_DONE) {
		rc = sqlite3_extended_errcode(st->db);
		ret = is_unique_violation(rc) ? STORE_EXISTS : db_fail(st, rc, "user add");
	} else if (uid == 0) {
		ret = STORE_NOTLOCAL; /* no such domain: the SELECT gave no row */
	}
	q_done(st, Q_USER_ADD, s);
	for (size_t i = 0;
	     ret == STORE_OK && i < sizeof default_mailboxes / sizeof *default_mailboxes; i++) {
		int64_t uv = next_uidvalidity(st, &ret);
		if (ret != STORE_OK)
			break;
		if ((s = q_get(st, Q_MAILBOX_ADD)) == NULL) {
			ret = STORE_ERR;
			break;
		}
		sqlite3_bind_int64(s, 1, uid);
		bind_str(s, 2, default_mailboxes[i].name);
		bind_str(s, 3, default_mailboxes[i].special_use);
		sqlite3_bind_int64(s, 4, uv);
		if ((rc = q_run(st, s)) != SQLITE_OK)
			ret = db_fail(st, rc, "mailbox add");
		q_done(st, Q_MAILBOX_ADD, s);
	}
	if (ret == STORE_OK)
		ret = tx_commit(st);
out:
	if (ret != STORE_OK)
		tx_rollback(st);
	return ret;
}

/* Run an UPDATE/DELETE on one user (?1 local, ?2 domain, ?3 optional). */
static int user_change(
    struct store *st, enum stmt_id id, const char *address, const char *p3, const char *what)
{
	struct addr a;
	if (!addr_parse(address, &a, false))
		return STORE_INVALID;
	sqlite3_stmt *s = q_get(st, id);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, a.local);
	bind_str(s, 2, a.domain);
	if (p3 != NULL)
		bind_str(s, 3, p3);
	int rc = q_run(st, s), ret = STORE_OK;
	if (rc != SQLITE_OK)
		ret = db_fail(st, rc, what);
	else if (sqlite3_changes(st->db) == 0)
		ret = STORE_NOTFOUND;
	q_done(st, id, s);
	if (ret == STORE_NOTFOUND)
		ret = user_missing(st, &a);
	return ret;
}

int store_user_del(struct store *st, const char *address)
{
	return user_change(st, Q_USER_DEL, address, NULL, "user del");
}

int store_user_passwd(struct store *st, const char *address, const char *pwhash)
{
	if (pwhash == NULL)
		return STORE_INVALID;
	return user_change(st, Q_USER_PASSWD, address, pwhash, "user passwd");
}

int store_user_get_hash(struct store *st, const char *address, struct buf *out)
{
	struct addr a;
	if (!addr_parse(address, &a, false))
		return STORE_INVALID;
	sqlite3_stmt *s = q_get(st, Q_USER_HASH);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, a.local);
	bind_str(s, 2, a.domain);
	int rc = sqlite3_step(s), ret = STORE_OK;
	if (rc == SQLITE_ROW) {
		buf_reset(out);
		buf_append(out, sqlite3_column_text(s, 0), (size_t)sqlite3_column_bytes(s, 0));
		if (buf_err(out)) {
			set_err(st, "user hash: buffer full");
			ret = STORE_ERR;
		}
	} else if (rc == SQLITE_DONE) {
		ret = STORE_NOTFOUND;
	} else {
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "user hash");
	}
	q_done(st, Q_USER_HASH, s);
	if (ret == STORE_NOTFOUND)
		ret = user_missing(st, &a);
	return ret;
}

int store_user_canonical(struct store *st, const char *address, struct buf *out)
{
	struct addr a;
	if (!addr_parse(address, &a, false))
		return STORE_INVALID;
	sqlite3_stmt *s = q_get(st, Q_USER_CANON);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, a.local);
	bind_str(s, 2, a.domain);
	int rc = sqlite3_step(s), ret = STORE_OK;
	if (rc == SQLITE_ROW) {
		buf_reset(out);
		buf_printf(out, "%s@%s", (const char *)sqlite3_column_text(s, 0),
		    (const char *)sqlite3_column_text(s, 1));
		if (buf_err(out)) {
			set_err(st, "user canonical: buffer full");
			ret = STORE_ERR;
		}
	} else if (rc == SQLITE_DONE) {
		ret = STORE_NOTFOUND;
	} else {
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "user canonical");
	}
	q_done(st, Q_USER_CANON, s);
	if (ret == STORE_NOTFOUND)
		ret = user_missing(st, &a);
	return ret;
}

int store_user_list(
    struct store *st, const char *domain, void (*cb)(void *arg, const char *address), void *arg)
{
	char d[ADDR_DOMAIN_MAX + 1];
	if (domain != NULL && !domain_parse(domain, d))
		return STORE_INVALID;
	enum stmt_id id = domain ? Q_USER_LIST_DOMAIN : Q_USER_LIST_ALL;
	sqlite3_stmt *s = q_get(st, id);
	if (s == NULL)
		return STORE_ERR;
	if (domain != NULL)
		bind_str(s, 1, d);
	struct buf addr = BUF_INIT;
	int rc, ret = STORE_OK;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		buf_reset(&addr);
		buf_printf(&addr, "%s@%s", (const char *)sqlite3_column_text(s, 0),
		    (const char *)sqlite3_column_text(s, 1));
		if (buf_err(&addr)) {
			set_err(st, "user list: out of memory");
			ret = STORE_ERR;
			break;
		}
		cb(arg, buf_cstr(&addr));
	}
	if (ret == STORE_OK && rc != SQLITE_DONE)
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "user list");
	q_done(st, id, s);
	buf_free(&addr);
	return ret;
}

/* ---- aliases ---- */

/* Canonical alias target: local part as given, domain lower-cased. */
static bool target_canon(const char *target, char *out, size_t outsz)
{
	struct addr t;
	if (!addr_parse(target, &t, false))
		return false;
	int n = snprintf(out, outsz, "%s@%s", t.local, t.domain);
	return n > 0 && (size_t)n < outsz;
}

int store_alias_add(struct store *st, const char *address, const char *target)
{
	struct addr a;
	char t[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	if (!addr_parse(address, &a, true) || !target_canon(target, t, sizeof t))
		return STORE_INVALID;
	/* an alias of itself can only loop */
	char self[sizeof t];
	snprintf(self, sizeof self, "%s@%s", a.local, a.domain);
	if (util_streq_ci(self, t))
		return STORE_INVALID;
	sqlite3_stmt *s = q_get(st, Q_ALIAS_ADD);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, a.local);
	bind_str(s, 2, a.domain);
	bind_str(s, 3, t);
	int rc = q_run(st, s), ret = STORE_OK;
	if (is_unique_violation(rc))
		ret = STORE_EXISTS;
	else if (rc != SQLITE_OK)
		ret = db_fail(st, rc, "alias add");
	else if (sqlite3_changes(st->db) == 0)
		ret = STORE_NOTLOCAL;
	q_done(st, Q_ALIAS_ADD, s);
	return ret;
}

int store_alias_del(struct store *st, const char *address, const char *target)
{
	struct addr a;
	char t[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	if (!addr_parse(address, &a, true) || (target && !target_canon(target, t, sizeof t)))
		return STORE_INVALID;
	enum stmt_id id = target ? Q_ALIAS_DEL_ONE : Q_ALIAS_DEL_ALL;
	sqlite3_stmt *s = q_get(st, id);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, a.local);
	bind_str(s, 2, a.domain);
	if (target)
		bind_str(s, 3, t);
	int rc = q_run(st, s), ret = STORE_OK;
	if (rc != SQLITE_OK)
		ret = db_fail(st, rc, "alias del");
	else if (sqlite3_changes(st->db) == 0)
		ret = STORE_NOTFOUND;
	q_done(st, id, s);
	if (ret == STORE_NOTFOUND)
		ret = user_missing(st, &a);
	return ret;
}

int store_alias_list(struct store *st, const char *domain,
    void (*cb)(void *arg, const char *address, const char *target), void *arg)
{
	char d[ADDR_DOMAIN_MAX + 1];
	if (domain != NULL && !domain_parse(domain, d))
		return STORE_INVALID;
	enum stmt_id id = domain ? Q_ALIAS_LIST_DOMAIN : Q_ALIAS_LIST_ALL;
	sqlite3_stmt *s = q_get(st, id);
	if (s == NULL)
		return STORE_ERR;
	if (domain != NULL)
		bind_str(s, 1, d);
	struct buf addr = BUF_INIT;
	int rc, ret = STORE_OK;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		buf_reset(&addr);
		buf_printf(&addr, "%s@%s", (const char *)sqlite3_column_text(s, 0),
		    (const char *)sqlite3_column_text(s, 1));
		if (buf_err(&addr)) {
			set_err(st, "alias list: out of memory");
			ret = STORE_ERR;
			break;
		}
		cb(arg, buf_cstr(&addr), (const char *)sqlite3_column_text(s, 2));
	}
	if (ret == STORE_OK && rc != SQLITE_DONE)
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "alias list");
	q_done(st, id, s);
	buf_free(&addr);
	return ret;
}

/* ---- recipients ---- */

struct resolve {
	struct store *st;
	struct store_rcpt *out;
	/* addresses already expanded (loop and duplicate cut) */
	char **seen;
	size_t nseen, aseen;
};

static void rcpt_clear(struct store_rcpt *r)
{
	memset(r, 0, sizeof *r);
}

void store_rcpt_free(struct store_rcpt *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->users[i]);
	for (size_t i = 0; i < r->nremote; i++)
		free(r->remote[i]);
	rcpt_clear(r);
}

/* Add s to list (n entries, cap STORE_RCPT_MAX_TARGETS) unless it is there. */
static int list_add(struct resolve *rs, char **list, size_t *n, const char *s)
{
	for (size_t i = 0; i < *n; i++)
		if (util_streq_ci(list[i], s))
			return STORE_OK;
	if (*n >= STORE_RCPT_MAX_TARGETS) {
		set_err(
		    rs->st, "recipient expands to more than %d targets", STORE_RCPT_MAX_TARGETS);
		return STORE_ERR;
	}
	if ((list[*n] = strdup(s)) == NULL) {
		set_err(rs->st, "out of memory");
		return STORE_ERR;
	}
	(*n)++;
	return STORE_OK;
}

/* Remember addr as expanded; false if it already was. */
static int seen_add(struct resolve *rs, const char *addr, bool *fresh)
{
	for (size_t i = 0; i < rs->nseen; i++)
		if (util_streq_ci(rs->seen[i], addr)) {
			*fresh = false;
			return STORE_OK;
		}
	if (rs->nseen == rs->aseen) {
		size_t na = rs->aseen ? rs->aseen * 2 : 16;
		char **p = realloc(rs->seen, na * sizeof *p);
		if (p == NULL)
			goto oom;
		rs->seen = p;
		rs->aseen = na;
	}
	if ((rs->seen[rs->nseen] = strdup(addr)) == NULL)
		goto oom;
	rs->nseen++;
	*fresh = true;
	return STORE_OK;
oom:
	set_err(rs->st, "out of memory");
	return STORE_ERR;
}

/* The user's local part in stored case into out; STORE_OK or NOTFOUND. */
static int user_find(struct store *st, int64_t did, const char *local, char *out, size_t outsz)
{
	sqlite3_stmt *s = q_get(st, Q_USER_FIND);
	if (s == NULL)
		return STORE_ERR;
	sqlite3_bind_int64(s, 1, did);
	bind_str(s, 2, local);
	int rc = sqlite3_step(s), ret;
	if (rc == SQLITE_ROW) {
		snprintf(out, outsz, "%s", (const char *)sqlite3_column_text(s, 0));
		ret = STORE_OK;
	} else if (rc == SQLITE_DONE) {
		ret = STORE_NOTFOUND;
	} else {
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "user lookup");
	}
	q_done(st, Q_USER_FIND, s);
	return ret;
}

/* The targets of alias local@did (local "" = catch-all) as a malloc'ed
 * NULL-terminated array (NULL with STORE_NOTFOUND if there are none). */
static int alias_targets(struct store *st, int64_t did, const char *local, char ***out)
{
	*out = NULL;
	sqlite3_stmt *s = q_get(st, Q_ALIAS_TARGETS);
	if (s == NULL)
		return STORE_ERR;
	sqlite3_bind_int64(s, 1, did);
	bind_str(s, 2, local);
	char **v = NULL;
	size_t n = 0;
	int rc, ret = STORE_OK;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		char **p = realloc(v, (n + 2) * sizeof *v);
		if (p == NULL || (p[n] = strdup((const char *)sqlite3_column_text(s, 0))) == NULL) {
			v = p ? p : v;
			set_err(st, "out of memory");
			ret = STORE_ERR;
			break;
		}
		v = p;
		v[++n] = NULL;
	}
	if (ret == STORE_OK && rc != SQLITE_DONE)
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "alias lookup");
	q_done(st, Q_ALIAS_TARGETS, s);
	if (ret != STORE_OK || n == 0) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return ret != STORE_OK ? ret : STORE_NOTFOUND;
	}
	*out = v;
	return STORE_OK;
}

static int resolve_addr(struct resolve *rs, const char *local, const char *domain, int depth);

/* Expand every target of an alias one level deeper. */
static int expand_targets(struct resolve *rs, char **targets, int depth)
{
	int ret = STORE_OK;
	for (size_t i = 0; targets[i] != NULL && ret == STORE_OK; i++) {
		struct addr t;
		if (depth + 1 > STORE_ALIAS_DEPTH) {
			log_warn(
			    "-", "alias expansion too deep, cut target=%s", log_str(targets[i]));
			break;
		}
		if (!addr_parse(targets[i], &t, false)) {
			log_warn(
			    "-", "alias target invalid, skipped target=%s", log_str(targets[i]));
			continue;
		}
		ret = resolve_addr(rs, t.local, t.domain, depth + 1);
		if (ret == STORE_NOTFOUND)
			ret = STORE_OK; /* a dangling target: the others still count */
	}
	for (size_t i = 0; targets[i] != NULL; i++)
		free(targets[i]);
	free(targets);
	return ret;
}

/* Try user, then alias, for one local part of domain did. STORE_NOTFOUND if
 * neither exists. */
static int resolve_local(
    struct resolve *rs, int64_t did, const char *local, const char *domain, int depth)
{
	char canon[ADDR_LOCAL_MAX + 1];
	int ret = user_find(rs->st, did, local, canon, sizeof canon);
	if (ret == STORE_OK) {
		char addr[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
		snprintf(addr, sizeof addr, "%s@%s", canon, domain);
		return list_add(rs, rs->out->users, &rs->out->n, addr);
	}
	if (ret != STORE_NOTFOUND)
		return ret;
	char **targets;
	if ((ret = alias_targets(rs->st, did, local, &targets)) != STORE_OK)
		return ret;
	return expand_targets(rs, targets, depth);
}

/* Resolve local@domain (domain lower-case) into rs->out. */
static int resolve_addr(struct resolve *rs, const char *local, const char *domain, int depth)
{
	char addr[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	snprintf(addr, sizeof addr, "%s@%s", local, domain);
	int64_t did;
	int ret = domain_id(rs->st, domain, &did);
	if (ret == STORE_NOTFOUND) {
		if (depth == 0)
			return STORE_NOTLOCAL;
		return list_add(rs, rs->out->remote, &rs->out->nremote, addr);
	}
	if (ret != STORE_OK)
		return ret;
	bool fresh;
	if ((ret = seen_add(rs, addr, &fresh)) != STORE_OK)
		return ret;
	if (!fresh)
		return STORE_OK; /* loop or duplicate: cut */

	ret = resolve_local(rs, did, local, domain, depth);
	if (ret != STORE_NOTFOUND)
		return ret;
	const char *plus = strchr(local, '+');
	if (plus != NULL && plus > local) {
		char base[ADDR_LOCAL_MAX + 1];
		snprintf(base, sizeof base, "%.*s", (int)(plus - local), local);
		ret = resolve_local(rs, did, base, domain, depth);
		if (ret != STORE_NOTFOUND)
			return ret;
	}
	char **targets;
	if ((ret = alias_targets(rs->st, did, "", &targets)) != STORE_OK)
		return ret;
	return expand_targets(rs, targets, depth);
}

int store_resolve_rcpt(
    struct store *st, const char *local, const char *domain, struct store_rcpt *out)
{
	rcpt_clear(out);
	char d[ADDR_DOMAIN_MAX + 1];
	size_t nl = local ? strlen(local) : 0;
	if (nl == 0 || nl > ADDR_LOCAL_MAX || strchr(local, '@') || !domain_parse(domain, d))
		return STORE_INVALID;
	for (size_t i = 0; i < nl; i++)
		if (bad_char((unsigned char)local[i]))
			return STORE_INVALID;
	/* one read transaction: each statement on its own would take and drop
	 * the WAL read lock (fcntl calls), which was most of the cost */
	bool tx = sqlite3_get_autocommit(st->db);
	if (tx && q_simple(st, Q_BEGIN_READ, "begin") != STORE_OK)
		return STORE_ERR;
	struct resolve rs = {.st = st, .out = out};
	int ret = resolve_addr(&rs, local, d, 0);
	if (tx && q_simple(st, Q_COMMIT, "commit") != STORE_OK) {
		tx_rollback(st);
		if (ret == STORE_OK)
			ret = STORE_ERR;
	}
	for (size_t i = 0; i < rs.nseen; i++)
		free(rs.seen[i]);
	free(rs.seen);
	if (ret == STORE_OK && out->n == 0 && out->nremote == 0)
		ret = STORE_NOTFOUND; /* only loops or dangling targets */
	if (ret != STORE_OK)
		store_rcpt_free(out);
	return ret;
}

/* ---- sender ownership ---- */

/* Who gets mail for local@did at its first step (user first, then alias):
 * *decided is set if local is a user or an alias, and the result says
 * whether user (canonical "local@domain") is that user or a direct target. */
static int owns_local(struct store *st, int64_t did, const char *local, const char *domain,
    const char *user, bool *decided)
{
	char canon[ADDR_LOCAL_MAX + 1], addr[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	*decided = false;
	int ret = user_find(st, did, local, canon, sizeof canon);
	if (ret == STORE_OK) {
		*decided = true;
		snprintf(addr, sizeof addr, "%s@%s", canon, domain);
		return util_streq_ci(addr, user) ? STORE_OK : STORE_NOTFOUND;
	}
	if (ret != STORE_NOTFOUND)
		return ret;
	char **targets;
	if ((ret = alias_targets(st, did, local, &targets)) != STORE_OK)
		return ret;
	*decided = true;
	ret = STORE_NOTFOUND;
	for (size_t i = 0; targets[i] != NULL; i++) {
		if (util_streq_ci(targets[i], user))
			ret = STORE_OK;
		free(targets[i]);
	}
	free(targets);
	return ret;
}

static int user_owns(struct store *st, const struct addr *u, const struct addr *a)
{
	int64_t did;
	char canon[ADDR_LOCAL_MAX + 1], user[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 2];
	int ret = domain_id(st, u->domain, &did);
	if (ret == STORE_OK)
		ret = user_find(st, did, u->local, canon, sizeof canon);
	if (ret != STORE_OK)
		return ret;
	snprintf(user, sizeof user, "%s@%s", canon, u->domain);
	if ((ret = domain_id(st, a->domain, &did)) != STORE_OK)
		return ret;
	bool decided;
	ret = owns_local(st, did, a->local, a->domain, user, &decided);
	if (decided || ret != STORE_NOTFOUND)
		return ret;
	const char *plus = strchr(a->local, '+');
	if (plus == NULL || plus == a->local)
		return STORE_NOTFOUND;
	char base[ADDR_LOCAL_MAX + 1];
	snprintf(base, sizeof base, "%.*s", (int)(plus - a->local), a->local);
	return owns_local(st, did, base, a->domain, user, &decided);
}

int store_user_owns(struct store *st, const char *user, const char *address)
{
	struct addr u, a;
	if (!addr_parse(user, &u, false) || !addr_parse(address, &a, false))
		return STORE_INVALID;
	/* one read transaction, as in store_resolve_rcpt */
	bool tx = sqlite3_get_autocommit(st->db);
	if (tx && q_simple(st, Q_BEGIN_READ, "begin") != STORE_OK)
		return STORE_ERR;
	int ret = user_owns(st, &u, &a);
	if (tx && q_simple(st, Q_COMMIT, "commit") != STORE_OK) {
		tx_rollback(st);
		if (ret == STORE_OK || ret == STORE_NOTFOUND)
			ret = STORE_ERR;
	}
	return ret;
}

/* ---- blobs ---- */

static int blob_dir(struct store *st, const char *id, struct buf *dir, bool create)
{
	if (!blob_id_valid(id))
		return STORE_INVALID;
	size_t n = strlen(id);
	int bl = (int)(n < BLOB_BUCKET_LEN ? n : BLOB_BUCKET_LEN);
	buf_reset(dir);
	buf_printf(dir, "%s/blobs/%.*s", st->data_dir, bl, id);
	if (buf_err(dir)) {
		set_err(st, "blob path: buffer full");
		return STORE_ERR;
	}
	bool cached = strncmp(st->last_bucket, id, (size_t)bl) == 0 && st->last_bucket[bl] == '\0';
	if (!create || cached)
		return STORE_OK;
	if (mkdir(buf_cstr(dir), 0700) == 0) {
		/* a new directory entry in blobs/ must survive a crash too */
		struct buf parent = BUF_INIT;
		buf_printf(&parent, "%s/blobs", st->data_dir);
		int r = buf_err(&parent) ? -1 : util_fsync_dir(buf_cstr(&parent));
		buf_free(&parent);
		if (r < 0) {
			set_err(st, "fsync %s/blobs: %s", st->data_dir, strerror(errno));
			return STORE_ERR;
		}
	} else if (errno != EEXIST) {
		set_err(st, "mkdir %s: %s", buf_cstr(dir), strerror(errno));
		return STORE_ERR;
	}
	snprintf(st->last_bucket, sizeof st->last_bucket, "%.*s", bl, id);
	return STORE_OK;
}

int store_blob_dir(struct store *st, const char *id, struct buf *dir)
{
	return blob_dir(st, id, dir, true);
}

static int blob_path(struct store *st, const char *id, struct buf *path, bool create)
{
	int ret = blob_dir(st, id, path, create);
	if (ret != STORE_OK)
		return ret;
	buf_printf(path, "/%s", id);
	if (buf_err(path)) {
		set_err(st, "blob path: buffer full");
		return STORE_ERR;
	}
	return STORE_OK;
}

int store_blob_path(struct store *st, const char *id, struct buf *path)
{
	return blob_path(st, id, path, true);
}

/* ---- events ---- */

static int event_add(struct store *st, const char *qid, int64_t ms, const char *kind,
    const char *rcpt, const char *text)
{
	sqlite3_stmt *s = q_get(st, Q_EVENT_ADD);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, qid);
	sqlite3_bind_int64(s, 2, ms);
	bind_str(s, 3, kind);
	bind_str(s, 4, rcpt);
	bind_str(s, 5, text);
	int rc = q_run(st, s);
	q_done(st, Q_EVENT_ADD, s);
	return rc == SQLITE_OK ? STORE_OK : db_fail(st, rc, "event add");
}

int store_event_add(
    struct store *st, const char *queue_id, const char *kind, const char *rcpt, const char *text)
{
	if (queue_id == NULL || *queue_id == '\0' || kind == NULL || *kind == '\0')
		return STORE_INVALID;
	return event_add(st, queue_id, util_now_ms(), kind, rcpt, text);
}

int store_event_list(struct store *st, const char *queue_id,
    void (*cb)(void *arg, int64_t time_ms, const char *kind, const char *rcpt, const char *text),
    void *arg)
{
	if (queue_id == NULL)
		return STORE_INVALID;
	sqlite3_stmt *s = q_get(st, Q_EVENT_LIST);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, queue_id);
	int rc, n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		n++;
		cb(arg, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1),
		    (const char *)sqlite3_column_text(s, 2),
		    (const char *)sqlite3_column_text(s, 3));
	}
	int ret = rc == SQLITE_DONE ? (n ? STORE_OK : STORE_NOTFOUND)
	                            : db_fail(st, sqlite3_extended_errcode(st->db), "event list");
	q_done(st, Q_EVENT_LIST, s);
	return ret;
}

/* ---- delivery ---- */

/* Take the next UID and MODSEQ of a user's folder. STORE_NOTFOUND if the
 * user has no such folder. */
static int mailbox_alloc(struct store *st, const struct addr *a, const char *folder, int64_t *mbox,
    int64_t *uid, int64_t *modseq)
{
	sqlite3_stmt *s = q_get(st, Q_MAILBOX_ALLOC);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, a->local);
	bind_str(s, 2, a->domain);
	bind_str(s, 3, folder);
	int rc = sqlite3_step(s), ret = STORE_OK;
	if (rc == SQLITE_ROW) {
		*mbox = sqlite3_column_int64(s, 0);
		*uid = sqlite3_column_int64(s, 1);
		*modseq = sqlite3_column_int64(s, 2);
		rc = sqlite3_step(s);
	} else if (rc == SQLITE_DONE) {
		ret = STORE_NOTFOUND;
	}
	if (rc != SQLITE_DONE)
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "mailbox uid");
	q_done(st, Q_MAILBOX_ALLOC, s);
	return ret;
}

static int message_add(
    struct store *st, const struct store_delivery *d, int64_t mbox, int64_t uid, int64_t modseq)
{
	sqlite3_stmt *s = q_get(st, Q_MESSAGE_ADD);
	if (s == NULL)
		return STORE_ERR;
	sqlite3_bind_int64(s, 1, mbox);
	sqlite3_bind_int64(s, 2, uid);
	sqlite3_bind_int64(s, 3, modseq);
	bind_str(s, 4, d->blob);
	sqlite3_bind_int64(s, 5, (int64_t)d->size);
	sqlite3_bind_int64(s, 6, (int64_t)d->internal_date);
	bind_str(s, 7, d->message_id);
	bind_str(s, 8, d->from);
	bind_str(s, 9, d->subject);
	bind_str(s, 10, d->date);
	bind_str(s, 11, d->mail_from);
	int rc = q_run(st, s);
	q_done(st, Q_MESSAGE_ADD, s);
	return rc == SQLITE_OK ? STORE_OK : db_fail(st, rc, "message add");
}

/* Insert a row with parameters (?1 text, ?2 int64, ?3 int64) or (?1, ?2 text). */
static int insert3(
    struct store *st, enum stmt_id id, const char *s1, int64_t i2, int64_t i3, const char *what)
{
	sqlite3_stmt *s = q_get(st, id);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, s1);
	sqlite3_bind_int64(s, 2, i2);
	sqlite3_bind_int64(s, 3, i3);
	int rc = q_run(st, s);
	q_done(st, id, s);
	return rc == SQLITE_OK ? STORE_OK : db_fail(st, rc, what);
}

static int queue_add(struct store *st, const struct store_delivery *d, int64_t now, int64_t ms)
{
	sqlite3_stmt *s = q_get(st, Q_QUEUE_ADD);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, d->blob);
	bind_str(s, 2, d->mail_from);
	sqlite3_bind_int64(s, 3, (int64_t)d->size);
	sqlite3_bind_int64(s, 4, now);
	bind_str_null(s, 5, d->envid);
	bind_str_null(s, 6, d->ret);
	int rc = q_run(st, s);
	q_done(st, Q_QUEUE_ADD, s);
	if (rc != SQLITE_OK)
		return db_fail(st, rc, "queue add");
	for (size_t i = 0; i < d->nremote; i++) {
		if ((s = q_get(st, Q_QUEUE_RCPT_ADD)) == NULL)
			return STORE_ERR;
		bind_str(s, 1, d->blob);
		bind_str(s, 2, d->remote[i]);
		bind_str_null(s, 3, d->remote_notify ? d->remote_notify[i] : NULL);
		bind_str_null(s, 4, d->remote_orcpt ? d->remote_orcpt[i] : NULL);
		rc = q_run(st, s);
		q_done(st, Q_QUEUE_RCPT_ADD, s);
		if (rc != SQLITE_OK)
			return db_fail(st, rc, "queue rcpt add");
		int ret = event_add(st, d->blob, ms, "queued", d->remote[i], "");
		if (ret != STORE_OK)
			return ret;
	}
	return STORE_OK;
}

/* ---- DKIM keys ---- */

static bool selector_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '-' || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '-' && c != '_' && !(c == '.' && s[i + 1] != '.'))
			return false;
	}
	return true;
}

int store_dkim_add(struct store *st, const char *domain, const char *selector,
    const char *algorithm, const char *record, bool active)
{
	char d[ADDR_DOMAIN_MAX + 1];
	if (!domain_parse(domain, d) || !selector_ok(selector))
		return STORE_INVALID;
	sqlite3_stmt *s = q_get(st, Q_DKIM_ADD);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, d);
	bind_str(s, 2, selector);
	bind_str(s, 3, algorithm);
	bind_str(s, 4, record);
	sqlite3_bind_int64(s, 5, (int64_t)time(NULL));
	sqlite3_bind_int(s, 6, active);
	int rc = q_run(st, s), ret = STORE_OK;
	if (is_unique_violation(rc))
		ret = STORE_EXISTS;
	else if (rc != SQLITE_OK)
		ret = db_fail(st, rc, "dkim key add");
	else if (sqlite3_changes(st->db) == 0)
		ret = STORE_NOTLOCAL;
	q_done(st, Q_DKIM_ADD, s);
	return ret;
}

/* The domain as stored (lower case) into d, if it is one of ours:
 * STORE_OK, STORE_INVALID or STORE_NOTLOCAL. */
static int our_domain(struct store *st, const char *domain, char d[ADDR_DOMAIN_MAX + 1])
{
	if (!domain_parse(domain, d))
		return STORE_INVALID;
	int64_t id;
	int ret = domain_id(st, d, &id);
	return ret == STORE_NOTFOUND ? STORE_NOTLOCAL : ret;
}

/* Q_DKIM_DEL or Q_DKIM_ACTIVATE for (domain, selector). */
static int dkim_change(struct store *st, enum stmt_id q, const char *domain, const char *selector)
{
	char d[ADDR_DOMAIN_MAX + 1];
	int ret = our_domain(st, domain, d);
	if (ret != STORE_OK)
		return ret;
	sqlite3_stmt *s = q_get(st, q);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, d);
	bind_str(s, 2, selector);
	int rc = q_run(st, s);
	if (rc != SQLITE_OK)
		ret = db_fail(st, rc, "dkim key change");
	else if (sqlite3_changes(st->db) == 0)
		ret = STORE_NOTFOUND;
	q_done(st, q, s);
	return ret;
}

int store_dkim_del(struct store *st, const char *domain, const char *selector)
{
	return dkim_change(st, Q_DKIM_DEL, domain, selector);
}

int store_dkim_activate(struct store *st, const char *domain, const char *selector)
{
	return dkim_change(st, Q_DKIM_ACTIVATE, domain, selector);
}

int store_dkim_list(struct store *st, const char *domain,
    void (*cb)(void *arg, const struct store_dkim_key *k), void *arg)
{
	char d[ADDR_DOMAIN_MAX + 1];
	int ret = our_domain(st, domain, d);
	if (ret != STORE_OK)
		return ret;
	sqlite3_stmt *s = q_get(st, Q_DKIM_LIST);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, d);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_dkim_key k = {
		    .selector = (const char *)sqlite3_column_text(s, 0),
		    .algorithm = (const char *)sqlite3_column_text(s, 1),
		    .record = (const char *)sqlite3_column_text(s, 2),
		    .created = (time_t)sqlite3_column_int64(s, 3),
		    .signing = sqlite3_column_int(s, 4) != 0,
		    .active = sqlite3_column_int(s, 5) != 0,
		};
		cb(arg, &k);
	}
	ret = rc == SQLITE_DONE ? STORE_OK
	                        : db_fail(st, sqlite3_extended_errcode(st->db), "dkim list");
	q_done(st, Q_DKIM_LIST, s);
	return ret;
}

int store_dkim_path(struct store *st, const char *domain, const char *selector, struct buf *path)
{
	char d[ADDR_DOMAIN_MAX + 1];
	if (!domain_parse(domain, d) || !selector_ok(selector))
		return STORE_INVALID;
	buf_reset(path);
	buf_printf(path, "%s/dkim/%s/%s.pem", st->data_dir, d, selector);
	return buf_err(path) ? STORE_ERR : STORE_OK;
}

/* ---- DMARC results ---- */

static int dmarc_insert(struct store *st, const struct store_dmarc_row *r)
{
	sqlite3_stmt *s = q_get(st, Q_DMARC_ADD);
	if (s == NULL)
		return STORE_ERR;
	sqlite3_bind_int64(s, 1, r->time);
	bind_str(s, 2, r->queue_id);
	bind_str(s, 3, r->source_ip);
	bind_str(s, 4, r->header_from);
	bind_str(s, 5, r->envelope_from);
	bind_str(s, 6, r->policy_domain);
	bind_str(s, 7, r->policy);
	bind_str(s, 8, r->disposition);
	bind_str(s, 9, r->dmarc);
	bind_str(s, 10, r->spf);
	sqlite3_bind_int(s, 11, r->spf_aligned);
	bind_str(s, 12, r->dkim);
	sqlite3_bind_int(s, 13, r->dkim_aligned);
	bind_str(s, 14, r->rua);
	int rc = q_run(st, s);
	q_done(st, Q_DMARC_ADD, s);
	return rc == SQLITE_OK ? STORE_OK : db_fail(st, rc, "dmarc add");
}

int store_dmarc_add(struct store *st, const struct store_dmarc_row *r)
{
	return dmarc_insert(st, r);
}

int store_dmarc_list(struct store *st, const char *policy_domain, int64_t since,
    void (*cb)(void *arg, const struct store_dmarc_row *r), void *arg)
{
	sqlite3_stmt *s = q_get(st, Q_DMARC_LIST);
	if (s == NULL)
		return STORE_ERR;
	bind_str_null(s, 1, policy_domain);
	sqlite3_bind_int64(s, 2, since);
	int rc;
#define COL(i) ((const char *)sqlite3_column_text(s, i))
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_dmarc_row r = {
		    .time = sqlite3_column_int64(s, 0),
		    .queue_id = COL(1),
		    .source_ip = COL(2),
		    .header_from = COL(3),
		    .envelope_from = COL(4),
		    .policy_domain = COL(5),
		    .policy = COL(6),
		    .disposition = COL(7),
		    .dmarc = COL(8),
		    .spf = COL(9),
		    .spf_aligned = sqlite3_column_int(s, 10) != 0,
		    .dkim = COL(11),
		    .dkim_aligned = sqlite3_column_int(s, 12) != 0,
		    .rua = COL(13),
		};
		cb(arg, &r);
	}
#undef COL
	int ret = rc == SQLITE_DONE ? STORE_OK
	                            : db_fail(st, sqlite3_extended_errcode(st->db), "dmarc list");
	q_done(st, Q_DMARC_LIST, s);
	return ret;
}

/* Deliver one message to its users and queue; inside the batch transaction. */
static int deliver_one(struct store *st, const struct store_delivery *d, int64_t now, int64_t ms)
{
	int ret = insert3(st, Q_BLOB_ADD, d->blob, (int64_t)d->size, now, "blob add");
	char text[64 + ADDR_LOCAL_MAX];
	for (size_t i = 0; ret == STORE_OK && i < d->nusers; i++) {
		struct addr a;
		addr_parse(d->users[i], &a, false); /* checked by the caller */
		const char *want = folder_name(d->folders ? d->folders[i] : NULL);
		const char *folder = want;
		int64_t mbox, uid, modseq;
		ret = mailbox_alloc(st, &a, folder, &mbox, &uid, &modseq);
		if (ret == STORE_NOTFOUND && strcmp(folder, INBOX) != 0) {
			folder = INBOX;
			ret = mailbox_alloc(st, &a, folder, &mbox, &uid, &modseq);
		}
		if (ret == STORE_NOTFOUND) {
			/* deleted since RCPT: failing the batch would fail everyone */
			log_warn(d->blob, "store: no mailbox, message dropped rcpt=%s",
			    log_str(d->users[i]));
			ret =
			    event_add(st, d->blob, ms, "dropped", d->users[i], "reason=no-mailbox");
			if (d->dropped)
				d->dropped[i] = true;
			continue;
		}
		if (ret == STORE_OK)
			ret = message_add(st, d, mbox, uid, modseq);
		if (ret == STORE_OK) {
			snprintf(text, sizeof text, "uid=%lld modseq=%lld", (long long)uid,
			    (long long)modseq);
			ret = event_add(st, d->blob, ms, "stored", d->users[i], text);
		}
	}
	if (ret == STORE_OK && d->nremote > 0)
		ret = queue_add(st, d, now, ms);
	if (ret == STORE_OK && d->dmarc != NULL)
		ret = dmarc_insert(st, d->dmarc);
	return ret;
}

int store_deliver_batch(struct store *st, const struct store_delivery *d, size_t n)
{
	/* check everything before taking the write lock */
	for (size_t i = 0; i < n; i++) {
		struct addr a;
		if (!blob_id_valid(d[i].blob) || (d[i].nusers > 0 && d[i].users == NULL) ||
		    (d[i].nremote > 0 && d[i].remote == NULL)) {
			set_err(st, "deliver: invalid delivery %zu", i);
			return STORE_INVALID;
		}
		for (size_t j = 0; j < d[i].nusers; j++)
			if (!addr_parse(d[i].users[j], &a, false)) {
				set_err(st, "deliver: invalid user %s", d[i].users[j]);
				return STORE_INVALID;
			}
		for (size_t j = 0; j < d[i].nremote; j++)
			if (d[i].remote[j] == NULL || *d[i].remote[j] == '\0') {
				set_err(st, "deliver: empty remote recipient");
				return STORE_INVALID;
			}
	}
	if (n == 0)
		return STORE_OK;
	for (size_t i = 0; i < n; i++)
		if (d[i].dropped)
			memset(d[i].dropped, 0, d[i].nusers * sizeof *d[i].dropped);
	int ret = tx_begin(st);
	if (ret != STORE_OK)
		return ret;
	int64_t now = (int64_t)time(NULL), ms = util_now_ms();
	for (size_t i = 0; ret == STORE_OK && i < n; i++)
		ret = deliver_one(st, &d[i], now, ms);
	if (ret == STORE_OK)
		ret = tx_commit(st);
	if (ret != STORE_OK)
		tx_rollback(st);
	return ret;
}

/* ---- reading mailboxes ---- */

static int mailbox_id(struct store *st, const char *address, const char *folder, int64_t *id)
{
	struct addr a;
	if (!addr_parse(address, &a, false))
		return STORE_INVALID;
	sqlite3_stmt *s = q_get(st, Q_MAILBOX_ID);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, a.local);
	bind_str(s, 2, a.domain);
	bind_str(s, 3, folder_name(folder));
	int rc = sqlite3_step(s), ret = STORE_OK;
	if (rc == SQLITE_ROW)
		*id = sqlite3_column_int64(s, 0);
	else if (rc == SQLITE_DONE)
		ret = STORE_NOTFOUND;
	else
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "mailbox lookup");
	q_done(st, Q_MAILBOX_ID, s);
	return ret;
}

static const char *col_str(sqlite3_stmt *s, int i)
{
	const char *v = (const char *)sqlite3_column_text(s, i);
	return v ? v : "";
}

int store_mailbox_list(struct store *st, const char *address, const char *folder,
    void (*cb)(void *arg, const struct store_msginfo *m), void *arg)
{
	int64_t mbox;
	int ret = mailbox_id(st, address, folder, &mbox);
	if (ret != STORE_OK)
		return ret;
	sqlite3_stmt *s = q_get(st, Q_MESSAGE_LIST);
	if (s == NULL)
		return STORE_ERR;
	sqlite3_bind_int64(s, 1, mbox);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_msginfo m = {
		    .uid = (uint32_t)sqlite3_column_int64(s, 0),
		    .modseq = (uint64_t)sqlite3_column_int64(s, 1),
		    .size = (uint64_t)sqlite3_column_int64(s, 2),
		    .internal_date = (time_t)sqlite3_column_int64(s, 3),
		    .flags = (unsigned)sqlite3_column_int64(s, 4),
		    .keywords = col_str(s, 5),
		    .blob = col_str(s, 6),
		    .message_id = col_str(s, 7),
		    .from = col_str(s, 8),
		    .subject = col_str(s, 9),
		    .date = col_str(s, 10),
		};
		cb(arg, &m);
	}
	ret = rc == SQLITE_DONE ? STORE_OK
	                        : db_fail(st, sqlite3_extended_errcode(st->db), "mailbox list");
	q_done(st, Q_MESSAGE_LIST, s);
	return ret;
}

int store_message_path(
    struct store *st, const char *address, const char *folder, uint32_t uid, struct buf *path)
{
	int64_t mbox;
	int ret = mailbox_id(st, address, folder, &mbox);
	if (ret != STORE_OK)
		return ret;
	sqlite3_stmt *s = q_get(st, Q_MESSAGE_BLOB);
	if (s == NULL)
		return STORE_ERR;
	sqlite3_bind_int64(s, 1, mbox);
	sqlite3_bind_int64(s, 2, (int64_t)uid);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		ret = blob_path(st, col_str(s, 0), path, false);
	else if (rc == SQLITE_DONE)
		ret = STORE_NOTFOUND;
	else
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "message lookup");
	q_done(st, Q_MESSAGE_BLOB, s);
	return ret;
}

int store_folder_list(struct store *st, const char *address,
    void (*cb)(void *arg, const char *name, const char *special_use, uint32_t uidvalidity,
        uint32_t uidnext),
    void *arg)
{
	struct addr a;
	if (!addr_parse(address, &a, false))
		return STORE_INVALID;
	sqlite3_stmt *s = q_get(st, Q_FOLDER_LIST);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, a.local);
	bind_str(s, 2, a.domain);
	int rc, n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		n++;
		cb(arg, col_str(s, 0), col_str(s, 1), (uint32_t)sqlite3_column_int64(s, 2),
		    (uint32_t)sqlite3_column_int64(s, 3));
	}
	int ret = rc == SQLITE_DONE ? STORE_OK
	                            : db_fail(st, sqlite3_extended_errcode(st->db), "folder list");
	q_done(st, Q_FOLDER_LIST, s);
	if (ret == STORE_OK && n == 0)
		ret = user_missing(st, &a);
	return ret;
}

/* ---- the outbound queue ---- */

/* One entry being collected from the rows of Q_QUEUE_LIST/GET. */
struct qacc {
	struct store_queue_entry e;
	char *id, *sender, *last_error;
	struct store_queue_rcpt *r;
	size_t nr, ar;
};

static void qacc_clear(struct qacc *a)
{
	free(a->id);
	free(a->sender);
	free(a->last_error);
	for (size_t i = 0; i < a->nr; i++) {
		free((char *)a->r[i].rcpt);
		free((char *)a->r[i].status);
		free((char *)a->r[i].last_reply);
	}
	a->id = a->sender = a->last_error = NULL;
	a->nr = 0;
}

static char *col_dup(sqlite3_stmt *s, int i)
{
	const char *v = (const char *)sqlite3_column_text(s, i);
	return strdup(v ? v : "");
}

/* Start a new entry from row s; false if out of memory. */
static bool qacc_start(struct qacc *a, sqlite3_stmt *s)
{
	qacc_clear(a);
	a->id = col_dup(s, 0);
	a->sender = col_dup(s, 1);
	a->last_error = col_dup(s, 6);
	a->e.id = a->id;
	a->e.sender = a->sender;
	a->e.size = (uint64_t)sqlite3_column_int64(s, 2);
	a->e.created = (time_t)sqlite3_column_int64(s, 3);
	a->e.next_attempt = (time_t)sqlite3_column_int64(s, 4);
	a->e.attempts = sqlite3_column_int64(s, 5);
	a->e.last_error = a->last_error;
	a->e.held = sqlite3_column_int(s, 7) != 0;
	return a->id && a->sender && a->last_error;
}

/* Add row s's recipient (none with a LEFT JOIN miss); false if out of memory. */
static bool qacc_rcpt(struct qacc *a, sqlite3_stmt *s)
{
	if (sqlite3_column_type(s, 8) == SQLITE_NULL)
		return true;
	if (a->nr == a->ar) {
		size_t na = a->ar ? a->ar * 2 : 8;
		struct store_queue_rcpt *p = realloc(a->r, na * sizeof *p);
		if (p == NULL)
			return false;
		a->r = p;
		a->ar = na;
	}
	struct store_queue_rcpt *r = &a->r[a->nr++];
	r->rcpt = col_dup(s, 8);
	r->status = col_dup(s, 9);
	r->attempts = sqlite3_column_int64(s, 10);
	r->last_reply = col_dup(s, 11);
	return r->rcpt && r->status && r->last_reply;
}

static void qacc_emit(
    struct qacc *a, void (*cb)(void *, const struct store_queue_entry *), void *arg)
{
	a->e.rcpts = a->r;
	a->e.nrcpts = a->nr;
	cb(arg, &a->e);
}

/* Run Q_QUEUE_LIST or Q_QUEUE_GET (id) in one read transaction and call cb
 * once per entry. STORE_NOTFOUND if there was none. */
static int queue_iter(struct store *st, enum stmt_id qid, const char *id,
    void (*cb)(void *arg, const struct store_queue_entry *e), void *arg)
{
	bool tx = sqlite3_get_autocommit(st->db);
	if (tx && q_simple(st, Q_BEGIN_READ, "begin") != STORE_OK)
		return STORE_ERR;
	struct qacc a;
	memset(&a, 0, sizeof a);
	int ret = STORE_OK, rc = SQLITE_DONE;
	size_t n = 0;
	sqlite3_stmt *s = q_get(st, qid);
	if (s == NULL) {
		ret = STORE_ERR;
	} else {
		if (id != NULL)
			bind_str(s, 1, id);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			const char *rid = (const char *)sqlite3_column_text(s, 0);
			if (a.id == NULL || strcmp(a.id, rid ? rid : "") != 0) {
				if (a.id != NULL)
					qacc_emit(&a, cb, arg);
				n++;
				if (!qacc_start(&a, s))
					break;
			}
			if (!qacc_rcpt(&a, s))
				break;
		}
		if (rc == SQLITE_ROW) {
			set_err(st, "queue list: out of memory");
			ret = STORE_ERR;
		} else if (rc != SQLITE_DONE) {
			ret = db_fail(st, sqlite3_extended_errcode(st->db), "queue list");
		} else if (a.id != NULL) {
			qacc_emit(&a, cb, arg);
		}
		q_done(st, qid, s);
	}
	qacc_clear(&a);
	free(a.r);
	if (tx && q_simple(st, Q_COMMIT, "commit") != STORE_OK) {
		tx_rollback(st);
		ret = STORE_ERR;
	}
	if (ret == STORE_OK && id != NULL && n == 0)
		ret = STORE_NOTFOUND;
	return ret;
}

int store_queue_list(
    struct store *st, void (*cb)(void *arg, const struct store_queue_entry *e), void *arg)
{
	return queue_iter(st, Q_QUEUE_LIST, NULL, cb, arg);
}

int store_queue_get(struct store *st, const char *id,
    void (*cb)(void *arg, const struct store_queue_entry *e), void *arg)
{
	if (!blob_id_valid(id))
		return STORE_INVALID;
	return queue_iter(st, Q_QUEUE_GET, id, cb, arg);
}

/* Run update qid on entry id (with now as ?2) and record event kind for it,
 * in one transaction. With unused_blob, the blob row goes too if nothing else
 * uses it, and *unused_blob says whether it did. STORE_NOTFOUND if no row
 * changed. */
static int queue_change(
    struct store *st, enum stmt_id qid, const char *id, const char *kind, bool *unused_blob)
{
	if (!blob_id_valid(id))
		return STORE_INVALID;
	int64_t ms = util_now_ms();
	int ret = tx_begin(st);
	if (ret != STORE_OK)
		return ret;
	sqlite3_stmt *s = q_get(st, qid);
	if (s == NULL) {
		ret = STORE_ERR;
	} else {
		bind_str(s, 1, id);
		if (sqlite3_bind_parameter_count(s) >= 2)
			sqlite3_bind_int64(s, 2, ms / 1000);
		int rc = q_run(st, s);
		if (rc != SQLITE_OK)
			ret = db_fail(st, rc, "queue change");
		else if (sqlite3_changes(st->db) == 0)
			ret = STORE_NOTFOUND;
		q_done(st, qid, s);
	}
	if (ret == STORE_OK && unused_blob != NULL) {
		/* a queue entry's id is also its blob's */
		if ((s = q_get(st, Q_BLOB_DEL_UNUSED)) == NULL) {
			ret = STORE_ERR;
		} else {
			bind_str(s, 1, id);
			int rc = q_run(st, s);
			if (rc != SQLITE_OK)
				ret = db_fail(st, rc, "blob delete");
			else
				*unused_blob = sqlite3_changes(st->db) > 0;
			q_done(st, Q_BLOB_DEL_UNUSED, s);
		}
	}
	if (ret == STORE_OK)
		ret = event_add(st, id, ms, kind, NULL, "by=admin");
	if (ret == STORE_OK)
		ret = tx_commit(st);
	if (ret != STORE_OK)
		tx_rollback(st);
	return ret;
}

int store_queue_retry(struct store *st, const char *id, size_t *n)
{
	if (n != NULL)
		*n = 0;
	if (id != NULL) {
		int ret = queue_change(st, Q_QUEUE_RETRY, id, "retry", NULL);
		if (ret == STORE_OK && n != NULL)
			*n = 1;
		return ret;
	}
	int64_t ms = util_now_ms();
	int ret = tx_begin(st);
	if (ret != STORE_OK)
		return ret;
	/* the ids first (RETURNING runs to completion), then their events */
	char **ids = NULL;
	size_t nids = 0;
	sqlite3_stmt *s = q_get(st, Q_QUEUE_RETRY_ALL);
	if (s == NULL) {
		ret = STORE_ERR;
	} else {
		sqlite3_bind_int64(s, 2, ms / 1000);
		int rc;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			char **p = realloc(ids, (nids + 1) * sizeof *p);
			if (p == NULL || (p[nids] = col_dup(s, 0)) == NULL) {
				ids = p ? p : ids;
				set_err(st, "queue retry: out of memory");
				ret = STORE_ERR;
				break;
			}
			ids = p;
			nids++;
		}
		if (ret == STORE_OK && rc != SQLITE_DONE)
			ret = db_fail(st, sqlite3_extended_errcode(st->db), "queue retry");
		q_done(st, Q_QUEUE_RETRY_ALL, s);
	}
	for (size_t i = 0; i < nids && ret == STORE_OK; i++)
		ret = event_add(st, ids[i], ms, "retry", NULL, "by=admin");
	if (ret == STORE_OK)
		ret = tx_commit(st);
	if (ret != STORE_OK)
		tx_rollback(st);
	else if (n != NULL)
		*n = nids;
	for (size_t i = 0; i < nids; i++)
		free(ids[i]);
	free(ids);
	return ret;
}

int store_queue_hold(struct store *st, const char *id)
{
	return queue_change(st, Q_QUEUE_HOLD, id, "held", NULL);
}

int store_queue_release(struct store *st, const char *id)
{
	return queue_change(st, Q_QUEUE_RELEASE, id, "released", NULL);
}

int store_queue_delete(struct store *st, const char *id)
{
	bool unused = false;
	int ret = queue_change(st, Q_QUEUE_DELETE, id, "deleted", &unused);
	if (ret != STORE_OK || !unused)
		return ret;
	struct buf path = BUF_INIT;
	if (blob_path(st, id, &path, false) == STORE_OK && unlink(buf_cstr(&path)) != 0 &&
	    errno != ENOENT)
		log_warn(id, "store: cannot remove blob path=%s error=\"%s\"",
		    log_str(buf_cstr(&path)), strerror(errno));
	buf_free(&path);
	return STORE_OK;
}

/* ---- the delivery thread's side ---- */

static char *col_dup_null(sqlite3_stmt *s, int i)
{
	return sqlite3_column_type(s, i) == SQLITE_NULL ? NULL : col_dup(s, i);
}

void store_due_free(struct store_due *d, size_t n)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(d[i].id);
		free(d[i].path);
		free(d[i].sender);
		free(d[i].envid);
		free(d[i].ret);
		for (size_t j = 0; j < d[i].nrcpts; j++) {
			free(d[i].rcpts[j].rcpt);
			free(d[i].rcpts[j].notify);
			free(d[i].rcpts[j].orcpt);
		}
		free(d[i].rcpts);
	}
	free(d);
}

int store_queue_due(struct store *st, time_t now, size_t max, struct store_due **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (max == 0)
		return STORE_OK;
	sqlite3_stmt *s = q_get(st, Q_QUEUE_DUE);
	if (s == NULL)
		return STORE_ERR;
	sqlite3_bind_int64(s, 1, (int64_t)now);
	sqlite3_bind_int64(s, 2, (int64_t)max);
	struct store_due *d = calloc(max, sizeof *d);
	size_t nd = 0;
	int ret = d ? STORE_OK : STORE_ERR, rc = SQLITE_DONE;
	struct buf path = BUF_INIT;
	while (ret == STORE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *rid = (const char *)sqlite3_column_text(s, 0);
		if (nd == 0 || strcmp(d[nd - 1].id, rid ? rid : "") != 0) {
			if (nd == max)
				break; /* cannot happen: LIMIT */
			struct store_due *e = &d[nd++];
			e->id = col_dup(s, 0);
			e->sender = col_dup(s, 2);
			e->envid = col_dup_null(s, 3);
			e->ret = col_dup_null(s, 4);
			e->size = (uint64_t)sqlite3_column_int64(s, 5);
			e->created = (time_t)sqlite3_column_int64(s, 6);
			e->attempts = sqlite3_column_int64(s, 7);
			e->warned = sqlite3_column_int(s, 8) != 0;
			const char *blob = (const char *)sqlite3_column_text(s, 1);
			if (e->id == NULL || e->sender == NULL) {
				ret = STORE_ERR;
			} else if (!blob_id_valid(blob)) {
				set_err(st, "queue due: invalid blob id");
				ret = STORE_ERR;
			} else if ((ret = blob_path(st, blob, &path, false)) == STORE_OK &&
			           (e->path = strdup(buf_cstr(&path))) == NULL) {
				ret = STORE_ERR;
			}
		}
		struct store_due *e = &d[nd - 1];
		struct store_due_rcpt *p = realloc(e->rcpts, (e->nrcpts + 1) * sizeof *p);
		if (p == NULL) {
			ret = STORE_ERR;
			break;
		}
		e->rcpts = p;
		struct store_due_rcpt *r = &p[e->nrcpts++];
		r->rcpt = col_dup(s, 9);
		r->notify = col_dup_null(s, 10);
		r->orcpt = col_dup_null(s, 11);
		r->attempts = sqlite3_column_int64(s, 12);
		if (r->rcpt == NULL)
			ret = STORE_ERR;
	}
	if (ret == STORE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = db_fail(st, sqlite3_extended_errcode(st->db), "queue due");
	else if (ret == STORE_ERR && buf_cstr(&st->err)[0] == '\0')
		set_err(st, "queue due: out of memory");
	q_done(st, Q_QUEUE_DUE, s);
	buf_free(&path);
	if (ret != STORE_OK) {
		store_due_free(d, nd);
		return ret;
	}
	if (nd == 0) {
		free(d);
		d = NULL;
	}
	*out = d;
	*n = nd;
	return STORE_OK;
}

/* Inside a transaction: remove entry id if nothing is pending; *unused_blob
 * says whether its blob row went too. */
static int queue_finish_tx(struct store *st, const char *id, bool *removed, bool *unused_blob)
{
	*removed = *unused_blob = false;
	sqlite3_stmt *s = q_get(st, Q_QUEUE_PENDING);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, id);
	int rc = sqlite3_step(s);
	int64_t pending = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	q_done(st, Q_QUEUE_PENDING, s);
	if (pending < 0)
		return db_fail(st, sqlite3_extended_errcode(st->db), "queue pending");
	if (pending > 0)
		return STORE_OK;
	if ((s = q_get(st, Q_QUEUE_DELETE)) == NULL)
		return STORE_ERR;
	bind_str(s, 1, id);
	rc = q_run(st, s);
	bool gone = sqlite3_changes(st->db) > 0;
	q_done(st, Q_QUEUE_DELETE, s);
	if (rc != SQLITE_OK)
		return db_fail(st, rc, "queue finish");
	if (!gone)
		return STORE_NOTFOUND;
	*removed = true;
	if ((s = q_get(st, Q_BLOB_DEL_UNUSED)) == NULL)
		return STORE_ERR;
	bind_str(s, 1, id);
	rc = q_run(st, s);
	*unused_blob = rc == SQLITE_OK && sqlite3_changes(st->db) > 0;
	q_done(st, Q_BLOB_DEL_UNUSED, s);
	return rc == SQLITE_OK ? STORE_OK : db_fail(st, rc, "blob delete");
}

/* After the commit: unlink the blob file nothing uses any more. */
static void blob_unlink(struct store *st, const char *id)
{
	struct buf path = BUF_INIT;
	if (blob_path(st, id, &path, false) == STORE_OK && unlink(buf_cstr(&path)) != 0 &&
	    errno != ENOENT)
		log_warn(id, "store: cannot remove blob path=%s error=\"%s\"",
		    log_str(buf_cstr(&path)), strerror(errno));
	buf_free(&path);
}

static bool attempt_valid(struct store *st, const struct store_attempt *a)
{
	if (a == NULL || !blob_id_valid(a->id))
		return false;
	for (size_t i = 0; i < a->nrcpts; i++) {
		const char *x = a->rcpts[i].status;
		if (a->rcpts[i].rcpt == NULL || x == NULL ||
		    (strcmp(x, "sent") != 0 && strcmp(x, "failed") != 0 &&
		        strcmp(x, "pending") != 0)) {
			set_err(st, "queue attempt: invalid recipient update %zu", i);
			return false;
		}
	}
	return true;
}

/* Inside a transaction: record attempt a. STORE_NOTFOUND (nothing written)
 * if the entry is gone; *gone / *unused as queue_finish_tx. */
static int queue_attempt_tx(
    struct store *st, const struct store_attempt *a, int64_t ms, bool *gone, bool *unused)
{
	*gone = *unused = false;
	int ret = STORE_OK;
	sqlite3_stmt *s = q_get(st, Q_QUEUE_ATTEMPT);
	if (s == NULL)
		return STORE_ERR;
	bind_str(s, 1, a->id);
	sqlite3_bind_int64(s, 2, (int64_t)a->next_attempt);
	if (a->last_error != NULL)
		bind_str(s, 3, a->last_error);
	sqlite3_bind_int(s, 4, a->warned ? 1 : 0);
	int rc = q_run(st, s);
	if (rc != SQLITE_OK)
		ret = db_fail(st, rc, "queue attempt");
	else if (sqlite3_changes(st->db) == 0)
		ret = STORE_NOTFOUND;
	q_done(st, Q_QUEUE_ATTEMPT, s);
	for (size_t i = 0; ret == STORE_OK && i < a->nrcpts; i++) {
		if ((s = q_get(st, Q_QUEUE_RCPT_SET)) == NULL)
			return STORE_ERR;
		bind_str(s, 1, a->id);
		bind_str(s, 2, a->rcpts[i].rcpt);
		bind_str(s, 3, a->rcpts[i].status);
		if (a->rcpts[i].reply != NULL)
			bind_str(s, 4, a->rcpts[i].reply);
		rc = q_run(st, s);
		if (rc != SQLITE_OK)
			ret = db_fail(st, rc, "queue rcpt update");
		q_done(st, Q_QUEUE_RCPT_SET, s);
	}
	for (size_t i = 0; ret == STORE_OK && i < a->nevents; i++)
		ret = event_add(
		    st, a->id, ms, a->events[i].kind, a->events[i].rcpt, a->events[i].text);
	if (ret == STORE_OK)
		ret = queue_finish_tx(st, a->id, gone, unused);
	return ret;
}

int store_queue_attempts(
    struct store *st, const struct store_attempt *a, size_t n, int *rcs, bool *removed)
{
	size_t nvalid = 0;
	for (size_t k = 0; k < n; k++) {
		rcs[k] = attempt_valid(st, &a[k]) ? STORE_OK : STORE_INVALID;
		nvalid += rcs[k] == STORE_OK;
		if (removed != NULL)
			removed[k] = false;
	}
	if (nvalid == 0)
		return STORE_OK; /* nothing to write (the invalid ones say so in rcs) */
	bool *unused = calloc(n, sizeof *unused), *gone = calloc(n, sizeof *gone);
	if (unused == NULL || gone == NULL) {
		free(unused);
		free(gone);
		set_err(st, "queue attempt: out of memory");
		return STORE_ERR;
	}
	int64_t ms = util_now_ms();
	int ret = tx_begin(st);
	for (size_t k = 0; ret == STORE_OK && k < n; k++) {
		if (rcs[k] == STORE_INVALID)
			continue;
		int r = queue_attempt_tx(st, &a[k], ms, &gone[k], &unused[k]);
		if (r == STORE_OK || r == STORE_NOTFOUND)
			rcs[k] = r;
		else
			ret = r;
	}
	if (ret == STORE_OK)
		ret = tx_commit(st);
	if (ret != STORE_OK) {
		tx_rollback(st);
		for (size_t k = 0; k < n; k++)
			rcs[k] = rcs[k] == STORE_INVALID ? STORE_INVALID : ret;
	} else {
		for (size_t k = 0; k < n; k++) {
			if (unused[k])
				blob_unlink(st, a[k].id);
			if (removed != NULL)
				removed[k] = gone[k];
		}
	}
	free(unused);
	free(gone);
	return ret;
}

int store_queue_attempt(struct store *st, const struct store_attempt *a, bool *removed)
{
	int rc = STORE_INVALID;
	int ret = store_queue_attempts(st, a, 1, &rc, removed);
	return ret != STORE_OK ? ret : rc;
}

int store_queue_finish(struct store *st, const char *id, bool *removed)
{
	if (removed != NULL)
		*removed = false;
	if (!blob_id_valid(id))
		return STORE_INVALID;
	int ret = tx_begin(st);
	if (ret != STORE_OK)
		return ret;
	/* nothing pending and no row to delete: not queued (STORE_NOTFOUND) */
	bool gone = false, unused = false;
	ret = queue_finish_tx(st, id, &gone, &unused);
	if (ret == STORE_OK)
		ret = tx_commit(st);
	if (ret != STORE_OK) {
		tx_rollback(st);
		return ret;
	}
	if (unused)
		blob_unlink(st, id);
	if (removed != NULL)
		*removed = gone;
	return STORE_OK;
}
