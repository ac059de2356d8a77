/*
 * test_smtp_parse.c - table-driven unit tests for src/smtp/smtp_parse.c.
 *
 * Every DATA case is checked fed whole, byte at a time, in every 2-way split
 * and in discard mode: the output, flags, size and consumed count must be the
 * same each way.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/smtp_parse.h"

#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- verbs ---- */

static const struct {
	const char *line;
	enum smtp_verb verb;
	const char *arg;
} verb_cases[] = {
    {"HELO example.org", SMTP_CMD_HELO, "example.org"},
    {"ehlo example.org", SMTP_CMD_EHLO, "example.org"},
    {"EhLo   example.org", SMTP_CMD_EHLO, "example.org"},
    {"MAIL FROM:<a@b>", SMTP_CMD_MAIL, "FROM:<a@b>"},
    {"mail from:<a@b>", SMTP_CMD_MAIL, "from:<a@b>"},
    {"RCPT TO:<a@b>", SMTP_CMD_RCPT, "TO:<a@b>"},
    {"DATA", SMTP_CMD_DATA, ""},
    {"data ", SMTP_CMD_DATA, ""},
    {"BDAT 100 LAST", SMTP_CMD_BDAT, "100 LAST"},
    {"RSET", SMTP_CMD_RSET, ""},
    {"NOOP anything", SMTP_CMD_NOOP, "anything"},
    {"QUIT", SMTP_CMD_QUIT, ""},
    {"VRFY user", SMTP_CMD_VRFY, "user"},
    {"EXPN list", SMTP_CMD_EXPN, "list"},
    {"HELP", SMTP_CMD_HELP, ""},
    {"STARTTLS", SMTP_CMD_STARTTLS, ""},
    {"starttls", SMTP_CMD_STARTTLS, ""},
    {"AUTH PLAIN AGFAAGI=", SMTP_CMD_AUTH, "PLAIN AGFAAGI="},
    {"GET / HTTP/1.1", SMTP_CMD_HTTP, "/ HTTP/1.1"},
    {"POST /x HTTP/1.0", SMTP_CMD_HTTP, "/x HTTP/1.0"},
    {"HEAD / HTTP/1.1", SMTP_CMD_HTTP, "/ HTTP/1.1"},
    {"PUT /x HTTP/1.1", SMTP_CMD_HTTP, "/x HTTP/1.1"},
    {"CONNECT host:443 HTTP/1.1", SMTP_CMD_HTTP, "host:443 HTTP/1.1"},
    {"GET", SMTP_CMD_UNKNOWN, ""},
    {"GETX /", SMTP_CMD_UNKNOWN, "/"},
    {"MAILX FROM:<a@b>", SMTP_CMD_UNKNOWN, "FROM:<a@b>"},
    {"MAI", SMTP_CMD_UNKNOWN, ""},
    {"", SMTP_CMD_UNKNOWN, ""},
    {" MAIL FROM:<a@b>", SMTP_CMD_UNKNOWN, "MAIL FROM:<a@b>"},
    {"MAIL\tFROM:<a@b>", SMTP_CMD_UNKNOWN, ""},
    {"XCLIENT ADDR=1.2.3.4", SMTP_CMD_UNKNOWN, "ADDR=1.2.3.4"},
    {"STARTTLSX", SMTP_CMD_UNKNOWN, ""},
};

static void test_verbs(void **state)
{
	for (size_t i = 0; i < N_ELEM(verb_cases); i++) {
		const char *line = verb_cases[i].line;
		const char *arg = NULL;
		enum smtp_verb v = smtp_parse_verb(line, strlen(line), &arg);
		if (v != verb_cases[i].verb || arg == NULL || strcmp(arg, verb_cases[i].arg) != 0)
			fail_msg("verb case %zu \"%s\": got %d arg \"%s\"", i, line, (int)v,
			    arg ? arg : "(null)");
	}
	/* the length bounds the verb, not the NUL */
	const char *arg = NULL;
	assert_int_equal(smtp_parse_verb("DATAX", 4, &arg), SMTP_CMD_DATA);
	assert_int_equal(smtp_parse_verb("QUIT", 4, NULL), SMTP_CMD_QUIT);
}

static void test_line_ok(void **state)
{
	char big[SMTP_LINE_MAX + 2];
	memset(big, 'a', sizeof(big));

	assert_true(smtp_line_ok("MAIL FROM:<a@b>", 15));
	assert_true(smtp_line_ok("", 0));
	assert_false(smtp_line_ok("MAIL\0FROM", 9));
	assert_false(smtp_line_ok("MAIL\rFROM", 9));
	assert_false(smtp_line_ok("MAIL\nFROM", 9));
	assert_false(smtp_line_ok("QUIT\r", 5));
	assert_true(smtp_line_ok(big, SMTP_LINE_MAX));
	assert_false(smtp_line_ok(big, SMTP_LINE_MAX + 1));
	assert_true(smtp_line_ok_max(big, 10, 10));
	assert_false(smtp_line_ok_max(big, 11, 10));
	assert_false(smtp_line_ok_max("a\nb", 3, 10));
}

/* ---- MAIL / RCPT ---- */

enum {
	F_NULL = 1 << 0,
	F_PM = 1 << 1,
	F_QUOTED = 1 << 2,
	F_ROUTE = 1 << 3,
	F_RELAY = 1 << 4,
	F_UTF8 = 1 << 5,
	F_LIT = 1 << 6,
};

