/*
 * cmd_admin.c - dakiya domain | user | alias: the names the store serves.
 *
 * Each command checks what it can before it changes anything (the domain
 * exists, the user does not yet, no alias pair is a duplicate), so that a
 * failure leaves the store as it was and the message can say what to do.
 * Deletions ask nothing (they run from scripts) but say what they removed.
 * Output is built in a buf and written once; --json prints the same data as
 * JSON (see json.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "core/util.h"
#include "store/store.h"

const char cli_help_domain[] =
    "NAME\n"
    "    dakiya domain - the domains this server receives mail for\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] domain add DOMAIN\n"
    "    dakiya [-c FILE] domain list [--json]\n"
    "    dakiya [-c FILE] domain del DOMAIN\n"
    "\n"
    "DESCRIPTION\n"
    "    Mail to a domain in this list is accepted on port 25 for the users and aliases\n"
    "    of that domain; mail to other domains is relayed only for authenticated users.\n"
    "    Domains are stored in lower case; internationalized names must be given in\n"
    "    their ASCII form (xn--...). Changes take effect at once, also while the server\n"
    "    runs.\n"
    "\n"
    "    add     Add DOMAIN. Fails if it already exists.\n"
    "    list    Print the domains, one per line; with --json a list of strings.\n"
    "    del     Remove DOMAIN together with its users, their mail, and its aliases.\n"
    "            It does not ask for confirmation.\n"
    "\n"
    "OPTIONS\n"
    "    -c FILE, --config FILE   the configuration file (see 'dakiya --help')\n"
    "    --json                   print JSON: [\"a.example\",\"b.example\"]\n"
    "    -h, --help               print this manual\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya domain add example.com\n"
    "    dakiya domain list --json\n"
    "    dakiya -c /srv/mx/dakiya.conf domain del old.example\n";

const char cli_help_user[] =
    "NAME\n"
    "    dakiya user - mailbox owners and their passwords\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] user add ADDRESS [--password-stdin] [--json]\n"
    "    dakiya [-c FILE] user passwd ADDRESS [--password-stdin]\n"
    "    dakiya [-c FILE] user list [DOMAIN] [--json]\n"
    "    dakiya [-c FILE] user del ADDRESS\n"
    "\n"
    "DESCRIPTION\n"
    "    A user is an address local@domain with a password and the folders INBOX, Sent,\n"
    "    Drafts, Junk and Trash. The domain must exist ('dakiya domain add'). Users log\n"
    "    in to IMAP, POP3 and submission with the full address.\n"
    "\n"
    "    add      Create the user. Fails if the address is already a user.\n"
    "    passwd   Set a new password for an existing user.\n"
    "    list     Print all users, or those of DOMAIN, one address per line; with --json\n"
    "             a list of strings.\n"
    "    del      Remove the user and all of its mail. It does not ask for confirmation.\n"
    "\n"
    "    Passwords are never taken from the command line. add and passwd get one:\n"
    "      - with --password-stdin, from the first line of standard input;\n"
    "      - else, if standard input is a terminal, by asking twice without echo;\n"
    "      - else a random one of 20 characters is made and printed once.\n"
    "    A chosen password needs at least 8 characters. Passwords are stored as\n"
    "    yescrypt hashes.\n"
    "\n"
    "OPTIONS\n"
    "    --password-stdin   read the password from the first line of standard input\n"
    "    --json             add: print {\"address\":...,\"password\":...} (password only if\n"
    "                       generated); list: print [\"a@example.com\",...]\n"
    "    -c FILE            the configuration file (see 'dakiya --help')\n"
    "    -h, --help         print this manual\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya user add alice@example.com                 # asks for the password\n"
    "    dakiya user add bob@example.com </dev/null        # generates and prints one\n"
    "    printf '%s\\n' \"$PW\" | dakiya user passwd alice@example.com --password-stdin\n"
    "    dakiya user list example.com --json\n"
    "    dakiya user del bob@example.com\n";

const char cli_help_alias[] =
    "NAME\n"
    "    dakiya alias - addresses that deliver to other addresses\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] alias add ADDRESS TARGET...\n"
    "    dakiya [-c FILE] alias list [DOMAIN] [--json]\n"
    "    dakiya [-c FILE] alias del ADDRESS [TARGET...]\n"
    "\n"
    "DESCRIPTION\n"
    "    Mail to ADDRESS is delivered to every TARGET instead: local users, other\n"
    "    aliases (expanded up to 8 levels, loops cut), or remote addresses (relayed).\n"
    "    ADDRESS \"@DOMAIN\" is the catch-all of DOMAIN: it receives mail for every\n"
    "    address of DOMAIN that is neither a user nor an alias. ADDRESS must be in one of\n"
    "    our domains and must not be a user (a user always wins over an alias).\n"
    "\n"
    "    add     Add ADDRESS -> TARGET for each TARGET. Fails, adding nothing, if one of\n"
    "            the pairs exists already.\n"
    "    list    Print the aliases (of DOMAIN), one \"ADDRESS -> TARGET\" per line; with\n"
    "            --json a list of {\"address\":...,\"target\":...}.\n"
    "    del     Remove the given targets of ADDRESS, or all of them when none is given.\n"
    "\n"
    "OPTIONS\n"
    "    --json       list: print [{\"address\":\"a@example.com\",\"target\":\"b@example.org\"}]\n"
    "    -c FILE      the configuration file (see 'dakiya --help')\n"
    "    -h, --help   print this manual\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya alias add postmaster@example.com alice@example.com\n"
    "    dakiya alias add team@example.com alice@example.com bob@example.org\n"
    "    dakiya alias add @example.com alice@example.com        # catch-all\n"
    "    dakiya alias del team@example.com bob@example.org\n"
    "    dakiya alias list example.com --json\n";

/* Options common to the admin commands. */
struct admin_args {
	bool password_stdin;
	const char *verb; /* NULL if none was given */
	int nargs;        /* operands after the verb */
	char **args;
};

