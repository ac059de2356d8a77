/*
 * test_dsn.c - unit tests for src/queue/dsn.c: the RFC 3461 parameter
 * parsers (table-driven), xtext, and the notifications dsn_build() writes.
 *
 * Every notification built here also goes through check_wellformed(): CRLF
 * line ends only, no line over 998 octets, the boundary used exactly as the
 * MIME structure needs it and nowhere else. test_sample writes one
 * notification to /tmp/dakiya-dsn-sample.eml for inspection with other tools
 * (e.g. Python's email package); the test does not depend on them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "queue/dsn.h"
#include "smtp/smtp_parse.h"

#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- parameters ---- */

static void test_notify(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		bool ok;
		unsigned bits;
		const char *render; /* NULL: same as in */
	} t[] = {
	    {"NEVER", true, DSN_NOTIFY_NEVER, NULL},
	    {"never", true, DSN_NOTIFY_NEVER, "NEVER"},
	    {"SUCCESS", true, DSN_NOTIFY_SUCCESS, NULL},
	    {"FAILURE", true, DSN_NOTIFY_FAILURE, NULL},
	    {"DELAY", true, DSN_NOTIFY_DELAY, NULL},
	    {"FAILURE,DELAY", true, DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY, NULL},
	    {"delay,Failure", true, DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY, "FAILURE,DELAY"},
	    {"SUCCESS,FAILURE,DELAY", true,
	        DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY, NULL},
	    {"DELAY,SUCCESS", true, DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY, "SUCCESS,DELAY"},
	    /* NEVER with anything else is invalid (RFC 3461 4.1) */
	    {"NEVER,FAILURE", false, 0, NULL},
	    {"SUCCESS,NEVER", false, 0, NULL},
	    {"NEVER,NEVER", false, 0, NULL},
	    {"FAILURE,FAILURE", false, 0, NULL},
	    {"", false, 0, NULL},
	    {",", false, 0, NULL},
	    {"FAILURE,", false, 0, NULL},
	    {",FAILURE", false, 0, NULL},
	    {"FAILURE,,DELAY", false, 0, NULL},
	    {"FAILURE DELAY", false, 0, NULL},
	    {"FAIL", false, 0, NULL},
	    {"FAILURES", false, 0, NULL},
	    {"ALWAYS", false, 0, NULL},
	};
	for (size_t i = 0; i < N_ELEM(t); i++) {
		unsigned bits = 0xff;
		bool ok = dsn_parse_notify(t[i].in, strlen(t[i].in), &bits);
		if (ok != t[i].ok || (ok && bits != t[i].bits))
			fail_msg("NOTIFY=%s: ok %d bits %#x", t[i].in, ok, bits);
		if (!ok)
			continue;
		struct buf r = BUF_INIT;
		assert_true(dsn_notify_render(bits, &r));
		assert_string_equal(buf_cstr(&r), t[i].render ? t[i].render : t[i].in);
		buf_free(&r);
	}
	struct buf r = BUF_INIT;
	assert_false(dsn_notify_render(0, &r));
	assert_false(dsn_notify_render(DSN_NOTIFY_NEVER | DSN_NOTIFY_DELAY, &r));
	assert_false(dsn_notify_render(0x100, &r));
	buf_free(&r);
}

static void test_ret(void **state)
{
	(void)state;
	enum dsn_ret ret;
	assert_true(dsn_parse_ret("FULL", 4, &ret) && ret == DSN_RET_FULL);
	assert_true(dsn_parse_ret("hdrs", 4, &ret) && ret == DSN_RET_HDRS);
	assert_false(dsn_parse_ret("", 0, &ret));
	assert_false(dsn_parse_ret("FULLX", 5, &ret));
	assert_false(dsn_parse_ret("FUL", 3, &ret));
	assert_false(dsn_parse_ret("HEADERS", 7, &ret));
}

static void test_xtext(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} good[] = {
	    {"abc", "abc"},
	    {"a+2Bb", "a+b"},
	    {"a+3Db", "a=b"},
	    {"+20", " "},
	    {"a+2bb", "a+b"}, /* lower-case hex is accepted */
	    {"!~*,<>", "!~*,<>"},
	    {"", ""},
	    {"+C3+A9", "\xc3\xa9"},
	};
	for (size_t i = 0; i < N_ELEM(good); i++) {
		struct buf b = BUF_INIT;
		if (!dsn_xtext_decode(good[i].in, strlen(good[i].in), &b))
			fail_msg("xtext \"%s\" refused", good[i].in);
		assert_string_equal(buf_cstr(&b), good[i].out);
		buf_free(&b);
	}
	static const char *const bad[] = {
	    "+",
	    "+4",
	    "a+",
	    "+G0",
	    "+0G",
	    "a=b",
	    "a b",
	    "a\tb",
	    "\x80",
	    "a\xc3\xa9",
	    "\x7f",
	    "+ 20",
	};
	for (size_t i = 0; i < N_ELEM(bad); i++) {
		struct buf b = BUF_INIT;
		if (dsn_xtext_decode(bad[i], strlen(bad[i]), &b))
			fail_msg("xtext \"%s\" accepted", bad[i]);
		buf_free(&b);
	}

	/* every byte value round-trips, and the encoding is plain xtext */
	unsigned char all[256];
	for (int k = 0; k < 256; k++)
		all[k] = (unsigned char)k;
	struct buf enc = BUF_INIT, dec = BUF_INIT;
	assert_true(dsn_xtext_encode(all, sizeof(all), &enc));
	for (size_t k = 0; k < enc.len; k++) {
		unsigned char c = (unsigned char)enc.data[k];
		assert_true(c >= 0x21 && c <= 0x7e && c != '=');
	}
	assert_true(strstr(buf_cstr(&enc), "+2B") != NULL); /* '+' itself */
	assert_true(strstr(buf_cstr(&enc), "+3D") != NULL); /* '=' */
	assert_true(dsn_xtext_decode(enc.data, enc.len, &dec));
	assert_int_equal(dec.len, sizeof(all));
	assert_memory_equal(dec.data, all, sizeof(all));
	buf_free(&enc);
	buf_free(&dec);
}

