/*
 * cmd_quickstart.c - dakiya quickstart: a working instance in one command.
 *
 * Writes DIR/dakiya.conf, creates the store in DIR/data with the domain and
 * the user postmaster@DOMAIN (random password, printed once), with --dev a
 * self-signed TLS certificate in DIR/tls (or uses --cert/--key, checked
 * before anything is written), and prints what to do next.
 *
 * It never overwrites: if DIR/dakiya.conf or a store in DIR/data exists it
 * stops before changing anything. The configuration is written to a
 * temporary file, loaded back with config_load() (so what we write is what
 * the server will read), and moved into place with link(2), which fails if
 * the name appeared meanwhile. Only then is the setup reported as done.
 * A certificate and key that quickstart made are removed again if it fails
 * later; the private key is created 0600 and never overwritten.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "core/log.h"
#include "core/tls.h"
#include "core/util.h"
#include "store/store.h"

const char cli_help_quickstart[] =
    "NAME\n"
    "    dakiya quickstart - set up a new dakiya instance for a domain\n"
    "\n"
    "SYNOPSIS\n"
    "    dakiya quickstart --domain DOMAIN [--dir DIR] [--dev] [--hostname HOST]\n"
    "                      [--listen IP] [--resolver system|IP@PORT]\n"
    "                      [--cert FILE --key FILE] [--json]\n"
    "\n"
    "DESCRIPTION\n"
    "    Creates the directory DIR with\n"
    "      DIR/dakiya.conf   a commented configuration file (data_dir = DIR/data)\n"
    "      DIR/data/         the store: database and message files\n"
    "      DIR/tls/          with --dev: cert.pem, a self-signed certificate for the\n"
    "                        host name (825 days), and key.pem, its key (mode 0600)\n"
    "    adds DOMAIN to the store, creates the user postmaster@DOMAIN with a random\n"
    "    password, prints that password (only this once) and the next steps.\n"
    "\n"
    "    It refuses to touch an existing DIR/dakiya.conf or store; remove them or\n"
    "    choose another --dir to start over.\n"
    "\n"
    "    Without --dev the listeners are the standard ports on all IPv4 addresses\n"
    "    (25, 587, 465, 143, 993, 110, 995; binding them needs root) and outbound mail\n"
    "    goes to port 25. With --dev they are on the --listen address (default\n"
    "    127.0.0.1) at 2525, 2587, 2465, 1143, 1993, 1110, 1995, and outbound mail goes\n"
    "    to port 2525 from that address, so several development instances on\n"
    "    different loopback addresses deliver to each other.\n"
    "\n"
    "    TLS: --cert and --key name a certificate chain and key you already have\n"
    "    (e.g. certbot's fullchain.pem and privkey.pem); they are checked and written\n"
    "    into the configuration. Without them, --dev makes a self-signed certificate,\n"
    "    and production mode leaves the tls section commented out with instructions:\n"
    "    until it is set there is no STARTTLS, no implicit TLS and no AUTH. See\n"
    "    docs/tls.md.\n"
    "\n"
    "    DKIM: an RSA-2048 and an Ed25519 signing key for the domain ('dakiya dkim');\n"
    "    the DNS records to publish (MX, SPF, DKIM, DMARC) are printed at the end, and\n"
    "    'dakiya dns records DOMAIN' prints them again any time.\n"
    "\n"
    "OPTIONS\n"
    "    --domain DOMAIN      the first mail domain (required)\n"
    "    --dir DIR            where to put everything (default: ./dakiya-DOMAIN);\n"
    "                         created if missing, stored as an absolute path\n"
    "    --dev                development mode: unprivileged ports, see above\n"
    "    --hostname HOST      our host name in banners and Received: headers (default:\n"
    "                         mail.DOMAIN with --dev; else this machine's fully\n"
    "                         qualified name if it has a dot, else mail.DOMAIN)\n"
    "    --listen IP          the address to listen on (default 127.0.0.1 with --dev,\n"
    "                         else 0.0.0.0); an IPv6 address works too\n"
    "    --resolver R         \"system\" (default: /etc/resolv.conf) or a forwarder\n"
    "                         IP@PORT, e.g. 127.0.0.53@5353\n"
    "    --cert FILE          PEM certificate chain (server certificate first) to use\n"
    "    --key FILE           its PEM private key (unencrypted); give both or neither\n"
    "    --json               print the result as one JSON object: {\"config\",\n"
    "                         \"data_dir\",\"domain\",\"hostname\",\"dev\",\"postmaster\",\n"
    "                         \"password\",\"tls_cert\",\"tls_key\",\"tls_self_signed\",\n"
    "                         \"dns_records\"} (tls_cert and tls_key are null when TLS is\n"
    "                         not set up; dns_records as 'dns records --json' prints them)\n"
    "    -h, --help           print this manual\n"
    "\n"
    "    -c FILE is ignored here: the configuration is always DIR/dakiya.conf.\n"
    "\n"
    "EXAMPLES\n"
    "    dakiya quickstart --domain example.com --dir /etc/dakiya\n"
    "    dakiya quickstart --dev --domain a.test --dir /tmp/a --listen 127.0.0.2\n"
    "    dakiya quickstart --dev --domain b.test --dir /tmp/b --listen 127.0.0.3 \\\n"
    "                      --resolver 127.0.0.53@5353\n";

struct qs_opts {
	char *domain;
	const char *dir;
	bool dev;
	const char *hostname;
	const char *listen;
	const char *resolver;
	const char *cert; /* --cert, --key: an existing certificate chain and key */
	const char *key;
};

