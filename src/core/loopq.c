/*
 * loopq.c - a mutex-protected list of items plus one libevent event that is
 * activated when the list becomes non-empty (see loopq.h).
 */
#include "core/loopq.h"

#include <event2/event.h>
#include <stdbool.h>

static void loopq_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loopq *q = arg;
	pthread_mutex_lock(&q->mu);
	struct loopq_item *it = q->head;
	q->head = q->tail = NULL;
	pthread_mutex_unlock(&q->mu);
	while (it) {
		struct loopq_item *next = it->next;
		it->next = NULL;
		it->fn(it);
		it = next;
	}
}

int loopq_init(struct loopq *q, struct event_base *base)
{
	pthread_mutex_init(&q->mu, NULL);
	q->head = q->tail = NULL;
	q->ev = event_new(base, -1, EV_PERSIST, loopq_cb, q);
	return q->ev ? 0 : -1;
}

void loopq_free(struct loopq *q)
{
	if (q->ev)
		event_free(q->ev);
	q->ev = NULL;
	pthread_mutex_destroy(&q->mu);
}

void loopq_post(struct loopq *q, struct loopq_item *it)
{
	pthread_mutex_lock(&q->mu);
	it->next = NULL;
	bool was_empty = q->head == NULL;
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	pthread_mutex_unlock(&q->mu);
	if (was_empty)
		event_active(q->ev, EV_READ, 0);
}
