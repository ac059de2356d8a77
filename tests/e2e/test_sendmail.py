"""`dakiya sendmail`: sendmail-compatible submission over the local socket.

Most tests run the real client against a real server whose config has
`local { socket = ... users = {"root"} }` (the tests run as root). A few use a
scripted fake server on a unix socket to see exactly what the client says on
the wire and how it maps 4xx/5xx replies and lost connections to its exit
status (0, 1, 75 = EX_TEMPFAIL).
"""
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading

import pytest

from conftest import DAKIYA

EX_TEMPFAIL = 75


def local_extra(path, users=("root",)):
    return 'local { socket = "%s" users = {%s} }' % (
        path, ", ".join('"%s"' % u for u in users))


@pytest.fixture
def srv(make_server, tmp_path):
    """A running server with local submission on tmp_path/s.sock and users
    alice, bob, carol in example.test."""
    return make_server(users=("alice", "bob", "carol"),
                       extra=local_extra(tmp_path / "s.sock"))


def sendmail(server, *args, input=b"", env=None, argv0=None, conf=None):
    cmd = [argv0 or DAKIYA, "-c", str(conf or server.conf)]
    if argv0 is None:
        cmd.append("sendmail")
    return subprocess.run(cmd + list(args), input=input, capture_output=True, timeout=60,
                          env=env)


def ok(r):
    assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace"))
    assert r.stdout == b"" and r.stderr == b"", (r.stdout, r.stderr)
    return r


def stored(server, address, uid=None):
    msgs = server.mailbox(address)
    assert msgs, "%s has no mail" % address
    return server.message(address, uid if uid is not None else msgs[-1]["uid"])


def headers_of(raw):
    return raw.split(b"\r\n\r\n", 1)[0]


def body_of(raw):
    return raw.split(b"\r\n\r\n", 1)[1]


def envelope_senders(server):
    db = sqlite3.connect(str(server.dir / "data" / "dakiya.db"))
    try:
        return [r[0] for r in db.execute("SELECT mail_from FROM messages ORDER BY id")]
    finally:
        db.close()


def qlist(server):
    return json.loads(server.cli("queue", "list", "--json").stdout)


# ------------------------------------------------------------ delivery


def test_recipient_argument_delivers_with_received_date_message_id(srv):
    msg = b"Subject: plain\nTo: bob@example.test\n\nhello bob\nsecond line\n"
    ok(sendmail(srv, "bob@example.test", input=msg))
    raw = stored(srv, "bob@example.test")
    h = headers_of(raw)
    assert raw.startswith(b"Received: by mail.example.test (dakiya, from userid 0 root)"), raw
    assert h.count(b"Received:") == 1
    assert b"\r\nDate: " in h and b"\r\nMessage-ID: <" in h, h
    # no From: in the input: the envelope sender, login@hostname
    assert b"\r\nFrom: <root@mail.example.test>" in h, h
    assert body_of(raw) == b"hello bob\r\nsecond line\r\n"
    assert b"\n" not in raw.replace(b"\r\n", b"")  # every line end is CRLF
    assert envelope_senders(srv) == ["root@mail.example.test"]


def test_crlf_input_is_sent_unchanged_and_bare_cr_becomes_a_line_end(srv):
    msg = b"From: Me <me@example.test>\r\nSubject: crlf\r\n\r\nline one\r\nprogress 10%\r20%\r\n"
    ok(sendmail(srv, "-i", "bob@example.test", input=msg))
    raw = stored(srv, "bob@example.test")
    assert b"\r\nFrom: Me <me@example.test>\r\n" in raw
    assert b"From: <" not in raw  # its own From: is kept, none added
    assert body_of(raw) == b"line one\r\nprogress 10%\r\n20%\r\n"


def test_extract_recipients_to_cc_bcc_and_bcc_is_removed(srv):
    msg = (b"From: Shop <shop@example.test>\n"
           b"To: Alice <alice@example.test>\n"
           b"Cc: bob@example.test,\n  \"Bob Again\" <bob@example.test>\n"
           b"Bcc: carol@example.test\n"
           b"Subject: extract\n\nfor all three\n")
    ok(sendmail(srv, "-t", "-i", input=msg))
    for who in ("alice", "bob", "carol"):
        msgs = srv.mailbox("%s@example.test" % who)
        assert len(msgs) == 1, (who, msgs)  # bob once, though named twice
        raw = stored(srv, "%s@example.test" % who)
        assert b"\nBcc:" not in raw and b"carol@example.test" not in headers_of(raw), raw
        assert b"\r\nCc: bob@example.test,\r\n  \"Bob Again\" <bob@example.test>\r\n" in raw
        assert body_of(raw) == b"for all three\r\n"