static void test_envid(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	assert_true(dsn_parse_envid("QQ314159", 8, &b));
	assert_string_equal(buf_cstr(&b), "QQ314159");
	assert_true(dsn_parse_envid("a+2Bb+20c", 9, &b));
	assert_string_equal(buf_cstr(&b), "a+b c");

	static const char *const bad[] = {
	    "",         /* empty */
	    "a+0D+0Ab", /* CR LF after decoding */
	    "a+00",     /* NUL */
	    "a+7F",     /* DEL */
	    "+C3+A9",   /* not ASCII */
	    "a=b",      /* not xtext */
	    "a+",       /* truncated */
	};
	for (size_t i = 0; i < N_ELEM(bad); i++)
		if (dsn_parse_envid(bad[i], strlen(bad[i]), &b))
			fail_msg("ENVID=%s accepted", bad[i]);

	char longv[DSN_ENVID_MAX + 2];
	memset(longv, 'e', sizeof(longv));
	assert_true(dsn_parse_envid(longv, DSN_ENVID_MAX, &b));
	assert_false(dsn_parse_envid(longv, DSN_ENVID_MAX + 1, &b));
	buf_free(&b);
}

static void test_orcpt(void **state)
{
	(void)state;
	static const struct {
		const char *in, *type, *addr, *render;
	} good[] = {
	    {"rfc822;alice@example.test", "rfc822", "alice@example.test", NULL},
	    {"RFC822;a+2Bb@example.test", "RFC822", "a+b@example.test", NULL},
	    {"rfc822;\"a+20b\"@x.test", "rfc822", "\"a b\"@x.test", NULL},
	    {"x-local;anything+3Dgoes", "x-local", "anything=goes", NULL},
	    /* RFC 6533: utf-8-addr-xtext, and raw UTF-8 (unitext) */
	    {"utf-8;j\\x{F6}ran@x.test", "utf-8", "j\\x{F6}ran@x.test", NULL},
	    {"utf-8;j\xc3\xb6ran@x.test", "utf-8", "j\xc3\xb6ran@x.test",
	        "utf-8;j\\x{F6}ran@x.test"},
	    {"utf-8;a+2Bb@x.test", "utf-8", "a+b@x.test", "utf-8;a\\x{2B}b@x.test"},
	};
	for (size_t i = 0; i < N_ELEM(good); i++) {
		struct dsn_orcpt o;
		if (!dsn_parse_orcpt(good[i].in, strlen(good[i].in), &o))
			fail_msg("ORCPT=%s refused", good[i].in);
		assert_string_equal(o.type, good[i].type);
		assert_string_equal(o.addr, good[i].addr);
		/* rendered for the next hop, and parsed again: the same */
		struct buf r = BUF_INIT;
		assert_true(dsn_orcpt_render(&o, &r));
		if (good[i].render)
			assert_string_equal(buf_cstr(&r), good[i].render);
		else if (strcmp(good[i].in, "rfc822;\"a+20b\"@x.test") != 0)
			assert_string_equal(buf_cstr(&r), good[i].in);
		struct dsn_orcpt o2;
		assert_true(dsn_parse_orcpt(r.data, r.len, &o2));
		buf_free(&r);
	}
	static const char *const bad[] = {
	    "",
	    "rfc822",                /* no ';' */
	    ";a@b",                  /* no type */
	    "rfc822;",               /* no address */
	    "rfc 822;a@b",           /* type not an atom */
	    "rfc822;a@b+0D+0ABcc:x", /* CR LF */
	    "rfc822;a+00b",          /* NUL */
	    "rfc822;j\xc3\xb6ran@x", /* raw UTF-8 is for utf-8 only */
	    "rfc822;j+C3+B6ran@x",   /* so is encoded non-ASCII */
	    "utf-8;j\xc3ran@x",      /* invalid UTF-8 */
	    "utf-8;a+C2+85b",        /* a C1 control */
	    "rfc822;a=b",            /* not xtext */
	    "rfc822;a b",
	    "verylongaddresstypeverylongaddresstype;a@b",
	};
	for (size_t i = 0; i < N_ELEM(bad); i++) {
		struct dsn_orcpt o;
		if (dsn_parse_orcpt(bad[i], strlen(bad[i]), &o))
			fail_msg("ORCPT=%s accepted", bad[i]);
	}
	/* the length limit is on the whole value */
	char v[DSN_ORCPT_MAX + 2];
	memcpy(v, "rfc822;", 7);
	memset(v + 7, 'a', sizeof(v) - 7);
	struct dsn_orcpt o;
	assert_true(dsn_parse_orcpt(v, DSN_ORCPT_MAX, &o));
	assert_int_equal(strlen(o.addr), DSN_ORCPT_MAX - 7);
	assert_false(dsn_parse_orcpt(v, DSN_ORCPT_MAX + 1, &o));
}