/* Where the configuration's TLS files are, if anywhere. */
struct qs_tls {
	const char *cert; /* absolute paths, or NULL: no TLS configured */
	const char *key;
	bool self_signed; /* quickstart made them in DIR/tls */
};

/* An IP literal (v4 or v6) for --listen. */
static bool valid_ip(const char *s, bool *v6)
{
	char spec[128];
	if (strchr(s, ':') != NULL) {
		*v6 = true;
		if (snprintf(spec, sizeof spec, "[%s]:1", s) >= (int)sizeof spec)
			return false;
	} else {
		*v6 = false;
		if (snprintf(spec, sizeof spec, "%s:1", s) >= (int)sizeof spec)
			return false;
	}
	return config_parse_listen(spec, NULL, NULL) == 0;
}

/* This machine's FQDN if it has a dot, else mail.DOMAIN. */
static char *default_hostname(const char *domain, bool dev)
{
	struct buf b = BUF_INIT;
	if (!dev) {
		char name[256];
		if (gethostname(name, sizeof name) == 0) {
			name[sizeof name - 1] = '\0';
			if (strchr(name, '.') != NULL && config_valid_hostname(name)) {
				buf_puts(&b, name);
			} else {
				struct addrinfo hints, *res = NULL;
				memset(&hints, 0, sizeof hints);
				hints.ai_flags = AI_CANONNAME;
				if (getaddrinfo(name, NULL, &hints, &res) == 0 && res != NULL &&
				    res->ai_canonname != NULL &&
				    strchr(res->ai_canonname, '.') != NULL &&
				    config_valid_hostname(res->ai_canonname))
					buf_puts(&b, res->ai_canonname);
				if (res != NULL)
					freeaddrinfo(res);
			}
		}
	}
	if (b.len == 0)
		buf_printf(&b, "mail.%s", domain);
	if (buf_err(&b))
		return NULL;
	char *s = buf_steal(&b);
	util_lower(s);
	return s;
}

/* dir as an absolute path (no symlink resolution: it may not exist yet). */
static char *absolute_dir(const char *dir)
{
	struct buf b = BUF_INIT;
	if (dir[0] == '/') {
		buf_puts(&b, dir);
	} else {
		char *cwd = getcwd(NULL, 0);
		if (cwd == NULL)
			return NULL;
		while (dir[0] == '.' && dir[1] == '/')
			dir += 2;
		if (strcmp(dir, ".") == 0)
			buf_puts(&b, cwd);
		else
			buf_printf(&b, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, dir);
		free(cwd);
	}
	while (b.len > 1 && b.data[b.len - 1] == '/')
		b.data[--b.len] = '\0';
	if (buf_err(&b))
		return NULL;
	return buf_steal(&b);
}

/* A configuration-file string literal: the values we write are validated
 * names and paths, but escape '"' and '\\' anyway. */
static void conf_str(struct buf *b, const char *s)
{
	buf_putc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_putc(b, '\\');
		buf_putc(b, *s);
	}
	buf_putc(b, '"');
}

static void conf_listen(
    struct buf *b, const char *name, const char *ip, bool v6, unsigned port, const char *comment)
{
	buf_printf(b, "\t# %s\n\t%s = {", comment, name);
	if (v6)
		buf_printf(b, "\"[%s]:%u\"", ip, port);
	else
		buf_printf(b, "\"%s:%u\"", ip, port);
	buf_puts(b, "}\n");
}

/* One "name = value  # comment" line of the limits section, aligned. */
static void conf_limit(struct buf *b, const char *name, uint64_t value, const char *comment)
{
	char line[64];
	snprintf(line, sizeof line, "%s = %llu", name, (unsigned long long)value);
	buf_printf(b, "\t%-32s# %s\n", line, comment);
}

/* The tls section: the files in use, or (none yet) commented out with the
 * way to a real certificate. */
