/*
 * test_store.c - unit tests of the SQLite store backend (store.h).
 *
 * Every test runs in a fresh directory under /tmp, removed afterwards. Some
 * checks open the database directly with SQLite to look at what the store
 * wrote (cascades, the queue, user_version).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/util.h"
#include "store/store.h"

#define HASH "$y$j9T$abcdefghijklmnop$0123456789012345678901234567890123456789012"

struct fx {
	char dir[64];
	struct store *st;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	snprintf(f->dir, sizeof f->dir, "/tmp/dakiya-test-store-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	struct buf err = BUF_INIT;
	f->st = store_open(f->dir, &err);
	if (f->st == NULL)
		fail_msg("store_open: %s", buf_cstr(&err));
	buf_free(&err);
	*state = f;
	return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	store_close(f->st);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* ---- helpers ---- */

/* Collects callback strings, joined with ' '. */
struct collect {
	struct buf b;
	int n;
};

static void collect_str(void *arg, const char *s)
{
	struct collect *c = arg;
	if (c->n++)
		buf_putc(&c->b, ' ');
	buf_puts(&c->b, s);
}

static void collect_alias(void *arg, const char *address, const char *target)
{
	struct collect *c = arg;
	if (c->n++)
		buf_putc(&c->b, ' ');
	buf_printf(&c->b, "%s>%s", address, target);
}

static void collect_folder(
    void *arg, const char *name, const char *special_use, uint32_t uidvalidity, uint32_t uidnext)
{
	struct collect *c = arg;
	if (c->n++)
		buf_putc(&c->b, ' ');
	buf_printf(&c->b, "%s%s%s:%u", name, *special_use ? "=" : "", special_use, uidnext);
	assert_true(uidvalidity > 0);
}

static void collect_uv(
    void *arg, const char *name, const char *special_use, uint32_t uidvalidity, uint32_t uidnext)
{
	struct collect *c = arg;
	if (c->n++)
		buf_putc(&c->b, ' ');
	buf_printf(&c->b, "%u", uidvalidity);
}

static void collect_msg(void *arg, const struct store_msginfo *m)
{
	struct collect *c = arg;
	if (c->n++)
		buf_putc(&c->b, ' ');
	buf_printf(&c->b, "%u/%llu/%s/%s/%llu", m->uid, (unsigned long long)m->modseq, m->blob,
	    m->subject, (unsigned long long)m->size);
}

static void collect_event(
    void *arg, int64_t time_ms, const char *kind, const char *rcpt, const char *text)
{
	struct collect *c = arg;
	if (c->n++)
		buf_putc(&c->b, ' ');
	buf_printf(&c->b, "%s:%s", kind, rcpt);
}

static void collect_reset(struct collect *c)
{
	buf_reset(&c->b);
	c->n = 0;
}

/* Resolve and render users and remote targets, or the error code. */
static void resolve(struct fx *f, const char *local, const char *domain, struct buf *out)
{
	struct store_rcpt r;
	buf_reset(out);
	int rc = store_resolve_rcpt(f->st, local, domain, &r);
	if (rc != STORE_OK) {
		buf_printf(out, "rc=%d", rc);
		return;
	}
	for (size_t i = 0; i < r.n; i++)
		buf_printf(out, "%s%s", i ? " " : "", r.users[i]);
	for (size_t i = 0; i < r.nremote; i++)
		buf_printf(out, "%sremote:%s", out->len ? " " : "", r.remote[i]);
	store_rcpt_free(&r);
	assert_int_equal(r.n, 0);
}

#define assert_resolves(f, local, domain, want)                                                    \
	do {                                                                                       \
		struct buf _b = BUF_INIT;                                                          \
		resolve(f, local, domain, &_b);                                                    \
		assert_string_equal(buf_cstr(&_b), want);                                          \
		buf_free(&_b);                                                                     \
	} while (0)

