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
    "                                 [--activate]\n"
    "    dakiya [-c FILE] dkim list DOMAIN [--json]\n"
    "    dakiya [-c FILE] dkim activate DOMAIN --selector S\n"
    "    dakiya [-c FILE] dkim del DOMAIN --selector S\n"
    "\n"
    "DESCRIPTION\n"
    "    Mail that our users send is signed with DKIM (RFC 6376) by the domain of its\n"
    "    From address: one RSA-2048 signature (rsa-sha256) and one Ed25519 signature\n"
    "    (ed25519-sha256, RFC 8463), relaxed/relaxed, From signed once more than it\n"
    "    occurs. Receivers check them against the public keys published in DNS at\n"
    "    SELECTOR._domainkey.DOMAIN.\n"
    "\n"
    "    keygen    makes new keys. By default both: selectors SELr (RSA) and SELe\n"
    "              (Ed25519), SEL being --selector or dkYYYYMMDD. With --algorithm rsa or\n"
    "              ed25519, one key at exactly --selector. The private key goes to\n"
    "              DATA_DIR/dkim/DOMAIN/SELECTOR.pem (mode 0600, readable by the server\n"
    "              only); the record to publish is printed. The domain's first key of each\n"
    "              algorithm signs from the next message on; a key made while another\n"
    "              signs waits (\"waiting\") until 'activate', so that nothing is signed\n"
    "              with a selector receivers cannot find yet (--activate: at once).\n"
    "    list      the keys, oldest first, with their records: \"signing\" (the newest\n"
    "              active key of its algorithm), \"published\" (older, still verifies),\n"
    "              \"waiting\" (made, not yet activated).\n"
    "    activate  let a waiting key sign (SELECTOR, or the pair SELr and SELe).\n"
    "    del       forget a key and remove its file (SELECTOR, or the pair SELr and\n"
    "              SELe); do it once mail signed with it is delivered, a few days after\n"
    "              the next key signs.\n"
    "\n"
    "    Rotating: 'dkim keygen D --selector NEW'; publish NEWr's and NEWe's records and\n"
    "    wait for the DNS TTL; 'dkim activate D --selector NEW'; the old selectors still\n"
    "    verify mail signed before; days later 'dkim del D --selector OLD' and remove\n"
    "    the old records.\n"
    "\n"
    "OPTIONS\n"
    "    --selector S   the selector (letters, digits, hyphens; see above)\n"
    "    --algorithm A  rsa, ed25519 or both (the default)\n"
    "    --activate     keygen: the new keys sign at once\n"
    "    --json         list: [{\"selector\",\"algorithm\",\"record\",\"created\",\"signing\",\n"
    "                   \"active\"}]\n"
    "    -h, --help     print this manual\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya dkim keygen example.com\n"
    "    dakiya dkim keygen example.com --selector 2027a\n"
    "    dakiya dkim activate example.com --selector 2027a\n"
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
	bool activate;
};

static int parse(
    const char *cmd, const char *help, int argc, char **argv, struct dkim_args *a, bool *done)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"selector", required_argument, NULL, 's'},
	    {"algorithm", required_argument, NULL, 'a'},
	    {"activate", no_argument, NULL, 'A'},
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
		case 'A':
			a->activate = true;
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

/* Open (making it if needed, mode 0700) the directory name under dirfd,
 * owned like data_dir when run as root; never through a symbolic link, so
 * that a planted link cannot make root chown or write elsewhere. The fd,
 * or -1 with errno. */
static int private_dir(int dirfd, const char *name, const struct stat *owner)
{
	if (mkdirat(dirfd, name, 0700) != 0 && errno != EEXIST)
		return -1;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (geteuid() == 0 && fchown(fd, owner->st_uid, owner->st_gid) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Write pkey's PEM as the new file name in dirfd (0600, owned like
 * data_dir, synced). 0, or -1 with errno. */
static int write_key(EVP_PKEY *pkey, int dirfd, const char *name, const struct stat *owner)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		unlinkat(dirfd, name, 0);
		return -1;
	}
	bool ok = PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1 && fflush(f) == 0 &&
	          fsync(fd) == 0 &&
	          (geteuid() != 0 || fchown(fd, owner->st_uid, owner->st_gid) == 0);
	int e = errno;
	if (fclose(f) != 0)
		ok = false;
	if (!ok) {
		unlinkat(dirfd, name, 0);
		errno = e ? e : EIO;
		return -1;
	}
	return 0;
}

