/*
 * pwcheck.c - password checks on a pool of helper threads, and the
 * throttle of failed logins (see pwcheck.h).
 *
 * The pool: a mutex + condvar protected FIFO of requests; each thread owns
 * one store connection (opened by pwcheck_pool_new, then used only by that
 * thread). A request's result is posted to its loopq; the callback runs on
 * the session's loop. pwcheck_pool_free lets the threads drain the queue
 * before they exit, so every submitted request gets its callback.
 *
 * Security:
 *  - an unknown user (or a name the store refuses, or a user whose hash is
 *    locked or of a scheme we refuse) is checked against a dummy yescrypt
 *    hash made at pool start with the default cost, so that the time does
 *    not tell which addresses exist;
 *  - the password is wiped and freed by the worker as soon as it has been
 *    checked (req->password is NULL in the callback);
 *  - hashes are compared in constant time; only yescrypt, bcrypt and
 *    sha512-crypt hashes can match ("*", "!", "" and anything else never do);
 *  - nothing about the password or the login name is logged here.
 *
 * The throttle: a fixed-size array of entries, chained in hash buckets
 * (seeded hash of the IP bytes) and in a list ordered by last failure, so
 * that finding, refreshing and evicting the oldest entry are O(1).
 */
#include "auth/pwcheck.h"

#include <assert.h>
#include <crypt.h>
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store.h"

#define PWCHECK_THREADS_DEFAULT 2
#define PWCHECK_HASH_MAX 512 /* longer stored hashes are malformed */

/* ---- hash verification ---- */

/* The schemes we accept; crypt_rn supports more (DES, MD5, ...) but those
 * are too weak to keep. */
