/*
 * cmd_queue.c - dakiya queue list | show | retry | delete | hold | release:
 * the operator's view of the outbound queue (store.h "the outbound queue").
 *
 * list --json prints exactly the contract's
 *   [{"id","sender","recipients":[...],"attempts","next_attempt","last_error"}]
 * with fields added after those ("held", "created", "size"); show --json
 * prints one such object with "recipient_status" and "events" added. Times
 * in JSON are seconds since the epoch (events: "time_ms" and an ISO 8601
 * "time" in UTC).
 *
 * Security: senders, recipients, replies and event texts come from peers;
 * in text output every control character and invalid UTF-8 byte is shown
 * as '?', so nothing can send escape sequences to the operator's terminal.
 * JSON escapes them instead (json.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "store/store.h"

const char cli_help_queue[] =
    "NAME\n"
    "    dakiya queue - the messages waiting for delivery to other domains\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] queue list [--json]\n"
    "    dakiya [-c FILE] queue show ID [--json]\n"
    "    dakiya [-c FILE] queue retry ID | --all\n"
    "    dakiya [-c FILE] queue hold ID\n"
    "    dakiya [-c FILE] queue release ID\n"
    "    dakiya [-c FILE] queue delete ID\n"
    "\n"
    "DESCRIPTION\n"
    "    A message accepted for recipients in other domains waits in the queue, under\n"
    "    its queue id (the ID in \"250 2.0.0 Ok: queued as ID\" and in its Received:\n"
    "    header), until every such recipient has been delivered or has failed.\n"
    "\n"
    "    The server's delivery thread tries each due message: it looks up the\n"
    "    recipients' MX hosts ('dakiya mx DOMAIN' shows them) and hands the message\n"
    "    over; a temporary failure (4xx, no connection, DNS trouble) is retried after\n"
    "    delivery.retry_min seconds, doubling up to delivery.retry_max; a permanent one\n"
    "    (5xx, null MX, no such domain) and anything still pending after\n"
    "    delivery.max_lifetime bounce to the sender. Every attempt is recorded.\n"
    "\n"
    "    list     Every queued message, oldest first: id, size in bytes, arrival, next\n"
    "             attempt, attempts so far, sender, then its recipients with their\n"
    "             status (pending, sent, failed), whether it is held, and the last error.\n"
    "             With --json a list of objects:\n"
    "                 {\"id\":\"...\",\"sender\":\"a@b\",\"recipients\":[\"c@d\"],\"attempts\":0,\n"
    "                  \"next_attempt\":1700000000,\"last_error\":\"\",\"held\":false,\n"
    "                  \"created\":1700000000,\"size\":1234}\n"
    "             (sender \"\" is the null sender <>; times are seconds since the epoch).\n"
    "    show     One message: the envelope, each recipient's status, attempts and last\n"
    "             reply, and everything recorded about it (the events of its journey).\n"
    "             With --json the object of list plus \"recipient_status\":\n"
    "             [{\"rcpt\",\"status\",\"attempts\",\"last_reply\"}] and \"events\":\n"
    "             [{\"time\",\"time_ms\",\"kind\",\"rcpt\",\"text\"}].\n"
    "    retry    Make the message due now (with --all: every message not held).\n"
    "    hold     Keep the message from being delivered until it is released.\n"
    "    release  Undo hold; the message is due now.\n"
    "    delete   Remove the message from the queue without telling its sender (no\n"
    "             bounce). Its stored body goes too, unless a local mailbox holds the\n"
    "             same message.\n"
    "\n"
    "    All of them work while the server runs, and each change is recorded as an\n"
    "    event of the message (see 'queue show').\n"
    "\n"
    "OPTIONS\n"
    "    --all       retry: every message that is not held\n"
    "    --json      list, show: print JSON as above\n"
    "    -c FILE     the configuration file (see 'dakiya --help')\n"
    "    -h, --help  print this manual\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya queue list\n"
    "    dakiya queue show 0123456789ABCDEF --json\n"
    "    dakiya queue hold 0123456789ABCDEF\n"
    "    dakiya queue retry --all\n";

/* ---- text helpers ---- */

/* Append s for a terminal: control characters (C0, DEL, C1) and invalid
 * UTF-8 bytes become '?'. */