/* Parse argv (argv[0] = cmd); 0 = go on, else the exit status (help: 0 with
 * *done set). */
static int parse_args(const char *cmd, const char *help, bool pw_option, int argc, char **argv,
    struct admin_args *a, bool *done)
{
	static const struct option with_pw[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"password-stdin", no_argument, NULL, 'P'},
	    {NULL, 0, NULL, 0},
	};
	const struct option *longopts = with_pw;
	static const struct option plain[] = {
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	if (!pw_option)
		longopts = plain;

	memset(a, 0, sizeof *a);
	*done = false;
	optind = 0; /* glibc: full re-initialisation */
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			*done = true;
			return cli_help(help);
		case 'P':
			a->password_stdin = true;
			break;
		default:
			*done = true;
			return cli_option_error(cmd, argv, c);
		}
	}
	if (optind < argc)
		a->verb = argv[optind++];
	a->nargs = argc - optind;
	a->args = argv + optind;
	return 0;
}

/* A copy of an address with its domain in lower case (the local part is kept
 * as typed: it compares case-insensitively in the store anyway). */
static char *normalize_address(const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		return NULL;
	char *at = strrchr(d, '@');
	if (at != NULL)
		util_lower(at + 1);
	return d;
}

/* Our domain? 0 if yes, else 1 after saying how to fix it. */
static int need_domain(struct cli *cli, struct store *st, const char *domain, const char *why)
{
	int rc = store_domain_exists(st, domain);
	if (rc == STORE_OK)
		return 0;
	if (rc == STORE_NOTFOUND)
		return cli_fail(
		    "%s: domain %s is not one of ours; add it first with 'dakiya domain "
		    "add %s'",
		    why, domain, domain);
	return cli_store_fail(cli, rc, why);
}