def test_extract_adds_header_recipients_to_arguments(srv):
    msg = b"To: alice@example.test\nSubject: both\n\nx\n"
    ok(sendmail(srv, "-t", "bob@example.test", input=msg))
    assert len(srv.mailbox("alice@example.test")) == 1
    assert len(srv.mailbox("bob@example.test")) == 1


def test_without_t_header_recipients_are_not_used(srv):
    msg = b"To: alice@example.test\nBcc: carol@example.test\nSubject: only bob\n\nx\n"
    ok(sendmail(srv, "bob@example.test", input=msg))
    assert srv.mailbox("alice@example.test") == []
    assert srv.mailbox("carol@example.test") == []
    assert b"Bcc:" not in stored(srv, "bob@example.test")  # removed all the same


def test_f_sets_envelope_sender_and_F_the_from_name(srv):
    ok(sendmail(srv, "-f", "noreply@example.test", "-F", "Web Shop", "bob@example.test",
                input=b"Subject: f\n\nbody\n"))
    raw = stored(srv, "bob@example.test")
    assert b"\r\nFrom: Web Shop <noreply@example.test>\r\n" in raw, raw
    assert envelope_senders(srv) == ["noreply@example.test"]
    # -F with specials is quoted, a non-ASCII one encoded (RFC 2047)
    ok(sendmail(srv, "-fbounce@example.test", "-FJ. Doe, Sales", "bob@example.test",
                input=b"Subject: g\n\nbody\n"))
    assert b'\r\nFrom: "J. Doe, Sales" <bounce@example.test>\r\n' in stored(srv, "bob@example.test")
    ok(sendmail(srv, "-F", "Zoë", "bob@example.test", input=b"Subject: h\n\nbody\n"))
    assert b"\r\nFrom: =?UTF-8?B?Wm/Dqw==?=\r\n <root@mail.example.test>\r\n" in \
        stored(srv, "bob@example.test")
    assert envelope_senders(srv)[1:] == ["bounce@example.test", "root@mail.example.test"]


def test_null_sender(srv):
    ok(sendmail(srv, "-f", "<>", "bob@example.test", input=b"Subject: bounce\n\nx\n"))
    assert envelope_senders(srv) == [""]
    # the From: added then names the account
    assert b"\r\nFrom: <root@mail.example.test>\r\n" in stored(srv, "bob@example.test")


def test_F_with_a_newline_cannot_add_a_header(srv):
    r = sendmail(srv, "-F", "x\nBcc: alice@example.test", "bob@example.test",
                 input=b"Subject: inj\n\nx\n")
    assert r.returncode == 1 and b"control characters" in r.stderr, r.stderr
    assert srv.mailbox("bob@example.test") == []


def test_remote_recipient_is_queued(srv):
    ok(sendmail(srv, "-t", "-i", input=b"To: someone@remote.test, bob@example.test\n"
                b"Subject: out\n\nto the world\n"))
    assert len(srv.mailbox("bob@example.test")) == 1
    q = qlist(srv)
    assert len(q) == 1, q
    assert q[0]["sender"] == "root@mail.example.test"
    rcpts = [x if isinstance(x, str) else x.get("address") for x in q[0]["recipients"]]
    assert rcpts == ["someone@remote.test"], q


def test_bare_local_name_gets_the_hostname(srv):
    # "sendmail root", the cron habit: root@HOSTNAME (not a local domain here: queued)
    ok(sendmail(srv, "root", input=b"Subject: cron\n\noutput\n"))
    ok(sendmail(srv, "-t", input=b"To: root, www-data\nSubject: cron\n\noutput\n"))
    q = qlist(srv)
    got = sorted(tuple(sorted(x if isinstance(x, str) else x.get("address")
                              for x in e["recipients"])) for e in q)
    assert got == [("root@mail.example.test",),
                   ("root@mail.example.test", "www-data@mail.example.test")], q


# ------------------------------------------------------------ the single dot


def test_single_dot_ends_input_without_i(srv):
    msg = b"Subject: dot\n\nbefore\n.\nafter the dot\n"
    ok(sendmail(srv, "bob@example.test", input=msg))
    assert body_of(stored(srv, "bob@example.test")) == b"before\r\n"


