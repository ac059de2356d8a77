/*
 * test_mime_addr.c - table-driven unit tests for src/mime/addr.c.
 *
 * Each good case lists the addresses expected as "display|local|domain|group"
 * strings (group "-" for none). Every good case is also rendered with
 * mime_addr_list_render and parsed again: the addresses must be the same.
 * Bad cases give the expected error code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "mime/addr.h"

#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))
#define MAXA 6

static const struct good {
	const char *in;
	size_t n;
	const char *want[MAXA];
} good_cases[] = {
    /* plain forms */
    {"a@b", 1, {"|a|b|-"}},
    {"alice@example.com", 1, {"|alice|example.com|-"}},
    {"<alice@example.com>", 1, {"|alice|example.com|-"}},
    {"\"Alice Liddell\" <alice@example.com>", 1, {"Alice Liddell|alice|example.com|-"}},
    {"Alice Liddell <alice@example.com>", 1, {"Alice Liddell|alice|example.com|-"}},
    {"Alice<alice@example.com>", 1, {"Alice|alice|example.com|-"}},
    {"  Alice   Liddell   <alice@example.com>  ", 1, {"Alice Liddell|alice|example.com|-"}},
    {"\"Smith, John\" <john@example.com>", 1, {"Smith, John|john|example.com|-"}},
    {"\"\" <a@b.c>", 1, {"|a|b.c|-"}},
    {"john.q.public@example.com", 1, {"|john.q.public|example.com|-"}},
    {"first.last+tag@sub.example.co.uk", 1, {"|first.last+tag|sub.example.co.uk|-"}},
    {"!#$%&'*+-/=?^_`{|}~@example.org", 1, {"|!#$%&'*+-/=?^_`{|}~|example.org|-"}},
    {"MAILER-DAEMON@example.com", 1, {"|MAILER-DAEMON|example.com|-"}},
    {"no-reply@x.test (Automated)", 1, {"|no-reply|x.test|-"}},
    {"a@b (Alice)", 1, {"|a|b|-"}},
    {"(lead) a@b", 1, {"|a|b|-"}},
    /* lists */
    {"a@b, c@d", 2, {"|a|b|-", "|c|d|-"}},
    {"a@b,c@d,e@f", 3, {"|a|b|-", "|c|d|-", "|e|f|-"}},
    {"Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>", 3,
        {"Mary Smith|mary|x.test|-", "|jdoe|example.org|-", "Who?|one|y.test|-"}},
    {"<boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>", 2,
        {"|boss|nil.test|-", "Giant; \"Big\" Box|sysservices|example.net|-"}},
    {"a@b,,c@d", 2, {"|a|b|-", "|c|d|-"}},
    {", a@b ,", 1, {"|a|b|-"}},
    {"", 0, {NULL}},
    {"   ", 0, {NULL}},
    {",", 0, {NULL}},
    /* groups */
    {"undisclosed-recipients:;", 0, {NULL}},
    {"undisclosed-recipients: ;", 0, {NULL}},
    {"team: a@b, c@d;", 2, {"|a|b|team", "|c|d|team"}},
    {"team: a@b, c@d;, e@f", 3, {"|a|b|team", "|c|d|team", "|e|f|-"}},
    {"x@y, team: Ann <a@b>;", 2, {"|x|y|-", "Ann|a|b|team"}},
    {"A Group(Some people):Chris Jones <c@(Chris's host.)public.example>, joe@example.org,"
     " John <jdoe@one.test> (my dear friend); (the end of the group)",
        3,
        {"Chris Jones|c|public.example|A Group", "|joe|example.org|A Group",
            "John|jdoe|one.test|A Group"}},
    {"(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;", 0, {NULL}},
    {"\"The Team\": a@b;", 1, {"|a|b|The Team"}},
    {"g1: a@b;, g2: c@d;", 2, {"|a|b|g1", "|c|d|g2"}},
    {"g: , a@b, ;", 1, {"|a|b|g"}},
    /* quoted local parts and escapes */
    {"\"john doe\"@example.com", 1, {"|john doe|example.com|-"}},
    {"\"john\\\"doe\"@example.com", 1, {"|john\"doe|example.com|-"}},
    {"\"a\\\\b\"@example.com", 1, {"|a\\b|example.com|-"}},
    {"\"\"@example.com", 1, {"||example.com|-"}},
    {"\"@\"@example.com", 1, {"|@|example.com|-"}},
    {"Name <\"quoted local\"@example.com>", 1, {"Name|quoted local|example.com|-"}},
    {"\"Joe Q. Public\" <john.q.public@example.com>", 1,
        {"Joe Q. Public|john.q.public|example.com|-"}},
    {"\"a\\ b\" <x@y>", 1, {"a b|x|y|-"}},
    /* UTF-8 (RFC 6532) */
    {"Jörg Müller <joerg@example.de>", 1, {"Jörg Müller|joerg|example.de|-"}},
    {"\"Müller, Jörg\" <j@example.de>", 1, {"Müller, Jörg|j|example.de|-"}},
    {"用户@例子.广告", 1, {"|用户|例子.广告|-"}},
    {"Дмитрий <дмитрий@пример.рф>", 1, {"Дмитрий|дмитрий|пример.рф|-"}},
    {"😀 <smile@example.com>", 1, {"😀|smile|example.com|-"}},
    /* encoded words are left alone */
    {"=?UTF-8?Q?J=C3=B6rg?= <j@x.test>", 1, {"=?UTF-8?Q?J=C3=B6rg?=|j|x.test|-"}},
    /* obsolete forms */
    {"Mary Smith <@node.test:mary@example.net>", 1, {"Mary Smith|mary|example.net|-"}},
    {"<@x,@y:a@b>", 1, {"|a|b|-"}},
    {"< @x , @y : a@b >", 1, {"|a|b|-"}},
    {"<,@x,,@y:a@b>", 1, {"|a|b|-"}},
    {"Joe Q. Public <john.q.public@example.com>", 1, {"Joe Q. Public|john.q.public|example.com|-"}},
    {"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", 1,
        {"Pete|pete|silly.test|-"}},
    {"John Doe <jdoe@machine(comment).  example>", 1, {"John Doe|jdoe|machine.example|-"}},
    {"john . doe @ example . com", 1, {"|john.doe|example.com|-"}},
    {"a.\"b c\".d@x", 1, {"|a.b c.d|x|-"}},
    {"foo.@docomo.ne.jp", 1, {"|foo.|docomo.ne.jp|-"}},
    {"a..b@x.test", 1, {"|a..b|x.test|-"}},
    /* domain literals */
    {"a@[192.0.2.1]", 1, {"|a|[192.0.2.1]|-"}},
    {"a@[IPv6:2001:db8::1]", 1, {"|a|[IPv6:2001:db8::1]|-"}},
    {"Name <a@ [ 192.0.2.1 ] >", 1, {"Name|a|[ 192.0.2.1 ]|-"}},
    /* CFWS everywhere, folding */
    {"(c1) \"Name\" (c2) < (c3) a (c4) @ (c5) b (c6) > (c7)", 1, {"Name|a|b|-"}},
    {"Alice\r\n <a@b>", 1, {"Alice|a|b|-"}},
    {"Alice\r\n\t<a@b>,\r\n bob@c", 2, {"Alice|a|b|-", "|bob|c|-"}},
    {"\"Alice\r\n Liddell\" <a@b>", 1, {"Alice Liddell|a|b|-"}},
    {"Alice\n <a@b>", 1, {"Alice|a|b|-"}},
    {"a@b\r\n", 1, {"|a|b|-"}},
    {"a@b\n", 1, {"|a|b|-"}},
    {"a@b (nested (comments (deep)) here)", 1, {"|a|b|-"}},
    {"(a\r\n b)a@b", 1, {"|a|b|-"}},
    {"\tAlice\t<a@b>\t", 1, {"Alice|a|b|-"}},
};