static void test_utf8_addr(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} t[] = {
	    {"alice@example.test", "alice@example.test"},
	    {"j\xc3\xb6ran@ex\xc3\xa4mple.test", "j\\x{F6}ran@ex\\x{E4}mple.test"},
	    {"\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.test",
	        "\\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.test"},
	    {"\xf0\x9f\x93\xae@x.test", "\\x{1F4EE}@x.test"},
	    {"a+b=c\\d e@x", "a\\x{2B}b\\x{3D}c\\x{5C}d\\x{20}e@x"},
	};
	for (size_t i = 0; i < N_ELEM(t); i++) {
		struct buf b = BUF_INIT;
		assert_true(dsn_utf8_addr_encode(t[i].in, strlen(t[i].in), &b));
		assert_string_equal(buf_cstr(&b), t[i].out);
		buf_free(&b);
	}
	static const char *const bad[] = {
	    "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf5\x80\x80\x80", "a\xff"};
	for (size_t i = 0; i < N_ELEM(bad); i++) {
		struct buf b = BUF_INIT;
		assert_false(dsn_utf8_addr_encode(bad[i], strlen(bad[i]), &b));
		buf_free(&b);
	}
}

/* ---- notifications ---- */

static const char original[] =
    "Received: from client.test by mx.example.test; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    "From: Alice <alice@example.test>\r\n"
    "To: bob@remote.test\r\n"
    "Subject: Quarterly\r\n"
    "  report\r\n"
    "Message-ID: <orig-1@example.test>\r\n"
    "\r\n"
    "BODY-LINE-1 the body of the message\r\n"
    "BODY-LINE-2\r\n";

static void default_msg(struct dsn_message *m)
{
	memset(m, 0, sizeof(*m));
	m->hostname = "mx.example.test";
	m->queue_id = "0123456789abcdef";
	m->sender = "alice@example.test";
	m->envid = "QQ314159";
	m->ret = DSN_RET_DEFAULT;
	m->arrival = 1704103200;     /* Mon, 01 Jan 2024 10:00:00 */
	m->retry_until = 1704535200; /* Sat, 06 Jan 2024 10:00:00 */
	m->now = 1704117600;         /* Mon, 01 Jan 2024 14:00:00 */
	m->msg = original;
	m->msg_len = sizeof(original) - 1;
}

static struct dsn_recipient failed_rcpt(void)
{
	struct dsn_recipient r = {
	    .addr = "bob@remote.test",
	    .orcpt_type = "rfc822",
	    .orcpt = "bob@remote.test",
	    .action = DSN_ACTION_FAILED,
	    .status = "5.1.1",
	    .diagnostic = "550 5.1.1 <bob@remote.test>: Recipient address rejected",
	    .remote_mta = "mx1.remote.test",
	    .last_attempt = 1704117000,
	};
	return r;
}

