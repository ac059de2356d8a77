/*
 * cmd_check.c - dakiya check FILE.eml --ip IP --helo H --mail-from ADDR: the
 * SPF, DKIM (every signature) and DMARC verdicts on a message, with live
 * DNS, and what the MX would do with it; the same code as the MX runs
 * (spf_check, then msgcheck).
 *
 * Output: one line per verdict ("spf: pass ...", "dkim: ...", "dmarc: ...",
 * "action: ..."), then the Authentication-Results field the MX would add;
 * --json an object with the same. Exit 0 whenever verdicts were reached.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/dkim.h"
#include "auth/dmarc.h"
#include "auth/msgcheck.h"
#include "auth/spf.h"
#include "cli/cli.h"
#include "cli/json.h"
#include "dns/dns.h"

#define CHECK_TIMEOUT 10                   /* seconds per DNS query */
#define CHECK_FILE_MAX (64u * 1024 * 1024) /* bytes of message read */

const char cli_help_check[] =
    "NAME\n"
    "    dakiya check - the SPF, DKIM and DMARC verdicts on a message, with live DNS\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] check MESSAGE.eml --ip IP [--helo NAME] [--mail-from ADDRESS]\n"
    "                   [--json] [--resolver system|IP@PORT] [--timeout SECONDS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Runs the checks the inbound MX runs on every message, as if MESSAGE (a file in\n"
    "    RFC 5322 form, '-' for standard input; LF line ends are taken as CRLF) had come\n"
    "    from a client at IP that said HELO NAME and MAIL FROM:<ADDRESS>:\n"
    "\n"
    "        spf: pass (matched ip4:192.0.2.0/24 in example.com) smtp.mailfrom=a@example.com\n"
    "        dkim: pass (good signature) d=example.com s=dk20261202r a=rsa-sha256\n"
    "        dkim: pass (good signature) d=example.com s=dk20261202e a=ed25519-sha256\n"
    "        dmarc: pass (p=reject) header.from=example.com\n"
    "        action: deliver (no policy applies)\n"
    "\n"
    "    followed by the Authentication-Results field the MX would add. The action is\n"
    "    what the MX would do under the configured policy (checks in dakiya.conf): deliver,\n"
    "    junk (file in the Junk folder) or refuse (550 5.7.1 at the end of DATA).\n"
    "\n"
    "    DKIM results: pass, fail (the body or the signed fields changed, or the key does\n"
    "    not match), permerror (a broken signature or key record, rsa-sha1, RSA under 1024\n"
    "    bits), temperror (the key could not be fetched: try again). DMARC: pass, fail,\n"
    "    none (no record), temperror.\n"
    "\n"
    "OPTIONS\n"
    "    --ip IP           the client's address; required\n"
    "    --helo NAME       its HELO name\n"
    "    --mail-from ADDR  the envelope sender (empty: the HELO identity)\n"
    "    --json            {\"spf\":{...},\"dkim\":[{...}],\"dmarc\":{...},\"action\":...,\n"
    "                      \"reason\":...,\"authentication_results\":...}\n"
    "    --resolver R      \"system\" or \"IP@PORT\" instead of the configured resolver\n"
    "    --timeout SECONDS how long to wait for each DNS answer (default 10)\n"
    "    -c FILE           the configuration file (for the resolver, hostname, policy)\n"
    "    -h, --help        print this manual\n"
    "\n"
    "EXIT STATUS\n"
    "    0 when the verdicts were reached (whatever they are), 1 on a usage error.\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya check message.eml --ip 192.0.2.10 --helo mail.example.com \\\n"
    "        --mail-from a@example.com\n";

struct wait {
	struct event_base *base;
	struct spf_eval *spf;
	bool done;
};

static void on_spf(struct spf_eval *e, void *arg)
{
	struct wait *w = arg;
	w->spf = e;
	w->done = true;
	event_base_loopbreak(w->base);
}

static void on_checks(struct msgcheck *mc, void *arg)
{
	(void)mc;
	struct wait *w = arg;
	w->done = true;
	event_base_loopbreak(w->base);
}

