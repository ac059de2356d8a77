"""Real SMTP clients against the real server: Python smtplib, swaks, curl.

The stored message is compared byte for byte with what the client put on
the wire (each client's own line-ending and dot-stuffing rules applied).
"""
import json
import smtplib
import subprocess
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from conftest import SMTP_PORT, assert_stored, fresh_user, queue_id


@pytest.fixture(scope="module")
def server(module_server):
    return module_server(pool=30)


def smtp(server):
    s = smtplib.SMTP(server.ip, SMTP_PORT, local_hostname="client.test", timeout=30)
    return s


def newest(server, rcpt):
    got = server.mailbox(rcpt)
    assert got, "%s has no messages" % rcpt
    m = max(got, key=lambda m: m["uid"])
    return m, server.message(rcpt, m["uid"])


# ---------------------------------------------------------------- smtplib

def test_smtplib_sendmail_exact_bytes(server):
    rcpt = fresh_user(server)
    content = (b"From: Sender <s@other.test>\r\nTo: %s\r\nSubject: smtplib\r\n\r\n"
               b"Hello.\r\n.a line with a dot\r\n..two\r\n.\r\nend\r\n") % rcpt.encode()
    with smtp(server) as s:
        s.ehlo()
        assert s.has_extn("pipelining") and s.has_extn("8bitmime") and s.has_extn("chunking")
        assert s.has_extn("smtputf8") and s.has_extn("enhancedstatuscodes")
        assert int(s.esmtp_features["size"]) == 50 * 1024 * 1024
        refused = s.sendmail("s@other.test", [rcpt], content)
        assert refused == {}
    m, stored = newest(server, rcpt)
    assert_stored(stored, content, rcpt=rcpt)


def test_smtplib_queue_id_in_reply_and_header(server):
    rcpt = fresh_user(server)
    content = b"Subject: qid\r\n\r\nx\r\n"
    with smtp(server) as s:
        s.ehlo()
        s.mail("s@other.test")
        s.rcpt(rcpt)
        code, resp = s.data(content)
    assert code == 250
    qid = queue_id("250 " + resp.decode())
    assert_stored(newest(server, rcpt)[1], content, qid, rcpt)


def test_smtplib_send_message_and_mailbox_list_json(server):
    rcpt = fresh_user(server)
    msg = EmailMessage()
    msg["From"] = "Ann Sender <ann@other.test>"
    msg["To"] = rcpt
    msg["Subject"] = "Quarterly report"
    msg["Date"] = "Tue, 01 Jul 2025 10:00:00 +0000"
    msg["Message-ID"] = mid = make_msgid(domain="other.test")
    msg.set_content("Numbers attached.\n")
    with smtp(server) as s:
        s.send_message(msg)
    out = server.cli("mailbox", "list", rcpt, "--json").stdout
    entries = json.loads(out)
    assert isinstance(entries, list) and len(entries) == 1
    e = entries[0]
    for key in ("uid", "message_id", "from", "subject", "date", "size", "flags"):
        assert key in e, "%s missing in %s" % (key, e)
    assert isinstance(e["uid"], int) and e["uid"] >= 1
    assert e["subject"] == "Quarterly report"
    assert mid.strip("<>") in e["message_id"]
    assert "ann@other.test" in e["from"]
    assert "01 Jul 2025" in e["date"]
    assert e["flags"] == [] and isinstance(e["flags"], list)
    stored = server.message(rcpt, e["uid"])
    assert e["size"] == len(stored)
    # what smtplib sent: the message as bytes with CRLF line ends
    sent = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    assert_stored(stored, sent, rcpt=rcpt)


def test_smtplib_several_recipients_one_refused(server):
    a, b = fresh_user(server), fresh_user(server)
    with smtp(server) as s:
        refused = s.sendmail("s@other.test", [a, "nobody-c@example.test", b],
                             b"Subject: partly\r\n\r\nx\r\n")
    assert list(refused) == ["nobody-c@example.test"]
    assert refused["nobody-c@example.test"][0] == 550
    assert len(server.mailbox(a)) == 1 and len(server.mailbox(b)) == 1