def test_single_dot_crlf_ends_input_without_i(srv):
    ok(sendmail(srv, "bob@example.test", input=b"Subject: dot\r\n\r\nbefore\r\n.\r\nafter\r\n"))
    assert body_of(stored(srv, "bob@example.test")) == b"before\r\n"


@pytest.mark.parametrize("opt", [["-i"], ["-oi"], ["-i", "-oi"]])
def test_single_dot_is_data_with_i(srv, opt):
    msg = b"Subject: dot\n\nbefore\n.\n..two\n.leading\nafter the dot\n."
    ok(sendmail(srv, *opt, "bob@example.test", input=msg))
    # dot-stuffing on the wire, unstuffed in the store: the content as given
    assert body_of(stored(srv, "bob@example.test")) == \
        b"before\r\n.\r\n..two\r\n.leading\r\nafter the dot\r\n.\r\n"


def test_dot_lines_are_stuffed_without_i_too(srv):
    ok(sendmail(srv, "bob@example.test", input=b"Subject: d\n\n.x\n..\nend\n"))
    assert body_of(stored(srv, "bob@example.test")) == b".x\r\n..\r\nend\r\n"


def test_body_without_header_section_and_mbox_from_line(srv):
    ok(sendmail(srv, "bob@example.test", input=b"just a line of output\nmore\n"))
    raw = stored(srv, "bob@example.test")
    assert body_of(raw) == b"just a line of output\r\nmore\r\n", raw
    ok(sendmail(srv, "bob@example.test",
                input=b"From root  Mon Jan  1 00:00:00 2024\nSubject: mbox\n\nx\n"))
    raw = stored(srv, "bob@example.test")
    assert b"From root " not in raw and b"\r\nSubject: mbox\r\n" in raw


# ------------------------------------------------------------ invocation


def test_symlink_named_sendmail(srv, tmp_path):
    link = tmp_path / "bin" / "sendmail"
    link.parent.mkdir()
    link.symlink_to(DAKIYA)
    ok(sendmail(srv, "-t", "-i", argv0=str(link),
                input=b"To: bob@example.test\nSubject: via link\n\nx\n"))
    # DAKIYA_CONFIG instead of -c, and cron's usual options
    env = dict(os.environ, DAKIYA_CONFIG=str(srv.conf))
    r = subprocess.run([str(link), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-odi",
                        "-oQ/var/spool/x", "-v", "-bm", "alice@example.test"],
                       input=b"Subject: cron\n\nout\n", capture_output=True, env=env,
                       timeout=60)
    ok(r)
    assert [m["subject"] for m in srv.mailbox("bob@example.test")] == ["via link"]
    assert b"From: CronDaemon <root@mail.example.test>" in stored(srv, "alice@example.test")
    h = subprocess.run([str(link), "--help"], capture_output=True, timeout=60)
    assert h.returncode == 0 and b"dakiya sendmail" in h.stdout


def test_help_and_refused_modes(srv):
    h = srv.cli("sendmail", "--help")
    assert b"EX_TEMPFAIL" in h.stdout and b"75" in h.stdout
    assert srv.cli("help", "sendmail").stdout == h.stdout
    for args, word in ((["-bs"], b"SMTP"), (["-bd"], b"dakiya serve"),
                       (["-bp"], b"queue list"), (["-q"], b"queue"), (["-bv", "x@y.test"], b"-bv"),
                       (["-x", "bob@example.test"], b"unknown option"),
                       (["-oX", "bob@example.test"], b"-oX"), ([], b"no recipients")):
        r = sendmail(srv, *args, input=b"x\n")
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.startswith(b"dakiya: ") and word in r.stderr, (args, r.stderr)
    assert srv.mailbox("bob@example.test") == []


def test_bad_addresses(srv):
    for a in ("bad address<", "a@", "<x@y.test>\r\nRCPT TO:<alice@example.test>"):
        r = sendmail(srv, a, input=b"Subject: x\n\nx\n")
        assert r.returncode == 1, (a, r.stderr)
    r = sendmail(srv, "-t", input=b"To: not an address <\nSubject: x\n\nx\n")
    assert r.returncode == 1 and b"To:" in r.stderr, r.stderr
    r = sendmail(srv, "-t", input=b"Subject: nobody\n\nx\n")
    assert r.returncode == 1 and b"no recipients" in r.stderr, r.stderr
    assert srv.mailbox("alice@example.test") == []


# ------------------------------------------------------------ refusals


def test_unknown_recipient_refuses_all(srv):
    r = sendmail(srv, "bob@example.test", "nosuch@example.test", input=b"Subject: x\n\nx\n")
    assert r.returncode == 1
    assert b"550" in r.stderr and b"nosuch@example.test" in r.stderr, r.stderr
    assert srv.mailbox("bob@example.test") == []  # all or nothing


