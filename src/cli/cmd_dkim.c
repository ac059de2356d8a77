/*
 * cmd_dkim.c - dakiya dkim keygen|list|del D [--selector S] and dakiya dns
 * records D: a domain's DKIM signing keys and the DNS records to publish.
 *
 * Keys: the private key is a PEM file data_dir/dkim/<domain>/<selector>.pem,
 * mode 0600 in 0700 directories, owned by the owner of data_dir (the
 * server's user) when run as root; the public record is in the store. The
 * newest key of each algorithm signs; an older one stays listed and
 * published, so that mail it signed still verifies, until 'dkim del'.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/dkim.h"
#include "cli/cli.h"
#include "cli/json.h"
#include "core/util.h"
#include "store/store.h"

#define RECORD_TTL 3600

const char cli_help_dkim[] =
    "NAME\n"
    "    dakiya dkim - the DKIM signing keys of a domain\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] dkim keygen DOMAIN [--selector S] [--algorithm rsa|ed25519|both]\n"
    "    dakiya [-c FILE] dkim list DOMAIN [--json]\n"
    "    dakiya [-c FILE] dkim del DOMAIN --selector S\n"
    "\n"
    "DESCRIPTION\n"
    "    Mail that our users send is signed with DKIM (RFC 6376) by the domain of its\n"
    "    From address: one RSA-2048 signature (rsa-sha256) and one Ed25519 signature\n"
    "    (ed25519-sha256, RFC 8463), relaxed/relaxed, From signed once more than it\n"
    "    occurs. Receivers check them against the public keys published in DNS at\n"
    "    SELECTOR._domainkey.DOMAIN.\n"
    "\n"
    "    keygen  makes new keys. By default both: selectors SELr (RSA) and SELe (Ed25519),\n"
    "            SEL being --selector or dkYYYYMMDD. With --algorithm rsa or ed25519,\n"
    "            one key at exactly --selector. The private key goes to\n"
    "            DATA_DIR/dkim/DOMAIN/SELECTOR.pem (mode 0600, readable by the server\n"
    "            only); the record to publish is printed. The new keys sign from the next\n"
    "            message on: publish the record first (see 'dakiya dns records').\n"
    "    list    the keys, oldest first, with the record of each; \"signing\" marks the\n"
    "            newest of each algorithm, the ones in use.\n"
    "    del     forget a key and remove its file (retire it once mail signed with it\n"
    "            is delivered: a few days after the next keygen).\n"
    "\n"
    "    Rotating: 'dkim keygen D --selector NEW', publish NEW's records, wait for\n"
    "    the DNS TTL; the old selectors still verify mail signed before; later\n"
    "    'dkim del D --selector OLD' and remove the old records.\n"
    "\n"
    "OPTIONS\n"
    "    --selector S   the selector (letters, digits, hyphens; see above)\n"
    "    --algorithm A  rsa, ed25519 or both (the default)\n"
    "    --json         list: [{\"selector\",\"algorithm\",\"record\",\"created\",\"signing\"}]\n"
    "    -h, --help     print this manual\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya dkim keygen example.com\n"
    "    dakiya dkim keygen example.com --selector 2027a\n"
    "    dakiya dkim list example.com\n";

const char cli_help_dns[] =
    "NAME\n"
    "    dakiya dns - the DNS records a domain needs for mail\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya [-c FILE] dns records DOMAIN [--json]\n"
    "\n"
    "DESCRIPTION\n"
    "    Prints, as zone-file lines (NAME TTL IN TYPE VALUE) ready to paste, the\n"
    "    records to publish for DOMAIN:\n"
    "        MX     DOMAIN's mail goes to this server (the configured hostname)\n"
    "        TXT    SPF: only the MX hosts send mail for DOMAIN (\"v=spf1 mx -all\")\n"
    "        TXT    DKIM: the public key of every selector 'dakiya dkim list' shows\n"
    "        TXT    DMARC at _dmarc.DOMAIN: p=reject, aggregate reports to postmaster@DOMAIN\n"
    "    Long TXT values are split into strings of at most 255 bytes, as DNS requires.\n"
    "    The hostname needs an A/AAAA record of its own, and the server's address a PTR\n"
    "    record naming the hostname; both depend on the hosting and are not printed.\n"
    "\n"
    "OPTIONS\n"
    "    --json      [{\"name\",\"type\",\"value\"}] with whole TXT values\n"
    "    -h, --help  print this manual\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya dns records example.com >> example.com.zone\n";

/* ---- options */