def test_smtplib_all_recipients_refused(server):
    with smtp(server) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as ei:
            s.sendmail("s@other.test", ["x@other.test", "nobody-d@example.test"], b"Subject: no\r\n\r\n")
    codes = {k: v[0] for k, v in ei.value.recipients.items()}
    assert codes == {"x@other.test": 550, "nobody-d@example.test": 550}


def test_smtplib_many_messages_one_session(server):
    rcpt = fresh_user(server)
    with smtp(server) as s:
        for i in range(20):
            s.sendmail("s@other.test", [rcpt], b"Subject: n%d\r\n\r\nbody %d\r\n" % (i, i))
    got = server.mailbox(rcpt)
    assert sorted(m["subject"] for m in got) == sorted("n%d" % i for i in range(20))
    assert len({m["uid"] for m in got}) == 20


def test_smtplib_smtputf8_and_8bit(server):
    rcpt = fresh_user(server)
    msg = EmailMessage()
    msg["From"] = "Zoë <zoë@other.test>"
    msg["To"] = rcpt
    msg["Subject"] = "Grüße aus Köln"
    msg.set_content("Schöne Grüße, ünïcödé body\n", cte="8bit")
    with smtp(server) as s:
        # send_message adds SMTPUTF8 itself for a non-ASCII sender
        s.send_message(msg, from_addr="zoë@other.test", to_addrs=[rcpt])
    m, stored = newest(server, rcpt)
    assert "Grüße aus Köln" in m["subject"] or "Gr" in m["subject"]
    assert "Schöne Grüße".encode() in stored


def test_smtplib_helo_only_client(server):
    rcpt = fresh_user(server)
    with smtp(server) as s:
        s.helo("old.client.test")
        s.mail("s@other.test")
        s.rcpt(rcpt)
        code, _ = s.data(b"Subject: helo\r\n\r\nx\r\n")
        assert code == 250
    assert len(server.mailbox(rcpt)) == 1


def test_smtplib_vrfy_noop_rset_help(server):
    with smtp(server) as s:
        s.ehlo()
        assert s.noop()[0] == 250
        assert s.verify("alice@example.test")[0] == 252
        assert s.rset()[0] == 250
        assert s.docmd("HELP")[0] == 214


# ---------------------------------------------------------------- swaks

def swaks(server, *args, input=None):
    cmd = ["swaks", "--server", "%s:%d" % (server.ip, SMTP_PORT), "--helo", "swaks.client.test",
           "--timeout", "30", *args]
    return subprocess.run(cmd, capture_output=True, input=input, timeout=120)


def test_swaks_default_message(server):
    rcpt = fresh_user(server)
    r = swaks(server, "--to", rcpt, "--from", "s@other.test")
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    out = r.stdout.decode()
    assert "250 2.0.0 Ok: queued as" in out
    assert len(server.mailbox(rcpt)) == 1


def test_swaks_pipelining_and_data_file(server, tmp_path):
    rcpt = fresh_user(server)
    content = (b"From: s@other.test\r\nTo: %s\r\nSubject: swaks pipelined\r\n\r\n"
               b"line one\r\n.dotted line\r\nlast\r\n") % rcpt.encode()
    f = tmp_path / "msg.eml"
    # swaks always ends the data with CRLF "." CRLF, adding its own CRLF
    f.write_bytes(content[:-2])
    r = swaks(server, "--to", rcpt, "--from", "s@other.test", "--pipeline", "--data", "@%s" % f)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    out = r.stdout.decode()
    assert "PIPELINING" in out
    qid = [l for l in out.splitlines() if "queued as" in l][0].split("queued as ")[1].strip()
    m, stored = newest(server, rcpt)
    assert_stored(stored, content, qid, rcpt)


