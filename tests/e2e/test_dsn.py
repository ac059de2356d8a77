"""The DSN extension (RFC 3461) on dakiya's SMTP server, end to end (issue
4): RET, ENVID, NOTIFY and ORCPT are checked at MAIL/RCPT, kept with the
message, passed on to a next hop that offers DSN, and honoured in the
reports dakiya sends: "delivered" for a local recipient that asked for
success, "relayed" for one handed to a next hop without DSN, no bounce for
NOTIFY=NEVER, the whole message back for RET=FULL.
"""
import smtplib
import time

from conftest import SUBMISSION_PORT, open_conn
from test_delivery import (ALICE, PW, configure, events, mx_zone, peers, qlist,  # noqa: F401
                           start_sender, wait_for)


def send(a, rcpts, subject, mail_options=(), rcpt_options=(), sender=ALICE):
    body = ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nhello from alice: %s\r\n"
            % (sender, ", ".join(rcpts), subject, subject))
    with smtplib.SMTP(a.ip, SUBMISSION_PORT, timeout=30) as c:
        c.login(ALICE, PW)
        c.sendmail(sender, rcpts, body.encode(), mail_options=list(mail_options),
                   rcpt_options=list(rcpt_options))


def reports(s, address, n, timeout=30.0):
    msgs = s.wait_count(address, n, timeout=timeout)
    return [s.message(address, m["uid"]).decode(errors="replace") for m in msgs]


def rcpt_and_data(s, rcpt_lines, sender="alice@example.test", mail_params=""):
    """A connection past MAIL (with mail_params) and RCPT TO:<each line>."""
    c = open_conn(s.ip)
    try:
        c.expect("MAIL FROM:<%s>%s" % (sender, mail_params), 250)
        for line in rcpt_lines:
            c.expect("RCPT TO:" + line, 250)
        return c
    except Exception:
        c.close()
        raise


def finish_data(c, subject, sender="alice@example.test", body="body"):
    """DATA with a small message; 250 expected; the connection is closed."""
    try:
        c.expect("DATA", 354)
        c.send(("From: %s\r\nSubject: %s\r\n\r\n%s\r\n.\r\n" % (sender, subject, body)).encode())
        assert c.reply()[0] == 250
    finally:
        c.close()


def status_part(rep):
    """The message/delivery-status part of a report."""
    return rep.split("message/delivery-status", 1)[1].split("text/rfc822-headers")[0]


def test_ehlo_offers_dsn_and_bad_parameters_are_refused(make_server):
    s = make_server(limits={"errors": 50})
    c = open_conn(s.ip)
    try:
        assert "250-DSN" in c.cmd("EHLO client.test")[1]
        c.expect("MAIL FROM:<a@remote.test> RET=FULL ENVID=QQ+2Bid", 250, "2.1.0")
        c.expect("RCPT TO:<alice@example.test> NOTIFY=SUCCESS,DELAY "
                 "ORCPT=rfc822;alice+2Bx@example.test", 250, "2.1.5")
        c.expect("RSET", 250)
        for bad in ("RET=SOME", "RET=FULL RET=HDRS", "ENVID=a+zz", "ENVID=", "RET",
                    "ENVID=" + "x" * 101):
            c.expect("MAIL FROM:<a@remote.test> " + bad, 501, "5.5.4")
        c.expect("MAIL FROM:<a@remote.test>", 250)
        for bad in ("NOTIFY=NEVER,SUCCESS", "NOTIFY=SUCCESS NOTIFY=FAILURE", "NOTIFY=SOMETIMES",
                    "ORCPT=rfc822", "ORCPT=rfc822;", "ORCPT=rfc822;a@b ORCPT=rfc822;c@d"):
            c.expect("RCPT TO:<alice@example.test> " + bad, 501, "5.5.4")
        c.expect("RCPT TO:<alice@example.test> FOO=1", 555, "5.5.4")
        c.expect("RCPT TO:<alice@example.test> NOTIFY=never", 250)  # case-insensitive
        c.expect("NOOP", 250)  # the session goes on
    finally:
        c.close()


