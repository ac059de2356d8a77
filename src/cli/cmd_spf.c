/*
 * cmd_spf.c - dakiya spf check --ip IP --helo H --mail-from ADDR: the SPF
 * verdict (RFC 7208) for a client, against live DNS (the configured
 * resolver, or --resolver), exactly as the MX would compute it.
 *
 * Output (contract): the result word first on the line, then why;
 * --json {"result":..., "explanation":...} plus "reason", "identity",
 * "domain", "lookups". Exit status 0 whenever a verdict was reached (fail
 * and temperror included: they are answers); 1 on usage errors.
 */
#include <event2/event.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/spf.h"
#include "cli/cli.h"
#include "cli/json.h"
#include "dns/dns.h"

#define SPF_CLI_TIMEOUT 10 /* seconds per DNS query */

const char cli_help_spf[] =
    "NAME\n"
    "    dakiya spf - check a sender against SPF (RFC 7208), with live DNS\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] spf check --ip IP [--helo NAME] [--mail-from ADDRESS] [--json]\n"
    "                     [--resolver system|IP@PORT] [--timeout SECONDS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Evaluates the SPF policy of the MAIL FROM address's domain (or, with an empty\n"
    "    or no --mail-from, of the HELO name) for a client at IP, as the inbound MX does\n"
    "    for every message, and prints the result word first:\n"
    "\n"
    "        pass matched ip4:192.0.2.0/24 in example.com\n"
    "        fail matched -all in example.com\n"
    "        explanation: 192.0.2.9 is not one of our servers\n"
    "\n"
    "    Results: pass, fail, softfail, neutral, none (no SPF record), temperror (DNS\n"
    "    trouble: try again), permerror (a broken record, or more than 10 DNS lookups).\n"
    "    The lookups follow RFC 7208 with its limits: at most 10 mechanisms that query\n"
    "    DNS, 2 lookups that find nothing, 10 MX or PTR names.\n"
    "\n"
    "    The resolver comes from the configuration file (resolver) when there is one;\n"
    "    without any, /etc/resolv.conf.\n"
    "\n"
    "OPTIONS\n"
    "    --ip IP           the connecting client's address (IPv4 or IPv6); required\n"
    "    --helo NAME       its HELO/EHLO name\n"
    "    --mail-from ADDR  the envelope sender (without <>); empty or absent: the HELO\n"
    "                      identity is checked\n"
    "    --json            print {\"result\":\"pass\",\"explanation\":\"...\",\"reason\":\"...\",\n"
    "                      \"identity\":\"mailfrom\",\"domain\":\"...\",\"lookups\":3}\n"
    "    --resolver R      \"system\", or forwarders \"IP\" / \"IP@PORT\", instead of the\n"
    "                      configured resolver\n"
    "    --timeout SECONDS how long to wait for each DNS answer (default 10)\n"
    "    -c FILE           the configuration file (see 'dakiya --help')\n"
    "    -h, --help        print this manual\n"
    "\n"
    "EXIT STATUS\n"
    "    0 when a result was reached (whatever it is), 1 on a usage error.\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya spf check --ip 192.0.2.10 --helo mail.example.com --mail-from a@example.com\n"
    "    dakiya spf check --ip 2001:db8::25 --helo mx.example.org --json\n";

struct wait {
	struct event_base *base;
	struct spf_eval *e;
};

static void on_result(struct spf_eval *e, void *arg)
{
	struct wait *w = arg;
	w->e = e;
	event_base_loopbreak(w->base); /* the resolver's own events stay registered */
}

int cmd_spf(struct cli *cli, int argc, char **argv)
{
	struct cli_sender o;
	bool done;
	int rc = cli_sender_parse("spf", cli_help_spf, argc, argv, &o, &done);
	if (done)
		return rc;
	if (o.first >= argc || strcmp(argv[o.first], "check") != 0)
		return cli_fail("'dakiya spf' needs the verb check, e.g. 'dakiya spf check --ip "
		                "192.0.2.1 --helo mail.example.com --mail-from a@example.com'");
	if (argc - o.first > 1)
		return cli_fail(
		    "'dakiya spf check' takes options only; got '%s'", argv[o.first + 1]);
	if (cli_sender_check("spf check", &o, SPF_CLI_TIMEOUT) != 0)
		return 1;
	const char *receiver = NULL;
	if (cli_have_config(cli)) {
		if (cli_load_config(cli) != 0)
			return 1;
		receiver = cli->cfg.hostname;
	}
	struct event_base *base;
	struct dns_resolver *r;
	if (cli_sender_resolver(cli, &o, &base, &r) != 0)
		return 1;
	struct spf_params p = {.ip = o.ip, .helo = o.helo, .sender = o.from, .receiver = receiver};
	struct wait w = {base, NULL};
	struct spf_req *q = spf_check(base, r, &p, on_result, &w);
	if (q == NULL) {
		dns_resolver_free(r);
		event_base_free(base);
		return cli_fail("out of memory");
	}
	event_base_dispatch(base);
	dns_resolver_free(r);
	event_base_free(base);
	struct spf_eval *e = w.e;
	if (e == NULL)
		return cli_fail("the check did not finish; this is a bug, please report it");

	enum spf_result res = spf_eval_result(e);
	const char *exp = spf_eval_explanation(e);
	struct buf out = BUF_INIT;
	if (cli->json) {
		struct json j;
		json_init(&j, &out);
		json_object_begin(&j);
		json_key(&j, "result");
		json_string(&j, spf_result_name(res));
		json_key(&j, "explanation");
		json_string(&j, exp ? exp : spf_eval_reason(e));
		json_key(&j, "reason");
		json_string(&j, spf_eval_reason(e));
		json_key(&j, "identity");
		json_string(&j, spf_eval_identity(e));
		json_key(&j, "domain");
		json_string(&j, spf_eval_domain(e));
		json_key(&j, "lookups");
		json_uint(&j, spf_eval_lookups(e));
		json_object_end(&j);
		buf_putc(&out, '\n');
	} else {
		buf_printf(&out, "%s %s\n", spf_result_name(res), spf_eval_reason(e));
		if (exp)
			buf_printf(&out, "explanation: %s\n", exp);
	}
	spf_eval_free(e);
	rc = cli_print_buf(&out);
	buf_free(&out);
	return rc;
}