/* STORE_OK if address is a user, STORE_NOTFOUND if not, or an error code. */
static int user_exists(struct store *st, const char *address)
{
	struct buf h = BUF_INIT;
	int rc = store_user_get_hash(st, address, &h);
	cli_buf_wipe(&h);
	return rc == STORE_NOTLOCAL ? STORE_NOTFOUND : rc;
}

/* ---- list output ---- */

struct list_out {
	struct cli *cli;
	struct buf out;
	struct json j;
	size_t n;
};

static void list_begin(struct list_out *l, struct cli *cli)
{
	memset(l, 0, sizeof *l);
	l->cli = cli;
	buf_init(&l->out, 0);
	json_init(&l->j, &l->out);
	if (cli->json)
		json_array_begin(&l->j);
}

static int list_end(struct list_out *l)
{
	if (l->cli->json) {
		json_array_end(&l->j);
		buf_putc(&l->out, '\n');
	}
	int rc = cli_print_buf(&l->out);
	buf_free(&l->out);
	return rc;
}

static void list_string_cb(void *arg, const char *s)
{
	struct list_out *l = arg;
	l->n++;
	if (l->cli->json)
		json_string(&l->j, s);
	else
		buf_printf(&l->out, "%s\n", s);
}

static void list_alias_cb(void *arg, const char *address, const char *target)
{
	struct list_out *l = arg;
	l->n++;
	if (l->cli->json) {
		json_object_begin(&l->j);
		json_key(&l->j, "address");
		json_string(&l->j, address);
		json_key(&l->j, "target");
		json_string(&l->j, target);
		json_object_end(&l->j);
	} else {
		buf_printf(&l->out, "%s -> %s\n", address, target);
	}
}

/* ---- domain ---- */

int cmd_domain(struct cli *cli, int argc, char **argv)
{
	struct admin_args a;
	bool done;
	int rc = parse_args("domain", cli_help_domain, false, argc, argv, &a, &done);
	if (done)
		return rc;
	if (a.verb == NULL)
		return cli_fail(
		    "'dakiya domain' needs a verb: add, list or del; see 'dakiya domain "
		    "--help'");

	bool is_list = strcmp(a.verb, "list") == 0;
	bool is_add = strcmp(a.verb, "add") == 0;
	bool is_del = strcmp(a.verb, "del") == 0;
	if (!is_list && !is_add && !is_del)
		return cli_fail(
		    "unknown verb 'domain %s'; use add, list or del (see 'dakiya domain "
		    "--help')",
		    a.verb);
	if (is_list && a.nargs != 0)
		return cli_fail(
		    "'dakiya domain list' takes no arguments; see 'dakiya domain --help'");
	if (!is_list && a.nargs != 1)
		return cli_fail(
		    "'dakiya domain %s' needs exactly one DOMAIN; e.g. 'dakiya domain %s "
		    "example.com'",
		    a.verb, a.verb);

	char *d = NULL;
	if (!is_list) {
		if (!cli_valid_domain(a.args[0]))
			return cli_fail("'%s' is not a valid domain name; use letters, digits, "
			                "hyphens and dots (xn-- form for international names)",
			    a.args[0]);
		d = strdup(a.args[0]);
		if (d == NULL)
			return cli_fail("out of memory");
		util_lower(d);
	}

	struct store *st = cli_open_store(cli);
	if (st == NULL) {
		free(d);
		return 1;
	}

	if (is_list) {
		struct list_out l;
		list_begin(&l, cli);
		rc = store_domain_list(st, list_string_cb, &l);
		if (rc != STORE_OK) {
			buf_free(&l.out);
			return cli_store_fail(cli, rc, "cannot list the domains");
		}
		return list_end(&l);
	}

	struct buf what = BUF_INIT;
	buf_printf(&what, "cannot %s domain %s", is_add ? "add" : "remove", d);
	rc = is_add ? store_domain_add(st, d) : store_domain_del(st, d);
	if (rc == STORE_OK) {
		if (is_add)
			printf("added domain %s\n", d);
		else
			printf(
			    "removed domain %s with its users, their mail, and its aliases\n", d);
		rc = 0;
	} else if (rc == STORE_EXISTS) {
		rc = cli_fail("domain %s already exists; see 'dakiya domain list'", d);
	} else if (rc == STORE_NOTFOUND) {
		rc = cli_fail("there is no domain %s; see 'dakiya domain list'", d);
	} else {
		rc = cli_store_fail(cli, rc, buf_cstr(&what));
	}
	buf_free(&what);
	free(d);
	return rc;
}

