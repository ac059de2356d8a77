/*
 * main.c - the dakiya command: strip the global options, dispatch on the
 * command word (DESIGN.md "Command-line contract").
 *
 * Global options are accepted anywhere on the line before a "--":
 *   -c FILE, -cFILE, --config FILE, --config=FILE    the configuration file
 *   --json                                           machine-readable output
 * Everything else is left, in order, for the command, which receives
 * argv[0] = its own name.
 *
 * Invoked through a link whose name is "sendmail" (argv[0]'s basename), the
 * program is "dakiya sendmail" with the rest of the line as its arguments
 * (the global options still apply), so it can be /usr/sbin/sendmail.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"

struct command {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv);
	const char *help; /* NULL: the command prints its own (serve) */
};

static const struct command commands[] = {
    {"quickstart", cmd_quickstart, cli_help_quickstart},
    {"serve", cmd_serve, NULL},
    {"domain", cmd_domain, cli_help_domain},
    {"user", cmd_user, cli_help_user},
    {"alias", cmd_alias, cli_help_alias},
    {"mailbox", cmd_mailbox, cli_help_mailbox},
    {"queue", cmd_queue, cli_help_queue},
    {"sendmail", cmd_sendmail, cli_help_sendmail},
    {"mx", cmd_mx, cli_help_mx},
    {"spf", cmd_spf, cli_help_spf},
    {"dkim", cmd_dkim, cli_help_dkim},
    {"dns", cmd_dns, cli_help_dns},
    {"check", cmd_check, cli_help_check},
};

/* In the contract but not in this version yet: say so instead of "unknown". */
static const char *const planned[] = {"trace", "store"};

const char cli_help_main[] =
    "NAME\n"
    "    dakiya - a complete mail server (SMTP, submission, IMAP, POP3) and its admin tool\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] COMMAND [ARGUMENTS...] [--json]\n"
    "    dakiya help [COMMAND]\n"
    "    dakiya --help | --version\n"
    "\n"
    "DESCRIPTION\n"
    "    One program runs the mail server ('dakiya serve') and administers it. Domains,\n"
    "    users and aliases live in the store (under data_dir) and can be changed while the\n"
    "    server runs; everything else is in the configuration file.\n"
    "\n"
    "    To set up a new instance, run 'dakiya quickstart --domain example.com' and follow\n"
    "    the steps it prints.\n"
    "\n"
    "COMMANDS\n"
    "    quickstart --domain D [--dir DIR] [--dev] [--hostname H] [--listen IP]\n"
    "               [--resolver system|IP@PORT]\n"
    "                        create a configuration, a store, the domain and its postmaster\n"
    "    serve               run the server in the foreground, logging to stderr\n"
    "    domain add|list|del [DOMAIN]\n"
    "                        the domains we receive mail for\n"
    "    user add|list|del|passwd ADDRESS [--password-stdin]\n"
    "                        mailbox owners and their passwords\n"
    "    alias add|list|del ADDRESS [TARGET...]\n"
    "                        addresses that forward to others; \"@DOMAIN\" catches all\n"
    "    mailbox list|show ADDRESS [--folder F] [UID]\n"
    "                        the messages in a user's folder, or one message's bytes\n"
    "    queue list|show|retry|hold|release|delete [ID] [--all]\n"
    "                        the messages waiting for delivery to other domains\n"
    "    sendmail [-t] [-i] [-f SENDER] [-F NAME] [RECIPIENT...]\n"
    "                        send a message from standard input, as sendmail does\n"
    "    mx DOMAIN [--json]  the mail servers of a domain, by preference, with addresses\n"
    "    spf check --ip IP [--helo NAME] [--mail-from ADDRESS] [--json]\n"
    "                        the SPF verdict for a sender, with live DNS\n"
    "    dkim keygen|list|del DOMAIN [--selector S]\n"
    "                        the DKIM keys our users' mail is signed with\n"
    "    dns records DOMAIN [--json]\n"
    "                        the MX, SPF, DKIM and DMARC records to publish\n"
    "    check FILE.eml --ip IP --helo NAME --mail-from ADDRESS [--json]\n"
    "                        the SPF, DKIM and DMARC verdicts on a message, with live DNS\n"
    "\n"
    "    Run 'dakiya COMMAND --help' (or 'dakiya help COMMAND') for its manual.\n"
    "\n"
    "GLOBAL OPTIONS\n"
    "    These are accepted anywhere on the command line (before a \"--\").\n"
    "\n"
    "    -c FILE, --config FILE\n"
    "        The configuration file. Default: $DAKIYA_CONFIG if set, else\n"
    "        /etc/dakiya/dakiya.conf.\n"
    "    --json\n"
    "        Print data as JSON instead of text (commands that print data).\n"
    "    -h, --help\n"
    "        Print the manual of dakiya or of the command, and exit 0.\n"
    "    -V, --version\n"
    "        Print the version and exit 0.\n"
    "\n"
    "ENVIRONMENT\n"
    "    DAKIYA_CONFIG    the configuration file when -c is not given\n"
    "\n"
    "FILES\n"
    "    /etc/dakiya/dakiya.conf    the default configuration file\n"
    "\n"
    "EXIT STATUS\n"
    "    0 on success; 1 on any error, after a message on stderr of the form\n"
    "    \"dakiya: what went wrong; what to do\".\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya quickstart --dev --domain example.test --dir /tmp/mx1\n"
    "    export DAKIYA_CONFIG=/tmp/mx1/dakiya.conf\n"
    "    dakiya serve &\n"
    "    dakiya user add alice@example.test\n"
    "    printf '%s\\n' \"$PASSWORD\" | dakiya user passwd alice@example.test --password-stdin\n"
    "    dakiya mailbox list alice@example.test --json\n";

