/*
 * cmd_sendmail.c - dakiya sendmail: sendmail-compatible submission for cron,
 * scripts and web applications (also run when the program is invoked through
 * a link named "sendmail", see main.c).
 *
 * The message comes from standard input; it is normalised (LF or CRLF line
 * ends in, CRLF out; a bare CR becomes a line end, since SMTP cannot carry
 * one), its Bcc: fields are removed, a From: is added when it has none, and
 * it is handed to the running server over the unix socket of local
 * submission (config local.socket) in an ordinary ESMTP conversation. The
 * server identifies the local account by its peer credentials, so no
 * password is involved; it adds Received:, Date: and Message-ID:.
 *
 * All or nothing: if any recipient is refused nothing is sent, so that a
 * caller that retries never sends a second copy to the others.
 *
 * Exit status (what sendmail callers expect, <sysexits.h>): 0 accepted;
 * 1 a user error or a permanent refusal (5xx); 75 (EX_TEMPFAIL) a temporary
 * failure: a 4xx reply, the server not running, a lost connection.
 *
 * Security: everything from stdin, argv and the server is data. Addresses are
 * parsed (mime_addr_list_parse) and written back in a form that cannot hold
 * CR, LF, '<' or '>' outside quotes, so no input can add an SMTP command or
 * a header; -F NAME goes through the address renderer or an RFC 2047 encoded
 * word, never raw. Input is capped at limits.message_size. No shell, no
 * format strings from input; server replies are printed with control
 * characters replaced.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mime/addr.h"

#define SM_EX_TEMPFAIL 75 /* <sysexits.h> EX_TEMPFAIL */
#define SM_TIMEOUT_S 300  /* per reply, and per blocked write */
#define SM_REPLY_LINE_MAX 4096
#define SM_REPLY_MAX 65536
#define SM_ADDR_MAX 1000     /* bytes of one envelope address */
#define SM_HEADER_EXTRA 4096 /* room for the From: we may add */

const char cli_help_sendmail[] =
    "NAME\n"
    "    dakiya sendmail - send a message from a script, cron or a web application\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] sendmail [-t] [-i] [-oi] [-f SENDER] [-F NAME] [--] [RECIPIENT...]\n"
    "    sendmail [-t] [-i] [-f SENDER] [-F NAME] [RECIPIENT...]   (a link named sendmail)\n"
    "\n"
    "DESCRIPTION\n"
    "    Reads a message (a header section, an empty line, the body) from standard input\n"
    "    and submits it to the running server ('dakiya serve') through the unix socket\n"
    "    configured as local.socket. No password is needed: the server checks that the\n"
    "    account running this command is listed in local.users, e.g.\n"
    "        local { socket = \"/run/dakiya/submit.sock\" users = {\"root\", \"www-data\"} }\n"
    "    Recipients may be in any domain; those elsewhere wait in the queue for delivery.\n"
    "    Invoked through a symbolic link whose name is 'sendmail' (for example\n"
    "    /usr/sbin/sendmail -> dakiya), the program behaves as 'dakiya sendmail'.\n"
    "\n"
    "    Lines may end in LF or CRLF; a CR that does not end a line starts a new one. A\n"
    "    first line \"From ...\" (mbox style) is dropped. Bcc: and Resent-Bcc: fields are\n"
    "    always removed. If the message has no From: field, 'From: NAME <SENDER>' is\n"
    "    added with -F, else 'From: <SENDER>'. The server adds Date:, Message-ID: and a\n"
    "    Received: field naming the local account.\n"
    "\n"
    "    A recipient or sender without '@' (e.g. 'root') gets '@HOSTNAME' appended, with\n"
    "    HOSTNAME the configuration's hostname; add that name as a domain with aliases to\n"
    "    receive such mail. If any recipient is refused, nothing is sent.\n"
    "\n"
    "OPTIONS\n"
    "    -t          Also send to the addresses in the To:, Cc: and Bcc: fields (added to\n"
    "                the recipients given as arguments; duplicates are sent once).\n"
    "    -i, -oi     A line consisting of a single '.' does not end the message; only the\n"
    "                end of input does. Without it such a line ends the message, as in\n"
    "                traditional sendmail.\n"
    "    -f SENDER   The envelope sender (return path), also -r SENDER; '<>' for none.\n"
    "                Default: the invoking account's login name @ the configuration's\n"
    "                hostname, e.g. root@mail.example.com.\n"
    "    -F NAME     The display name in the From: field added when the message has none.\n"
    "    -c FILE     The configuration file (see 'dakiya --help'; also $DAKIYA_CONFIG).\n"
    "    --help      Print this manual (-h only when it is the only argument).\n"
    "\n"
    "    Accepted and ignored, for compatibility: -oem -oep -oeq -oew -oee (error modes),\n"
    "    -odi -odb -odq -odd (delivery modes), -oQDIR (queue directory), -om, -bm (the\n"
    "    default mode), -v, -U, -B 7BIT|8BITMIME, -N DSN, -R RET, -V ENVID.\n"
    "    Refused: -bs (speak SMTP to the server's port instead), -bd (run 'dakiya serve'),\n"
    "    -bp and -q (see 'dakiya queue'), -bi (see 'dakiya alias'), -bv, -bt and other\n"
    "    modes, and any option not listed here.\n"
    "\n"
    "EXIT STATUS\n"
    "    0    the server accepted the message for all recipients;\n"
    "    1    a user error (bad option or address, message over limits.message_size) or a\n"
    "         permanent refusal by the server (a 5xx reply, printed); nothing was sent;\n"
    "    75   a temporary failure (EX_TEMPFAIL): a 4xx reply, the server not running or\n"
    "         local.socket missing, a lost connection; try again later.\n"
    "\n"
    "EXAMPLES\n"
    "    printf 'Subject: backup done\\n\\nAll good.\\n' | dakiya sendmail admin@example.com\n"
    "    dakiya sendmail -t -i -F 'Web shop' -f shop@example.com < order.eml\n"
    "    ln -s /usr/bin/dakiya /usr/sbin/sendmail\n";