static const struct bad {
	const char *in;
	enum mime_addr_rc rc;
} bad_cases[] = {
    {"a", MIME_ADDR_SYNTAX},                 /* missing @ */
    {"Alice", MIME_ADDR_SYNTAX},             /* missing @ */
    {"a@b, c", MIME_ADDR_SYNTAX},            /* missing @ in the second */
    {"Smith, John <j@x>", MIME_ADDR_SYNTAX}, /* unquoted comma */
    {"<a@b", MIME_ADDR_SYNTAX},              /* unbalanced < */
    {"a@b>", MIME_ADDR_SYNTAX},              /* unbalanced > */
    {"Name <a@b", MIME_ADDR_SYNTAX},         /* unbalanced < */
    {"<<a@b>>", MIME_ADDR_SYNTAX},           /* nested angles */
    {"<>", MIME_ADDR_SYNTAX},                /* null path is not a mailbox */
    {"Name <>", MIME_ADDR_SYNTAX},           /* ditto */
    {"@b", MIME_ADDR_SYNTAX},                /* no local part */
    {"a@", MIME_ADDR_SYNTAX},                /* no domain */
    {"a@b@c", MIME_ADDR_SYNTAX},             /* two @ */
    {"a@.b", MIME_ADDR_SYNTAX},              /* empty label */
    {"a@b.", MIME_ADDR_SYNTAX},              /* empty label */
    {"a@b..c", MIME_ADDR_SYNTAX},            /* empty label */
    {"a b@c", MIME_ADDR_SYNTAX},             /* phrase as local part */
    {"\"a\" b@c", MIME_ADDR_SYNTAX},         /* ditto */
    {"a@b c@d", MIME_ADDR_SYNTAX},           /* missing comma */
    {"a@b junk", MIME_ADDR_SYNTAX},          /* trailing garbage */
    {"<a@b> junk", MIME_ADDR_SYNTAX},        /* trailing garbage */
    {"a@b;", MIME_ADDR_SYNTAX},              /* ';' outside a group */
    {"g: a@b", MIME_ADDR_SYNTAX},            /* group without ';' */
    {"g: h: a@b;;", MIME_ADDR_SYNTAX},       /* nested group */
    {"g: a@b; junk", MIME_ADDR_SYNTAX},      /* garbage after group */
    {": a@b;", MIME_ADDR_SYNTAX},            /* group without a name */
    {"\"unterminated@x", MIME_ADDR_SYNTAX},  /* open quote */
    {"a@b (open comment", MIME_ADDR_SYNTAX}, /* open comment */
    {"a@b (x))", MIME_ADDR_SYNTAX},          /* extra ')' */
    {"a@[1.2.3.4", MIME_ADDR_SYNTAX},        /* open literal */
    {"a@[1[2]", MIME_ADDR_SYNTAX},           /* '[' in literal */
    {"a@b\r\nc@d", MIME_ADDR_SYNTAX},        /* line end without WSP */
    {"a@b\rc", MIME_ADDR_SYNTAX},            /* bare CR */
    {"Alice\r\n<a@b>", MIME_ADDR_SYNTAX},    /* not a fold */
    {"a@b\r\n\r\n", MIME_ADDR_SYNTAX},       /* two line ends */
    {"\"a\rb\"@c", MIME_ADDR_SYNTAX},        /* CR in quoted string */
    {"\"a\\\rb\"@c", MIME_ADDR_SYNTAX},      /* quoted CR */
    {"a\x01@b", MIME_ADDR_SYNTAX},           /* control character */
    {"a@b\x7f", MIME_ADDR_SYNTAX},           /* DEL */
    {"J\xf6rg <j@x>", MIME_ADDR_SYNTAX},     /* Latin-1, not UTF-8 */
    {"\xc0\xaf@x", MIME_ADDR_SYNTAX},        /* overlong UTF-8 */
    {"\xed\xa0\x80@x", MIME_ADDR_SYNTAX},    /* UTF-16 surrogate */
    {"\xe4\xb8@x", MIME_ADDR_SYNTAX},        /* truncated UTF-8 */
    {"\"\xff\"@x", MIME_ADDR_SYNTAX},        /* invalid byte in quotes */
    {"a@b (\xff)", MIME_ADDR_SYNTAX},        /* invalid byte in comment */
    {"<@x a@b>", MIME_ADDR_SYNTAX},          /* route without ':' */
    {"<@:a@b>", MIME_ADDR_SYNTAX},           /* route without domain */
    {"a\\b@c", MIME_ADDR_SYNTAX},            /* quoted-pair outside quotes */
    {"[a]@b", MIME_ADDR_SYNTAX},             /* literal as local part */
    {"a@b:c", MIME_ADDR_SYNTAX},             /* stray ':' */
};

