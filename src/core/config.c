/*
 * config.c - load and check the configuration file (see config.h).
 *
 * The schema below is the single source of truth for names, types and
 * defaults: config_defaults() and config_load() both read values out of a
 * libconfuse tree built from it, so they cannot disagree.
 *
 * Every value is checked while libconfuse parses the file (validate
 * callbacks), so an error message carries the line it came from. libconfuse's
 * own messages (unknown option, wrong type, syntax) are collected through
 * cfg_set_error_function() into the caller's error buffer; nothing is printed.
 * The error callback has no user pointer, so the buffer is reached through a
 * thread-local pointer that is set only for the duration of one config_load().
 *
 * Defaults that depend on development mode (listeners, delivery.port) are
 * applied after parsing (CFGF_MODIFIED tells what the file set). Listeners
 * are all-or-nothing: if the listen section names any, exactly those are
 * opened, so a file never opens a port it does not mention; without a
 * listen section, all seven are on at their defaults.
 * Relative paths (data_dir, tls.cert, tls.key) are resolved against the
 * directory of the configuration file, so a config is independent of the
 * working directory of whoever runs dakiya.
 */
#include "core/config.h"

#include <arpa/inet.h>
#include <confuse.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

/* The state of the config_load() running on this thread (for callbacks). */
struct load_ctx {
	const char *path;
	struct buf *err;
	bool failed;
};
static _Thread_local struct load_ctx *load_cur;

enum listener_kind { L_SMTP, L_SUBMISSION, L_SUBMISSIONS, L_IMAP, L_IMAPS, L_POP3, L_POP3S, L_N };

static const struct {
	const char *name;
	unsigned prod_port;
	unsigned dev_port;
} listeners[L_N] = {
    [L_SMTP] = {"smtp", 25, 2525},
    [L_SUBMISSION] = {"submission", 587, 2587},
    [L_SUBMISSIONS] = {"submissions", 465, 2465},
    [L_IMAP] = {"imap", 143, 1143},
    [L_IMAPS] = {"imaps", 993, 1993},
    [L_POP3] = {"pop3", 110, 1110},
    [L_POP3S] = {"pop3s", 995, 1995},
};

/* Integer options and their accepted ranges (inclusive). */
static const struct int_range {
	const char *section; /* libconfuse section name; "root" for top level */
	const char *name;
	long min, max;
} int_ranges[] = {
    {"root", "workers", 0, 1024},
    {"limits", "message_size", 1024, 1L << 40},
    {"limits", "recipients", 1, 1000000},
    {"limits", "line_length", 512, 1 << 20},
    {"limits", "connections_per_ip", 1, 1000000},
    {"limits", "sessions", 1, 10000000},
    {"limits", "command_timeout", 1, 86400},
    {"limits", "data_timeout", 1, 86400},
    {"limits", "errors", 1, 1000000},
    {"limits", "junk_commands", 1, 1000000},
    {"limits", "messages_per_session", 1, 10000000},
    {"limits", "header_size", 1024, 1L << 30},
    {"delivery", "port", 1, 65535},
    {"delivery", "scan_interval", 1, 86400},
    {"delivery", "retry_min", 1, 86400},
    {"delivery", "retry_max", 1, 7 * 86400},
    {"delivery", "max_lifetime", 1, 60 * 86400},
    {"delivery", "delay_warning", 0, 60 * 86400},
    {"delivery", "connections", 1, 10000},
    {"delivery", "connections_per_domain", 1, 10000},
    {"delivery", "connection_cache_time", 0, 300},
    {"delivery", "connection_reuse_max", 1, 1000000},
    {"checks", "timeout", 1, 300},
    {"submission", "user_messages_per_hour", 1, 10000000},
    {"submission", "user_recipients_per_hour", 1, 100000000},
};

static const char *const families[] = {"any", "ipv4", "ipv6", "prefer-ipv4", "prefer-ipv6"};
static const char *const log_levels[] = {
    [LOG_DEBUG] = "debug", [LOG_INFO] = "info", [LOG_WARN] = "warn", [LOG_ERR] = "error"};

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		fatalx("config: out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);
	memcpy(p, s, n);
	return p;
}

