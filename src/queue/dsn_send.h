/*
 * dsn_send.h - hand a built delivery status notification (dsn_build) to its
 * recipient, the original envelope sender, durably: the report is written
 * as a blob file (fdatasync, directory fsync) and committed like accepted
 * mail, with the null sender, into the sender's mailboxes if the sender is
 * local (and to the remote targets of a local alias), else into the queue.
 *
 * Blocking (fsync, a store transaction): call it from a thread that may
 * block (the delivery thread, the accept committer), never from a session's
 * loop.
 */
#ifndef DAKIYA_QUEUE_DSN_SEND_H
#define DAKIYA_QUEUE_DSN_SEND_H

#include <stdbool.h>

#include "core/buf.h"

struct store;

/* Deliver msg (a complete message) to address to on behalf of the message
 * orig_id (for log lines). 0 when durable; *remote says whether something
 * went into the queue (so the caller wakes delivery). -1 on failure, logged
 * (nothing is left behind); a local address that does not exist is dropped
 * with a log line (-1). */
int dsn_send(struct store *st, const char *orig_id, const char *to, struct buf *msg, bool *remote);

#endif