static char *fmt(const struct mime_addr *a)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s|%s|%s|%s", a->display, a->local, a->domain, a->group ? a->group : "-");
	return buf_steal(&b);
}

/* The parsed list must be exactly g's expectation. */
static void check_list(const char *what, const struct good *g, const struct mime_addr_list *l)
{
	if (l->n != g->n)
		fail_msg("%s \"%s\": %zu addresses, want %zu", what, g->in, l->n, g->n);
	for (size_t k = 0; k < l->n; k++) {
		char *got = fmt(&l->v[k]);
		if (strcmp(got, g->want[k]) != 0)
			fail_msg("%s \"%s\" #%zu: got \"%s\" want \"%s\"", what, g->in, k, got,
			    g->want[k]);
		free(got);
	}
}

static void test_good(void **state)
{
	for (size_t i = 0; i < N_ELEM(good_cases); i++) {
		const struct good *g = &good_cases[i];
		struct mime_addr_list l;
		enum mime_addr_rc rc = mime_addr_list_parse(g->in, strlen(g->in), &l);
		if (rc != MIME_ADDR_OK)
			fail_msg("case %zu \"%s\": rc %d", i, g->in, (int)rc);
		check_list("parse", g, &l);

		/* render, parse again, same addresses */
		struct buf r = BUF_INIT;
		if (!mime_addr_list_render(&l, &r))
			fail_msg("case %zu \"%s\": render failed", i, g->in);
		struct mime_addr_list l2;
		rc = mime_addr_list_parse(buf_cstr(&r), r.len, &l2);
		if (rc != MIME_ADDR_OK)
			fail_msg("case %zu: rendered \"%s\" does not parse: %d", i, buf_cstr(&r),
			    (int)rc);
		check_list("reparse", g, &l2);
		mime_addr_list_free(&l2);
		buf_free(&r);
		mime_addr_list_free(&l);
	}
	struct mime_addr_list l;
	assert_int_equal(mime_addr_list_parse("alice@example.com", 17, &l), MIME_ADDR_OK);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].display, "");
	assert_string_equal(l.v[0].local, "alice");
	assert_string_equal(l.v[0].domain, "example.com");
	assert_null(l.v[0].group);
	mime_addr_list_free(&l);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
	mime_addr_list_free(NULL);
}