/* Does the domain have an active key of this algorithm? */
struct has_active {
	const char *algorithm;
	bool found;
};

static void has_active_cb(void *arg, const struct store_dkim_key *k)
{
	struct has_active *h = arg;
	h->found |= k->active && strcmp(k->algorithm, h->algorithm) == 0;
}

int cli_dkim_keygen(struct cli *cli, struct store *st, const char *domain, const char *base,
    const char *only, bool activate, struct buf *out)
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
	if (geteuid() != 0 && geteuid() != owner.st_uid)
		return cli_fail(
		    "the server could not read keys made by this user; run 'dakiya dkim "
		    "keygen' as root or as the owner of %s (uid %u)",
		    dd, (unsigned)owner.st_uid);
	int ddfd = open(dd, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int kfd = ddfd < 0 ? -1 : private_dir(ddfd, "dkim", &owner);
	int dfd = kfd < 0 ? -1 : private_dir(kfd, domain, &owner);
	int e = errno;
	if (ddfd >= 0)
		close(ddfd);
	if (kfd >= 0)
		close(kfd);
	if (dfd < 0)
		return cli_fail(
		    "cannot make %s/dkim/%s (a private directory, no symbolic links): %s", dd,
		    domain, strerror(e));
	struct buf path = BUF_INIT, rec = BUF_INIT;
	int rc = 0;
	for (int k = 0; k < 2 && rc == 0; k++) {
		bool ed = k == 1;
		const char *alg = ed ? "ed25519" : "rsa";
		if (only != NULL && strcmp(only, alg) != 0)
			continue;
		char sel[80], file[96];
		snprintf(sel, sizeof sel, "%s%s", base, only ? "" : ed ? "e" : "r");
		util_lower(sel);
		snprintf(file, sizeof file, "%s.pem", sel);
		if (store_dkim_path(st, domain, sel, &path) != STORE_OK) {
			rc = cli_fail(
			    "'%s' is not a usable selector; use letters, digits and hyphens", base);
			break;
		}
		struct has_active ha = {alg, false};
		if (store_dkim_list(st, domain, has_active_cb, &ha) != STORE_OK) {
			rc = cli_store_fail(cli, STORE_ERR, "cannot list the DKIM keys");
			break;
		}
		/* the first key of its kind signs at once; a new one while another
		 * signs waits until its record is published (dkim activate) */
		bool active = activate || !ha.found;
		EVP_PKEY *pk = dkim_keygen(ed);
		buf_reset(&rec);
		if (pk == NULL || !dkim_key_record(pk, &rec)) {
			EVP_PKEY_free(pk);
			rc = cli_fail(
			    "cannot make an %s key (OpenSSL failed)", ed ? "Ed25519" : "RSA");
			break;
		}
		if (write_key(pk, dfd, file, &owner) != 0) {
			EVP_PKEY_free(pk);
			rc =
			    errno == EEXIST
			        ? cli_fail("%s already has a key with selector %s; pick "
			                   "another --selector",
			              domain, sel)
			        : cli_fail("cannot write %s: %s", buf_cstr(&path), strerror(errno));
			break;
		}
		EVP_PKEY_free(pk);
		int src = store_dkim_add(st, domain, sel, alg, buf_cstr(&rec), active);
		if (src != STORE_OK) {
			unlinkat(dfd, file, 0);
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
		if (!active && out)
			buf_printf(out,
			    "    (%s waits: publish it, then 'dakiya dkim activate %s "
			    "--selector %s')\n",
			    sel, domain, only ? sel : base);
	}
	close(dfd);
	buf_free(&path);
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
		json_key(&l->j, "active");
		json_bool(&l->j, k->active);
		json_object_end(&l->j);
		return;
	}
	char date[32];
	struct tm tm;
	gmtime_r(&k->created, &tm);
	strftime(date, sizeof date, "%Y-%m-%d", &tm);
	buf_printf(&l->out, "%-16s %-8s %s %-9s %s\n", k->selector, k->algorithm, date,
	    k->signing  ? "signing"
	    : k->active ? "published"
	                : "waiting",
	    k->record);
}

/* del or activate: the selector S itself, else the pair S+"r" and S+"e"
 * keygen made; the selectors changed go to done. */
