/*
 * cli.h - the dakiya command line: shared state of one invocation and the
 * helpers every command uses.
 *
 * main() strips the global options (-c FILE / --config FILE and --json,
 * accepted anywhere before a "--") and hands each command argv with
 * argv[0] = the command word ("serve", "user", ...) and the rest unchanged,
 * so commands parse their own options with getopt_long (reset optind = 0).
 *
 * Conventions (DESIGN.md "Command-line contract"):
 *   - data on stdout; errors on stderr as "dakiya: <what went wrong>; <what to do>";
 *   - exit 0 on success, 1 on any error (cli_fail() returns 1 for that);
 *   - --help / -h at every level prints the manual page of that command on
 *     stdout and exits 0;
 *   - passwords never come from argv (see cli_password_obtain()).
 */
#ifndef DAKIYA_CLI_H
#define DAKIYA_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/config.h"

struct store;

struct cli {
	const char *config_path; /* -c FILE as given; NULL = $DAKIYA_CONFIG or the default */
	bool json;               /* --json was given */
	bool config_loaded;      /* cfg is valid (cli_load_config() succeeded) */
	struct config cfg;       /* the loaded configuration */
	struct store *store;     /* opened by cli_open_store(); closed by cli_free() */
};

void cli_init(struct cli *cli);
void cli_free(struct cli *cli); /* closes the store, frees the config; accepts NULL */

/* The config file this invocation uses (-c, else $DAKIYA_CONFIG, else default). */
const char *cli_config_path(const struct cli *cli);
/* Load cli->cfg once. On error prints the reason (file:line) with advice and
 * returns -1. */
int cli_load_config(struct cli *cli);
/* Is there a configuration to read: -c, $DAKIYA_CONFIG, or the default
 * file? (Commands that also work on a machine without dakiya set up, such
 * as mx and spf, read it only then.) */
bool cli_have_config(const struct cli *cli);
/* A whole number of seconds from 1 to max in s (the value of option): 0,
 * or the exit status of cli_fail() with what to give instead. */
int cli_parse_seconds(const char *option, const char *s, unsigned max, unsigned *out);
/* Load the config if needed and open the store in its data_dir (once); NULL
 * after printing the reason. */
struct store *cli_open_store(struct cli *cli);

/* Print "dakiya: " fmt "\n" on stderr; returns 1, the exit status for errors,
 * so commands can `return cli_fail("no such user %s; ...", a);`. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a store failure for "what" (e.g. "cannot add user a@b.test") with
 * advice matching rc (busy, not local, invalid, ...); returns 1. */
int cli_store_fail(struct cli *cli, int rc, const char *what);
/* Print text (a manual page) on stdout; returns 0. */
int cli_help(const char *text);
/* Report a getopt_long failure (c is its return value '?' or ':') for
 * command cmd ("user", "mailbox", ...); returns 1. */
int cli_option_error(const char *cmd, char **argv, int c);

/* Write all n bytes to fd, retrying partial writes and EINTR; 0 or -1. */
int cli_write_all(int fd, const void *p, size_t n);
/* Write b to stdout; returns 0, or 1 after printing an error. */
int cli_print_buf(const struct buf *b);

/* ---- passwords ---- */
#define CLI_PASSWORD_MIN 8    /* characters a chosen password must have */
#define CLI_PASSWORD_MAX 1024 /* bytes */
#define CLI_PASSWORD_GEN_LEN 20

/* A fresh random password of n characters from an alphabet without look-alike
 * characters (no 0/O, 1/l/I) into out (replacing its contents). */
void cli_password_generate(struct buf *out, size_t n);
/* yescrypt hash of pw (libxcrypt, "$y$" with its default cost) into out.
 * 0, or -1 after printing an error. */
int cli_password_hash(const char *pw, struct buf *out);
/* A new password for a user:
 *   from_stdin: one line of standard input (the newline is not part of it);
 *   else, if stdin is a terminal: prompted twice without echo;
 *   else: generated, and *generated set so the caller prints it once.
 * Returns 0, or 1 after printing an error. The caller wipes pw. */
