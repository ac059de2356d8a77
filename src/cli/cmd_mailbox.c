/*
 * cmd_mailbox.c - dakiya mailbox list | show: look into a user's folder.
 *
 * list prints a table for people or, with --json, exactly
 *   [{"uid","message_id","from","subject","date","size","flags":[...]}]
 * show writes the message's stored bytes, unchanged, to stdout.
 *
 * Security: From and Subject come from whoever sent the message. In the
 * table every control character (C0, DEL, C1) and every invalid UTF-8 byte
 * is shown as '?', so a message cannot send escape sequences to the
 * operator's terminal. JSON output escapes them instead (json.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "core/util.h"
#include "store/store.h"

const char cli_help_mailbox[] =
    "NAME\n"
    "    dakiya mailbox - look at the messages in a user's folder\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] mailbox list ADDRESS [--folder F] [--json]\n"
    "    dakiya [-c FILE] mailbox show ADDRESS [--folder F] UID\n"
    "\n"
    "DESCRIPTION\n"
    "    list    Print the messages of folder F of user ADDRESS (default INBOX), by UID,\n"
    "            as a table:\n"
    "                UID  DATE  SIZE  FLAGS  FROM  SUBJECT\n"
    "            DATE is when the message arrived (local time), SIZE is in bytes, FLAGS\n"
    "            are letters: S seen, R answered, F flagged, T deleted, D draft, + other\n"
    "            keywords (\"-\" for none). Control characters in FROM and SUBJECT are\n"
    "            shown as '?'.\n"
    "            With --json it prints a list of objects:\n"
    "                {\"uid\":1,\"message_id\":\"<...>\",\"from\":\"...\",\"subject\":\"...\",\n"
    "                 \"date\":\"...\",\"size\":1234,\"flags\":[\"\\\\Seen\",\"$Junk\"]}\n"
    "            where date is the message's Date: header (or, if it has none, the\n"
    "            arrival time in RFC 5322 form) and flags are IMAP system flags\n"
    "            (\\Seen \\Answered \\Flagged \\Deleted \\Draft) followed by keywords.\n"
    "    show    Write message UID of that folder to standard output exactly as stored:\n"
    "            every byte, CRLF line ends included, headers added on arrival included.\n"
    "\n"
    "    Both work while the server runs. Folder names are as IMAP shows them (INBOX,\n"
    "    Sent, Drafts, Junk, Trash, ...).\n"
    "\n"
    "OPTIONS\n"
    "    --folder F, -f F   the folder (default INBOX)\n"
    "    --json             list: print JSON as above\n"
    "    -c FILE            the configuration file (see 'dakiya --help')\n"
    "    -h, --help         print this manual\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya mailbox list alice@example.com\n"
    "    dakiya mailbox list alice@example.com --folder Junk --json\n"
    "    dakiya mailbox show alice@example.com 3 > message.eml\n";

/* ---- the table ---- */

/* Append s to out for a terminal, at most cols characters (padding with
 * spaces if pad), unsafe bytes as '?', cut text ending in "..". */
static void tty_field(struct buf *out, const char *s, size_t cols, bool pad)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = strlen((const char *)p), i = 0, used = 0;
	/* count the characters first to know whether to cut */
	size_t total = 0;
	for (size_t k = 0; k < n;) {
		size_t l = json_utf8_len(p + k, n - k);
		k += l ? l : 1;
		total++;
	}
	size_t keep = total > cols ? (cols >= 2 ? cols - 2 : 0) : total;
	while (i < n && used < keep) {
		size_t l = json_utf8_len(p + i, n - i);
		if (l == 0) {
			buf_putc(out, '?');
			i++;
		} else if (l == 1) {
			buf_putc(out, p[i] < 0x20 || p[i] == 0x7f ? '?' : (char)p[i]);
			i++;
		} else if (l == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0) {
			buf_putc(out, '?'); /* C1 control, U+0080..U+009F */
			i += 2;
		} else {
			buf_append(out, p + i, l);
			i += l;
		}
		used++;
	}
	if (total > cols) {
		buf_append(out, "..", cols >= 2 ? 2 : cols);
		used += cols >= 2 ? 2 : cols;
	}
	while (pad && used++ < cols)
		buf_putc(out, ' ');
}

static void flag_letters(struct buf *out, unsigned flags, const char *keywords)
{
	size_t start = out->len;
	if (flags & STORE_FLAG_DRAFT)
		buf_putc(out, 'D');
	if (flags & STORE_FLAG_FLAGGED)
		buf_putc(out, 'F');
	if (flags & STORE_FLAG_ANSWERED)
		buf_putc(out, 'R');
	if (flags & STORE_FLAG_SEEN)
		buf_putc(out, 'S');
	if (flags & STORE_FLAG_DELETED)
		buf_putc(out, 'T');
	if (keywords != NULL && keywords[strspn(keywords, " ")] != '\0')
		buf_putc(out, '+');
	if (out->len == start)
		buf_putc(out, '-');
	while (out->len < start + 6)
		buf_putc(out, ' ');
}