def test_swaks_unknown_user_fails(server):
    r = swaks(server, "--to", "nobody-s@example.test", "--from", "s@other.test")
    assert r.returncode != 0
    assert "550 5.1.1" in r.stdout.decode()


def test_swaks_relay_fails(server):
    r = swaks(server, "--to", "victim@other.test", "--from", "s@example.test", "--pipeline")
    assert r.returncode != 0
    assert "550 5.7.1" in r.stdout.decode()


def test_swaks_8bitmime_body(server):
    rcpt = fresh_user(server)
    r = swaks(server, "--to", rcpt, "--from", "s@other.test", "--header", "Subject: swaks 8bit", "--body", "naïve café — ok")
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    m, stored = newest(server, rcpt)
    assert "naïve café — ok".encode() in stored


# ---------------------------------------------------------------- curl

def curl(server, *args, input=None):
    cmd = ["curl", "-sS", "--max-time", "60", "smtp://%s:%d" % (server.ip, SMTP_PORT), *args]
    return subprocess.run(cmd, capture_output=True, input=input, timeout=120)


def test_curl_upload_exact_bytes(server, tmp_path):
    rcpt = fresh_user(server)
    content = (b"From: s@other.test\r\nTo: %s\r\nSubject: curl\r\n\r\n"
               b"curl body\r\n.leading dot\r\n..\r\nbye\r\n") % rcpt.encode()
    f = tmp_path / "mail.txt"
    f.write_bytes(content)
    r = curl(server, "--mail-from", "s@other.test", "--mail-rcpt", rcpt, "-T", str(f))
    assert r.returncode == 0, r.stderr.decode()
    m, stored = newest(server, rcpt)
    assert_stored(stored, content, rcpt=rcpt)


def test_curl_several_recipients(server, tmp_path):
    a, b = fresh_user(server), fresh_user(server)
    f = tmp_path / "mail.txt"
    f.write_bytes(b"Subject: curl two\r\n\r\nboth\r\n")
    r = curl(server, "--mail-from", "s@other.test", "--mail-rcpt", a, "--mail-rcpt", b, "-T", str(f))
    assert r.returncode == 0, r.stderr.decode()
    assert len(server.mailbox(a)) == 1 and len(server.mailbox(b)) == 1


def test_curl_relay_refused(server, tmp_path):
    f = tmp_path / "mail.txt"
    f.write_bytes(b"Subject: relay\r\n\r\nno\r\n")
    r = curl(server, "--mail-from", "s@other.test", "--mail-rcpt", "x@other.test", "-T", str(f))
    assert r.returncode != 0
    assert b"550" in r.stderr


def test_curl_crlf_conversion(server, tmp_path):
    # with --crlf curl turns LF into CRLF: the stored message has CRLF only
    rcpt = fresh_user(server)
    f = tmp_path / "unix.txt"
    f.write_bytes(b"Subject: unix file\n\nline\n.dot\n")
    r = curl(server, "--crlf", "--mail-from", "s@other.test", "--mail-rcpt", rcpt, "-T", str(f))
    assert r.returncode == 0, r.stderr.decode()
    m, stored = newest(server, rcpt)
    assert_stored(stored, b"Subject: unix file\r\n\r\nline\r\n.dot\r\n", rcpt=rcpt)


def test_curl_unix_file_without_crlf_is_refused(server, tmp_path):
    # without --crlf curl sends bare LFs: the server must refuse (554 5.6.0)
    rcpt = fresh_user(server)
    f = tmp_path / "unix.txt"
    f.write_bytes(b"Subject: bare lf\n\nline\n")
    r = curl(server, "-v", "--mail-from", "s@other.test", "--mail-rcpt", rcpt, "-T", str(f))
    assert r.returncode != 0
    assert b"< 554 5.6.0" in r.stderr, r.stderr
    assert server.mailbox(rcpt) == []