def test_message_over_size_limit(make_server, tmp_path):
    s = make_server(limits={"message_size": 2000}, extra=local_extra(tmp_path / "s.sock"))
    r = sendmail(s, "-i", "bob@example.test", input=b"Subject: big\n\n" + (b"x" * 80 + b"\n") * 100)
    assert r.returncode == 1 and b"limits.message_size" in r.stderr, r.stderr
    assert s.mailbox("bob@example.test") == []
    ok(sendmail(s, "-i", "bob@example.test", input=b"Subject: small\n\nx\n"))


def test_user_not_in_local_users_is_refused(make_server):
    # nobody must reach the socket and read the config: a world-readable place
    d = tempfile.mkdtemp(prefix="dksm")
    try:
        os.chmod(d, 0o755)
        s = make_server(extra=local_extra(os.path.join(d, "s.sock")))
        conf = os.path.join(d, "dakiya.conf")
        shutil.copy(s.conf, conf)
        os.chmod(conf, 0o644)
        r = subprocess.run(["runuser", "-u", "nobody", "--", DAKIYA, "-c", conf, "sendmail",
                            "bob@example.test"], input=b"Subject: x\n\nx\n",
                           capture_output=True, timeout=60)
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert b"554" in r.stderr and b"nobody" in r.stderr and b"local.users" in r.stderr, \
            r.stderr
        assert s.mailbox("bob@example.test") == []
        # root is in the list
        ok(sendmail(s, "bob@example.test", conf=conf, input=b"Subject: y\n\ny\n"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_server_down_is_tempfail(srv, tmp_path):
    conf = tmp_path / "down.conf"
    conf.write_text(srv.conf.read_text().replace(str(tmp_path / "s.sock"),
                                                 str(tmp_path / "none.sock")))
    r = sendmail(srv, "bob@example.test", conf=conf, input=b"Subject: x\n\nx\n")
    assert r.returncode == EX_TEMPFAIL, (r.returncode, r.stderr)
    assert b"the server is not running or local.socket is off" in r.stderr, r.stderr


def test_local_socket_off(tmp_path):
    conf = tmp_path / "off.conf"
    conf.write_text('hostname = "mail.example.test"\ndata_dir = "%s"\n' % (tmp_path / "d"))
    r = subprocess.run([DAKIYA, "-c", str(conf), "sendmail", "bob@example.test"],
                       input=b"x\n", capture_output=True, timeout=60)
    assert r.returncode == 1 and b"local submission is off" in r.stderr, r.stderr


# ------------------------------------------------------------ on the wire (fake server)


class FakeServer:
    """A scripted SMTP server on a unix socket: replies[verb] overrides the
    reply to that command ("BANNER", "EHLO", "MAIL", "RCPT", "DATA", "DOT");
    "CLOSE" closes the connection instead. Records what the client sent."""

    def __init__(self, path, replies=None, ehlo=("SIZE 1000000", "8BITMIME", "SMTPUTF8")):
        self.path = str(path)
        self.replies = replies or {}
        self.ehlo = ehlo
        self.lines = []
        self.data = b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        c, _ = self.sock.accept()
        f = c.makefile("rb")
        try:
            def say(key, default):
                r = self.replies.get(key, default)
                if r == "CLOSE":
                    return False
                try:
                    c.sendall(r.encode() + b"\r\n")
                except OSError:
                    return False
                return not r.startswith("221")

            if not say("BANNER", "220 fake ESMTP"):
                return
            while True:
                line = f.readline()
                if not line:
                    return
                self.lines.append(line)
                verb = line[:4].upper().decode()
                if verb == "EHLO":
                    r = self.replies.get("EHLO")
                    if r is None:
                        r = "\r\n".join(["250-fake"] + ["250-" + e for e in self.ehlo[:-1]] +
                                        ["250 " + self.ehlo[-1]])
                    if not say("X", r):
                        return
                elif verb == "DATA":
                    if not say("DATA", "354 go ahead"):
                        return
                    if not self.replies.get("DATA", "354").startswith("354"):
                        continue
                    while True:
                        l = f.readline()
                        if not l:
                            return
                        if l == b".\r\n":
                            break
                        self.data += l
                    if not say("DOT", "250 2.0.0 Ok: queued as 0123456789abcdef"):
                        return
                elif verb == "QUIT":
                    say("QUIT", "221 bye")
                    return
                elif not say(verb, "250 ok"):
                    return
        finally:
            c.close()
            self.sock.close()

    def sent(self, verb):
        return [l.rstrip(b"\r\n").decode() for l in self.lines if l.upper().startswith(verb)]


@pytest.fixture
def fake(tmp_path):
    conf = tmp_path / "fake.conf"
    sock = tmp_path / "f.sock"
    conf.write_text('hostname = "mail.example.test"\ndata_dir = "%s"\n%s\n' % (
        tmp_path / "d", local_extra(sock)))

    def run(args, input, **kw):
        fs = FakeServer(sock, **kw)
        r = subprocess.run([DAKIYA, "-c", str(conf), "sendmail", *args], input=input,
                           capture_output=True, timeout=60)
        fs.thread.join(10)
        return fs, r

    return run


def test_wire_conversation(fake):
    fs, r = fake(["-f", "søren@example.test", "-i", "bob@example.test", "jürgen@example.test"],
                 b"From: x@example.test\nSubject: x\n\n.one\n..two\n.\nlast")
    ok(r)
    assert fs.sent(b"EHLO") == ["EHLO localhost"]
    mail = fs.sent(b"MAIL")
    assert len(mail) == 1 and mail[0].startswith("MAIL FROM:<søren@example.test> SIZE=")
    assert " BODY=8BITMIME" not in mail[0] and mail[0].endswith(" SMTPUTF8"), mail
    assert fs.sent(b"RCPT") == ["RCPT TO:<bob@example.test>", "RCPT TO:<jürgen@example.test>"]
    assert fs.data.endswith(b"\r\n\r\n..one\r\n...two\r\n..\r\nlast\r\n"), fs.data
    assert fs.sent(b"QUIT") == ["QUIT"]
    size = int(mail[0].split("SIZE=")[1].split()[0])
    unstuffed = fs.data.replace(b"\r\n..", b"\r\n.")
    assert size == len(unstuffed)


def test_wire_8bit_body_and_quoted_local_part(fake):
    fs, r = fake(["-t"], "To: \"john doe\"@example.test\nSubject: é\n\ncafé\n".encode())
    ok(r)
    assert fs.sent(b"MAIL")[0].endswith(" BODY=8BITMIME")
    assert fs.sent(b"RCPT") == ['RCPT TO:<"john doe"@example.test>']


def test_wire_utf8_address_without_smtputf8_is_refused(fake):
    fs, r = fake(["jürgen@example.test"], b"x\n", ehlo=("SIZE 1000000", "8BITMIME"))
    assert r.returncode == 1 and b"SMTPUTF8" in r.stderr, r.stderr
    assert fs.sent(b"MAIL") == []


@pytest.mark.parametrize("replies,status,shown", [
    ({"BANNER": "421 4.3.2 shutting down"}, EX_TEMPFAIL, b"421 4.3.2 shutting down"),
    ({"BANNER": "554 5.7.1 go away"}, 1, b"554 5.7.1 go away"),
    ({"MAIL": "451 4.3.0 try later"}, EX_TEMPFAIL, b"451 4.3.0 try later"),
    ({"RCPT": "452 4.5.3 too many"}, EX_TEMPFAIL, b"452 4.5.3 too many"),
    ({"RCPT": "550 5.1.1 unknown"}, 1, b"550 5.1.1 unknown"),
    ({"DATA": "554 5.5.1 no valid recipients"}, 1, b"554 5.5.1"),
    ({"DOT": "552 5.3.4 too big"}, 1, b"552 5.3.4 too big"),
    ({"DOT": "451 4.3.0 disk full"}, EX_TEMPFAIL, b"451 4.3.0 disk full"),
    ({"DOT": "CLOSE"}, EX_TEMPFAIL, b"may or may not"),
    ({"RCPT": "CLOSE"}, EX_TEMPFAIL, b"lost the connection"),
    ({"BANNER": "CLOSE"}, EX_TEMPFAIL, b"lost the connection"),
    ({"EHLO": "250-fake\r\n251 mixed codes"}, EX_TEMPFAIL, b"not an SMTP reply"),
    ({"QUIT": "CLOSE"}, 0, b""),
])
def test_wire_reply_to_exit_status(fake, replies, status, shown):
    fs, r = fake(["bob@example.test"], b"Subject: x\n\nx\n", replies=replies)
    assert r.returncode == status, (r.returncode, r.stderr)
    assert shown in r.stderr, r.stderr
    if status != 0:
        assert not (fs.data and "DOT" not in replies), "data sent after a refusal"