/* The message, with every bare LF turned into CRLF; NULL after an error. */
static int read_message(const char *path, struct buf *out)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (f == NULL)
		return cli_fail("cannot open %s: %s", path, strerror(errno));
	buf_init(out, CHECK_FILE_MAX + CHECK_FILE_MAX / 8);
	char b[65536];
	size_t n, total = 0;
	char prev = 0;
	while ((n = fread(b, 1, sizeof b, f)) > 0) {
		total += n;
		for (size_t i = 0; i < n; i++) {
			if (b[i] == '\n' && prev != '\r')
				buf_putc(out, '\r');
			buf_putc(out, b[i]);
			prev = b[i];
		}
		if (total > CHECK_FILE_MAX)
			break;
	}
	bool err = ferror(f);
	if (f != stdin)
		fclose(f);
	if (err)
		return cli_fail("cannot read %s", path);
	if (total > CHECK_FILE_MAX || buf_err(out))
		return cli_fail("%s is larger than %u MiB", path, CHECK_FILE_MAX >> 20);
	return 0;
}

static void print_text(struct buf *out, struct msgcheck *mc, const struct msgcheck_spf *sp)
{
	buf_printf(out, "spf: %s (%s) smtp.%s=%s\n", spf_result_name(sp->result), sp->reason,
	    sp->helo ? "helo" : "mailfrom", sp->value);
	if (msgcheck_ndkim(mc) == 0)
		buf_puts(out, "dkim: none (no signature)\n");
	for (size_t i = 0; i < msgcheck_ndkim(mc); i++) {
		const struct dkim_sig_result *r = msgcheck_dkim(mc, i);
		buf_printf(out, "dkim: %s (%s)", dkim_result_name(r->result), r->reason);
		if (r->d[0])
			buf_printf(out, " d=%s s=%s a=%s", r->d, r->s, r->a[0] ? r->a : "?");
		buf_putc(out, '\n');
	}
	const struct dmarc_verdict *v = msgcheck_dmarc(mc);
	if (v == NULL)
		buf_puts(out, "dmarc: none (the message has no From domain)\n");
	else {
		buf_printf(out, "dmarc: %s", dmarc_result_name(v->result));
		if (v->have_policy)
			buf_printf(out, " (p=%s at %s; spf %s, dkim %s)",
			    dmarc_policy_name(v->policy), v->record_domain,
			    dmarc_align_name(v->spf), dmarc_align_name(v->dkim));
		buf_printf(out, " header.from=%s\n", msgcheck_from_domain(mc));
	}
	buf_printf(
	    out, "action: %s (%s)\n", msgcheck_action_name(msgcheck_action(mc)), msgcheck_why(mc));
}

static void print_json(
    struct buf *out, struct msgcheck *mc, const struct msgcheck_spf *sp, const struct buf *ar)
{
	struct json j;
	json_init(&j, out);
	json_object_begin(&j);
	json_key(&j, "spf");
	json_object_begin(&j);
	json_key(&j, "result");
	json_string(&j, spf_result_name(sp->result));
	json_key(&j, "reason");
	json_string(&j, sp->reason);
	json_key(&j, "identity");
	json_string(&j, sp->helo ? "helo" : "mailfrom");
	json_key(&j, "domain");
	json_string(&j, sp->domain);
	json_object_end(&j);
	json_key(&j, "dkim");
	json_array_begin(&j);
	for (size_t i = 0; i < msgcheck_ndkim(mc); i++) {
		const struct dkim_sig_result *r = msgcheck_dkim(mc, i);
		json_object_begin(&j);
		json_key(&j, "result");
		json_string(&j, dkim_result_name(r->result));
		json_key(&j, "reason");
		json_string(&j, r->reason);
		json_key(&j, "domain");
		json_string(&j, r->d);
		json_key(&j, "selector");
		json_string(&j, r->s);
		json_key(&j, "algorithm");
		json_string(&j, r->a);
		json_key(&j, "identity");
		json_string(&j, r->i);
		json_object_end(&j);
	}
	json_array_end(&j);
	json_key(&j, "dmarc");
	const struct dmarc_verdict *v = msgcheck_dmarc(mc);
	if (v == NULL) {
		json_null(&j);
	} else {
		json_object_begin(&j);
		json_key(&j, "result");
		json_string(&j, dmarc_result_name(v->result));
		json_key(&j, "from_domain");
		json_string(&j, msgcheck_from_domain(mc));
		json_key(&j, "policy");
		json_string(&j, v->have_policy ? dmarc_policy_name(v->policy) : NULL);
		json_key(&j, "record_domain");
		json_string(&j, v->have_policy ? v->record_domain : NULL);
		json_key(&j, "spf_alignment");
		json_string(&j, dmarc_align_name(v->spf));
		json_key(&j, "dkim_alignment");
		json_string(&j, dmarc_align_name(v->dkim));
		json_object_end(&j);
	}
	json_key(&j, "action");
	json_string(&j, msgcheck_action_name(msgcheck_action(mc)));
	json_key(&j, "reason");
	json_string(&j, msgcheck_why(mc));
	json_key(&j, "authentication_results");
	json_string(&j, buf_cstr(ar));
	json_object_end(&j);
	buf_putc(out, '\n');
}