static void conf_tls(struct buf *b, const char *hostname, const struct qs_tls *tls)
{
	buf_puts(b, "# TLS: STARTTLS on smtp, submission, imap and pop3, and the implicit-TLS\n"
	            "# listeners (submissions, imaps, pop3s). AUTH is offered only over TLS.\n"
	            "# The files are read at start-up and again on 'kill -HUP <pid of dakiya\n"
	            "# serve>' (sessions in progress keep going); after the server has switched\n"
	            "# to 'user', that user must be able to read them. See docs/tls.md.\n");
	if (tls->cert != NULL) {
		if (tls->self_signed)
			buf_printf(b,
			    "# quickstart --dev made a self-signed certificate for %s (825\n"
			    "# days): clients warn about it unless told to trust cert.pem. For a\n"
			    "# real one (e.g. Let's Encrypt), point cert at its fullchain.pem and\n"
			    "# key at its privkey.pem.\n",
			    hostname);
		buf_puts(b, "tls {\n\t# PEM certificate chain, server certificate first\n"
		            "\tcert = ");
		conf_str(b, tls->cert);
		buf_puts(b, "\n\t# its PEM private key (unencrypted, mode 0600 or 0640)\n"
		            "\tkey = ");
		conf_str(b, tls->key);
		buf_puts(b, "\n}\n\n");
		return;
	}
	buf_printf(b,
	    "# NOT SET UP YET: without it there is no STARTTLS, no implicit-TLS\n"
	    "# listener and no AUTH, and other servers send you mail in plain text.\n"
	    "# Get a certificate for %s, e.g. from Let's Encrypt:\n"
	    "#   certbot certonly --standalone -d %s \\\n"
	    "#     --deploy-hook 'pkill -HUP -f \"dakiya serve\"'\n"
	    "# then uncomment these lines (fullchain.pem is the certificate chain,\n"
	    "# privkey.pem its key) and restart dakiya serve. The deploy hook makes\n"
	    "# dakiya re-read the files after each renewal.\n"
	    "#tls {\n"
	    "#\tcert = \"/etc/letsencrypt/live/%s/fullchain.pem\"\n"
	    "#\tkey = \"/etc/letsencrypt/live/%s/privkey.pem\"\n"
	    "#}\n\n",
	    hostname, hostname, hostname, hostname);
}