/* ---- pure syntax checks, shared with the CLI ---- */

int config_parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *sslen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port;
	size_t hl;
	int family;

	if (spec == NULL)
		return -1;
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		hl = (size_t)(close - spec - 1);
		if (hl == 0 || hl >= sizeof host)
			return -1;
		memcpy(host, spec + 1, hl);
		family = AF_INET6;
		port = close + 2;
	} else {
		const char *colon = strrchr(spec, ':');
		if (colon == NULL || colon == spec || memchr(spec, ':', (size_t)(colon - spec)))
			return -1; /* IPv6 without brackets is ambiguous */
		hl = (size_t)(colon - spec);
		if (hl >= sizeof host)
			return -1;
		memcpy(host, spec, hl);
		family = AF_INET;
		port = colon + 1;
	}
	host[hl] = '\0';

	/* port: 1-65535, digits only, no sign, no leading zeros beyond "0" */
	if (port[0] < '1' || port[0] > '9' || strlen(port) > 5)
		return -1;
	unsigned long p = 0;
	for (const char *c = port; *c; c++) {
		if (*c < '0' || *c > '9')
			return -1;
		p = p * 10 + (unsigned long)(*c - '0');
	}
	if (p == 0 || p > 65535)
		return -1;

	struct sockaddr_storage tmp;
	memset(&tmp, 0, sizeof tmp);
	socklen_t len;
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&tmp;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		len = sizeof *sin;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&tmp;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		len = sizeof *sin6;
	}
	if (ss != NULL)
		*ss = tmp;
	if (sslen != NULL)
		*sslen = len;
	return 0;
}

/* A numeric IPv4 or IPv6 address (no brackets, no port). */
static bool valid_ip(const char *s)
{
	unsigned char a[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* One forwarder: IP or IP@PORT. */
static bool valid_forwarder(const char *s, size_t len)
{
	char item[INET6_ADDRSTRLEN + 8];
	if (len == 0 || len >= sizeof item)
		return false;
	memcpy(item, s, len);
	item[len] = '\0';
	char ip[INET6_ADDRSTRLEN + 1];
	const char *at = strchr(item, '@');
	size_t n = at ? (size_t)(at - item) : strlen(item);
	if (n == 0 || n >= sizeof ip)
		return false;
	memcpy(ip, item, n);
	ip[n] = '\0';
	if (!valid_ip(ip))
		return false;
	if (at == NULL)
		return true;
	const char *port = at + 1;
	if (port[0] < '1' || port[0] > '9' || strlen(port) > 5)
		return false;
	unsigned long p = 0;
	for (const char *c = port; *c; c++) {
		if (*c < '0' || *c > '9')
			return false;
		p = p * 10 + (unsigned long)(*c - '0');
	}
	return p <= 65535;
}

/* "system", or one or more forwarders IP[@PORT] separated by commas and/or
 * spaces. */
bool config_valid_resolver(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	if (strcmp(s, "system") == 0)
		return true;
	size_t items = 0;
	for (const char *p = s; *p;) {
		while (*p == ',' || *p == ' ')
			p++;
		if (*p == '\0')
			break;
		size_t n = strcspn(p, ", ");
		if (!valid_forwarder(p, n))
			return false;
		items++;
		p += n;
	}
	return items > 0;
}

bool config_valid_hostname(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 253)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		bool alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[n - 1] != '-';
}

int config_log_level(const char *name)
{
	for (size_t i = 0; name && i < sizeof log_levels / sizeof log_levels[0]; i++)
		if (strcmp(name, log_levels[i]) == 0)
			return (int)i;
	return -1;
}

size_t config_listen_count(char *const *list)
{
	size_t n = 0;
	while (list && list[n])
		n++;
	return n;
}

const char *config_default_path(const char *explicit_path)
{
	if (explicit_path != NULL && *explicit_path != '\0')
		return explicit_path;
	const char *env = getenv("DAKIYA_CONFIG");
	if (env != NULL && *env != '\0')
		return env;
	return CONFIG_DEFAULT_PATH;
}

/* ---- libconfuse callbacks ---- */

__attribute__((format(printf, 2, 0))) static void config_errfunc(
    cfg_t *c, const char *fmt, va_list ap)
{
	struct load_ctx *ctx = load_cur;
	if (ctx == NULL || ctx->failed)
		return; /* keep the first message: later ones are consequences */
	ctx->failed = true;
	if (c != NULL && c->line > 0)
		buf_printf(ctx->err, "%s:%d: ", ctx->path, c->line);
	else
		buf_printf(ctx->err, "%s: ", ctx->path);
	buf_vprintf(ctx->err, fmt, ap);
}

/* "limits.message_size" for messages; "workers" at the top level. */
static void opt_label(cfg_t *c, cfg_opt_t *opt, char *out, size_t n)
{
	const char *sec = cfg_name(c);
	if (sec == NULL || strcmp(sec, "root") == 0)
		snprintf(out, n, "%s", opt->name);
	else
		snprintf(out, n, "%s.%s", sec, opt->name);
}

static int validate_int(cfg_t *c, cfg_opt_t *opt)
{
	const char *sec = cfg_name(c);
	char label[128];
	opt_label(c, opt, label, sizeof label);
	for (size_t i = 0; i < sizeof int_ranges / sizeof int_ranges[0]; i++) {
		const struct int_range *r = &int_ranges[i];
		if (strcmp(r->section, sec) != 0 || strcmp(r->name, opt->name) != 0)
			continue;
		long v = cfg_opt_getnint(opt, 0);
		if (v < r->min || v > r->max) {
			cfg_error(
			    c, "%s = %ld is out of range (%ld to %ld)", label, v, r->min, r->max);
			return -1;
		}
		return 0;
	}
	fatalx("config: no range for %s", label);
}

static int validate_listen(cfg_t *c, cfg_opt_t *opt)
{
	for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
		const char *s = cfg_opt_getnstr(opt, i);
		if (config_parse_listen(s, NULL, NULL) != 0) {
			cfg_error(c,
			    "listen.%s: bad address \"%s\" (want \"IPv4:PORT\" or \"[IPv6]:PORT\", "
			    "numeric, port 1-65535)",
			    opt->name, s ? s : "");
			return -1;
		}
	}
	return 0;
}