struct sm_opts {
	bool extract;         /* -t */
	bool ignore_dots;     /* -i, -oi */
	const char *sender;   /* -f / -r as given; NULL = the default */
	const char *fullname; /* -F */
};

/* The envelope recipients, rendered ("local@domain", local part quoted if
 * needed), without duplicates. */
struct sm_rcpts {
	char **v;
	size_t n, alloc;
};

static void sm_rcpts_free(struct sm_rcpts *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
	r->v = NULL;
	r->n = r->alloc = 0;
}

/* Add a rendered address unless already there; false only when out of memory. */
static bool sm_rcpts_add(struct sm_rcpts *r, const char *a)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i], a) == 0)
			return true;
	if (r->n == r->alloc) {
		size_t na = r->alloc ? r->alloc * 2 : 16;
		char **nv = realloc(r->v, na * sizeof *nv);
		if (nv == NULL)
			return false;
		r->v = nv;
		r->alloc = na;
	}
	if ((r->v[r->n] = strdup(a)) == NULL)
		return false;
	r->n++;
	return true;
}

/* ---------------------------------------------------------------- addresses */

/* RFC 5322 atext, with the bytes of UTF-8 sequences (RFC 6532). */
static bool sm_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c >= 0x80 || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* s is a dot-atom: atext runs separated by single dots. */
static bool sm_dot_atom(const char *s)
{
	if (*s == '\0' || *s == '.')
		return false;
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (p[1] == '.' || p[1] == '\0')
				return false;
		} else if (!sm_atext((unsigned char)*p)) {
			return false;
		}
	}
	return true;
}

/* Append "local@domain" in envelope form to out: the local part as a
 * dot-atom or an RFC 5321 quoted string, the domain lower-cased (ASCII).
 * False (nothing sensible to write) for control characters, an empty or
 * malformed domain. */
static bool sm_render_addr(const char *local, const char *domain, struct buf *out)
{
	if (*local == '\0' || *domain == '\0')
		return false;
	if (sm_dot_atom(local)) {
		buf_puts(out, local);
	} else {
		buf_putc(out, '"');
		for (const unsigned char *p = (const unsigned char *)local; *p; p++) {
			if (*p < 0x20 || *p == 0x7f)
				return false;
			if (*p == '"' || *p == '\\')
				buf_putc(out, '\\');
			buf_putc(out, (char)*p);
		}
		buf_putc(out, '"');
	}
	buf_putc(out, '@');
	size_t dl = strlen(domain);
	bool literal = domain[0] == '[' && dl > 2 && domain[dl - 1] == ']';
	for (size_t i = 0; i < dl; i++) {
		unsigned char c = (unsigned char)domain[i];
		if (literal && i > 0 && i < dl - 1) {
			/* dtext of an address literal: printable, no brackets or backslash */
			if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == '\\')
				return false;
		} else if (!literal &&
		           !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		               (c >= '0' && c <= '9') || c == '-' || c == '.' || c >= 0x80)) {
			return false;
		}
		buf_putc(out, (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c));
	}
	return !buf_err(out) && out->len <= SM_ADDR_MAX;
}

/* A bare local name such as "root" (no '@', nothing that needs quoting):
 * the traditional sendmail form that means a local account. */
static bool sm_bare_local(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!sm_atext((unsigned char)s[i]) && s[i] != '.')
			return false;
	return s[0] != '.' && s[n - 1] != '.';
}

/* Parse an address list (an argument, or a header field's value) and add
 * every address to r; a bare local name, or a list of them, is qualified
 * with hostname. 0, or 1 after printing an error naming where. */