def test_success_for_a_local_recipient_is_a_delivered_report(make_server):
    """alice asks for success on bob: the report, with the envelope id and
    the original recipient, lands in alice's INBOX; a recipient who did not
    ask (carl) is not in it."""
    s = make_server(users=("alice", "bob", "carl"))
    c = rcpt_and_data(s, ["<bob@example.test> NOTIFY=SUCCESS ORCPT=rfc822;Bob@Example.test",
                          "<carl@example.test>"], mail_params=" ENVID=env+2D1")
    finish_data(c, "tell me")
    assert len(s.wait_count("bob@example.test", 1)) == 1
    rep = reports(s, ALICE, 1)[0]
    assert "multipart/report" in rep and "Action: delivered" in rep, rep
    assert "Original-Envelope-Id: env-1" in rep, rep
    assert "Original-Recipient: rfc822;Bob@Example.test" in rep, rep
    assert "Final-Recipient: rfc822;bob@example.test" in rep, rep
    assert "carl@example.test" not in status_part(rep), rep
    assert "Subject: tell me" in rep  # the original headers
    assert "\r\nbody\r\n" not in rep  # success reports return headers only
    # without NOTIFY=SUCCESS: no report
    c = open_conn(s.ip)
    try:
        c.send_message("alice@example.test", ["bob@example.test"],
                       b"From: alice@example.test\r\nSubject: quiet\r\n\r\nquiet\r\n")
    finally:
        c.close()
    assert len(s.wait_count("bob@example.test", 2)) == 2
    time.sleep(1)
    assert len(s.mailbox(ALICE)) == 1


def test_success_report_for_a_remote_sender_is_queued(make_server):
    s = make_server()  # delivery off: the report waits in the queue
    c = rcpt_and_data(s, ["<bob@example.test> NOTIFY=SUCCESS,FAILURE"], sender="carol@home.test")
    finish_data(c, "hi bob", sender="carol@home.test")
    q = wait_for(lambda: [e for e in qlist(s) if e["recipients"] == ["carol@home.test"]], 10,
                 "the report in the queue")
    assert q[0]["sender"] == ""  # reports go with the null sender
    # and a report about a message from the null sender is never made
    c = rcpt_and_data(s, ["<bob@example.test> NOTIFY=SUCCESS"], sender="")
    finish_data(c, "a report", sender="daemon@home.test")
    wait_for(lambda: "event=dsn-suppressed reason=null-sender action=delivered" in s.log_text(),
             10, "the suppressed report")
    assert len(qlist(s)) == 1


def test_parameters_go_on_to_a_next_hop_that_offers_dsn(make_server, make_dns, peers):
    p = peers(dsn=True)
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip))
    send(a, ["t@peer.test"], "pass it on", mail_options=["RET=HDRS", "ENVID=abc+2B1"],
         rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;T@peer.test"])
    p.wait(1)
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    mail = [l for l in p.lines if l.upper().startswith("MAIL")]
    rcpt = [l for l in p.lines if l.upper().startswith("RCPT")]
    assert "RET=HDRS" in mail[0] and "ENVID=abc+2B1" in mail[0], mail
    assert rcpt == ["RCPT TO:<t@peer.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;T@peer.test"], rcpt
    time.sleep(1)
    assert a.mailbox(ALICE) == []  # the next hop reports success, not we


def test_success_to_a_next_hop_without_dsn_is_a_relayed_report(make_server, make_dns, peers):
    p = peers()  # no DSN offered
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip))
    send(a, ["t@peer.test", "u@peer.test"], "relayed", mail_options=["ENVID=e7"],
         rcpt_options=["NOTIFY=SUCCESS"])
    p.wait(1)
    assert all("NOTIFY" not in l and "ENVID" not in l for l in p.lines), p.lines
    rep = reports(a, ALICE, 1)[0]
    assert "Action: relayed" in rep and "Original-Envelope-Id: e7" in rep, rep
    assert "Final-Recipient: rfc822;t@peer.test" in rep and "u@peer.test" in rep, rep
    assert any(e[1] == "relayed-notice" for e in events(a)), events(a)


def test_notify_never_means_no_bounce_and_ret_full_returns_the_message(
        make_server, make_dns, peers):
    p = peers(rcpt=lambda n, addr: "550 5.1.1 <%s>: no such user here" % addr)
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip))
    send(a, ["quiet@peer.test"], "never tell", rcpt_options=["NOTIFY=NEVER"])
    wait_for(lambda: qlist(a) == [], 15, "the refused one to leave the queue")
    send(a, ["full@peer.test"], "whole thing", mail_options=["RET=FULL"])
    rep = reports(a, ALICE, 1)[0]
    assert "full@peer.test" in rep and "Action: failed" in rep, rep
    assert "message/rfc822" in rep and "hello from alice: whole thing" in rep, rep
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    time.sleep(1)
    assert len(a.mailbox(ALICE)) == 1  # none for NOTIFY=NEVER
    assert "quiet@peer.test" not in rep


