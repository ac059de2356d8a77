/*
 * test_config.c - the configuration loader: defaults, a full file, and every
 * kind of error a user can make, each of which must name file:line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/config.h"

static char tmpdir[] = "/tmp/dakiya-test-config-XXXXXX";

static int setup_dir(void **state)
{
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	return 0;
}

static int teardown_dir(void **state)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Write text to tmpdir/name and return the path (static storage). */
static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* Load text; expect failure whose message contains every needle. */
static void expect_error(const char *text, const char *needle1, const char *needle2)
{
	const char *path = write_file("bad.conf", text);
	struct config cfg;
	struct buf err = BUF_INIT;
	int r = config_load(path, &cfg, &err);
	if (r == 0)
		fail_msg("accepted: %s", text);
	if (strstr(buf_cstr(&err), needle1) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", buf_cstr(&err), needle1);
	if (needle2 && strstr(buf_cstr(&err), needle2) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", buf_cstr(&err), needle2);
	/* the message names the file */
	assert_non_null(strstr(buf_cstr(&err), "bad.conf"));
	buf_free(&err);
}

static void test_defaults(void **state)
{
	struct config cfg;
	config_defaults(&cfg);
	assert_non_null(cfg.hostname);
	assert_true(cfg.hostname[0] != '\0');
	assert_string_equal(cfg.data_dir, "/var/lib/dakiya");
	assert_string_equal(cfg.resolver, "system");
	assert_string_equal(cfg.user, "");
	assert_string_equal(cfg.log_level, "info");
	assert_int_equal(cfg.workers, 0);
	assert_false(cfg.dev);
	assert_int_equal(cfg.limits.message_size, 52428800);
	assert_int_equal(cfg.limits.recipients, 1000);
	assert_int_equal(cfg.limits.line_length, 4096);
	assert_int_equal(cfg.limits.connections_per_ip, 50);
	assert_int_equal(cfg.limits.sessions, 10000);
	assert_int_equal(cfg.limits.command_timeout, 300);
	assert_int_equal(cfg.limits.data_timeout, 600);
	assert_int_equal(cfg.limits.errors, 10);
	assert_int_equal(cfg.limits.junk_commands, 100);
	assert_int_equal(cfg.limits.messages_per_session, 10000);
	assert_int_equal(cfg.limits.header_size, 1048576);
	assert_string_equal(cfg.tls.cert, "");
	assert_string_equal(cfg.tls.key, "");
	assert_int_equal(cfg.delivery.port, 25);
	assert_string_equal(cfg.delivery.source, "");
	assert_string_equal(cfg.delivery.family, "any");
	assert_true(cfg.delivery.enabled);
	assert_int_equal(cfg.delivery.scan_interval, 30);
	assert_int_equal(cfg.delivery.retry_min, 300);
	assert_int_equal(cfg.delivery.retry_max, 3600);
	assert_int_equal(cfg.delivery.max_lifetime, 5 * 86400);
	assert_int_equal(cfg.delivery.delay_warning, 4 * 3600);
	assert_int_equal(cfg.delivery.connections, 100);
	assert_int_equal(cfg.delivery.connections_per_domain, 20);
	assert_int_equal(cfg.delivery.connection_cache_time, 2);
	assert_int_equal(cfg.delivery.connection_reuse_max, 100);
	assert_true(cfg.checks.spf);
	assert_int_equal(cfg.checks.timeout, 20);
	assert_true(cfg.checks.dkim);
	assert_true(cfg.checks.dmarc);
	assert_string_equal(cfg.checks.dmarc_reject, "refuse");
	assert_string_equal(cfg.checks.dmarc_quarantine, "junk");
	assert_string_equal(cfg.checks.spf_fail, "junk");
	assert_true(cfg.submission.dkim_sign);
	assert_int_equal(config_listen_count(cfg.listen.smtp), 1);
	assert_string_equal(cfg.listen.smtp[0], "0.0.0.0:25");
	assert_string_equal(cfg.listen.submission[0], "0.0.0.0:587");
	assert_string_equal(cfg.listen.submissions[0], "0.0.0.0:465");
	assert_string_equal(cfg.listen.imap[0], "0.0.0.0:143");
	assert_string_equal(cfg.listen.imaps[0], "0.0.0.0:993");
	assert_string_equal(cfg.listen.pop3[0], "0.0.0.0:110");
	assert_string_equal(cfg.listen.pop3s[0], "0.0.0.0:995");
	config_free(&cfg);
	config_free(&cfg); /* idempotent */
	config_free(NULL);
}

static void test_minimal_file(void **state)
{
	const char *path = write_file("min.conf", "hostname = \"mx.example.test\"\n"
	                                          "data_dir = \"/srv/mail\"\n");
	struct config cfg;
	struct buf err = BUF_INIT;
	assert_int_equal(config_load(path, &cfg, &err), 0);
	assert_string_equal(cfg.path, path);
	assert_string_equal(cfg.hostname, "mx.example.test");
	assert_string_equal(cfg.data_dir, "/srv/mail");
	assert_int_equal(cfg.limits.message_size, 52428800);
	assert_string_equal(cfg.listen.smtp[0], "0.0.0.0:25");
	config_free(&cfg);
	buf_free(&err);
}

static void test_dev_defaults(void **state)
{
	const char *path = write_file("dev.conf", "dev = true\nlisten {}\n");
	struct config cfg;
	struct buf err = BUF_INIT;
	assert_int_equal(config_load(path, &cfg, &err), 0);
	assert_true(cfg.dev);
	assert_string_equal(cfg.listen.smtp[0], "127.0.0.1:2525");
	assert_string_equal(cfg.listen.submission[0], "127.0.0.1:2587");
	assert_string_equal(cfg.listen.submissions[0], "127.0.0.1:2465");
	assert_string_equal(cfg.listen.imap[0], "127.0.0.1:1143");
	assert_string_equal(cfg.listen.imaps[0], "127.0.0.1:1993");
	assert_string_equal(cfg.listen.pop3[0], "127.0.0.1:1110");
	assert_string_equal(cfg.listen.pop3s[0], "127.0.0.1:1995");
	assert_int_equal(cfg.delivery.port, 2525);
	config_free(&cfg);
	buf_free(&err);
}

/* Naming one listener means: only the named ones (no surprise open ports). */
static void test_listen_only_named(void **state)
{
	const char *path =
	    write_file("named.conf", "listen {\n  smtp = {\"127.0.0.9:2525\"}\n  imap = {}\n}\n");
	struct config cfg;
	struct buf err = BUF_INIT;
	assert_int_equal(config_load(path, &cfg, &err), 0);
	assert_int_equal(config_listen_count(cfg.listen.smtp), 1);
	assert_string_equal(cfg.listen.smtp[0], "127.0.0.9:2525");
	assert_int_equal(config_listen_count(cfg.listen.imap), 0);
	assert_non_null(cfg.listen.submission);
	assert_null(cfg.listen.submission[0]);
	assert_int_equal(config_listen_count(cfg.listen.submissions), 0);
	assert_int_equal(config_listen_count(cfg.listen.imaps), 0);
	assert_int_equal(config_listen_count(cfg.listen.pop3), 0);
	assert_int_equal(config_listen_count(cfg.listen.pop3s), 0);
	config_free(&cfg);
	buf_free(&err);
}

static void test_full_file(void **state)
{
	const char *path = write_file("full.conf", "# every option\n"
	                                           "hostname = \"mail.a.test\"\n"
	                                           "data_dir = \"/var/tmp/dakiya-a\"\n"
	                                           "resolver = \"127.0.0.53@5353\"\n"
	                                           "user = \"dakiya\"\n"
	                                           "log_level = \"debug\"\n"
	                                           "workers = 4\n"
	                                           "dev = true\n"
	                                           "listen {\n"
	                                           "  smtp = {\"127.0.0.2:2525\", \"[::1]:2525\"}\n"
	                                           "  submission = {\"127.0.0.2:2587\"}\n"
	                                           "  submissions = {\"127.0.0.2:2465\"}\n"
	                                           "  imap = {\"127.0.0.2:1143\"}\n"
	                                           "  imaps = {\"127.0.0.2:1993\"}\n"
	                                           "  pop3 = {\"127.0.0.2:1110\"}\n"
	                                           "  pop3s = {\"[fe80::1]:1995\"}\n"
	                                           "}\n"
	                                           "limits {\n"
	                                           "  message_size = 1048576\n"
	                                           "  recipients = 10\n"
	                                           "  line_length = 1000\n"
	                                           "  connections_per_ip = 5\n"
	                                           "  sessions = 100\n"
	                                           "  command_timeout = 30\n"
	                                           "  data_timeout = 60\n"
	                                           "  errors = 3\n"
	                                           "  junk_commands = 7\n"
	                                           "  messages_per_session = 9\n"
	                                           "  header_size = 65536\n"
	                                           "}\n"
	                                           "tls {\n"
	                                           "  cert = \"/etc/ssl/a.pem\"\n"
	                                           "  key = \"/etc/ssl/a.key\"\n"
	                                           "}\n"
	                                           "delivery {\n"
	                                           "  port = 2526\n"
	                                           "  source = \"127.0.0.2\"\n"
	                                           "  family = \"prefer-ipv4\"\n"
	                                           "  enabled = false\n"
	                                           "  scan_interval = 5\n"
	                                           "  retry_min = 60\n"
	                                           "  retry_max = 600\n"
	                                           "  max_lifetime = 86400\n"
	                                           "  delay_warning = 0\n"
	                                           "  connections = 8\n"
	                                           "  connections_per_domain = 3\n"
	                                           "  connection_cache_time = 0\n"
	                                           "  connection_reuse_max = 7\n"
	                                           "}\n");
	struct config cfg;
	struct buf err = BUF_INIT;
	int r = config_load(path, &cfg, &err);
	if (r != 0)
		fail_msg("%s", buf_cstr(&err));
	assert_string_equal(cfg.hostname, "mail.a.test");
	assert_string_equal(cfg.data_dir, "/var/tmp/dakiya-a");
	assert_string_equal(cfg.resolver, "127.0.0.53@5353");
	assert_string_equal(cfg.user, "dakiya");
	assert_string_equal(cfg.log_level, "debug");
	assert_int_equal(cfg.workers, 4);
	assert_true(cfg.dev);
	assert_int_equal(config_listen_count(cfg.listen.smtp), 2);
	assert_string_equal(cfg.listen.smtp[0], "127.0.0.2:2525");
	assert_string_equal(cfg.listen.smtp[1], "[::1]:2525");
	assert_null(cfg.listen.smtp[2]);
	assert_string_equal(cfg.listen.submission[0], "127.0.0.2:2587");
	assert_string_equal(cfg.listen.submissions[0], "127.0.0.2:2465");
	assert_string_equal(cfg.listen.imap[0], "127.0.0.2:1143");
	assert_string_equal(cfg.listen.imaps[0], "127.0.0.2:1993");
	assert_string_equal(cfg.listen.pop3[0], "127.0.0.2:1110");
	assert_string_equal(cfg.listen.pop3s[0], "[fe80::1]:1995");
	assert_int_equal(cfg.limits.message_size, 1048576);
	assert_int_equal(cfg.limits.recipients, 10);
	assert_int_equal(cfg.limits.line_length, 1000);
	assert_int_equal(cfg.limits.connections_per_ip, 5);
	assert_int_equal(cfg.limits.sessions, 100);
	assert_int_equal(cfg.limits.command_timeout, 30);
	assert_int_equal(cfg.limits.data_timeout, 60);
	assert_int_equal(cfg.limits.errors, 3);
	assert_int_equal(cfg.limits.junk_commands, 7);
	assert_int_equal(cfg.limits.messages_per_session, 9);
	assert_int_equal(cfg.limits.header_size, 65536);
	assert_string_equal(cfg.tls.cert, "/etc/ssl/a.pem");
	assert_string_equal(cfg.tls.key, "/etc/ssl/a.key");
	assert_int_equal(cfg.delivery.port, 2526);
	assert_string_equal(cfg.delivery.source, "127.0.0.2");
	assert_string_equal(cfg.delivery.family, "prefer-ipv4");
	assert_false(cfg.delivery.enabled);
	assert_int_equal(cfg.delivery.scan_interval, 5);
	assert_int_equal(cfg.delivery.retry_min, 60);
	assert_int_equal(cfg.delivery.retry_max, 600);
	assert_int_equal(cfg.delivery.max_lifetime, 86400);
	assert_int_equal(cfg.delivery.delay_warning, 0);
	assert_int_equal(cfg.delivery.connections, 8);
	assert_int_equal(cfg.delivery.connections_per_domain, 3);
	assert_int_equal(cfg.delivery.connection_cache_time, 0);
	assert_int_equal(cfg.delivery.connection_reuse_max, 7);
	config_free(&cfg);
	buf_free(&err);
}

static void test_unknown_key(void **state)
{
	expect_error("hostname = \"a.test\"\n\nbogus = 1\n", "bad.conf:3:", "bogus");
	/* inside a section, the line is still right */
	expect_error("limits {\n  message_size = 2048\n  mesage_size = 1\n}\n",
	    "bad.conf:3:", "mesage_size");
	expect_error("listen {\n  lmtp = {\"127.0.0.1:24\"}\n}\n", "bad.conf:2:", "lmtp");
	expect_error("nosuchsection {\n}\n", "bad.conf:1:", "nosuchsection");
}

static void test_wrong_type(void **state)
{
	expect_error("\nworkers = \"four\"\n", "bad.conf:2:", "workers");
	expect_error("dev = maybe\n", "bad.conf:1:", "dev");
	expect_error("limits {\n\n\n message_size = 1.5\n}\n", "bad.conf:4:", "message_size");
	expect_error("limits = 5\n", "bad.conf:1:", "limits");
	expect_error("hostname = \"unterminated\n", "bad.conf", NULL);
}

static void test_bad_values(void **state)
{
	expect_error("limits {\n  recipients = 0\n}\n", "bad.conf:2:", "limits.recipients");
	expect_error("limits {\n  message_size = -1\n}\n", "bad.conf:2:", "out of range");
	expect_error("limits {\n  line_length = 100\n}\n", "bad.conf:2:", "line_length");
	expect_error("workers = -3\n", "bad.conf:1:", "workers");
	expect_error("delivery {\n  port = 70000\n}\n", "bad.conf:2:", "delivery.port");
	expect_error("log_level = \"verbose\"\n", "bad.conf:1:", "log_level");
	expect_error("\ndelivery { family = \"ipv5\" }\n", "bad.conf:2:", "family");
	expect_error("delivery { source = \"example.com\" }\n", "bad.conf:1:", "source");
	expect_error("delivery { scan_interval = 0 }\n", "bad.conf:1:", "delivery.scan_interval");
	expect_error("delivery { retry_min = -1 }\n", "bad.conf:1:", "delivery.retry_min");
	expect_error(
	    "delivery { max_lifetime = 999999999 }\n", "bad.conf:1:", "delivery.max_lifetime");
	expect_error("delivery { connections = 0 }\n", "bad.conf:1:", "delivery.connections");
	expect_error("\ndelivery { connections_per_domain = 0 }\n",
	    "bad.conf:2:", "delivery.connections_per_domain");
	expect_error("delivery { connection_cache_time = 301 }\n",
	    "bad.conf:1:", "delivery.connection_cache_time");
	expect_error("delivery { connection_reuse_max = 0 }\n",
	    "bad.conf:1:", "delivery.connection_reuse_max");
	expect_error("checks { timeout = 0 }\n", "bad.conf:1:", "checks.timeout");
	expect_error("checks { spf = maybe }\n", "bad.conf:1:", "spf");
	expect_error("checks { dmarc_reject = \"bounce\" }\n", "bad.conf:1:",
	    "checks.dmarc_reject \"bounce\" is not one of refuse, junk, deliver");
	expect_error("\nchecks { spf_fail = \"\" }\n", "bad.conf:2:", "checks.spf_fail");
	expect_error("checks { dkim = 2 }\n", "bad.conf:1:", "dkim");
	expect_error("resolver = \"8.8.8.8@dns\"\n", "bad.conf:1:", "resolver");
	expect_error("resolver = \"dns.example\"\n", "bad.conf:1:", "resolver");
	expect_error("hostname = \"bad host\"\n", "bad.conf:1:", "hostname");
	expect_error("hostname = \"\"\n", "bad.conf:1:", "hostname");
	expect_error("data_dir = \"\"\n", "bad.conf:1:", "data_dir");
	expect_error("tls { cert = \"/a.pem\" }\n", "bad.conf", "key");
}

static void test_bad_listen(void **state)
{
	static const char *const bad[] = {
	    "127.0.0.1",       /* no port */
	    "127.0.0.1:",      /* empty port */
	    "127.0.0.1:0",     /* port 0 */
	    "127.0.0.1:65536", /* too big */
	    "127.0.0.1:25x",   /* junk */
	    "127.0.0.1:+25",   /* sign */
	    "::1:25",          /* v6 without brackets */
	    "[::1]25",         /* missing colon */
	    "[::1:25",         /* missing bracket */
	    "[127.0.0.1]:25",  /* v4 in brackets */
	    "localhost:25",    /* not numeric */
	    "256.0.0.1:25",    /* bad octet */
	    ":25",             /* no host */
	    "[]:25",           /* empty v6 */
	    "",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(config_parse_listen(bad[i], NULL, NULL), -1);
		char text[256];
		snprintf(text, sizeof text, "listen {\n  smtp = {\"%s\"}\n}\n", bad[i]);
		expect_error(text, "bad.conf:2:", "listen.smtp");
	}
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(config_parse_listen("127.0.0.1:2525", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(config_parse_listen("[::]:25", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(config_parse_listen("0.0.0.0:65535", NULL, NULL), 0);
}

static void test_relative_data_dir(void **state)
{
	char sub[512], path[600], want[700];
	snprintf(sub, sizeof sub, "%s/etc", tmpdir);
	mkdir(sub, 0700);
	snprintf(path, sizeof path, "%s/rel.conf", sub);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(
	    "data_dir = \"data\"\ntls {\n cert = \"./tls/cert.pem\"\n key = \"/abs/key.pem\"\n}\n",
	    f);
	fclose(f);

	/* load it through a relative path from another working directory */
	char cwd[512];
	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(tmpdir), 0);
	struct config cfg;
	struct buf err = BUF_INIT;
	int r = config_load("etc/rel.conf", &cfg, &err);
	assert_int_equal(chdir(cwd), 0);
	if (r != 0)
		fail_msg("%s", buf_cstr(&err));

	char *real = realpath(sub, NULL);
	assert_non_null(real);
	snprintf(want, sizeof want, "%s/data", real);
	assert_string_equal(cfg.data_dir, want);
	snprintf(want, sizeof want, "%s/tls/cert.pem", real);
	assert_string_equal(cfg.tls.cert, want);
	assert_string_equal(cfg.tls.key, "/abs/key.pem");
	free(real);
	config_free(&cfg);
	buf_free(&err);
}

static void test_missing_file(void **state)
{
	char path[512];
	snprintf(path, sizeof path, "%s/does-not-exist.conf", tmpdir);
	struct config cfg;
	struct buf err = BUF_INIT;
	assert_int_equal(config_load(path, &cfg, &err), -1);
	assert_non_null(strstr(buf_cstr(&err), "does-not-exist.conf"));
	assert_non_null(strstr(buf_cstr(&err), "No such file"));
	buf_reset(&err);
	/* a directory is not a config file */
	assert_int_equal(config_load(tmpdir, &cfg, &err), -1);
	assert_non_null(strstr(buf_cstr(&err), "not a regular file"));
	buf_free(&err);
}

static void test_default_path(void **state)
{
	unsetenv("DAKIYA_CONFIG");
	assert_string_equal(config_default_path(NULL), "/etc/dakiya/dakiya.conf");
	assert_string_equal(config_default_path("x.conf"), "x.conf");
	setenv("DAKIYA_CONFIG", "/env/d.conf", 1);
	assert_string_equal(config_default_path(NULL), "/env/d.conf");
	assert_string_equal(config_default_path(""), "/env/d.conf");
	assert_string_equal(config_default_path("x.conf"), "x.conf");
	setenv("DAKIYA_CONFIG", "", 1);
	assert_string_equal(config_default_path(NULL), "/etc/dakiya/dakiya.conf");
	unsetenv("DAKIYA_CONFIG");
}

static void test_syntax_helpers(void **state)
{
	assert_true(config_valid_resolver("system"));
	assert_true(config_valid_resolver("127.0.0.53"));
	assert_true(config_valid_resolver("127.0.0.53@5353"));
	assert_true(config_valid_resolver("::1@53"));
	assert_false(config_valid_resolver(""));
	assert_false(config_valid_resolver("@53"));
	assert_false(config_valid_resolver("127.0.0.1@"));
	assert_false(config_valid_resolver("127.0.0.1@99999"));
	/* several forwarders, separated by commas and/or spaces */
	assert_true(config_valid_resolver("127.0.0.53@5353, 127.0.0.54@5353"));
	assert_true(config_valid_resolver("127.0.0.53 ::1@53"));
	assert_false(config_valid_resolver("127.0.0.53@5353, dns.example"));
	assert_false(config_valid_resolver(" , "));
	assert_false(config_valid_resolver("system, 127.0.0.53"));
	assert_true(config_valid_hostname("mail.example.test"));
	assert_true(config_valid_hostname("localhost"));
	assert_true(config_valid_hostname("xn--bcher-kva.example"));
	assert_false(config_valid_hostname("-a.test"));
	assert_false(config_valid_hostname("a-.test"));
	assert_false(config_valid_hostname("a..test"));
	assert_false(config_valid_hostname(".a.test"));
	assert_false(config_valid_hostname("a.test."));
	assert_false(config_valid_hostname("a_b.test"));
	assert_int_equal(config_log_level("debug"), 0);
	assert_int_equal(config_log_level("error"), 3);
	assert_int_equal(config_log_level("fatal"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_minimal_file),
	    cmocka_unit_test(test_dev_defaults),
	    cmocka_unit_test(test_listen_only_named),
	    cmocka_unit_test(test_full_file),
	    cmocka_unit_test(test_unknown_key),
	    cmocka_unit_test(test_wrong_type),
	    cmocka_unit_test(test_bad_values),
	    cmocka_unit_test(test_bad_listen),
	    cmocka_unit_test(test_relative_data_dir),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_default_path),
	    cmocka_unit_test(test_syntax_helpers),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