/* The text of dakiya.conf. */
static void conf_text(struct buf *b, const struct qs_opts *o, const char *hostname,
    const char *data_dir, const char *listen_ip, bool v6, const struct qs_tls *tls)
{
	struct config d;
	config_defaults(&d);
	char when[64];
	time_t now = time(NULL);
	struct tm tm;
	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm) == 0)
		snprintf(when, sizeof when, "?");

	buf_printf(b,
	    "# dakiya.conf - written by 'dakiya quickstart' on %s for %s%s.\n"
	    "#\n"
	    "# Syntax: libconfuse (name = value, sections in braces, # comments); unknown\n"
	    "# names are errors. See docs/configuration.md. Restart 'dakiya serve' after\n"
	    "# editing. Domains, users and aliases are not here: they live in the store and\n"
	    "# change with 'dakiya domain|user|alias ...' while the server runs.\n"
	    "\n",
	    when, o->domain, o->dev ? " (development mode)" : "");

	buf_puts(b, "# Our name in SMTP banners and Received: headers. The MX record of your\n"
	            "# domains should point to it.\n"
	            "hostname = ");
	conf_str(b, hostname);
	buf_puts(b, "\n\n# The store: SQLite database and message files (relative paths are\n"
	            "# relative to this file's directory).\n"
	            "data_dir = ");
	conf_str(b, data_dir);
	buf_puts(b,
	    "\n\n# DNS: \"system\" uses /etc/resolv.conf; \"IP@PORT\" forwards every query\n"
	    "# to that resolver.\n"
	    "resolver = ");
	conf_str(b, o->resolver ? o->resolver : "system");
	buf_printf(b,
	    "\n\n# The unprivileged user to switch to after binding the ports; \"\" keeps the\n"
	    "# user that started the server. For production, create a system user (e.g.\n"
	    "# \"dakiya\") that owns data_dir, and name it here.\n"
	    "user = \"\"\n"
	    "\n"
	    "# debug, info, warn or error.\n"
	    "log_level = \"info\"\n"
	    "\n"
	    "# Event-loop threads; 0 = one per CPU core.\n"
	    "workers = 0\n"
	    "\n"
	    "# Development mode: unprivileged ports, outbound delivery to port 2525.\n"
	    "dev = %s\n"
	    "\n",
	    o->dev ? "true" : "false");

	buf_printf(b,
	    "# Listeners: each a list of \"IPv4:PORT\" or \"[IPv6]:PORT\". Only the listeners\n"
	    "# named here are opened; {} (or deleting the line) turns one off.\n"
	    "listen {\n");
	const unsigned p[7] = {o->dev ? 2525 : 25, o->dev ? 2587 : 587, o->dev ? 2465 : 465,
	    o->dev ? 1143 : 143, o->dev ? 1993 : 993, o->dev ? 1110 : 110, o->dev ? 1995 : 995};
	conf_listen(b, "smtp", listen_ip, v6, p[0], "mail from other servers (the MX)");
	conf_listen(b, "submission", listen_ip, v6, p[1], "mail clients sending, with STARTTLS");
	conf_listen(b, "submissions", listen_ip, v6, p[2], "mail clients sending, implicit TLS");
	conf_listen(b, "imap", listen_ip, v6, p[3], "IMAP with STARTTLS");
	conf_listen(b, "imaps", listen_ip, v6, p[4], "IMAP, implicit TLS");
	conf_listen(b, "pop3", listen_ip, v6, p[5], "POP3 with STLS");
	conf_listen(b, "pop3s", listen_ip, v6, p[6], "POP3, implicit TLS");
	buf_puts(b, "}\n\n");

	buf_puts(b,
	    "# Limits; past one the client gets a clear error and everyone else is served.\n"
	    "limits {\n");
	conf_limit(b, "message_size", d.limits.message_size, "bytes (50 MiB), advertised as SIZE");
	conf_limit(b, "recipients", d.limits.recipients, "per message");
	conf_limit(b, "line_length", d.limits.line_length, "bytes per command line, CRLF included");
	conf_limit(b, "connections_per_ip", d.limits.connections_per_ip, "at once, per client IP");
	conf_limit(b, "sessions", d.limits.sessions, "at once, in total");
	conf_limit(b, "command_timeout", d.limits.command_timeout, "seconds waiting for a command");
	conf_limit(b, "data_timeout", d.limits.data_timeout, "seconds waiting for message data");
	conf_limit(b, "errors", d.limits.errors, "protocol errors before disconnecting");
	conf_limit(b, "junk_commands", d.limits.junk_commands,
	    "NOOP, RSET, VRFY, ... before disconnecting");
	conf_limit(b, "messages_per_session", d.limits.messages_per_session, "per connection");
	conf_limit(b, "header_size", d.limits.header_size, "bytes of the header section");
	buf_puts(b, "}\n\n");

	conf_tls(b, hostname, tls);
	buf_puts(b, "# Trust checks of received mail (SPF, DKIM, DMARC) and what the policy does:\n"
	            "# refuse, junk or deliver (see docs/configuration.md).\n"
	            "checks {\n"
	            "\tspf = true\n\tdkim = true\n\tdmarc = true\n"
	            "\tdmarc_reject = \"refuse\"\t# DMARC fail under p=reject: 550 5.7.1\n"
	            "\tdmarc_quarantine = \"junk\"\t# DMARC fail under p=quarantine: Junk folder\n"
	            "\tspf_fail = \"junk\"\t\t# SPF fail from a domain without DMARC\n"
	            "}\n\n");

	buf_puts(b, "# Outbound delivery to other domains' MX hosts.\n"
	            "delivery {\n");
	buf_printf(b, "\tport = %u\t\t# the port we connect to\n", o->dev ? 2525u : 25u);
	if (o->dev) {
		buf_puts(b, "\t# the local address we connect from\n\tsource = ");
		conf_str(b, listen_ip);
		buf_printf(b, "\n\tfamily = \"%s\"\t# any, ipv4, ipv6, prefer-ipv4, prefer-ipv6\n",
		    v6 ? "ipv6" : "ipv4");
	} else {
		buf_puts(b, "\t# the local address we connect from; \"\" lets the system choose\n"
		            "\tsource = \"\"\n"
		            "\tfamily = \"any\"\t# any, ipv4, ipv6, prefer-ipv4, prefer-ipv6\n");
	}
	buf_puts(b, "}\n\n");

	buf_printf(b,
	    "# Mail from your users (ports %u and %u).\n"
	    "submission {\n"
	    "\t# offer AUTH without TLS to loopback clients: for tests only\n"
	    "\tplain_auth_loopback = false\n"
	    "\t# name the login in the Received: header of submitted mail\n"
	    "\treceived_login = false\n"
	    "\t# per user and hour; past these, 451 4.7.1\n"
	    "\tuser_messages_per_hour = %u\n"
	    "\tuser_recipients_per_hour = %u\n"
	    "}\n\n",
	    o->dev ? 2587u : 587u, o->dev ? 2465u : 465u, d.submission.user_messages_per_hour,
	    d.submission.user_recipients_per_hour);

	/* local programs: root, and whoever set this up */
	const char *me = NULL;
	struct passwd *pw = getpwuid(getuid());
	if (pw && strcmp(pw->pw_name, "root") != 0)
		me = pw->pw_name;
	buf_puts(b,
	    "# Local programs (cron, scripts, web applications) send with 'dakiya sendmail',\n"
	    "# which hands the mail to the server over this unix socket. Only the local\n"
	    "# accounts listed may; they may use any sender address.\n"
	    "local {\n\tsocket = ");
	conf_str(b, o->dev ? "submit.sock" : "/run/dakiya/submit.sock");
	buf_puts(b, "\n\tusers = {\"root\"");
	if (me) {
		buf_puts(b, ", ");
		conf_str(b, me);
	}
	buf_puts(b, "}\n}\n");
	config_free(&d);
}

