/*
 * util.c - ids, time, directories (see util.h).
 */
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

void util_random(void *p, size_t n)
{
	unsigned char *q = p;
	while (n > 0) {
		ssize_t r = getrandom(q, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			abort();
		}
		q += r;
		n -= (size_t)r;
	}
}

int64_t util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void make_id(char *out, atomic_uint *ctr, atomic_bool *seeded)
{
	if (!atomic_load(seeded)) {
		unsigned seed;
		util_random(&seed, sizeof seed);
		unsigned expect = 0;
		atomic_compare_exchange_strong(ctr, &expect, seed);
		atomic_store(seeded, true);
	}
	unsigned c = atomic_fetch_add(ctr, 1);
	uint64_t ms = (uint64_t)util_now_ms();
	/* 11 hex digits of milliseconds (good until year 2527), 5 of counter */
	snprintf(out, UTIL_QID_LEN + 1, "%011llx%05x", (unsigned long long)(ms & 0xfffffffffffULL),
	    c & 0xfffffu);
}

void util_queue_id(char *out)
{
	static atomic_uint ctr;
	static atomic_bool seeded;
	make_id(out, &ctr, &seeded);
}

void util_session_id(char *out)
{
	static atomic_uint ctr;
	static atomic_bool seeded;
	make_id(out, &ctr, &seeded);
}

int util_mkdir_p(const char *path, mode_t mode)
{
	size_t n = strlen(path);
	char *p = malloc(n + 1);
	if (p == NULL)
		return -1;
	memcpy(p, path, n + 1);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST) {
			free(p);
			return -1;
		}
		*s = '/';
	}
	int r = mkdir(p, mode);
	free(p);
	if (r < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int util_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

int util_base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

void util_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

bool util_streq_ci(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

bool util_domain_within(const char *name, const char *domain)
{
	size_t nl = strlen(name), dl = strlen(domain);
	return strcasecmp(name, domain) == 0 ||
	       (nl > dl && name[nl - dl - 1] == '.' && strcasecmp(name + nl - dl, domain) == 0);
}

int util_drop_privileges(const char *user, struct buf *err)
{
	if (user == NULL || *user == '\0')
		return 0;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		buf_printf(err,
		    "no such user \"%s\" (config key user); create it, or set user = \"\"", user);
		return -1;
	}
	if (geteuid() != 0) {
		if (geteuid() == pw->pw_uid)
			return 0;
		buf_printf(err,
		    "cannot switch to user %s: not started as root; start as root or "
		    "set user = \"\"",
		    user);
		return -1;
	}
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		buf_printf(err, "cannot switch to user %s: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0)
		abort(); /* the switch did not stick */
	log_info("-", "event=privileges-dropped user=%s uid=%u", user, (unsigned)pw->pw_uid);
	return 0;
}
