/*
 * store_schema.c - the SQLite schema of the store, as ordered migrations.
 *
 * PRAGMA user_version holds the number of steps applied. Each step runs in
 * its own BEGIN IMMEDIATE transaction together with the user_version bump
 * (store_sqlite.c), so a crash or a concurrent opener never sees half a step.
 *
 * Invariants:
 *  - NEVER edit a step once released; add a new one at the end.
 *  - domains.name is stored lower-case; local parts use COLLATE NOCASE, so
 *    every UNIQUE index on them is case-insensitive as well.
 *  - Deleting a domain cascades to its users, aliases, mailboxes, messages.
 *    Blob rows are not cascaded: a blob may be shared by many messages and the
 *    queue; unreferenced blob rows (and blob files without rows) are what
 *    `dakiya store check` looks for (see the indexes on messages.blob and
 *    queue.blob).
 *  - Times: *_date and created/next_attempt in seconds since the epoch,
 *    events.time_ms in milliseconds.
 */
#include "store/store_schema.h"

static const char schema_v1[] =
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    /* next UIDVALIDITY: max(previous + 1, now), so unique per mailbox */
    "INSERT INTO meta(key, value) VALUES ('uidvalidity', 0);"

    "CREATE TABLE domains ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE," /* lower case */
    "  created INTEGER NOT NULL"
    ");"

    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,"
    "  local TEXT NOT NULL COLLATE NOCASE,"
    "  pwhash TEXT NOT NULL," /* crypt(3): yescrypt, bcrypt, sha512-crypt */
    "  created INTEGER NOT NULL,"
    "  UNIQUE (domain_id, local)"
    ");"

    /* local = '' is the catch-all "@domain"; one row per target; targets are
     * "local@domain" with the domain lower-cased, local or remote */
    "CREATE TABLE aliases ("
    "  id INTEGER PRIMARY KEY,"
    "  domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,"
    "  local TEXT NOT NULL COLLATE NOCASE,"
    "  target TEXT NOT NULL COLLATE NOCASE,"
    "  UNIQUE (domain_id, local, target)"
    ");"

    "CREATE TABLE mailboxes ("
    "  id INTEGER PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"                   /* "INBOX" always in that case */
    "  special_use TEXT NOT NULL DEFAULT ''," /* \\Sent \\Drafts \\Junk \\Trash or '' */
    "  uidvalidity INTEGER NOT NULL,"
    "  uidnext INTEGER NOT NULL DEFAULT 1,"
    "  highestmodseq INTEGER NOT NULL DEFAULT 1,"
    "  subscribed INTEGER NOT NULL DEFAULT 1,"
    "  UNIQUE (user_id, name)"
    ");"

    "CREATE TABLE blobs ("
    "  id TEXT PRIMARY KEY," /* the queue id; file blobs/<id[0..6]>/<id> */
    "  size INTEGER NOT NULL,"
    "  created INTEGER NOT NULL"
    ") WITHOUT ROWID;"

    "CREATE TABLE messages ("
    "  id INTEGER PRIMARY KEY,"
    "  mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,"
    "  uid INTEGER NOT NULL,"
    "  modseq INTEGER NOT NULL,"
    "  blob TEXT NOT NULL REFERENCES blobs(id),"
    "  size INTEGER NOT NULL,"
    "  internal_date INTEGER NOT NULL,"
    "  flags INTEGER NOT NULL DEFAULT 0,"  /* enum store_flag bits */
    "  keywords TEXT NOT NULL DEFAULT ''," /* space-separated */
    "  message_id TEXT NOT NULL DEFAULT '',"
    "  hdr_from TEXT NOT NULL DEFAULT '',"
    "  hdr_subject TEXT NOT NULL DEFAULT '',"
    "  hdr_date TEXT NOT NULL DEFAULT '',"
    "  mail_from TEXT NOT NULL DEFAULT ''," /* envelope sender, '' for <> */
    "  UNIQUE (mailbox_id, uid)"
    ");"
    "CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);" /* CONDSTORE */
    "CREATE INDEX messages_blob ON messages(blob);"

    "CREATE TABLE queue ("
    "  id TEXT PRIMARY KEY," /* queue id */
    "  blob TEXT NOT NULL REFERENCES blobs(id),"
    "  sender TEXT NOT NULL," /* '' for <> */
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL,"
    "  next_attempt INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT NOT NULL DEFAULT '',"
    "  held INTEGER NOT NULL DEFAULT 0,"
    "  envid TEXT," /* DSN (RFC 3461) ENVID */
    "  ret TEXT"    /* DSN RET: 'FULL' or 'HDRS' */
    ") WITHOUT ROWID;"
    "CREATE INDEX queue_due ON queue(held, next_attempt);"
    "CREATE INDEX queue_blob ON queue(blob);"

    "CREATE TABLE queue_rcpts ("
    "  id INTEGER PRIMARY KEY,"
    "  queue_id TEXT NOT NULL REFERENCES queue(id) ON DELETE CASCADE,"
    "  rcpt TEXT NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'pending'," /* pending, sent, failed */
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  last_reply TEXT NOT NULL DEFAULT '',"
    "  notify TEXT," /* DSN NOTIFY */
    "  orcpt TEXT,"  /* DSN ORCPT */
    "  UNIQUE (queue_id, rcpt)"
    ");"

    /* the message journey; no foreign key: events outlive the queue row */
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY,"
    "  queue_id TEXT NOT NULL,"
    "  time_ms INTEGER NOT NULL,"
    "  kind TEXT NOT NULL," /* received, stored, queued, deferred, sent, bounced ... */
    "  rcpt TEXT NOT NULL DEFAULT '',"
    "  text TEXT NOT NULL DEFAULT ''" /* key=value details */
    ");"
    "CREATE INDEX events_queue ON events(queue_id, time_ms);";