/* The boundary from the top-level Content-Type. */
static char *get_boundary(const char *msg)
{
	const char *p = strstr(msg, "boundary=\"");
	assert_non_null(p);
	p += 10;
	const char *e = strchr(p, '"');
	assert_non_null(e);
	return strndup(p, (size_t)(e - p));
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* CRLF only, lines <= 998 octets, the boundary only where it belongs. */
static void check_wellformed(const struct buf *b, size_t parts)
{
	const char *s = buf_cstr(b);
	assert_int_equal(strlen(s), b->len);
	size_t col = 0;
	for (size_t k = 0; k < b->len; k++) {
		if (s[k] == '\r') {
			assert_true(k + 1 < b->len && s[k + 1] == '\n');
			k++;
			col = 0;
			continue;
		}
		assert_true(s[k] != '\n');
		col++;
		assert_true(col <= 998);
	}
	assert_true(b->len >= 2 && s[b->len - 2] == '\r' && s[b->len - 1] == '\n');

	char *bnd = get_boundary(s);
	char delim[128], close_delim[128];
	snprintf(delim, sizeof(delim), "\r\n--%s\r\n", bnd);
	snprintf(close_delim, sizeof(close_delim), "\r\n--%s--\r\n", bnd);
	assert_int_equal(count(s, bnd), parts + 2); /* Content-Type, parts, close */
	assert_int_equal(count(s, delim), parts);
	assert_int_equal(count(s, close_delim), 1);
	assert_true(strcmp(s + b->len - strlen(close_delim), close_delim) == 0);
	free(bnd);
}

/* The header section of the notification. */
static size_t hdr_len(const struct buf *b)
{
	return smtp_header_section_len(b->data, b->len);
}

static void assert_header(const struct buf *b, const char *name, const char *want)
{
	struct buf v = BUF_INIT;
	if (!smtp_header_get(b->data, hdr_len(b), name, &v, 4096))
		fail_msg("no %s: header", name);
	if (want != NULL && strcmp(buf_cstr(&v), want) != 0)
		fail_msg("%s: \"%s\", want \"%s\"", name, buf_cstr(&v), want);
	buf_free(&v);
}

static void assert_has(const struct buf *b, const char *s)
{
	if (strstr(buf_cstr(b), s) == NULL)
		fail_msg("missing \"%s\" in:\n%s", s, buf_cstr(b));
}

static void assert_lacks(const struct buf *b, const char *s)
{
	if (strstr(buf_cstr(b), s) != NULL)
		fail_msg("unexpected \"%s\" in:\n%s", s, buf_cstr(b));
}

/* s in the text with folds undone and every run of white space (line ends
 * included) as one space: for prose, whose wrapping the test ignores. */
static void assert_text_has(const struct buf *b, const char *s)
{
	struct buf t = BUF_INIT;
	const char *p = buf_cstr(b);
	for (size_t k = 0; k < b->len; k++) {
		bool ws = p[k] == ' ' || p[k] == '\r' || p[k] == '\n' || p[k] == '\t';
		if (!ws)
			buf_putc(&t, p[k]);
		else if (t.len > 0 && t.data[t.len - 1] != ' ')
			buf_putc(&t, ' ');
	}
	if (strstr(buf_cstr(&t), s) == NULL)
		fail_msg("missing \"%s\" in:\n%s", s, buf_cstr(&t));
	buf_free(&t);
}

static void test_failure_fields(void **state)
{
	(void)state;
	struct dsn_message m;
	default_msg(&m);
	struct dsn_recipient r = failed_rcpt();
	struct buf out = BUF_INIT;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);

	/* top-level header fields */
	assert_header(&out, "From", "Mail Delivery System <MAILER-DAEMON@mx.example.test>");
	assert_header(&out, "To", "<alice@example.test>");
	assert_header(&out, "Subject", "Undelivered Mail Returned to Sender");
	assert_header(&out, "Date", "Mon, 01 Jan 2024 14:00:00 +0000");
	assert_header(&out, "Auto-Submitted", "auto-replied");
	assert_header(&out, "MIME-Version", "1.0");
	assert_header(&out, "Message-ID", NULL);
	assert_has(&out, ".0123456789abcdef@mx.example.test>\r\n");
	assert_has(&out, "\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
	                 "\tboundary=\"");
	assert_lacks(&out, "Content-Transfer-Encoding"); /* all 7-bit */

	/* part 1: text */
	assert_has(&out, "Content-Type: text/plain; charset=us-ascii\r\n");
	assert_has(&out, "This is the mail system at mx.example.test.");
	assert_has(&out, "  <bob@remote.test>\r\n");
	assert_text_has(&out, "host mx1.remote.test said: 550 5.1.1 <bob@remote.test>: Recipient");
	assert_has(&out, "Subject of your message: Quarterly report\r\n");
	assert_has(&out, "Queue ID: 0123456789abcdef, received Mon, 01 Jan 2024 10:00:00 +0000");

	/* part 2: the report, in RFC 3464 order */
	assert_has(&out, "Content-Type: message/delivery-status\r\n\r\n"
	                 "Original-Envelope-Id: QQ314159\r\n"
	                 "Reporting-MTA: dns; mx.example.test\r\n"
	                 "X-Dakiya-Queue-ID: 0123456789abcdef\r\n"
	                 "Arrival-Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
	                 "\r\n"
	                 "Original-Recipient: rfc822;bob@remote.test\r\n"
	                 "Final-Recipient: rfc822;bob@remote.test\r\n"
	                 "Action: failed\r\n"
	                 "Status: 5.1.1\r\n"
	                 "Remote-MTA: dns; mx1.remote.test\r\n"
	                 "Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.test>: Recipient address "
	                 "rejected\r\n"
	                 "Last-Attempt-Date: Mon, 01 Jan 2024 13:50:00 +0000\r\n");
	assert_lacks(&out, "Will-Retry-Until");

	/* part 3: headers only (RET not given) */
	assert_has(&out, "Content-Type: text/rfc822-headers\r\n\r\n"
	                 "Received: from client.test");
	assert_has(&out, "Message-ID: <orig-1@example.test>\r\n\r\n--");
	assert_lacks(&out, "BODY-LINE");
	buf_free(&out);
}