static int sm_add_list(
    const char *s, size_t len, const char *where, const char *hostname, struct sm_rcpts *r)
{
	struct mime_addr_list l;
	struct buf a = BUF_INIT;
	enum mime_addr_rc rc = mime_addr_list_parse(s, len, &l);
	if (rc == MIME_ADDR_OK) {
		for (size_t i = 0; i < l.n; i++) {
			buf_reset(&a);
			if (!sm_render_addr(l.v[i].local, l.v[i].domain, &a)) {
				mime_addr_list_free(&l);
				buf_free(&a);
				return cli_fail(
				    "%s: cannot use the address of '%s' in the envelope; "
				    "check its spelling",
				    where, l.v[i].local);
			}
			if (!sm_rcpts_add(r, buf_cstr(&a))) {
				mime_addr_list_free(&l);
				buf_free(&a);
				return cli_fail("out of memory");
			}
		}
		mime_addr_list_free(&l);
		buf_free(&a);
		return 0;
	}
	if (rc == MIME_ADDR_TOO_MANY)
		return cli_fail(
		    "%s: more than %d addresses; split the message", where, MIME_ADDR_MAX);
	/* "root" or "root, admin": local accounts, the oldest sendmail habit */
	size_t i = 0;
	bool any = false;
	while (i < len) {
		while (i < len && strchr(" \t\r\n,", s[i]) != NULL)
			i++;
		size_t j = i;
		while (j < len && strchr(" \t\r\n,", s[j]) == NULL)
			j++;
		if (j == i)
			break;
		size_t k = j;
		while (k < len && strchr(" \t\r\n", s[k]) != NULL)
			k++;
		if (!sm_bare_local(s + i, j - i) || (k < len && s[k] != ',')) {
			buf_free(&a);
			return cli_fail("%s is not a list of e-mail addresses; write them as "
			                "'user@example.com' or 'Name <user@example.com>'",
			    where);
		}
		buf_reset(&a);
		buf_append(&a, s + i, j - i);
		buf_putc(&a, '@');
		buf_puts(&a, hostname);
		if (buf_err(&a) || !sm_rcpts_add(r, buf_cstr(&a))) {
			buf_free(&a);
			return cli_fail("out of memory");
		}
		any = true;
		i = k;
	}
	buf_free(&a);
	if (!any)
		return cli_fail("%s has no e-mail address in it", where);
	return 0;
}

/* The login name of the invoking (effective) account, which the server also
 * sees through the socket's peer credentials; NULL if it has none. */
static char *sm_login(void)
{
	char pwbuf[4096];
	struct passwd pw, *res = NULL;
	if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof pwbuf, &res) != 0 || res == NULL)
		return NULL;
	return strdup(res->pw_name);
}

/* The envelope sender into out ("" for the null sender), from -f or the
 * default login@hostname. 0, or 1 after printing an error. */
static int sm_sender(const struct sm_opts *o, const char *hostname, struct buf *out)
{
	const char *s = o->sender;
	if (s == NULL) {
		char *login = sm_login();
		if (login == NULL)
			return cli_fail("account %u has no name in the password database; give the "
			                "sender with -f ADDRESS",
			    (unsigned)geteuid());
		bool ok = sm_bare_local(login, strlen(login));
		if (ok) {
			buf_puts(out, login);
			buf_putc(out, '@');
			buf_puts(out, hostname);
		}
		free(login);
		if (!ok)
			return cli_fail("the login name of this account cannot be an address; give "
			                "the sender with -f ADDRESS");
		return buf_err(out) ? cli_fail("out of memory") : 0;
	}
	if (*s == '\0' || strcmp(s, "<>") == 0)
		return 0;
	struct sm_rcpts one = {0};
	int rc = sm_add_list(s, strlen(s), "the sender given with -f", hostname, &one);
	if (rc == 0 && one.n != 1)
		rc = cli_fail("give exactly one sender address with -f, e.g. -f "
		              "noreply@example.com");
	if (rc == 0)
		buf_puts(out, one.v[0]);
	sm_rcpts_free(&one);
	return rc;
}

/* ---------------------------------------------------------------- input */

/* One input line is complete (its LF and a CR before it removed): append it
 * to msg with CRLF, a CR inside it becoming a line end. True if it is the
 * lone "." that ends the message (not appended). */
static bool sm_end_line(struct buf *line, bool ignore_dots, struct buf *msg)
{
	if (line->len > 0 && line->data[line->len - 1] == '\r')
		line->len--;
	bool dot = line->len == 1 && line->data[0] == '.';
	if (dot && !ignore_dots) {
		buf_reset(line);
		return true;
	}
	const char *p = line->data ? line->data : "", *end = p + line->len;
	while (p < end) {
		const char *cr = memchr(p, '\r', (size_t)(end - p));
		size_t k = cr ? (size_t)(cr - p) : (size_t)(end - p);
		buf_append(msg, p, k);
		p += k;
		if (cr) {
			buf_append(msg, "\r\n", 2);
			p++;
		}
	}
	buf_append(msg, "\r\n", 2);
	buf_reset(line);
	return false;
}

