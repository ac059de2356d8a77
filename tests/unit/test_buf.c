/*
 * test_buf.c - unit tests for src/core/buf.c: growth, the hard cap and its
 * sticky error flag, printf, consume, steal and reserve.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

/* The documented invariants hold. */
static void check_invariants(const struct buf *b)
{
	assert_true((b->data == NULL) == (b->alloc == 0));
	if (b->data != NULL) {
		assert_true(b->len < b->alloc);
		assert_int_equal(b->data[b->len], '\0');
	} else {
		assert_int_equal(b->len, 0);
	}
}

static void test_init_empty(void **state)
{
	struct buf a = BUF_INIT, b;
	buf_init(&b, 10);
	check_invariants(&a);
	check_invariants(&b);
	assert_string_equal(buf_cstr(&a), "");
	assert_false(buf_err(&a));
	assert_int_equal(b.cap, 10);
	buf_free(&a);
	buf_free(&b);
	buf_free(NULL);
}

static void test_append_grow(void **state)
{
	struct buf b = BUF_INIT;
	assert_true(buf_puts(&b, "hello"));
	assert_true(buf_putc(&b, ' '));
	assert_true(buf_append(&b, "world!!", 5));
	assert_string_equal(buf_cstr(&b), "hello world");
	assert_int_equal(b.len, 11);
	check_invariants(&b);

	/* binary-safe and growing well past the first allocation */
	for (int i = 0; i < 10000; i++)
		assert_true(buf_append(&b, "\0x", 2));
	assert_int_equal(b.len, 11 + 20000);
	assert_int_equal(b.data[11], '\0');
	assert_int_equal(b.data[12], 'x');
	check_invariants(&b);
	assert_true(buf_append(&b, NULL, 0));
	assert_int_equal(b.len, 20011);
	buf_free(&b);
	check_invariants(&b);
	assert_int_equal(b.len, 0);
	/* reusable after free */
	assert_true(buf_puts(&b, "again"));
	assert_string_equal(buf_cstr(&b), "again");
	buf_free(&b);
}

static void test_cap_sticky(void **state)
{
	struct buf b;
	buf_init(&b, 8);
	assert_true(buf_puts(&b, "12345678")); /* exactly the cap */
	assert_false(buf_err(&b));
	assert_false(buf_putc(&b, '9')); /* one past */
	assert_true(buf_err(&b));
	assert_string_equal(buf_cstr(&b), "12345678"); /* unchanged */

	/* sticky: even an append that would fit fails now */
	buf_consume(&b, 4);
	assert_true(buf_err(&b));
	assert_false(buf_putc(&b, 'x'));
	assert_string_equal(buf_cstr(&b), "5678");
	assert_null(buf_reserve(&b, 1));
	assert_false(buf_printf(&b, "%d", 1));
	assert_string_equal(buf_cstr(&b), "5678");

	/* reset clears it */
	buf_reset(&b);
	assert_false(buf_err(&b));
	assert_int_equal(b.len, 0);
	assert_true(buf_puts(&b, "abc"));
	assert_string_equal(buf_cstr(&b), "abc");
	check_invariants(&b);

	/* an append larger than the cap fails as a whole, never partially */
	buf_reset(&b);
	assert_false(buf_append(&b, "0123456789", 10));
	assert_int_equal(b.len, 0);
	assert_true(buf_err(&b));
	buf_free(&b);
	assert_false(buf_err(&b));

	/* huge sizes do not overflow the cap arithmetic */
	struct buf c = BUF_INIT;
	assert_true(buf_puts(&c, "x"));
	assert_null(buf_reserve(&c, SIZE_MAX));
	assert_true(buf_err(&c));
	buf_free(&c);

	/* the default cap applies when cap is 0 */
	buf_init(&c, 0);
	assert_null(buf_reserve(&c, BUF_CAP_DEFAULT + 1));
	assert_true(buf_err(&c));
	buf_free(&c);
}

