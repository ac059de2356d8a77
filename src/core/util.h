/*
 * util.h - small helpers shared by all modules: ids, time, files.
 */
#ifndef DAKIYA_UTIL_H
#define DAKIYA_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UTIL_QID_LEN 16
/* A new queue id: 16 lower-case hex characters, time-ordered and unique
 * within this host (milliseconds, then a per-process counter seeded at
 * random). out must hold UTIL_QID_LEN + 1 bytes. */
void util_queue_id(char *out);
/* Same shape, for session ids. */
void util_session_id(char *out);

int64_t util_now_ms(void);
/* Fill p with n random bytes (getrandom); aborts if the kernel cannot. */
void util_random(void *p, size_t n);

/* mkdir -p with mode; 0 or -1 (errno set). */
int util_mkdir_p(const char *path, mode_t mode);
/* fsync a directory by path; 0 or -1 (errno set). */
int util_fsync_dir(const char *path);
/* Lower-case ASCII letters in place. */
void util_lower(char *s);
/* The 6-bit value of a base64 character (RFC 4648 4), -1 for any other. */
int util_base64_value(unsigned char c);
/* Case-insensitive ASCII compare of two NUL-terminated strings. */
bool util_streq_ci(const char *a, const char *b);
/* Is name the domain itself or a name below it (case-insensitively)? */
bool util_domain_within(const char *name, const char *domain);

/* Become user (name; "" or NULL = stay who we are): supplementary groups,
 * gid, uid, irrevocably. Already that user: nothing to do. Not root: an
 * error unless already that user. 0, or -1 with the reason in err. */
struct buf;
int util_drop_privileges(const char *user, struct buf *err);

#endif