static int validate_hostname(cfg_t *c, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	if (!config_valid_hostname(s)) {
		cfg_error(c, "hostname \"%s\" is not a valid host name", s ? s : "");
		return -1;
	}
	return 0;
}

static int validate_nonempty(cfg_t *c, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	if (s == NULL || *s == '\0') {
		char label[128];
		opt_label(c, opt, label, sizeof label);
		cfg_error(c, "%s must not be empty", label);
		return -1;
	}
	return 0;
}

static int validate_resolver(cfg_t *c, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	if (!config_valid_resolver(s)) {
		cfg_error(
		    c, "resolver \"%s\" is not \"system\", \"IP\" or \"IP@PORT\"", s ? s : "");
		return -1;
	}
	return 0;
}

static int validate_log_level(cfg_t *c, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	if (config_log_level(s) < 0) {
		cfg_error(c, "log_level \"%s\" is not one of debug, info, warn, error", s ? s : "");
		return -1;
	}
	return 0;
}

static int validate_family(cfg_t *c, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	for (size_t i = 0; s && i < sizeof families / sizeof families[0]; i++)
		if (strcmp(s, families[i]) == 0)
			return 0;
	cfg_error(c,
	    "delivery.family \"%s\" is not one of any, ipv4, ipv6, prefer-ipv4, prefer-ipv6",
	    s ? s : "");
	return -1;
}

static int validate_action(cfg_t *c, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	if (s && (strcmp(s, "refuse") == 0 || strcmp(s, "junk") == 0 || strcmp(s, "deliver") == 0))
		return 0;
	cfg_error(c, "checks.%s \"%s\" is not one of refuse, junk, deliver", opt->name, s ? s : "");
	return -1;
}

static int validate_source(cfg_t *c, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	if (s == NULL || *s == '\0' || valid_ip(s))
		return 0;
	cfg_error(c, "delivery.source \"%s\" is not a numeric IP address (or \"\" for any)", s);
	return -1;
}

/* ---- schema ---- */

