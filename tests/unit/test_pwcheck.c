/*
 * test_pwcheck.c - unit tests of password verification, the check pool and
 * the failed-login throttle (pwcheck.h).
 *
 * Hashes are made in the test with crypt_gensalt_rn + crypt_rn. The pool
 * runs end to end: a temporary store with one user, a real libevent loop
 * that receives the results through a loopq, and a timer on that loop that
 * must keep firing while the checks run. The throttle is driven with a fake
 * clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <crypt.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "auth/pwcheck.h"
#include "core/buf.h"
#include "core/loopq.h"
#include "core/util.h"
#include "store/store.h"

/* A crypt(3) hash of pw with a fresh salt of the given scheme and cost. */
static char *make_hash(const char *prefix, unsigned long count, const char *pw)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	assert_non_null(crypt_gensalt_rn(prefix, count, NULL, 0, salt, sizeof salt));
	struct crypt_data *cd = calloc(1, sizeof *cd);
	assert_non_null(cd);
	const char *h = crypt_rn(pw, salt, cd, (int)sizeof *cd);
	assert_non_null(h);
	assert_true(h[0] == '$');
	char *r = strdup(h);
	free(cd);
	return r;
}

/* ---- pwcheck_verify_hash ---- */

static void check_scheme(const char *prefix, unsigned long count)
{
	char *h = make_hash(prefix, count, "correct horse");
	assert_true(strncmp(h, prefix, strlen(prefix)) == 0);
	assert_true(pwcheck_verify_hash("correct horse", h));
	assert_false(pwcheck_verify_hash("correct hors", h));
	assert_false(pwcheck_verify_hash("correct horse ", h));
	assert_false(pwcheck_verify_hash("Correct horse", h));
	assert_false(pwcheck_verify_hash("", h));
	assert_false(pwcheck_verify_hash(NULL, h));
	/* a damaged stored hash never matches */
	size_t n = strlen(h);
	char *d = strdup(h);
	d[n - 1] = d[n - 1] == 'A' ? 'B' : 'A';
	assert_false(pwcheck_verify_hash("correct horse", d));
	d[n - 1] = '\0';
	assert_false(pwcheck_verify_hash("correct horse", d));
	free(d);
	size_t m = n + 2;
	d = malloc(m);
	snprintf(d, m, "%sA", h);
	assert_false(pwcheck_verify_hash("correct horse", d));
	free(d);
	free(h);
}

static void test_verify_yescrypt(void **state)
{
	check_scheme("$y$", 0);
}
static void test_verify_bcrypt(void **state)
{
	check_scheme("$2b$", 5);
}
static void test_verify_sha512(void **state)
{
	check_scheme("$6$", 1000);
}

static void test_verify_2y(void **state)
{
	/* $2y$ (PHP, Dovecot) is the same algorithm as $2b$ */
	char *h = make_hash("$2y$", 5, "pw");
	assert_memory_equal(h, "$2y$", 4);
	assert_true(pwcheck_verify_hash("pw", h));
	assert_false(pwcheck_verify_hash("pW", h));
	free(h);
}

static void test_verify_never_matches(void **state)
{
	static const char *const bad[] = {
	    "*", "!", "", "!!", "*LK*", "x", "$", "$y$", "$6$", "$2b$", "$y$$$", "$6$salt$",
	    "!$6$salt$hash", /* a locked account (shadow style) */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_false(pwcheck_verify_hash("", bad[i]));
		assert_false(pwcheck_verify_hash("pw", bad[i]));
	}
	assert_false(pwcheck_verify_hash("pw", NULL));
	/* a locked copy of a real hash */
	char *h = make_hash("$6$", 1000, "pw");
	size_t n = strlen(h) + 2;
	char *locked = malloc(n);
	snprintf(locked, n, "!%s", h);
	assert_false(pwcheck_verify_hash("pw", locked));
	free(locked);
	free(h);
	/* weak schemes are refused even with the right password */
	h = make_hash("$1$", 0, "pw");
	assert_false(pwcheck_verify_hash("pw", h));
	free(h);
	/* an over-long hash string */
	char big[600];
	memset(big, 'a', sizeof big);
	memcpy(big, "$6$", 3);
	big[sizeof big - 1] = '\0';
	assert_false(pwcheck_verify_hash("pw", big));
}

/* ---- the pool ---- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct harness {
	struct event_base *base;
	struct loopq q;
	struct pwcheck_pool *pool;
	int pending;
	/* the timer that shows the loop stays responsive */
	struct event *tick;
	int ticks;
	double last_tick, max_gap;
};