int cmd_check(struct cli *cli, int argc, char **argv)
{
	struct cli_sender o;
	bool done;
	int rc = cli_sender_parse("check", cli_help_check, argc, argv, &o, &done);
	if (done)
		return rc;
	if (o.first >= argc)
		return cli_fail("'dakiya check' needs a message file, e.g. 'dakiya check "
		                "message.eml --ip 192.0.2.1 --helo mail.example.com --mail-from "
		                "a@example.com'");
	if (argc - o.first > 1)
		return cli_fail(
		    "'dakiya check' takes one message file; unexpected '%s'", argv[o.first + 1]);
	const char *path = argv[o.first];
	if (cli_sender_check("check", &o, CHECK_TIMEOUT) != 0)
		return 1;
	const char *receiver = "localhost", *ip = o.ip, *helo = o.helo, *from = o.from;
	struct msgcheck_policy pol = {MSGCHECK_REFUSE, MSGCHECK_JUNK, MSGCHECK_JUNK};
	if (cli_have_config(cli)) {
		if (cli_load_config(cli) != 0)
			return 1;
		receiver = cli->cfg.hostname;
		pol = (struct msgcheck_policy){msgcheck_action_named(cli->cfg.checks.dmarc_reject),
		    msgcheck_action_named(cli->cfg.checks.dmarc_quarantine),
		    msgcheck_action_named(cli->cfg.checks.spf_fail)};
	}
	struct buf msg = BUF_INIT;
	if (read_message(path, &msg) != 0) {
		buf_free(&msg);
		return 1;
	}
	struct dmarc_psl *psl = dmarc_psl_load(NULL);
	if (psl == NULL) {
		buf_free(&msg);
		return cli_fail(
		    "cannot load the Public Suffix List; install the publicsuffix package");
	}
	struct event_base *base;
	struct dns_resolver *r;
	if (cli_sender_resolver(cli, &o, &base, &r) != 0) {
		buf_free(&msg);
		dmarc_psl_free(psl);
		return 1;
	}

	struct spf_params p = {.ip = ip, .helo = helo, .sender = from, .receiver = receiver};
	struct wait w = {base, NULL, false};
	struct spf_req *q = spf_check(base, r, &p, on_spf, &w);
	if (q != NULL)
		event_base_dispatch(base);
	const char *data = msg.data ? msg.data : "";
	size_t off = dkim_body_offset(data, msg.len);
	struct msgcheck *mc = msgcheck_new(r, psl, true, true, (int64_t)time(NULL));
	rc = 0;
	if (w.spf == NULL || mc == NULL) {
		rc = cli_fail("out of memory");
	} else {
		msgcheck_header(mc, data, off);
		msgcheck_body(mc, data + off, msg.len - off);
		w.done = false;
		if (!msgcheck_end(mc, on_checks, &w))
			while (!w.done)
				event_base_dispatch(base);
		struct msgcheck_spf sp;
		msgcheck_spf_of(&sp, w.spf, from, helo);
		msgcheck_finish(mc, &sp, &pol);
		struct buf ar = BUF_INIT, out = BUF_INIT;
		msgcheck_auth_results(mc, receiver, &sp, &ar);
		if (cli->json) {
			print_json(&out, mc, &sp, &ar);
		} else {
			print_text(&out, mc, &sp);
			buf_printf(&out, "\n%s", buf_cstr(&ar));
		}
		rc = cli_print_buf(&out);
		buf_free(&ar);
		buf_free(&out);
	}
	msgcheck_free(mc);
	spf_eval_free(w.spf);
	dns_resolver_free(r);
	event_base_free(base);
	dmarc_psl_free(psl);
	buf_free(&msg);
	return rc;
}