def test_journey_success_report_comes_back_from_the_final_server(make_server, make_dns):
    """A relays to B, which offers DSN: A passes NOTIFY=SUCCESS on and sends
    nothing itself; B delivers to bob and sends the delivered report back
    to alice through A."""
    b = make_server(domain="receive.test", users=("bob",), tls=True, start=False,
                    delivery=True)
    a, dns = start_sender(make_server, make_dns, mx_zone("receive.test", b.ip))
    configure(b, dns)
    b.start()
    send(a, ["bob@receive.test"], "round trip", mail_options=["ENVID=trip-1"],
         rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    assert len(b.wait_count("bob@receive.test", 1)) == 1
    rep = reports(a, ALICE, 1)[0]
    assert "Action: delivered" in rep and "Reporting-MTA: dns; mail.receive.test" in rep, rep
    assert "Original-Envelope-Id: trip-1" in rep, rep
    wait_for(lambda: qlist(a) == [] and qlist(b) == [], 15, "both queues empty")
    time.sleep(1)
    assert len(a.mailbox(ALICE)) == 1  # no "relayed" report from A


def test_recipient_deleted_after_rcpt_bounces_instead_of_vanishing(make_server):
    """carl is deleted between RCPT and the end of DATA: the message still
    gets its 250 (bob has it), and alice is told that carl's copy could not
    be stored, rather than the copy disappearing without a word."""
    s = make_server(users=("alice", "bob", "carl"))
    c = rcpt_and_data(s, ["<bob@example.test>", "<carl@example.test>"])
    s.cli("user", "del", "carl@example.test")
    finish_data(c, "to both")
    assert len(s.wait_count("bob@example.test", 1)) == 1
    rep = reports(s, ALICE, 1)[0]
    assert "Action: failed" in rep and "Final-Recipient: rfc822;carl@example.test" in rep, rep
    assert "removed after the message was accepted" in rep, rep
    assert "bob@example.test" not in status_part(rep), rep


def test_deleted_recipient_with_notify_never_gets_no_report(make_server):
    s = make_server(users=("alice", "bob", "carl"))
    c = rcpt_and_data(s, ["<bob@example.test>", "<carl@example.test> NOTIFY=NEVER"])
    s.cli("user", "del", "carl@example.test")
    finish_data(c, "never")
    assert len(s.wait_count("bob@example.test", 1)) == 1
    wait_for(lambda: "message dropped rcpt=carl@example.test" in s.log_text(), 10, "the drop")
    time.sleep(1)
    assert s.mailbox(ALICE) == []


def test_reports_name_the_alias_not_its_targets(make_server):
    """team@ forwards to carl alone: when carl goes, the report is about
    team@ (with its ORCPT), never naming carl. list@ expands to bob and carl:
    NOTIFY=SUCCESS gives one "expanded" report for list@."""
    s = make_server(users=("alice", "bob", "carl"))
    s.cli("alias", "add", "team@example.test", "carl@example.test")
    s.cli("alias", "add", "list@example.test", "bob@example.test", "carl@example.test")
    c = rcpt_and_data(s, ["<team@example.test> NOTIFY=FAILURE ORCPT=rfc822;team@example.test"])
    s.cli("user", "del", "carl@example.test")
    finish_data(c, "to the team")
    rep = reports(s, ALICE, 1)[0]
    status = status_part(rep)
    assert "Action: failed" in status and "Final-Recipient: rfc822;team@example.test" in status
    assert "Original-Recipient: rfc822;team@example.test" in status, status
    assert "carl" not in status, status
    s.add_user("carl@example.test")
    c = rcpt_and_data(s, ["<list@example.test> NOTIFY=SUCCESS"])
    finish_data(c, "to the list")
    reps = reports(s, ALICE, 2)
    status = status_part(reps[1])
    assert "Action: expanded" in status and "rfc822;list@example.test" in status, status
    assert "bob@" not in status and "carl@" not in status, status


def test_a_long_orcpt_is_kept_as_received(make_server):
    orcpt = "utf-8;" + "a+20" * 110 + "@example.test"  # 463 bytes, grows when re-encoded
    s = make_server()
    c = rcpt_and_data(s, ["<bob@example.test> NOTIFY=SUCCESS ORCPT=" + orcpt])
    finish_data(c, "long orcpt")
    rep = reports(s, ALICE, 1)[0]
    assert "Original-Recipient: utf-8;" in rep, rep
    assert "Action: delivered" in rep