struct dkim_args {
	const char *verb, *domain, *selector, *algorithm;
};

static int parse(
    const char *cmd, const char *help, int argc, char **argv, struct dkim_args *a, bool *done)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"selector", required_argument, NULL, 's'},
	    {"algorithm", required_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	memset(a, 0, sizeof *a);
	*done = false;
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			*done = true;
			return cli_help(help);
		case 's':
			a->selector = optarg;
			break;
		case 'a':
			a->algorithm = optarg;
			break;
		default:
			*done = true;
			return cli_option_error(cmd, argv, c);
		}
	}
	if (optind < argc)
		a->verb = argv[optind++];
	if (optind < argc)
		a->domain = argv[optind++];
	if (optind < argc) {
		*done = true;
		return cli_fail("'dakiya %s' takes one DOMAIN; unexpected '%s'", cmd, argv[optind]);
	}
	return 0;
}

/* The domain, lower case, after checking it is ours; NULL after an error. */
static char *our_domain(struct cli *cli, const char *cmd, const char *d, struct store **st)
{
	if (d == NULL) {
		cli_fail("'dakiya %s' needs a DOMAIN; e.g. 'dakiya %s example.com'", cmd, cmd);
		return NULL;
	}
	if (!cli_valid_domain(d)) {
		cli_fail("'%s' is not a valid domain name", d);
		return NULL;
	}
	*st = cli_open_store(cli);
	if (*st == NULL)
		return NULL;
	char *l = strdup(d);
	if (l == NULL) {
		cli_fail("out of memory");
		return NULL;
	}
	util_lower(l);
	int rc = store_domain_exists(*st, l);
	if (rc != STORE_OK) {
		if (rc == STORE_NOTFOUND)
			cli_fail("%s is not one of our domains; add it first with 'dakiya domain "
			         "add %s'",
			    l, l);
		else
			cli_store_fail(cli, rc, "cannot look up the domain");
		free(l);
		return NULL;
	}
	return l;
}

/* ---- key files */

/* A TXT value in zone-file form: quoted strings of at most 255 bytes. */
static void txt_strings(struct buf *b, const char *v)
{
	size_t n = strlen(v);
	for (size_t o = 0; o < n || o == 0; o += 255) {
		size_t take = n - o < 255 ? n - o : 255;
		buf_printf(b, "%s\"", o ? " " : "");
		for (size_t i = 0; i < take; i++) {
			if (v[o + i] == '"' || v[o + i] == '\\')
				buf_putc(b, '\\');
			buf_putc(b, v[o + i]);
		}
		buf_putc(b, '"');
		if (n == 0)
			break;
	}
}

/* mkdir mode 0700 (an existing directory is fine) owned like data_dir. */
static int private_dir(const char *path, const struct stat *owner)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return -1;
	if (geteuid() == 0 && chown(path, owner->st_uid, owner->st_gid) != 0)
		return -1;
	return 0;
}

/* Write pkey's PEM to path (new file, 0600, owned like data_dir, synced). */
static int write_key(EVP_PKEY *pkey, const char *path, const struct stat *owner)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		unlink(path);
		return -1;
	}
	bool ok = PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1 && fflush(f) == 0 &&
	          fsync(fd) == 0 &&
	          (geteuid() != 0 || fchown(fd, owner->st_uid, owner->st_gid) == 0);
	int e = errno;
	if (fclose(f) != 0)
		ok = false;
	if (!ok) {
		unlink(path);
		errno = e ? e : EIO;
		return -1;
	}
	return 0;
}

