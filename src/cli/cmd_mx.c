/*
 * cmd_mx.c - dakiya mx DOMAIN: where mail for DOMAIN goes, as delivery
 * sees it (dns_targets_sync(): the MX hosts by preference with their
 * addresses, the implicit MX, null MX, RFC 5321 5.1 and RFC 7505).
 *
 * --json prints exactly the contract's
 *   [{"preference":10,"host":"mx.d.test","addresses":["192.0.2.1"]}]
 * with fields added only where they say something: "implicit":true (no MX
 * records, the domain's own addresses), "cname":"NAME" (the host is an
 * alias of NAME), "error":"why" (a host without usable addresses, which
 * delivery skips; "addresses" is then []). A null MX prints [] (exit 0),
 * and says so on stderr.
 *
 * Exit status: 0 when mail for the domain can go somewhere or the domain
 * says it takes none (null MX); 1 when the domain does not exist, no host
 * has an address, or DNS failed temporarily (the reason and what to do on
 * stderr).
 *
 * Security: names come from DNS; dns.c escapes every unusual byte in them
 * (\DDD), so they are safe on a terminal.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "core/log.h"
#include "dns/dns.h"

#define MX_TIMEOUT_DEFAULT 10 /* seconds per DNS query */

const char cli_help_mx[] =
    "NAME\n"
    "    dakiya mx - the mail servers of a domain, by preference, with their addresses\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] mx DOMAIN [--json] [--resolver system|IP@PORT]\n"
    "                     [--family any|ipv4|ipv6|prefer-ipv4|prefer-ipv6] [--timeout SECONDS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Looks DOMAIN up in DNS exactly as outbound delivery does, and prints where its\n"
    "    mail would go: one line per MX host, most preferred first (hosts of equal\n"
    "    preference in random order, as delivery tries them), with the addresses in the\n"
    "    order delivery tries them:\n"
    "\n"
    "        10 mx1.example.com 192.0.2.1 2001:db8::1\n"
    "        20 mx2.example.com 192.0.2.2 (alias of relay.example.net)\n"
    "        30 mx3.example.com (skipped: mx3.example.com does not exist (NXDOMAIN))\n"
    "\n"
    "    Without MX records the domain's own address records are used (RFC 5321 5.1),\n"
    "    shown with preference 0 and \"(implicit MX ...)\". A host without addresses is\n"
    "    skipped by delivery and shown with the reason. A domain whose only MX record is\n"
    "    \".\" (null MX, RFC 7505) accepts no mail: this is printed, and delivery bounces\n"
    "    such mail at once.\n"
    "\n"
    "    The resolver and the address family come from the configuration file (resolver,\n"
    "    delivery.family) when there is one; without any, /etc/resolv.conf and both\n"
    "    families are used.\n"
    "\n"
    "OPTIONS\n"
    "    --json            print [{\"preference\":10,\"host\":\"mx.example.com\",\n"
    "                      \"addresses\":[\"192.0.2.1\"]}, ...]; added only when they apply:\n"
    "                      \"implicit\":true, \"cname\":\"NAME\", \"error\":\"why it is "
    "skipped\".\n"
    "                      A null MX prints [].\n"
    "    --resolver R      \"system\", or forwarders \"IP\" / \"IP@PORT\" (several separated by\n"
    "                      commas), instead of the configured resolver\n"
    "    --family F        any (IPv4 and IPv6 interleaved), ipv4, ipv6, prefer-ipv4 or\n"
    "                      prefer-ipv6, instead of the configured delivery.family\n"
    "    --timeout SECONDS how long to wait for each DNS answer (default 10)\n"
    "    -c FILE           the configuration file (see 'dakiya --help')\n"
    "    -h, --help        print this manual\n"
    "\n"
    "EXIT STATUS\n"
    "    0 if mail for DOMAIN can be delivered somewhere, or DOMAIN has a null MX;\n"
    "    1 if DOMAIN does not exist, none of its mail servers has an address, or DNS\n"
    "    failed temporarily (delivery would retry later), with the reason on stderr.\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya mx example.com\n"
    "    dakiya mx example.test --resolver 127.0.0.53@5353 --json\n";

/* Text output of one host. */
static void put_host(struct buf *out, const struct dns_targets *t, const struct dns_host *h)
{
	buf_printf(out, "%u %s", h->pref, h->name[0] ? h->name : ".");
	for (size_t i = 0; i < h->naddrs; i++)
		buf_printf(out, " %s", h->addrs[i].text);
	if (h->canon != NULL)
		buf_printf(out, " (alias of %s)", h->canon);
	if (h->implicit)
		buf_printf(out, " (implicit MX: %s has no MX records, RFC 5321 5.1)", t->domain);
	if (h->naddrs == 0)
		buf_printf(out, " (skipped: %s)", h->reason ? h->reason : "no address");
	buf_putc(out, '\n');
}