/* ---- user ---- */

/* user add / passwd: get a password, hash it, store it. */
static int user_set_password(
    struct cli *cli, struct store *st, const char *address, bool add, bool from_stdin)
{
	struct buf pw = BUF_INIT, hash = BUF_INIT;
	bool generated = false;
	int rc = cli_password_obtain(from_stdin, &pw, &generated);
	if (rc != 0)
		goto out;
	if (cli_password_hash(buf_cstr(&pw), &hash) != 0) {
		rc = 1;
		goto out;
	}
	int src = add ? store_user_add(st, address, buf_cstr(&hash))
	              : store_user_passwd(st, address, buf_cstr(&hash));
	if (src == STORE_EXISTS) {
		rc =
		    cli_fail("user %s already exists; change its password with 'dakiya user passwd "
		             "%s'",
		        address, address);
		goto out;
	}
	if (src == STORE_NOTFOUND) {
		rc = cli_fail(
		    "there is no user %s; add it with 'dakiya user add %s'", address, address);
		goto out;
	}
	if (src != STORE_OK) {
		struct buf what = BUF_INIT;
		buf_printf(
		    &what, "cannot %s %s", add ? "add user" : "change the password of", address);
		rc = cli_store_fail(cli, src, buf_cstr(&what));
		buf_free(&what);
		goto out;
	}

	struct buf out = BUF_INIT;
	if (cli->json) {
		struct json j;
		json_init(&j, &out);
		json_object_begin(&j);
		json_key(&j, "address");
		json_string(&j, address);
		if (generated) {
			json_key(&j, "password");
			json_string(&j, buf_cstr(&pw));
		}
		json_object_end(&j);
		buf_putc(&out, '\n');
	} else {
		buf_printf(
		    &out, "%s %s\n", add ? "added user" : "changed the password of", address);
		if (generated)
			buf_printf(&out,
			    "password: %s\n(generated because standard input is not a terminal; "
			    "it is shown only this once)\n",
			    buf_cstr(&pw));
	}
	rc = cli_print_buf(&out);
	cli_buf_wipe(&out);
out:
	cli_buf_wipe(&pw);
	cli_buf_wipe(&hash);
	return rc;
}

