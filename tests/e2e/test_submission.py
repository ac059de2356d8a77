"""Submission (issue 3): STARTTLS and implicit TLS, AUTH, the sender's rules.

Real clients (Python smtplib and ssl, swaks, curl, openssl s_client) and raw
protocol conversations against servers made with `tls=True` (a self-signed
EC certificate; listeners smtp 2525, submission 2587 with STARTTLS,
submissions 2465 with implicit TLS).

Most tests share one module server. Tests that fail logins use their own
loopback source address (the failed-login throttle is per client IP), and
tests that need other settings (plain AUTH on loopback, received_login,
hourly limits, a single worker, reloads, the block after ten failures) get a
server of their own.
"""
import base64
import itertools
import json
import os
import re
import select
import signal
import smtplib
import sqlite3
import ssl
import subprocess
import time

import pytest

from conftest import (SMTP_PORT, SUBMISSION_PORT, SUBMISSIONS_PORT, Conn, dot_stuff,
                      make_cert, queue_id)

PW = "secret-Passw0rd"
D = "example.test"
ALICE = "alice@" + D
BOB = "bob@" + D
CAROL = "carol@" + D

TLS_COMMENT_RE = re.compile(rb"\(version=TLS1_[23] cipher=[A-Za-z0-9_-]+ bits=\d+/\d+\)")


@pytest.fixture(scope="module")
def srv(module_server):
    s = module_server(users=("alice", "bob", "carol"), tls=True, start=False)
    s.cli("alias", "add", "sales@" + D, ALICE)            # alice owns it (direct target)
    s.cli("alias", "add", "team@" + D, ALICE, BOB)        # both own it
    s.cli("alias", "add", "info@" + D, "sales@" + D)      # indirect: nobody owns it
    s.cli("alias", "add", "bobby@" + D, BOB)              # bob's, not alice's
    return s.start()


# ---------------------------------------------------------------- helpers

_src = itertools.count(1)


