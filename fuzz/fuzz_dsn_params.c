/*
 * fuzz_dsn_params.c - libFuzzer target for the RFC 3461 parameter parsers
 * (NOTIFY, RET, ENVID, ORCPT), xtext, the RFC 6533 address encoding, and
 * the notification builder fed with hostile fields.
 *
 * The first byte picks the function; the rest is its input. Invariants:
 * - parsers: an accepted value renders to a value that parses to the same
 *   thing (NOTIFY bits, ENVID bytes, ORCPT type and a rendering that is a
 *   fixed point); xtext decode(encode(x)) == x for any x, and a decodable
 *   input re-encodes to something that decodes to the same bytes; decoded
 *   ENVID is printable ASCII; ORCPT never holds control characters.
 * - dsn_build: the input is split at NUL bytes into sender, recipient,
 *   ORCPT type and address, diagnostic, remote MTA, ENVID, status, queue id,
 *   and the original message (the rest). The result, when built, has CRLF
 *   line ends only, the boundary exactly where MIME needs it, lines within
 *   998 octets before the returned original, and in its header section and
 *   its report only the field names we write (so nothing was injected).
 * Any violation aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "queue/dsn.h"

#include "fuzz_check.h"

static void fuzz_notify(const char *s, size_t n)
{
	unsigned bits = 0, bits2 = 0;
	if (!dsn_parse_notify(s, n, &bits))
		return;
	CHECK(bits != 0);
	CHECK(!(bits & DSN_NOTIFY_NEVER) || bits == DSN_NOTIFY_NEVER);
	struct buf r = BUF_INIT;
	CHECK(dsn_notify_render(bits, &r));
	CHECK(dsn_parse_notify(r.data, r.len, &bits2) && bits2 == bits);
	buf_free(&r);
}

static void fuzz_ret(const char *s, size_t n)
{
	enum dsn_ret ret;
	if (dsn_parse_ret(s, n, &ret))
		CHECK(n == 4 && (ret == DSN_RET_FULL || ret == DSN_RET_HDRS));
}

static void fuzz_envid(const char *s, size_t n)
{
	struct buf v = BUF_INIT, e = BUF_INIT, v2 = BUF_INIT;
	if (dsn_parse_envid(s, n, &v)) {
		CHECK(v.len >= 1 && v.len <= DSN_ENVID_MAX);
		for (size_t k = 0; k < v.len; k++)
			CHECK(v.data[k] >= 0x20 && v.data[k] <= 0x7e);
		CHECK(dsn_xtext_encode(v.data, v.len, &e));
		CHECK(dsn_parse_envid(e.data, e.len, &v2));
		CHECK(v2.len == v.len && memcmp(v2.data, v.data, v.len) == 0);
	}
	buf_free(&v);
	buf_free(&e);
	buf_free(&v2);
}

static void fuzz_orcpt(const char *s, size_t n)
{
	struct dsn_orcpt o, o2, o3;
	if (!dsn_parse_orcpt(s, n, &o))
		return;
	CHECK(o.type[0] != '\0' && o.addr[0] != '\0');
	for (const unsigned char *p = (const unsigned char *)o.addr; *p; p++)
		CHECK(*p >= 0x20 && *p != 0x7f);
	struct buf r = BUF_INIT, r2 = BUF_INIT;
	CHECK(dsn_orcpt_render(&o, &r));
	/* a rendering may exceed the limit (escapes are longer than bytes) */
	if (dsn_parse_orcpt(r.data, r.len, &o2)) {
		CHECK(strcmp(o2.type, o.type) == 0);
		if (strcasecmp(o.type, "utf-8") != 0)
			CHECK(strcmp(o2.addr, o.addr) == 0);
		CHECK(dsn_orcpt_render(&o2, &r2));
		CHECK(r2.len == r.len && memcmp(r2.data, r.data, r.len) == 0);
		CHECK(dsn_parse_orcpt(r2.data, r2.len, &o3) && strcmp(o3.addr, o2.addr) == 0);
	}
	buf_free(&r);
	buf_free(&r2);
}

