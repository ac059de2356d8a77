"""SMTP command set and session state machine (RFC 5321, RFC 2920, RFC 3463).

Scripted conversations over a raw socket against one real `dakiya serve`
shared by the module; most of them are negative: wrong order, bad syntax,
junk, HTTP at the SMTP port, desynchronised pipelining.
"""
import re
import time

import pytest

from conftest import Conn, assert_stored, fresh_user, queue_id


@pytest.fixture(scope="module")
def server(module_server):
    return module_server(pool=15)


def body(subject="test", text="hello"):
    return ("From: sender@other.test\r\nTo: alice@example.test\r\nSubject: %s\r\n\r\n%s\r\n"
            % (subject, text)).encode()


# ---------------------------------------------------------------- greeting and EHLO

def test_banner(server):
    c = Conn(server.ip)
    try:
        code, text = c.reply()
        assert code == 220
        assert text.startswith("220 %s ESMTP" % server.hostname), text
        assert "\n" not in text, "banner must be one line: %r" % text
        c.expect("QUIT", 221)
    finally:
        c.close()


def test_ehlo_advertises_extensions(server, conn):
    c = conn(ehlo=False)
    text = c.expect("EHLO client.test", 250)
    lines = text.splitlines()
    assert lines[0][4:].split()[0] == server.hostname
    # continuation lines use "250-", the last one "250 "
    assert all(l.startswith("250-") for l in lines[:-1]) and lines[-1].startswith("250 ")
    kw = {l[4:].split()[0].upper(): l[4:].split()[1:] for l in lines[1:]}
    for ext in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"):
        assert ext in kw, "%s not advertised: %s" % (ext, text)
    assert kw["SIZE"] == [str(50 * 1024 * 1024)], "default SIZE is 50 MiB: %s" % kw["SIZE"]


def test_helo_has_no_extensions(conn):
    c = conn(ehlo=False)
    text = c.expect("HELO client.test", 250)
    assert len(text.splitlines()) == 1, text


def test_ehlo_without_argument_is_501(conn):
    c = conn(ehlo=False)
    c.expect("EHLO", 501)
    c.expect("EHLO client.test", 250)


def test_commands_are_case_insensitive(server, conn):
    rcpt = fresh_user(server)
    c = conn(ehlo=False)
    c.expect("ehlo client.test", 250)
    c.expect("mail from:<s@other.test>", 250, "2.1.0")
    c.expect("rcpt to:<%s>" % rcpt, 250, "2.1.5")
    c.expect("data", 354)
    c.send(body() + b".\r\n")
    code, text = c.reply()
    assert code == 250, text