const struct store_migration store_migrations[] = {
    {"initial schema", schema_v1},
    /* the delivery thread sends at most one delay warning per entry */
    {"queue: delay warning sent",
        "ALTER TABLE queue ADD COLUMN warned INTEGER NOT NULL DEFAULT 0;"},
    /* DKIM signing keys: the public record here, the private key in the
     * file data_dir/dkim/<domain>/<selector>.pem (0600); the newest active
     * key of each algorithm signs, older ones stay published until deleted */
    {"dkim keys", "CREATE TABLE dkim_keys ("
                  "  id INTEGER PRIMARY KEY,"
                  "  domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,"
                  "  selector TEXT NOT NULL COLLATE NOCASE,"
                  "  algorithm TEXT NOT NULL," /* rsa, ed25519 */
                  "  record TEXT NOT NULL,"    /* the TXT value to publish */
                  "  created INTEGER NOT NULL,"
                  "  active INTEGER NOT NULL DEFAULT 1," /* 0: waits for dkim activate */
                  "  UNIQUE (domain_id, selector)"
                  ");"},
    /* what DMARC aggregate reports (RFC 7489 7.2) are made of: one row per
     * received message that had a From domain to check */
    {"dmarc results", "CREATE TABLE dmarc_results ("
                      "  id INTEGER PRIMARY KEY,"
                      "  time INTEGER NOT NULL,"
                      "  queue_id TEXT NOT NULL,"
                      "  source_ip TEXT NOT NULL,"
                      "  header_from TEXT NOT NULL,"
                      "  envelope_from TEXT NOT NULL,"
                      "  policy_domain TEXT NOT NULL," /* where the record was found, '' if none */
                      "  policy TEXT NOT NULL," /* none, quarantine, reject ('' without a record) */
                      "  disposition TEXT NOT NULL," /* none, quarantine, reject: what we did */
                      "  dmarc TEXT NOT NULL,"       /* pass, fail, none, temperror */
                      "  spf TEXT NOT NULL," /* the SPF result and its domain: 'pass example.com' */
                      "  spf_aligned INTEGER NOT NULL,"
                      "  dkim TEXT NOT NULL," /* 'd=example.com s=sel pass; ...' */
                      "  dkim_aligned INTEGER NOT NULL,"
                      "  rua TEXT NOT NULL" /* the record's rua= addresses, comma-separated */
                      ");"
                      "CREATE INDEX dmarc_results_domain ON dmarc_results(policy_domain, time);"},
};

const size_t store_nmigrations = sizeof store_migrations / sizeof store_migrations[0];