def src_ip():
    """A loopback source address no other test of this run uses: the
    failed-login throttle counts per client IP."""
    n = next(_src)
    return "127.%d.%d.%d" % (100 + os.getpid() % 100, n // 250, n % 250 + 1)


_subj = itertools.count(1)


def subject(prefix="s"):
    return "%s-%d-%d" % (prefix, os.getpid(), next(_subj))


def ctx(maximum=None):
    c = ssl._create_unverified_context()
    if maximum is not None:
        c.maximum_version = maximum
    return c


def plain(user, pw=PW, authz=""):
    return base64.b64encode(("%s\0%s\0%s" % (authz, user, pw)).encode()).decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def msg(subj, frm=ALICE, to=BOB, extra=b"", body=b"hello\r\n"):
    """A message (CRLF) with From:, To:, Subject: and no Date:/Message-ID:."""
    h = b"From: %s\r\nTo: %s\r\nSubject: %s\r\n" % (frm.encode(), to.encode(), subj.encode())
    return h + extra + b"\r\n" + body


def tls_conn(srv, port=SUBMISSION_PORT, source=None, ehlo=True, context=None):
    """A raw Conn over TLS: STARTTLS on 2587/2525, implicit on 2465; EHLO
    repeated after the handshake unless ehlo=False (c.ehlo_text keeps it)."""
    c = Conn(srv.ip, port, source=source)
    if port == SUBMISSIONS_PORT:
        c.starttls(context)
        code, text = c.reply()
        assert code == 220, text
    else:
        code, text = c.reply()
        assert code == 220, text
        text = c.expect("EHLO client.test", 250)
        assert "STARTTLS" in text, text
        c.expect("STARTTLS", 220, "2.0.0")
        c.starttls(context)
    if ehlo:
        c.ehlo_text = c.expect("EHLO client.test", 250)
    return c


def login(c, user=ALICE, pw=PW):
    c.expect("AUTH PLAIN " + plain(user, pw), 235, "2.7.0")
    return c


def data(c, content):
    """DATA and the content; the reply to the final dot."""
    c.expect("DATA", 354)
    c.send(dot_stuff(content) + b".\r\n")
    return c.reply()


def find(srv, rcpt, subj):
    """The stored bytes of the one message with this Subject in rcpt's INBOX,
    or None."""
    got = [m for m in srv.mailbox(rcpt) if m["subject"] == subj]
    assert len(got) <= 1, got
    return srv.message(rcpt, got[0]["uid"]) if got else None


def header_fields(raw):
    """The header fields of stored bytes as (name lowercased, unfolded value)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    out = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + b" " + line.strip())
        else:
            name, _, value = line.partition(b":")
            out.append((name.strip().lower().decode(), value.strip()))
    return out


def fields(raw, name):
    return [v for n, v in header_fields(raw) if n == name]


def the_received(raw):
    r = fields(raw, "received")
    assert len(r) == 1, "want exactly one Received:, got %r" % r
    return r[0]


def qlist(srv):
    return json.loads(srv.cli("queue", "list", "--json").stdout)


def qrcpts(entry):
    return sorted(x if isinstance(x, str) else x.get("address") for x in entry["recipients"])


def wait_log(srv, pattern, n=1, timeout=15.0):
    """Wait until the server log matches pattern (a regex) n times; the matches."""
    deadline = time.time() + timeout
    while True:
        found = re.findall(pattern, srv.log_text(), re.M)
        if len(found) >= n:
            return found
        if time.time() > deadline:
            raise AssertionError("log has %d of %d lines matching %r; log:\n%s" % (
                len(found), n, pattern, srv.log_text()[-3000:]))
        time.sleep(0.05)


def peer_cert(srv, port):
    """The DER certificate a new TLS connection on port is shown."""
    c = Conn(srv.ip, port)
    try:
        if port != SUBMISSIONS_PORT:
            assert c.reply()[0] == 220
            c.expect("EHLO client.test", 250)
            c.expect("STARTTLS", 220)
        sock = c.starttls()
        return sock.getpeercert(binary_form=True)
    finally:
        c.close()


def der(pem_path):
    return ssl.PEM_cert_to_DER_cert(pem_path.read_text())


def run(cmd, input=None, timeout=60):
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)


def assert_submitted(raw, qid=None, tls=True, login=None):
    """raw was submitted by an authenticated client: exactly one Received:
    naming ESMTPSA (ESMTPA without TLS), the TLS facts, the queue id; the
    login only when asked for."""
    rcv = the_received(raw)
    proto = b"ESMTPSA" if tls else b"ESMTPA"
    assert re.search(rb" by mail\.example\.test \(dakiya\) with " + proto + rb" id ", rcv), rcv
    assert bool(TLS_COMMENT_RE.search(rcv)) == tls, rcv
    if qid is not None:
        assert (b" id " + qid.encode()) in rcv, (qid, rcv)
    if login is None:
        assert b"authenticated" not in rcv and b"alice" not in rcv, rcv
    else:
        assert (b"(authenticated as " + login.encode() + b")") in rcv, rcv
    return rcv


# ================================================================ real clients

def test_smtplib_starttls_login_alice_to_bob_one_received(srv):
    subj = subject("smtplib")
    content = msg(subj, body=b"Hi Bob.\r\n.a dotted line\r\n")
    with smtplib.SMTP(srv.ip, SUBMISSION_PORT, local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        assert not s.has_extn("auth"), "AUTH offered before TLS"
        s.starttls(context=ctx())
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS offered again over TLS"
        assert set(s.esmtp_features["auth"].upper().split()) == {"PLAIN", "LOGIN"}
        s.login(ALICE, PW)
        cipher = s.sock.cipher()
        s.mail(ALICE)
        s.rcpt(BOB)
        code, resp = s.data(content)
        assert code == 250, resp
    qid = queue_id("250 " + resp.decode())
    raw = find(srv, BOB, subj)
    assert raw is not None, "not in bob's INBOX"
    rcv = assert_submitted(raw, qid)
    assert rcv.startswith(b"from client.test ([127.0.0.1]) "), rcv
    assert (b"(version=TLS1_3 cipher=%s bits=%d/%d)" % (
        cipher[0].encode(), cipher[2], cipher[2])) in rcv, (cipher, rcv)
    assert b"for <bob@example.test>" in rcv
    # Date: and Message-ID: were missing: added, once each; the rest as sent
    assert len(fields(raw, "date")) == 1 and len(fields(raw, "message-id")) == 1, raw
    assert re.match(rb"^<[^<>@\s]+@mail\.example\.test>$", fields(raw, "message-id")[0])
    assert raw.endswith(content.split(b"\r\n\r\n", 1)[1])
    assert b"\r\nFrom: alice@example.test\r\nTo: bob@example.test\r\nSubject: %s\r\n" % \
        subj.encode() in raw
    # local recipient: delivered, nothing queued
    assert all(e["id"] != qid for e in qlist(srv))
    wait_log(srv, r"event=tls version=TLSv1\.3 cipher=%s bits=%d resumed=no$" % (
        re.escape(cipher[0]), cipher[2]))


@pytest.mark.parametrize("mech,initial", [("PLAIN", True), ("PLAIN", False),
                                          ("LOGIN", True), ("LOGIN", False)])
def test_smtplib_auth_mechanisms(srv, mech, initial):
    with smtplib.SMTP(srv.ip, SUBMISSION_PORT, local_hostname="client.test", timeout=30) as s:
        s.starttls(context=ctx())
        s.ehlo()
        s.user, s.password = BOB, PW
        obj = s.auth_plain if mech == "PLAIN" else s.auth_login
        code, resp = s.auth(mech, obj, initial_response_ok=initial)
        assert code == 235 and resp.startswith(b"2.7.0"), (code, resp)
        assert s.mail(BOB)[0] == 250


def test_auth_plain_authzid_same_as_user(srv):
    c = tls_conn(srv)
    c.expect("AUTH PLAIN " + plain(ALICE, authz=ALICE), 235, "2.7.0")
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.close()


def test_smtp_ssl_implicit_tls_465(srv):
    subj = subject("smtps")
    with smtplib.SMTP_SSL(srv.ip, SUBMISSIONS_PORT, local_hostname="client.test",
                          context=ctx(), timeout=30) as s:
        assert s.sock.version() == "TLSv1.3"
        s.ehlo()
        assert not s.has_extn("starttls")
        assert set(s.esmtp_features["auth"].upper().split()) == {"PLAIN", "LOGIN"}
        s.login(ALICE, PW)
        assert s.sendmail(ALICE, [BOB], msg(subj)) == {}
    raw = find(srv, BOB, subj)
    assert raw is not None
    assert_submitted(raw)


@pytest.mark.parametrize("how,port,mech", [("--tls", SUBMISSION_PORT, "PLAIN"),
                                           ("--tlsc", SUBMISSIONS_PORT, "LOGIN")])
def test_swaks(srv, how, port, mech):
    subj = subject("swaks")
    r = run(["swaks", "--server", "%s:%d" % (srv.ip, port), how, "--helo", "client.test",
             "--auth", mech, "--auth-user", ALICE, "--auth-password", PW,
             "--from", ALICE, "--to", BOB, "--header", "Subject: " + subj,
             "--body", "sent by swaks", "--timeout", "30"])
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "235 2.7.0" in out and "250 2.0.0 Ok: queued as" in out, out
    if how == "--tls":
        assert "220 2.0.0 Ready to start TLS" in out, out
    raw = find(srv, BOB, subj)
    assert raw is not None, out
    assert_submitted(raw)
    # swaks ends its body with two blank lines
    assert raw.endswith(b"\r\n\r\nsent by swaks\r\n\r\n\r\n"), raw[-200:]
    assert fields(raw, "from") == [ALICE.encode()], raw


@pytest.mark.parametrize("url", ["smtp://%s:%d", "smtps://%s:%d"])
def test_curl_ssl_reqd(srv, tmp_path, url):
    port = SUBMISSION_PORT if url.startswith("smtp:") else SUBMISSIONS_PORT
    subj = subject("curl")
    f = tmp_path / "m.eml"
    f.write_bytes(msg(subj, body=b"sent by curl\r\n"))
    r = run(["curl", "-sS", "--ssl-reqd", "-k", "--max-time", "30", url % (srv.ip, port),
             "--user", "%s:%s" % (ALICE, PW), "--mail-from", ALICE, "--mail-rcpt", BOB,
             "--upload-file", str(f)])
    assert r.returncode == 0, r.stderr
    raw = find(srv, BOB, subj)
    assert raw is not None
    assert_submitted(raw)
    assert raw.endswith(b"\r\n\r\nsent by curl\r\n")


class SClient:
    """`openssl s_client` run interactively: lines in, replies out."""

    def __init__(self, *args):
        self.p = subprocess.Popen(["openssl", "s_client", *args, "-quiet", "-nocommands"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.buf = b""

    def line(self, timeout=15):
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            r, _, _ = select.select([self.p.stdout], [], [], max(left, 0))
            if not r:
                raise AssertionError("s_client: no reply; have %r" % self.buf)
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError("s_client: closed; have %r; stderr %r" % (
                    self.buf, self.p.stderr.read()))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").rstrip("\r")

    def reply(self):
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return int(lines[-1][:3]), "\n".join(lines)

    def cmd(self, text, code):
        self.p.stdin.write(text.encode() + b"\r\n")
        self.p.stdin.flush()
        got, reply = self.reply()
        assert got == code, "%r -> %s" % (text, reply)
        return reply

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def test_openssl_s_client_starttls_submission(srv):
    subj = subject("s_client")
    sc = SClient("-starttls", "smtp", "-connect", "%s:%d" % (srv.ip, SUBMISSION_PORT))
    try:
        text = sc.cmd("EHLO client.test", 250)
        assert "AUTH PLAIN LOGIN" in text and "STARTTLS" not in text, text
        sc.cmd("AUTH LOGIN", 334)
        sc.cmd(b64(ALICE), 334)
        sc.cmd(b64(PW), 235)
        sc.cmd("MAIL FROM:<%s>" % ALICE, 250)
        sc.cmd("RCPT TO:<%s>" % BOB, 250)
        sc.cmd("DATA", 354)
        body = msg(subj, body=b"sent by s_client\r\n").decode()
        sc.cmd(body + ".", 250)
        sc.cmd("QUIT", 221)
    finally:
        sc.close()
    raw = find(srv, BOB, subj)
    assert raw is not None
    assert_submitted(raw)


def s_client_once(srv, port, *args):
    """One s_client connection that says QUIT; its stdout. -ign_eof lets it
    read the TLS 1.3 tickets that arrive after the handshake before it saves
    the session (-sess_out)."""
    conn = ["-connect", "%s:%d" % (srv.ip, port)]
    if port != SUBMISSIONS_PORT:
        conn = ["-starttls", "smtp"] + conn
    r = run(["openssl", "s_client", *conn, "-ign_eof", *args], input=b"QUIT\r\n", timeout=30)
    out = r.stdout.decode(errors="replace")
    assert "221 " in out, out + r.stderr.decode(errors="replace")
    return out


@pytest.mark.parametrize("port", [SUBMISSION_PORT, SUBMISSIONS_PORT, SMTP_PORT])
@pytest.mark.parametrize("version", ["tls1_3-ticket", "tls1_2-session-id"])
def test_openssl_session_resumed_in_a_later_connection(srv, tmp_path, port, version):
    sess = tmp_path / "sess.pem"
    args = ["-tls1_3"] if version.startswith("tls1_3") else ["-tls1_2", "-no_ticket"]
    want = "TLSv1.3" if version.startswith("tls1_3") else "TLSv1.2"
    before = len(re.findall(r"event=tls version=%s .* resumed=yes$" % want, srv.log_text(), re.M))
    out1 = s_client_once(srv, port, *args, "-sess_out", str(sess))
    assert re.search(r"^New, %s, Cipher is " % want, out1, re.M), out1
    assert sess.exists() and sess.stat().st_size > 0
    out2 = s_client_once(srv, port, *args, "-sess_in", str(sess))
    assert re.search(r"^Reused, %s, Cipher is " % want, out2, re.M), out2
    if want == "TLSv1.2":
        # resumed by its session id (no ticket was offered)
        m = re.search(r"^\s+Session-ID: ([0-9A-F]*)$", out2, re.M)
        assert m and m.group(1), out2
        assert not re.search(r"TLS session ticket:", out2), out2
    wait_log(srv, r"event=tls version=%s .* resumed=yes$" % want, before + 1)


# ================================================================ TLS

def old_tls_context(v):
    c = ctx()
    c.minimum_version = c.maximum_version = v
    c.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that the client really offers it
    return c


@pytest.mark.parametrize("port", [SUBMISSIONS_PORT, SUBMISSION_PORT])
def test_tls_below_1_2_refused(srv, port):
    for v, ok in ((ssl.TLSVersion.TLSv1, False), (ssl.TLSVersion.TLSv1_1, False),
                  (ssl.TLSVersion.TLSv1_2, True), (ssl.TLSVersion.TLSv1_3, True)):
        src = src_ip()
        if ok:
            conn = tls_conn(srv, port, context=old_tls_context(v), source=src)
            assert conn.sock.version() == v.name.replace("TLSv1_", "TLSv1.")
            conn.expect("QUIT", 221)
            conn.close()
            continue
        with pytest.raises(OSError):  # ssl.SSLError, or EOF
            tls_conn(srv, port, context=old_tls_context(v), source=src, ehlo=False)
        # refused by the server for its version, not by a client that did not try
        wait_log(srv, r"event=tls-failed ip=%s error=.*unsupported protocol" % re.escape(src))


@pytest.mark.parametrize("port", [SUBMISSIONS_PORT, SUBMISSION_PORT, SMTP_PORT])
def test_refused_handshake_ends_with_an_alert(srv, port):
    # RFC 8446 6 / RFC 5246 7.2: the side that refuses a handshake says why
    # (protocol_version, alert 70), on implicit TLS and after STARTTLS alike
    with pytest.raises(ssl.SSLError) as e:
        tls_conn(srv, port, context=old_tls_context(ssl.TLSVersion.TLSv1_1), ehlo=False)
    assert "PROTOCOL_VERSION" in str(e.value), repr(e.value)


def test_tls_1_2_facts_in_received_and_log(srv):
    subj = subject("tls12")
    c = tls_conn(srv, context=ctx(maximum=ssl.TLSVersion.TLSv1_2))
    name, version, bits = c.sock.cipher()
    assert version == "TLSv1.2"
    login(c)
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.expect("RCPT TO:<%s>" % BOB, 250)
    code, text = data(c, msg(subj))
    assert code == 250, text
    c.close()
    raw = find(srv, BOB, subj)
    rcv = assert_submitted(raw, queue_id(text))
    assert (b"(version=TLS1_2 cipher=%s bits=%d/%d)" % (name.encode(), bits, bits)) in rcv, rcv
    wait_log(srv, r"event=tls version=TLSv1\.2 cipher=%s bits=%d resumed=no$" % (
        re.escape(name), bits))


def test_certificate_is_the_configured_one(srv):
    want = der(srv.cert)
    for port in (SUBMISSION_PORT, SUBMISSIONS_PORT, SMTP_PORT):
        assert peer_cert(srv, port) == want, port


# ---------------------------------------------------------------- STARTTLS

@pytest.mark.parametrize("port", [SUBMISSION_PORT, SMTP_PORT])
def test_starttls_with_pipelined_command_is_554_and_closed(srv, port):
    c = Conn(srv.ip, port)
    assert c.reply()[0] == 220
    c.expect("EHLO client.test", 250)
    c.send(b"STARTTLS\r\nEHLO x\r\n")  # one packet
    code, text = c.reply()
    assert code == 554 and text.startswith("554 5.5.1 "), text
    assert c.closed(), "connection not closed"
    wait_log(srv, r"event=reject reason=starttls-pipelining ip=127\.0\.0\.1$")


def test_starttls_resets_the_session(srv):
    c = Conn(srv.ip, SUBMISSION_PORT)
    assert c.reply()[0] == 220
    c.expect("EHLO before.test", 250)
    c.expect("STARTTLS", 220, "2.0.0")
    c.starttls()
    # RFC 3207 4.2: the EHLO before TLS is forgotten; no new banner
    c.expect("AUTH PLAIN " + plain(ALICE), 503, "5.5.1")
    c.expect("MAIL FROM:<%s>" % ALICE, 503, "5.5.1")
    text = c.expect("EHLO after.test", 250)
    assert "AUTH PLAIN LOGIN" in text and "STARTTLS" not in text, text
    c.expect("STARTTLS", 503, "5.5.1")  # once only
    login(c)
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.close()


def test_starttls_on_mx_listener_esmtps_no_auth(srv):
    subj = subject("mx")
    c = tls_conn(srv, SMTP_PORT)
    assert "AUTH" not in c.ehlo_text and "STARTTLS" not in c.ehlo_text, c.ehlo_text
    c.expect("AUTH PLAIN " + plain(ALICE), 502)
    c.expect("MAIL FROM:<someone@other.test>", 250)
    c.expect("RCPT TO:<%s>" % BOB, 250)
    code, text = data(c, msg(subj, frm="someone@other.test"))
    assert code == 250, text
    c.close()
    raw = find(srv, BOB, subj)
    rcv = the_received(raw)
    assert b" with ESMTPS id " in rcv and TLS_COMMENT_RE.search(rcv), rcv
    # inbound mail is not touched: no Date:/Message-ID: added
    assert fields(raw, "date") == [] and fields(raw, "message-id") == []


# ================================================================ AUTH refusals

def test_auth_before_tls_is_538(srv):
    c = Conn(srv.ip, SUBMISSION_PORT)
    assert c.reply()[0] == 220
    text = c.expect("EHLO client.test", 250)
    assert "AUTH" not in text, text
    c.expect("AUTH PLAIN " + plain(ALICE), 538, "5.7.11")
    c.expect("AUTH LOGIN", 538, "5.7.11")
    c.expect("MAIL FROM:<%s>" % ALICE, 530, "5.7.0")
    c.close()


def test_auth_on_port_25_is_502(srv):
    c = Conn(srv.ip, SMTP_PORT)
    assert c.reply()[0] == 220
    text = c.expect("EHLO client.test", 250)
    assert "AUTH" not in text and "STARTTLS" in text, text
    c.expect("AUTH PLAIN " + plain(ALICE), 502)
    c.close()


@pytest.mark.parametrize("how", ["plain-wrong-password", "login-wrong-password",
                                 "plain-unknown-user", "plain-as-another-user"])
def test_wrong_credentials_535_after_a_delay(srv, how):
    src = src_ip()
    c = tls_conn(srv, source=src)
    t0 = time.monotonic()
    if how == "plain-wrong-password":
        code, text = c.cmd("AUTH PLAIN " + plain(ALICE, "wrong-password"))
    elif how == "plain-unknown-user":
        code, text = c.cmd("AUTH PLAIN " + plain("nosuch@" + D))
    elif how == "plain-as-another-user":
        # alice's own password, asking to act as bob: no such thing
        code, text = c.cmd("AUTH PLAIN " + plain(ALICE, authz=BOB))
    else:
        c.expect("AUTH LOGIN " + b64(ALICE), 334)
        code, text = c.cmd(b64("wrong-password"))
    took = time.monotonic() - t0
    assert code == 535 and text.startswith("535 5.7.8 "), text
    assert took >= 0.9, "535 after %.2f s: no delay" % took
    wait_log(srv, r"event=auth result=failed user=\S+ ip=%s delay_ms=1000$" % re.escape(src))
    # the session goes on; the right password works, and nothing was sent as alice
    c.expect("MAIL FROM:<%s>" % ALICE, 530, "5.7.0")
    login(c)
    c.close()


def test_failed_login_delays_grow_per_ip(srv):
    src, other = src_ip(), src_ip()
    c = tls_conn(srv, source=src)
    took = []
    for _ in range(3):
        t0 = time.monotonic()
        c.expect("AUTH PLAIN " + plain(ALICE, "bad"), 535, "5.7.8")
        took.append(time.monotonic() - t0)
    # 1 s, 1 s, 2 s
    assert took[0] >= 0.9 and took[1] >= 0.9 and took[2] >= 1.9, took
    got = wait_log(srv, r"ip=%s delay_ms=(\d+)$" % re.escape(src), 3)
    assert got == ["1000", "1000", "2000"], got
    # another address starts at 1 s
    o = tls_conn(srv, source=other)
    t0 = time.monotonic()
    o.expect("AUTH PLAIN " + plain(ALICE, "bad"), 535, "5.7.8")
    assert time.monotonic() - t0 < 1.9
    assert wait_log(srv, r"ip=%s delay_ms=(\d+)$" % re.escape(other)) == ["1000"]
    o.close()
    c.close()


def test_ten_failures_block_the_ip(make_server):
    s = make_server(tls=True)
    bad, good = src_ip(), src_ip()
    conns = []
    try:
        # ten failures at once from one address (each parked in its delay)
        for _ in range(10):
            c = tls_conn(s, source=bad)
            c.send("AUTH PLAIN %s\r\n" % plain(ALICE, "bad"))
            conns.append(c)
        delays = wait_log(s, r"event=auth result=failed .*ip=%s delay_ms=(\d+)$" % re.escape(bad), 10)
        assert sorted(int(d) for d in delays) == [1000, 1000, 2000, 4000, 8000] + [15000] * 5, \
            delays
        # the eleventh attempt, even with the right password: 421 and closed
        c = tls_conn(s, source=bad)
        code, text = c.cmd("AUTH PLAIN " + plain(ALICE))
        assert code == 421 and text.startswith("421 4.7.0 "), text
        assert c.closed()
        c.close()
        wait_log(s, r"event=auth result=blocked ip=%s$" % re.escape(bad))
        # only that address
        login(tls_conn(s, source=good)).close()
        # a parked session still gets its 535 (the first delays are short)
        assert conns[0].reply()[0] == 535
    finally:
        for c in conns:
            c.close()


def test_auth_malformed_base64_is_501(srv):
    c = tls_conn(srv)
    c.expect("AUTH PLAIN !!!not-base64!!!", 501, "5.5.2")
    c.expect("AUTH PLAIN", 334)
    c.expect("AGFsaWNl=AHg", 501, "5.5.2")            # '=' inside
    c.expect("AUTH PLAIN " + b64("no nul bytes"), 501, "5.5.2")
    c.expect("AUTH LOGIN", 334)
    c.expect("#$%", 501, "5.5.2")
    c.expect("AUTH LOGIN " + b64(ALICE), 334)
    c.expect("c2VjcmV0LVBhc3N3MHJk=", 501, "5.5.2")  # bad padding
    login(c)  # none of it counted as a login
    c.close()


def test_auth_star_cancels_501(srv):
    c = tls_conn(srv)
    c.expect("AUTH PLAIN", 334)
    c.expect("*", 501, "5.0.0")
    c.expect("AUTH LOGIN", 334)
    c.expect("*", 501, "5.0.0")
    c.expect("AUTH LOGIN", 334)
    c.expect(b64(ALICE), 334)
    c.expect("*", 501, "5.0.0")
    c.expect("MAIL FROM:<%s>" % ALICE, 530, "5.7.0")
    login(c)
    c.close()


def test_auth_unknown_mechanism_504(srv):
    c = tls_conn(srv)
    c.expect("AUTH CRAM-MD5", 504, "5.5.4")
    c.expect("AUTH XOAUTH2 dXNlcj1hbGljZQ==", 504, "5.5.4")
    login(c)
    c.expect("AUTH PLAIN " + plain(ALICE), 503, "5.5.1")  # once per session
    c.close()


@pytest.mark.parametrize("port", [SUBMISSION_PORT, SUBMISSIONS_PORT])
def test_mail_before_auth_is_530(srv, port):
    c = tls_conn(srv, port)
    c.expect("MAIL FROM:<%s>" % ALICE, 530, "5.7.0")
    c.expect("RCPT TO:<%s>" % BOB, 503)
    c.close()


# ================================================================ sender ownership

@pytest.mark.parametrize("sender", [ALICE, "alice+lists@" + D, "sales@" + D, "team@" + D])
def test_envelope_sender_owned(srv, sender):
    c = login(tls_conn(srv))
    c.expect("MAIL FROM:<%s>" % sender, 250)
    c.close()


@pytest.mark.parametrize("sender", [BOB, "bob+x@" + D, "bobby@" + D, "info@" + D,
                                    "nosuch@" + D, "alice@other.test"])
def test_envelope_sender_not_owned_is_553(srv, sender):
    c = login(tls_conn(srv))
    c.expect("MAIL FROM:<%s>" % sender, 553, "5.7.1")
    c.expect("RCPT TO:<%s>" % BOB, 503)  # no transaction
    c.close()
    wait_log(srv, r"event=reject cmd=MAIL user=alice@example\.test from=<%s> reason=not-owned$"
             % re.escape(sender))


def test_null_sender_refused_on_submission(srv):
    c = login(tls_conn(srv))
    c.expect("MAIL FROM:<>", 553, "5.7.1")
    c.close()


@pytest.mark.parametrize("frm", [BOB, "Alice <alice@example.test>, Bob <bob@example.test>",
                                 "Info <info@example.test>", "Someone <alice@other.test>"])
@pytest.mark.parametrize("cmd", ["DATA", "BDAT"])
def test_from_header_not_owned_is_553_nothing_stored(srv, frm, cmd):
    subj = subject("from")
    queued = len(qlist(srv))
    c = login(tls_conn(srv))
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.expect("RCPT TO:<%s>" % BOB, 250)
    c.expect("RCPT TO:<someone@far.test>", 250)
    content = msg(subj, frm=frm)
    if cmd == "DATA":
        code, text = data(c, content)
    else:
        c.send(b"BDAT %d LAST\r\n" % len(content) + content)
        code, text = c.reply()
    assert code == 553 and text.startswith("553 5.7.1 "), text
    c.expect("RSET", 250)
    c.close()
    assert find(srv, BOB, subj) is None
    assert len(qlist(srv)) == queued, "queued all the same"
    wait_log(srv, r"event=reject session=\S+ user=alice@example\.test reason=from-header")


@pytest.mark.parametrize("frm", ["Alice <alice+news@example.test>", "Sales <sales@example.test>",
                                 "team@example.test", "\"A, li\" <ALICE@example.test>"])
def test_from_header_owned(srv, frm):
    subj = subject("fromok")
    c = login(tls_conn(srv))
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.expect("RCPT TO:<%s>" % BOB, 250)
    code, text = data(c, msg(subj, frm=frm))
    assert code == 250, text
    c.close()
    assert find(srv, BOB, subj) is not None


def test_no_from_header_is_554(srv):
    subj = subject("nofrom")
    c = login(tls_conn(srv))
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.expect("RCPT TO:<%s>" % BOB, 250)
    code, text = data(c, b"To: bob@example.test\r\nSubject: %s\r\n\r\nno from\r\n" % subj.encode())
    assert code == 554 and text.startswith("554 5.6.0 "), text
    c.close()
    assert find(srv, BOB, subj) is None


def test_date_and_message_id_added_only_when_missing(srv):
    s1, s2 = subject("hdr"), subject("hdr")
    c = login(tls_conn(srv))
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.expect("RCPT TO:<%s>" % BOB, 250)
    code, text = data(c, msg(s1))
    assert code == 250, text
    qid = queue_id(text)
    mine = b"Date: Tue, 01 Jul 2025 10:00:00 +0000\r\nMessage-ID: <mine.1@client.test>\r\n"
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.expect("RCPT TO:<%s>" % BOB, 250)
    code, text = data(c, msg(s2, extra=mine))
    assert code == 250, text
    c.close()
    raw1, raw2 = find(srv, BOB, s1), find(srv, BOB, s2)
    assert len(fields(raw1, "date")) == 1, raw1
    assert re.match(rb"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$", fields(raw1, "date")[0])
    mid = fields(raw1, "message-id")
    assert len(mid) == 1 and mid[0].startswith(b"<" + qid.encode()), mid
    assert fields(raw2, "date") == [b"Tue, 01 Jul 2025 10:00:00 +0000"], raw2
    assert fields(raw2, "message-id") == [b"<mine.1@client.test>"], raw2


def test_local_recipients_delivered_remote_ones_queued(srv):
    subj = subject("mixed")
    c = login(tls_conn(srv, SUBMISSIONS_PORT))
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    for r in (BOB, "team@" + D, "carol@far.test", "dave@elsewhere.test"):
        c.expect("RCPT TO:<%s>" % r, 250)
    code, text = data(c, msg(subj, to="bob@example.test, carol@far.test"))
    assert code == 250, text
    qid = queue_id(text)
    c.close()
    # every accepted recipient is in a mailbox or in the queue
    assert find(srv, BOB, subj) is not None   # once, though named directly and via team@
    assert find(srv, ALICE, subj) is not None  # team@ -> alice
    q = [e for e in qlist(srv) if e["id"] == qid]
    assert len(q) == 1, qlist(srv)
    assert q[0]["sender"] == ALICE
    assert qrcpts(q[0]) == ["carol@far.test", "dave@elsewhere.test"], q


# ================================================================ servers of their own

def test_received_login_names_the_user(make_server):
    s = make_server(tls=True, extra="submission { received_login = true }")
    subj = subject("login")
    c = login(tls_conn(s))
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.expect("RCPT TO:<%s>" % BOB, 250)
    code, text = data(c, msg(subj))
    assert code == 250, text
    c.close()
    assert_submitted(find(s, BOB, subj), login=ALICE)


@pytest.fixture(scope="module")
def loopback_srv(module_server):
    return module_server(tls=True, extra="submission { plain_auth_loopback = true }")


def test_plain_auth_on_loopback_says_esmtpa(loopback_srv):
    s = loopback_srv
    subj = subject("esmtpa")
    c = Conn(s.ip, SUBMISSION_PORT)
    assert c.reply()[0] == 220
    text = c.expect("EHLO client.test", 250)
    assert "AUTH PLAIN LOGIN" in text and "STARTTLS" in text, text
    login(c)
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.expect("RCPT TO:<%s>" % BOB, 250)
    code, text = data(c, msg(subj))
    assert code == 250, text
    c.close()
    assert_submitted(find(s, BOB, subj), tls=False)
    # port 25 never does AUTH
    m = Conn(s.ip, SMTP_PORT)
    assert m.reply()[0] == 220
    assert "AUTH" not in m.expect("EHLO client.test", 250)
    m.expect("AUTH PLAIN " + plain(ALICE), 502)
    m.close()


def test_starttls_forgets_a_login_made_before_it(loopback_srv):
    # RFC 3207 4.2: everything learnt from the client before TLS is discarded,
    # the AUTH identity included (else a man in the middle could log in in
    # the clear and hand over a session that looks encrypted)
    s = loopback_srv
    c = Conn(s.ip, SUBMISSION_PORT)
    assert c.reply()[0] == 220
    c.expect("EHLO client.test", 250)
    login(c)
    c.expect("STARTTLS", 220)
    c.starttls()
    c.expect("EHLO client.test", 250)
    c.expect("MAIL FROM:<%s>" % ALICE, 530, "5.7.0")
    login(c)
    c.expect("MAIL FROM:<%s>" % ALICE, 250)
    c.close()


@pytest.fixture(scope="module")
def limited_srv(module_server):
    return module_server(users=("alice", "bob", "carol"), tls=True, extra=(
        "submission { user_messages_per_hour = 2 user_recipients_per_hour = 3 }"))


def send_one(s, user, rcpts, subj):
    c = login(tls_conn(s), user)
    c.expect("MAIL FROM:<%s>" % user, 250)
    for r in rcpts:
        c.expect("RCPT TO:<%s>" % r, 250)
    code, text = data(c, msg(subj, frm=user))
    assert code == 250, text
    c.close()


def test_user_messages_per_hour(limited_srv):
    s = limited_srv
    send_one(s, ALICE, [BOB], subject("lim"))
    send_one(s, ALICE, [BOB], subject("lim"))
    c = login(tls_conn(s, SUBMISSIONS_PORT))  # a new session: the count is per user
    code, text = c.cmd("MAIL FROM:<%s>" % ALICE)
    assert code == 451 and text.startswith("451 4.7.1 "), text
    c.close()
    wait_log(s, r"event=rate-limited user=alice@example\.test what=messages limit=2/hour$")
    send_one(s, BOB, [ALICE], subject("lim"))  # another user is not limited


def test_user_recipients_per_hour(limited_srv):
    s = limited_srv
    subj = subject("rlim")
    c = login(tls_conn(s), CAROL)
    c.expect("MAIL FROM:<%s>" % CAROL, 250)
    for r in (ALICE, BOB, "x@far.test"):
        c.expect("RCPT TO:<%s>" % r, 250)
    code, text = c.cmd("RCPT TO:<y@far.test>")
    assert code == 451 and text.startswith("451 4.7.1 "), text
    code, text = data(c, msg(subj, frm=CAROL))
    assert code == 250, text  # the three accepted recipients
    c.expect("MAIL FROM:<%s>" % CAROL, 250)
    code, text = c.cmd("RCPT TO:<%s>" % BOB)
    assert code == 451 and text.startswith("451 4.7.1 "), text
    c.close()
    wait_log(s, r"event=rate-limited user=carol@example\.test what=recipients limit=3/hour$", 2)
    assert find(s, ALICE, subj) is not None and find(s, BOB, subj) is not None


def test_sighup_reloads_the_certificate(make_server, tmp_path):
    s = make_server(tls=True)
    old = der(s.cert)
    assert peer_cert(s, SUBMISSIONS_PORT) == old
    sess = tmp_path / "sess.pem"
    s_client_once(s, SUBMISSION_PORT, "-sess_out", str(sess))
    live = login(tls_conn(s))  # a session open across the reloads
    # a new pair with another subject, moved into place
    make_cert(tmp_path / "new.pem", tmp_path / "newkey.pem", "renewed.example.test")
    os.replace(tmp_path / "newkey.pem", s.key)
    os.replace(tmp_path / "new.pem", s.cert)
    new = der(s.cert)
    assert new != old
    s.proc.send_signal(signal.SIGHUP)
    wait_log(s, r"event=reload result=ok")
    for port in (SUBMISSION_PORT, SUBMISSIONS_PORT, SMTP_PORT):
        assert peer_cert(s, port) == new, port
    # the session from before goes on
    subj = subject("live")
    live.expect("MAIL FROM:<%s>" % ALICE, 250)
    live.expect("RCPT TO:<%s>" % BOB, 250)
    code, text = data(live, msg(subj))
    assert code == 250, text
    assert find(s, BOB, subj) is not None
    # sessions survive a reload (docs/tls.md)
    out = s_client_once(s, SUBMISSION_PORT, "-sess_in", str(sess))
    assert re.search(r"^Reused, ", out, re.M), out
    # a broken certificate file: the one in use stays
    s.cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    s.proc.send_signal(signal.SIGHUP)
    wait_log(s, r"event=reload result=failed .*old-certificate=kept")
    assert peer_cert(s, SUBMISSIONS_PORT) == new
    # a certificate with a key that does not match it: likewise
    make_cert(tmp_path / "third.pem", tmp_path / "thirdkey.pem", "third.example.test")
    os.replace(tmp_path / "third.pem", s.cert)
    s.proc.send_signal(signal.SIGHUP)
    wait_log(s, r"event=reload result=failed .*old-certificate=kept", 2)
    assert peer_cert(s, SUBMISSION_PORT) == new
    live.expect("NOOP", 250)
    live.expect("QUIT", 221)
    live.close()


SLOW_HASH = "$6$rounds=8000000$saltsalt$" + "A" * 86  # ~3 s to check, never matches


def test_loop_serves_others_while_a_password_is_checked(make_server):
    s = make_server(tls=True, workers=1, users=("alice", "bob", "slow"), start=False)
    db = sqlite3.connect(str(s.dir / "data" / "dakiya.db"))
    with db:
        assert db.execute("UPDATE users SET pwhash = ? WHERE local = 'slow'",
                          (SLOW_HASH,)).rowcount == 1
    db.close()
    s.start()
    a = tls_conn(s, source=src_ip())
    t0 = time.monotonic()
    a.send("AUTH PLAIN %s\r\n" % plain("slow@" + D, "whatever"))
    time.sleep(0.3)  # the check has started
    # meanwhile a whole plain SMTP session on port 25, on the same (only) loop
    subj = subject("meanwhile")
    m = Conn(s.ip, SMTP_PORT)
    assert m.reply()[0] == 220
    m.expect("EHLO other.test", 250)
    m.expect("MAIL FROM:<x@other.test>", 250)
    m.expect("RCPT TO:<%s>" % BOB, 250)
    code, text = data(m, msg(subj, frm="x@other.test"))
    assert code == 250, text
    m.expect("QUIT", 221)
    m.close()
    done = time.monotonic() - t0
    # a check on the loop would have held this session up for the ~3 s of the hash
    assert done < 1.5, "the port-25 session ended %.2f s after the AUTH" % done
    assert find(s, BOB, subj) is not None
    r, _, _ = select.select([a.sock], [], [], 0)
    assert not r and a.sock.pending() == 0, "AUTH answered before the other session finished"
    code, text = a.reply()
    took = time.monotonic() - t0
    assert code == 535, text
    assert took > done and took >= 2.5, (done, took)
    a.close()


# ================================================================ quickstart --dev

def test_quickstart_dev_certificate_serves_submission(tmp_path):
    from conftest import DAKIYA, next_ip, wait_port
    for attempt in range(5):
        d = tmp_path / ("qs%d" % attempt)
        ip = next_ip()
        r = run([DAKIYA, "quickstart", "--domain", "qs.test", "--dir", str(d), "--dev",
                 "--listen", ip])
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode() + r.stderr.decode()
        password = re.search(r"password\W+([A-Za-z0-9!-~]{12,})", out, re.I).group(1)
        conf = d / "dakiya.conf"
        hostname = re.search(r'^\s*hostname\s*=\s*"([^"]+)"', conf.read_text(), re.M).group(1)
        cert, key = d / "tls" / "cert.pem", d / "tls" / "key.pem"
        assert (key.stat().st_mode & 0o777) == 0o600, oct(key.stat().st_mode)
        log = open(d / "serve.log", "wb")
        proc = subprocess.Popen([DAKIYA, "-c", str(conf), "serve"], stdout=log,
                                stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while proc.poll() is None and time.time() < deadline and \
                b"event=ready" not in (d / "serve.log").read_bytes():
            time.sleep(0.02)
        if proc.poll() is None or b"Address already in use" not in (d / "serve.log").read_bytes():
            break
        log.close()  # that address is another test run's: take the next one
    try:
        wait_port(ip, SUBMISSION_PORT, proc=proc)
        # a client that trusts this certificate and checks the host name
        verify = ssl.create_default_context(cafile=str(cert))
        c = Conn(ip, SUBMISSION_PORT)
        assert c.reply()[0] == 220
        c.expect("EHLO client.test", 250)
        c.expect("STARTTLS", 220)
        c.starttls(verify, server_hostname=hostname)
        c.expect("EHLO client.test", 250)
        login(c, "postmaster@qs.test", password)
        c.expect("MAIL FROM:<postmaster@qs.test>", 250)
        c.expect("RCPT TO:<postmaster@qs.test>", 250)
        code, text = data(c, msg("qs", frm="postmaster@qs.test", to="postmaster@qs.test"))
        assert code == 250, text
        c.close()
        c = Conn(ip, SUBMISSIONS_PORT)
        c.starttls(verify, server_hostname=hostname)
        assert c.reply()[0] == 220
        c.close()
        got = run([DAKIYA, "-c", str(conf), "mailbox", "list", "postmaster@qs.test", "--json"])
        uid = [m["uid"] for m in json.loads(got.stdout) if m["subject"] == "qs"]
        assert len(uid) == 1, got.stdout
        raw = run([DAKIYA, "-c", str(conf), "mailbox", "show", "postmaster@qs.test",
                   str(uid[0])]).stdout
        assert b" with ESMTPSA id " in the_received(raw)
    finally:
        alive = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        log.close()
    text = (d / "serve.log").read_text(errors="replace")
    assert alive and rc == 0, text[-3000:]
    assert "AddressSanitizer" not in text and "runtime error:" not in text, text[-3000:]


def test_passwd_while_running_takes_effect_at_once(srv):
    """dakiya user passwd --password-stdin on a running server: the next
    login with the new password works, the old one is refused (535)."""
    dave = "dave-%d@%s" % (os.getpid(), D)
    srv.cli("user", "add", dave, "--password-stdin", input=b"first-Passw0rd-dave\n")
    c = tls_conn(srv, source=src_ip())
    try:
        login(c, dave, "first-Passw0rd-dave")
    finally:
        c.close()
    srv.cli("user", "passwd", dave, "--password-stdin", input=b"second-Passw0rd-dave\n")
    c = tls_conn(srv, source=src_ip())
    try:
        c.expect("AUTH PLAIN " + plain(dave, "first-Passw0rd-dave"), 535, "5.7.8")
        login(c, dave, "second-Passw0rd-dave")
    finally:
        c.close()