static bool hash_scheme_ok(const char *hash)
{
	static const char *const prefixes[] = {"$y$", "$2b$", "$2y$", "$6$"};
	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
		if (strncmp(hash, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

bool pwcheck_verify_hash(const char *password, const char *hash)
{
	if (password == NULL || hash == NULL || !hash_scheme_ok(hash))
		return false;
	size_t hlen = strlen(hash);
	if (hlen >= PWCHECK_HASH_MAX)
		return false;
	struct crypt_data *cd = calloc(1, sizeof *cd); /* ~32 KB: not on the stack */
	if (cd == NULL)
		return false;
	bool ok = false;
	const char *h = crypt_rn(password, hash, cd, (int)sizeof *cd);
	/* crypt_rn returns NULL (or a "*" string) for a setting it cannot parse */
	if (h != NULL && h[0] == '$' && strlen(h) == hlen)
		ok = CRYPTO_memcmp(h, hash, hlen) == 0;
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	return ok;
}

/* ---- requests ---- */

static void free_secret(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

struct pwcheck_req *pwcheck_req_new(const char *user, const char *password)
{
	struct pwcheck_req *r = calloc(1, sizeof *r);
	if (r == NULL)
		return NULL;
	r->user = strdup(user);
	r->password = strdup(password);
	r->result = PWCHECK_FAIL;
	if (r->user == NULL || r->password == NULL) {
		pwcheck_req_free(r);
		return NULL;
	}
	return r;
}

void pwcheck_req_free(struct pwcheck_req *req)
{
	if (req == NULL)
		return;
	free_secret(req->user);
	free_secret(req->password);
	free(req->canonical);
	free(req);
}

/* ---- the pool ---- */

struct pwcheck_worker {
	struct pwcheck_pool *pool;
	struct store *st;
	pthread_t th;
	bool started;
};

struct pwcheck_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pwcheck_req *head, *tail;
	bool stop;
	unsigned n;
	struct pwcheck_worker *w;
	char *dummy_hash; /* yescrypt hash of a random password, default cost */
};

/* Runs on the session's loop. */
static void pwcheck_deliver(struct loopq_item *it)
{
	struct pwcheck_req *req = LOOPQ_CONTAINER(it, struct pwcheck_req, item);
	req->cb(req, req->arg);
}

/* The store's complaint, escaped (not with log_str: its per-thread buffers
 * would outlive our threads). */
static void log_store_error(struct store *st)
{
	struct buf e = BUF_INIT;
	const char *msg = store_error(st);
	log_escape(&e, msg, strlen(msg), 200);
	log_warn("-", "pwcheck store=error reason=%s", buf_cstr(&e));
	buf_free(&e);
}

/* One check on a worker thread: fills result and canonical. */
static void pwcheck_run(struct pwcheck_worker *w, struct pwcheck_req *req)
{
	struct buf hash = BUF_INIT;
	buf_init(&hash, PWCHECK_HASH_MAX);
	req->result = PWCHECK_FAIL;
	int rc = store_user_get_hash(w->st, req->user, &hash);
	switch (rc) {
	case STORE_OK:
		/* a locked ("!", "*") or unusable hash costs a dummy check too, so
		 * that such accounts do not stand out by a quick answer */
		if (!hash_scheme_ok(buf_cstr(&hash)))
			(void)pwcheck_verify_hash(req->password, w->pool->dummy_hash);
		else if (pwcheck_verify_hash(req->password, buf_cstr(&hash)))
			req->result = PWCHECK_OK;
		break;
	case STORE_NOTFOUND:
	case STORE_NOTLOCAL:
	case STORE_INVALID:
		/* spend the same time as for a real user, then fail */
		(void)pwcheck_verify_hash(req->password, w->pool->dummy_hash);
		break;
	case STORE_BUSY:
	case STORE_ERR:
		log_store_error(w->st);
		req->result = PWCHECK_TEMPFAIL;
		break;
	default:
		fatalx("pwcheck: unexpected store code %d", rc);
	}
	buf_free(&hash);
	free_secret(req->password);
	req->password = NULL;

	if (req->result != PWCHECK_OK)
		return;
	struct buf canon = BUF_INIT;
	rc = store_user_canonical(w->st, req->user, &canon);
	if (rc == STORE_OK && (req->canonical = buf_steal(&canon)) != NULL)
		return;
	if (rc == STORE_BUSY || rc == STORE_ERR || rc == STORE_OK /* out of memory */) {
		if (rc != STORE_OK)
			log_store_error(w->st);
		req->result = PWCHECK_TEMPFAIL;
	} else {
		req->result = PWCHECK_FAIL; /* deleted since the hash was read */
	}
	buf_free(&canon);
}

static void *pwcheck_thread(void *arg)
{
	struct pwcheck_worker *w = arg;
	struct pwcheck_pool *p = w->pool;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (p->head == NULL && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		struct pwcheck_req *req = p->head;
		if (req == NULL) { /* stopping, and nothing left to do */
			pthread_mutex_unlock(&p->mu);
			break;
		}
		p->head = req->next;
		if (p->head == NULL)
			p->tail = NULL;
		pthread_mutex_unlock(&p->mu);

		req->next = NULL;
		req->canonical = NULL;
		pwcheck_run(w, req);
		req->item.fn = pwcheck_deliver;
		loopq_post(req->q, &req->item);
	}
	return NULL;
}

/* The dummy hash: yescrypt with the default cost (as `dakiya user add`
 * uses) of a random password nobody knows. */
static char *make_dummy_hash(struct buf *err)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt) == NULL) {
		buf_printf(err, "pwcheck: cannot make a yescrypt salt: %s", strerror(errno));
		return NULL;
	}
	unsigned char rnd[24];
	char pw[2 * sizeof rnd + 1];
	util_random(rnd, sizeof rnd);
	for (size_t i = 0; i < sizeof rnd; i++) {
		pw[2 * i] = "0123456789abcdef"[rnd[i] >> 4];
		pw[2 * i + 1] = "0123456789abcdef"[rnd[i] & 15];
	}
	pw[2 * sizeof rnd] = '\0';
	struct crypt_data *cd = calloc(1, sizeof *cd);
	char *res = NULL;
	if (cd == NULL) {
		buf_puts(err, "pwcheck: out of memory");
	} else {
		const char *h = crypt_rn(pw, salt, cd, (int)sizeof *cd);
		if (h == NULL || h[0] != '$')
			buf_printf(err, "pwcheck: cannot hash with yescrypt: %s", strerror(errno));
		else if ((res = strdup(h)) == NULL)
			buf_puts(err, "pwcheck: out of memory");
		explicit_bzero(cd, sizeof *cd);
		free(cd);
	}
	explicit_bzero(rnd, sizeof rnd);
	explicit_bzero(pw, sizeof pw);
	return res;
}

