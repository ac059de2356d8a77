/*
 * cli_sender.c - what `dakiya spf check` and `dakiya check` share: the
 * options that describe the sending client (--ip --helo --mail-from), the
 * resolver to ask (--resolver, --timeout) and its event loop.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <getopt.h>
#include <string.h>

#include "cli/cli.h"
#include "dns/dns.h"

int cli_sender_parse(
    const char *cmd, const char *help, int argc, char **argv, struct cli_sender *o, bool *done)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"ip", required_argument, NULL, 'i'},
	    {"helo", required_argument, NULL, 'H'},
	    {"mail-from", required_argument, NULL, 'f'},
	    {"resolver", required_argument, NULL, 'r'},
	    {"timeout", required_argument, NULL, 't'},
	    {NULL, 0, NULL, 0},
	};
	*o = (struct cli_sender){.helo = "", .from = ""};
	*done = false;
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			*done = true;
			return cli_help(help);
		case 'i':
			o->ip = optarg;
			break;
		case 'H':
			o->helo = optarg;
			break;
		case 'f':
			o->from = optarg;
			break;
		case 'r':
			o->resolver = optarg;
			break;
		case 't':
			o->timeout = optarg;
			break;
		default:
			*done = true;
			return cli_option_error(cmd, argv, c);
		}
	}
	o->first = optind;
	return 0;
}

int cli_sender_check(const char *cmd, struct cli_sender *o, unsigned default_secs)
{
	unsigned char tmp[16];
	if (o->ip == NULL)
		return cli_fail("'dakiya %s' needs --ip, the client's address", cmd);
	if (inet_pton(AF_INET, o->ip, tmp) != 1 && inet_pton(AF_INET6, o->ip, tmp) != 1)
		return cli_fail("--ip '%s' is not an IPv4 or IPv6 address", o->ip);
	if (*o->from == '\0' && *o->helo == '\0')
		return cli_fail("give --mail-from, or --helo for the HELO identity");
	if (*o->from == '<') {
		size_t n = strlen(o->from);
		return cli_fail("give --mail-from without the angle brackets: '%.*s'",
		    (int)(n > 2 ? n - 2 : 0), o->from + 1);
	}
	o->secs = default_secs;
	if (o->timeout != NULL && cli_parse_seconds("--timeout", o->timeout, 300, &o->secs) != 0)
		return 1;
	return 0;
}

int cli_sender_resolver(
    struct cli *cli, const struct cli_sender *o, struct event_base **base, struct dns_resolver **r)
{
	const char *cfg_resolver = cli->config_loaded ? cli->cfg.resolver : "system";
	struct dns_options opt = {o->resolver ? o->resolver : cfg_resolver, o->secs * 1000};
	struct buf err = BUF_INIT;
	*base = event_base_new();
	*r = *base ? dns_resolver_new(*base, &opt, &err) : NULL;
	if (*r != NULL) {
		buf_free(&err);
		return 0;
	}
	int rc = cli_fail("%s; %s", *base ? buf_cstr(&err) : "cannot set up an event loop",
	    o->resolver ? "check --resolver"
	                : "check the resolver setting in the configuration file");
	buf_free(&err);
	if (*base)
		event_base_free(*base);
	*base = NULL;
	return rc;
}
