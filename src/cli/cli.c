/*
 * cli.c - helpers shared by the dakiya commands (see cli.h): configuration
 * and store opening with helpful errors, output, and password handling.
 *
 * Security: passwords are read from stdin or a terminal, never argv (argv is
 * visible to every local user in /proc). Buffers that held a password are
 * wiped with explicit_bzero before they are freed. While echo is off, fatal
 * signals restore the terminal before the process dies.
 */
#include "cli/cli.h"

#include <crypt.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "core/util.h"
#include "store/store.h"

void cli_init(struct cli *cli)
{
	memset(cli, 0, sizeof *cli);
}

void cli_free(struct cli *cli)
{
	if (cli == NULL)
		return;
	store_close(cli->store);
	cli->store = NULL;
	if (cli->config_loaded)
		config_free(&cli->cfg);
	cli->config_loaded = false;
}

int cli_fail(const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	buf_puts(&b, "dakiya: ");
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	buf_putc(&b, '\n');
	fflush(stdout);
	(void)cli_write_all(STDERR_FILENO, b.data, b.len);
	buf_free(&b);
	return 1;
}

int cli_help(const char *text)
{
	fputs(text, stdout);
	return fflush(stdout) == 0 ? 0 : 1;
}

int cli_option_error(const char *cmd, char **argv, int c)
{
	const char *opt = optind > 0 ? argv[optind - 1] : "?";
	if (c == ':')
		return cli_fail("option '%s' of 'dakiya %s' needs a value; see 'dakiya %s --help'",
		    opt, cmd, cmd);
	if (optopt != 0)
		return cli_fail("unknown option '-%c' for 'dakiya %s'; see 'dakiya %s --help'",
		    optopt, cmd, cmd);
	return cli_fail(
	    "unknown option '%s' for 'dakiya %s'; see 'dakiya %s --help'", opt, cmd, cmd);
}

int cli_write_all(int fd, const void *p, size_t n)
{
	const char *q = p;
	while (n > 0) {
		ssize_t w = write(fd, q, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		q += w;
		n -= (size_t)w;
	}
	return 0;
}

int cli_print_buf(const struct buf *b)
{
	if (buf_err(b))
		return cli_fail("out of memory while formatting the output");
	fflush(stdout);
	if (cli_write_all(STDOUT_FILENO, b->data, b->len) != 0)
		return cli_fail("cannot write to standard output: %s", strerror(errno));
	return 0;
}

/* ---- configuration and store ---- */

const char *cli_config_path(const struct cli *cli)
{
	return config_default_path(cli->config_path);
}

int cli_parse_seconds(const char *option, const char *s, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*s < '0' || *s > '9' || *end != '\0' || v < 1 || v > max)
		return cli_fail("%s '%s' is not a number of seconds from 1 to %u", option, s, max);
	*out = (unsigned)v;
	return 0;
}

bool cli_have_config(const struct cli *cli)
{
	const char *env = getenv("DAKIYA_CONFIG");
	return cli->config_path != NULL || (env != NULL && env[0] != '\0') ||
	       access(CONFIG_DEFAULT_PATH, F_OK) == 0;
}

int cli_load_config(struct cli *cli)
{
	if (cli->config_loaded)
		return 0;
	const char *path = cli_config_path(cli);
	struct buf err = BUF_INIT;
	if (config_load(path, &cli->cfg, &err) != 0) {
		if (access(path, F_OK) != 0 && errno == ENOENT)
			cli_fail(
			    "%s; pass -c FILE or set DAKIYA_CONFIG to your dakiya.conf, or create "
			    "one with 'dakiya quickstart --domain DOMAIN'",
			    buf_cstr(&err));
		else
			cli_fail("%s; fix the configuration file (see docs/configuration.md)",
			    buf_cstr(&err));
		buf_free(&err);
		return -1;
	}
	buf_free(&err);
	cli->config_loaded = true;
	return 0;
}

struct store *cli_open_store(struct cli *cli)
{
	if (cli->store != NULL)
		return cli->store;
	if (cli_load_config(cli) != 0)
		return NULL;
	struct buf err = BUF_INIT;
	/* as root, work as the server's user, so that no file of the store
	 * becomes root's and unusable by the server */
	if (geteuid() == 0 && util_drop_privileges(cli->cfg.user, &err) < 0) {
		cli_fail("%s", buf_cstr(&err));
		buf_free(&err);
		return NULL;
	}
	cli->store = store_open(cli->cfg.data_dir, &err);
	if (cli->store == NULL)
		cli_fail("cannot open the store in %s: %s; check data_dir in %s and that you may "
		         "read and write that directory",
		    cli->cfg.data_dir, buf_cstr(&err), cli->cfg.path);
	buf_free(&err);
	return cli->store;
}

