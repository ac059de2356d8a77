/*
 * cmd_serve.c - `dakiya serve`: run the daemon in the foreground, logging to
 * stderr, until SIGTERM or SIGINT.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "smtp/smtp_server.h"

static const char help_serve[] =
    "NAME\n"
    "    dakiya serve - run the mail server in the foreground\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] serve\n"
    "\n"
    "DESCRIPTION\n"
    "    Reads the configuration file, opens the store in its data_dir, binds the\n"
    "    listeners it names and serves until SIGTERM or SIGINT. Logs go to standard\n"
    "    error, one line per event: a timestamp, the level, a session or queue id,\n"
    "    then key=value fields.\n"
    "\n"
    "    Domains, users and aliases may be changed with the other commands while\n"
    "    the server runs; it sees the changes at once.\n"
    "\n"
    "OPTIONS\n"
    "    -c FILE   the configuration file (default: $DAKIYA_CONFIG, then\n"
    "              /etc/dakiya/dakiya.conf)\n"
    "    -h, --help\n"
    "              this text\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya quickstart --domain example.test --dir ./mail --dev\n"
    "    dakiya serve -c ./mail/dakiya.conf\n";

int cmd_serve(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (c == 'h')
			return cli_help(help_serve);
		return cli_option_error("serve", argv, c);
	}
	if (optind < argc)
		return cli_fail("serve takes no arguments (got \"%s\"); see dakiya serve --help",
		    argv[optind]);
	if (cli_load_config(cli) < 0)
		return 1;
	const struct config *cfg = &cli->cfg;
	int lvl = config_log_level(cfg->log_level);
	log_set_level(lvl < 0 ? LOG_INFO : (enum log_level)lvl);
	log_info("-", "event=start version=%s config=%s", DAKIYA_VERSION, cli_config_path(cli));
	return smtp_server_run(cfg);
}