int cli_dkim_keygen(struct cli *cli, struct store *st, const char *domain, const char *base,
    const char *only, struct buf *out)
{
	char def[32];
	if (base == NULL) {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(def, sizeof def, "dk%Y%m%d", &tm);
		base = def;
	}
	struct stat owner;
	const char *dd = store_data_dir(st);
	if (stat(dd, &owner) != 0)
		return cli_fail("cannot read %s: %s", dd, strerror(errno));
	struct buf path = BUF_INIT, dir = BUF_INIT, rec = BUF_INIT;
	buf_printf(&dir, "%s/dkim", dd);
	if (private_dir(buf_cstr(&dir), &owner) != 0) {
		int rc = cli_fail("cannot create %s: %s", buf_cstr(&dir), strerror(errno));
		buf_free(&dir);
		return rc;
	}
	buf_printf(&dir, "/%s", domain);
	if (private_dir(buf_cstr(&dir), &owner) != 0) {
		int rc = cli_fail("cannot create %s: %s", buf_cstr(&dir), strerror(errno));
		buf_free(&dir);
		return rc;
	}
	int rc = 0;
	for (int k = 0; k < 2 && rc == 0; k++) {
		bool ed = k == 1;
		if (only != NULL && strcmp(only, ed ? "ed25519" : "rsa") != 0)
			continue;
		char sel[80];
		snprintf(sel, sizeof sel, "%s%s", base, only ? "" : ed ? "e" : "r");
		if (store_dkim_path(st, domain, sel, &path) != STORE_OK) {
			rc = cli_fail(
			    "'%s' is not a usable selector; use letters, digits and hyphens", sel);
			break;
		}
		if (access(buf_cstr(&path), F_OK) == 0) {
			rc = cli_fail(
			    "%s already has a key with selector %s; pick another --selector",
			    domain, sel);
			break;
		}
		EVP_PKEY *pk = dkim_keygen(ed);
		buf_reset(&rec);
		if (pk == NULL || !dkim_key_record(pk, &rec)) {
			EVP_PKEY_free(pk);
			rc = cli_fail(
			    "cannot make an %s key (OpenSSL failed)", ed ? "Ed25519" : "RSA");
			break;
		}
		if (write_key(pk, buf_cstr(&path), &owner) != 0) {
			EVP_PKEY_free(pk);
			rc = cli_fail("cannot write %s: %s", buf_cstr(&path), strerror(errno));
			break;
		}
		EVP_PKEY_free(pk);
		int src = store_dkim_add(st, domain, sel, ed ? "ed25519" : "rsa", buf_cstr(&rec));
		if (src != STORE_OK) {
			unlink(buf_cstr(&path));
			rc = src == STORE_EXISTS
			         ? cli_fail("%s already has a key with selector %s; pick another "
			                    "--selector",
			               domain, sel)
			         : cli_store_fail(cli, src, "cannot record the key");
			break;
		}
		if (out) {
			buf_printf(out, "%s._domainkey.%s. %d IN TXT ", sel, domain, RECORD_TTL);
			txt_strings(out, buf_cstr(&rec));
			buf_putc(out, '\n');
		}
	}
	buf_free(&path);
	buf_free(&dir);
	buf_free(&rec);
	return rc;
}

/* ---- dns records */

struct records {
	struct cli *cli;
	struct buf *out;
	struct json *j;
	const char *domain;
};