static void test_multiple_recipients(void **state)
{
	(void)state;
	struct dsn_message m;
	default_msg(&m);
	m.envid = NULL;
	struct dsn_recipient r[3] = {failed_rcpt(), failed_rcpt(), failed_rcpt()};
	r[0].orcpt_type = NULL;
	r[0].orcpt = NULL;
	r[1].addr = "carol@remote.test";
	r[1].orcpt = "Carol@Remote.test";
	r[1].status = "4.4.7"; /* expired after temporary failures */
	r[1].diagnostic = "451 4.4.1 Try again later";
	r[2].addr = "dave@slow.test";
	r[2].orcpt_type = NULL;
	r[2].action = DSN_ACTION_DELAYED;
	r[2].status = "4.4.1";
	r[2].diagnostic = "connect to mx.slow.test[192.0.2.9]:25: Connection refused";
	r[2].remote_mta = NULL;

	struct buf out = BUF_INIT;
	assert_int_equal(dsn_build(&m, r, 3, &out), DSN_OK);
	check_wellformed(&out, 3);
	assert_header(&out, "Subject", "Undelivered Mail Returned to Sender");
	assert_lacks(&out, "Original-Envelope-Id");
	assert_int_equal(count(buf_cstr(&out), "Final-Recipient: "), 3);
	assert_int_equal(count(buf_cstr(&out), "Original-Recipient: "), 1);
	assert_has(&out, "\r\n\r\nFinal-Recipient: rfc822;bob@remote.test\r\nAction: failed\r\n"
	                 "Status: 5.1.1\r\n");
	assert_has(&out, "\r\n\r\nOriginal-Recipient: rfc822;Carol@Remote.test\r\n"
	                 "Final-Recipient: rfc822;carol@remote.test\r\nAction: failed\r\n"
	                 "Status: 4.4.7\r\n");
	assert_has(&out,
	    "\r\n\r\nFinal-Recipient: rfc822;dave@slow.test\r\nAction: delayed\r\n"
	    "Status: 4.4.1\r\n"
	    "Diagnostic-Code: X-Dakiya; connect to mx.slow.test[192.0.2.9]:25: Connection\r\n"
	    " refused\r\n"
	    "Last-Attempt-Date: Mon, 01 Jan 2024 13:50:00 +0000\r\n"
	    "Will-Retry-Until: Sat, 06 Jan 2024 10:00:00 +0000\r\n");
	assert_int_equal(count(buf_cstr(&out), "Will-Retry-Until"), 1);
	/* the text names both groups */
	assert_text_has(&out, "could not be delivered to the recipients below");
	assert_text_has(&out, "not yet been delivered to the recipient below");
	assert_text_has(&out, "<carol@remote.test> (originally addressed to Carol@Remote.test)");
	assert_text_has(&out, "reason: connect to mx.slow.test");
	buf_free(&out);
}

static void test_delay_and_success(void **state)
{
	(void)state;
	struct dsn_message m;
	default_msg(&m);
	m.ret = DSN_RET_FULL; /* RET applies to failures only */
	struct dsn_recipient r = failed_rcpt();
	r.action = DSN_ACTION_DELAYED;
	r.status = "4.2.0";
	r.diagnostic = "452 4.2.2 Mailbox full";
	struct buf out = BUF_INIT;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	assert_header(&out, "Subject", "Delayed Mail (still being retried)");
	assert_has(&out, "Action: delayed\r\nStatus: 4.2.0\r\n");
	assert_has(&out, "Will-Retry-Until: Sat, 06 Jan 2024 10:00:00 +0000\r\n");
	assert_text_has(&out, "keep trying until Sat, 06 Jan 2024 10:00:00 +0000.");
	assert_text_has(&out, "You do not need to send the message again.");
	assert_has(&out, "Content-Type: text/rfc822-headers");
	assert_lacks(&out, "BODY-LINE");
	assert_lacks(&out, "Undelivered");

	/* delivered / relayed / expanded with defaulted status */
	struct dsn_recipient s[3] = {failed_rcpt(), failed_rcpt(), failed_rcpt()};
	s[0].action = DSN_ACTION_DELIVERED;
	s[0].status = NULL;
	s[0].diagnostic = "250 2.0.0 Ok: queued as 1234";
	s[1].action = DSN_ACTION_RELAYED;
	s[1].status = "5.1.1"; /* does not fit the action: replaced */
	s[2].action = DSN_ACTION_EXPANDED;
	s[2].status = "2.1.5";
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, s, 3, &out), DSN_OK);
	check_wellformed(&out, 3);
	assert_header(&out, "Subject", "Successful Mail Delivery Report");
	assert_has(&out, "Action: delivered\r\nStatus: 2.0.0\r\n");
	assert_has(&out, "Action: relayed\r\nStatus: 2.0.0\r\n");
	assert_has(&out, "Action: expanded\r\nStatus: 2.1.5\r\n");
	assert_has(&out, "Your message was delivered as follows:");
	buf_free(&out);
}

static void test_status_defaults(void **state)
{
	(void)state;
	static const struct {
		enum dsn_action a;
		const char *in, *want;
	} t[] = {
	    {DSN_ACTION_FAILED, NULL, "5.0.0"},
	    {DSN_ACTION_FAILED, "5.7.1", "5.7.1"},
	    {DSN_ACTION_FAILED, "4.4.7", "4.4.7"},
	    {DSN_ACTION_FAILED, "2.0.0", "5.0.0"},
	    {DSN_ACTION_FAILED, "5.1", "5.0.0"},
	    {DSN_ACTION_FAILED, "5.1.1\r\nX-Evil: 1", "5.0.0"},
	    {DSN_ACTION_DELAYED, "5.1.1", "4.0.0"},
	    {DSN_ACTION_DELAYED, "4.4.1", "4.4.1"},
	    {DSN_ACTION_DELIVERED, "4.4.1", "2.0.0"},
	};
	for (size_t i = 0; i < N_ELEM(t); i++) {
		struct dsn_message m;
		default_msg(&m);
		struct dsn_recipient r = failed_rcpt();
		r.action = t[i].a;
		r.status = t[i].in;
		struct buf out = BUF_INIT;
		assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
		char want[64];
		snprintf(want, sizeof(want), "\r\nStatus: %s\r\n", t[i].want);
		assert_has(&out, want);
		assert_lacks(&out, "X-Evil");
		buf_free(&out);
	}
}