int cmd_user(struct cli *cli, int argc, char **argv)
{
	struct admin_args a;
	bool done;
	int rc = parse_args("user", cli_help_user, true, argc, argv, &a, &done);
	if (done)
		return rc;
	if (a.verb == NULL)
		return cli_fail("'dakiya user' needs a verb: add, list, del or passwd; see 'dakiya "
		                "user --help'");

	bool is_list = strcmp(a.verb, "list") == 0;
	bool is_add = strcmp(a.verb, "add") == 0;
	bool is_del = strcmp(a.verb, "del") == 0;
	bool is_passwd = strcmp(a.verb, "passwd") == 0;
	if (!is_list && !is_add && !is_del && !is_passwd)
		return cli_fail("unknown verb 'user %s'; use add, list, del or passwd (see 'dakiya "
		                "user --help')",
		    a.verb);
	if (a.password_stdin && !is_add && !is_passwd)
		return cli_fail("--password-stdin only goes with 'user add' and 'user passwd'");

	if (is_list) {
		if (a.nargs > 1)
			return cli_fail("'dakiya user list' takes at most one DOMAIN; see 'dakiya "
			                "user --help'");
		char *d = NULL;
		if (a.nargs == 1) {
			if (!cli_valid_domain(a.args[0]))
				return cli_fail("'%s' is not a valid domain name; give a domain "
				                "such as example.com",
				    a.args[0]);
			d = strdup(a.args[0]);
			if (d == NULL)
				return cli_fail("out of memory");
			util_lower(d);
		}
		struct store *st = cli_open_store(cli);
		if (st == NULL || (d != NULL && need_domain(cli, st, d, "cannot list users"))) {
			free(d);
			return 1;
		}
		struct list_out l;
		list_begin(&l, cli);
		rc = store_user_list(st, d, list_string_cb, &l);
		free(d);
		if (rc != STORE_OK) {
			buf_free(&l.out);
			return cli_store_fail(cli, rc, "cannot list the users");
		}
		return list_end(&l);
	}

	if (a.nargs != 1)
		return cli_fail("'dakiya user %s' needs exactly one ADDRESS (passwords are never "
		                "given as arguments); e.g. 'dakiya user %s alice@example.com'",
		    a.verb, a.verb);
	if (!cli_valid_address(a.args[0]))
		return cli_fail(
		    "'%s' is not a valid address; give one like alice@example.com", a.args[0]);
	char *addr = normalize_address(a.args[0]);
	if (addr == NULL)
		return cli_fail("out of memory");
	const char *domain = cli_address_domain(addr);

	struct store *st = cli_open_store(cli);
	if (st == NULL) {
		free(addr);
		return 1;
	}

	if (is_del) {
		rc = store_user_del(st, addr);
		if (rc == STORE_OK) {
			printf("removed user %s with all of its mail\n", addr);
			rc = 0;
		} else if (rc == STORE_NOTFOUND || rc == STORE_NOTLOCAL) {
			rc = cli_fail(
			    "there is no user %s; see 'dakiya user list %s'", addr, domain);
		} else {
			rc = cli_store_fail(cli, rc, "cannot remove the user");
		}
		free(addr);
		return rc;
	}

	/* add / passwd: check everything before asking for a password */
	if (need_domain(cli, st, domain,
	        is_add ? "cannot add the user"
	               : "cannot change the "
	                 "password")) {
		free(addr);
		return 1;
	}
	rc = user_exists(st, addr);
	if (is_add && rc == STORE_OK) {
		rc =
		    cli_fail("user %s already exists; change its password with 'dakiya user passwd "
		             "%s'",
		        addr, addr);
	} else if (is_passwd && rc == STORE_NOTFOUND) {
		rc = cli_fail("there is no user %s; add it with 'dakiya user add %s' (see 'dakiya "
		              "user list %s')",
		    addr, addr, domain);
	} else if (rc != STORE_OK && rc != STORE_NOTFOUND) {
		rc = cli_store_fail(cli, rc, "cannot look the user up");
	} else {
		rc = user_set_password(cli, st, addr, is_add, a.password_stdin);
	}
	free(addr);
	return rc;
}

/* ---- alias ---- */

/* The alias pairs of one domain, to check for duplicates and to report. */
struct pairs {
	const char *address; /* only this address (case-insensitive), or NULL */
	size_t n, cap;
	char **addr, **target;
	bool oom;
};

static void pairs_cb(void *arg, const char *address, const char *target)
{
	struct pairs *p = arg;
	if (p->oom || (p->address && !util_streq_ci(p->address, address)))
		return;
	if (p->n == p->cap) {
		size_t nc = p->cap ? p->cap * 2 : 16;
		char **a = realloc(p->addr, nc * sizeof *a);
		if (a != NULL)
			p->addr = a;
		char **t = realloc(p->target, nc * sizeof *t);
		if (t != NULL)
			p->target = t;
		if (a == NULL || t == NULL) {
			p->oom = true;
			return;
		}
		p->cap = nc;
	}
	p->addr[p->n] = strdup(address);
	p->target[p->n] = strdup(target);
	if (p->addr[p->n] == NULL || p->target[p->n] == NULL) {
		free(p->addr[p->n]);
		free(p->target[p->n]);
		p->oom = true;
		return;
	}
	p->n++;
}