struct list_ctx {
	struct cli *cli;
	struct buf out;
	struct json j;
	size_t n;
};

static void json_flags(struct json *j, unsigned flags, const char *keywords)
{
	static const struct {
		unsigned bit;
		const char *name;
	} sys[] = {
	    {STORE_FLAG_SEEN, "\\Seen"},
	    {STORE_FLAG_ANSWERED, "\\Answered"},
	    {STORE_FLAG_FLAGGED, "\\Flagged"},
	    {STORE_FLAG_DELETED, "\\Deleted"},
	    {STORE_FLAG_DRAFT, "\\Draft"},
	};
	json_array_begin(j);
	for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
		if (flags & sys[i].bit)
			json_string(j, sys[i].name);
	const char *k = keywords ? keywords : "";
	while (*k) {
		k += strspn(k, " ");
		size_t len = strcspn(k, " ");
		if (len > 0)
			json_stringn(j, k, len);
		k += len;
	}
	json_array_end(j);
}

static void list_cb(void *arg, const struct store_msginfo *m)
{
	struct list_ctx *c = arg;
	c->n++;
	if (c->cli->json) {
		char date[64];
		const char *d = m->date;
		if (d == NULL || *d == '\0') {
			struct tm tm;
			time_t t = m->internal_date;
			if (gmtime_r(&t, &tm) == NULL ||
			    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0)
				date[0] = '\0';
			d = date;
		}
		json_object_begin(&c->j);
		json_key(&c->j, "uid");
		json_uint(&c->j, m->uid);
		json_key(&c->j, "message_id");
		json_string(&c->j, m->message_id ? m->message_id : "");
		json_key(&c->j, "from");
		json_string(&c->j, m->from ? m->from : "");
		json_key(&c->j, "subject");
		json_string(&c->j, m->subject ? m->subject : "");
		json_key(&c->j, "date");
		json_string(&c->j, d);
		json_key(&c->j, "size");
		json_uint(&c->j, m->size);
		json_key(&c->j, "flags");
		json_flags(&c->j, m->flags, m->keywords);
		json_object_end(&c->j);
		return;
	}

	char when[32];
	struct tm tm;
	time_t t = m->internal_date;
	if (localtime_r(&t, &tm) == NULL || strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm) == 0)
		snprintf(when, sizeof when, "?");
	buf_printf(&c->out, "%6u  %-16s  %9llu  ", m->uid, when, (unsigned long long)m->size);
	flag_letters(&c->out, m->flags, m->keywords);
	buf_puts(&c->out, "  ");
	tty_field(&c->out, m->from, 32, true);
	buf_puts(&c->out, "  ");
	tty_field(&c->out, m->subject, 60, false);
	buf_putc(&c->out, '\n');
}

/* ---- folder errors ---- */

static void folder_name_cb(
    void *arg, const char *name, const char *special_use, uint32_t uidvalidity, uint32_t uidnext)
{
	struct buf *b = arg;
	if (b->len > 0)
		buf_puts(b, ", ");
	buf_puts(b, name);
}

struct folder_find {
	const char *name;
	bool found;
};

static void folder_find_cb(
    void *arg, const char *name, const char *special_use, uint32_t uidvalidity, uint32_t uidnext)
{
	struct folder_find *f = arg;
	if (strcmp(name, f->name) == 0 ||
	    (util_streq_ci(f->name, "INBOX") && util_streq_ci(name, "INBOX")))
		f->found = true;
}

/* Does user address have this folder (NULL = INBOX)? */
static bool folder_exists(struct store *st, const char *address, const char *folder)
{
	struct folder_find f = {.name = folder ? folder : "INBOX", .found = false};
	return store_folder_list(st, address, folder_find_cb, &f) == STORE_OK && f.found;
}

/* After STORE_NOTFOUND: is it the user or the folder? Prints; returns 1. */
static int explain_notfound(
    struct cli *cli, struct store *st, const char *address, const char *folder)
{
	struct buf names = BUF_INIT;
	int rc = store_folder_list(st, address, folder_name_cb, &names);
	if (rc == STORE_OK && names.len > 0) {
		rc = cli_fail("user %s has no folder '%s'; its folders are: %s", address,
		    folder ? folder : "INBOX", buf_cstr(&names));
	} else if (rc == STORE_OK || rc == STORE_NOTFOUND || rc == STORE_NOTLOCAL) {
		rc = cli_fail("there is no user %s; see 'dakiya user list %s'", address,
		    cli_address_domain(address));
	} else {
		rc = cli_store_fail(cli, rc, "cannot list the folders");
	}
	buf_free(&names);
	return rc;
}

/* ---- show ---- */