static void test_ret_full(void **state)
{
	(void)state;
	struct dsn_message m;
	default_msg(&m);
	m.ret = DSN_RET_FULL;
	struct dsn_recipient r = failed_rcpt();
	struct buf out = BUF_INIT;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	assert_has(&out, "Content-Description: Undelivered message\r\n"
	                 "Content-Type: message/rfc822\r\n\r\n"
	                 "Received: from client.test");
	assert_has(&out, "\r\n\r\nBODY-LINE-1 the body of the message\r\nBODY-LINE-2\r\n\r\n--");
	assert_lacks(&out, "text/rfc822-headers");

	/* over the cap: headers only, and the text says why */
	m.full_max = 100;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	assert_has(&out, "Content-Type: text/rfc822-headers");
	assert_text_has(&out, "too large to be returned in full");
	assert_lacks(&out, "BODY-LINE");

	/* RET=HDRS */
	m.full_max = 0;
	m.ret = DSN_RET_HDRS;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	assert_has(&out, "Content-Type: text/rfc822-headers");
	assert_lacks(&out, "BODY-LINE");
	assert_lacks(&out, "too large");

	/* bare LF line ends in the original become CRLF; a missing last one is added */
	static const char lf[] = "Subject: lf\nX-A: 1\n\nbody1\nbody2";
	m.ret = DSN_RET_FULL;
	m.msg = lf;
	m.msg_len = sizeof(lf) - 1;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	assert_has(&out, "\r\n\r\nSubject: lf\r\nX-A: 1\r\n\r\nbody1\r\nbody2\r\n\r\n--");
	m.ret = DSN_RET_HDRS;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	assert_has(&out, "\r\n\r\nSubject: lf\r\nX-A: 1\r\n\r\n--");
	buf_free(&out);
}

static void test_path_and_missing(void **state)
{
	(void)state;
	char path[] = "/tmp/dakiya-test-dsn-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(
	    write(fd, original, sizeof(original) - 1), (ssize_t)(sizeof(original) - 1));
	close(fd);

	struct dsn_message m;
	default_msg(&m);
	m.msg = NULL;
	m.msg_path = path;
	m.ret = DSN_RET_FULL;
	struct dsn_recipient r = failed_rcpt();
	struct buf out = BUF_INIT;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	assert_has(&out, "Content-Type: message/rfc822");
	assert_has(&out, "BODY-LINE-2\r\n");
	assert_has(&out, "Subject of your message: Quarterly report");

	/* a file over the cap: headers from its beginning */
	m.full_max = 64;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	assert_has(&out, "Content-Type: text/rfc822-headers");
	assert_lacks(&out, "BODY-LINE");
	unlink(path);

	/* unreadable: an error, out untouched */
	buf_reset(&out);
	buf_puts(&out, "keep");
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_ERR_IO);
	assert_string_equal(buf_cstr(&out), "keep");

	/* no original at all: two parts and a note */
	m.msg_path = NULL;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 2);
	assert_has(&out, "The original message is no longer available.");
	assert_lacks(&out, "rfc822-headers");
	buf_free(&out);
}

/* Unfold a header-like field value: CRLF followed by WSP goes. */
static char *field_value(const char *s, const char *name)
{
	struct buf v = BUF_INIT;
	const char *p = strstr(s, name);
	assert_non_null(p);
	assert_true(smtp_header_get(p, strlen(p), name, &v, 1 << 20));
	return buf_steal(&v);
}

static void test_long_diagnostic(void **state)
{
	(void)state;
	struct buf diag = BUF_INIT;
	buf_puts(&diag, "550 5.7.1");
	for (int k = 0; k < 60; k++)
		buf_printf(&diag, " word%02d", k);
	struct dsn_message m;
	default_msg(&m);
	struct dsn_recipient r = failed_rcpt();
	r.diagnostic = buf_cstr(&diag);
	struct buf out = BUF_INIT;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);

	/* folded at spaces, every line of the field within 78 columns */
	const char *f = strstr(buf_cstr(&out), "Diagnostic-Code: ");
	assert_non_null(f);
	size_t lines = 0;
	for (const char *l = f; l == f || *l == ' '; lines++) {
		const char *e = strstr(l, "\r\n");
		assert_true(e - l <= 78);
		l = e + 2;
	}
	assert_true(lines >= 5);
	char *v = field_value(f, "Diagnostic-Code");
	char want[1024];
	snprintf(want, sizeof(want), "smtp; %s", buf_cstr(&diag));
	assert_string_equal(v, want);
	free(v);

	/* one 3000-byte word: broken below 998 octets, cut to DSN_DIAG_MAX */
	buf_reset(&diag);
	buf_puts(&diag, "550 ");
	for (int k = 0; k < 3000; k++)
		buf_putc(&diag, (char)('a' + k % 26));
	r.diagnostic = buf_cstr(&diag);
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	v = field_value(buf_cstr(&out), "Diagnostic-Code");
	assert_true(strlen(v) < DSN_DIAG_MAX + 20);
	assert_true(strncmp(v, "smtp; 550 abcdefghij", 20) == 0);
	free(v);
	buf_free(&out);
	buf_free(&diag);
}