struct pwcheck_pool *pwcheck_pool_new(const char *data_dir, unsigned threads, struct buf *err)
{
	struct pwcheck_pool *p = calloc(1, sizeof *p);
	if (p == NULL) {
		buf_puts(err, "pwcheck: out of memory");
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->n = threads ? threads : PWCHECK_THREADS_DEFAULT;
	p->w = calloc(p->n, sizeof *p->w);
	if (p->w == NULL) {
		buf_puts(err, "pwcheck: out of memory");
		goto fail;
	}
	if ((p->dummy_hash = make_dummy_hash(err)) == NULL)
		goto fail;
	for (unsigned i = 0; i < p->n; i++) {
		p->w[i].pool = p;
		if ((p->w[i].st = store_open(data_dir, err)) == NULL)
			goto fail;
	}
	for (unsigned i = 0; i < p->n; i++) {
		int rc = pthread_create(&p->w[i].th, NULL, pwcheck_thread, &p->w[i]);
		if (rc != 0) {
			buf_printf(err, "pwcheck: cannot start a thread: %s", strerror(rc));
			goto fail;
		}
		p->w[i].started = true;
	}
	return p;
fail:
	pwcheck_pool_free(p);
	return NULL;
}

void pwcheck_pool_free(struct pwcheck_pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; p->w != NULL && i < p->n; i++) {
		if (p->w[i].started)
			pthread_join(p->w[i].th, NULL);
		store_close(p->w[i].st);
	}
	assert(p->head == NULL); /* drained by the threads (or never submitted to) */
	free(p->w);
	free(p->dummy_hash);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

void pwcheck_submit(struct pwcheck_pool *p, struct pwcheck_req *req)
{
	assert(req->q != NULL && req->cb != NULL);
	req->next = NULL;
	pthread_mutex_lock(&p->mu);
	assert(!p->stop);
	if (p->tail)
		p->tail->next = req;
	else
		p->head = req;
	p->tail = req;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* ---- throttle ---- */

#define THR_NONE UINT32_MAX
#define THR_IP_MAX 16
#define THR_DELAY_MS 1000u
#define THR_DELAY_CAP_MS 15000u

struct thr_entry {
	unsigned char ip[THR_IP_MAX];
	uint8_t iplen;
	unsigned fails;
	time_t last;           /* time of the last failure */
	uint32_t hnext;        /* next in the bucket chain */
	uint32_t lprev, lnext; /* the age list, oldest first */
};

struct auth_throttle {
	pthread_mutex_t mu;
	struct thr_entry *e;
	size_t max;
	uint32_t *bucket;
	size_t nbucket;          /* a power of two */
	uint32_t oldest, newest; /* ends of the age list */
	uint32_t free_head;      /* unused entries, chained through hnext */
	uint64_t seed;
	unsigned block_after;
	unsigned window_s;
};

/* FNV-1a with a random per-table seed: bucket positions are not predictable
 * from outside, and chains are short because the table is bounded. */
static size_t thr_hash(const struct auth_throttle *t, const unsigned char *ip, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ t->seed;
	for (size_t i = 0; i < n; i++) {
		h ^= ip[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 29;
	return (size_t)h & (t->nbucket - 1);
}

struct auth_throttle *auth_throttle_new(size_t max_entries, unsigned block_after, unsigned window_s)
{
	if (max_entries == 0)
		max_entries = 1;
	if (max_entries >= THR_NONE)
		max_entries = THR_NONE - 1;
	struct auth_throttle *t = calloc(1, sizeof *t);
	if (t == NULL)
		return NULL;
	t->max = max_entries;
	t->nbucket = 1;
	while (t->nbucket < 2 * max_entries)
		t->nbucket *= 2;
	t->e = calloc(t->max, sizeof *t->e);
	t->bucket = malloc(t->nbucket * sizeof *t->bucket);
	if (t->e == NULL || t->bucket == NULL) {
		free(t->e);
		free(t->bucket);
		free(t);
		return NULL;
	}
	for (size_t i = 0; i < t->nbucket; i++)
		t->bucket[i] = THR_NONE;
	for (size_t i = 0; i < t->max; i++)
		t->e[i].hnext = i + 1 < t->max ? (uint32_t)(i + 1) : THR_NONE;
	t->free_head = 0;
	t->oldest = t->newest = THR_NONE;
	util_random(&t->seed, sizeof t->seed);
	t->block_after = block_after;
	t->window_s = window_s;
	pthread_mutex_init(&t->mu, NULL);
	return t;
}

void auth_throttle_free(struct auth_throttle *t)
{
	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->mu);
	free(t->e);
	free(t->bucket);
	free(t);
}

static bool thr_key_ok(size_t iplen)
{
	return iplen > 0 && iplen <= THR_IP_MAX;
}

/* True if entry e's failures are older than the window (it counts as gone). */
static bool thr_expired(const struct auth_throttle *t, const struct thr_entry *e, time_t now)
{
	return now > e->last && (uint64_t)(now - e->last) >= t->window_s;
}

static uint32_t thr_find(const struct auth_throttle *t, const void *ip, size_t iplen)
{
	for (uint32_t i = t->bucket[thr_hash(t, ip, iplen)]; i != THR_NONE; i = t->e[i].hnext)
		if (t->e[i].iplen == iplen && memcmp(t->e[i].ip, ip, iplen) == 0)
			return i;
	return THR_NONE;
}

static void thr_list_unlink(struct auth_throttle *t, uint32_t i)
{
	struct thr_entry *e = &t->e[i];
	if (e->lprev != THR_NONE)
		t->e[e->lprev].lnext = e->lnext;
	else
		t->oldest = e->lnext;
	if (e->lnext != THR_NONE)
		t->e[e->lnext].lprev = e->lprev;
	else
		t->newest = e->lprev;
}

static void thr_list_append(struct auth_throttle *t, uint32_t i)
{
	struct thr_entry *e = &t->e[i];
	e->lnext = THR_NONE;
	e->lprev = t->newest;
	if (t->newest != THR_NONE)
		t->e[t->newest].lnext = i;
	else
		t->oldest = i;
	t->newest = i;
}

/* Take entry i out of the table and onto the free list. */
static void thr_remove(struct auth_throttle *t, uint32_t i)
{
	struct thr_entry *e = &t->e[i];
	uint32_t *pp = &t->bucket[thr_hash(t, e->ip, e->iplen)];
	while (*pp != i)
		pp = &t->e[*pp].hnext;
	*pp = e->hnext;
	thr_list_unlink(t, i);
	memset(e, 0, sizeof *e);
	e->hnext = t->free_head;
	t->free_head = i;
}

/* A new entry for ip, evicting the oldest if the table is full. */
static uint32_t thr_insert(struct auth_throttle *t, const void *ip, size_t iplen)
{
	if (t->free_head == THR_NONE)
		thr_remove(t, t->oldest);
	uint32_t i = t->free_head;
	struct thr_entry *e = &t->e[i];
	t->free_head = e->hnext;
	memset(e, 0, sizeof *e);
	memcpy(e->ip, ip, iplen);
	e->iplen = (uint8_t)iplen;
	size_t b = thr_hash(t, ip, iplen);
	e->hnext = t->bucket[b];
	t->bucket[b] = i;
	thr_list_append(t, i);
	return i;
}

static unsigned thr_delay(unsigned fails)
{
	if (fails <= 2)
		return THR_DELAY_MS;
	unsigned shift = fails - 2;
	if (shift >= 5) /* 1000 << 4 is already past the cap */
		return THR_DELAY_CAP_MS;
	unsigned d = THR_DELAY_MS << shift;
	return d < THR_DELAY_CAP_MS ? d : THR_DELAY_CAP_MS;
}

unsigned auth_throttle_fail(struct auth_throttle *t, const void *ip, size_t iplen, time_t now)
{
	if (!thr_key_ok(iplen))
		return THR_DELAY_MS;
	pthread_mutex_lock(&t->mu);
	uint32_t i = thr_find(t, ip, iplen);
	if (i != THR_NONE && thr_expired(t, &t->e[i], now))
		t->e[i].fails = 0;
	if (i == THR_NONE)
		i = thr_insert(t, ip, iplen);
	struct thr_entry *e = &t->e[i];
	if (e->fails < UINT_MAX / 2)
		e->fails++;
	if (now > e->last)
		e->last = now;
	thr_list_unlink(t, i); /* now the newest */
	thr_list_append(t, i);
	unsigned d = thr_delay(e->fails);
	pthread_mutex_unlock(&t->mu);
	return d;
}

bool auth_throttle_blocked(struct auth_throttle *t, const void *ip, size_t iplen, time_t now)
{
	if (!thr_key_ok(iplen) || t->block_after == 0)
		return false;
	pthread_mutex_lock(&t->mu);
	uint32_t i = thr_find(t, ip, iplen);
	bool blocked = false;
	if (i != THR_NONE) {
		if (thr_expired(t, &t->e[i], now))
			thr_remove(t, i);
		else
			blocked = t->e[i].fails >= t->block_after;
	}
	pthread_mutex_unlock(&t->mu);
	return blocked;
}

void auth_throttle_success(struct auth_throttle *t, const void *ip, size_t iplen)
{
	if (!thr_key_ok(iplen))
		return;
	pthread_mutex_lock(&t->mu);
	uint32_t i = thr_find(t, ip, iplen);
	if (i != THR_NONE)
		thr_remove(t, i);
	pthread_mutex_unlock(&t->mu);
}
