"""SPF on mail received by the MX (issue 5, first part): the check runs at
MAIL FROM on the loop's own resolver, DATA/BDAT wait for it, and the stored
message starts with our Authentication-Results (RFC 8601) saying spf=...
Mail from our own users (submission) is not checked. The policy: an SPF
fail from a domain without DMARC goes to Junk (checks.spf_fail); every
other verdict here is delivered to INBOX.
"""
import smtplib
import time

from conftest import SUBMISSION_PORT, next_ip, open_conn, split_received

PW = "secret-Passw0rd"


def zones(src):
    return {
        "sender.test": ['sender.test. 300 IN TXT "v=spf1 ip4:%s -all"' % src,
                        'mail.sender.test. 300 IN TXT "v=spf1 a -all"',
                        "mail.sender.test. 300 IN A %s" % src],
        "soft.test": ['soft.test. 300 IN TXT "v=spf1 ~all"'],
        "fwd.test": ['fwd.test. 300 IN TXT "v=spf1 include:broken.test -all"'],
    }


def server(make_server, make_dns, src, extra="", **kw):
    dns = make_dns(zones(src), servfail=["broken.test"], slow=["slow.test"])
    s = make_server(spf=True, start=False, **kw)
    s.conf.write_text(s.conf.read_text() + "\n" + dns.conf_line() + "\n" + extra + "\n")
    return s.start(), dns


def deliver(s, src, mail_from, helo="client.test", subject="spf"):
    c = open_conn(s.ip, ehlo=False, source=src)
    try:
        c.expect("EHLO " + helo, 250)
        c.send_message(mail_from, ["alice@example.test"],
                       ("From: x@%s\r\nSubject: %s\r\n\r\nbody\r\n" % (helo, subject)).encode())
    finally:
        c.close()


def stored_ar(s, n=1, folder=None):
    deadline = time.time() + 30
    msgs = []
    while time.time() < deadline and len(msgs) < n:
        msgs = s.mailbox("alice@example.test", folder)
        time.sleep(0.05)
    assert len(msgs) >= n, (folder, msgs)
    raw = s.message("alice@example.test", msgs[-1]["uid"], folder)
    ar, rest = split_received(raw, b"Authentication-Results")
    received, _ = split_received(rest)
    assert b"by mail.example.test" in received  # our Received: right after it
    return ar.decode()


def test_pass_fail_softfail_none_and_temperror(make_server, make_dns):
    src, other = next_ip(), next_ip()
    s, dns = server(make_server, make_dns, src)
    deliver(s, src, "a@sender.test", subject="pass")
    ar = stored_ar(s, 1)
    assert ar.startswith("Authentication-Results: mail.example.test;\r\n\tspf=pass ("), ar
    assert "smtp.mailfrom=a@sender.test" in ar and "matched ip4" in ar, ar
    deliver(s, other, "a@sender.test", subject="fail")
    # no DMARC record for the From domain: SPF fail files it in Junk
    assert "spf=fail (matched -all in sender.test) smtp.mailfrom=a@sender.test" in stored_ar(
        s, 1, "Junk")
    deliver(s, other, "a@soft.test")
    assert "spf=softfail" in stored_ar(s, 2)
    deliver(s, other, "a@nospf.test")
    assert "spf=none" in stored_ar(s, 3)
    deliver(s, other, "a@fwd.test")
    assert "spf=temperror" in stored_ar(s, 4)  # SERVFAIL: never fail
    assert len(s.mailbox("alice@example.test", "Junk")) == 1
    assert "event=spf result=pass identity=mailfrom domain=sender.test" in s.log_text()


def test_null_sender_checks_the_helo_name(make_server, make_dns):
    src = next_ip()
    s, dns = server(make_server, make_dns, src)
    deliver(s, src, "", helo="mail.sender.test")
    ar = stored_ar(s)
    assert "spf=pass" in ar and "smtp.helo=mail.sender.test" in ar, ar