/* Write text to a new file path (mode 0640), fsynced; 0 or -1 (errno). */
static int write_new_file(const char *path, const struct buf *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (cli_write_all(fd, text->data, text->len) != 0 || fsync(fd) != 0) {
		int e = errno;
		close(fd);
		unlink(path);
		errno = e;
		return -1;
	}
	return close(fd);
}

static void print_result(struct cli *cli, const struct qs_opts *o, const char *conf,
    const char *data_dir, const char *hostname, const char *listen_ip, bool v6,
    const char *postmaster, const char *password, const struct qs_tls *tls, const char *records,
    const struct buf *records_json)
{
	struct buf out = BUF_INIT;
	if (cli->json) {
		struct json j;
		json_init(&j, &out);
		json_object_begin(&j);
		json_key(&j, "config");
		json_string(&j, conf);
		json_key(&j, "data_dir");
		json_string(&j, data_dir);
		json_key(&j, "domain");
		json_string(&j, o->domain);
		json_key(&j, "hostname");
		json_string(&j, hostname);
		json_key(&j, "dev");
		json_bool(&j, o->dev);
		json_key(&j, "postmaster");
		json_string(&j, postmaster);
		json_key(&j, "password");
		json_string(&j, password);
		json_key(&j, "tls_cert");
		json_string(&j, tls->cert); /* NULL writes null */
		json_key(&j, "tls_key");
		json_string(&j, tls->key);
		json_key(&j, "tls_self_signed");
		json_bool(&j, tls->self_signed);
		json_key(&j, "dns_records"); /* as 'dns records --json' prints them */
		size_t rl = records_json->len;
		while (rl > 0 && records_json->data[rl - 1] == '\n')
			rl--;
		json_raw(&j, records_json->data ? records_json->data : "[]", rl ? rl : 2);
		json_object_end(&j);
		buf_putc(&out, '\n');
		cli_print_buf(&out);
		cli_buf_wipe(&out);
		return;
	}

	const char *host = strcmp(listen_ip, "0.0.0.0") == 0 || strcmp(listen_ip, "::") == 0
	                       ? hostname
	                       : listen_ip;
	char hostbuf[300];
	if (v6 && host == listen_ip) {
		snprintf(hostbuf, sizeof hostbuf, "[%s]", listen_ip);
		host = hostbuf;
	}
	buf_printf(&out,
	    "dakiya is set up for %s%s.\n"
	    "\n"
	    "  configuration  %s\n"
	    "  store          %s\n"
	    "  hostname       %s\n"
	    "  user           postmaster@%s\n"
	    "  password       %s\n"
	    "  tls            %s%s\n"
	    "\n"
	    "The password is shown only this once; change it any time with\n"
	    "  dakiya -c %s user passwd postmaster@%s\n"
	    "\n"
	    "Next steps:\n"
	    "  1. Start the server (in the foreground; it logs to stderr):\n"
	    "       dakiya serve -c %s\n"
	    "  2. Manage it from another shell, with -c or the environment:\n"
	    "       export DAKIYA_CONFIG=%s\n"
	    "       dakiya user add alice@%s\n"
	    "       dakiya alias add abuse@%s postmaster@%s\n"
	    "  3. Send it a message as another domain's server would, and look:\n"
	    "       swaks --server %s:%u --from someone@example.org --to postmaster@%s\n"
	    "       dakiya -c %s mailbox list postmaster@%s\n"
	    "     and send as postmaster through submission (STARTTLS, then AUTH):\n"
	    "       swaks --server %s:%u --tls --auth-user postmaster@%s --from postmaster@%s \\\n"
	    "             --to postmaster@%s   (asks for the password)\n"
	    "     (IMAP and POP3 come in later versions)\n",
	    o->domain, o->dev ? " (development mode)" : "", conf, data_dir, hostname, o->domain,
	    password, tls->cert != NULL ? tls->cert : "not set up (see below)",
	    tls->self_signed ? " (self-signed)" : "", conf, o->domain, conf, conf, o->domain,
	    o->domain, o->domain, host, o->dev ? 2525u : 25u, o->domain, conf, o->domain, host,
	    o->dev ? 2587u : 587u, o->domain, o->domain, o->domain);
	if (o->dev)
		buf_printf(&out,
		    "  4. Other development instances deliver to this one at %s:2525; this\n"
		    "     one delivers to port 2525 of the hosts that DNS names as MX.\n",
		    host);
	else
		buf_printf(&out,
		    "  4. Publish DNS records: an MX for %s pointing to %s, and A/AAAA\n"
		    "     records for %s.\n",
		    o->domain, hostname, hostname);
	if (tls->cert == NULL)
		buf_printf(&out,
		    "\nTLS is not set up: until it is, clients cannot use TLS or log in (AUTH\n"
		    "needs TLS). Get a certificate for %s (e.g. certbot) and set the tls\n"
		    "section of %s; see docs/tls.md.\n",
		    hostname, conf);
	else if (tls->self_signed)
		buf_printf(&out,
		    "\nTLS uses a self-signed certificate for %s (%s):\n"
		    "clients warn about it unless told to trust that file. Look at it with\n"
		    "  openssl x509 -in %s -noout -text\n",
		    hostname, tls->cert, tls->cert);
	buf_printf(&out,
	    "\nDNS records to publish for %s (again any time: 'dakiya dns records %s'):\n%s",
	    o->domain, o->domain, records);
	cli_print_buf(&out);
	cli_buf_wipe(&out);
}

