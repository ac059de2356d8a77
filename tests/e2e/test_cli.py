"""The command-line contract (DESIGN.md, "Command-line contract").

quickstart -> serve -> mail for postmaster@D; domain/user/alias changes take
effect in the running server at once; passwords never come from argv;
--help everywhere; errors exit 1 with a message.
"""
import json
import os
import re
import signal
import smtplib
import subprocess
from pathlib import Path

import pytest

from conftest import (DAKIYA, SMTP_PORT, Server, assert_stored, next_ip, open_conn, split_received, unique,
                      wait_port)


def run(*args, input=None, env=None, timeout=60):
    e = dict(os.environ)
    e.pop("DAKIYA_CONFIG", None)
    e.update(env or {})
    return subprocess.run([DAKIYA, *args], input=input, capture_output=True, timeout=timeout, env=e)


def assert_user_error(r, what):
    assert r.returncode == 1, "%s: exit %d, stdout %r, stderr %r" % (what, r.returncode, r.stdout, r.stderr)
    err = r.stderr.decode(errors="replace").strip()
    assert err, "%s: exit 1 without a message" % what
    assert "dakiya" in err.splitlines()[-1] or len(err) > 10, err


@pytest.fixture(scope="module")
def server(module_server):
    return module_server()


def rcpt_code(server, address):
    c = open_conn(server.ip)
    try:
        c.expect("MAIL FROM:<s@other.test>", 250)
        code, text = c.cmd("RCPT TO:<%s>" % address)
        return code, text
    finally:
        c.close()


def deliver(server, rcpt, subject):
    content = ("From: s@other.test\r\nSubject: %s\r\n\r\nhello\r\n" % subject).encode()
    c = open_conn(server.ip)
    try:
        return c.send_message("s@other.test", [rcpt], content), content
    finally:
        c.close()


# ---------------------------------------------------------------- quickstart and serve