def test_pipelined_data_and_bdat_wait_for_a_slow_check(make_server, make_dns):
    """The sender's domain does not answer: MAIL, RCPT and DATA arrive in one
    packet, DATA waits for the check, which ends at checks.timeout with
    temperror; the message is stored intact. The same with BDAT."""
    src = next_ip()
    s, dns = server(make_server, make_dns, src, extra="checks { timeout = 2 }")
    for verb in ("DATA", "BDAT"):
        c = open_conn(s.ip, source=src)
        try:
            body = b"From: x@slow.test\r\nSubject: slow %s\r\n\r\nslow body\r\n" % verb.encode()
            t0 = time.time()
            if verb == "DATA":
                c.send(b"MAIL FROM:<a@slow.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
                codes = [c.reply()[0] for _ in range(3)]
                assert codes == [250, 250, 354], codes
                c.send(body + b".\r\n")
            else:
                c.send(b"MAIL FROM:<a@slow.test>\r\nRCPT TO:<alice@example.test>\r\n"
                       b"BDAT %d LAST\r\n" % len(body) + body)
                codes = [c.reply()[0] for _ in range(2)]
                assert codes == [250, 250], codes
            code, text = c.reply()
            assert code == 250, text
            assert time.time() - t0 >= 1.5  # it really waited for the check
            c.expect("NOOP", 250)  # and the session goes on
        finally:
            c.close()
    for n in (1, 2):
        ar = stored_ar(s, n)
        assert "spf=temperror (the check took too long) smtp.mailfrom=a@slow.test" in ar, ar
    msgs = s.mailbox("alice@example.test")
    raw = s.message("alice@example.test", msgs[-1]["uid"])
    assert raw.endswith(b"\r\n\r\nslow body\r\n"), raw[-80:]
    assert "event=spf result=temperror reason=timeout" in s.log_text()


def test_rset_and_disconnect_while_the_check_runs(make_server, make_dns):
    src = next_ip()
    s, dns = server(make_server, make_dns, src, extra="checks { timeout = 3 }")
    c = open_conn(s.ip, source=src)
    c.expect("MAIL FROM:<a@slow.test>", 250)
    c.expect("RSET", 250)  # the pending check is dropped with the transaction
    c.expect("MAIL FROM:<a@sender.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    c.close()  # gone while its check may still run
    c = open_conn(s.ip, source=src)
    c.send(b"MAIL FROM:<b@slow.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    c.close()  # gone while DATA waits
    time.sleep(3.5)
    deliver(s, src, "a@sender.test")
    assert "spf=pass" in stored_ar(s)
    assert s.alive()


def test_submitted_mail_is_not_checked(make_server, make_dns):
    src = next_ip()
    s, dns = server(make_server, make_dns, src, tls=True,
                    extra="submission { plain_auth_loopback = true }")
    with smtplib.SMTP(s.ip, SUBMISSION_PORT, timeout=30) as c:
        c.login("alice@example.test", PW)
        c.sendmail("alice@example.test", ["bob@example.test"],
                   b"From: alice@example.test\r\nSubject: own\r\n\r\nmine\r\n")
    msgs = s.wait_count("bob@example.test", 1)
    raw = s.message("bob@example.test", msgs[0]["uid"])
    assert b"Authentication-Results:" not in raw.split(b"\r\n\r\n")[0], raw[:400]
    assert "event=spf" not in s.log_text()


def test_forged_authentication_results_with_our_id_are_removed(make_server, make_dns):
    """A sender's own "Authentication-Results: mail.example.test; spf=pass"
    claims to be our verdict: it goes; one from another server stays; the
    rest of the message is stored byte for byte."""
    src = next_ip()
    s, dns = server(make_server, make_dns, src)
    body = (b"Authentication-Results: mail.example.test; spf=pass smtp.mailfrom=ceo@sender.test\r\n"
            b"Authentication-Results: relay.other.test; dkim=pass header.d=other.test\r\n"
            b"Authentication-Results: MAIL.EXAMPLE.TEST;\r\n\tdmarc=pass\r\n"
            b"From: ceo@sender.test\r\nSubject: trust me\r\n\r\n"
            b"Authentication-Results: mail.example.test; in the body, untouched\r\n")
    c = open_conn(s.ip, source=next_ip())
    try:
        c.send_message("ceo@sender.test", ["alice@example.test"], body)
    finally:
        c.close()
    # SPF fail and no DMARC record: Junk
    msgs = s.wait_count("alice@example.test", 1, folder="Junk")
    raw = s.message("alice@example.test", msgs[0]["uid"], "Junk")
    ar, rest = split_received(raw, b"Authentication-Results")
    assert b"spf=fail" in ar, ar  # ours: the client is not in sender.test's SPF
    _, content = split_received(rest)
    assert content == body.split(b"\r\n", 1)[1].replace(
        b"Authentication-Results: MAIL.EXAMPLE.TEST;\r\n\tdmarc=pass\r\n", b""), content
    assert b"relay.other.test; dkim=pass" in content
    assert b"in the body, untouched" in content
    assert "event=removed-auth-results" in s.log_text() and "count=2" in s.log_text()