/* Read standard input into msg (capped at max bytes) with CRLF line ends.
 * 0, or 1 after printing an error. */
static int sm_read_input(bool ignore_dots, uint64_t max, struct buf *msg)
{
	size_t cap = max > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)max;
	struct buf line;
	buf_init(&line, cap + 1);
	buf_init(msg, cap);
	static char chunk[65536];
	bool done = false;
	int rc = 0;
	while (!done) {
		ssize_t n = read(0, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = cli_fail(
			    "cannot read the message from standard input: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		const char *p = chunk, *end = chunk + n;
		while (p < end && !done) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
			buf_append(&line, p, k);
			p += k;
			if (nl) {
				p++;
				done = sm_end_line(&line, ignore_dots, msg);
			}
			if (buf_err(&line) || buf_err(msg))
				goto too_big;
		}
	}
	if (!done && line.len > 0)
		sm_end_line(&line, ignore_dots, msg);
	if (buf_err(msg))
		goto too_big;
	goto out;
too_big:
	rc = cli_fail("the message is bigger than limits.message_size (%zu bytes); send a smaller "
	              "one or raise the limit in the configuration",
	    cap);
out:
	buf_free(&line);
	return rc;
}

/* ---------------------------------------------------------------- headers */

/* End of the CRLF-terminated line that starts at pos. */
static size_t sm_next_line(const char *d, size_t len, size_t pos)
{
	const char *nl = memchr(d + pos, '\n', len - pos);
	return nl ? (size_t)(nl - d) + 1 : len;
}

/* Length of the field name if the line starts a header field ("Name:",
 * obsolete WSP before the colon allowed), else 0. */
static size_t sm_field_name(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && (unsigned char)p[i] > 32 && (unsigned char)p[i] < 127 && p[i] != ':')
		i++;
	size_t name = i;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	return name > 0 && i < n && p[i] == ':' ? name : 0;
}

static bool sm_name_is(const char *p, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

/* Append "From: NAME <addr>\r\n" (or "From: <addr>") to out. A non-ASCII
 * name becomes RFC 2047 encoded words. 0, or 1 after printing an error. */
static int sm_from_field(const char *name, const char *addr, struct buf *out)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	bool ascii = true;
	if (name != NULL) {
		for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
			if (*p < 0x20 || *p == 0x7f)
				return cli_fail(
				    "the name given with -F contains control characters; "
				    "give it on one line");
			if (*p >= 0x80)
				ascii = false;
		}
		if (strlen(name) > 500)
			return cli_fail("the name given with -F is too long (over 500 bytes)");
	}
	buf_puts(out, "From: ");
	if (name != NULL && *name != '\0' && ascii) {
		/* a phrase: atoms separated by single spaces as they are, else a
		 * quoted string */
		bool atoms = name[0] != ' ';
		for (const char *p = name; *p && atoms; p++)
			atoms = sm_atext((unsigned char)*p) ||
			        (*p == ' ' && p[1] != ' ' && p[1] != '\0');
		if (atoms) {
			buf_puts(out, name);
		} else {
			buf_putc(out, '"');
			for (const char *p = name; *p; p++) {
				if (*p == '"' || *p == '\\')
					buf_putc(out, '\\');
				buf_putc(out, *p);
			}
			buf_putc(out, '"');
		}
		buf_putc(out, ' ');
	} else if (name != NULL && *name != '\0') {
		/* encoded words of at most 45 bytes (60 in base64), not splitting a
		 * UTF-8 sequence, folded onto lines of their own */
		const unsigned char *p = (const unsigned char *)name;
		size_t left = strlen(name);
		while (left > 0) {
			size_t k = left < 45 ? left : 45;
			while (k < left && k > 0 && (p[k] & 0xc0) == 0x80)
				k--;
			if (k == 0)
				k = left < 45 ? left : 45;
			buf_puts(out, "=?UTF-8?B?");
			for (size_t i = 0; i < k; i += 3) {
				unsigned v = (unsigned)p[i] << 16;
				if (i + 1 < k)
					v |= (unsigned)p[i + 1] << 8;
				if (i + 2 < k)
					v |= p[i + 2];
				buf_putc(out, b64[(v >> 18) & 63]);
				buf_putc(out, b64[(v >> 12) & 63]);
				buf_putc(out, i + 1 < k ? b64[(v >> 6) & 63] : '=');
				buf_putc(out, i + 2 < k ? b64[v & 63] : '=');
			}
			buf_puts(out, "?=\r\n ");
			p += k;
			left -= k;
		}
	}
	buf_printf(out, "<%s>\r\n", addr);
	return buf_err(out) ? cli_fail("out of memory") : 0;
}

/* Rewrite the message for sending: drop a leading "From " line and the
 * Bcc: fields, add From: (for the envelope sender) when missing, make sure a body that follows the
 * fields without an empty line gets one. With -t collect the To:, Cc: and
 * Bcc: addresses into r. 0, or 1 after printing an error. */