static int quickstart(struct cli *cli, struct qs_opts *o)
{
	int rc = 1;
	char *dir = NULL, *hostname = NULL;
	struct buf conf = BUF_INIT, tmp = BUF_INIT, data = BUF_INIT, text = BUF_INIT;
	struct buf pw = BUF_INIT, hash = BUF_INIT, err = BUF_INIT, addr = BUF_INIT;
	struct buf tls_dir = BUF_INIT, tls_cert = BUF_INIT, tls_key = BUF_INIT;
	struct buf records = BUF_INIT, records_json = BUF_INIT;
	char *given_cert = NULL, *given_key = NULL;
	struct qs_tls tls = {NULL, NULL, false};
	struct config cfg;
	bool cfg_loaded = false, tmp_written = false, tls_made = false;
	struct store *st = NULL;

	bool v6 = false;
	const char *listen_ip = o->listen ? o->listen : o->dev ? "127.0.0.1" : "0.0.0.0";
	if (!valid_ip(listen_ip, &v6)) {
		cli_fail("--listen '%s' is not an IP address; give one like 127.0.0.2 or ::1",
		    listen_ip);
		goto out;
	}
	if (o->resolver != NULL && !config_valid_resolver(o->resolver)) {
		cli_fail("--resolver '%s' is not \"system\", IP or IP@PORT; e.g. --resolver "
		         "127.0.0.53@5353",
		    o->resolver);
		goto out;
	}
	if (o->hostname != NULL) {
		if (!config_valid_hostname(o->hostname)) {
			cli_fail("--hostname '%s' is not a valid host name; give one like mail.%s",
			    o->hostname, o->domain);
			goto out;
		}
		hostname = strdup(o->hostname);
		if (hostname != NULL)
			util_lower(hostname);
	} else {
		hostname = default_hostname(o->domain, o->dev);
	}
	if (hostname == NULL) {
		cli_fail("out of memory");
		goto out;
	}

	if (o->dir != NULL) {
		dir = absolute_dir(o->dir);
	} else {
		struct buf d = BUF_INIT;
		buf_printf(&d, "dakiya-%s", o->domain);
		dir = buf_err(&d) ? NULL : absolute_dir(buf_cstr(&d));
		buf_free(&d);
	}
	if (dir == NULL) {
		cli_fail("cannot work out the directory: %s", strerror(errno));
		goto out;
	}
	buf_printf(&conf, "%s/dakiya.conf", strcmp(dir, "/") == 0 ? "" : dir);
	buf_printf(&data, "%s/data", strcmp(dir, "/") == 0 ? "" : dir);
	buf_printf(
	    &tmp, "%s/.dakiya.conf.%ld.tmp", strcmp(dir, "/") == 0 ? "" : dir, (long)getpid());
	buf_printf(&addr, "postmaster@%s", o->domain);
	if (buf_err(&conf) || buf_err(&data) || buf_err(&tmp) || buf_err(&addr)) {
		cli_fail("out of memory");
		goto out;
	}

	/* refuse before creating anything */
	struct stat sb;
	if (lstat(buf_cstr(&conf), &sb) == 0) {
		cli_fail("%s already exists and quickstart never overwrites a configuration; use "
		         "it ('dakiya serve -c %s'), choose another --dir, or remove %s and %s to "
		         "start over",
		    buf_cstr(&conf), buf_cstr(&conf), buf_cstr(&conf), buf_cstr(&data));
		goto out;
	}
	struct buf db = BUF_INIT;
	buf_printf(&db, "%s/dakiya.db", buf_cstr(&data));
	bool has_store = lstat(buf_cstr(&db), &sb) == 0;
	buf_free(&db);
	if (has_store) {
		cli_fail("%s already holds a store; choose another --dir, or remove %s to start "
		         "over",
		    buf_cstr(&data), buf_cstr(&data));
		goto out;
	}

	/* TLS: a given pair must load (and match) before anything is created */
	if (o->cert != NULL) {
		given_cert = absolute_dir(o->cert);
		given_key = absolute_dir(o->key);
		if (given_cert == NULL || given_key == NULL) {
			cli_fail("cannot work out the certificate's path: %s", strerror(errno));
			goto out;
		}
		const char *files[2][2] = {{"--cert", given_cert}, {"--key", given_key}};
		for (int i = 0; i < 2; i++) {
			int fd = open(files[i][1], O_RDONLY | O_CLOEXEC | O_NOCTTY);
			if (fd < 0) {
				cli_fail("cannot read %s %s: %s; give the file's path (quickstart "
				         "reads it as the user running it)",
				    files[i][0], files[i][1], strerror(errno));
				goto out;
			}
			close(fd);
		}
		struct tls_server *t = tls_server_new(given_cert, given_key, &err);
		if (t == NULL) {
			cli_fail("--cert/--key: %s", buf_cstr(&err));
			goto out;
		}
		tls_server_free(t);
		tls.cert = given_cert;
		tls.key = given_key;
	} else if (o->dev) {
		const char *d = strcmp(dir, "/") == 0 ? "" : dir;
		buf_printf(&tls_dir, "%s/tls", d);
		buf_printf(&tls_cert, "%s/tls/cert.pem", d);
		buf_printf(&tls_key, "%s/tls/key.pem", d);
		if (buf_err(&tls_dir) || buf_err(&tls_cert) || buf_err(&tls_key)) {
			cli_fail("out of memory");
			goto out;
		}
		const char *exists = lstat(buf_cstr(&tls_cert), &sb) == 0  ? buf_cstr(&tls_cert)
		                     : lstat(buf_cstr(&tls_key), &sb) == 0 ? buf_cstr(&tls_key)
		                                                           : NULL;
		if (exists != NULL) {
			cli_fail("%s already exists and quickstart never overwrites a key or "
			         "certificate; remove %s to start over, or pass it with --cert "
			         "and --key",
			    exists, buf_cstr(&tls_dir));
			goto out;
		}
	}

	if (util_mkdir_p(dir, 0750) != 0) {
		cli_fail(
		    "cannot create %s: %s; choose a --dir you may write to", dir, strerror(errno));
		goto out;
	}
	if (util_mkdir_p(buf_cstr(&data), 0700) != 0) {
		cli_fail("cannot create %s: %s; check the permissions of %s", buf_cstr(&data),
		    strerror(errno), dir);
		goto out;
	}

	/* the self-signed certificate (--dev without --cert) */
	if (o->dev && o->cert == NULL) {
		if (util_mkdir_p(buf_cstr(&tls_dir), 0750) != 0) {
			cli_fail("cannot create %s: %s; check the permissions of %s",
			    buf_cstr(&tls_dir), strerror(errno), dir);
			goto out;
		}
		if (tls_make_self_signed(
		        hostname, buf_cstr(&tls_cert), buf_cstr(&tls_key), 825, &err) != 0) {
			cli_fail("cannot make the TLS certificate: %s", buf_cstr(&err));
			goto out;
		}
		tls_made = true;
		tls.cert = buf_cstr(&tls_cert);
		tls.key = buf_cstr(&tls_key);
		tls.self_signed = true;
	}

	/* the configuration, checked by the loader the server uses */
	conf_text(&text, o, hostname, buf_cstr(&data), listen_ip, v6, &tls);
	if (buf_err(&text)) {
		cli_fail("out of memory");
		goto out;
	}
	if (write_new_file(buf_cstr(&tmp), &text) != 0) {
		cli_fail("cannot write %s: %s; check the permissions of %s", buf_cstr(&tmp),
		    strerror(errno), dir);
		goto out;
	}
	tmp_written = true;
	if (config_load(buf_cstr(&tmp), &cfg, &err) != 0) {
		fatalx("quickstart wrote a configuration its loader rejects: %s", buf_cstr(&err));
	}
	cfg_loaded = true;

	/* the store, the domain, the postmaster */
	st = store_open(cfg.data_dir, &err);
	if (st == NULL) {
		cli_fail("cannot create the store in %s: %s; check that directory and the disk",
		    cfg.data_dir, buf_cstr(&err));
		goto out;
	}
	int src = store_domain_add(st, o->domain);
	if (src != STORE_OK && src != STORE_EXISTS) {
		cli_fail("cannot add domain %s to the new store: %s; remove %s and try again",
		    o->domain, src == STORE_ERR ? store_error(st) : "store refused it",
		    buf_cstr(&data));
		goto out;
	}
	cli_password_generate(&pw, CLI_PASSWORD_GEN_LEN);
	if (cli_password_hash(buf_cstr(&pw), &hash) != 0)
		goto out;
	src = store_user_add(st, buf_cstr(&addr), buf_cstr(&hash));
	if (src != STORE_OK) {
		cli_fail("cannot add user %s to the new store: %s; remove %s and try again",
		    buf_cstr(&addr), src == STORE_ERR ? store_error(st) : "store refused it",
		    buf_cstr(&data));
		goto out;
	}
	/* DKIM keys, and the records to publish */
	if (cli_dkim_keygen(cli, st, o->domain, NULL, NULL, true, NULL) != 0)
		goto out;
	bool json = cli->json;
	cli->json = false;
	src = cli_dns_records(cli, st, o->domain, hostname, &records);
	cli->json = true;
	if (src == 0)
		src = cli_dns_records(cli, st, o->domain, hostname, &records_json);
	cli->json = json;
	if (src != 0)
		goto out;
	store_close(st);
	st = NULL;

	/* publish the configuration: link fails if the name exists */
	if (link(buf_cstr(&tmp), buf_cstr(&conf)) != 0) {
		cli_fail("cannot create %s: %s; if it appeared meanwhile, remove %s and %s and "
		         "run quickstart again",
		    buf_cstr(&conf), strerror(errno), buf_cstr(&conf), buf_cstr(&data));
		goto out;
	}
	unlink(buf_cstr(&tmp));
	tmp_written = false;
	(void)util_fsync_dir(dir);

	print_result(cli, o, buf_cstr(&conf), cfg.data_dir, hostname, listen_ip, v6,
	    buf_cstr(&addr), buf_cstr(&pw), &tls, buf_cstr(&records), &records_json);
	rc = 0;
out:
	if (tmp_written)
		unlink(buf_cstr(&tmp));
	if (rc != 0 && tls_made) {
		unlink(buf_cstr(&tls_key));
		unlink(buf_cstr(&tls_cert));
		rmdir(buf_cstr(&tls_dir)); /* only if empty */
	}
	store_close(st);
	if (cfg_loaded)
		config_free(&cfg);
	free(dir);
	free(hostname);
	buf_free(&conf);
	buf_free(&tmp);
	buf_free(&data);
	buf_free(&text);
	buf_free(&err);
	buf_free(&addr);
	buf_free(&tls_dir);
	buf_free(&tls_cert);
	buf_free(&tls_key);
	buf_free(&records);
	buf_free(&records_json);
	free(given_cert);
	free(given_key);
	cli_buf_wipe(&pw);
	cli_buf_wipe(&hash);
	return rc;
}