def test_second_ehlo_resets_transaction(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<%s>" % rcpt, 250)
    c.expect("EHLO again.test", 250)
    c.expect("DATA", 503, "5.5.1")
    c.expect("MAIL FROM:<s@other.test>", 250)


# ---------------------------------------------------------------- command order

def test_mail_before_ehlo_is_503(conn):
    c = conn(ehlo=False)
    c.expect("MAIL FROM:<s@other.test>", 503, "5.5.1")
    c.expect("EHLO client.test", 250)
    c.expect("MAIL FROM:<s@other.test>", 250)


def test_nested_mail_is_503(conn):
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("MAIL FROM:<t@other.test>", 503, "5.5.1")


def test_rcpt_before_mail_is_503(conn):
    c = conn()
    c.expect("RCPT TO:<alice@example.test>", 503, "5.5.1")


def test_data_without_mail_is_503(conn):
    c = conn()
    c.expect("DATA", 503, "5.5.1")
    c.expect("NOOP", 250)  # no 354: the session did not enter DATA


def test_data_without_rcpt(conn):
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<nobody-here@example.test>", 550)
    code, text = c.cmd("DATA")
    assert code in (503, 554), text
    assert text[4:].startswith("5.5.1 "), text
    c.expect("NOOP", 250)


def test_rset_clears_transaction(conn):
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    c.expect("RSET", 250, "2.0.0")
    c.expect("RCPT TO:<alice@example.test>", 503, "5.5.1")
    c.expect("DATA", 503, "5.5.1")
    c.expect("MAIL FROM:<s@other.test>", 250)


def test_rset_before_ehlo_keeps_greeting_state(conn):
    c = conn(ehlo=False)
    c.expect("RSET", 250)
    c.expect("MAIL FROM:<s@other.test>", 503, "5.5.1")


# ---------------------------------------------------------------- simple commands

def test_noop_vrfy_help_quit(conn):
    c = conn()
    c.expect("NOOP", 250, "2.0.0")
    c.expect("VRFY alice", 252)
    c.expect("VRFY nobody@example.test", 252)  # VRFY never discloses users
    text = c.expect("HELP", 214)
    assert "MAIL" in text
    c.expect("QUIT", 221, "2.0.0")
    assert c.closed()


def test_unknown_command_is_500(conn):
    c = conn()
    c.expect("FROB", 500, "5.5.2")
    c.expect("MAILFROM:<s@other.test>", 500, "5.5.2")
    c.expect("NOOP", 250)


def test_quit_in_the_middle_of_a_transaction(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<%s>" % rcpt, 250)
    c.expect("QUIT", 221)
    assert c.closed()
    assert server.mailbox(rcpt) == []


# ---------------------------------------------------------------- syntax

@pytest.mark.parametrize("line", [
    "MAIL FROM:s@other.test",          # no angle brackets
    "MAIL FROM:<s@other.test",         # unbalanced
    "MAIL FROM:<s@@other.test>",
    "MAIL FROM:<s@>",
    "MAIL FROM:<@other.test>",
    "MAIL TO:<s@other.test>",
    "MAIL FROM:<s@other..test>",
    "MAIL FROM:<s@-other.test>",
    "MAIL FROM:<s @other.test>",
    "MAIL",
])
def test_bad_mail_syntax_is_501(conn, line):
    c = conn()
    code, text = c.cmd(line)
    assert code == 501, "%r -> %s" % (line, text)
    c.expect("MAIL FROM:<s@other.test>", 250)  # the session is not stuck


@pytest.mark.parametrize("line", [
    "RCPT TO:alice@example.test",
    "RCPT TO:<>",
    "RCPT FROM:<alice@example.test>",
    "RCPT TO:<alice@example.test",
    "RCPT",
])
def test_bad_rcpt_syntax_is_501(conn, line):
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    code, text = c.cmd(line)
    assert code == 501, "%r -> %s" % (line, text)
    c.expect("RCPT TO:<alice@example.test>", 250)


def test_unknown_mail_parameter_is_555(conn):
    c = conn()
    c.expect("MAIL FROM:<s@other.test> FROBNICATE=yes", 555, "5.5.4")
    c.expect("MAIL FROM:<s@other.test> BODY=9BIT", 555, "5.5.4")
    c.expect("MAIL FROM:<s@other.test> BODY=8BITMIME SIZE=100", 250)


def test_rcpt_parameters_are_refused(conn):
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<alice@example.test> FROBNICATE=yes", 555, "5.5.4")


def test_data_with_argument_is_501(conn):
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    c.expect("DATA now", 501)
    c.expect("RSET", 250)


def test_nul_in_command_line_is_refused(conn):
    c = conn()
    c.send(b"NOOP\x00\r\n")
    code, text = c.reply()
    assert code == 500, text
    c.expect("NOOP", 250)


def test_lf_only_command_lines_are_understood(conn):
    # RFC 5321 2.3.8 wants CRLF, but servers commonly accept LF in commands;
    # in any case the server must answer each line exactly once.
    c = conn()
    c.send(b"NOOP\nNOOP\r\n")
    codes = [c.reply()[0] for _ in range(2)]
    assert codes[1] == 250
    c.expect("NOOP", 250)


# ---------------------------------------------------------------- null sender, postmaster

def test_null_sender_is_accepted_and_delivered(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    content = b"Subject: bounce\r\n\r\nyour message could not be delivered\r\n"
    qid = c.send_message("", [rcpt], content)
    got = server.mailbox(rcpt)
    assert len(got) == 1
    assert_stored(server.message(rcpt, got[0]["uid"]), content, qid, rcpt)


def test_rcpt_postmaster_without_domain(server, conn):
    # RFC 5321 4.5.1: "RCPT TO:<Postmaster>" must be accepted (case-insensitive).
    # (hostname mail.example.test: the postmaster of example.test)
    # (it may exist already: then "user add" fails, which is fine here)
    server.cli("user", "add", "postmaster@example.test", "--password-stdin",
               input=b"secret-Passw0rd\n", check=False)
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<Postmaster>", 250)
    c.expect("DATA", 354)
    c.send(body("to postmaster") + b".\r\n")
    code, text = c.reply()
    assert code == 250, text
    assert any(m["subject"] == "to postmaster" for m in server.mailbox("postmaster@example.test"))


# ---------------------------------------------------------------- abuse

def test_http_request_is_554_and_closed(conn):
    c = conn(ehlo=False)
    c.send(b"GET / HTTP/1.1\r\nHost: mail.example.test\r\n\r\n")
    code, text = c.reply()
    assert code == 554, text
    assert c.closed(), "the session must end after an HTTP request"


def test_http_post_after_ehlo_is_554_and_closed(conn):
    c = conn()
    c.send(b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    code, text = c.reply()
    assert code == 554, text
    assert c.closed()


def test_starttls_and_auth_not_offered_here(conn):
    # this listener is the inbound MX without TLS configured: neither command works,
    # and neither is advertised
    c = conn(ehlo=False)
    text = c.expect("EHLO client.test", 250)
    assert "STARTTLS" not in text and "AUTH" not in text
    code, _ = c.cmd("STARTTLS")
    assert 500 <= code < 600
    code, _ = c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
    assert 500 <= code < 600
    c.expect("NOOP", 250)


# ---------------------------------------------------------------- pipelining (RFC 2920)

def test_pipelined_transaction(server, conn):
    a, b = fresh_user(server), fresh_user(server)
    c = conn()
    content = body("pipelined")
    c.send("MAIL FROM:<s@other.test>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (a, b))
    assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    c.send(content + b".\r\n")
    code, text = c.reply()
    qid = queue_id(text)
    for r in (a, b):
        got = server.mailbox(r)
        assert len(got) == 1
        assert_stored(server.message(r, got[0]["uid"]), content, qid)


def test_pipelined_whole_transactions_in_one_send(server, conn):
    rcpt = fresh_user(server)
    c = conn(ehlo=False)
    n = 5
    blob = b"EHLO client.test\r\n"
    contents = [body("pipe %d" % i, "message number %d" % i) for i in range(n)]
    for content in contents:
        blob += ("MAIL FROM:<s@other.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt).encode()
        blob += content + b".\r\n"
    blob += b"QUIT\r\n"
    c.send(blob)
    code, _ = c.reply()
    assert code == 250
    qids = []
    for i in range(n):
        codes = [c.reply()[0] for _ in range(3)]
        assert codes == [250, 250, 354], (i, codes)
        code, text = c.reply()
        qids.append(queue_id(text))
    assert c.reply()[0] == 221
    assert len(set(qids)) == n, "queue ids must be unique: %s" % qids
    got = server.wait_count(rcpt, n)
    assert len(got) == n
    stored = {m["subject"]: server.message(rcpt, m["uid"]) for m in got}
    for i, content in enumerate(contents):
        assert_stored(stored["pipe %d" % i], content, qids[i], rcpt)


def test_pipelined_with_a_refused_recipient(server, conn):
    a = fresh_user(server)
    c = conn()
    c.send("MAIL FROM:<s@other.test>\r\nRCPT TO:<nobody-x@example.test>\r\n"
           "RCPT TO:<%s>\r\nRCPT TO:<r@other.test>\r\nDATA\r\n" % a)
    codes = [c.reply()[0] for _ in range(5)]
    assert codes == [250, 550, 250, 550, 354], codes
    c.send(body("partly") + b".\r\n")
    assert c.reply()[0] == 250
    assert len(server.mailbox(a)) == 1


def test_pipelined_data_after_all_recipients_refused(server, conn):
    # RFC 2920 3.1: DATA after only refused RCPTs fails, and the client then
    # must not send the content; the session stays in command state.
    c = conn()
    c.send("MAIL FROM:<s@other.test>\r\nRCPT TO:<nobody-y@example.test>\r\nDATA\r\nNOOP\r\n")
    codes = [c.reply()[0] for _ in range(4)]
    assert codes[:2] == [250, 550]
    assert codes[2] in (503, 554)
    assert codes[3] == 250


def test_message_ids_and_queue_ids_distinct(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    ids = {c.send_message("s@other.test", [rcpt], body("x%d" % i)) for i in range(3)}
    assert len(ids) == 3


# ---------------------------------------------------------------- logs

def test_log_lines_carry_queue_and_session_ids(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    qid = c.send_message("s@other.test", [rcpt], body("logged"))
    c.expect("RCPT TO:<nobody-logged@example.test>", 503)
    c.expect("QUIT", 221)
    assert c.closed()
    deadline = time.time() + 5
    while time.time() < deadline:
        lines = [l for l in server.log_text().splitlines() if qid in l]
        if lines:
            break
        time.sleep(0.1)
    assert lines, "no log line names queue id %s" % qid
    accepted = [l for l in lines if "accepted" in l]
    assert accepted, lines
    # key=value fields, and the session that carried it
    m = re.search(r"session=(\S+)", accepted[0])
    assert m, accepted[0]
    sid = m.group(1)
    session_lines = [l for l in server.log_text().splitlines() if sid in l]
    assert any("connect" in l for l in session_lines), session_lines
    deadline = time.time() + 5
    while not any("disconnect" in l and "quit" in l for l in session_lines) and time.time() < deadline:
        time.sleep(0.1)
        session_lines = [l for l in server.log_text().splitlines() if sid in l]
    assert any("disconnect" in l and "quit" in l for l in session_lines), session_lines


def test_peer_text_in_logs_is_escaped(server, conn):
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.send(b"RCPT TO:<evil\x1b[31m\"fake event=accepted\"@other.test>\r\n")
    code, _ = c.reply()
    assert code >= 500
    c.expect("QUIT", 221)
    time.sleep(0.3)
    assert "\x1b" not in server.log_text(), "raw escape character from the peer in the log"