int cli_store_fail(struct cli *cli, int rc, const char *what)
{
	switch (rc) {
	case STORE_BUSY:
		return cli_fail("%s: the store is busy; try again in a moment", what);
	case STORE_INVALID:
		return cli_fail(
		    "%s: the store refused the name as invalid; check its spelling", what);
	case STORE_NOTLOCAL:
		return cli_fail("%s: that domain is not one of ours; add it first with 'dakiya "
		                "domain add DOMAIN'",
		    what);
	case STORE_NOTFOUND:
		return cli_fail("%s: not found; see 'dakiya domain list', 'dakiya user list' or "
		                "'dakiya alias list'",
		    what);
	case STORE_EXISTS:
		return cli_fail("%s: it already exists", what);
	case STORE_ERR:
	default:
		return cli_fail("%s: %s; check the store in %s and the disk", what,
		    cli->store ? store_error(cli->store) : "store error",
		    cli->config_loaded ? cli->cfg.data_dir : "the data directory");
	}
}

/* ---- names ---- */

bool cli_valid_domain(const char *s)
{
	return config_valid_hostname(s);
}

const char *cli_address_domain(const char *address)
{
	const char *at = strrchr(address, '@');
	return at ? at + 1 : "";
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
	size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
	if (n == 0 || p[0] > 0xf4 || (size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
		return 0;
	return n;
}

bool cli_valid_address(const char *s)
{
	const char *at = strrchr(s, '@');
	if (at == NULL || at == s || (size_t)(at - s) > 64)
		return false;
	const unsigned char *end = (const unsigned char *)at;
	for (const unsigned char *p = (const unsigned char *)s; p < end; p++) {
		unsigned char c = *p;
		if (c >= 0x80) {
			/* UTF-8 local parts, for SMTPUTF8 (RFC 6531) */
			size_t n = utf8_seq(p, end);
			if (n == 0)
				return false;
			p += n - 1;
			continue;
		}
		/* printable ASCII without the specials that would need quoting */
		if (c <= 0x20 || c == 0x7f || strchr("\"(),:;<>@[\\]", c) != NULL)
			return false;
	}
	if (s[0] == '.' || at[-1] == '.' || strstr(s, "..") != NULL)
		return false;
	return cli_valid_domain(at + 1);
}

/* ---- passwords ---- */

void cli_buf_wipe(struct buf *b)
{
	if (b->data != NULL)
		explicit_bzero(b->data, b->alloc);
	buf_free(b);
}

void cli_password_generate(struct buf *out, size_t n)
{
	/* 56 symbols: no 0 O o, 1 l I */
	static const char alphabet[] = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
	const size_t na = sizeof alphabet - 1;
	const unsigned limit = 256 - 256 % na; /* reject bytes >= limit: no modulo bias */
	buf_reset(out);
	while (out->len < n) {
		unsigned char r[32];
		util_random(r, sizeof r);
		for (size_t i = 0; i < sizeof r && out->len < n; i++)
			if (r[i] < limit)
				buf_putc(out, alphabet[r[i] % na]);
		explicit_bzero(r, sizeof r);
	}
}

int cli_password_hash(const char *pw, struct buf *out)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt) == NULL) {
		cli_fail("cannot make a yescrypt salt: %s; is libxcrypt >= 4.3 installed?",
		    strerror(errno));
		return -1;
	}
	struct crypt_data *cd = calloc(1, sizeof *cd);
	if (cd == NULL) {
		cli_fail("out of memory while hashing the password");
		return -1;
	}
	const char *h = crypt_r(pw, salt, cd);
	int rc = 0;
	if (h == NULL || h[0] == '*') {
		cli_fail("cannot hash the password with yescrypt: %s", strerror(errno));
		rc = -1;
	} else {
		buf_reset(out);
		buf_puts(out, h);
		if (buf_err(out)) {
			cli_fail("out of memory while hashing the password");
			rc = -1;
		}
	}
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	return rc;
}

/* Terminal state while echo is off, restored by tty_restore() and by a fatal
 * signal arriving meanwhile. */
static struct termios tty_saved;
static volatile sig_atomic_t tty_echo_off;
static struct sigaction tty_old_actions[4];
static const int tty_signals[4] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