static void test_bad(void **state)
{
	for (size_t i = 0; i < N_ELEM(bad_cases); i++) {
		struct mime_addr_list l;
		const char *in = bad_cases[i].in;
		enum mime_addr_rc rc = mime_addr_list_parse(in, strlen(in), &l);
		if (rc != bad_cases[i].rc)
			fail_msg("bad case %zu \"%s\": rc %d want %d", i, in, (int)rc,
			    (int)bad_cases[i].rc);
		if (l.n != 0 || l.v != NULL)
			fail_msg("bad case %zu: output not empty", i);
	}
}

/* The length bounds the input, not the NUL; a NUL inside is refused. */
static void test_length(void **state)
{
	struct mime_addr_list l;
	assert_int_equal(mime_addr_list_parse("a@b, junk", 3, &l), MIME_ADDR_OK);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].domain, "b");
	mime_addr_list_free(&l);
	assert_int_equal(mime_addr_list_parse("a@b\0c", 5, &l), MIME_ADDR_SYNTAX);
	assert_int_equal(mime_addr_list_parse("\"a\0\"@b", 6, &l), MIME_ADDR_SYNTAX);
	assert_int_equal(mime_addr_list_parse(NULL, 0, &l), MIME_ADDR_OK);
	assert_int_equal(l.n, 0);
}