static void test_utf8(void **state)
{
	(void)state;
	struct dsn_message m;
	default_msg(&m);
	m.sender = "\xc3\xa1lvaro@ejemplo.test";
	struct dsn_recipient r = failed_rcpt();
	r.addr = "j\xc3\xb6ran@ex\xc3\xa4mple.test";
	r.orcpt_type = "utf-8";
	r.orcpt = "j\\x{F6}ran@ex\\x{E4}mple.test";
	r.diagnostic = "550 5.1.1 Empf\xc3\xa4nger unbekannt";
	struct buf out = BUF_INIT;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	/* RFC 6533: utf-8 address type, ASCII encoding in the report */
	assert_has(&out, "\r\nFinal-Recipient: utf-8;j\\x{F6}ran@ex\\x{E4}mple.test\r\n");
	assert_has(&out, "\r\nOriginal-Recipient: utf-8;j\\x{F6}ran@ex\\x{E4}mple.test\r\n");
	assert_has(&out, "Diagnostic-Code: smtp; 550 5.1.1 Empf?nger unbekannt");
	/* RFC 6532 header and an 8-bit text part */
	assert_header(&out, "To", "<\xc3\xa1lvaro@ejemplo.test>");
	assert_has(&out, "Content-Transfer-Encoding: 8bit\r\n");
	assert_has(&out, "Content-Type: text/plain; charset=utf-8\r\n");
	assert_has(&out, "  <j\xc3\xb6ran@ex\xc3\xa4mple.test>\r\n");
	assert_lacks(&out, "originally addressed");
	assert_text_has(&out, "said: 550 5.1.1 Empf\xc3\xa4nger unbekannt");

	/* the report part stays 7-bit */
	const char *rep = strstr(buf_cstr(&out), "message/delivery-status");
	const char *end = strstr(rep, "text/rfc822-headers");
	for (const char *p = rep; p < end; p++)
		assert_true((unsigned char)*p < 0x80);

	/* an ORCPT that differs is shown decoded */
	r.orcpt = "J\\x{D6}RAN@ex\\x{E4}mple.test";
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	assert_text_has(&out, "(originally addressed to J\xc3\x96RAN@ex\xc3\xa4mple.test)");
	assert_has(&out, "\r\nOriginal-Recipient: utf-8;J\\x{D6}RAN@ex\\x{E4}mple.test\r\n");

	/* invalid UTF-8 in an address never passes through raw */
	r.addr = "bad\xff@x.test";
	r.orcpt_type = NULL;
	r.orcpt = NULL;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	assert_has(&out, "Final-Recipient: utf-8;bad\\x{FFFD}@x.test\r\n");
	assert_has(&out, "  <bad?@x.test>\r\n");
	buf_free(&out);
}

/* Every line after a CRLF: none may start a field or a part that we did
 * not write. */
static void assert_no_injected_lines(const struct buf *b)
{
	static const char *const evil[] = {"Bcc:", "X-Evil", "Content-Type: text/html", "--evil"};
	const char *s = buf_cstr(b);
	for (const char *l = s; l != NULL; l = strstr(l, "\r\n")) {
		if (l != s)
			l += 2;
		for (size_t k = 0; k < N_ELEM(evil); k++)
			if (strncmp(l, evil[k], strlen(evil[k])) == 0)
				fail_msg("injected line: %.60s", l);
	}
}

static void test_injection(void **state)
{
	(void)state;
	struct dsn_message m;
	default_msg(&m);
	m.sender = "alice@example.test>\r\nBcc: victim@x.test";
	m.envid = "id\r\nX-Evil: envid";
	m.queue_id = "q\r\nX-Evil: qid";
	static const char orig[] = "Subject: hi\r\n\r\nX-Evil: in the original body\r\n";
	m.msg = orig;
	m.msg_len = sizeof(orig) - 1;
	struct dsn_recipient r = failed_rcpt();
	r.addr = "bob@remote.test\r\nX-Evil: addr";
	r.orcpt = "bob\nX-Evil: orcpt";
	r.orcpt_type = "rfc822\r\nX-Evil: type";
	r.diagnostic = "550 no\r\n\r\n--evil\r\nContent-Type: text/html\r\n\r\n<b>x</b>";
	r.remote_mta = "mx\rX-Evil: mta";
	struct buf out = BUF_INIT;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	assert_no_injected_lines(&out);
	assert_header(&out, "To", "<alice@example.test> Bcc: victim@x.test>");
	assert_has(&out, "Original-Envelope-Id: id X-Evil: envid\r\n");
	assert_has(&out, "Diagnostic-Code: smtp; 550 no --evil Content-Type: text/html <b>x</b>");

	/* an absurd queue id cannot make an over-long Message-ID line */
	char qid[3000];
	memset(qid, 'q', sizeof(qid) - 1);
	qid[sizeof(qid) - 1] = '\0';
	m.queue_id = qid;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	m.queue_id = "q";

	/* headers of the original are data inside part 3, not ours */
	m.ret = DSN_RET_FULL;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3);
	buf_free(&out);
}