static void tty_restore(void)
{
	if (tty_echo_off) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
		tty_echo_off = 0;
	}
}

static void tty_on_signal(int sig)
{
	if (tty_echo_off)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved); /* async-signal-safe */
	(void)write(STDERR_FILENO, "\n", 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int tty_echo(bool on)
{
	if (on) {
		tty_restore();
		for (size_t i = 0; i < 4; i++)
			sigaction(tty_signals[i], &tty_old_actions[i], NULL);
		return 0;
	}
	if (tcgetattr(STDIN_FILENO, &tty_saved) != 0)
		return -1;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = tty_on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < 4; i++)
		sigaction(tty_signals[i], &sa, &tty_old_actions[i]);
	struct termios t = tty_saved;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	tty_echo_off = 1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) != 0) {
		tty_echo(true);
		return -1;
	}
	return 0;
}

/* One line from fd 0 into line (without the newline or a trailing CR).
 * 1 = a line, 0 = end of input before any byte, -1 = error (errno), -2 = too long. */
static int read_line(struct buf *line)
{
	buf_reset(line);
	bool any = false;
	for (;;) {
		char c;
		ssize_t r = read(STDIN_FILENO, &c, 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		any = true;
		if (c == '\n')
			break;
		if (line->len >= CLI_PASSWORD_MAX)
			return -2; /* keep reading nothing more: the caller fails */
		buf_putc(line, c);
	}
	if (line->len > 0 && line->data[line->len - 1] == '\r')
		line->data[--line->len] = '\0';
	return any ? 1 : 0;
}

/* Check a password someone chose; 0 or 1 after printing an error. */
static int password_acceptable(const struct buf *pw, const char *source)
{
	if (buf_err(pw))
		return cli_fail("out of memory while reading the password");
	if (memchr(pw->data ? pw->data : "", '\0', pw->len) != NULL)
		return cli_fail("the password from %s contains a NUL byte; choose another", source);
	size_t chars = 0; /* count UTF-8 characters, not bytes */
	for (size_t i = 0; i < pw->len; i++)
		if (((unsigned char)pw->data[i] & 0xc0) != 0x80)
			chars++;
	if (chars < CLI_PASSWORD_MIN)
		return cli_fail(
		    "the password from %s is too short (%zu characters); use at least %d", source,
		    chars, CLI_PASSWORD_MIN);
	return 0;
}

int cli_password_obtain(bool from_stdin, struct buf *pw, bool *generated)
{
	*generated = false;
	if (from_stdin) {
		int r = read_line(pw);
		if (r == -1)
			return cli_fail(
			    "cannot read the password from standard input: %s", strerror(errno));
		if (r == -2)
			return cli_fail(
			    "the password on standard input is longer than %d bytes; use "
			    "a shorter one",
			    CLI_PASSWORD_MAX);
		if (r == 0 || pw->len == 0)
			return cli_fail("no password on standard input; pipe one line, e.g. "
			                "'printf %%s\\\\n \"$PW\" | dakiya user add ADDRESS "
			                "--password-stdin'");
		return password_acceptable(pw, "standard input");
	}
	if (!isatty(STDIN_FILENO)) {
		cli_password_generate(pw, CLI_PASSWORD_GEN_LEN);
		*generated = true;
		return buf_err(pw) ? cli_fail("out of memory") : 0;
	}

	struct buf again = BUF_INIT;
	int rc = 0;
	if (tty_echo(false) != 0) {
		rc = cli_fail("cannot turn off echo on the terminal: %s; use --password-stdin",
		    strerror(errno));
		goto out;
	}
	fputs("New password: ", stderr);
	fflush(stderr);
	int r1 = read_line(pw);
	int r2 = 0;
	if (r1 == 1) {
		fputs("Repeat it: ", stderr);
		fflush(stderr);
		r2 = read_line(&again);
	}
	tty_echo(true);
	if (r1 == -2 || r2 == -2)
		rc = cli_fail(
		    "the password is longer than %d bytes; use a shorter one", CLI_PASSWORD_MAX);
	else if (r1 != 1 || r2 != 1)
		rc = cli_fail("no password was entered; nothing changed");
	else if (pw->len != again.len || memcmp(buf_cstr(pw), buf_cstr(&again), pw->len) != 0)
		rc = cli_fail("the two passwords differ; nothing changed, try again");
	else
		rc = password_acceptable(pw, "the terminal");
out:
	cli_buf_wipe(&again);
	return rc;
}