static void pairs_free(struct pairs *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->addr[i]);
		free(p->target[i]);
	}
	free(p->addr);
	free(p->target);
}

static bool pairs_has_target(const struct pairs *p, const char *target)
{
	for (size_t i = 0; i < p->n; i++)
		if (util_streq_ci(p->target[i], target))
			return true;
	return false;
}

/* "@domain" or a full address, with the domain lower-cased; NULL if invalid. */
static char *alias_address(const char *s)
{
	if (s[0] == '@') {
		if (!cli_valid_domain(s + 1))
			return NULL;
	} else if (!cli_valid_address(s)) {
		return NULL;
	}
	return normalize_address(s);
}

static int alias_add(struct cli *cli, struct store *st, const char *addr, int nt, char **targets)
{
	const char *domain = cli_address_domain(addr);
	if (need_domain(cli, st, domain, "cannot add the alias"))
		return 1;
	if (addr[0] != '@') {
		int rc = user_exists(st, addr);
		if (rc == STORE_OK)
			return cli_fail("%s is a user, and a user always receives its own mail; "
			                "remove the user first ('dakiya user del %s') or choose "
			                "another address",
			    addr, addr);
	}
	for (int i = 0; i < nt; i++) {
		if (!cli_valid_address(targets[i]))
			return cli_fail("target '%s' is not a valid address; give full addresses "
			                "like bob@example.org",
			    targets[i]);
		if (util_streq_ci(targets[i], addr))
			return cli_fail(
			    "%s cannot be an alias of itself; give other targets", addr);
		for (int k = 0; k < i; k++)
			if (util_streq_ci(targets[i], targets[k]))
				return cli_fail(
				    "target %s is given twice; give each once", targets[i]);
	}

	struct pairs p = {.address = addr};
	int rc = store_alias_list(st, domain, pairs_cb, &p);
	if (rc != STORE_OK) {
		pairs_free(&p);
		return cli_store_fail(cli, rc, "cannot read the aliases");
	}
	if (p.oom) {
		pairs_free(&p);
		return cli_fail("out of memory");
	}
	for (int i = 0; i < nt; i++) {
		if (pairs_has_target(&p, targets[i])) {
			pairs_free(&p);
			return cli_fail("alias %s -> %s already exists; nothing was added (see "
			                "'dakiya alias list %s')",
			    addr, targets[i], domain);
		}
	}
	pairs_free(&p);

	struct buf out = BUF_INIT;
	int status = 0;
	for (int i = 0; i < nt; i++) {
		rc = store_alias_add(st, addr, targets[i]);
		if (rc == STORE_OK) {
			buf_printf(&out, "added alias %s -> %s\n", addr, targets[i]);
			continue;
		}
		cli_print_buf(&out);
		buf_reset(&out);
		struct buf what = BUF_INIT;
		buf_printf(&what, "cannot add alias %s -> %s", addr, targets[i]);
		status = cli_store_fail(cli, rc, buf_cstr(&what));
		buf_free(&what);
		break;
	}
	if (status == 0)
		status = cli_print_buf(&out);
	else
		cli_print_buf(&out);
	buf_free(&out);
	return status;
}