/* The libconfuse tree for our schema, with every validator attached. */
static cfg_t *config_schema(void)
{
	/* clang-format off */
	static cfg_opt_t listen_opts[] = {
		CFG_STR_LIST("smtp", 0, CFGF_NODEFAULT),
		CFG_STR_LIST("submission", 0, CFGF_NODEFAULT),
		CFG_STR_LIST("submissions", 0, CFGF_NODEFAULT),
		CFG_STR_LIST("imap", 0, CFGF_NODEFAULT),
		CFG_STR_LIST("imaps", 0, CFGF_NODEFAULT),
		CFG_STR_LIST("pop3", 0, CFGF_NODEFAULT),
		CFG_STR_LIST("pop3s", 0, CFGF_NODEFAULT),
		CFG_END()};
	static cfg_opt_t limits_opts[] = {
		CFG_INT("message_size", 52428800, CFGF_NONE),
		CFG_INT("recipients", 1000, CFGF_NONE),
		CFG_INT("line_length", 4096, CFGF_NONE),
		CFG_INT("connections_per_ip", 50, CFGF_NONE),
		CFG_INT("sessions", 10000, CFGF_NONE),
		CFG_INT("command_timeout", 300, CFGF_NONE),
		CFG_INT("data_timeout", 600, CFGF_NONE),
		CFG_INT("errors", 10, CFGF_NONE),
		CFG_INT("junk_commands", 100, CFGF_NONE),
		CFG_INT("messages_per_session", 10000, CFGF_NONE),
		CFG_INT("header_size", 1048576, CFGF_NONE),
		CFG_END()};
	static cfg_opt_t tls_opts[] = {
		CFG_STR("cert", "", CFGF_NONE),
		CFG_STR("key", "", CFGF_NONE),
		CFG_END()};
	static cfg_opt_t delivery_opts[] = {
		CFG_INT("port", 25, CFGF_NONE),
		CFG_STR("source", "", CFGF_NONE),
		CFG_STR("family", "any", CFGF_NONE),
		CFG_BOOL("enabled", cfg_true, CFGF_NONE),
		CFG_INT("scan_interval", 30, CFGF_NONE),
		CFG_INT("retry_min", 300, CFGF_NONE),
		CFG_INT("retry_max", 3600, CFGF_NONE),
		CFG_INT("max_lifetime", 5 * 86400, CFGF_NONE),
		CFG_INT("delay_warning", 4 * 3600, CFGF_NONE),
		CFG_INT("connections", 100, CFGF_NONE),
		CFG_INT("connections_per_domain", 20, CFGF_NONE),
		CFG_INT("connection_cache_time", 2, CFGF_NONE),
		CFG_INT("connection_reuse_max", 100, CFGF_NONE),
		CFG_END()};
	static cfg_opt_t submission_opts[] = {
		CFG_BOOL("plain_auth_loopback", cfg_false, CFGF_NONE),
		CFG_BOOL("received_login", cfg_false, CFGF_NONE),
		CFG_BOOL("dkim_sign", cfg_true, CFGF_NONE),
		CFG_INT("user_messages_per_hour", 500, CFGF_NONE),
		CFG_INT("user_recipients_per_hour", 2000, CFGF_NONE),
		CFG_END()};
	static cfg_opt_t checks_opts[] = {
		CFG_BOOL("spf", cfg_true, CFGF_NONE),
		CFG_INT("timeout", 20, CFGF_NONE),
		CFG_BOOL("dkim", cfg_true, CFGF_NONE),
		CFG_BOOL("dmarc", cfg_true, CFGF_NONE),
		CFG_STR("dmarc_reject", "refuse", CFGF_NONE),
		CFG_STR("dmarc_quarantine", "junk", CFGF_NONE),
		CFG_STR("spf_fail", "junk", CFGF_NONE),
		CFG_END()};
	static cfg_opt_t local_opts[] = {
		CFG_STR("socket", "", CFGF_NONE),
		CFG_STR_LIST("users", "{root}", CFGF_NONE),
		CFG_END()};
	static cfg_opt_t opts[] = {
		CFG_STR("hostname", "", CFGF_NONE),
		CFG_STR("data_dir", "/var/lib/dakiya", CFGF_NONE),
		CFG_STR("resolver", "system", CFGF_NONE),
		CFG_STR("user", "", CFGF_NONE),
		CFG_STR("log_level", "info", CFGF_NONE),
		CFG_INT("workers", 0, CFGF_NONE),
		CFG_BOOL("dev", cfg_false, CFGF_NONE),
		CFG_SEC("listen", listen_opts, CFGF_NONE),
		CFG_SEC("limits", limits_opts, CFGF_NONE),
		CFG_SEC("tls", tls_opts, CFGF_NONE),
		CFG_SEC("delivery", delivery_opts, CFGF_NONE),
		CFG_SEC("submission", submission_opts, CFGF_NONE),
		CFG_SEC("checks", checks_opts, CFGF_NONE),
		CFG_SEC("local", local_opts, CFGF_NONE),
		CFG_END()};
	/* clang-format on */

	cfg_t *c = cfg_init(opts, CFGF_NONE);
	if (c == NULL)
		fatalx("config: out of memory");
	cfg_set_error_function(c, config_errfunc);

	cfg_set_validate_func(c, "hostname", validate_hostname);
	cfg_set_validate_func(c, "data_dir", validate_nonempty);
	cfg_set_validate_func(c, "resolver", validate_resolver);
	cfg_set_validate_func(c, "log_level", validate_log_level);
	cfg_set_validate_func(c, "workers", validate_int);
	for (size_t i = 0; i < L_N; i++) {
		char name[64];
		snprintf(name, sizeof name, "listen|%s", listeners[i].name);
		cfg_set_validate_func(c, name, validate_listen);
	}
	for (size_t i = 0; i < sizeof int_ranges / sizeof int_ranges[0]; i++) {
		char name[64];
		if (strcmp(int_ranges[i].section, "root") == 0)
			continue;
		snprintf(name, sizeof name, "%s|%s", int_ranges[i].section, int_ranges[i].name);
		cfg_set_validate_func(c, name, validate_int);
	}
	cfg_set_validate_func(c, "delivery|source", validate_source);
	cfg_set_validate_func(c, "delivery|family", validate_family);
	cfg_set_validate_func(c, "checks|dmarc_reject", validate_action);
	cfg_set_validate_func(c, "checks|dmarc_quarantine", validate_action);
	cfg_set_validate_func(c, "checks|spf_fail", validate_action);
	return c;
}