static int sm_prepare(const struct buf *in, const struct sm_opts *o, const struct buf *sender,
    const char *hostname, struct sm_rcpts *r, struct buf *out)
{
	const char *d = in->data ? in->data : "";
	size_t len = in->len, pos = 0;
	if (len >= 5 && memcmp(d, "From ", 5) == 0)
		pos = sm_next_line(d, len, 0);
	bool has_from = false, blank = false;
	while (pos < len) {
		size_t eol = sm_next_line(d, len, pos);
		if (eol - pos == 2) {
			blank = true;
			break;
		}
		size_t nlen = sm_field_name(d + pos, eol - pos);
		if (nlen == 0)
			break; /* the body starts without an empty line */
		size_t fend = eol;
		while (fend < len && (d[fend] == ' ' || d[fend] == '\t'))
			fend = sm_next_line(d, len, fend);
		const char *name = d + pos;
		const char *colon = memchr(name, ':', fend - pos);
		const char *val = colon + 1;
		size_t vlen = (size_t)(d + fend - val);
		bool bcc = sm_name_is(name, nlen, "Bcc") || sm_name_is(name, nlen, "Resent-Bcc");
		if (sm_name_is(name, nlen, "From"))
			has_from = true;
		if (o->extract &&
		    (bcc || sm_name_is(name, nlen, "To") || sm_name_is(name, nlen, "Cc"))) {
			char where[64];
			snprintf(where, sizeof where, "the %.*s: field", (int)nlen, name);
			if (vlen >= 2)
				vlen -= 2; /* the CRLF */
			struct sm_rcpts tmp = {0};
			/* an empty field ("Bcc:") has no address: not an error */
			bool empty = true;
			for (size_t i = 0; i < vlen && empty; i++)
				empty = strchr(" \t\r\n", val[i]) != NULL;
			int rc = empty ? 0 : sm_add_list(val, vlen, where, hostname, &tmp);
			for (size_t i = 0; rc == 0 && i < tmp.n; i++)
				if (!sm_rcpts_add(r, tmp.v[i]))
					rc = cli_fail("out of memory");
			sm_rcpts_free(&tmp);
			if (rc != 0)
				return rc;
		}
		if (!bcc)
			buf_append(out, d + pos, fend - pos);
		pos = fend;
	}
	if (!has_from) {
		/* the envelope sender; with the null sender, the account's address */
		struct buf from = BUF_INIT;
		struct sm_opts dflt = {0};
		int rc = 0;
		if (sender->len > 0)
			buf_puts(&from, buf_cstr(sender));
		else
			rc = sm_sender(&dflt, hostname, &from);
		if (rc == 0)
			rc = sm_from_field(o->fullname, buf_cstr(&from), out);
		buf_free(&from);
		if (rc != 0)
			return rc;
	}
	if (!blank && pos < len)
		buf_append(out, "\r\n", 2);
	buf_append(out, d + pos, len - pos);
	if (buf_err(out))
		return cli_fail(
		    "the message is bigger than limits.message_size; send a smaller one "
		    "or raise the limit in the configuration");
	return 0;
}

/* ---------------------------------------------------------------- SMTP */

struct sm_conn {
	int fd;
	const char *path;
	struct buf in; /* received, not yet consumed */
};

/* Connect to the local submission socket. 0, or an exit status after
 * printing an error. */
static int sm_connect(struct sm_conn *c, const char *path)
{
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		return cli_fail("local.socket %s is too long for a unix socket path; choose a "
		                "shorter one",
		    path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	c->path = path;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		cli_fail("cannot create a socket: %s; try again later", strerror(errno));
		return SM_EX_TEMPFAIL;
	}
	struct timeval tv = {SM_TIMEOUT_S, 0};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(c->fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		int e = errno;
		if (e == ENOENT || e == ECONNREFUSED)
			cli_fail(
			    "cannot connect to %s (%s): the server is not running or local.socket "
			    "is off; start 'dakiya serve' with local { socket = \"%s\" } in the "
			    "configuration, then send again",
			    path, strerror(e), path);
		else
			cli_fail(
			    "cannot connect to %s: %s; check the server and the permissions of "
			    "the socket, then send again",
			    path, strerror(e));
		return SM_EX_TEMPFAIL;
	}
	return 0;
}