def test_quickstart_then_serve(tmp_path, make_dns):
    d = tmp_path / "qs"
    ip = next_ip()
    dns = make_dns({})  # SPF of received mail is on by default: it asks this one
    r = run("quickstart", "--domain", "qs.test", "--dir", str(d), "--dev", "--listen", ip,
            "--resolver", dns.addr)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode() + r.stderr.decode()
    m = re.search(r"password\W+([A-Za-z0-9!-~]{12,})", out, re.I)
    assert m, "no generated password printed:\n" + out
    password = m.group(1)
    assert out.count(password) == 1, "the password must be printed once"
    conf = d / "dakiya.conf"
    assert conf.is_file()
    assert "postmaster@qs.test" in out
    # the password is stored only as a hash
    for p in d.rglob("*"):
        if p.is_file():
            assert password.encode() not in p.read_bytes(), "plain-text password in %s" % p
    users = run("-c", str(conf), "user", "list")
    assert users.returncode == 0 and b"postmaster@qs.test" in users.stdout
    domains = run("-c", str(conf), "domain", "list")
    assert b"qs.test" in domains.stdout

    log = open(d / "serve.log", "wb")
    proc = subprocess.Popen([DAKIYA, "serve", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(ip, SMTP_PORT, proc=proc)
        c = open_conn(ip, ehlo=False)
        text = c.expect("EHLO client.test", 250)
        assert text.splitlines()[0].startswith("250-mail.qs.test") or "qs.test" in text
        content = b"From: s@other.test\r\nSubject: first mail\r\n\r\nwelcome\r\n"
        qid = c.send_message("s@other.test", ["postmaster@qs.test"], content)
        c.expect("RCPT TO:<nobody@qs.test>", 503)  # no MAIL: still a clean state machine
        c.close()
        with smtplib.SMTP(ip, SMTP_PORT, local_hostname="client.test", timeout=30) as s:
            s.sendmail("s@other.test", ["postmaster@QS.TEST"], b"Subject: second\r\n\r\nx\r\n")
        got = run("-c", str(conf), "mailbox", "list", "postmaster@qs.test", "--json")
        assert got.returncode == 0, got.stderr
        msgs = json.loads(got.stdout)
        assert sorted(m["subject"] for m in msgs) == ["first mail", "second"]
        first = [m for m in msgs if m["subject"] == "first mail"][0]
        shown = run("-c", str(conf), "mailbox", "show", "postmaster@qs.test", str(first["uid"]))
        # SPF is on in a quickstart configuration: our Authentication-Results
        # comes first (other.test has no SPF record in this DNS), then Received:
        ar, rest = split_received(shown.stdout, b"Authentication-Results")
        assert ar.startswith(b"Authentication-Results: mail.qs.test;\r\n\tspf=none ("), ar
        assert b"smtp.mailfrom=s@other.test" in ar, ar
        assert_stored(rest, content, qid, "postmaster@qs.test")
    finally:
        alive = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        log.close()
    text = (d / "serve.log").read_text(errors="replace")
    assert alive, text[-3000:]
    assert rc == 0, text[-3000:]
    assert "AddressSanitizer" not in text and "runtime error:" not in text, text[-3000:]


def test_quickstart_needs_a_domain(tmp_path):
    assert_user_error(run("quickstart", "--dir", str(tmp_path / "x"), "--dev"), "quickstart without --domain")
    assert_user_error(run("quickstart", "--domain", "not a domain", "--dir", str(tmp_path / "y"), "--dev"),
                      "quickstart with a bad domain")


def test_serve_refuses_a_missing_config(tmp_path):
    r = run("-c", str(tmp_path / "nope.conf"), "serve", timeout=20)
    assert_user_error(r, "serve with a missing config")


# ---------------------------------------------------------------- configuration errors

@pytest.mark.parametrize("line", [
    "bogus_option = 1",
    "limits {\n  recipients = 0\n}",
    "limits {\n  no_such_limit = 5\n}",
    'hostname = "bad host name"',
])
def test_bad_config_is_an_error_naming_the_line(tmp_path, line):
    s = Server(tmp_path / "srv")
    text = s.conf.read_text()
    lineno = text.count("\n") + 1
    s.conf.write_text(text + line + "\n")
    bad_line = lineno + (1 if line.startswith("limits") else 0)
    r = run("-c", str(s.conf), "serve", timeout=20)
    assert_user_error(r, "serve with %r" % line)
    err = r.stderr.decode(errors="replace")
    assert "dakiya.conf:%d" % bad_line in err or "line %d" % bad_line in err, err


# ---------------------------------------------------------------- changes while the server runs

def test_user_added_while_running_gets_mail_at_once(server):
    addr = "%s@example.test" % unique("live")
    assert rcpt_code(server, addr)[0] == 550
    server.add_user(addr)
    code, text = rcpt_code(server, addr)
    assert code == 250, text
    qid, content = deliver(server, addr, "welcome")
    got = server.mailbox(addr)
    assert len(got) == 1
    assert_stored(server.message(addr, got[0]["uid"]), content, qid, addr)


def test_user_deleted_while_running_is_refused_at_once(server):
    addr = "%s@example.test" % unique("gone")
    server.add_user(addr)
    deliver(server, addr, "before")
    server.cli("user", "del", addr)
    code, text = rcpt_code(server, addr)
    assert (code, text[4:10]) == (550, "5.1.1 "), text
    assert addr.encode() not in server.cli("user", "list").stdout


def test_many_live_user_changes(server):
    # every worker thread must see each change, not only the first one
    for i in range(6):
        addr = "%s@example.test" % unique("churn")
        server.add_user(addr)
        for _ in range(3):
            code, text = rcpt_code(server, addr)
            assert code == 250, "round %d: %s" % (i, text)
        deliver(server, addr, "churn %d" % i)
        assert len(server.mailbox(addr)) == 1, "round %d: message not stored" % i


def test_domain_add_and_del_while_running(server):
    dom = "%s.test" % unique("dom")
    assert rcpt_code(server, "carol@%s" % dom)[0] == 550
    server.cli("domain", "add", dom)
    assert dom.encode() in server.cli("domain", "list").stdout
    server.add_user("carol@%s" % dom)
    code, text = rcpt_code(server, "carol@%s" % dom)
    assert code == 250, text
    code, text = rcpt_code(server, "nobody@%s" % dom)
    assert (code, text[4:10]) == (550, "5.1.1 "), text
    deliver(server, "carol@%s" % dom, "new domain")
    assert len(server.mailbox("carol@%s" % dom)) == 1
    server.cli("domain", "del", dom)
    assert dom.encode() not in server.cli("domain", "list").stdout
    code, text = rcpt_code(server, "carol@%s" % dom)
    assert (code, text[4:10]) == (550, "5.7.1 "), text


def test_alias_add_list_del_while_running(server):
    alias = "%s@example.test" % unique("alias")
    assert rcpt_code(server, alias)[0] == 550
    server.cli("alias", "add", alias, "alice@example.test", "bob@example.test")
    listed = server.cli("alias", "list").stdout.decode()
    assert alias in listed and "alice@example.test" in listed and "bob@example.test" in listed
    js = json.loads(server.cli("alias", "list", "--json").stdout)
    assert isinstance(js, list) and alias in json.dumps(js)
    before_a, before_b = len(server.mailbox("alice@example.test")), len(server.mailbox("bob@example.test"))
    deliver(server, alias, "to the alias")
    assert len(server.mailbox("alice@example.test")) == before_a + 1
    assert len(server.mailbox("bob@example.test")) == before_b + 1
    server.cli("alias", "del", alias, "bob@example.test")
    deliver(server, alias, "alice only")
    assert len(server.mailbox("alice@example.test")) == before_a + 2
    assert len(server.mailbox("bob@example.test")) == before_b + 1
    server.cli("alias", "del", alias)
    code, text = rcpt_code(server, alias)
    assert (code, text[4:10]) == (550, "5.1.1 "), text


def test_catch_all_add_and_del_while_running(server):
    dom = "%s.test" % unique("catch")
    server.cli("domain", "add", dom)
    server.add_user("box@%s" % dom)
    assert rcpt_code(server, "random@%s" % dom)[0] == 550
    server.cli("alias", "add", "@%s" % dom, "box@%s" % dom)
    assert rcpt_code(server, "random@%s" % dom)[0] == 250
    deliver(server, "anything-at-all@%s" % dom, "caught")
    assert [m["subject"] for m in server.mailbox("box@%s" % dom)] == ["caught"]
    server.cli("alias", "del", "@%s" % dom)
    assert rcpt_code(server, "random@%s" % dom)[0] == 550


# ---------------------------------------------------------------- passwords

def test_user_add_never_takes_a_password_from_argv(server):
    addr = "%s@example.test" % unique("argv")
    assert_user_error(server.cli("user", "add", addr, "hunter2-Secret", check=False), "password as argument")
    assert_user_error(server.cli("user", "add", addr, "--password", "hunter2-Secret", check=False),
                      "--password option")
    assert_user_error(server.cli("user", "add", addr, "--password=hunter2-Secret", check=False),
                      "--password= option")
    assert addr.encode() not in server.cli("user", "list").stdout


def test_password_stdin_is_hashed(server):
    addr = "%s@example.test" % unique("pw")
    secret = "correct-horse-%s" % unique("battery")
    server.cli("user", "add", addr, "--password-stdin", input=(secret + "\n").encode())
    assert addr.encode() in server.cli("user", "list").stdout
    server.cli("user", "passwd", addr, "--password-stdin", input=b"another-Passw0rd-here\n")
    for p in Path(server.dir).rglob("*"):
        if p.is_file() and p.name != "serve.log":
            assert secret.encode() not in p.read_bytes(), "plain-text password in %s" % p
    assert secret not in server.log_text()


def test_passwd_for_unknown_user_fails(server):
    assert_user_error(server.cli("user", "passwd", "nobody@example.test", "--password-stdin",
                                 input=b"long-enough-pass\n", check=False), "passwd unknown user")


# ---------------------------------------------------------------- global options

def test_config_option_anywhere_and_from_environment(server):
    a = run("-c", str(server.conf), "user", "list").stdout
    b = run("user", "list", "-c", str(server.conf)).stdout
    c = run("user", "-c", str(server.conf), "list").stdout
    d = run("user", "list", env={"DAKIYA_CONFIG": str(server.conf)}).stdout
    e = run("--config=%s" % server.conf, "user", "list").stdout
    assert a == b == c == d == e and b"alice@example.test" in a


def test_json_anywhere(server):
    a = json.loads(run("--json", "-c", str(server.conf), "domain", "list").stdout)
    b = json.loads(run("-c", str(server.conf), "domain", "list", "--json").stdout)
    assert a == b and "example.test" in json.dumps(a)
    users = json.loads(run("-c", str(server.conf), "user", "list", "--json").stdout)
    assert "alice@example.test" in json.dumps(users)


def test_mailbox_folders(server):
    for folder in ("INBOX", "Junk", "Sent", "Drafts", "Trash"):
        r = run("-c", str(server.conf), "mailbox", "list", "alice@example.test", "--folder", folder, "--json")
        assert r.returncode == 0, (folder, r.stderr)
        assert isinstance(json.loads(r.stdout), list)
    assert_user_error(run("-c", str(server.conf), "mailbox", "list", "alice@example.test",
                          "--folder", "NoSuchFolder"), "unknown folder")


# ---------------------------------------------------------------- --help and errors

HELP = [
    [], ["quickstart"], ["serve"],
    ["domain"], ["domain", "add"], ["domain", "list"], ["domain", "del"],
    ["user"], ["user", "add"], ["user", "list"], ["user", "del"], ["user", "passwd"],
    ["alias"], ["alias", "add"], ["alias", "list"], ["alias", "del"],
    ["mailbox"], ["mailbox", "list"], ["mailbox", "show"],
]


@pytest.mark.parametrize("words", HELP, ids=[" ".join(w) or "dakiya" for w in HELP])
def test_help(tmp_path, words):
    # no configuration needed, nothing started, exit 0, a manual on stdout
    r = run(*words, "--help", timeout=20)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert len(out) > 80, out
    for w in words[:1]:
        assert w in out
    if words:
        h = run("help", *words[:1], timeout=20)
        assert h.returncode == 0 and len(h.stdout) > 80


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith(b"dakiya ")


ERRORS = [
    ["frobnicate"],
    ["--frobnicate"],
    [],
    ["domain"],
    ["domain", "add"],
    ["domain", "add", "bad domain"],
    ["domain", "del", "never-added.test"],
    ["domain", "frob", "x.test"],
    ["user", "add"],
    ["user", "add", "not-an-address", "--password-stdin"],
    ["user", "add", "a@never-added.test", "--password-stdin"],
    ["user", "add", "alice@example.test", "--password-stdin"],  # exists already
    ["user", "del", "nobody@example.test"],
    ["alias", "add", "x@example.test"],
    ["alias", "add", "x@other.test", "alice@example.test"],
    ["alias", "del", "never@example.test"],
    ["mailbox", "list", "nobody@example.test"],
    ["mailbox", "show", "alice@example.test", "999999"],
    ["mailbox", "show", "alice@example.test", "notanumber"],
    ["mailbox", "show", "alice@example.test"],
]


@pytest.mark.parametrize("words", ERRORS, ids=[" ".join(w) or "nothing" for w in ERRORS])
def test_errors_exit_1_with_a_message(server, words):
    r = run("-c", str(server.conf), *words, input=b"long-enough-Passw0rd\n")
    assert_user_error(r, " ".join(words))


def test_missing_config_file_is_an_error(tmp_path):
    assert_user_error(run("-c", str(tmp_path / "missing.conf"), "user", "list"), "missing config")
    assert_user_error(run("-c"), "-c without a file")


def test_quickstart_json_makes_dkim_keys_and_lists_the_records(tmp_path):
    """quickstart makes the domain's RSA and Ed25519 signing keys and, with
    --json, gives the records to publish as 'dns records --json' does."""
    d = tmp_path / "qj"
    r = run("quickstart", "--domain", "qj.test", "--dir", str(d), "--dev", "--listen",
            "127.0.0.1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    types = [(x["name"].split(".")[0][-1:] if "_domainkey" in x["name"] else x["name"], x["type"])
             for x in out["dns_records"]]
    assert types == [("qj.test", "MX"), ("qj.test", "TXT"), ("r", "TXT"), ("e", "TXT"),
                     ("_dmarc.qj.test", "TXT")], out["dns_records"]
    conf = str(d / "dakiya.conf")
    keys = json.loads(run("-c", conf, "dkim", "list", "qj.test", "--json").stdout)
    assert [(k["algorithm"], k["signing"]) for k in keys] == [("rsa", True), ("ed25519", True)]
    again = json.loads(run("-c", conf, "dns", "records", "qj.test", "--json").stdout)
    assert again == out["dns_records"]