static unsigned fixed_calls;

/* A random source that repeats itself for the first calls. */
static void fixed_random(void *p, size_t n)
{
	memset(p, fixed_calls++ < 3 ? 0xab : (int)(0x10 + fixed_calls), n);
}

static void stuck_random(void *p, size_t n)
{
	memset(p, 0xab, n);
}

static void test_boundary(void **state)
{
	(void)state;
	/* the original carries the boundary the first tries would give */
	struct buf orig = BUF_INIT;
	buf_puts(&orig, "Subject: x\r\n\r\n--=_dsn_");
	for (int k = 0; k < 12; k++)
		buf_puts(&orig, "ab");
	buf_puts(&orig, "\r\n");

	struct dsn_message m;
	default_msg(&m);
	m.ret = DSN_RET_FULL;
	m.msg = orig.data;
	m.msg_len = orig.len;
	m.random = fixed_random;
	fixed_calls = 0;
	struct dsn_recipient r = failed_rcpt();
	struct buf out = BUF_INIT;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	check_wellformed(&out, 3); /* counts the boundary: only our own uses */
	char *b1 = get_boundary(buf_cstr(&out));
	assert_true(strstr(b1, "abababab") == NULL);
	assert_true(fixed_calls > 3);

	/* a random source that never changes: refused, out untouched */
	m.random = stuck_random;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_ERR_INVALID);
	assert_int_equal(out.len, 0);

	/* the real source gives a different boundary each time */
	m.random = NULL;
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	char *b2 = get_boundary(buf_cstr(&out));
	buf_reset(&out);
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_OK);
	char *b3 = get_boundary(buf_cstr(&out));
	assert_string_not_equal(b2, b3);
	free(b1);
	free(b2);
	free(b3);
	buf_free(&out);
	buf_free(&orig);
}

static void test_refused(void **state)
{
	(void)state;
	struct dsn_message m;
	struct dsn_recipient r = failed_rcpt();
	struct buf out = BUF_INIT;
	buf_puts(&out, "x");

	/* a bounce of a bounce is impossible */
	static const char *const null_senders[] = {NULL, "", "<>"};
	for (size_t k = 0; k < N_ELEM(null_senders); k++) {
		default_msg(&m);
		m.sender = null_senders[k];
		assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_ERR_NULL_SENDER);
		assert_string_equal(buf_cstr(&out), "x");
	}
	assert_string_equal(dsn_rc_str(DSN_ERR_NULL_SENDER), "null sender: no notification");

	default_msg(&m);
	assert_int_equal(dsn_build(&m, &r, 0, &out), DSN_ERR_INVALID);
	m.hostname = "bad host\r\nX: y";
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_ERR_INVALID);
	m.hostname = NULL;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_ERR_INVALID);
	default_msg(&m);
	r.addr = NULL;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_ERR_INVALID);
	r.addr = "";
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_ERR_INVALID);
	r = failed_rcpt();
	r.action = (enum dsn_action)42;
	assert_int_equal(dsn_build(&m, &r, 1, &out), DSN_ERR_INVALID);
	assert_string_equal(buf_cstr(&out), "x");

	/* out's cap reached: nothing appended, no sticky error left behind */
	r = failed_rcpt();
	struct buf small;
	buf_init(&small, 512);
	buf_puts(&small, "keep");
	assert_int_equal(dsn_build(&m, &r, 1, &small), DSN_ERR_NOMEM);
	assert_string_equal(buf_cstr(&small), "keep");
	assert_false(buf_err(&small));
	buf_free(&small);
	buf_free(&out);
}

/* One sample for inspection with other tools. */
static void test_sample(void **state)
{
	(void)state;
	struct dsn_message m;
	default_msg(&m);
	struct dsn_recipient r[2] = {failed_rcpt(), failed_rcpt()};
	r[1].addr = "dave@slow.test";
	r[1].action = DSN_ACTION_DELAYED;
	r[1].status = "4.4.1";
	r[1].orcpt_type = NULL;
	r[1].orcpt = NULL;
	r[1].diagnostic = "421 4.4.1 Service not available, try later";
	struct buf out = BUF_INIT;
	assert_int_equal(dsn_build(&m, r, 2, &out), DSN_OK);
	FILE *f = fopen("/tmp/dakiya-dsn-sample.eml", "w");
	if (f != NULL) {
		fwrite(out.data, 1, out.len, f);
		fclose(f);
	}
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_notify),
	    cmocka_unit_test(test_ret),
	    cmocka_unit_test(test_xtext),
	    cmocka_unit_test(test_envid),
	    cmocka_unit_test(test_orcpt),
	    cmocka_unit_test(test_utf8_addr),
	    cmocka_unit_test(test_failure_fields),
	    cmocka_unit_test(test_multiple_recipients),
	    cmocka_unit_test(test_delay_and_success),
	    cmocka_unit_test(test_status_defaults),
	    cmocka_unit_test(test_ret_full),
	    cmocka_unit_test(test_path_and_missing),
	    cmocka_unit_test(test_long_diagnostic),
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_injection),
	    cmocka_unit_test(test_boundary),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_sample),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