struct result {
	struct harness *h;
	int done;
	enum pwcheck_result res;
	char canonical[128];
	double submitted, finished;
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct harness *h = arg;
	double t = now_s();
	if (h->ticks++ > 0 && t - h->last_tick > h->max_gap)
		h->max_gap = t - h->last_tick;
	h->last_tick = t;
}

static void on_result(struct pwcheck_req *req, void *arg)
{
	struct result *r = arg;
	assert_null(req->password); /* wiped as soon as it was checked */
	r->done++;
	r->res = req->result;
	r->finished = now_s();
	r->canonical[0] = '\0';
	if (req->result == PWCHECK_OK) {
		assert_non_null(req->canonical);
		snprintf(r->canonical, sizeof r->canonical, "%s", req->canonical);
	} else {
		assert_null(req->canonical);
	}
	pwcheck_req_free(req);
	if (--r->h->pending == 0)
		event_base_loopbreak(r->h->base);
}

static void submit(struct harness *h, struct result *r, const char *user, const char *pw)
{
	struct pwcheck_req *req = pwcheck_req_new(user, pw);
	assert_non_null(req);
	memset(r, 0, sizeof *r);
	r->h = h;
	r->submitted = now_s();
	req->q = &h->q;
	req->cb = on_result;
	req->arg = r;
	h->pending++;
	pwcheck_submit(h->pool, req);
}

/* Run the loop until every submitted request has its callback (max 60 s). */
static void run(struct harness *h)
{
	double start = now_s();
	while (h->pending > 0) {
		struct timeval tv = {1, 0};
		event_base_loopexit(h->base, &tv);
		event_base_dispatch(h->base);
		if (now_s() - start > 60)
			fail_msg("pwcheck callbacks did not arrive");
	}
}

/* One sequential check of user/pw, which must FAIL; the time it took. */
static double time_check(struct harness *h, const char *user, const char *pw)
{
	struct result r;
	submit(h, &r, user, pw);
	run(h);
	assert_int_equal(r.done, 1);
	assert_int_equal(r.res, PWCHECK_FAIL);
	return r.finished - r.submitted;
}

static double min_d(double a, double b)
{
	return a < b ? a : b;
}