int cmd_quickstart(struct cli *cli, int argc, char **argv)
{
	enum { O_DOMAIN = 256, O_DIR, O_DEV, O_HOSTNAME, O_LISTEN, O_RESOLVER, O_CERT, O_KEY };
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"domain", required_argument, NULL, O_DOMAIN},
	    {"dir", required_argument, NULL, O_DIR},
	    {"dev", no_argument, NULL, O_DEV},
	    {"hostname", required_argument, NULL, O_HOSTNAME},
	    {"listen", required_argument, NULL, O_LISTEN},
	    {"resolver", required_argument, NULL, O_RESOLVER},
	    {"cert", required_argument, NULL, O_CERT},
	    {"key", required_argument, NULL, O_KEY},
	    {NULL, 0, NULL, 0},
	};
	struct qs_opts o;
	memset(&o, 0, sizeof o);
	const char *domain = NULL;
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			return cli_help(cli_help_quickstart);
		case O_DOMAIN:
			domain = optarg;
			break;
		case O_DIR:
			o.dir = optarg;
			break;
		case O_DEV:
			o.dev = true;
			break;
		case O_HOSTNAME:
			o.hostname = optarg;
			break;
		case O_LISTEN:
			o.listen = optarg;
			break;
		case O_RESOLVER:
			o.resolver = optarg;
			break;
		case O_CERT:
			o.cert = optarg;
			break;
		case O_KEY:
			o.key = optarg;
			break;
		default:
			return cli_option_error("quickstart", argv, c);
		}
	}
	if (optind < argc)
		return cli_fail("unexpected argument '%s'; quickstart takes only options (see "
		                "'dakiya quickstart --help')",
		    argv[optind]);
	if (domain == NULL)
		return cli_fail("quickstart needs --domain; e.g. 'dakiya quickstart --domain "
		                "example.com --dev'");
	if (!cli_valid_domain(domain))
		return cli_fail("--domain '%s' is not a valid domain name; use letters, digits, "
		                "hyphens and dots (xn-- form for international names)",
		    domain);
	if (o.dir != NULL && o.dir[0] == '\0')
		return cli_fail("--dir is empty; give a directory such as /srv/dakiya");
	if ((o.cert == NULL) != (o.key == NULL) || (o.cert != NULL && o.cert[0] == '\0') ||
	    (o.key != NULL && o.key[0] == '\0'))
		return cli_fail("--cert and --key go together: the certificate chain and its key, "
		                "e.g. --cert /etc/letsencrypt/live/HOST/fullchain.pem --key "
		                "/etc/letsencrypt/live/HOST/privkey.pem");
	o.domain = strdup(domain);
	if (o.domain == NULL)
		return cli_fail("out of memory");
	util_lower(o.domain);
	int rc = quickstart(cli, &o);
	free(o.domain);
	return rc;
}