/* ---- from the libconfuse tree into struct config ---- */

static char **list_from_cfg(cfg_t *sec, const char *name)
{
	unsigned n = cfg_size(sec, name);
	char **v = xmalloc(((size_t)n + 1) * sizeof *v);
	for (unsigned i = 0; i < n; i++)
		v[i] = xstrdup(cfg_getnstr(sec, name, i));
	v[n] = NULL;
	return v;
}

static char **list_default(enum listener_kind k, bool dev)
{
	char **v = xmalloc(2 * sizeof *v);
	char addr[64];
	if (dev)
		snprintf(addr, sizeof addr, "127.0.0.1:%u", listeners[k].dev_port);
	else
		snprintf(addr, sizeof addr, "0.0.0.0:%u", listeners[k].prod_port);
	v[0] = xstrdup(addr);
	v[1] = NULL;
	return v;
}

static char ***listen_slot(struct config_listen *l, enum listener_kind k)
{
	switch (k) {
	case L_SMTP:
		return &l->smtp;
	case L_SUBMISSION:
		return &l->submission;
	case L_SUBMISSIONS:
		return &l->submissions;
	case L_IMAP:
		return &l->imap;
	case L_IMAPS:
		return &l->imaps;
	case L_POP3:
		return &l->pop3;
	case L_POP3S:
		return &l->pop3s;
	default:
		fatalx("config: listener kind %d", (int)k);
	}
}

static bool modified(cfg_t *sec, const char *name)
{
	cfg_opt_t *o = cfg_getopt(sec, name);
	return o != NULL && (o->flags & CFGF_MODIFIED);
}

/* path if absolute (or empty), else base_dir/path; always a new string. */
static char *resolve_path(const char *base_dir, const char *path)
{
	if (path[0] == '\0' || path[0] == '/' || base_dir == NULL)
		return xstrdup(path);
	struct buf b = BUF_INIT;
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	if (strcmp(path, ".") == 0)
		buf_puts(&b, base_dir);
	else
		buf_printf(&b, "%s/%s", strcmp(base_dir, "/") == 0 ? "" : base_dir, path);
	if (buf_err(&b))
		fatalx("config: out of memory");
	return buf_steal(&b);
}

