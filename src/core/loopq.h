/*
 * loopq.h - hand work back to an event loop from other threads.
 *
 * A helper thread (fsync, database commit, password check) finishes a job and
 * posts it to the loop that asked for it; the loop runs the item's function
 * on its own thread, where the session lives. Items are intrusive: embed a
 * struct loopq_item in the job and recover the job with container_of-style
 * arithmetic (LOOPQ_CONTAINER).
 */
#ifndef DAKIYA_LOOPQ_H
#define DAKIYA_LOOPQ_H

#include <pthread.h>
#include <stddef.h>

struct event_base;
struct event;

struct loopq_item {
	void (*fn)(struct loopq_item *it); /* runs on the loop's thread */
	struct loopq_item *next;
};

struct loopq {
	pthread_mutex_t mu;
	struct loopq_item *head, *tail;
	struct event *ev; /* activated from other threads; runs on the loop */
};

#define LOOPQ_CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Bind q to base (call on the loop's thread, after evthread_use_pthreads). */
int loopq_init(struct loopq *q, struct event_base *base);
void loopq_free(struct loopq *q);
/* From any thread: run it->fn(it) on q's loop soon, in posting order. */
void loopq_post(struct loopq *q, struct loopq_item *it);

#endif