static void fuzz_xtext(const char *s, size_t n)
{
	struct buf e = BUF_INIT, d = BUF_INIT, d2 = BUF_INIT, e2 = BUF_INIT;
	/* any bytes survive encode + decode */
	CHECK(dsn_xtext_encode(s, n, &e));
	CHECK(dsn_xtext_decode(e.data, e.len, &d));
	CHECK(d.len == n && (n == 0 || memcmp(d.data, s, n) == 0));
	/* a decodable input re-encodes canonically */
	buf_reset(&d);
	if (dsn_xtext_decode(s, n, &d)) {
		CHECK(dsn_xtext_encode(d.data, d.len, &e2));
		CHECK(dsn_xtext_decode(e2.data, e2.len, &d2));
		CHECK(d2.len == d.len && (d.len == 0 || memcmp(d2.data, d.data, d.len) == 0));
	}
	buf_free(&e);
	buf_free(&d);
	buf_free(&d2);
	buf_free(&e2);
}

static void fuzz_utf8_addr(const char *s, size_t n)
{
	struct buf e = BUF_INIT;
	if (dsn_utf8_addr_encode(s, n, &e)) {
		for (size_t k = 0; k < e.len; k++) {
			unsigned char c = (unsigned char)e.data[k];
			CHECK(c >= 0x21 && c <= 0x7e && c != '+' && c != '=');
		}
	}
	buf_free(&e);
}

/* ---- dsn_build ---- */

static size_t count(const char *hay, size_t n, const char *needle)
{
	size_t c = 0, nl = strlen(needle);
	const char *p = hay, *end = hay + n;
	while ((p = memmem(p, (size_t)(end - p), needle, nl)) != NULL) {
		c++;
		p++;
	}
	return c;
}

static bool starts_with_any(const char *l, const char *const *names)
{
	for (; *names != NULL; names++)
		if (strncmp(l, *names, strlen(*names)) == 0)
			return true;
	return false;
}

/* Lines in [p, end) start with one of names, with WSP, or are empty. */
static void check_lines(const char *p, const char *end, const char *const *names)
{
	while (p < end) {
		const char *e = memmem(p, (size_t)(end - p), "\r\n", 2);
		CHECK(e != NULL);
		if (e > p && *p != ' ' && *p != '\t' && !starts_with_any(p, names)) {
			fprintf(stderr, "unexpected line: %.*s\n", (int)(e - p), p);
			abort();
		}
		p = e + 2;
	}
}

static void check_dsn(const struct buf *b, bool have_msg)
{
	static const char *const hdr_names[] = {
	    "From: ", "To: ", "Subject: ", "Date: ", "Message-ID: ", "Auto-Submitted: ",
	    "MIME-Version: ", "Content-Type: ", "Content-Transfer-Encoding: ", NULL};
	static const char *const report_names[] = {
	    "Original-Envelope-Id: ", "Reporting-MTA: ", "X-Dakiya-Queue-ID: ", "Arrival-Date: ",
	    "Original-Recipient: ", "Final-Recipient: ", "Action: ", "Status: ", "Remote-MTA: ",
	    "Diagnostic-Code: ", "Last-Attempt-Date: ", "Will-Retry-Until: ", NULL};
	const char *s = b->data;
	size_t n = b->len;

	/* CRLF only */
	for (size_t k = 0; k < n; k++) {
		if (s[k] == '\r')
			CHECK(k + 1 < n && s[k + 1] == '\n');
		if (s[k] == '\n')
			CHECK(k > 0 && s[k - 1] == '\r');
	}
	/* the boundary */
	static const char ct[] = "\r\nContent-Type: multipart/report; report-type=delivery-status;"
	                         "\r\n\tboundary=\"";
	const char *bp = strstr(s, ct);
	CHECK(bp != NULL);
	bp += strlen(ct);
	const char *be = strchr(bp, '"');
	CHECK(be != NULL && be - bp < 100);
	char bnd[128], delim[140];
	memcpy(bnd, bp, (size_t)(be - bp));
	bnd[be - bp] = '\0';
	size_t parts = have_msg ? 3 : 2;
	CHECK(count(s, n, bnd) == parts + 2);
	snprintf(delim, sizeof(delim), "\r\n--%s\r\n", bnd);
	CHECK(count(s, n, delim) == parts);

	/* the header section */
	const char *hend = strstr(s, "\r\n\r\n");
	CHECK(hend != NULL);
	check_lines(s, hend + 2, hdr_names);

	/* the report, found by its part header (the text may quote anything) */
	char rep_start[256];
	snprintf(rep_start, sizeof(rep_start),
	    "%sContent-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n",
	    delim);
	const char *rep = strstr(s, rep_start);
	CHECK(rep != NULL);
	rep += strlen(rep_start);
	const char *rend = strstr(rep, delim);
	if (rend == NULL) {
		snprintf(delim, sizeof(delim), "\r\n--%s--\r\n", bnd);
		rend = strstr(rep, delim);
	}
	CHECK(rend != NULL);
	check_lines(rep, rend + 2, report_names);

	/* line length up to the returned original */
	size_t col = 0;
	for (const char *p = s; p < rend; p++) {
		col = *p == '\n' ? 0 : col + 1;
		CHECK(col <= 999); /* 998 and the CR */
	}
}