static unsigned getuint(cfg_t *sec, const char *name)
{
	long v = cfg_getint(sec, name);
	return v < 0 ? 0 : v > UINT_MAX ? UINT_MAX : (unsigned)v; /* ranges already checked */
}

static void fill_from_cfg(struct config *cfg, cfg_t *c, const char *base_dir)
{
	cfg->dev = cfg_getbool(c, "dev");

	const char *host = cfg_getstr(c, "hostname");
	if (host == NULL || *host == '\0') {
		char name[256];
		if (gethostname(name, sizeof name) != 0 || name[0] == '\0')
			snprintf(name, sizeof name, "localhost");
		name[sizeof name - 1] = '\0';
		cfg->hostname = xstrdup(name);
	} else {
		cfg->hostname = xstrdup(host);
	}
	cfg->data_dir = resolve_path(base_dir, cfg_getstr(c, "data_dir"));
	cfg->resolver = xstrdup(cfg_getstr(c, "resolver"));
	cfg->user = xstrdup(cfg_getstr(c, "user"));
	cfg->log_level = xstrdup(cfg_getstr(c, "log_level"));
	cfg->workers = getuint(c, "workers");

	/* A listen section that names any listener names all that are opened;
	 * without one, every listener is on at its default address. */
	cfg_t *l = cfg_getsec(c, "listen");
	bool named = false;
	for (int k = 0; k < L_N; k++)
		named = named || modified(l, listeners[k].name);
	for (int k = 0; k < L_N; k++) {
		char ***slot = listen_slot(&cfg->listen, (enum listener_kind)k);
		if (named)
			*slot = list_from_cfg(l, listeners[k].name); /* empty if not named */
		else
			*slot = list_default((enum listener_kind)k, cfg->dev);
	}

	cfg_t *lim = cfg_getsec(c, "limits");
	long ms = cfg_getint(lim, "message_size");
	cfg->limits.message_size = ms < 0 ? 0 : (uint64_t)ms;
	cfg->limits.recipients = getuint(lim, "recipients");
	cfg->limits.line_length = getuint(lim, "line_length");
	cfg->limits.connections_per_ip = getuint(lim, "connections_per_ip");
	cfg->limits.sessions = getuint(lim, "sessions");
	cfg->limits.command_timeout = getuint(lim, "command_timeout");
	cfg->limits.data_timeout = getuint(lim, "data_timeout");
	cfg->limits.errors = getuint(lim, "errors");
	cfg->limits.junk_commands = getuint(lim, "junk_commands");
	cfg->limits.messages_per_session = getuint(lim, "messages_per_session");
	cfg->limits.header_size = getuint(lim, "header_size");

	cfg_t *tls = cfg_getsec(c, "tls");
	cfg->tls.cert = resolve_path(base_dir, cfg_getstr(tls, "cert"));
	cfg->tls.key = resolve_path(base_dir, cfg_getstr(tls, "key"));

	cfg_t *d = cfg_getsec(c, "delivery");
	if (modified(d, "port"))
		cfg->delivery.port = getuint(d, "port");
	else
		cfg->delivery.port = cfg->dev ? 2525 : 25;
	cfg->delivery.source = xstrdup(cfg_getstr(d, "source"));
	cfg->delivery.family = xstrdup(cfg_getstr(d, "family"));
	cfg->delivery.enabled = cfg_getbool(d, "enabled");
	cfg->delivery.scan_interval = getuint(d, "scan_interval");
	cfg->delivery.retry_min = getuint(d, "retry_min");
	cfg->delivery.retry_max = getuint(d, "retry_max");
	cfg->delivery.max_lifetime = getuint(d, "max_lifetime");
	cfg->delivery.delay_warning = getuint(d, "delay_warning");
	cfg->delivery.connections = getuint(d, "connections");
	cfg->delivery.connections_per_domain = getuint(d, "connections_per_domain");
	cfg->delivery.connection_cache_time = getuint(d, "connection_cache_time");
	cfg->delivery.connection_reuse_max = getuint(d, "connection_reuse_max");

	cfg_t *sub = cfg_getsec(c, "submission");
	cfg->submission.plain_auth_loopback = cfg_getbool(sub, "plain_auth_loopback");
	cfg->submission.received_login = cfg_getbool(sub, "received_login");
	cfg->submission.dkim_sign = cfg_getbool(sub, "dkim_sign");
	cfg->submission.user_messages_per_hour = getuint(sub, "user_messages_per_hour");
	cfg->submission.user_recipients_per_hour = getuint(sub, "user_recipients_per_hour");

	cfg_t *chk = cfg_getsec(c, "checks");
	cfg->checks.spf = cfg_getbool(chk, "spf");
	cfg->checks.timeout = getuint(chk, "timeout");
	cfg->checks.dkim = cfg_getbool(chk, "dkim");
	cfg->checks.dmarc = cfg_getbool(chk, "dmarc");
	cfg->checks.dmarc_reject = xstrdup(cfg_getstr(chk, "dmarc_reject"));
	cfg->checks.dmarc_quarantine = xstrdup(cfg_getstr(chk, "dmarc_quarantine"));
	cfg->checks.spf_fail = xstrdup(cfg_getstr(chk, "spf_fail"));

	cfg_t *loc = cfg_getsec(c, "local");
	cfg->local.socket = resolve_path(base_dir, cfg_getstr(loc, "socket"));
	cfg->local.users = list_from_cfg(loc, "users");
}

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg_t *c = config_schema();
	cfg->path = xstrdup("");
	fill_from_cfg(cfg, c, NULL);
	cfg_free(c);
}

