/*
 * config.h - the configuration file (libconfuse syntax), typed and checked.
 *
 * The file holds what the store does not: hostname, listeners, data
 * directory, limits, TLS files, resolver, outbound delivery. Unknown keys and
 * values of the wrong type are errors that name file:line. Every field has a
 * default so that a minimal file (hostname + data_dir) works.
 *
 * Example:
 *   hostname = "mail.example.test"
 *   data_dir = "/var/lib/dakiya"
 *   listen { smtp = {"127.0.0.1:2525"} }
 *   limits { message_size = 52428800 }
 */
#ifndef DAKIYA_CONFIG_H
#define DAKIYA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"

#define CONFIG_DEFAULT_PATH "/etc/dakiya/dakiya.conf"

struct config_limits {
	uint64_t message_size;         /* bytes; SIZE advertised; default 50 MiB */
	unsigned recipients;           /* per message; default 1000 */
	unsigned line_length;          /* command line incl. CRLF; default 4096 */
	unsigned connections_per_ip;   /* default 50 */
	unsigned sessions;             /* in total; default 10000 */
	unsigned command_timeout;      /* seconds waiting for a command; default 300 */
	unsigned data_timeout;         /* seconds between DATA/BDAT blocks; default 600 */
	unsigned errors;               /* protocol errors before disconnect; default 10 */
	unsigned junk_commands;        /* NOOP/RSET/VRFY/HELP... before disconnect; default 100 */
	unsigned messages_per_session; /* default 10000 */
	unsigned header_size;          /* bytes of header section; default 1 MiB */
};

/* If the file's listen section names any listener, exactly the named ones
 * are opened (the others are empty lists). Without a listen section (or with
 * an empty one), all seven are on: the production ports on 0.0.0.0, or with
 * dev = true the development ports on 127.0.0.1 (DESIGN.md "Ports"). */
struct config_listen {
	char **smtp; /* "ip:port" or "[v6]:port" strings; NULL-terminated */
	char **submission;
	char **submissions;
	char **imap;
	char **imaps;
	char **pop3;
	char **pop3s;
};

struct config {
	char *path;       /* the file this came from */
	char *hostname;   /* our name in banners and Received:; default: gethostname() */
	char *data_dir;   /* store and blobs live here; absolute (a relative value in
	                   * the file is relative to the file's directory);
	                   * default /var/lib/dakiya */
	char *resolver;   /* "system" or "IP@PORT" forwarders */
	char *user;       /* drop privileges to this user after binding ("" = stay) */
	char *log_level;  /* debug|info|warn|error */
	unsigned workers; /* event-loop threads; 0 = one per core */
	bool dev;         /* development mode (quickstart --dev) */
	struct config_listen listen;
	struct config_limits limits;
	struct {
		char *cert;
		char *key;
	} tls;
	struct {
		unsigned port;          /* default 25 (2525 in --dev) */
		char *source;           /* local address for outbound connections, "" = any */
		char *family;           /* "any", "ipv4", "ipv6", "prefer-ipv4", "prefer-ipv6" */
		bool enabled;           /* run the queue (false: mail stays queued); default true */
		unsigned scan_interval; /* seconds between queue scans; default 30 */
		unsigned retry_min;     /* first retry delay, doubling per attempt; default 300 */
		unsigned retry_max;     /* cap of the retry delay; default 3600 */
		unsigned max_lifetime;  /* give up and bounce after; default 5 days */
		unsigned delay_warning; /* warn the sender once after; 0 = never; default 4 h */
		unsigned connections;   /* outbound connections in total; default 100 */
		unsigned connections_per_domain; /* to one destination domain; default 20 */
		unsigned connection_cache_time;  /* seconds an idle connection waits for the
		                                  * next message to its domain; 0 = never
		                                  * reused; default 2 */
		unsigned connection_reuse_max;   /* messages over one connection; default 100 */
	} delivery;
	struct {
		bool plain_auth_loopback; /* offer AUTH without TLS to loopback clients (tests only)
		                           */
		bool received_login;      /* name the login in Received: (off: privacy) */
		bool dkim_sign;           /* sign with the From domain's DKIM keys; default true */
		unsigned user_messages_per_hour;   /* per authenticated user; default 500 */
		unsigned user_recipients_per_hour; /* per authenticated user; default 2000 */
	} submission;
	struct {
		bool spf;         /* SPF on mail received on the smtp listeners; default true */
		unsigned timeout; /* seconds the checks of one message may take; default 20 */
		bool dkim;        /* verify DKIM signatures; default true */
		bool dmarc;       /* evaluate DMARC and apply the policy; default true */
		/* what to do ("refuse", "junk" or "deliver") with a DMARC failure
		 * under p=reject (default refuse), under p=quarantine (default
		 * junk), and with an SPF fail from a domain without DMARC (junk) */
		char *dmarc_reject;
		char *dmarc_quarantine;
		char *spf_fail;
	} checks;
	struct {
		char *socket; /* unix socket for local submission (dakiya sendmail); "" = off */
		char *
		    *users; /* local accounts allowed to submit there; "*" = any; NULL-terminated */
	} local;
};

/* Parse path into cfg (which it initialises). On error returns -1 and puts a
 * message naming file:line into err. */
int config_load(const char *path, struct config *cfg, struct buf *err);
void config_free(struct config *cfg); /* accepts NULL */
/* Fill cfg with defaults only (used by tests and by quickstart). */
void config_defaults(struct config *cfg);

/* Where the config file is: explicit path, else $DAKIYA_CONFIG, else
 * /etc/dakiya/dakiya.conf. */
const char *config_default_path(const char *explicit_path);

/* Parse a listener address "IPv4:PORT" or "[IPv6]:PORT" (numeric only, port
 * 1-65535) into ss and sslen (either may be NULL to only validate). 0 or -1. */
int config_parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *sslen);
/* True if s is a valid resolver setting: "system", "IP" or "IP@PORT". */
bool config_valid_resolver(const char *s);
/* True if s is a syntactically valid DNS host or domain name (ASCII letters,
 * digits, hyphens; labels of 1-63; at most 253 characters). */
bool config_valid_hostname(const char *s);
/* The log level named by name (debug|info|warn|error), or -1. The value is
 * an enum log_level (core/log.h). */
int config_log_level(const char *name);
/* Number of entries of a NULL-terminated listener list (NULL counts as 0). */
size_t config_listen_count(char *const *list);

#endif