static const char *next_field(const char **p, const char *end)
{
	const char *f = *p;
	const char *z = memchr(f, '\0', (size_t)(end - f));
	if (z == NULL) {
		*p = end;
		return NULL;
	}
	*p = z + 1;
	return f;
}

static void fixed_random(void *p, size_t n)
{
	static unsigned char c;
	unsigned char *u = p;
	for (size_t k = 0; k < n; k++)
		u[k] = c++;
}

static void fuzz_build(const char *s, size_t n)
{
	if (n < 1)
		return;
	unsigned char sel = (unsigned char)s[0];
	const char *p = s + 1, *end = s + n;
	const char *f[9];
	for (size_t k = 0; k < 9; k++) {
		f[k] = next_field(&p, end);
		if (f[k] == NULL)
			return;
	}
	struct dsn_message m = {
	    .hostname = "mx.example.test",
	    .queue_id = f[8],
	    .sender = f[0],
	    .envid = f[6][0] ? f[6] : NULL,
	    .ret = (enum dsn_ret)((sel >> 3) % 3),
	    .arrival = 1704103200,
	    .retry_until = (sel & 0x40) ? 1704535200 : 0,
	    .msg = (sel & 0x80) ? NULL : p,
	    .msg_len = (sel & 0x80) ? 0 : (size_t)(end - p),
	    .full_max = 256,
	    .now = 1704117600,
	    .random = fixed_random,
	};
	struct dsn_recipient r[2] = {
	    {
	        .addr = f[1],
	        .orcpt_type = f[2][0] ? f[2] : NULL,
	        .orcpt = f[3],
	        .action = (enum dsn_action)(sel % 5),
	        .status = f[7],
	        .diagnostic = f[4],
	        .remote_mta = f[5],
	        .last_attempt = 1704117000,
	    },
	    {
	        .addr = "other@remote.test",
	        .action = DSN_ACTION_DELAYED,
	        .diagnostic = f[4],
	    },
	};
	struct buf out = BUF_INIT;
	enum dsn_rc rc = dsn_build(&m, r, 1 + ((sel >> 5) & 1), &out);
	if (f[0][0] == '\0' || strcmp(f[0], "<>") == 0) {
		CHECK(rc == DSN_ERR_NULL_SENDER);
	} else if (rc == DSN_OK) {
		check_dsn(&out, m.msg != NULL);
	} else {
		CHECK(rc == DSN_ERR_INVALID);
		CHECK(out.len == 0);
	}
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *s = (const char *)data + 1;
	size_t n = size - 1;
	switch (data[0] % 7) {
	case 0:
		fuzz_notify(s, n);
		break;
	case 1:
		fuzz_ret(s, n);
		break;
	case 2:
		fuzz_envid(s, n);
		break;
	case 3:
		fuzz_orcpt(s, n);
		break;
	case 4:
		fuzz_xtext(s, n);
		break;
	case 5:
		fuzz_utf8_addr(s, n);
		break;
	default:
		fuzz_build(s, n);
		break;
	}
	return 0;
}