static int alias_del(struct cli *cli, struct store *st, const char *addr, int nt, char **targets)
{
	const char *domain = cli_address_domain(addr);
	struct pairs p = {.address = addr};
	int rc = store_alias_list(st, domain, pairs_cb, &p);
	if (rc == STORE_NOTLOCAL || rc == STORE_NOTFOUND) {
		pairs_free(&p);
		return cli_fail("there is no alias %s (%s is not one of our domains); see 'dakiya "
		                "domain list'",
		    addr, domain);
	}
	if (rc != STORE_OK || p.oom) {
		pairs_free(&p);
		return rc != STORE_OK ? cli_store_fail(cli, rc, "cannot read the aliases")
		                      : cli_fail("out of memory");
	}
	if (p.n == 0) {
		pairs_free(&p);
		return cli_fail("there is no alias %s; see 'dakiya alias list %s'", addr, domain);
	}
	for (int i = 0; i < nt; i++) {
		if (!pairs_has_target(&p, targets[i])) {
			pairs_free(&p);
			return cli_fail("alias %s has no target %s; nothing was removed (see "
			                "'dakiya alias list %s')",
			    addr, targets[i], domain);
		}
	}

	struct buf out = BUF_INIT;
	int status = 0;
	if (nt == 0) {
		rc = store_alias_del(st, addr, NULL);
		if (rc == STORE_OK)
			for (size_t i = 0; i < p.n; i++)
				buf_printf(
				    &out, "removed alias %s -> %s\n", p.addr[i], p.target[i]);
		else
			status = cli_store_fail(cli, rc, "cannot remove the alias");
	} else {
		for (int i = 0; i < nt && status == 0; i++) {
			rc = store_alias_del(st, addr, targets[i]);
			if (rc == STORE_OK) {
				buf_printf(&out, "removed alias %s -> %s\n", addr, targets[i]);
			} else {
				cli_print_buf(&out);
				buf_reset(&out);
				status = cli_store_fail(cli, rc, "cannot remove the alias");
			}
		}
	}
	pairs_free(&p);
	int prc = cli_print_buf(&out);
	buf_free(&out);
	return status ? status : prc;
}

int cmd_alias(struct cli *cli, int argc, char **argv)
{
	struct admin_args a;
	bool done;
	int rc = parse_args("alias", cli_help_alias, false, argc, argv, &a, &done);
	if (done)
		return rc;
	if (a.verb == NULL)
		return cli_fail("'dakiya alias' needs a verb: add, list or del; see 'dakiya alias "
		                "--help'");

	if (strcmp(a.verb, "list") == 0) {
		if (a.nargs > 1)
			return cli_fail("'dakiya alias list' takes at most one DOMAIN; see 'dakiya "
			                "alias --help'");
		char *d = NULL;
		if (a.nargs == 1) {
			const char *arg = a.args[0][0] == '@' ? a.args[0] + 1 : a.args[0];
			if (!cli_valid_domain(arg))
				return cli_fail("'%s' is not a valid domain name; give a domain "
				                "such as example.com",
				    a.args[0]);
			d = strdup(arg);
			if (d == NULL)
				return cli_fail("out of memory");
			util_lower(d);
		}
		struct store *st = cli_open_store(cli);
		if (st == NULL || (d != NULL && need_domain(cli, st, d, "cannot list aliases"))) {
			free(d);
			return 1;
		}
		struct list_out l;
		list_begin(&l, cli);
		rc = store_alias_list(st, d, list_alias_cb, &l);
		free(d);
		if (rc != STORE_OK) {
			buf_free(&l.out);
			return cli_store_fail(cli, rc, "cannot list the aliases");
		}
		return list_end(&l);
	}

	bool is_add = strcmp(a.verb, "add") == 0;
	if (!is_add && strcmp(a.verb, "del") != 0)
		return cli_fail("unknown verb 'alias %s'; use add, list or del (see 'dakiya alias "
		                "--help')",
		    a.verb);
	if (a.nargs < 1 || (is_add && a.nargs < 2))
		return cli_fail("'dakiya alias %s' needs an ADDRESS%s; e.g. 'dakiya alias %s "
		                "team@example.com alice@example.com'",
		    a.verb, is_add ? " and at least one TARGET" : "", a.verb);
	char *addr = alias_address(a.args[0]);
	if (addr == NULL)
		return cli_fail(
		    "'%s' is not a valid alias address; give one like team@example.com, "
		    "or @example.com for the catch-all",
		    a.args[0]);
	struct store *st = cli_open_store(cli);
	if (st == NULL) {
		free(addr);
		return 1;
	}
	if (is_add)
		rc = alias_add(cli, st, addr, a.nargs - 1, a.args + 1);
	else
		rc = alias_del(cli, st, addr, a.nargs - 1, a.args + 1);
	free(addr);
	return rc;
}