static int sm_send(struct sm_conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read one reply (all its lines). *code is its number; txt gets its lines,
 * control characters replaced, separated by '\n'. 0, or -1 on a lost
 * connection, a timeout or a malformed reply (why in txt). */
static int sm_reply(struct sm_conn *c, int *code, struct buf *txt)
{
	buf_reset(txt);
	*code = 0;
	for (;;) {
		char *d = c->in.data;
		char *nl = d ? memchr(d, '\n', c->in.len) : NULL;
		if (nl == NULL) {
			if (c->in.len > SM_REPLY_LINE_MAX) {
				buf_puts(txt, "a reply line from the server is too long");
				return -1;
			}
			char *room = buf_reserve(&c->in, 4096);
			if (room == NULL) {
				buf_puts(txt, "out of memory");
				return -1;
			}
			ssize_t n = recv(c->fd, room, 4096, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				buf_puts(txt, n == 0 ? "the server closed the connection"
				              : errno == EAGAIN || errno == EWOULDBLOCK
				                  ? "no reply from the server in time"
				                  : strerror(errno));
				return -1;
			}
			c->in.len += (size_t)n;
			c->in.data[c->in.len] = '\0';
			continue;
		}
		size_t ll = (size_t)(nl - d);
		size_t consumed = ll + 1;
		if (ll > 0 && d[ll - 1] == '\r')
			ll--;
		bool ok = ll >= 3 && d[0] >= '2' && d[0] <= '5' && d[1] >= '0' && d[1] <= '9' &&
		          d[2] >= '0' && d[2] <= '9' && (ll == 3 || d[3] == ' ' || d[3] == '-');
		int n = ok ? (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0') : 0;
		if (!ok || (*code != 0 && n != *code)) {
			buf_puts(txt, "the server sent something that is not an SMTP reply");
			return -1;
		}
		*code = n;
		bool last = ll == 3 || d[3] == ' ';
		if (txt->len > 0)
			buf_putc(txt, '\n');
		for (size_t i = 0; i < ll; i++) {
			unsigned char ch = (unsigned char)d[i];
			buf_putc(txt, ch < 0x20 || ch == 0x7f ? '?' : (char)ch);
		}
		buf_consume(&c->in, consumed);
		if (txt->len > SM_REPLY_MAX || buf_err(txt)) {
			buf_reset(txt);
			buf_puts(txt, "the server's reply is too long");
			return -1;
		}
		if (last)
			return 0;
	}
}

/* Send a command line (CRLF added) and read the reply: its code, or -1 on
 * a lost connection (why in txt). */
static int sm_cmd(struct sm_conn *c, const char *line, struct buf *txt)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, line);
	buf_puts(&b, "\r\n");
	int rc = buf_err(&b) ? -1 : sm_send(c, b.data, b.len);
	int e = buf_err(&b) ? ENOMEM : errno;
	buf_free(&b);
	if (rc < 0) {
		buf_reset(txt);
		buf_puts(txt,
		    e == EAGAIN || e == EWOULDBLOCK ? "the server does not read" : strerror(e));
		return -1;
	}
	int code;
	return sm_reply(c, &code, txt) < 0 ? -1 : code;
}

/* Print a failure at step what: the server's reply (code >= 0) or the lost
 * connection (code -1), and map it to the exit status. */
static int sm_failed(const char *what, int code, const struct buf *txt)
{
	struct buf shown = BUF_INIT;
	for (size_t i = 0; i < txt->len; i++) {
		if (txt->data[i] == '\n')
			buf_puts(&shown, "\n    ");
		else
			buf_putc(&shown, txt->data[i]);
	}
	int rc;
	if (code < 0) {
		cli_fail(
		    "lost the connection to the server at %s (%s); nothing was sent, try again "
		    "later",
		    what, buf_cstr(&shown));
		rc = SM_EX_TEMPFAIL;
	} else if (code >= 500 && code < 600) {
		cli_fail(
		    "the server refused %s; nothing was sent:\n    %s", what, buf_cstr(&shown));
		rc = 1;
	} else {
		/* 4xx, or a reply that makes no sense here: the caller may retry */
		cli_fail("the server could not take %s now; nothing was sent, try again later "
		         "(exit status 75):\n    %s",
		    what, buf_cstr(&shown));
		rc = SM_EX_TEMPFAIL;
	}
	buf_free(&shown);
	return rc;
}

/* Does the EHLO reply (lines in txt) name the extension kw? */
static bool sm_ehlo_has(const struct buf *txt, const char *kw)
{
	size_t kl = strlen(kw);
	const char *p = buf_cstr(txt);
	const char *nl = strchr(p, '\n'); /* the first line is the greeting */
	while (nl != NULL) {
		p = nl + 1;
		nl = strchr(p, '\n');
		size_t ll = nl ? (size_t)(nl - p) : strlen(p);
		if (ll >= 4 + kl && strncasecmp(p + 4, kw, kl) == 0 &&
		    (ll == 4 + kl || p[4 + kl] == ' '))
			return true;
	}
	return false;
}

static bool sm_non_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* Send the message content dot-stuffed, then the final dot. */
static int sm_send_data(struct sm_conn *c, const struct buf *msg)
{
	struct buf out = BUF_INIT;
	const char *d = msg->data ? msg->data : "";
	size_t pos = 0;
	int rc = 0;
	while (pos < msg->len && rc == 0) {
		size_t eol = sm_next_line(d, msg->len, pos);
		if (d[pos] == '.')
			buf_putc(&out, '.');
		buf_append(&out, d + pos, eol - pos);
		pos = eol;
		if (out.len >= 65536 || pos >= msg->len) {
			rc = buf_err(&out) ? -1 : sm_send(c, out.data, out.len);
			buf_reset(&out);
		}
	}
	if (rc == 0)
		rc = sm_send(c, ".\r\n", 3);
	int e = errno;
	buf_free(&out);
	errno = e;
	return rc;
}