static void record(struct records *r, const char *name, const char *type, const char *value)
{
	if (r->cli->json) {
		json_object_begin(r->j);
		json_key(r->j, "name");
		json_string(r->j, name);
		json_key(r->j, "type");
		json_string(r->j, type);
		json_key(r->j, "value");
		json_string(r->j, value);
		json_object_end(r->j);
		return;
	}
	buf_printf(r->out, "%s. %d IN %s ", name, RECORD_TTL, type);
	if (strcmp(type, "TXT") == 0)
		txt_strings(r->out, value);
	else
		buf_puts(r->out, value);
	buf_putc(r->out, '\n');
}

static void dkim_record_cb(void *arg, const struct store_dkim_key *k)
{
	struct records *r = arg;
	char name[512];
	snprintf(name, sizeof name, "%s._domainkey.%s", k->selector, r->domain);
	record(r, name, "TXT", k->record);
}

int cli_dns_records(
    struct cli *cli, struct store *st, const char *domain, const char *hostname, struct buf *out)
{
	struct json j;
	json_init(&j, out);
	struct records r = {cli, out, &j, domain};
	if (cli->json)
		json_array_begin(&j);
	char v[600];
	snprintf(v, sizeof v, "10 %s.", hostname);
	record(&r, domain, "MX", v);
	record(&r, domain, "TXT", "v=spf1 mx -all");
	int rc = store_dkim_list(st, domain, dkim_record_cb, &r);
	if (rc != STORE_OK)
		return cli_store_fail(cli, rc, "cannot list the DKIM keys");
	char name[300];
	snprintf(name, sizeof name, "_dmarc.%s", domain);
	snprintf(v, sizeof v, "v=DMARC1; p=reject; rua=mailto:postmaster@%s", domain);
	record(&r, name, "TXT", v);
	if (cli->json) {
		json_array_end(&j);
		buf_putc(out, '\n');
	}
	return 0;
}

/* ---- commands */

struct key_list {
	struct cli *cli;
	struct buf out;
	struct json j;
	size_t n;
};

static void list_cb(void *arg, const struct store_dkim_key *k)
{
	struct key_list *l = arg;
	l->n++;
	if (l->cli->json) {
		json_object_begin(&l->j);
		json_key(&l->j, "selector");
		json_string(&l->j, k->selector);
		json_key(&l->j, "algorithm");
		json_string(&l->j, k->algorithm);
		json_key(&l->j, "record");
		json_string(&l->j, k->record);
		json_key(&l->j, "created");
		json_int(&l->j, (int64_t)k->created);
		json_key(&l->j, "signing");
		json_bool(&l->j, k->signing);
		json_object_end(&l->j);
		return;
	}
	char date[32];
	struct tm tm;
	gmtime_r(&k->created, &tm);
	strftime(date, sizeof date, "%Y-%m-%d", &tm);
	buf_printf(&l->out, "%-16s %-8s %s %-9s %s\n", k->selector, k->algorithm, date,
	    k->signing ? "signing" : "published", k->record);
}