/* MIME_ADDR_MAX addresses pass, one more does not, also inside a group. */
static void test_too_many(void **state)
{
	for (int grouped = 0; grouped < 2; grouped++) {
		struct buf b = BUF_INIT;
		if (grouped)
			buf_puts(&b, "big: ");
		for (size_t k = 0; k < MIME_ADDR_MAX; k++)
			buf_printf(&b, "%su%zu@example.com", k ? ", " : "", k);
		struct buf full = BUF_INIT;
		buf_append(&full, buf_cstr(&b), b.len);
		buf_puts(&full, ", one@more.test");
		if (grouped) {
			buf_putc(&b, ';');
			buf_putc(&full, ';');
		}
		struct mime_addr_list l;
		assert_int_equal(mime_addr_list_parse(buf_cstr(&b), b.len, &l), MIME_ADDR_OK);
		assert_int_equal(l.n, MIME_ADDR_MAX);
		assert_string_equal(l.v[999].local, "u999");
		if (grouped)
			assert_string_equal(l.v[999].group, "big");
		mime_addr_list_free(&l);
		assert_int_equal(
		    mime_addr_list_parse(buf_cstr(&full), full.len, &l), MIME_ADDR_TOO_MANY);
		assert_int_equal(l.n, 0);
		assert_null(l.v);
		buf_free(&b);
		buf_free(&full);
	}
	/* empty elements do not count */
	struct buf b = BUF_INIT;
	for (size_t k = 0; k < 5000; k++)
		buf_puts(&b, ",");
	buf_puts(&b, "a@b");
	struct mime_addr_list l;
	assert_int_equal(mime_addr_list_parse(buf_cstr(&b), b.len, &l), MIME_ADDR_OK);
	assert_int_equal(l.n, 1);
	mime_addr_list_free(&l);
	buf_free(&b);
}

/* Deep comment nesting is counted, not recursed. */
static void test_deep_comment(void **state)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "a@b ");
	for (int k = 0; k < 100000; k++)
		buf_putc(&b, '(');
	for (int k = 0; k < 100000; k++)
		buf_putc(&b, ')');
	struct mime_addr_list l;
	assert_int_equal(mime_addr_list_parse(buf_cstr(&b), b.len, &l), MIME_ADDR_OK);
	assert_int_equal(l.n, 1);
	mime_addr_list_free(&l);
	buf_free(&b);
}

static void test_render(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"a@b", "a@b"},
	    {"Alice <a@b>", "Alice <a@b>"},
	    {"\"Alice\" <a@b>", "Alice <a@b>"},
	    {"\"Smith, John\" <j@x>", "\"Smith, John\" <j@x>"},
	    {"Joe Q. Public <j@x>", "\"Joe Q. Public\" <j@x>"},
	    {"\"a\\\"b\" <j@x>", "\"a\\\"b\" <j@x>"},
	    {"\"john doe\"@x", "\"john doe\"@x"},
	    {"\"john\"@x", "john@x"},
	    {"foo.@x", "\"foo.\"@x"},
	    {"team: a@b, Ann <c@d>;, e@f", "team: a@b, Ann <c@d>;, e@f"},
	    {"g: a@b;", "g: a@b;"},
	    {"\"My Group\": a@b;", "My Group: a@b;"},
	    {"\"My: Group\": a@b;", "\"My: Group\": a@b;"},
	    {"a@[1.2.3.4]", "a@[1.2.3.4]"},
	    {"<@r:a@b> (c)", "a@b"},
	    {"Jörg <j@x>", "Jörg <j@x>"},
	    {"undisclosed-recipients:;", ""},
	};
	for (size_t i = 0; i < N_ELEM(cases); i++) {
		struct mime_addr_list l;
		assert_int_equal(
		    mime_addr_list_parse(cases[i].in, strlen(cases[i].in), &l), MIME_ADDR_OK);
		struct buf r = BUF_INIT;
		assert_true(mime_addr_list_render(&l, &r));
		if (strcmp(buf_cstr(&r), cases[i].out) != 0)
			fail_msg("render \"%s\": got \"%s\" want \"%s\"", cases[i].in, buf_cstr(&r),
			    cases[i].out);
		buf_free(&r);
		mime_addr_list_free(&l);
	}
	/* fields that cannot be written */
	struct mime_addr a = {"x", "a", "b", NULL};
	struct mime_addr_list l = {&a, 1};
	struct buf r = BUF_INIT;
	a.display = "bad\r\nname";
	assert_false(mime_addr_list_render(&l, &r));
	a.display = "";
	a.domain = "";
	buf_reset(&r);
	assert_false(mime_addr_list_render(&l, &r));
	a.domain = "a..b";
	buf_reset(&r);
	assert_false(mime_addr_list_render(&l, &r));
	a.domain = "b";
	a.local = "\xff";
	buf_reset(&r);
	assert_false(mime_addr_list_render(&l, &r));
	buf_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_length),
	    cmocka_unit_test(test_too_many),
	    cmocka_unit_test(test_deep_comment),
	    cmocka_unit_test(test_render),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