/* The conversation. Returns the exit status. */
static int sm_submit(
    struct sm_conn *c, const char *sender, const struct sm_rcpts *r, const struct buf *msg)
{
	struct buf txt = BUF_INIT, line = BUF_INIT, what = BUF_INIT;
	int code, rc = 0;
	if (sm_reply(c, &code, &txt) < 0) {
		rc = sm_failed("the greeting", -1, &txt);
		goto out;
	}
	if (code != 220) {
		rc = sm_failed("the connection", code, &txt);
		goto out;
	}
	code = sm_cmd(c, "EHLO localhost", &txt);
	if (code != 250) {
		rc = sm_failed("EHLO", code, &txt);
		goto quit;
	}
	bool utf8 = sm_non_ascii(sender, strlen(sender));
	for (size_t i = 0; i < r->n; i++)
		utf8 = utf8 || sm_non_ascii(r->v[i], strlen(r->v[i]));
	if (utf8 && !sm_ehlo_has(&txt, "SMTPUTF8")) {
		rc = cli_fail("an address is not ASCII and the server does not offer SMTPUTF8; "
		              "nothing was sent");
		goto quit;
	}
	buf_printf(&line, "MAIL FROM:<%s>", sender);
	if (sm_ehlo_has(&txt, "SIZE"))
		buf_printf(&line, " SIZE=%zu", msg->len);
	if (sm_non_ascii(msg->data ? msg->data : "", msg->len) && sm_ehlo_has(&txt, "8BITMIME"))
		buf_puts(&line, " BODY=8BITMIME");
	if (utf8)
		buf_puts(&line, " SMTPUTF8");
	code = buf_err(&line) ? -1 : sm_cmd(c, buf_cstr(&line), &txt);
	if (code != 250) {
		buf_printf(&what, "the sender <%s>", sender);
		rc = sm_failed(buf_cstr(&what), code, &txt);
		goto quit;
	}
	for (size_t i = 0; i < r->n; i++) {
		buf_reset(&line);
		buf_printf(&line, "RCPT TO:<%s>", r->v[i]);
		code = buf_err(&line) ? -1 : sm_cmd(c, buf_cstr(&line), &txt);
		if (code != 250 && code != 251) {
			buf_printf(&what, "the recipient <%s>", r->v[i]);
			rc = sm_failed(buf_cstr(&what), code, &txt);
			goto quit;
		}
	}
	code = sm_cmd(c, "DATA", &txt);
	if (code != 354) {
		rc = sm_failed("DATA", code, &txt);
		goto quit;
	}
	if (sm_send_data(c, msg) < 0) {
		buf_reset(&txt);
		buf_puts(&txt, strerror(errno));
		rc = sm_failed("the message", -1, &txt);
		goto out;
	}
	if (sm_reply(c, &code, &txt) < 0) {
		cli_fail("lost the connection to the server after sending the message (%s); it "
		         "may or may not have been accepted",
		    buf_cstr(&txt));
		rc = SM_EX_TEMPFAIL;
		goto out;
	}
	if (code != 250) {
		rc = sm_failed("the message", code, &txt);
		goto quit;
	}
quit:
	(void)sm_cmd(c, "QUIT", &txt); /* after a 250 for the message, QUIT's fate is moot */
out:
	buf_free(&txt);
	buf_free(&line);
	buf_free(&what);
	return rc;
}

/* ---------------------------------------------------------------- options */

/* -o X: the legacy options that are ignored; true if X is one of them or
 * sets ignore_dots. */
static bool sm_option_o(const char *x, struct sm_opts *o)
{
	if (strcmp(x, "i") == 0) {
		o->ignore_dots = true;
		return true;
	}
	static const char *const ignored[] = {
	    "em", "ep", "eq", "ew", "ee", "di", "db", "dq", "dd", "m"};
	for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
		if (strcmp(x, ignored[i]) == 0)
			return true;
	return x[0] == 'Q'; /* -oQ/var/spool/...: a queue directory; we have our own */
}

/* -b X: the mode; only "m" (deliver mail, the default) is supported. */
static int sm_option_b(const char *x)
{
	if (strcmp(x, "m") == 0)
		return 0;
	if (strcmp(x, "s") == 0)
		return cli_fail("'sendmail -bs' (SMTP on standard input) is not supported; connect "
		                "to the server's SMTP or submission port instead");
	if (strcmp(x, "d") == 0 || strcmp(x, "D") == 0)
		return cli_fail("'sendmail -b%s' (run as a daemon) is not supported; run 'dakiya "
		                "serve'",
		    x);
	if (strcmp(x, "p") == 0)
		return cli_fail("'sendmail -bp' (list the queue) is not supported; run 'dakiya "
		                "queue list'");
	if (strcmp(x, "i") == 0)
		return cli_fail("'sendmail -bi' (rebuild aliases) is not needed; aliases live in "
		                "the store, see 'dakiya alias --help'");
	return cli_fail("'sendmail -b%s' is not supported; dakiya sendmail only submits "
	                "messages (see 'dakiya sendmail --help')",
	    x);
}