static int show_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cli_fail("cannot open the message file %s: %s; run 'dakiya store check' "
		                "when available, or check the data directory",
		    path, strerror(errno));
	fflush(stdout);
	char chunk[65536];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof chunk);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return cli_fail("cannot read the message file %s: %s", path, strerror(e));
		}
		if (r == 0)
			break;
		if (cli_write_all(STDOUT_FILENO, chunk, (size_t)r) != 0) {
			int e = errno;
			close(fd);
			return cli_fail("cannot write to standard output: %s", strerror(e));
		}
	}
	close(fd);
	return 0;
}

/* A UID: decimal, 1 .. 2^32-1, nothing else. */
static bool parse_uid(const char *s, uint32_t *uid)
{
	if (s[0] < '1' || s[0] > '9' || strlen(s) > 10)
		return false;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v == 0 || v > UINT32_MAX)
		return false;
	*uid = (uint32_t)v;
	return true;
}

int cmd_mailbox(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"folder", required_argument, NULL, 'f'},
	    {NULL, 0, NULL, 0},
	};
	const char *folder = NULL;
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":hf:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			return cli_help(cli_help_mailbox);
		case 'f':
			folder = optarg;
			break;
		default:
			return cli_option_error("mailbox", argv, c);
		}
	}
	if (optind >= argc)
		return cli_fail("'dakiya mailbox' needs a verb: list or show; see 'dakiya mailbox "
		                "--help'");
	const char *verb = argv[optind++];
	int nargs = argc - optind;
	char **args = argv + optind;
	bool is_list = strcmp(verb, "list") == 0;
	if (!is_list && strcmp(verb, "show") != 0)
		return cli_fail("unknown verb 'mailbox %s'; use list or show (see 'dakiya mailbox "
		                "--help')",
		    verb);
	if (is_list && nargs != 1)
		return cli_fail("'dakiya mailbox list' needs exactly one ADDRESS; e.g. 'dakiya "
		                "mailbox list alice@example.com'");
	if (!is_list && nargs != 2)
		return cli_fail("'dakiya mailbox show' needs an ADDRESS and a UID; e.g. 'dakiya "
		                "mailbox show alice@example.com 1' (UIDs are in 'mailbox list')");
	if (folder != NULL && folder[0] == '\0')
		return cli_fail("the folder name is empty; give one such as INBOX or Sent");
	if (!cli_valid_address(args[0]))
		return cli_fail(
		    "'%s' is not a valid address; give one like alice@example.com", args[0]);
	uint32_t uid = 0;
	if (!is_list && !parse_uid(args[1], &uid))
		return cli_fail("'%s' is not a UID; give the number from 'dakiya mailbox list %s'",
		    args[1], args[0]);

	char *addr = strdup(args[0]);
	if (addr == NULL)
		return cli_fail("out of memory");
	char *at = strrchr(addr, '@');
	util_lower(at + 1);

	int rc;
	struct store *st = cli_open_store(cli);
	if (st == NULL) {
		rc = 1;
	} else if (is_list) {
		struct list_ctx ctx;
		memset(&ctx, 0, sizeof ctx);
		ctx.cli = cli;
		buf_init(&ctx.out, 0);
		json_init(&ctx.j, &ctx.out);
		if (cli->json)
			json_array_begin(&ctx.j);
		else
			buf_printf(&ctx.out, "%6s  %-16s  %9s  %-6s  %-32s  %s\n", "UID", "DATE",
			    "SIZE", "FLAGS", "FROM", "SUBJECT");
		rc = store_mailbox_list(st, addr, folder, list_cb, &ctx);
		if (rc == STORE_OK) {
			if (cli->json) {
				json_array_end(&ctx.j);
				buf_putc(&ctx.out, '\n');
			}
			rc = cli_print_buf(&ctx.out);
		} else if (rc == STORE_NOTFOUND || rc == STORE_NOTLOCAL) {
			rc = explain_notfound(cli, st, addr, folder);
		} else {
			rc = cli_store_fail(cli, rc, "cannot list the folder");
		}
		buf_free(&ctx.out);
	} else {
		struct buf path = BUF_INIT;
		rc = store_message_path(st, addr, folder, uid, &path);
		if (rc == STORE_OK) {
			rc = show_file(buf_cstr(&path));
		} else if (rc == STORE_NOTFOUND || rc == STORE_NOTLOCAL) {
			/* distinguish: no user/folder, or no such UID in it */
			if (folder_exists(st, addr, folder))
				rc = cli_fail("there is no message with UID %u in %s of %s; see "
				              "'dakiya mailbox list %s%s%s'",
				    uid, folder ? folder : "INBOX", addr, addr,
				    folder ? " --folder " : "", folder ? folder : "");
			else
				rc = explain_notfound(cli, st, addr, folder);
		} else {
			rc = cli_store_fail(cli, rc, "cannot find the message");
		}
		buf_free(&path);
	}
	free(addr);
	return rc;
}