static sqlite3 *raw_open(struct fx *f)
{
	char path[128];
	snprintf(path, sizeof path, "%s/dakiya.db", f->dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static void setup_example(struct fx *f)
{
	assert_int_equal(store_domain_add(f->st, "example.com"), STORE_OK);
	assert_int_equal(store_user_add(f->st, "Alice@example.com", HASH), STORE_OK);
	assert_int_equal(store_user_add(f->st, "bob@example.com", HASH), STORE_OK);
}

/* ---- tests ---- */

static void test_open_migrations(void **state)
{
	struct fx *f = *state;
	sqlite3 *db = raw_open(f);
	int64_t v = raw_int(db, "PRAGMA user_version");
	assert_true(v >= 1);
	assert_int_equal(
	    raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'messages'"), 1);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	sqlite3_close(db);

	char path[128];
	struct stat sb;
	snprintf(path, sizeof path, "%s/dakiya.db", f->dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	snprintf(path, sizeof path, "%s/blobs", f->dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_string_equal(store_data_dir(f->st), f->dir);

	/* reopen: idempotent, data kept */
	assert_int_equal(store_domain_add(f->st, "example.com"), STORE_OK);
	store_close(f->st);
	struct buf err = BUF_INIT;
	f->st = store_open(f->dir, &err);
	assert_non_null(f->st);
	assert_int_equal(store_domain_exists(f->st, "example.com"), STORE_OK);
	db = raw_open(f);
	assert_int_equal(raw_int(db, "PRAGMA user_version"), v);

	/* a schema newer than the program is refused */
	assert_int_equal(
	    sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	struct store *st2 = store_open(f->dir, &err);
	assert_null(st2);
	assert_non_null(strstr(buf_cstr(&err), "newer"));
	buf_free(&err);

	/* no data dir */
	assert_null(store_open("", NULL));
	store_close(NULL);
}

static void test_domains(void **state)
{
	struct fx *f = *state;
	struct collect c = {BUF_INIT, 0};
	assert_int_equal(store_domain_add(f->st, "Example.COM"), STORE_OK);
	assert_int_equal(store_domain_add(f->st, "b.example"), STORE_OK);
	assert_int_equal(store_domain_add(f->st, "example.com"), STORE_EXISTS);
	assert_int_equal(store_domain_add(f->st, "EXAMPLE.com"), STORE_EXISTS);
	assert_int_equal(store_domain_exists(f->st, "example.COM"), STORE_OK);
	assert_int_equal(store_domain_exists(f->st, "other.test"), STORE_NOTFOUND);
	const char *bad[] = {"", "a@b", "a b", ".x", "x.", "a..b", NULL};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(store_domain_add(f->st, bad[i]), STORE_INVALID);
	assert_int_equal(store_domain_list(f->st, collect_str, &c), STORE_OK);
	assert_string_equal(buf_cstr(&c.b), "b.example example.com");
	assert_int_equal(store_domain_del(f->st, "EXAMPLE.COM"), STORE_OK);
	assert_int_equal(store_domain_del(f->st, "example.com"), STORE_NOTFOUND);
	assert_int_equal(store_domain_exists(f->st, "example.com"), STORE_NOTFOUND);
	collect_reset(&c);
	assert_int_equal(store_domain_list(f->st, collect_str, &c), STORE_OK);
	assert_string_equal(buf_cstr(&c.b), "b.example");
	buf_free(&c.b);
}

static void test_users(void **state)
{
	struct fx *f = *state;
	struct collect c = {BUF_INIT, 0};
	struct buf h = BUF_INIT;
	assert_int_equal(store_user_add(f->st, "alice@example.com", HASH), STORE_NOTLOCAL);
	assert_int_equal(store_domain_add(f->st, "example.com"), STORE_OK);
	assert_int_equal(store_domain_add(f->st, "other.test"), STORE_OK);
	assert_int_equal(store_user_add(f->st, "Alice@Example.com", HASH), STORE_OK);
	assert_int_equal(store_user_add(f->st, "alice@example.com", "x"), STORE_EXISTS);
	assert_int_equal(store_user_add(f->st, "ALICE@EXAMPLE.COM", "x"), STORE_EXISTS);
	assert_int_equal(store_user_add(f->st, "bob@example.com", "$2b$05$hash"), STORE_OK);
	assert_int_equal(store_user_add(f->st, "carol@other.test", "$6$salt$hash"), STORE_OK);
	const char *bad[] = {"nodomain", "@example.com", "a@", "a@@example.com", "a@b@example.com",
	    "a b@example.com", NULL};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(store_user_add(f->st, bad[i], HASH), STORE_INVALID);
	assert_int_equal(store_user_add(f->st, "x@example.com", NULL), STORE_INVALID);

	assert_int_equal(store_user_get_hash(f->st, "ALICE@example.com", &h), STORE_OK);
	assert_string_equal(buf_cstr(&h), HASH);
	assert_int_equal(store_user_passwd(f->st, "alice@EXAMPLE.com", "$6$new$hash"), STORE_OK);
	assert_int_equal(store_user_get_hash(f->st, "alice@example.com", &h), STORE_OK);
	assert_string_equal(buf_cstr(&h), "$6$new$hash");
	assert_int_equal(store_user_passwd(f->st, "zed@example.com", "x"), STORE_NOTFOUND);
	assert_int_equal(store_user_passwd(f->st, "zed@nowhere.test", "x"), STORE_NOTLOCAL);
	assert_int_equal(store_user_get_hash(f->st, "zed@example.com", &h), STORE_NOTFOUND);

	assert_int_equal(store_user_list(f->st, NULL, collect_str, &c), STORE_OK);
	assert_string_equal(buf_cstr(&c.b), "Alice@example.com bob@example.com carol@other.test");
	collect_reset(&c);
	assert_int_equal(store_user_list(f->st, "OTHER.test", collect_str, &c), STORE_OK);
	assert_string_equal(buf_cstr(&c.b), "carol@other.test");

	/* default mailboxes with their special-use */
	collect_reset(&c);
	assert_int_equal(
	    store_folder_list(f->st, "alice@example.com", collect_folder, &c), STORE_OK);
	assert_string_equal(buf_cstr(&c.b),
	    "INBOX:1 Sent=\\Sent:1 Drafts=\\Drafts:1 Junk=\\Junk:1 Trash=\\Trash:1");
	/* UIDVALIDITY unique per mailbox */
	collect_reset(&c);
	assert_int_equal(store_folder_list(f->st, "alice@example.com", collect_uv, &c), STORE_OK);
	assert_int_equal(store_folder_list(f->st, "bob@example.com", collect_uv, &c), STORE_OK);
	assert_int_equal(c.n, 10);
	char *save = NULL, *copy = strdup(buf_cstr(&c.b));
	uint32_t prev = 0;
	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		uint32_t v = (uint32_t)strtoul(t, NULL, 10);
		assert_true(v > prev);
		prev = v;
	}
	free(copy);
	assert_int_equal(
	    store_folder_list(f->st, "zed@example.com", collect_folder, &c), STORE_NOTFOUND);

	assert_int_equal(store_user_del(f->st, "BOB@example.com"), STORE_OK);
	assert_int_equal(store_user_del(f->st, "bob@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_user_del(f->st, "bob@nowhere.test"), STORE_NOTLOCAL);
	collect_reset(&c);
	assert_int_equal(store_user_list(f->st, "example.com", collect_str, &c), STORE_OK);
	assert_string_equal(buf_cstr(&c.b), "Alice@example.com");
	/* the mailboxes went with the user */
	sqlite3 *db = raw_open(f);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM mailboxes"), 10);
	sqlite3_close(db);
	buf_free(&c.b);
	buf_free(&h);
}

static void test_aliases(void **state)
{
	struct fx *f = *state;
	struct collect c = {BUF_INIT, 0};
	setup_example(f);
	assert_int_equal(store_domain_add(f->st, "b.test"), STORE_OK);
	assert_int_equal(store_alias_add(f->st, "info@example.com", "alice@example.com"), STORE_OK);
	assert_int_equal(store_alias_add(f->st, "INFO@example.com", "bob@EXAMPLE.com"), STORE_OK);
	assert_int_equal(
	    store_alias_add(f->st, "info@example.com", "Bob@example.com"), STORE_EXISTS);
	assert_int_equal(store_alias_add(f->st, "@example.com", "alice@example.com"), STORE_OK);
	assert_int_equal(
	    store_alias_add(f->st, "ext@example.com", "Someone@Remote.TEST"), STORE_OK);
	assert_int_equal(store_alias_add(f->st, "x@b.test", "alice@example.com"), STORE_OK);
	assert_int_equal(
	    store_alias_add(f->st, "x@nowhere.test", "alice@example.com"), STORE_NOTLOCAL);
	assert_int_equal(store_alias_add(f->st, "x@example.com", "@example.com"), STORE_INVALID);
	assert_int_equal(store_alias_add(f->st, "x@example.com", "nonsense"), STORE_INVALID);
	assert_int_equal(store_alias_add(f->st, "x", "alice@example.com"), STORE_INVALID);
	assert_int_equal(store_alias_add(f->st, "x@example.com", "X@Example.com"), STORE_INVALID);

	assert_int_equal(store_alias_list(f->st, "example.com", collect_alias, &c), STORE_OK);
	assert_string_equal(buf_cstr(&c.b), "@example.com>alice@example.com "
	                                    "ext@example.com>Someone@remote.test "
	                                    "info@example.com>alice@example.com "
	                                    "info@example.com>bob@example.com");
	collect_reset(&c);
	assert_int_equal(store_alias_list(f->st, NULL, collect_alias, &c), STORE_OK);
	assert_int_equal(c.n, 5);

	assert_int_equal(store_alias_del(f->st, "info@example.com", "BOB@example.com"), STORE_OK);
	assert_int_equal(
	    store_alias_del(f->st, "info@example.com", "bob@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_alias_add(f->st, "info@example.com", "bob@example.com"), STORE_OK);
	assert_int_equal(store_alias_del(f->st, "info@example.com", NULL), STORE_OK);
	assert_int_equal(store_alias_del(f->st, "info@example.com", NULL), STORE_NOTFOUND);
	assert_int_equal(store_alias_del(f->st, "@example.com", NULL), STORE_OK);
	assert_int_equal(store_alias_del(f->st, "a@nowhere.test", NULL), STORE_NOTLOCAL);
	collect_reset(&c);
	assert_int_equal(store_alias_list(f->st, "example.com", collect_alias, &c), STORE_OK);
	assert_string_equal(buf_cstr(&c.b), "ext@example.com>Someone@remote.test");
	buf_free(&c.b);
}

static void test_resolve(void **state)
{
	struct fx *f = *state;
	setup_example(f);
	assert_int_equal(store_domain_add(f->st, "b.test"), STORE_OK);
	assert_int_equal(store_user_add(f->st, "carol@b.test", HASH), STORE_OK);

	/* exact user, any case, canonical case back */
	assert_resolves(f, "alice", "example.com", "Alice@example.com");
	assert_resolves(f, "ALICE", "EXAMPLE.COM", "Alice@example.com");
	/* not ours, nobody */
	assert_resolves(f, "alice", "remote.test", "rc=-3");
	assert_resolves(f, "nobody", "example.com", "rc=-1");
	/* invalid input */
	assert_resolves(f, "", "example.com", "rc=-4");
	assert_resolves(f, "a@b", "example.com", "rc=-4");
	assert_resolves(f, "a", "", "rc=-4");

	/* exact alias, several targets, duplicates cut, remote kept */
	assert_int_equal(store_alias_add(f->st, "team@example.com", "alice@example.com"), STORE_OK);
	assert_int_equal(store_alias_add(f->st, "team@example.com", "BOB@example.com"), STORE_OK);
	assert_int_equal(store_alias_add(f->st, "team@example.com", "carol@b.test"), STORE_OK);
	assert_int_equal(
	    store_alias_add(f->st, "team@example.com", "ALICE@example.com"), STORE_EXISTS);
	assert_int_equal(store_alias_add(f->st, "team@example.com", "x@remote.test"), STORE_OK);
	assert_resolves(f, "Team", "example.com",
	    "Alice@example.com bob@example.com carol@b.test remote:x@remote.test");

	/* +tag: user, then alias */
	assert_resolves(f, "alice+news", "example.com", "Alice@example.com");
	assert_resolves(f, "team+x", "example.com",
	    "Alice@example.com bob@example.com carol@b.test remote:x@remote.test");
	assert_resolves(f, "+x", "example.com", "rc=-1");
	/* an exact alias with a '+' wins over the tag rule */
	assert_int_equal(
	    store_alias_add(f->st, "alice+spam@example.com", "bob@example.com"), STORE_OK);
	assert_resolves(f, "alice+spam", "example.com", "bob@example.com");
	/* a user wins over an alias of the same name */
	assert_int_equal(store_alias_add(f->st, "bob@example.com", "alice@example.com"), STORE_OK);
	assert_resolves(f, "bob", "example.com", "bob@example.com");

	/* recursion: a -> b -> team */
	assert_int_equal(store_alias_add(f->st, "a@example.com", "b@example.com"), STORE_OK);
	assert_int_equal(store_alias_add(f->st, "b@example.com", "team@example.com"), STORE_OK);
	assert_resolves(f, "a", "example.com",
	    "Alice@example.com bob@example.com carol@b.test remote:x@remote.test");

	/* loops are cut; the rest of the expansion stays */
	assert_int_equal(store_alias_add(f->st, "l1@example.com", "l2@example.com"), STORE_OK);
	assert_int_equal(store_alias_add(f->st, "l2@example.com", "l1@example.com"), STORE_OK);
	assert_resolves(f, "l1", "example.com", "rc=-1");
	assert_int_equal(store_alias_add(f->st, "l2@example.com", "carol@b.test"), STORE_OK);
	assert_resolves(f, "l1", "example.com", "carol@b.test");
	assert_resolves(f, "L2", "example.com", "carol@b.test");

	/* depth: a chain of 8 alias hops reaches the user, 9 do not */
	char from[64], to[64];
	for (int i = 0; i < 9; i++) {
		snprintf(from, sizeof from, "c%d@example.com", i);
		snprintf(to, sizeof to, i == 8 ? "alice@example.com" : "c%d@example.com", i + 1);
		assert_int_equal(store_alias_add(f->st, from, to), STORE_OK);
	}
	assert_resolves(f, "c1", "example.com", "Alice@example.com");
	assert_resolves(f, "c0", "example.com", "rc=-1");

	/* catch-all, only when nothing else matches */
	assert_int_equal(store_alias_add(f->st, "@example.com", "bob@example.com"), STORE_OK);
	assert_resolves(f, "whoever", "example.com", "bob@example.com");
	assert_resolves(f, "whoever+tag", "example.com", "bob@example.com");
	assert_resolves(f, "alice", "example.com", "Alice@example.com");
	assert_resolves(f, "l1", "example.com", "carol@b.test");
	/* an alias to a missing local address falls through to the catch-all */
	assert_int_equal(
	    store_alias_add(f->st, "dangling@example.com", "gone@example.com"), STORE_OK);
	assert_resolves(f, "dangling", "example.com", "bob@example.com");
	/* a catch-all to a remote address */
	assert_int_equal(store_alias_add(f->st, "@b.test", "Catch@Remote.test"), STORE_OK);
	assert_resolves(f, "zz", "b.test", "remote:Catch@remote.test");
	/* a catch-all pointing into its own domain cannot loop */
	assert_int_equal(store_alias_del(f->st, "@b.test", NULL), STORE_OK);
	assert_int_equal(store_alias_add(f->st, "@b.test", "nobody@b.test"), STORE_OK);
	assert_resolves(f, "zz", "b.test", "rc=-1");
	assert_resolves(f, "carol", "b.test", "carol@b.test");
}

/* store_user_owns: own address, +tag, aliases with the user as a direct
 * target; never a catch-all, an indirect target or someone else's address. */
static void test_user_owns(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	setup_example(f);
	assert_int_equal(store_domain_add(st, "b.test"), STORE_OK);
	assert_int_equal(store_user_add(st, "carol@b.test", HASH), STORE_OK);
	static const char *const alice = "alice@example.com";

	/* own address, any case, with a +tag */
	assert_int_equal(store_user_owns(st, alice, "alice@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "ALICE@Example.COM"), STORE_OK);
	assert_int_equal(store_user_owns(st, "ALICE@EXAMPLE.COM", "Alice@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "alice+lists@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "Alice+a+b@EXAMPLE.com"), STORE_OK);
	/* someone else's, nobody's, not ours */
	assert_int_equal(store_user_owns(st, alice, "bob@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, alice, "bob+x@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, alice, "alicex@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, alice, "nobody@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, alice, "+x@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, alice, "alice@b.test"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, alice, "alice@remote.test"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, "carol@b.test", "alice@example.com"), STORE_NOTFOUND);
	/* the user must exist */
	assert_int_equal(store_user_owns(st, "zed@example.com", "zed@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, "a@remote.test", "a@remote.test"), STORE_NOTFOUND);
	/* malformed input */
	assert_int_equal(store_user_owns(st, alice, ""), STORE_INVALID);
	assert_int_equal(store_user_owns(st, alice, "alice"), STORE_INVALID);
	assert_int_equal(store_user_owns(st, alice, "@example.com"), STORE_INVALID);
	assert_int_equal(store_user_owns(st, alice, NULL), STORE_INVALID);
	assert_int_equal(store_user_owns(st, NULL, alice), STORE_INVALID);
	assert_int_equal(store_user_owns(st, "alice", alice), STORE_INVALID);

	/* an alias with the user among its direct targets, also with a +tag */
	assert_int_equal(store_alias_add(st, "Sales@example.com", "bob@example.com"), STORE_OK);
	assert_int_equal(store_alias_add(st, "sales@example.com", "ALICE@example.com"), STORE_OK);
	assert_int_equal(store_alias_add(st, "sales@example.com", "x@remote.test"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "sales@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "SALES@EXAMPLE.COM"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "sales+q3@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, "bob@example.com", "sales@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, "carol@b.test", "sales@example.com"), STORE_NOTFOUND);
	/* an alias in another domain pointing at the user */
	assert_int_equal(store_alias_add(st, "ali@b.test", "alice@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "ali@b.test"), STORE_OK);
	assert_int_equal(store_user_owns(st, "carol@b.test", "ali@b.test"), STORE_NOTFOUND);
	/* an indirect target does not own: outer -> sales -> alice */
	assert_int_equal(store_alias_add(st, "outer@example.com", "sales@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "outer@example.com"), STORE_NOTFOUND);
	/* a catch-all owns nothing, even when it points at the user */
	assert_int_equal(store_alias_add(st, "@example.com", "alice@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "random@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, alice, "random+x@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, alice, "alice@example.com"), STORE_OK);
	/* an exact alias with a '+' decides before the tag rule, as in delivery */
	assert_int_equal(
	    store_alias_add(st, "alice+spam@example.com", "bob@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "alice+spam@example.com"), STORE_NOTFOUND);
	assert_int_equal(
	    store_user_owns(st, "bob@example.com", "alice+spam@example.com"), STORE_OK);
	assert_int_equal(
	    store_user_owns(st, "bob@example.com", "sales+spam@example.com"), STORE_OK);
	/* a user decides before an alias of the same name */
	assert_int_equal(store_alias_add(st, "bob@example.com", "alice@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "bob@example.com"), STORE_NOTFOUND);
	/* removing the alias target removes the right */
	assert_int_equal(store_alias_del(st, "sales@example.com", "alice@example.com"), STORE_OK);
	assert_int_equal(store_user_owns(st, alice, "sales@example.com"), STORE_NOTFOUND);
	assert_int_equal(store_user_owns(st, "bob@example.com", "sales@example.com"), STORE_OK);
}

static void test_resolve_limits(void **state)
{
	struct fx *f = *state;
	setup_example(f);
	char to[64];
	for (int i = 0; i < STORE_RCPT_MAX_TARGETS; i++) {
		snprintf(to, sizeof to, "r%d@remote.test", i);
		assert_int_equal(store_alias_add(f->st, "many@example.com", to), STORE_OK);
	}
	struct store_rcpt r;
	assert_int_equal(store_resolve_rcpt(f->st, "many", "example.com", &r), STORE_OK);
	assert_int_equal(r.nremote, STORE_RCPT_MAX_TARGETS);
	store_rcpt_free(&r);
	assert_int_equal(store_alias_add(f->st, "many@example.com", "one@more.test"), STORE_OK);
	assert_int_equal(store_resolve_rcpt(f->st, "many", "example.com", &r), STORE_ERR);
	assert_non_null(strstr(store_error(f->st), "targets"));
	assert_int_equal(r.n + r.nremote, 0);
	store_rcpt_free(&r);
}

static void test_blob_path(void **state)
{
	struct fx *f = *state;
	struct buf p = BUF_INIT, want = BUF_INIT;
	char id[UTIL_QID_LEN + 1];
	util_queue_id(id);
	assert_int_equal(store_blob_path(f->st, id, &p), STORE_OK);
	buf_printf(&want, "%s/blobs/%.6s/%s", f->dir, id, id);
	assert_string_equal(buf_cstr(&p), buf_cstr(&want));
	assert_int_equal(store_blob_dir(f->st, id, &p), STORE_OK);
	buf_reset(&want);
	buf_printf(&want, "%s/blobs/%.6s", f->dir, id);
	assert_string_equal(buf_cstr(&p), buf_cstr(&want));
	struct stat sb;
	assert_int_equal(stat(buf_cstr(&p), &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0700);
	/* the directory is recreated if it vanished (cache is only a hint for the same bucket) */
	assert_int_equal(store_blob_path(f->st, "0123456789abcdef", &p), STORE_OK);
	buf_reset(&want);
	buf_printf(&want, "%s/blobs/012345/0123456789abcdef", f->dir);
	assert_string_equal(buf_cstr(&p), buf_cstr(&want));
	assert_int_equal(store_blob_path(f->st, "abc", &p), STORE_OK);
	const char *bad[] = {"", "../etc", "a/b", "a.b", "x y", NULL};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(store_blob_path(f->st, bad[i], &p), STORE_INVALID);
	buf_free(&p);
	buf_free(&want);
}

/* Write a blob file for id and fill a delivery. */
static void make_delivery(struct fx *f, struct store_delivery *d, char *id, const char *subject,
    const char *const *users, const char *const *folders, size_t nusers)
{
	struct buf p = BUF_INIT;
	util_queue_id(id);
	assert_int_equal(store_blob_path(f->st, id, &p), STORE_OK);
	FILE *fp = fopen(buf_cstr(&p), "w");
	assert_non_null(fp);
	fprintf(fp, "Subject: %s\r\n\r\nhello\r\n", subject);
	fclose(fp);
	buf_free(&p);
	memset(d, 0, sizeof *d);
	d->blob = id;
	d->size = 30;
	d->internal_date = 1700000000;
	d->mail_from = "sender@remote.test";
	d->message_id = "<m@remote.test>";
	d->from = "Sender <sender@remote.test>";
	d->subject = subject;
	d->date = "Tue, 14 Nov 2023 22:13:20 +0000";
	d->users = users;
	d->folders = folders;
	d->nusers = nusers;
}

static void test_deliver_batch(void **state)
{
	struct fx *f = *state;
	setup_example(f);
	struct collect c = {BUF_INIT, 0};
	char ids[4][UTIL_QID_LEN + 1];
	struct store_delivery d[4];
	const char *both[] = {"Alice@example.com", "bob@example.com"};
	const char *alice[] = {"Alice@example.com"};
	const char *junk[] = {"Junk"};
	const char *nope[] = {"NoSuchFolder"};
	const char *remote[] = {"x@remote.test", "y@remote.test"};
	make_delivery(f, &d[0], ids[0], "one", both, NULL, 2);
	make_delivery(f, &d[1], ids[1], "two", alice, NULL, 1);
	make_delivery(f, &d[2], ids[2], "spam", alice, junk, 1);
	make_delivery(f, &d[3], ids[3], "lost", alice, nope, 1);
	d[1].remote = remote;
	d[1].nremote = 2;
	assert_int_equal(store_deliver_batch(f->st, d, 4), STORE_OK);

	char want[512];
	assert_int_equal(
	    store_mailbox_list(f->st, "alice@example.com", NULL, collect_msg, &c), STORE_OK);
	snprintf(want, sizeof want, "1/2/%s/one/30 2/3/%s/two/30 3/4/%s/lost/30", ids[0], ids[1],
	    ids[3]);
	assert_string_equal(buf_cstr(&c.b), want);
	collect_reset(&c);
	assert_int_equal(
	    store_mailbox_list(f->st, "bob@example.com", "inbox", collect_msg, &c), STORE_OK);
	snprintf(want, sizeof want, "1/2/%s/one/30", ids[0]);
	assert_string_equal(buf_cstr(&c.b), want);
	collect_reset(&c);
	assert_int_equal(
	    store_mailbox_list(f->st, "ALICE@example.com", "Junk", collect_msg, &c), STORE_OK);
	snprintf(want, sizeof want, "1/2/%s/spam/30", ids[2]);
	assert_string_equal(buf_cstr(&c.b), want);
	assert_int_equal(store_mailbox_list(f->st, "alice@example.com", "Nope", collect_msg, &c),
	    STORE_NOTFOUND);
	assert_int_equal(
	    store_mailbox_list(f->st, "zed@example.com", NULL, collect_msg, &c), STORE_NOTFOUND);

	/* a second batch continues the UIDs */
	struct store_delivery e;
	char id5[UTIL_QID_LEN + 1];
	make_delivery(f, &e, id5, "five", both, NULL, 2);
	e.message_id = e.from = e.subject = e.date = NULL; /* summaries may be missing */
	assert_int_equal(store_deliver_batch(f->st, &e, 1), STORE_OK);
	collect_reset(&c);
	assert_int_equal(
	    store_mailbox_list(f->st, "bob@example.com", NULL, collect_msg, &c), STORE_OK);
	snprintf(want, sizeof want, "1/2/%s/one/30 2/3/%s//30", ids[0], id5);
	assert_string_equal(buf_cstr(&c.b), want);
	collect_reset(&c);
	assert_int_equal(
	    store_folder_list(f->st, "alice@example.com", collect_folder, &c), STORE_OK);
	assert_string_equal(buf_cstr(&c.b),
	    "INBOX:5 Sent=\\Sent:1 Drafts=\\Drafts:1 Junk=\\Junk:2 Trash=\\Trash:1");

	/* message_path points at the blob */
	struct buf p = BUF_INIT, bp = BUF_INIT;
	assert_int_equal(store_message_path(f->st, "alice@example.com", NULL, 2, &p), STORE_OK);
	assert_int_equal(store_blob_path(f->st, ids[1], &bp), STORE_OK);
	assert_string_equal(buf_cstr(&p), buf_cstr(&bp));
	assert_int_equal(access(buf_cstr(&p), R_OK), 0);
	assert_int_equal(
	    store_message_path(f->st, "alice@example.com", NULL, 99, &p), STORE_NOTFOUND);
	assert_int_equal(store_message_path(f->st, "alice@example.com", "Junk", 1, &p), STORE_OK);

	/* the queue got the remote recipients; the journey has events */
	sqlite3 *db = raw_open(f);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM queue"), 1);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM queue_rcpts"), 2);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM blobs"), 5);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM messages"), 7);
	sqlite3_close(db);
	collect_reset(&c);
	assert_int_equal(store_event_list(f->st, ids[1], collect_event, &c), STORE_OK);
	assert_string_equal(
	    buf_cstr(&c.b), "stored:Alice@example.com queued:x@remote.test queued:y@remote.test");
	assert_int_equal(
	    store_event_add(f->st, ids[1], "sent", "x@remote.test", "reply=250"), STORE_OK);
	assert_int_equal(store_event_add(f->st, ids[1], "", NULL, NULL), STORE_INVALID);
	assert_int_equal(store_event_list(f->st, "0000", collect_event, &c), STORE_NOTFOUND);

	/* invalid deliveries are refused before anything is written */
	const char *badu[] = {"nobody"};
	make_delivery(f, &e, id5, "bad", badu, NULL, 1);
	assert_int_equal(store_deliver_batch(f->st, &e, 1), STORE_INVALID);
	e.users = alice;
	e.blob = "../x";
	assert_int_equal(store_deliver_batch(f->st, &e, 1), STORE_INVALID);
	assert_int_equal(store_deliver_batch(f->st, NULL, 0), STORE_OK);

	/* a user deleted since RCPT: the others still get the message */
	const char *gone[] = {"gone@example.com", "bob@example.com"};
	make_delivery(f, &e, id5, "six", gone, NULL, 2);
	assert_int_equal(store_deliver_batch(f->st, &e, 1), STORE_OK);
	collect_reset(&c);
	assert_int_equal(store_event_list(f->st, id5, collect_event, &c), STORE_OK);
	assert_string_equal(buf_cstr(&c.b), "dropped:gone@example.com stored:bob@example.com");

	buf_free(&p);
	buf_free(&bp);
	buf_free(&c.b);
}

static void test_domain_cascade(void **state)
{
	struct fx *f = *state;
	setup_example(f);
	assert_int_equal(store_domain_add(f->st, "keep.test"), STORE_OK);
	assert_int_equal(store_user_add(f->st, "k@keep.test", HASH), STORE_OK);
	assert_int_equal(store_alias_add(f->st, "info@example.com", "alice@example.com"), STORE_OK);
	char id[UTIL_QID_LEN + 1];
	struct store_delivery d;
	const char *users[] = {"alice@example.com", "k@keep.test"};
	make_delivery(f, &d, id, "x", users, NULL, 2);
	assert_int_equal(store_deliver_batch(f->st, &d, 1), STORE_OK);
	assert_int_equal(store_domain_del(f->st, "example.com"), STORE_OK);
	sqlite3 *db = raw_open(f);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM users"), 1);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM aliases"), 0);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM mailboxes"), 5);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM messages"), 1);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM blobs"), 1);
	sqlite3_close(db);
	assert_resolves(f, "alice", "example.com", "rc=-3");
}

/* Callbacks may call back into the store (one-off statements). */
static void reenter_cb(void *arg, const char *domain)
{
	struct fx *f = arg;
	struct collect c = {BUF_INIT, 0};
	assert_int_equal(store_domain_list(f->st, collect_str, &c), STORE_OK);
	assert_int_equal(c.n, 2);
	assert_int_equal(store_domain_exists(f->st, domain), STORE_OK);
	buf_free(&c.b);
}

static void test_reentrant_callbacks(void **state)
{
	struct fx *f = *state;
	assert_int_equal(store_domain_add(f->st, "a.test"), STORE_OK);
	assert_int_equal(store_domain_add(f->st, "b.test"), STORE_OK);
	assert_int_equal(store_domain_list(f->st, reenter_cb, f), STORE_OK);
}

static void test_concurrent(void **state)
{
	struct fx *f = *state;
	struct buf err = BUF_INIT;
	struct store *other = store_open(f->dir, &err);
	assert_non_null(other);
	setup_example(f);
	/* the other connection sees committed writes */
	assert_int_equal(store_domain_exists(other, "example.com"), STORE_OK);
	char id[UTIL_QID_LEN + 1];
	struct store_delivery d;
	const char *users[] = {"bob@example.com"};
	make_delivery(f, &d, id, "hi", users, NULL, 1);
	assert_int_equal(store_deliver_batch(f->st, &d, 1), STORE_OK);
	struct collect c = {BUF_INIT, 0};
	assert_int_equal(
	    store_mailbox_list(other, "bob@example.com", NULL, collect_msg, &c), STORE_OK);
	assert_int_equal(c.n, 1);
	/* both write alternately */
	assert_int_equal(store_user_add(other, "carol@example.com", HASH), STORE_OK);
	assert_resolves(f, "carol", "example.com", "carol@example.com");

	/* while a third party holds the write lock, reads go on ... */
	sqlite3 *db = raw_open(f);
	assert_int_equal(
	    sqlite3_exec(db,
	        "BEGIN IMMEDIATE; INSERT INTO domains(name, created) VALUES ('x.test', 0)", NULL,
	        NULL, NULL),
	    SQLITE_OK);
	assert_resolves(f, "bob", "example.com", "bob@example.com");
	assert_int_equal(store_domain_exists(other, "x.test"), STORE_NOTFOUND);
	/* ... and writers wait, then give up with STORE_BUSY (after busy_timeout) */
	assert_int_equal(store_deliver_batch(other, &d, 1), STORE_BUSY);
	assert_non_null(strstr(store_error(other), "locked"));
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_domain_exists(other, "x.test"), STORE_OK);
	/* and work again afterwards */
	assert_int_equal(store_deliver_batch(other, &d, 1), STORE_OK);
	collect_reset(&c);
	assert_int_equal(
	    store_mailbox_list(f->st, "bob@example.com", NULL, collect_msg, &c), STORE_OK);
	assert_int_equal(c.n, 2);
	store_close(other);
	buf_free(&c.b);
	buf_free(&err);
}

/* Two writer threads and a reader, each with its own connection: every
 * batch commits (writers wait for each other within busy_timeout) and the
 * reader sees the mailbox only grow. */
#define MT_BATCHES 30
#define MT_BATCH 10

struct mt {
	const char *dir;
	const char *user;
	int rc;
	uint32_t seen;
};

static void count_msg(void *arg, const struct store_msginfo *m)
{
	(*(uint32_t *)arg)++;
}

static void *mt_writer(void *arg)
{
	struct mt *m = arg;
	struct store *st = store_open(m->dir, NULL);
	if (st == NULL) {
		m->rc = STORE_ERR;
		return NULL;
	}
	char ids[MT_BATCH][UTIL_QID_LEN + 1];
	struct store_delivery d[MT_BATCH];
	const char *users[] = {m->user};
	for (int b = 0; b < MT_BATCHES && m->rc == STORE_OK; b++) {
		for (int i = 0; i < MT_BATCH; i++) {
			util_queue_id(ids[i]);
			d[i] = (struct store_delivery){.blob = ids[i],
			    .size = 1,
			    .mail_from = "",
			    .users = users,
			    .nusers = 1};
		}
		m->rc = store_deliver_batch(st, d, MT_BATCH);
	}
	store_close(st);
	return NULL;
}

static void *mt_reader(void *arg)
{
	struct mt *m = arg;
	struct store *st = store_open(m->dir, NULL);
	if (st == NULL) {
		m->rc = STORE_ERR;
		return NULL;
	}
	int64_t deadline = util_now_ms() + 60000; /* a failed writer must not hang us */
	while (
	    m->rc == STORE_OK && m->seen < 2 * MT_BATCHES * MT_BATCH && util_now_ms() < deadline) {
		uint32_t n = 0;
		struct store_rcpt r;
		m->rc = store_resolve_rcpt(st, "bob", "example.com", &r);
		store_rcpt_free(&r);
		if (m->rc == STORE_OK)
			m->rc = store_mailbox_list(st, m->user, NULL, count_msg, &n);
		if (n < m->seen || n % MT_BATCH != 0) /* whole batches only, never fewer */
			m->rc = STORE_ERR;
		m->seen = n;
	}
	store_close(st);
	return NULL;
}

static void test_threads(void **state)
{
	struct fx *f = *state;
	setup_example(f);
	struct mt w1 = {f->dir, "bob@example.com", STORE_OK, 0};
	struct mt w2 = w1, r = w1;
	pthread_t t1, t2, t3;
	assert_int_equal(pthread_create(&t1, NULL, mt_writer, &w1), 0);
	assert_int_equal(pthread_create(&t2, NULL, mt_writer, &w2), 0);
	assert_int_equal(pthread_create(&t3, NULL, mt_reader, &r), 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	pthread_join(t3, NULL);
	assert_int_equal(w1.rc, STORE_OK);
	assert_int_equal(w2.rc, STORE_OK);
	assert_int_equal(r.rc, STORE_OK);
	assert_int_equal(r.seen, 2 * MT_BATCHES * MT_BATCH);
	uint32_t n = 0;
	assert_int_equal(
	    store_mailbox_list(f->st, "bob@example.com", NULL, count_msg, &n), STORE_OK);
	assert_int_equal(n, 2 * MT_BATCHES * MT_BATCH);
}

/* ---- the outbound queue ---- */

struct qseen {
	struct buf b; /* "id sender held n rcpt/status/attempts ..." per entry, ';'-joined */
	int n;
	struct store_queue_entry last;
};

static void collect_queue(void *arg, const struct store_queue_entry *e)
{
	struct qseen *q = arg;
	if (q->n++)
		buf_putc(&q->b, ';');
	buf_printf(&q->b, "%s %s %d %zu", e->id, e->sender, (int)e->held, e->nrcpts);
	for (size_t i = 0; i < e->nrcpts; i++)
		buf_printf(&q->b, " %s/%s/%lld", e->rcpts[i].rcpt, e->rcpts[i].status,
		    (long long)e->rcpts[i].attempts);
	q->last = *e; /* scalars only are used after the callback */
	q->last.id = q->last.sender = q->last.last_error = NULL;
	q->last.rcpts = NULL;
}

static void qseen_reset(struct qseen *q)
{
	buf_reset(&q->b);
	q->n = 0;
}

static void test_queue(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	setup_example(f);
	struct qseen q = {BUF_INIT, 0, {0}};
	struct collect c = {BUF_INIT, 0};
	char id1[UTIL_QID_LEN + 1], id2[UTIL_QID_LEN + 1], id3[UTIL_QID_LEN + 1], want[512];
	struct store_delivery d[3];
	const char *alice[] = {"Alice@example.com"};
	const char *r1[] = {"x@remote.test", "y@remote.test"};
	const char *r2[] = {"z@remote.test"};

	/* empty */
	assert_int_equal(store_queue_list(st, collect_queue, &q), STORE_OK);
	assert_int_equal(q.n, 0);

	/* id1: alice and two remote; id2: remote only, null sender; id3: local only */
	make_delivery(f, &d[0], id1, "one", alice, NULL, 1);
	d[0].remote = r1;
	d[0].nremote = 2;
	make_delivery(f, &d[1], id2, "two", NULL, NULL, 0);
	d[1].remote = r2;
	d[1].nremote = 1;
	d[1].mail_from = "";
	make_delivery(f, &d[2], id3, "three", alice, NULL, 1);
	time_t before = time(NULL);
	assert_int_equal(store_deliver_batch(st, d, 3), STORE_OK);

	assert_int_equal(store_queue_list(st, collect_queue, &q), STORE_OK);
	assert_int_equal(q.n, 2);
	char e1[256], e2[256];
	snprintf(e1, sizeof e1,
	    "%s sender@remote.test 0 2 x@remote.test/pending/0 y@remote.test/pending/0", id1);
	snprintf(e2, sizeof e2, "%s  0 1 z@remote.test/pending/0", id2);
	if (strcmp(id1, id2) < 0)
		snprintf(want, sizeof want, "%s;%s", e1, e2);
	else
		snprintf(want, sizeof want, "%s;%s", e2, e1);
	assert_string_equal(buf_cstr(&q.b), want); /* same second: by id */

	qseen_reset(&q);
	assert_int_equal(store_queue_get(st, id1, collect_queue, &q), STORE_OK);
	assert_string_equal(buf_cstr(&q.b), e1);
	assert_int_equal(q.last.size, 30);
	assert_true(q.last.created >= before && q.last.created <= time(NULL));
	assert_true(q.last.next_attempt == q.last.created);
	assert_int_equal(q.last.attempts, 0);
	assert_false(q.last.held);
	char bogus[UTIL_QID_LEN + 1];
	util_queue_id(bogus);
	assert_int_equal(store_queue_get(st, bogus, collect_queue, &q), STORE_NOTFOUND);
	assert_int_equal(store_queue_get(st, id3, collect_queue, &q), STORE_NOTFOUND);
	assert_int_equal(store_queue_get(st, "../etc", collect_queue, &q), STORE_INVALID);
	assert_int_equal(store_queue_get(st, NULL, collect_queue, &q), STORE_INVALID);

	/* retry: a future next_attempt becomes now */
	sqlite3 *db = raw_open(f);
	assert_int_equal(
	    sqlite3_exec(db, "UPDATE queue SET next_attempt = 4000000000", NULL, NULL, NULL),
	    SQLITE_OK);
	size_t n = 99;
	assert_int_equal(store_queue_retry(st, id1, &n), STORE_OK);
	assert_int_equal(n, 1);
	qseen_reset(&q);
	assert_int_equal(store_queue_get(st, id1, collect_queue, &q), STORE_OK);
	assert_true(q.last.next_attempt <= time(NULL));
	assert_int_equal(store_queue_retry(st, bogus, &n), STORE_NOTFOUND);
	assert_int_equal(n, 0);
	assert_int_equal(store_queue_retry(st, "bad id", NULL), STORE_INVALID);

	/* hold: idempotent, kept by retry --all, which takes the others */
	assert_int_equal(store_queue_hold(st, id2), STORE_OK);
	assert_int_equal(store_queue_hold(st, id2), STORE_OK);
	assert_int_equal(store_queue_hold(st, bogus), STORE_NOTFOUND);
	qseen_reset(&q);
	assert_int_equal(store_queue_get(st, id2, collect_queue, &q), STORE_OK);
	assert_true(q.last.held);
	assert_int_equal(store_queue_retry(st, NULL, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(
	    raw_int(db, "SELECT count(*) FROM queue WHERE next_attempt > 3000000000"), 1);
	/* retry of a held entry changes the time, not the hold */
	assert_int_equal(store_queue_retry(st, id2, NULL), STORE_OK);
	qseen_reset(&q);
	assert_int_equal(store_queue_get(st, id2, collect_queue, &q), STORE_OK);
	assert_true(q.last.held);
	assert_true(q.last.next_attempt <= time(NULL));
	/* release: not held, due now */
	assert_int_equal(
	    sqlite3_exec(db, "UPDATE queue SET next_attempt = 4000000000", NULL, NULL, NULL),
	    SQLITE_OK);
	assert_int_equal(store_queue_release(st, id2), STORE_OK);
	assert_int_equal(store_queue_release(st, id2), STORE_OK);
	assert_int_equal(store_queue_release(st, bogus), STORE_NOTFOUND);
	qseen_reset(&q);
	assert_int_equal(store_queue_get(st, id2, collect_queue, &q), STORE_OK);
	assert_false(q.last.held);
	assert_true(q.last.next_attempt <= time(NULL));

	/* the admin actions are in the journey */
	assert_int_equal(store_event_list(st, id2, collect_event, &c), STORE_OK);
	assert_string_equal(
	    buf_cstr(&c.b), "queued:z@remote.test held: held: retry: released: released:");

	/* delete: rows and events; the blob goes only if no mailbox uses it */
	struct buf p1 = BUF_INIT, p2 = BUF_INIT;
	assert_int_equal(store_blob_path(st, id1, &p1), STORE_OK);
	assert_int_equal(store_blob_path(st, id2, &p2), STORE_OK);
	assert_int_equal(store_queue_delete(st, id2), STORE_OK);
	assert_int_equal(store_queue_get(st, id2, collect_queue, &q), STORE_NOTFOUND);
	assert_int_equal(store_queue_delete(st, id2), STORE_NOTFOUND);
	assert_int_equal(access(buf_cstr(&p2), F_OK), -1);
	snprintf(want, sizeof want, "SELECT count(*) FROM blobs WHERE id = '%s'", id2);
	assert_int_equal(raw_int(db, want), 0);
	assert_int_equal(store_queue_delete(st, id1), STORE_OK);
	assert_int_equal(access(buf_cstr(&p1), R_OK), 0);
	snprintf(want, sizeof want, "SELECT count(*) FROM blobs WHERE id = '%s'", id1);
	assert_int_equal(raw_int(db, want), 1);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM queue_rcpts"), 0);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM queue"), 0);
	collect_reset(&c);
	assert_int_equal(store_event_list(st, id1, collect_event, &c), STORE_OK);
	assert_non_null(strstr(buf_cstr(&c.b), "retry: retry: deleted:"));
	collect_reset(&c);
	assert_int_equal(
	    store_mailbox_list(st, "alice@example.com", NULL, collect_msg, &c), STORE_OK);
	assert_int_equal(c.n, 2);
	qseen_reset(&q);
	assert_int_equal(store_queue_list(st, collect_queue, &q), STORE_OK);
	assert_int_equal(q.n, 0);
	assert_int_equal(store_queue_delete(st, NULL), STORE_INVALID);

	sqlite3_close(db);
	buf_free(&p1);
	buf_free(&p2);
	buf_free(&c.b);
	buf_free(&q.b);
}

/* The delivery side: due work, recording an attempt, removal when final. */
static void test_queue_delivery(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	setup_example(f);
	char id1[UTIL_QID_LEN + 1], id2[UTIL_QID_LEN + 1], q[256];
	struct store_delivery d[2];
	const char *alice[] = {"Alice@example.com"};
	const char *r1[] = {"x@remote.test", "y@remote.test"};
	const char *r2[] = {"z@remote.test"};
	make_delivery(f, &d[0], id1, "one", alice, NULL, 1);
	d[0].remote = r1;
	d[0].nremote = 2;
	make_delivery(f, &d[1], id2, "two", NULL, NULL, 0);
	d[1].remote = r2;
	d[1].nremote = 1;
	assert_int_equal(store_deliver_batch(st, d, 2), STORE_OK);
	sqlite3 *db = raw_open(f);
	/* id1 is older than id2 */
	snprintf(q, sizeof q, "UPDATE queue SET created = created - 10 WHERE id = '%s'", id1);
	assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
	snprintf(q, sizeof q,
	    "UPDATE queue_rcpts SET notify = 'FAILURE', orcpt = 'rfc822;x@remote.test'"
	    " WHERE rcpt = 'x@remote.test'");
	assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);

	struct store_due *due;
	size_t n;
	time_t now = time(NULL);
	assert_int_equal(store_queue_due(st, now, 10, &due, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_string_equal(due[0].id, id1);
	assert_string_equal(due[1].id, id2);
	assert_string_equal(due[0].sender, "sender@remote.test");
	assert_null(due[0].envid);
	assert_false(due[0].warned);
	assert_int_equal(due[0].nrcpts, 2);
	assert_string_equal(due[0].rcpts[0].rcpt, "x@remote.test");
	assert_string_equal(due[0].rcpts[0].notify, "FAILURE");
	assert_string_equal(due[0].rcpts[0].orcpt, "rfc822;x@remote.test");
	assert_null(due[0].rcpts[1].notify);
	assert_int_equal(access(due[0].path, R_OK), 0);
	store_due_free(due, n);
	/* the limit takes the oldest; held entries and future ones are not due */
	assert_int_equal(store_queue_due(st, now, 1, &due, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(due[0].id, id1);
	store_due_free(due, n);
	assert_int_equal(store_queue_hold(st, id1), STORE_OK);
	assert_int_equal(store_queue_due(st, now, 10, &due, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(due[0].id, id2);
	store_due_free(due, n);
	assert_int_equal(store_queue_release(st, id1), STORE_OK);

	/* an attempt: x sent, y deferred; next attempt later; events recorded */
	struct store_rcpt_update u1[] = {
	    {"x@remote.test", "sent", "250 ok"},
	    {"y@remote.test", "pending", "451 4.7.1 later"},
	};
	struct store_event_rec ev[] = {
	    {"attempt", NULL, "host=mx.remote.test ip=127.0.0.9 tls=no reply=\"451\""},
	    {"sent", "x@remote.test", "reply=\"250 ok\""},
	};
	struct store_attempt a = {id1, u1, 2, now + 100, "451 4.7.1 later", false, ev, 2};
	bool removed = true;
	assert_int_equal(store_queue_attempt(st, &a, &removed), STORE_OK);
	assert_false(removed);
	assert_int_equal(store_queue_due(st, now, 10, &due, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(due[0].id, id2);
	store_due_free(due, n);
	assert_int_equal(store_queue_due(st, now + 100, 10, &due, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(due[0].nrcpts, 1); /* only the pending one */
	assert_string_equal(due[0].rcpts[0].rcpt, "y@remote.test");
	assert_int_equal(due[0].rcpts[0].attempts, 1);
	assert_int_equal(due[0].attempts, 1);
	store_due_free(due, n);
	snprintf(q, sizeof q,
	    "SELECT count(*) FROM queue WHERE id = '%s' AND attempts = 1"
	    " AND last_error = '451 4.7.1 later'",
	    id1);
	assert_int_equal(raw_int(db, q), 1);
	struct collect c = {BUF_INIT, 0};
	assert_int_equal(store_event_list(st, id1, collect_event, &c), STORE_OK);
	assert_non_null(strstr(buf_cstr(&c.b), "attempt: sent:x@remote.test"));

	/* the last one fails: the entry goes, the blob stays (alice has it) */
	struct store_rcpt_update u2[] = {{"y@remote.test", "failed", "550 no"}};
	struct store_attempt a2 = {id1, u2, 1, now + 200, NULL, true, NULL, 0};
	assert_int_equal(store_queue_attempt(st, &a2, &removed), STORE_OK);
	assert_true(removed);
	snprintf(q, sizeof q, "SELECT count(*) FROM blobs WHERE id = '%s'", id1);
	assert_int_equal(raw_int(db, q), 1);
	assert_int_equal(store_queue_attempt(st, &a2, &removed), STORE_NOTFOUND);

	/* id2 (remote only): final -> the blob row and file go */
	struct buf p2 = BUF_INIT;
	assert_int_equal(store_blob_path(st, id2, &p2), STORE_OK);
	assert_int_equal(store_queue_finish(st, id2, &removed), STORE_OK);
	assert_false(removed); /* still pending */
	snprintf(q, sizeof q, "UPDATE queue_rcpts SET status = 'sent' WHERE queue_id = '%s'", id2);
	assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(store_queue_finish(st, id2, &removed), STORE_OK);
	assert_true(removed);
	assert_int_equal(access(buf_cstr(&p2), F_OK), -1);
	snprintf(q, sizeof q, "SELECT count(*) FROM blobs WHERE id = '%s'", id2);
	assert_int_equal(raw_int(db, q), 0);
	assert_int_equal(store_queue_finish(st, id2, &removed), STORE_NOTFOUND);
	assert_int_equal(store_queue_finish(st, "../x", &removed), STORE_INVALID);
	struct store_rcpt_update bad[] = {{"y@remote.test", "maybe", NULL}};
	struct store_attempt a3 = {id1, bad, 1, now, NULL, false, NULL, 0};
	assert_int_equal(store_queue_attempt(st, &a3, NULL), STORE_INVALID);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM queue"), 0);

	sqlite3_close(db);
	buf_free(&p2);
	buf_free(&c.b);
}

/* store_queue_attempts: several entries in one transaction; an entry that
 * is gone is reported and does not stop the others; an invalid one stops
 * all of them before anything is written. */
static void test_queue_attempts_batch(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	setup_example(f);
	char id[3][UTIL_QID_LEN + 1];
	struct store_delivery d[3];
	const char *r[3][1] = {{"a@remote.test"}, {"b@remote.test"}, {"c@remote.test"}};
	for (int i = 0; i < 3; i++) {
		make_delivery(f, &d[i], id[i], "batch", NULL, NULL, 0);
		d[i].remote = r[i];
		d[i].nremote = 1;
	}
	assert_int_equal(store_deliver_batch(st, d, 3), STORE_OK);
	sqlite3 *db = raw_open(f);
	time_t now = time(NULL);
	struct store_rcpt_update sent[] = {{"a@remote.test", "sent", "250 ok"}};
	struct store_rcpt_update later[] = {{"b@remote.test", "pending", "451 later"}};
	struct store_rcpt_update gone[] = {{"c@remote.test", "sent", "250 ok"}};
	struct store_event_rec ev[] = {{"sent", "a@remote.test", "reply=\"250 ok\""}};
	/* c is deleted by the admin meanwhile */
	assert_int_equal(store_queue_delete(st, id[2]), STORE_OK);
	struct store_attempt a[3] = {
	    {id[0], sent, 1, now + 60, NULL, false, ev, 1},
	    {id[1], later, 1, now + 60, "451 later", false, NULL, 0},
	    {id[2], gone, 1, now + 60, NULL, false, NULL, 0},
	};
	int rcs[3];
	bool removed[3] = {false, true, true};
	assert_int_equal(store_queue_attempts(st, a, 3, rcs, removed), STORE_OK);
	assert_int_equal(rcs[0], STORE_OK);
	assert_true(removed[0]);
	assert_int_equal(rcs[1], STORE_OK);
	assert_false(removed[1]);
	assert_int_equal(rcs[2], STORE_NOTFOUND);
	assert_false(removed[2]);
	char q[256];
	snprintf(q, sizeof q, "SELECT count(*) FROM queue WHERE id = '%s'", id[0]);
	assert_int_equal(raw_int(db, q), 0);
	snprintf(q, sizeof q,
	    "SELECT count(*) FROM queue WHERE id = '%s' AND attempts = 1 AND last_error = "
	    "'451 later'",
	    id[1]);
	assert_int_equal(raw_int(db, q), 1);
	snprintf(q, sizeof q, "SELECT count(*) FROM events WHERE queue_id = '%s' AND kind = 'sent'",
	    id[0]);
	assert_int_equal(raw_int(db, q), 1);
	/* one invalid update: it is skipped and said so, the other is written */
	struct store_rcpt_update bad[] = {{"b@remote.test", "maybe", NULL}};
	struct store_attempt b[2] = {
	    {id[1], bad, 1, now + 120, NULL, false, NULL, 0},
	    {id[1], later, 1, now + 120, "451 again", false, NULL, 0},
	};
	assert_int_equal(store_queue_attempts(st, b, 2, rcs, NULL), STORE_OK);
	assert_int_equal(rcs[0], STORE_INVALID);
	assert_int_equal(rcs[1], STORE_OK);
	snprintf(q, sizeof q, "SELECT attempts FROM queue WHERE id = '%s'", id[1]);
	assert_int_equal(raw_int(db, q), 2);
	/* only invalid ones: nothing written */
	assert_int_equal(store_queue_attempts(st, b, 1, rcs, NULL), STORE_OK);
	assert_int_equal(rcs[0], STORE_INVALID);
	assert_int_equal(raw_int(db, q), 2);
	assert_int_equal(store_queue_attempts(st, NULL, 0, rcs, NULL), STORE_OK);
	sqlite3_close(db);
}

/* store_user_canonical: the address as stored, whatever case it is asked in. */
static void test_user_canonical(void **state)
{
	struct fx *f = *state;
	struct buf b = BUF_INIT;
	setup_example(f);
	assert_int_equal(store_user_canonical(f->st, "alice@example.com", &b), STORE_OK);
	assert_string_equal(buf_cstr(&b), "Alice@example.com");
	assert_int_equal(store_user_canonical(f->st, "ALICE@EXAMPLE.COM", &b), STORE_OK);
	assert_string_equal(buf_cstr(&b), "Alice@example.com");
	assert_int_equal(store_user_canonical(f->st, "Bob@Example.Com", &b), STORE_OK);
	assert_string_equal(buf_cstr(&b), "bob@example.com");
	assert_int_equal(store_user_canonical(f->st, "zed@example.com", &b), STORE_NOTFOUND);
	assert_int_equal(store_user_canonical(f->st, "alice@nowhere.test", &b), STORE_NOTLOCAL);
	assert_int_equal(store_user_canonical(f->st, "alice", &b), STORE_INVALID);
	assert_int_equal(store_user_canonical(f->st, NULL, &b), STORE_INVALID);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_migrations, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_users, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_user_canonical, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_aliases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resolve_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_blob_path, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deliver_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_domain_cascade, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reentrant_callbacks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_user_owns, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue_delivery, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue_attempts_batch, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