/* Take the global options out of argv; 0, or 1 after printing an error. */
static int strip_globals(struct cli *cli, int *argcp, char **argv)
{
	int argc = *argcp, out = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			while (i < argc)
				argv[out++] = argv[i++];
			break;
		}
		if (strcmp(a, "--json") == 0) {
			cli->json = true;
		} else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
			if (i + 1 >= argc)
				return cli_fail("option '%s' needs a file name; e.g. '-c "
				                "/etc/dakiya/dakiya.conf'",
				    a);
			cli->config_path = argv[++i];
		} else if (strncmp(a, "--config=", 9) == 0) {
			cli->config_path = a + 9;
		} else if (strncmp(a, "-c", 2) == 0 && a[2] != '\0') {
			cli->config_path = a + 2;
		} else {
			argv[out++] = argv[i];
		}
	}
	if (cli->config_path != NULL && cli->config_path[0] == '\0')
		return cli_fail("the configuration file name given with -c is empty; give a path");
	argv[out] = NULL;
	*argcp = out;
	return 0;
}

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int unknown_command(const char *name)
{
	for (size_t i = 0; i < sizeof planned / sizeof planned[0]; i++)
		if (strcmp(planned[i], name) == 0)
			return cli_fail("'%s' is not available in this version of dakiya yet; run "
			                "'dakiya --help' for the commands it has",
			    name);
	if (name[0] == '-')
		return cli_fail("unknown option '%s'; run 'dakiya --help' for the options", name);
	return cli_fail("unknown command '%s'; run 'dakiya --help' for the list of commands", name);
}

/* "dakiya help [COMMAND]" */
static int help_command(struct cli *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_help(cli_help_main);
	const struct command *c = find_command(argv[1]);
	if (c == NULL)
		return unknown_command(argv[1]);
	if (c->help != NULL)
		return cli_help(c->help);
	char help_opt[] = "--help";
	char *av[] = {argv[1], help_opt, NULL};
	return c->run(cli, 2, av);
}

/* Was the program started under the name "sendmail" (a link to it)? */
static bool invoked_as_sendmail(const char *argv0)
{
	if (argv0 == NULL)
		return false;
	const char *base = strrchr(argv0, '/');
	return strcmp(base ? base + 1 : argv0, "sendmail") == 0;
}

int main(int argc, char **argv)
{
	struct cli cli;
	cli_init(&cli);
	bool as_sendmail = invoked_as_sendmail(argv[0]);
	int rc = strip_globals(&cli, &argc, argv);
	if (rc != 0)
		return rc;
	if (as_sendmail) {
		static char sendmail_name[] = "sendmail";
		argv[0] = sendmail_name;
		log_set_level(LOG_WARN);
		rc = cmd_sendmail(&cli, argc, argv);
		cli_free(&cli);
		return rc;
	}

	if (argc < 2)
		return cli_fail("no command given; run 'dakiya --help' for the list of commands");
	const char *name = argv[1];
	if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0)
		return cli_help(cli_help_main);
	if (strcmp(name, "-V") == 0 || strcmp(name, "--version") == 0) {
		printf("dakiya %s\n", DAKIYA_VERSION);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (strcmp(name, "help") == 0)
		return help_command(&cli, argc - 1, argv + 1);

	const struct command *c = find_command(name);
	if (c == NULL)
		return unknown_command(name);
	/* commands other than serve say what matters on their own; the store's
	 * informational lines (migrations) stay out of their output */
	log_set_level(LOG_WARN);
	rc = c->run(&cli, argc - 1, argv + 1);
	cli_free(&cli);
	return rc;
}