static int change_keys(
    struct store *st, const char *d, const char *sel, bool del, char (*done)[80], size_t *ndone)
{
	*ndone = 0;
	char want[3][80];
	snprintf(want[0], sizeof want[0], "%s", sel);
	snprintf(want[1], sizeof want[1], "%sr", sel);
	snprintf(want[2], sizeof want[2], "%se", sel);
	for (int k = 0; k < 3; k++) {
		util_lower(want[k]);
		int rc = del ? store_dkim_del(st, d, want[k]) : store_dkim_activate(st, d, want[k]);
		if (rc == STORE_NOTFOUND)
			continue;
		if (rc != STORE_OK)
			return rc;
		memcpy(done[(*ndone)++], want[k], sizeof want[k]);
		if (k == 0)
			break; /* the exact selector: not a pair */
	}
	return *ndone ? STORE_OK : STORE_NOTFOUND;
}

int cmd_dkim(struct cli *cli, int argc, char **argv)
{
	struct dkim_args a;
	bool done;
	int rc = parse("dkim", cli_help_dkim, argc, argv, &a, &done);
	if (done)
		return rc;
	if (a.verb == NULL)
		return cli_fail("'dakiya dkim' needs a verb: keygen, list, activate or del; see "
		                "'dakiya dkim --help'");
	bool keygen = strcmp(a.verb, "keygen") == 0, list = strcmp(a.verb, "list") == 0,
	     del = strcmp(a.verb, "del") == 0, act = strcmp(a.verb, "activate") == 0;
	if (!keygen && !list && !del && !act)
		return cli_fail(
		    "unknown verb 'dkim %s'; use keygen, list, activate or del", a.verb);
	if (a.algorithm &&
	    (!keygen || (strcmp(a.algorithm, "rsa") != 0 && strcmp(a.algorithm, "ed25519") != 0 &&
	                    strcmp(a.algorithm, "both") != 0)))
		return cli_fail(keygen ? "--algorithm is rsa, ed25519 or both"
		                       : "--algorithm goes with 'dkim keygen' only");
	if (a.activate && !keygen)
		return cli_fail(
		    "--activate goes with 'dkim keygen' only; to let a waiting key sign, "
		    "run 'dakiya dkim activate DOMAIN --selector S'");
	if (list && a.selector)
		return cli_fail("'dakiya dkim list' takes no --selector; it lists every key");
	if ((del || act) && a.selector == NULL)
		return cli_fail(
		    "'dakiya dkim %s' needs --selector; 'dakiya dkim list %s' shows them", a.verb,
		    a.domain ? a.domain : "DOMAIN");
	struct store *st = NULL;
	char *d = our_domain(cli,
	    keygen ? "dkim keygen"
	    : list ? "dkim list"
	    : del  ? "dkim del"
	           : "dkim activate",
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
		buf_printf(&out, "New DKIM keys for %s. Publish:\n", d);
		rc = cli_dkim_keygen(cli, st, d, a.selector, only, a.activate, &out);
		if (rc == 0) {
			buf_printf(&out,
			    "('dakiya dns records %s' prints every record of the domain.)\n", d);
			rc = cli_print_buf(&out);
		}
		buf_free(&out);
		free(d);
		return rc;
	}
	if (del || act) {
		char changed[3][80];
		size_t n = 0;
		rc = change_keys(st, d, a.selector, del, changed, &n);
		if (rc == STORE_NOTFOUND) {
			rc = cli_fail(
			    "%s has no key with selector %s; 'dakiya dkim list %s' shows them", d,
			    a.selector, d);
		} else if (rc != STORE_OK) {
			rc = cli_store_fail(
			    cli, rc, del ? "cannot delete the key" : "cannot activate the key");
		} else {
			struct buf path = BUF_INIT;
			for (size_t i = 0; i < n; i++) {
				if (del && store_dkim_path(st, d, changed[i], &path) == STORE_OK &&
				    unlink(buf_cstr(&path)) != 0 && errno != ENOENT)
					fprintf(stderr,
					    "dakiya: cannot remove %s: %s; remove it by hand\n",
					    buf_cstr(&path), strerror(errno));
				if (del)
					printf("Deleted selector %s of %s; remove its record "
					       "%s._domainkey.%s from DNS.\n",
					    changed[i], d, changed[i], d);
				else
					printf(
					    "Selector %s of %s signs from the next message on.\n",
					    changed[i], d);
			}
			buf_free(&path);
			rc = 0;
		}
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