static void test_pool(void **state)
{
	assert_int_equal(evthread_use_pthreads(), 0);
	char dir[64];
	snprintf(dir, sizeof dir, "/tmp/dakiya-test-pwcheck-XXXXXX");
	assert_non_null(mkdtemp(dir));
	struct buf err = BUF_INIT;
	struct store *st = store_open(dir, &err);
	assert_non_null(st);
	char *hash = make_hash("$y$", 0, "right pw");
	assert_int_equal(store_domain_add(st, "example.com"), STORE_OK);
	assert_int_equal(store_user_add(st, "Alice@Example.com", hash), STORE_OK);
	free(hash);
	hash = make_hash("$2b$", 5, "bob pw");
	assert_int_equal(store_user_add(st, "bob@example.com", hash), STORE_OK);
	free(hash);
	assert_int_equal(store_user_add(st, "locked@example.com", "!"), STORE_OK);

	struct harness h = {0};
	h.base = event_base_new();
	assert_non_null(h.base);
	assert_int_equal(loopq_init(&h.q, h.base), 0);
	h.pool = pwcheck_pool_new(dir, 2, &err);
	if (h.pool == NULL)
		fail_msg("pwcheck_pool_new: %s", buf_cstr(&err));
	h.tick = event_new(h.base, -1, EV_PERSIST, on_tick, &h);
	struct timeval every = {0, 2000};
	event_add(h.tick, &every);

	/* one at a time, for the timing of each */
	struct result ok, bad, ci, bob, locked;
	submit(&h, &ok, "alice@example.com", "right pw");
	run(&h);
	assert_int_equal(ok.done, 1);
	assert_int_equal(ok.res, PWCHECK_OK);
	assert_string_equal(ok.canonical, "Alice@example.com");

	/* a wrong password, an unknown user, an unknown domain, a locked user:
	 * all FAIL, and in comparable time (the fastest of 3 rounds each,
	 * interleaved, so that a loaded machine does not make this flaky) */
	double t_real = 1e9, t_unknown = 1e9, t_nodomain = 1e9, t_locked = 1e9;
	for (int i = 0; i < 3; i++) {
		t_real = min_d(t_real, time_check(&h, "alice@example.com", "wrong pw"));
		t_unknown = min_d(t_unknown, time_check(&h, "zed@example.com", "right pw"));
		t_nodomain = min_d(t_nodomain, time_check(&h, "alice@nowhere.test", "right pw"));
		t_locked = min_d(t_locked, time_check(&h, "locked@example.com", "!"));
	}
	printf("# wrong password %.1f ms, unknown user %.1f ms, unknown domain %.1f ms, "
	       "locked %.1f ms\n",
	    t_real * 1e3, t_unknown * 1e3, t_nodomain * 1e3, t_locked * 1e3);
	assert_true(t_unknown > 0.3 * t_real);
	assert_true(t_nodomain > 0.3 * t_real);
	assert_true(t_locked > 0.3 * t_real);

	/* many at once: the loop keeps ticking meanwhile */
	struct result many[8];
	h.ticks = 0;
	h.max_gap = 0;
	double start = now_s();
	for (size_t i = 0; i < 8; i++)
		submit(&h, &many[i], "alice@EXAMPLE.com", i % 2 ? "right pw" : "nope");
	submit(&h, &bad, "not-an-address", "right pw");
	submit(&h, &ci, "ALICE@EXAMPLE.COM", "right pw");
	submit(&h, &bob, "Bob@example.com", "bob pw");
	submit(&h, &locked, "locked@example.com", "");
	run(&h);
	double busy = now_s() - start;
	for (size_t i = 0; i < 8; i++) {
		assert_int_equal(many[i].done, 1);
		assert_int_equal(many[i].res, i % 2 ? PWCHECK_OK : PWCHECK_FAIL);
	}
	assert_int_equal(bad.res, PWCHECK_FAIL);
	assert_int_equal(ci.res, PWCHECK_OK);
	assert_string_equal(ci.canonical, "Alice@example.com");
	assert_int_equal(bob.res, PWCHECK_OK);
	assert_string_equal(bob.canonical, "bob@example.com");
	assert_int_equal(locked.res, PWCHECK_FAIL);
	printf("# 12 checks in %.1f ms; %d ticks, largest gap %.1f ms\n", busy * 1e3, h.ticks,
	    h.max_gap * 1e3);
	/* a 2 ms timer kept firing: had the loop run the checks itself, it would
	 * have been stuck for the whole batch */
	assert_true(h.ticks >= 5);
	assert_true(h.max_gap < busy / 2);

	/* the store fails: a temporary failure, not a wrong password */
	store_close(st);
	char path[128];
	snprintf(path, sizeof path, "%s/dakiya.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(
	    sqlite3_exec(db, "ALTER TABLE users RENAME TO users_gone", NULL, NULL, NULL),
	    SQLITE_OK);
	struct result tf;
	submit(&h, &tf, "alice@example.com", "right pw");
	run(&h);
	assert_int_equal(tf.res, PWCHECK_TEMPFAIL);
	assert_int_equal(
	    sqlite3_exec(db, "ALTER TABLE users_gone RENAME TO users", NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);

	/* free drains the queue: every request still gets its callback */
	struct result drain[6];
	for (size_t i = 0; i < 6; i++)
		submit(&h, &drain[i], "alice@example.com", i % 2 ? "right pw" : "x");
	pwcheck_pool_free(h.pool);
	h.pool = NULL;
	run(&h);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(drain[i].done, 1);
		assert_int_equal(drain[i].res, i % 2 ? PWCHECK_OK : PWCHECK_FAIL);
	}

	pwcheck_pool_free(NULL);
	event_free(h.tick);
	loopq_free(&h.q);
	event_base_free(h.base);
	buf_free(&err);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_pool_bad_dir(void **state)
{
	struct buf err = BUF_INIT;
	struct pwcheck_pool *p = pwcheck_pool_new("/dev/null/dakiya", 0, &err);
	assert_null(p);
	assert_true(err.len > 0);
	buf_free(&err);
}

static void test_req(void **state)
{
	struct pwcheck_req *r = pwcheck_req_new("a@b.test", "secret");
	assert_non_null(r);
	assert_string_equal(r->user, "a@b.test");
	assert_string_equal(r->password, "secret");
	assert_null(r->canonical);
	pwcheck_req_free(r);
	pwcheck_req_free(NULL);
}

/* ---- throttle ---- */

static const unsigned char ip_a[4] = {192, 0, 2, 1};
static const unsigned char ip_b[4] = {192, 0, 2, 2};
static const unsigned char ip6_a[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};

static void test_throttle_delays(void **state)
{
	struct auth_throttle *t = auth_throttle_new(64, 100, 3600);
	assert_non_null(t);
	static const unsigned want[] = {1000, 1000, 2000, 4000, 8000, 15000, 15000, 15000};
	time_t now = 1000000;
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		assert_int_equal(auth_throttle_fail(t, ip_a, 4, now + (time_t)i), want[i]);
	for (int i = 0; i < 100; i++)
		assert_int_equal(auth_throttle_fail(t, ip_a, 4, now + 10), 15000);
	/* other keys are independent: a v4 address and a v6 with the same first bytes */
	assert_int_equal(auth_throttle_fail(t, ip_b, 4, now), 1000);
	unsigned char v6[16] = {192, 0, 2, 1};
	assert_int_equal(auth_throttle_fail(t, v6, 16, now), 1000);
	assert_int_equal(auth_throttle_fail(t, ip6_a, 16, now), 1000);
	assert_int_equal(auth_throttle_fail(t, ip6_a, 16, now), 1000);
	assert_int_equal(auth_throttle_fail(t, ip6_a, 16, now), 2000);
	/* a key we cannot track: the base delay, never blocked */
	assert_int_equal(auth_throttle_fail(t, ip_a, 0, now), 1000);
	assert_int_equal(auth_throttle_fail(t, ip6_a, 17, now), 1000);
	assert_false(auth_throttle_blocked(t, ip_a, 0, now));
	auth_throttle_success(t, ip_a, 0);
	auth_throttle_free(t);
	auth_throttle_free(NULL);
}

static void test_throttle_block_and_window(void **state)
{
	struct auth_throttle *t = auth_throttle_new(64, 5, 600);
	time_t now = 5000;
	for (int i = 0; i < 4; i++) {
		auth_throttle_fail(t, ip_a, 4, now + i);
		assert_false(auth_throttle_blocked(t, ip_a, 4, now + i));
	}
	auth_throttle_fail(t, ip_a, 4, now + 4); /* the 5th, last at now + 4 */
	assert_true(auth_throttle_blocked(t, ip_a, 4, now + 4));
	assert_false(auth_throttle_blocked(t, ip_b, 4, now + 4));
	assert_true(auth_throttle_blocked(t, ip_a, 4, now + 4 + 599));
	/* the window counts from the last failure */
	assert_false(auth_throttle_blocked(t, ip_a, 4, now + 4 + 600));
	assert_int_equal(auth_throttle_fail(t, ip_a, 4, now + 4 + 600), 1000);
	assert_false(auth_throttle_blocked(t, ip_a, 4, now + 4 + 600));

	/* slow guessing inside the window keeps counting */
	now = 100000;
	for (int i = 0; i < 5; i++)
		auth_throttle_fail(t, ip_b, 4, now + 500 * i);
	assert_true(auth_throttle_blocked(t, ip_b, 4, now + 2000));
	/* expiry without a blocked() call in between: fail() starts afresh */
	assert_int_equal(auth_throttle_fail(t, ip_b, 4, now + 2000 + 600), 1000);
	/* a clock that steps back does not expire anything */
	assert_int_equal(auth_throttle_fail(t, ip_b, 4, now), 1000);
	assert_int_equal(auth_throttle_fail(t, ip_b, 4, now), 2000);
	auth_throttle_free(t);

	/* block_after 0: never blocked, delays still grow */
	t = auth_throttle_new(4, 0, 60);
	for (int i = 0; i < 10; i++)
		auth_throttle_fail(t, ip_a, 4, 1);
	assert_false(auth_throttle_blocked(t, ip_a, 4, 1));
	assert_int_equal(auth_throttle_fail(t, ip_a, 4, 1), 15000);
	auth_throttle_free(t);
}

static void test_throttle_success(void **state)
{
	struct auth_throttle *t = auth_throttle_new(8, 3, 600);
	for (int i = 0; i < 3; i++)
		auth_throttle_fail(t, ip_a, 4, 10);
	auth_throttle_fail(t, ip_b, 4, 10);
	auth_throttle_fail(t, ip_b, 4, 10);
	assert_true(auth_throttle_blocked(t, ip_a, 4, 11));
	auth_throttle_success(t, ip_a, 4);
	assert_false(auth_throttle_blocked(t, ip_a, 4, 11));
	assert_int_equal(auth_throttle_fail(t, ip_a, 4, 12), 1000);
	assert_int_equal(auth_throttle_fail(t, ip_a, 4, 12), 1000);
	/* other IPs keep their count */
	assert_int_equal(auth_throttle_fail(t, ip_b, 4, 12), 2000);
	auth_throttle_success(t, ip6_a, 16); /* unknown: nothing happens */
	auth_throttle_free(t);
}

static void ip_n(unsigned char ip[4], unsigned n)
{
	ip[0] = 10;
	ip[1] = (unsigned char)(n >> 16);
	ip[2] = (unsigned char)(n >> 8);
	ip[3] = (unsigned char)n;
}

static void test_throttle_eviction(void **state)
{
	struct auth_throttle *t = auth_throttle_new(4, 2, 600);
	unsigned char ip[5][4];
	for (unsigned i = 0; i < 5; i++)
		ip_n(ip[i], i + 1);
	/* 1 and 2 blocked; 3 and 4 one failure each; 1 refreshed last */
	auth_throttle_fail(t, ip[0], 4, 100);
	auth_throttle_fail(t, ip[0], 4, 100);
	auth_throttle_fail(t, ip[1], 4, 101);
	auth_throttle_fail(t, ip[1], 4, 101);
	auth_throttle_fail(t, ip[2], 4, 102);
	auth_throttle_fail(t, ip[3], 4, 103);
	auth_throttle_fail(t, ip[0], 4, 104);
	assert_true(auth_throttle_blocked(t, ip[0], 4, 105));
	assert_true(auth_throttle_blocked(t, ip[1], 4, 105));
	/* full: a fifth IP evicts the one whose last failure is oldest (2) */
	auth_throttle_fail(t, ip[4], 4, 105);
	assert_false(auth_throttle_blocked(t, ip[1], 4, 105));
	assert_true(auth_throttle_blocked(t, ip[0], 4, 105));
	assert_int_equal(auth_throttle_fail(t, ip[0], 4, 106), 4000); /* 4th failure kept */
	/* 2 comes back fresh, evicting 3 */
	assert_int_equal(auth_throttle_fail(t, ip[1], 4, 107), 1000);
	assert_int_equal(auth_throttle_fail(t, ip[2], 4, 108), 1000); /* evicts 4 */
	assert_false(auth_throttle_blocked(t, ip[3], 4, 108));
	auth_throttle_fail(t, ip[4], 4, 109); /* 5 was kept: its second failure */
	assert_true(auth_throttle_blocked(t, ip[4], 4, 109));
	auth_throttle_free(t);

	/* a flood of addresses through a small table stays bounded and sane */
	t = auth_throttle_new(16, 2, 600);
	for (unsigned i = 0; i < 100000; i++) {
		unsigned char x[4];
		ip_n(x, i % 5000);
		auth_throttle_fail(t, x, 4, (time_t)i);
		if (i % 7 == 0)
			auth_throttle_success(t, x, 4);
		if (i % 11 == 0)
			(void)auth_throttle_blocked(t, x, 4, (time_t)i + 700);
	}
	/* the newest address is there; an old one is gone */
	unsigned char x[4];
	ip_n(x, 99999 % 5000);
	auth_throttle_fail(t, x, 4, 100000);
	assert_true(auth_throttle_blocked(t, x, 4, 100000));
	ip_n(x, 1);
	auth_throttle_fail(t, x, 4, 100000);
	assert_false(auth_throttle_blocked(t, x, 4, 100000));
	auth_throttle_free(t);
}

struct thr_arg {
	struct auth_throttle *t;
	unsigned id;
};

static void *thr_worker(void *arg)
{
	struct thr_arg *a = arg;
	for (unsigned i = 0; i < 20000; i++) {
		unsigned char ip[4];
		ip_n(ip, (a->id * 7 + i) % 64);
		auth_throttle_fail(a->t, ip, 4, 1000 + (time_t)(i / 100));
		(void)auth_throttle_blocked(a->t, ip, 4, 1000 + (time_t)(i / 100));
		if (i % 13 == 0)
			auth_throttle_success(a->t, ip, 4);
	}
	return NULL;
}

static void test_throttle_threads(void **state)
{
	struct auth_throttle *t = auth_throttle_new(32, 5, 30);
	pthread_t th[4];
	struct thr_arg a[4];
	for (unsigned i = 0; i < 4; i++) {
		a[i] = (struct thr_arg){t, i};
		assert_int_equal(pthread_create(&th[i], NULL, thr_worker, &a[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	auth_throttle_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verify_yescrypt),
	    cmocka_unit_test(test_verify_bcrypt),
	    cmocka_unit_test(test_verify_sha512),
	    cmocka_unit_test(test_verify_2y),
	    cmocka_unit_test(test_verify_never_matches),
	    cmocka_unit_test(test_req),
	    cmocka_unit_test(test_pool_bad_dir),
	    cmocka_unit_test(test_pool),
	    cmocka_unit_test(test_throttle_delays),
	    cmocka_unit_test(test_throttle_block_and_window),
	    cmocka_unit_test(test_throttle_success),
	    cmocka_unit_test(test_throttle_eviction),
	    cmocka_unit_test(test_throttle_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