int cli_password_obtain(bool from_stdin, struct buf *pw, bool *generated);
/* Wipe and free a buffer that held a secret. */
void cli_buf_wipe(struct buf *b);

/* ---- syntax of names given on the command line ---- */
/* "local@domain" with a sane local part and a valid domain. */
bool cli_valid_address(const char *s);
/* A DNS domain name in ASCII (A-labels for IDN), see config_valid_hostname(). */
bool cli_valid_domain(const char *s);
/* The domain part of an address (after the last '@'), or "" if none. */
const char *cli_address_domain(const char *address);

/* ---- the sending client (spf check, check): cli_sender.c ---- */
struct event_base;
struct dns_resolver;
struct cli_sender {
	const char *ip, *helo, *from; /* helo and from "" when not given */
	const char *resolver, *timeout;
	int first;     /* argv index of the first operand */
	unsigned secs; /* per DNS query, after cli_sender_check */
};
/* getopt over --ip --helo --mail-from --resolver --timeout (--help prints
 * help); *done when the command is over (help, or an error printed). */
int cli_sender_parse(
    const char *cmd, const char *help, int argc, char **argv, struct cli_sender *o, bool *done);
/* The values make sense (an address, an identity, a timeout, default_secs
 * without one): 0, or 1 after an error message. */
int cli_sender_check(const char *cmd, struct cli_sender *o, unsigned default_secs);
/* A new event loop and resolver: --resolver, else the configuration's (if
 * loaded), else the system's. 0, or 1 after an error message. */
int cli_sender_resolver(
    struct cli *cli, const struct cli_sender *o, struct event_base **base, struct dns_resolver **r);

/* ---- commands ---- */
int cmd_quickstart(struct cli *cli, int argc, char **argv);
int cmd_serve(struct cli *cli, int argc, char **argv); /* cmd_serve.c */
int cmd_domain(struct cli *cli, int argc, char **argv);
int cmd_user(struct cli *cli, int argc, char **argv);
int cmd_alias(struct cli *cli, int argc, char **argv);
int cmd_mailbox(struct cli *cli, int argc, char **argv);
int cmd_queue(struct cli *cli, int argc, char **argv);    /* cmd_queue.c */
int cmd_sendmail(struct cli *cli, int argc, char **argv); /* cmd_sendmail.c */
int cmd_mx(struct cli *cli, int argc, char **argv);       /* cmd_mx.c */
int cmd_spf(struct cli *cli, int argc, char **argv);      /* cmd_spf.c */
int cmd_dkim(struct cli *cli, int argc, char **argv);     /* cmd_dkim.c */
int cmd_dns(struct cli *cli, int argc, char **argv);      /* cmd_dkim.c */
int cmd_check(struct cli *cli, int argc, char **argv);    /* cmd_check.c */
/* New DKIM keys for domain (ours): selectors BASE+"r" and BASE+"e" (BASE
 * dkYYYYMMDD when NULL), or only one ("rsa"/"ed25519") at exactly BASE;
 * each signs at once if activate or the domain has no active key of its
 * algorithm, else waits for `dkim activate`; their zone-file lines
 * appended to out (may be NULL). 0, or 1 after an error message. */
int cli_dkim_keygen(struct cli *cli, struct store *st, const char *domain, const char *base,
    const char *only, bool activate, struct buf *out);
/* The records to publish for domain (ours) served by hostname, zone-file
 * lines (or JSON with cli->json) appended to out. */
int cli_dns_records(
    struct cli *cli, struct store *st, const char *domain, const char *hostname, struct buf *out);

/* Help texts, shared by "dakiya help NOUN" and "dakiya NOUN --help". */
extern const char cli_help_main[];
extern const char cli_help_quickstart[];
extern const char cli_help_domain[];
extern const char cli_help_user[];
extern const char cli_help_alias[];
extern const char cli_help_mailbox[];
extern const char cli_help_queue[];
extern const char cli_help_sendmail[];
extern const char cli_help_mx[];
extern const char cli_help_spf[];
extern const char cli_help_dkim[];
extern const char cli_help_dns[];
extern const char cli_help_check[];

#endif