struct path_case {
	bool rcpt;
	const char *arg;
	enum smtp_path_err err;
	const char *local;  /* checked when err == OK */
	const char *domain; /* checked when err == OK */
	unsigned flags;     /* checked when err == OK */
	const char *params; /* "K=V K2" as parsed, checked when err == OK */
};

static const struct path_case path_cases[] = {
    {false, "FROM:<user@example.org>", SMTP_PATH_OK, "user", "example.org", 0, ""},
    {false, "from:<User@Example.ORG>", SMTP_PATH_OK, "User", "Example.ORG", 0, ""},
    {false, "FROM: <user@example.org>", SMTP_PATH_OK, "user", "example.org", 0, ""},
    {false, "FROM:<>", SMTP_PATH_OK, "", "", F_NULL, ""},
    {false, "FROM:<> SIZE=0", SMTP_PATH_OK, "", "", F_NULL, "SIZE=0"},
    {true, "TO:<>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<postmaster>", SMTP_PATH_OK, "postmaster", "", F_PM, ""},
    {true, "to:<PostMaster>", SMTP_PATH_OK, "PostMaster", "", F_PM, ""},
    {true, "TO:<postmaster@example.org>", SMTP_PATH_OK, "postmaster", "example.org", 0, ""},
    {false, "FROM:<postmaster>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<\"postmaster\">", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<a.b+tag@example.org>", SMTP_PATH_OK, "a.b+tag", "example.org", 0, ""},
    {true, "TO:<!#$&'*+-/=?^_`{|}~@x.y>", SMTP_PATH_OK, "!#$&'*+-/=?^_`{|}~", "x.y", F_RELAY, ""},
    /* quoted local parts */
    {true, "TO:<\"john doe\"@example.org>", SMTP_PATH_OK, "john doe", "example.org", F_QUOTED, ""},
    {true, "TO:<\"a\\\"b\\\\c\"@x.org>", SMTP_PATH_OK, "a\"b\\c", "x.org", F_QUOTED, ""},
    {true, "TO:<\"a>b\"@x.org>", SMTP_PATH_OK, "a>b", "x.org", F_QUOTED, ""},
    {true, "TO:<\"\"@x.org>", SMTP_PATH_OK, "", "x.org", F_QUOTED, ""},
    {true, "TO:<\"user@relay.org\"@x.org>", SMTP_PATH_OK, "user@relay.org", "x.org",
        F_QUOTED | F_RELAY, ""},
    {true, "TO:<\"user\\@relay\"@x.org>", SMTP_PATH_OK, "user@relay", "x.org", F_QUOTED | F_RELAY,
        ""},
    {true, "TO:<\"a\tb\"@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<\"a\\\tb\"@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<\"a\x01\"@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<\"a\x7f\"@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<\"abc@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<\"abc\\", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<\"a\"b@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    /* relay smuggling */
    {true, "TO:<user%relay.org@x.org>", SMTP_PATH_OK, "user%relay.org", "x.org", F_RELAY, ""},
    {true, "TO:<relay.org!user@x.org>", SMTP_PATH_OK, "relay.org!user", "x.org", F_RELAY, ""},
    {true, "TO:<\"a%b\"@x.org>", SMTP_PATH_OK, "a%b", "x.org", F_QUOTED | F_RELAY, ""},
    {true, "TO:<@a.org,@b.org:user@d.org>", SMTP_PATH_OK, "user", "d.org", F_ROUTE, ""},
    {true, "TO:<@a.org:user@d.org>", SMTP_PATH_OK, "user", "d.org", F_ROUTE, ""},
    {true, "TO:<@[1.2.3.4]:user@d.org>", SMTP_PATH_OK, "user", "d.org", F_ROUTE, ""},
    {true, "TO:<@a.org,b.org:user@d.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<@a.org:>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<@:user@d.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<@a.org;user@d.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<@a.org:postmaster>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    /* address literals */
    {true, "TO:<user@[1.2.3.4]>", SMTP_PATH_OK, "user", "[1.2.3.4]", F_LIT, ""},
    {true, "TO:<user@[255.255.255.255]>", SMTP_PATH_OK, "user", "[255.255.255.255]", F_LIT, ""},
    {true, "TO:<user@[IPv6:2001:db8::1]>", SMTP_PATH_OK, "user", "[IPv6:2001:db8::1]", F_LIT, ""},
    {true, "TO:<user@[ipv6:::ffff:1.2.3.4]>", SMTP_PATH_OK, "user", "[ipv6:::ffff:1.2.3.4]", F_LIT,
        ""},
    {true, "TO:<user@[256.1.1.1]>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@[1.2.3]>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@[1.2.3.4.5]>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@[1.2.3.4>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@[IPv6:2001:db8::g]>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@[IPv6:1.2.3.4]>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@[x-tag:abc]>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@[]>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    /* UTF-8 (RFC 6531) */
    {true,
        "TO:<j\xc3\xb6rg@b\xc3\xbc"
        "cher.de>",
        SMTP_PATH_OK, "j\xc3\xb6rg",
        "b\xc3\xbc"
        "cher.de",
        F_UTF8, ""},
    {true, "TO:<\xe7\x94\xa8\xe6\x88\xb7@example.org>", SMTP_PATH_OK, "\xe7\x94\xa8\xe6\x88\xb7",
        "example.org", F_UTF8, ""},
    {true, "TO:<user@\xf0\x9f\x98\x80.example>", SMTP_PATH_OK, "user", "\xf0\x9f\x98\x80.example",
        F_UTF8, ""},
    {true, "TO:<\"\xc3\xa9 x\"@example.org>", SMTP_PATH_OK, "\xc3\xa9 x", "example.org",
        F_UTF8 | F_QUOTED, ""},
    {true, "TO:<j\xc3rg@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<j\xc0\xafrg@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<j\xed\xa0\x80@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<j\xf4\x90\x80\x80@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@x\xff.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@x\xc3>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<\"\x80\"@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    /* dot-string and domain syntax */
    {true, "TO:<.user@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user.@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<us..er@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@x.org.>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@.x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@x..org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@-x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@x-.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@x_y.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@x.org", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@x.org>>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<us er@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<us(er)@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:user@x.org", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@x.org>SIZE=1", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO <user@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "FROM:<user@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {false, "TO:<user@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:\t<user@x.org>", SMTP_PATH_SYNTAX, NULL, NULL, 0, NULL},
    {true, "TO:<user@localhost>", SMTP_PATH_OK, "user", "localhost", 0, ""},
    {true, "TO:<user@x.org> ", SMTP_PATH_OK, "user", "x.org", 0, ""},
    /* parameters */
    {false, "FROM:<a@b.c> SIZE=123 BODY=8BITMIME SMTPUTF8", SMTP_PATH_OK, "a", "b.c", 0,
        "SIZE=123 BODY=8BITMIME SMTPUTF8"},
    {false, "FROM:<a@b.c>   SIZE=123    SMTPUTF8  ", SMTP_PATH_OK, "a", "b.c", 0,
        "SIZE=123 SMTPUTF8"},
    {true, "TO:<a@b.c> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c.d", SMTP_PATH_OK, "a", "b.c", 0,
        "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c.d"},
    {false, "FROM:<a@b.c> X-A-1=v", SMTP_PATH_OK, "a", "b.c", 0, "X-A-1=v"},
    {false, "FROM:<a@b.c> SIZE=", SMTP_PATH_PARAMS, NULL, NULL, 0, NULL},
    {false, "FROM:<a@b.c> =1", SMTP_PATH_PARAMS, NULL, NULL, 0, NULL},
    {false, "FROM:<a@b.c> -X=1", SMTP_PATH_PARAMS, NULL, NULL, 0, NULL},
    {false, "FROM:<a@b.c> SI_ZE=1", SMTP_PATH_PARAMS, NULL, NULL, 0, NULL},
    {false, "FROM:<a@b.c> SIZE=1=2", SMTP_PATH_PARAMS, NULL, NULL, 0, NULL},
    {false, "FROM:<a@b.c> SIZE=1\t", SMTP_PATH_PARAMS, NULL, NULL, 0, NULL},
    {false, "FROM:<a@b.c> ENVID=\xc3\xa9", SMTP_PATH_PARAMS, NULL, NULL, 0, NULL},
    {false, "FROM:<a@b.c> A B C D E F G H I J K L M N O P", SMTP_PATH_OK, "a", "b.c", 0,
        "A B C D E F G H I J K L M N O P"},
    {false, "FROM:<a@b.c> A B C D E F G H I J K L M N O P Q", SMTP_PATH_PARAMS, NULL, NULL, 0,
        NULL},
};

static void params_str(const struct smtp_mail_args *m, char *s, size_t n)
{
	s[0] = '\0';
	size_t off = 0;
	for (size_t i = 0; i < m->nparams; i++) {
		int w = snprintf(s + off, n - off, "%s%s%s%s", i ? " " : "", m->params[i].key,
		    m->params[i].value ? "=" : "", m->params[i].value ? m->params[i].value : "");
		assert_true(w >= 0 && (size_t)w < n - off);
		off += (size_t)w;
	}
}

static unsigned path_flags(const struct smtp_path *p)
{
	return (p->null ? F_NULL : 0) | (p->postmaster ? F_PM : 0) | (p->quoted ? F_QUOTED : 0) |
	       (p->route ? F_ROUTE : 0) | (p->relay_syntax ? F_RELAY : 0) | (p->utf8 ? F_UTF8 : 0) |
	       (p->literal ? F_LIT : 0);
}

static void check_path_case(size_t i, const struct path_case *c)
{
	char arg[1024];
	struct smtp_mail_args m;
	char ps[1024];

	assert_true(strlen(c->arg) < sizeof(arg));
	memcpy(arg, c->arg, strlen(c->arg) + 1);
	enum smtp_path_err e = c->rcpt ? smtp_parse_rcpt(arg, &m) : smtp_parse_mail(arg, &m);
	if (e != c->err)
		fail_msg("path case %zu \"%s\": err %d, want %d", i, c->arg, (int)e, (int)c->err);
	if (e != SMTP_PATH_OK)
		return;
	params_str(&m, ps, sizeof(ps));
	if (strcmp(m.path.local, c->local) != 0 || strcmp(m.path.domain, c->domain) != 0 ||
	    path_flags(&m.path) != c->flags || strcmp(ps, c->params) != 0)
		fail_msg("path case %zu \"%s\": local \"%s\" domain \"%s\" flags %#x params \"%s\"",
		    i, c->arg, m.path.local, m.path.domain, path_flags(&m.path), ps);
}

static void test_paths(void **state)
{
	for (size_t i = 0; i < N_ELEM(path_cases); i++)
		check_path_case(i, &path_cases[i]);
}

/* Builds "TO:<" + nlocal 'l' + "@" + labels of 'd' totalling ndomain + ">". */
static enum smtp_path_err long_path(size_t nlocal, size_t ndomain, struct smtp_mail_args *m)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "TO:<");
	for (size_t i = 0; i < nlocal; i++)
		buf_putc(&b, 'l');
	buf_putc(&b, '@');
	for (size_t i = 0; i < ndomain; i++)
		buf_putc(&b, (i % 10 == 9 && i + 1 < ndomain) ? '.' : 'd');
	buf_puts(&b, "> SIZE=1");
	assert_false(buf_err(&b));
	enum smtp_path_err e = smtp_parse_rcpt(b.data, m);
	buf_free(&b);
	return e;
}

static void test_path_lengths(void **state)
{
	struct smtp_mail_args m;
	assert_int_equal(long_path(SMTP_LOCAL_MAX, SMTP_DOMAIN_MAX, &m), SMTP_PATH_OK);
	assert_int_equal(strlen(m.path.local), SMTP_LOCAL_MAX);
	assert_int_equal(strlen(m.path.domain), SMTP_DOMAIN_MAX);
	assert_int_equal(m.nparams, 1);
	assert_int_equal(long_path(SMTP_LOCAL_MAX + 1, 10, &m), SMTP_PATH_TOO_LONG);
	assert_int_equal(long_path(10, SMTP_DOMAIN_MAX + 1, &m), SMTP_PATH_TOO_LONG);
	assert_int_equal(long_path(5000, 5000, &m), SMTP_PATH_TOO_LONG);

	/* a 64-byte ASCII label is too long, 63 is fine */
	char arg[200];
	snprintf(arg, sizeof(arg), "TO:<u@%.63s.org>",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(smtp_parse_rcpt(arg, &m), SMTP_PATH_OK);
	snprintf(arg, sizeof(arg), "TO:<u@%.64s.org>",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(smtp_parse_rcpt(arg, &m), SMTP_PATH_TOO_LONG);

	/* quoted: the unquoted length counts */
	struct buf b = BUF_INIT;
	buf_puts(&b, "TO:<\"");
	for (size_t i = 0; i < SMTP_LOCAL_MAX; i++)
		buf_puts(&b, "\\a");
	buf_puts(&b, "\"@x.org>");
	assert_int_equal(smtp_parse_rcpt(b.data, &m), SMTP_PATH_OK);
	assert_int_equal(strlen(m.path.local), SMTP_LOCAL_MAX);
	buf_reset(&b);
	buf_puts(&b, "TO:<\"");
	for (size_t i = 0; i <= SMTP_LOCAL_MAX; i++)
		buf_puts(&b, "\\a");
	buf_puts(&b, "\"@x.org>");
	assert_int_equal(smtp_parse_rcpt(b.data, &m), SMTP_PATH_TOO_LONG);
	/* a syntax error wins over the length */
	buf_reset(&b);
	buf_puts(&b, "TO:<");
	for (size_t i = 0; i <= SMTP_LOCAL_MAX; i++)
		buf_putc(&b, 'a');
	buf_puts(&b, "@x..org>");
	assert_int_equal(smtp_parse_rcpt(b.data, &m), SMTP_PATH_SYNTAX);
	buf_free(&b);
}

/* ---- domains ---- */

static const struct {
	const char *d;
	bool utf8_ok;
	bool ok;
} domain_cases[] = {
    {"example.org", false, true},
    {"EXAMPLE.org", false, true},
    {"localhost", false, true},
    {"a-b.c-d.e", false, true},
    {"123.example", false, true},
    {"xn--bcher-kva.de", false, true},
    {"[192.0.2.1]", false, true},
    {"[0.0.0.0]", false, true},
    {"[IPv6:::1]", false, true},
    {"[IPv6:2001:db8:0:0:0:0:0:1]", false, true},
    {"b\xc3\xbc"
     "cher.de",
        true, true},
    {"b\xc3\xbc"
     "cher.de",
        false, false},
    {"b\xc3"
     "cher.de",
        true, false},
    {"", false, false},
    {".", false, false},
    {"example.org.", false, false},
    {".example.org", false, false},
    {"exa mple.org", false, false},
    {"exa_mple.org", false, false},
    {"-example.org", false, false},
    {"example-.org", false, false},
    {"a..b", false, false},
    {"[192.0.2.1", false, false},
    {"192.0.2.1]", false, false},
    {"[192.0.2.256]", false, false},
    {"[192.0.2]", false, false},
    {"[192.0.2.1.]", false, false},
    {"[1234.0.2.1]", false, false},
    {"[IPv6:::1%eth0]", false, false},
    {"[IPv6:1::2::3]", false, false},
    {"[IPv4:1.2.3.4]", false, false},
    {"[example.org]", false, false},
    {"example.org\r\n", false, false},
};

static void test_domain_ok(void **state)
{
	for (size_t i = 0; i < N_ELEM(domain_cases); i++)
		if (smtp_domain_ok(domain_cases[i].d, domain_cases[i].utf8_ok) !=
		    domain_cases[i].ok)
			fail_msg("domain case %zu \"%s\"", i, domain_cases[i].d);

	char d[400];
	memset(d, 'a', sizeof(d));
	for (size_t i = 10; i < sizeof(d); i += 11)
		d[i] = '.';
	d[255] = '\0';
	d[254] = 'a';
	assert_true(smtp_domain_ok(d, false));
	d[255] = 'a';
	d[256] = '\0';
	assert_false(smtp_domain_ok(d, false));
}

/* ---- BDAT and numbers ---- */

static const struct {
	const char *arg;
	bool ok;
	uint64_t size;
	bool last;
} bdat_cases[] = {
    {"100", true, 100, false},
    {"100 LAST", true, 100, true},
    {"100 last", true, 100, true},
    {"0 LAST", true, 0, true},
    {"0", true, 0, false},
    {"100  LAST ", true, 100, true},
    {"18446744073709551615", true, UINT64_MAX, false},
    {"18446744073709551616", false, 0, false},
    {"99999999999999999999999", false, 0, false},
    {"abc", false, 0, false},
    {"", false, 0, false},
    {" ", false, 0, false},
    {"LAST", false, 0, false},
    {"100LAST", false, 0, false},
    {"100 LASTX", false, 0, false},
    {"100 LAST 1", false, 0, false},
    {"100 FIRST", false, 0, false},
    {"-1", false, 0, false},
    {"+1", false, 0, false},
    {"1x", false, 0, false},
    {"0x10", false, 0, false},
};

static void test_bdat(void **state)
{
	for (size_t i = 0; i < N_ELEM(bdat_cases); i++) {
		uint64_t size = 42;
		bool last = false;
		bool ok = smtp_parse_bdat(bdat_cases[i].arg, &size, &last);
		if (ok != bdat_cases[i].ok ||
		    (ok && (size != bdat_cases[i].size || last != bdat_cases[i].last)))
			fail_msg("bdat case %zu \"%s\"", i, bdat_cases[i].arg);
	}
}

static void test_u64(void **state)
{
	static const struct {
		const char *s;
		bool ok;
		uint64_t v;
	} cases[] = {
	    {"0", true, 0},
	    {"123", true, 123},
	    {"000123", true, 123},
	    {"18446744073709551615", true, UINT64_MAX},
	    {"18446744073709551616", false, 0},
	    {"99999999999999999999", false, 0},
	    {"", false, 0},
	    {" 1", false, 0},
	    {"1 ", false, 0},
	    {"-1", false, 0},
	    {"+1", false, 0},
	    {"1e3", false, 0},
	};
	for (size_t i = 0; i < N_ELEM(cases); i++) {
		uint64_t v = 7;
		bool ok = smtp_parse_u64(cases[i].s, &v);
		if (ok != cases[i].ok || (ok && v != cases[i].v))
			fail_msg("u64 case %zu \"%s\"", i, cases[i].s);
		if (!ok && v != 7)
			fail_msg("u64 case %zu wrote the output on failure", i);
	}
	assert_false(smtp_parse_u64(NULL, NULL));
}

/* ---- DATA ---- */

struct data_case {
	const char *in;
	size_t consumed; /* SIZE_MAX: all of it */
	const char *out;
	bool done;
	bool bare_lf;
	bool bare_cr;
};

static const struct data_case data_cases[] = {
    {".\r\n", 3, "", true, false, false},
    {".\r\nQUIT\r\n", 3, "", true, false, false},
    {"Subject: x\r\n\r\nbody\r\n.\r\n", SIZE_MAX, "Subject: x\r\n\r\nbody\r\n", true, false, false},
    {"a\r\n.\r\nMAIL FROM:<>\r\n", 6, "a\r\n", true, false, false},
    {"..\r\n.\r\n", SIZE_MAX, ".\r\n", true, false, false},
    {"a\r\n..b\r\n...\r\n.\r\n", SIZE_MAX, "a\r\n.b\r\n..\r\n", true, false, false},
    {"a.\r\n.b\r\n.\r\n", SIZE_MAX, "a.\r\nb\r\n", true, false, false},
    {"line\r\n", SIZE_MAX, "line\r\n", false, false, false},
    {"line\r\n.", SIZE_MAX, "line\r\n", false, false, false},
    {"line\r\n.\r", SIZE_MAX, "line\r\n", false, false, false},
    {"", SIZE_MAX, "", false, false, false},
    {"no end", SIZE_MAX, "no end", false, false, false},
    {"\r\n\r\n.\r\n", SIZE_MAX, "\r\n\r\n", true, false, false},
    /* smuggling attempts: none of these end the data */
    {"a\n.\nb", SIZE_MAX, "a\n.\nb", false, true, false},
    {"a\r.\rb", SIZE_MAX, "a\r.\rb", false, false, true},
    {"a\n.\r\nb", SIZE_MAX, "a\n.\r\nb", false, true, false},
    {"a\r\n.\nb", SIZE_MAX, "a\r\n\nb", false, true, false},
    {"a\r\n.\rb", SIZE_MAX, "a\r\n\rb", false, false, true},
    {"a\r\n.\r\r\nb", SIZE_MAX, "a\r\n\r\r\nb", false, false, true},
    {".\r\r\n", SIZE_MAX, "\r\r\n", false, false, true},
    {"\n.\n", SIZE_MAX, "\n.\n", false, true, false},
    {"\r.\r", SIZE_MAX, "\r.\r", false, false, true},
    {"\n.\r\n", SIZE_MAX, "\n.\r\n", false, true, false},
    {"\r\n.\n", SIZE_MAX, "\r\n\n", false, true, false},
    {"\r\n.\r", SIZE_MAX, "\r\n", false, false, false},
    {"\r\n.\r.\r\n", SIZE_MAX, "\r\n\r.\r\n", false, false, true},
    /* ...but the real end still works after them */
    {"a\n.\nb\r\n.\r\nX", 10, "a\n.\nb\r\n", true, true, false},
    {"a\rb\r\n.\r\n", SIZE_MAX, "a\rb\r\n", true, false, true},
    {"a\r\r\n.\r\n", SIZE_MAX, "a\r\r\n", true, false, true},
    {"a\r\n\n.\r\n", SIZE_MAX, "a\r\n\n.\r\n", false, true, false},
    {"bare\nlf\r\n.\r\n", SIZE_MAX, "bare\nlf\r\n", true, true, false},
    {"x\r\n.\r\n.\r\n", 6, "x\r\n", true, false, false},
    {"\r\n.\r\n", SIZE_MAX, "\r\n", true, false, false},
    {"..\r\n", SIZE_MAX, ".\r\n", false, false, false},
    {".x\r\n.\r\n", SIZE_MAX, "x\r\n", true, false, false},
    {"\xff\xfe\x80 binary\r\n.\r\n", SIZE_MAX, "\xff\xfe\x80 binary\r\n", true, false, false},
};

struct data_result {
	struct buf out;
	size_t consumed;
	struct smtp_data_parser p;
};

/* Feed in[0..len) in pieces ending at each cut (ascending); stop at the end. */
static void data_run(const char *in, size_t len, const size_t *cuts, size_t ncuts, bool discard,
    struct data_result *r)
{
	buf_init(&r->out, 0);
	smtp_data_init(&r->p);
	r->p.discard = discard;
	r->consumed = 0;
	size_t pos = 0;
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : len;
		size_t n = smtp_data_feed(&r->p, in + pos, end - pos, &r->out);
		assert_true(n <= end - pos);
		r->consumed = pos + n;
		if (smtp_data_done(&r->p)) {
			/* nothing more is consumed once done */
			assert_int_equal(
			    smtp_data_feed(&r->p, in + r->consumed, len - r->consumed, &r->out), 0);
			return;
		}
		assert_int_equal(n, end - pos);
		pos = end;
	}
}

static void data_check(
    size_t i, const struct data_case *c, const struct data_result *r, bool discard, const char *how)
{
	size_t len = strlen(c->in);
	size_t want_consumed = c->consumed == SIZE_MAX ? len : c->consumed;
	size_t want_len = strlen(c->out);
	bool out_ok =
	    discard ? r->out.len == 0
	            : r->out.len == want_len && memcmp(buf_cstr(&r->out), c->out, want_len) == 0;
	if (!out_ok || r->consumed != want_consumed || smtp_data_done(&r->p) != c->done ||
	    r->p.bare_lf != c->bare_lf || r->p.bare_cr != c->bare_cr || r->p.size != want_len)
		fail_msg(
		    "data case %zu (%s%s): out len %zu consumed %zu done %d lf %d cr %d size %llu",
		    i, how, discard ? ", discard" : "", r->out.len, r->consumed,
		    smtp_data_done(&r->p), r->p.bare_lf, r->p.bare_cr,
		    (unsigned long long)r->p.size);
}

static void test_data(void **state)
{
	size_t cuts[64];
	struct data_result r;

	for (size_t i = 0; i < N_ELEM(data_cases); i++) {
		const struct data_case *c = &data_cases[i];
		size_t len = strlen(c->in);
		assert_true(len < N_ELEM(cuts));
		for (int d = 0; d < 2; d++) {
			bool discard = d == 1;
			data_run(c->in, len, NULL, 0, discard, &r);
			data_check(i, c, &r, discard, "whole");
			buf_free(&r.out);

			for (size_t k = 0; k + 1 < len; k++)
				cuts[k] = k + 1;
			data_run(c->in, len, cuts, len > 0 ? len - 1 : 0, discard, &r);
			data_check(i, c, &r, discard, "bytewise");
			buf_free(&r.out);

			for (size_t k = 0; k <= len; k++) {
				cuts[0] = k;
				data_run(c->in, len, cuts, 1, discard, &r);
				data_check(i, c, &r, discard, "split");
				buf_free(&r.out);
			}
		}
	}
}

/* A big message in many random pieces: same output as fed whole. */
static void test_data_big(void **state)
{
	struct buf msg = BUF_INIT, want = BUF_INIT;
	unsigned seed = 12345;
	for (int line = 0; line < 3000; line++) {
		seed = seed * 1103515245u + 12345u;
		if (seed % 7 == 0) {
			buf_puts(&msg, "..dotted\r\n");
			buf_puts(&want, ".dotted\r\n");
		} else {
			buf_printf(&msg, "line %d %u\r\n", line, seed);
			buf_printf(&want, "line %d %u\r\n", line, seed);
		}
	}
	buf_puts(&msg, ".\r\nQUIT\r\n");

	struct data_result whole;
	data_run(msg.data, msg.len, NULL, 0, false, &whole);
	assert_true(smtp_data_done(&whole.p));
	assert_int_equal(whole.consumed, msg.len - 6);
	assert_int_equal(whole.out.len, want.len);
	assert_memory_equal(whole.out.data, want.data, want.len);
	assert_int_equal(whole.p.size, want.len);

	size_t cuts[500];
	size_t pos = 0;
	for (size_t k = 0; k < 500; k++) {
		seed = seed * 1103515245u + 12345u;
		pos += seed % 300;
		cuts[k] = pos < msg.len ? pos : msg.len;
	}
	struct data_result split;
	data_run(msg.data, msg.len, cuts, 500, false, &split);
	assert_int_equal(split.consumed, whole.consumed);
	assert_int_equal(split.out.len, whole.out.len);
	assert_memory_equal(split.out.data, whole.out.data, whole.out.len);

	buf_free(&whole.out);
	buf_free(&split.out);
	buf_free(&msg);
	buf_free(&want);
}

/* Output past the buffer cap sets the buf's error but size keeps counting. */
static void test_data_cap(void **state)
{
	struct smtp_data_parser p;
	struct buf out;
	buf_init(&out, 4);
	smtp_data_init(&p);
	assert_int_equal(smtp_data_feed(&p, "abcdefgh\r\n.\r\n", 13, &out), 13);
	assert_true(smtp_data_done(&p));
	assert_true(buf_err(&out));
	assert_int_equal(p.size, 10);
	buf_free(&out);

	/* discard switched on midway: counted, not output */
	buf_init(&out, 0);
	smtp_data_init(&p);
	smtp_data_feed(&p, "abc", 3, &out);
	p.discard = true;
	smtp_data_feed(&p, "def\r\n.\r\n", 8, &out);
	assert_true(smtp_data_done(&p));
	assert_string_equal(buf_cstr(&out), "abc");
	assert_int_equal(p.size, 8);
	buf_free(&out);
}

/* ---- headers ---- */

static const struct {
	const char *msg;
	const char *name;
	size_t max;
	bool found;
	const char *value;
} header_cases[] = {
    {"Subject: hello\r\n\r\nbody", "Subject", 100, true, "hello"},
    {"subject: hello\r\n\r\nbody", "SUBJECT", 100, true, "hello"},
    {"From: a\r\nSubject:   hello  \r\n\r\n", "subject", 100, true, "hello"},
    {"Subject: hello\r\n world\r\n\tagain\r\nX: y\r\n\r\n", "Subject", 100, true,
        "hello world\tagain"},
    {"Subject:\r\n folded only\r\n\r\n", "Subject", 100, true, "folded only"},
    {"Subject: a\n b\n\nbody", "Subject", 100, true, "a b"},
    {"Subject:\r\n\r\n", "Subject", 100, true, ""},
    {"Subject: hello\r\n\r\n", "Subject", 3, true, "hel"},
    {"Subject: hello\r\n\r\n", "Subject", 0, true, ""},
    {"Subject: x\xc3\xa9y\r\n\r\n", "Subject", 2, true, "x"},
    {"Subject: x\xc3\xa9y\r\n\r\n", "Subject", 3, true, "x\xc3\xa9"},
    {"Subject: \xe2\x82\xac\r\n\r\n", "Subject", 2, true, ""},
    {"From: a\r\n\r\nSubject: in body\r\n", "Subject", 100, false, ""},
    {"From: a\r\n\r\n", "Subject", 100, false, ""},
    {"", "Subject", 100, false, ""},
    {"Subject: no body at all", "Subject", 100, true, "no body at all"},
    {"Subject: no body\r\n", "Subject", 100, true, "no body"},
    {"X-Subject: no\r\nSubject: yes\r\n\r\n", "Subject", 100, true, "yes"},
    {"Subjects: no\r\nSubject: yes\r\n\r\n", "Subject", 100, true, "yes"},
    {"Subject : obs\r\n\r\n", "Subject", 100, true, "obs"},
    {"Subject: first\r\nSubject: second\r\n\r\n", "Subject", 100, true, "first"},
    {" Subject: continuation\r\n\r\n", "Subject", 100, false, ""},
    {"garbage line\r\nSubject: ok\r\n\r\n", "Subject", 100, true, "ok"},
    {"Message-ID:<a@b>\r\n\r\n", "message-id", 100, true, "<a@b>"},
};

static void test_header_get(void **state)
{
	struct buf out = BUF_INIT;
	for (size_t i = 0; i < N_ELEM(header_cases); i++) {
		buf_puts(&out, "stale");
		const char *m = header_cases[i].msg;
		bool found =
		    smtp_header_get(m, strlen(m), header_cases[i].name, &out, header_cases[i].max);
		if (found != header_cases[i].found ||
		    strcmp(buf_cstr(&out), header_cases[i].value) != 0)
			fail_msg(
			    "header case %zu: found %d value \"%s\"", i, found, buf_cstr(&out));
	}
	/* the length bounds the search */
	const char *m = "From: a\r\nSubject: hi\r\n\r\n";
	assert_false(smtp_header_get(m, 9, "Subject", &out, 100));
	assert_true(smtp_header_get(m, 20, "Subject", &out, 100));
	assert_string_equal(buf_cstr(&out), "hi");
	buf_free(&out);
}

static void test_header_section_len(void **state)
{
	static const struct {
		const char *msg;
		size_t len;
	} cases[] = {
	    {"A: b\r\n\r\nbody", 8},
	    {"A: b\r\nC: d\r\n\r\n", 14},
	    {"\r\nbody", 2},
	    {"A: b\n\nbody", 6},
	    {"A: b\r\n", 6},
	    {"A: b", 4},
	    {"", 0},
	    {"A: b\r\n c\r\n\r\n", 12},
	};
	for (size_t i = 0; i < N_ELEM(cases); i++) {
		size_t n = smtp_header_section_len(cases[i].msg, strlen(cases[i].msg));
		if (n != cases[i].len)
			fail_msg("section case %zu: %zu, want %zu", i, n, cases[i].len);
	}
}

/* smtp_hdr_scan: where the header section ends, fed whole and byte by byte */
static void test_hdr_scan(void **state)
{
	static const struct {
		const char *in;
		bool done;
		uint64_t size; /* when done: bytes up to and including the empty line */
	} cases[] = {
	    {"", false, 0},
	    {"\r\n", true, 2},
	    {"\r\nbody\r\n", true, 2},
	    {"\n", true, 1},
	    {"Subject: a\r\n\r\nbody", true, 14},
	    {"Subject: a\r\n\tfolded\r\n\r\n", true, 23},
	    {"Subject: a\n\nbody", true, 12},
	    {"Subject: a\r\nTo: b\r\n", false, 0},
	    {"Subject: a\r\n\r", false, 0},
	    {"Subject: a\r\r\n", false, 0},
	    {"no empty line at all", false, 0},
	    {"A: b\r\n \r\nC: d\r\n\r\n", true, 17},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = strlen(cases[i].in);
		struct smtp_hdr_scan whole, bytes;
		smtp_hdr_scan_init(&whole);
		smtp_hdr_scan_init(&bytes);
		bool d1 = smtp_hdr_scan_feed(&whole, cases[i].in, n);
		bool d2 = false;
		for (size_t k = 0; k < n; k++)
			d2 = smtp_hdr_scan_feed(&bytes, cases[i].in + k, 1);
		if (n == 0)
			d2 = bytes.done;
		if (d1 != cases[i].done || d2 != cases[i].done)
			fail_msg("case %zu: done %d/%d, want %d", i, d1, d2, cases[i].done);
		if (cases[i].done) {
			assert_int_equal(whole.size, cases[i].size);
			assert_int_equal(bytes.size, cases[i].size);
		} else {
			assert_int_equal(whole.size, n);
			assert_int_equal(bytes.size, n);
		}
	}
}

/* smtp_strip_auth_results: forged fields with our authserv-id go, the rest
 * stays byte for byte. */
static void test_strip_auth_results(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
		size_t removed;
	} cases[] = {
	    {"Subject: x\r\n\r\n", "Subject: x\r\n\r\n", 0},
	    {"Authentication-Results: mx.ours.test; spf=pass\r\nSubject: x\r\n\r\n",
	        "Subject: x\r\n\r\n", 1},
	    /* case, folding, a comment before the id, a quoted id */
	    {"authentication-results:MX.OURS.TEST;\r\n\tdkim=pass\r\n\r\n", "\r\n", 1},
	    {"Authentication-Results: (forged\r\n (nested)) mx.ours.test; none\r\nA: b\r\n\r\n",
	        "A: b\r\n\r\n", 1},
	    {"Authentication-Results: \"mx.ours.test\"; none\r\n\r\n", "\r\n", 1},
	    {"Authentication-Results : mx.ours.test (v1); spf=fail\r\n\r\n", "\r\n", 1},
	    /* not ours: kept */
	    {"Authentication-Results: other.test; spf=pass\r\n\r\n",
	        "Authentication-Results: other.test; spf=pass\r\n\r\n", 0},
	    {"Authentication-Results: mx.ours.test.evil; spf=pass\r\n\r\n",
	        "Authentication-Results: mx.ours.test.evil; spf=pass\r\n\r\n", 0},
	    {"Authentication-Results-X: mx.ours.test; a\r\n\r\n",
	        "Authentication-Results-X: mx.ours.test; a\r\n\r\n", 0},
	    {"X-Note: Authentication-Results: mx.ours.test\r\n\r\n",
	        "X-Note: Authentication-Results: mx.ours.test\r\n\r\n", 0},
	    /* several, mixed, LF-only lines, no final empty line */
	    {"A: 1\nAuthentication-Results: mx.ours.test; x\n b\nAuthentication-Results: o.test; "
	     "y\n"
	     "Authentication-Results: mx.ours.test; z",
	        "A: 1\nAuthentication-Results: o.test; y\n", 2},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf out = BUF_INIT;
		size_t n =
		    smtp_strip_auth_results(cases[i].in, strlen(cases[i].in), "mx.ours.test", &out);
		if (n != cases[i].removed || strcmp(buf_cstr(&out), cases[i].out) != 0)
			fail_msg("case %zu: removed %zu, got \"%s\"", i, n, buf_cstr(&out));
		buf_free(&out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verbs),
	    cmocka_unit_test(test_line_ok),
	    cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_path_lengths),
	    cmocka_unit_test(test_domain_ok),
	    cmocka_unit_test(test_bdat),
	    cmocka_unit_test(test_u64),
	    cmocka_unit_test(test_data),
	    cmocka_unit_test(test_data_big),
	    cmocka_unit_test(test_data_cap),
	    cmocka_unit_test(test_header_get),
	    cmocka_unit_test(test_header_section_len),
	    cmocka_unit_test(test_hdr_scan),
	    cmocka_unit_test(test_strip_auth_results),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