/* The absolute directory holding path, or NULL (errno set). */
static char *dir_of(const char *path)
{
	char *abs = realpath(path, NULL);
	if (abs == NULL)
		return NULL;
	char *slash = strrchr(abs, '/');
	if (slash == abs)
		slash[1] = '\0'; /* the file is in / */
	else if (slash != NULL)
		*slash = '\0';
	return abs;
}

int config_load(const char *path, struct config *cfg, struct buf *err)
{
	memset(cfg, 0, sizeof *cfg);

	FILE *fp = fopen(path, "re");
	if (fp == NULL) {
		buf_printf(err, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
		buf_printf(err, "%s: not a regular file", path);
		fclose(fp);
		return -1;
	}
	char *base = dir_of(path);
	if (base == NULL) {
		buf_printf(err, "%s: cannot resolve its directory: %s", path, strerror(errno));
		fclose(fp);
		return -1;
	}

	struct load_ctx ctx = {.path = path, .err = err, .failed = false};
	struct load_ctx *saved = load_cur;
	load_cur = &ctx;
	cfg_t *c = config_schema();
	int r = cfg_parse_fp(c, fp);
	load_cur = saved;
	fclose(fp);

	if (r != CFG_SUCCESS || ctx.failed) {
		if (!ctx.failed)
			buf_printf(err, "%s: cannot parse the file", path);
		cfg_free(c);
		free(base);
		return -1;
	}

	cfg->path = xstrdup(path);
	fill_from_cfg(cfg, c, base);
	cfg_free(c);
	free(base);

	if ((cfg->tls.cert[0] == '\0') != (cfg->tls.key[0] == '\0')) {
		buf_printf(err, "%s: tls: set both cert and key, or neither", path);
		config_free(cfg);
		return -1;
	}
	return 0;
}

static void free_list(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->hostname);
	free(cfg->data_dir);
	free(cfg->resolver);
	free(cfg->user);
	free(cfg->log_level);
	for (int k = 0; k < L_N; k++)
		free_list(*listen_slot(&cfg->listen, (enum listener_kind)k));
	free(cfg->tls.cert);
	free(cfg->tls.key);
	free(cfg->delivery.source);
	free(cfg->delivery.family);
	free(cfg->checks.dmarc_reject);
	free(cfg->checks.dmarc_quarantine);
	free(cfg->checks.spf_fail);
	free(cfg->local.socket);
	free_list(cfg->local.users);
	memset(cfg, 0, sizeof *cfg);
}
