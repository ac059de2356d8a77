/*
 * fuzz_auth_results.c - libFuzzer target for smtp_strip_auth_results()
 * (smtp_parse.h), which edits the header section of every received message.
 *
 * Invariants: the output is never longer than the input; it is the input
 * with whole fields taken out (so stripping it again removes nothing and
 * changes nothing); a field that is not an Authentication-Results field
 * always survives. Any violation aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_parse.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct buf a = BUF_INIT, b = BUF_INIT;
	size_t n = smtp_strip_auth_results(in, size, "mx.ours.test", &a);
	CHECK(a.len <= size);
	CHECK(
	    n == 0 ? a.len == size && (size == 0 || memcmp(a.data, in, size) == 0) : a.len < size);
	size_t again = smtp_strip_auth_results(a.data ? a.data : "", a.len, "mx.ours.test", &b);
	CHECK(again == 0 && b.len == a.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
	/* without the field name anywhere, nothing can go */
	bool has = false;
	for (size_t i = 0; i + 22 <= size && !has; i++)
		has = strncasecmp(in + i, "authentication-results", 22) == 0;
	CHECK(has || n == 0);
	buf_free(&a);
	buf_free(&b);
	return 0;
}