int cmd_dkim(struct cli *cli, int argc, char **argv)
{
	struct dkim_args a;
	bool done;
	int rc = parse("dkim", cli_help_dkim, argc, argv, &a, &done);
	if (done)
		return rc;
	if (a.verb == NULL)
		return cli_fail("'dakiya dkim' needs a verb: keygen, list or del; see 'dakiya dkim "
		                "--help'");
	bool keygen = strcmp(a.verb, "keygen") == 0, list = strcmp(a.verb, "list") == 0,
	     del = strcmp(a.verb, "del") == 0;
	if (!keygen && !list && !del)
		return cli_fail("unknown verb 'dkim %s'; use keygen, list or del", a.verb);
	if (a.algorithm &&
	    (!keygen || (strcmp(a.algorithm, "rsa") != 0 && strcmp(a.algorithm, "ed25519") != 0 &&
	                    strcmp(a.algorithm, "both") != 0)))
		return cli_fail(keygen ? "--algorithm is rsa, ed25519 or both"
		                       : "--algorithm goes with 'dkim keygen' only");
	if (del && a.selector == NULL)
		return cli_fail(
		    "'dakiya dkim del' needs --selector; 'dakiya dkim list %s' shows them",
		    a.domain ? a.domain : "DOMAIN");
	struct store *st = NULL;
	char *d = our_domain(cli,
	    keygen ? "dkim keygen"
	    : list ? "dkim list"
	           : "dkim del",
	    a.domain, &st);
	if (d == NULL)
		return 1;
	if (keygen) {
		const char *only =
		    a.algorithm && strcmp(a.algorithm, "both") != 0 ? a.algorithm : NULL;
		if (only && a.selector == NULL) {
			free(d);
			return cli_fail(
			    "--algorithm %s needs --selector, the key's selector", only);
		}
		struct buf out = BUF_INIT;
		buf_printf(&out,
		    "New DKIM keys for %s; they sign from the next message on. Publish:\n", d);
		rc = cli_dkim_keygen(cli, st, d, a.selector, only, &out);
		if (rc == 0) {
			buf_printf(&out,
			    "('dakiya dns records %s' prints every record of the domain.)\n", d);
			rc = cli_print_buf(&out);
		}
		buf_free(&out);
		free(d);
		return rc;
	}
	if (del) {
		struct buf path = BUF_INIT;
		rc = store_dkim_del(st, d, a.selector);
		if (rc == STORE_NOTFOUND) {
			rc = cli_fail(
			    "%s has no key with selector %s; 'dakiya dkim list %s' shows them", d,
			    a.selector, d);
		} else if (rc != STORE_OK) {
			rc = cli_store_fail(cli, rc, "cannot delete the key");
		} else {
			if (store_dkim_path(st, d, a.selector, &path) == STORE_OK)
				unlink(buf_cstr(&path));
			printf("Deleted selector %s of %s; remove its record %s._domainkey.%s from "
			       "DNS.\n",
			    a.selector, d, a.selector, d);
			rc = 0;
		}
		buf_free(&path);
		free(d);
		return rc;
	}
	struct key_list l = {.cli = cli};
	json_init(&l.j, &l.out);
	if (cli->json)
		json_array_begin(&l.j);
	rc = store_dkim_list(st, d, list_cb, &l);
	if (rc != STORE_OK) {
		buf_free(&l.out);
		free(d);
		return cli_store_fail(cli, rc, "cannot list the DKIM keys");
	}
	if (cli->json) {
		json_array_end(&l.j);
		buf_putc(&l.out, '\n');
	} else if (l.n == 0) {
		fprintf(
		    stderr, "%s has no DKIM keys; make them with 'dakiya dkim keygen %s'\n", d, d);
	}
	rc = cli_print_buf(&l.out);
	buf_free(&l.out);
	free(d);
	return rc;
}

int cmd_dns(struct cli *cli, int argc, char **argv)
{
	struct dkim_args a;
	bool done;
	int rc = parse("dns", cli_help_dns, argc, argv, &a, &done);
	if (done)
		return rc;
	if (a.verb == NULL || strcmp(a.verb, "records") != 0)
		return cli_fail(
		    a.verb && strcmp(a.verb, "check") == 0
		        ? "'dakiya dns check' is not in this version yet; compare 'dakiya "
		          "dns records' with what 'dig' says"
		        : "'dakiya dns' needs the verb records, e.g. 'dakiya dns records "
		          "example.com'");
	if (a.selector || a.algorithm)
		return cli_fail("'dakiya dns records' takes no --selector or --algorithm");
	struct store *st = NULL;
	char *d = our_domain(cli, "dns records", a.domain, &st);
	if (d == NULL)
		return 1;
	struct buf out = BUF_INIT;
	rc = cli_dns_records(cli, st, d, cli->cfg.hostname, &out);
	if (rc == 0)
		rc = cli_print_buf(&out);
	buf_free(&out);
	free(d);
	return rc;
}