static void test_printf(void **state)
{
	struct buf b = BUF_INIT;
	assert_true(buf_printf(&b, "%s=%d", "a", 42));
	assert_true(buf_printf(&b, " %05.1f", 3.14159));
	assert_string_equal(buf_cstr(&b), "a=42 003.1");
	assert_true(buf_printf(&b, "%s", ""));
	assert_int_equal(b.len, 10);
	check_invariants(&b);

	/* output longer than any initial allocation */
	buf_reset(&b);
	char big[5000];
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_true(buf_printf(&b, "<%s>", big));
	assert_int_equal(b.len, sizeof(big) + 1);
	assert_int_equal(b.data[0], '<');
	assert_int_equal(b.data[b.len - 1], '>');
	check_invariants(&b);
	buf_free(&b);

	/* capped: fails whole, contents unchanged */
	buf_init(&b, 6);
	assert_true(buf_printf(&b, "%d", 123));
	assert_false(buf_printf(&b, "%d", 4567));
	assert_true(buf_err(&b));
	assert_string_equal(buf_cstr(&b), "123");
	buf_free(&b);
}

static void test_consume(void **state)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "abcdef");
	buf_consume(&b, 0);
	assert_string_equal(buf_cstr(&b), "abcdef");
	buf_consume(&b, 2);
	assert_string_equal(buf_cstr(&b), "cdef");
	assert_int_equal(b.len, 4);
	check_invariants(&b);
	buf_consume(&b, 4);
	assert_int_equal(b.len, 0);
	assert_string_equal(buf_cstr(&b), "");
	check_invariants(&b);
	/* empty, never allocated */
	struct buf e = BUF_INIT;
	buf_consume(&e, 0);
	assert_int_equal(e.len, 0);
	buf_free(&b);

	/* the sticky error survives consuming everything */
	struct buf c = BUF_INIT;
	buf_init(&c, 4);
	assert_true(buf_puts(&c, "abc"));
	assert_false(buf_puts(&c, "de"));
	buf_consume(&c, c.len);
	assert_int_equal(c.len, 0);
	assert_true(buf_err(&c));
	buf_free(&c);
}

static void test_steal(void **state)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "take me");
	char *s = buf_steal(&b);
	assert_string_equal(s, "take me");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	check_invariants(&b);
	free(s);

	/* stealing from an empty buf gives "" */
	s = buf_steal(&b);
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);

	/* the buf is reusable; the error is cleared */
	struct buf c;
	buf_init(&c, 2);
	buf_puts(&c, "abc");
	assert_true(buf_err(&c));
	s = buf_steal(&c);
	assert_false(buf_err(&c));
	free(s);
	assert_true(buf_puts(&c, "ok"));
	s = buf_steal(&c);
	assert_string_equal(s, "ok");
	free(s);
}

static void test_reserve(void **state)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "ab");
	char *p = buf_reserve(&b, 100);
	assert_non_null(p);
	assert_ptr_equal(p, b.data + 2);
	assert_true(b.alloc >= 2 + 100 + 1);
	assert_int_equal(b.len, 2); /* reserve does not change len */
	memcpy(p, "cd", 2);
	b.len += 2;
	b.data[b.len] = '\0';
	assert_string_equal(buf_cstr(&b), "abcd");
	check_invariants(&b);
	/* reserving 0 is fine and gives the end */
	assert_ptr_equal(buf_reserve(&b, 0), b.data + b.len);
	buf_free(&b);

	/* within the cap, exactly */
	buf_init(&b, 4);
	assert_non_null(buf_reserve(&b, 4));
	assert_null(buf_reserve(&b, 5));
	assert_true(buf_err(&b));
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_empty),
	    cmocka_unit_test(test_append_grow),
	    cmocka_unit_test(test_cap_sticky),
	    cmocka_unit_test(test_printf),
	    cmocka_unit_test(test_consume),
	    cmocka_unit_test(test_steal),
	    cmocka_unit_test(test_reserve),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
