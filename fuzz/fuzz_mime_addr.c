/*
 * fuzz_mime_addr.c - libFuzzer target for the RFC 5322 address-list parser.
 *
 * The input is one header field value. The parser must never crash; on
 * success every address has non-NULL fields without CR, LF or NUL, the count
 * is within MIME_ADDR_MAX, and rendering the list (mime_addr_list_render)
 * and parsing the result must give the same addresses (display, local part,
 * domain and group), whose rendering is again the same text. On failure the
 * list is empty. Any difference aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "mime/addr.h"

#include "fuzz_check.h"

static bool clean(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") == NULL;
}

static bool same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_addr_list l, l2;
	enum mime_addr_rc rc = mime_addr_list_parse((const char *)data, size, &l);
	if (rc != MIME_ADDR_OK) {
		CHECK(rc == MIME_ADDR_SYNTAX || rc == MIME_ADDR_TOO_MANY || rc == MIME_ADDR_NOMEM);
		CHECK(l.n == 0 && l.v == NULL);
		return 0;
	}
	CHECK(l.n <= MIME_ADDR_MAX);
	for (size_t k = 0; k < l.n; k++) {
		const struct mime_addr *a = &l.v[k];
		CHECK(clean(a->display) && clean(a->local) && clean(a->domain));
		CHECK(a->group == NULL || clean(a->group));
		CHECK(a->domain[0] != '\0');
	}

	struct buf r = BUF_INIT, r2 = BUF_INIT;
	CHECK(mime_addr_list_render(&l, &r));
	rc = mime_addr_list_parse(buf_cstr(&r), r.len, &l2);
	if (rc != MIME_ADDR_OK) {
		fprintf(stderr, "rendered \"%s\" does not parse: %d\n", buf_cstr(&r), (int)rc);
		abort();
	}
	CHECK(l2.n == l.n);
	for (size_t k = 0; k < l.n; k++) {
		CHECK(same(l.v[k].display, l2.v[k].display));
		CHECK(same(l.v[k].local, l2.v[k].local));
		CHECK(same(l.v[k].domain, l2.v[k].domain));
		CHECK(same(l.v[k].group, l2.v[k].group));
	}
	CHECK(mime_addr_list_render(&l2, &r2));
	CHECK(r.len == r2.len && memcmp(buf_cstr(&r), buf_cstr(&r2), r.len) == 0);

	buf_free(&r);
	buf_free(&r2);
	mime_addr_list_free(&l);
	mime_addr_list_free(&l2);
	return 0;
}