static void tty_put(struct buf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = strlen((const char *)p);
	for (size_t i = 0; i < n;) {
		size_t l = json_utf8_len(p + i, n - i);
		if (l == 0) {
			buf_putc(out, '?');
			i++;
		} else if (l == 1) {
			buf_putc(out, p[i] < 0x20 || p[i] == 0x7f ? '?' : (char)p[i]);
			i++;
		} else if (l == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0) {
			buf_putc(out, '?');
			i += 2;
		} else {
			buf_append(out, p + i, l);
			i += l;
		}
	}
}

static void put_time(struct buf *out, time_t t)
{
	char s[32];
	struct tm tm;
	if (localtime_r(&t, &tm) == NULL || strftime(s, sizeof s, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(s, sizeof s, "?");
	buf_printf(out, "%-19s", s);
}

static void put_sender(struct buf *out, const char *sender)
{
	buf_putc(out, '<');
	tty_put(out, sender);
	buf_putc(out, '>');
}

/* ---- JSON ---- */

/* The contract's fields, then the added ones; the object is left open. */
static void json_entry(struct json *j, const struct store_queue_entry *e)
{
	json_object_begin(j);
	json_key(j, "id");
	json_string(j, e->id);
	json_key(j, "sender");
	json_string(j, e->sender);
	json_key(j, "recipients");
	json_array_begin(j);
	for (size_t i = 0; i < e->nrcpts; i++)
		json_string(j, e->rcpts[i].rcpt);
	json_array_end(j);
	json_key(j, "attempts");
	json_int(j, e->attempts);
	json_key(j, "next_attempt");
	json_int(j, (int64_t)e->next_attempt);
	json_key(j, "last_error");
	json_string(j, e->last_error);
	json_key(j, "held");
	json_bool(j, e->held);
	json_key(j, "created");
	json_int(j, (int64_t)e->created);
	json_key(j, "size");
	json_uint(j, e->size);
}

/* ---- list ---- */

struct list_ctx {
	struct cli *cli;
	struct buf out;
	struct json j;
	size_t n, nrcpts;
};

static void list_cb(void *arg, const struct store_queue_entry *e)
{
	struct list_ctx *c = arg;
	c->n++;
	c->nrcpts += e->nrcpts;
	if (c->cli->json) {
		json_entry(&c->j, e);
		json_object_end(&c->j);
		return;
	}
	struct buf *o = &c->out;
	tty_put(o, e->id);
	buf_printf(o, "  %9llu  ", (unsigned long long)e->size);
	put_time(o, e->created);
	buf_puts(o, "  ");
	put_time(o, e->next_attempt);
	buf_printf(o, "  %5lld  ", (long long)e->attempts);
	put_sender(o, e->sender);
	buf_putc(o, '\n');
	for (size_t i = 0; i < e->nrcpts; i++) {
		buf_puts(o, "    to: ");
		tty_put(o, e->rcpts[i].rcpt);
		buf_puts(o, " (");
		tty_put(o, e->rcpts[i].status);
		buf_puts(o, ")\n");
	}
	if (e->held)
		buf_puts(o, "    held: yes ('dakiya queue release ID' lets it go)\n");
	if (e->last_error[0] != '\0') {
		buf_puts(o, "    last error: ");
		tty_put(o, e->last_error);
		buf_putc(o, '\n');
	}
}

static int queue_list(struct cli *cli, struct store *st)
{
	struct list_ctx c;
	memset(&c, 0, sizeof c);
	c.cli = cli;
	buf_init(&c.out, 0);
	json_init(&c.j, &c.out);
	if (cli->json)
		json_array_begin(&c.j);
	else
		buf_printf(&c.out, "%-16s  %9s  %-19s  %-19s  %5s  %s\n", "QUEUE ID", "SIZE",
		    "ARRIVED", "NEXT ATTEMPT", "TRIES", "SENDER");
	int rc = store_queue_list(st, list_cb, &c);
	if (rc == STORE_OK) {
		if (cli->json) {
			json_array_end(&c.j);
			buf_putc(&c.out, '\n');
		} else if (c.n == 0) {
			buf_reset(&c.out);
			buf_puts(&c.out, "the queue is empty\n");
		} else {
			buf_printf(&c.out, "-- %zu message%s, %zu recipient%s\n", c.n,
			    c.n == 1 ? "" : "s", c.nrcpts, c.nrcpts == 1 ? "" : "s");
		}
		rc = cli_print_buf(&c.out);
	} else {
		rc = cli_store_fail(cli, rc, "cannot list the queue");
	}
	buf_free(&c.out);
	return rc;
}

/* ---- show ---- */

struct show_ctx {
	struct cli *cli;
	struct buf out;
	struct json j;
	bool found;
};

static void show_cb(void *arg, const struct store_queue_entry *e)
{
	struct show_ctx *c = arg;
	c->found = true;
	if (c->cli->json) {
		json_entry(&c->j, e);
		json_key(&c->j, "recipient_status");
		json_array_begin(&c->j);
		for (size_t i = 0; i < e->nrcpts; i++) {
			json_object_begin(&c->j);
			json_key(&c->j, "rcpt");
			json_string(&c->j, e->rcpts[i].rcpt);
			json_key(&c->j, "status");
			json_string(&c->j, e->rcpts[i].status);
			json_key(&c->j, "attempts");
			json_int(&c->j, e->rcpts[i].attempts);
			json_key(&c->j, "last_reply");
			json_string(&c->j, e->rcpts[i].last_reply);
			json_object_end(&c->j);
		}
		json_array_end(&c->j);
		return; /* the events follow; the caller closes the object */
	}
	struct buf *o = &c->out;
	buf_puts(o, "id:            ");
	tty_put(o, e->id);
	buf_puts(o, "\nsender:        ");
	put_sender(o, e->sender);
	buf_printf(o, "\nsize:          %llu bytes\narrived:       ", (unsigned long long)e->size);
	put_time(o, e->created);
	buf_puts(o, "\nnext attempt:  ");
	put_time(o, e->next_attempt);
	buf_printf(o,
	    "\nattempts:      %lld\nheld:          %s\nlast error:    ", (long long)e->attempts,
	    e->held ? "yes" : "no");
	tty_put(o, e->last_error[0] ? e->last_error : "-");
	buf_puts(o, "\nrecipients:\n");
	for (size_t i = 0; i < e->nrcpts; i++) {
		buf_puts(o, "  ");
		tty_put(o, e->rcpts[i].rcpt);
		buf_puts(o, "  ");
		tty_put(o, e->rcpts[i].status);
		buf_printf(o, "  attempts=%lld", (long long)e->rcpts[i].attempts);
		if (e->rcpts[i].last_reply[0] != '\0') {
			buf_puts(o, "  last reply: ");
			tty_put(o, e->rcpts[i].last_reply);
		}
		buf_putc(o, '\n');
	}
	buf_puts(o, "events:\n");
}

static void event_cb(
    void *arg, int64_t time_ms, const char *kind, const char *rcpt, const char *text)
{
	struct show_ctx *c = arg;
	char when[40];
	struct tm tm;
	time_t t = (time_t)(time_ms / 1000);
	bool json = c->cli->json;
	if ((json ? gmtime_r(&t, &tm) : localtime_r(&t, &tm)) == NULL ||
	    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		snprintf(when, sizeof when, "?");
	if (json) {
		size_t l = strlen(when);
		snprintf(when + l, sizeof when - l, ".%03dZ", (int)(time_ms % 1000));
		json_object_begin(&c->j);
		json_key(&c->j, "time");
		json_string(&c->j, when);
		json_key(&c->j, "time_ms");
		json_int(&c->j, time_ms);
		json_key(&c->j, "kind");
		json_string(&c->j, kind);
		json_key(&c->j, "rcpt");
		json_string(&c->j, rcpt);
		json_key(&c->j, "text");
		json_string(&c->j, text);
		json_object_end(&c->j);
		return;
	}
	struct buf *o = &c->out;
	when[10] = ' ';
	buf_printf(o, "  %s.%03d  ", when, (int)(time_ms % 1000));
	tty_put(o, kind);
	if (rcpt && *rcpt) {
		buf_puts(o, "  ");
		tty_put(o, rcpt);
	}
	if (text && *text) {
		buf_puts(o, "  ");
		tty_put(o, text);
	}
	buf_putc(o, '\n');
}

static int queue_show(struct cli *cli, struct store *st, const char *id)
{
	struct show_ctx c;
	memset(&c, 0, sizeof c);
	c.cli = cli;
	buf_init(&c.out, 0);
	json_init(&c.j, &c.out);
	int rc = store_queue_get(st, id, show_cb, &c);
	if (rc == STORE_OK) {
		if (cli->json) {
			json_key(&c.j, "events");
			json_array_begin(&c.j);
		}
		rc = store_event_list(st, id, event_cb, &c);
		if (rc == STORE_NOTFOUND)
			rc = STORE_OK;
		if (cli->json) {
			json_array_end(&c.j);
			json_object_end(&c.j);
			buf_putc(&c.out, '\n');
		}
	}
	if (rc == STORE_OK)
		rc = cli_print_buf(&c.out);
	else if (rc == STORE_NOTFOUND)
		rc = cli_fail("there is no message %s in the queue; see 'dakiya queue list'", id);
	else
		rc = cli_store_fail(cli, rc, "cannot read the queue");
	buf_free(&c.out);
	return rc;
}

/* ---- the command ---- */

static void held_cb(void *arg, const struct store_queue_entry *e)
{
	*(bool *)arg = e->held;
}

/* A queue id as the store makes them: 1..64 of [A-Za-z0-9_-]. */
static bool valid_id(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= 64 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

int cmd_queue(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"all", no_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	bool all = false;
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			return cli_help(cli_help_queue);
		case 'a':
			all = true;
			break;
		default:
			return cli_option_error("queue", argv, c);
		}
	}
	if (optind >= argc)
		return cli_fail("'dakiya queue' needs a verb: list, show, retry, hold, release or "
		                "delete; see 'dakiya queue --help'");
	const char *verb = argv[optind++];
	int nargs = argc - optind;
	const char *id = nargs > 0 ? argv[optind] : NULL;
	static const char *const verbs[] = {"list", "show", "retry", "hold", "release", "delete"};
	size_t v = 0;
	while (v < sizeof verbs / sizeof verbs[0] && strcmp(verb, verbs[v]) != 0)
		v++;
	if (v == sizeof verbs / sizeof verbs[0])
		return cli_fail("unknown verb 'queue %s'; use list, show, retry, hold, release or "
		                "delete (see 'dakiya queue --help')",
		    verb);
	bool is_list = v == 0, is_retry = v == 2;
	if (all && !is_retry)
		return cli_fail("--all goes with 'queue retry' only; see 'dakiya queue --help'");
	if (is_list && nargs != 0)
		return cli_fail("'dakiya queue list' takes no arguments; for one message use "
		                "'dakiya queue show ID'");
	if (is_retry && all && nargs != 0)
		return cli_fail("'dakiya queue retry' takes an ID or --all, not both");
	if (!is_list && !(is_retry && all) && nargs != 1)
		return cli_fail("'dakiya queue %s' needs exactly one queue ID%s; the IDs are in "
		                "'dakiya queue list'",
		    verb, is_retry ? " (or --all)" : "");
	if (id != NULL && !valid_id(id))
		return cli_fail("'%s' is not a queue ID; give one from 'dakiya queue list' (such "
		                "as 0123456789ABCDEF)",
		    id);

	struct store *st = cli_open_store(cli);
	if (st == NULL)
		return 1;
	if (is_list)
		return queue_list(cli, st);
	if (v == 1)
		return queue_show(cli, st, id);

	int rc;
	size_t n = 0;
	const char *done;
	switch (v) {
	case 2:
		rc = store_queue_retry(st, all ? NULL : id, &n);
		done = "is due now";
		break;
	case 3:
		rc = store_queue_hold(st, id);
		done = "is held; 'dakiya queue release ID' lets it go";
		break;
	case 4:
		rc = store_queue_release(st, id);
		done = "is released and due now";
		break;
	case 5:
		rc = store_queue_delete(st, id);
		done = "is deleted from the queue";
		break;
	default:
		abort();
	}
	if (rc == STORE_NOTFOUND)
		return cli_fail("there is no message %s in the queue; see 'dakiya queue list'", id);
	if (rc != STORE_OK)
		return cli_store_fail(cli, rc, "cannot change the queue");
	struct buf out = BUF_INIT;
	if (all) {
		buf_printf(
		    &out, "%zu message%s due now (held ones stay held)\n", n, n == 1 ? "" : "s");
	} else {
		buf_printf(&out, "%s %s\n", id, done);
		bool held = false;
		if (is_retry && store_queue_get(st, id, held_cb, &held) == STORE_OK && held)
			buf_printf(&out, "%s is still held; 'dakiya queue release %s' lets it go\n",
			    id, id);
	}
	rc = cli_print_buf(&out);
	buf_free(&out);
	return rc;
}