/* Parse the options; *first_rcpt is the index of the first recipient.
 * 0, or 1 after printing an error; -1 when help was printed. */
static int sm_parse_options(int argc, char **argv, struct sm_opts *o, int *first_rcpt)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	if (argc == 2 && strcmp(argv[1], "-h") == 0) {
		cli_help(cli_help_sendmail);
		return -1;
	}
	optind = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+:tif:r:F:o:b:vUB:N:R:V:q", longopts, NULL)) != -1) {
		switch (c) {
		case 'H':
			cli_help(cli_help_sendmail);
			return -1;
		case 't':
			o->extract = true;
			break;
		case 'i':
			o->ignore_dots = true;
			break;
		case 'f':
		case 'r':
			o->sender = optarg;
			break;
		case 'F':
			o->fullname = optarg;
			break;
		case 'o':
			if (!sm_option_o(optarg, o))
				return cli_fail(
				    "option '-o%s' is not supported by 'dakiya sendmail'; see "
				    "'dakiya sendmail --help' for the accepted ones",
				    optarg);
			break;
		case 'b':
			if (sm_option_b(optarg) != 0)
				return 1;
			break;
		case 'B':
			if (strcasecmp(optarg, "7BIT") != 0 && strcasecmp(optarg, "8BITMIME") != 0)
				return cli_fail("-B takes 7BIT or 8BITMIME, not '%s'", optarg);
			break;
		case 'q':
			return cli_fail(
			    "'sendmail -q' (run the queue) is not supported; see 'dakiya "
			    "queue retry'");
		case 'v':
		case 'U':
		case 'N':
		case 'R':
		case 'V':
			break; /* verbose, initial submission, DSN details: ignored */
		default:
			return cli_option_error("sendmail", argv, c);
		}
	}
	*first_rcpt = optind;
	return 0;
}

int cmd_sendmail(struct cli *cli, int argc, char **argv)
{
	struct sm_opts o = {0};
	int first = 0;
	int rc = sm_parse_options(argc, argv, &o, &first);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if (first >= argc && !o.extract)
		return cli_fail("no recipients; give them as arguments (dakiya sendmail "
		                "bob@example.com < message) or use -t to take them from To:, Cc: "
		                "and Bcc:");
	if (cli_load_config(cli) < 0)
		return 1;
	const struct config *cfg = &cli->cfg;
	if (cfg->local.socket == NULL || cfg->local.socket[0] == '\0')
		return cli_fail("local submission is off in %s; set local { socket = "
		                "\"/run/dakiya/submit.sock\" users = {\"root\"} } there and "
		                "restart 'dakiya serve'",
		    cli_config_path(cli));

	struct sm_rcpts r = {0};
	struct buf sender = BUF_INIT, in = BUF_INIT, msg = BUF_INIT;
	struct sm_conn conn = {.fd = -1, .in = BUF_INIT};
	for (int i = first; i < argc && rc == 0; i++) {
		struct buf where = BUF_INIT;
		buf_printf(&where, "the recipient '%s'", argv[i]);
		rc = sm_add_list(argv[i], strlen(argv[i]), buf_cstr(&where), cfg->hostname, &r);
		buf_free(&where);
	}
	if (rc == 0)
		rc = sm_sender(&o, cfg->hostname, &sender);
	if (rc == 0)
		rc = sm_read_input(o.ignore_dots, cfg->limits.message_size, &in);
	if (rc == 0) {
		buf_init(&msg, in.len + SM_HEADER_EXTRA);
		rc = sm_prepare(&in, &o, &sender, cfg->hostname, &r, &msg);
	}
	if (rc == 0 && r.n == 0)
		rc = cli_fail("the message has no recipients: no addresses as arguments and none "
		              "in To:, Cc: or Bcc:");
	if (rc == 0 && cfg->limits.recipients > 0 && r.n > cfg->limits.recipients)
		rc = cli_fail("%zu recipients, more than limits.recipients (%u); split the message",
		    r.n, cfg->limits.recipients);
	if (rc == 0)
		rc = sm_connect(&conn, cfg->local.socket);
	if (rc == 0)
		rc = sm_submit(&conn, buf_cstr(&sender), &r, &msg);
	if (conn.fd >= 0)
		close(conn.fd);
	buf_free(&conn.in);
	buf_free(&sender);
	buf_free(&in);
	buf_free(&msg);
	sm_rcpts_free(&r);
	return rc;
}
