/*
 * delivery.h - the queue runner: outbound delivery of queued messages to
 * other domains' MX hosts, with retries, delay warnings and bounces.
 *
 * One delivery thread with its own event loop, store connection, DNS
 * resolver and TLS client context. It scans the queue for due entries every
 * delivery.scan_interval seconds, and at once when delivery_notify() says
 * that the accept path committed messages with remote recipients.
 *
 * For each entry: the pending recipients are grouped by domain; each
 * domain's delivery targets (dns_targets) are tried host by host, address
 * by address, with one smtp_client per connection, until every recipient of
 * the domain is sent or failed or every address was tried. A failed TLS
 * handshake is retried once on the same address in the clear.
 *
 * Connections: at most delivery.connections in total and
 * delivery.connections_per_domain to one domain; a message that finds no
 * free slot waits for one. After a message a connection is kept for
 * connection_cache_time seconds (up to connection_reuse_max messages) and
 * the next message to the same domain goes over it (RSET, MAIL). A kept
 * connection that turns out broken is replaced at once, in the same
 * attempt.
 *
 * Outcomes per recipient: 2xx sent; 5xx failed (bounce); 4xx, connection
 * trouble and DNS trouble: pending, next attempt after retry_min doubling
 * per attempt up to retry_max; still pending after max_lifetime: failed.
 * Null MX fails at once with 5.1.10, a domain without a usable address
 * (NXDOMAIN, NODATA) with 5.1.2. One delay warning after delay_warning if
 * NOTIFY allows it.
 *
 * Bounces (RFC 3464, dsn_build) go to the envelope sender with the null
 * sender: into the sender's mailbox if the sender is local, else into the
 * queue. A message with the null sender is never bounced (the recipient is
 * logged and dropped). The bounce is made durable BEFORE the attempt is
 * recorded, so a crash in between repeats the bounce rather than losing it.
 *
 * Crash safety: entries being worked on are kept in memory only; after a
 * restart they are due again, so a message may go twice, never not at all.
 * Attempts that end about the same time are recorded in one transaction
 * (store_queue_attempts); a crash before that commit repeats them.
 */
#ifndef DAKIYA_DELIVERY_H
#define DAKIYA_DELIVERY_H

#include "core/buf.h"

struct config;
struct delivery;

/* Start the delivery thread (after evthread_use_pthreads()). cfg must
 * outlive it. NULL with the reason in err. */
struct delivery *delivery_start(const struct config *cfg, struct buf *err);
/* Wake the delivery thread to scan the queue now. Thread-safe; an
 * accept_notify_fn (arg is the struct delivery). */
void delivery_notify(void *arg);
/* Stop the thread: connections in progress are dropped (their entries are
 * due again at the next start). Accepts NULL. */
void delivery_stop(struct delivery *d);

#endif