static void put_json(struct buf *out, const struct dns_targets *t)
{
	struct json j;
	json_init(&j, out);
	json_array_begin(&j);
	for (size_t i = 0; i < t->nhosts; i++) {
		const struct dns_host *h = &t->hosts[i];
		json_object_begin(&j);
		json_key(&j, "preference");
		json_uint(&j, h->pref);
		json_key(&j, "host");
		json_string(&j, h->name[0] ? h->name : ".");
		json_key(&j, "addresses");
		json_array_begin(&j);
		for (size_t k = 0; k < h->naddrs; k++)
			json_string(&j, h->addrs[k].text);
		json_array_end(&j);
		if (h->implicit) {
			json_key(&j, "implicit");
			json_bool(&j, true);
		}
		if (h->canon != NULL) {
			json_key(&j, "cname");
			json_string(&j, h->canon);
		}
		if (h->naddrs == 0) {
			json_key(&j, "error");
			json_string(&j, h->reason ? h->reason : "no address");
		}
		json_object_end(&j);
	}
	json_array_end(&j);
	buf_putc(out, '\n');
}

int cmd_mx(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"resolver", required_argument, NULL, 'r'},
	    {"family", required_argument, NULL, 'f'},
	    {"timeout", required_argument, NULL, 't'},
	    {NULL, 0, NULL, 0},
	};
	const char *resolver = NULL, *family = NULL, *timeout = NULL;
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			return cli_help(cli_help_mx);
		case 'r':
			resolver = optarg;
			break;
		case 'f':
			family = optarg;
			break;
		case 't':
			timeout = optarg;
			break;
		default:
			return cli_option_error("mx", argv, c);
		}
	}
	if (optind >= argc)
		return cli_fail("'dakiya mx' needs a domain, e.g. 'dakiya mx example.com'");
	if (argc - optind > 1)
		return cli_fail("'dakiya mx' takes one domain; got '%s' too", argv[optind + 1]);
	const char *domain = argv[optind];
	struct buf name = BUF_INIT;
	buf_puts(&name, domain);
	if (name.len > 1 && name.data[name.len - 1] == '.')
		name.data[--name.len] = '\0';
	if (!cli_valid_domain(buf_cstr(&name))) {
		buf_free(&name);
		return cli_fail("'%s' is not a valid domain name; give one like example.com (IDNs "
		                "in their xn-- form)",
		    domain);
	}

	unsigned secs = MX_TIMEOUT_DEFAULT;
	if (timeout != NULL && cli_parse_seconds("--timeout", timeout, 300, &secs) != 0) {
		buf_free(&name);
		return 1;
	}

	const char *cfg_family = "any";
	const char *cfg_resolver = "system";
	if (cli_have_config(cli)) {
		if (cli_load_config(cli) != 0) {
			buf_free(&name);
			return 1;
		}
		cfg_resolver = cli->cfg.resolver;
		cfg_family = cli->cfg.delivery.family;
	}
	enum dns_family fam;
	if (dns_family_parse(family ? family : cfg_family, &fam) != 0) {
		buf_free(&name);
		return cli_fail("--family '%s' is not one of any, ipv4, ipv6, prefer-ipv4, "
		                "prefer-ipv6",
		    family ? family : cfg_family);
	}

	struct dns_options opt = {resolver ? resolver : cfg_resolver, secs * 1000};
	struct buf err = BUF_INIT;
	struct dns_targets *t = dns_targets_sync(&opt, buf_cstr(&name), fam, &err);
	buf_free(&name);
	if (t == NULL) {
		int rc = cli_fail("%s; %s", buf_cstr(&err),
		    resolver ? "check --resolver"
		             : "check the resolver setting in the configuration file");
		buf_free(&err);
		return rc;
	}
	buf_free(&err);

	int rc = 0;
	struct buf out = BUF_INIT;
	switch (t->status) {
	case DNS_OK:
	case DNS_NODATA:
		if (cli->json)
			put_json(&out, t);
		else
			for (size_t i = 0; i < t->nhosts; i++)
				put_host(&out, t, &t->hosts[i]);
		rc = cli_print_buf(&out);
		if (t->status == DNS_NODATA)
			rc =
			    cli_fail("%s; mail to %s cannot be delivered until its DNS records are "
			             "fixed",
			        t->reason, t->domain);
		break;
	case DNS_NULLMX:
		if (cli->json) {
			buf_puts(&out, "[]\n");
			rc = cli_print_buf(&out);
			fprintf(stderr, "%s accepts no mail (null MX, RFC 7505)\n", t->domain);
		} else {
			buf_printf(&out, "%s accepts no mail (null MX, RFC 7505)\n", t->domain);
			rc = cli_print_buf(&out);
		}
		break;
	case DNS_NXDOMAIN:
		rc = cli_fail("no such domain: %s; check the spelling of the domain", t->reason);
		break;
	case DNS_TEMPFAIL:
		rc = cli_fail("temporary DNS failure for %s: %s; check that the resolver (%s) is "
		              "running and reachable, then try again (delivery would retry later)",
		    t->domain, t->reason, opt.resolver);
		break;
	default:
		fatalx("mx: bad status %d", (int)t->status);
	}
	buf_free(&out);
	dns_targets_free(t);
	return rc;
}
