"""Interop with Postfix, both ways (issue 4): dakiya delivers to a Postfix MX
(STARTTLS, connection reuse, a 550 that bounces), and Postfix relays to a
dakiya MX. Postfix runs as a private instance on its own loopback address
(tests/e2e/postfix.py); DNS is the test's own unbound.
"""
import re
import shutil
import smtplib
import tempfile
from pathlib import Path

import pytest

from conftest import SMTP_PORT, make_cert, next_ip
from postfix import Postfix, available
from test_delivery import (ALICE, bounce_of, events, mx_zone, qlist, start_sender, submit,
                           submit_many, wait_for)

pytestmark = pytest.mark.skipif(not available(), reason="needs root and the postfix package")


@pytest.fixture
def make_postfix():
    made = []

    def make(**kw):
        # not under pytest's tmp_path: that is mode 0700, and Postfix's
        # daemons run as postfix and nobody
        base = Path(tempfile.mkdtemp(prefix="dakiya-postfix-"))
        base.chmod(0o755)
        if kw.pop("tls", True):
            kw["cert"], kw["key"] = base / "cert.pem", base / "key.pem"
            make_cert(kw["cert"], kw["key"], kw.get("hostname", "mx.pf.test"))
        p = Postfix(base, next_ip(), SMTP_PORT, **kw)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.stop()
        shutil.rmtree(p.dir, ignore_errors=True)


def test_dakiya_delivers_to_a_postfix_mx(make_server, make_dns, make_postfix):
    pf = make_postfix(mailboxes={"carl@pf.test"})
    a, dns = start_sender(make_server, make_dns, mx_zone("pf.test", pf.ip))
    submit(a, ["carl@pf.test"], "to postfix")
    got = pf.wait_messages("carl@pf.test", 1)[0].decode(errors="replace")
    assert "Subject: to postfix" in got and "hello from alice: to postfix" in got
    # Postfix's Received: for the hop from dakiya, over STARTTLS
    hop = re.search(r"Received: from mail\.example\.test \(.*?\)\s+\(using TLSv1\.[23].*?"
                    r"by mx\.pf\.test \(Postfix\) with ESMTPS", got, re.S)
    assert hop, got
    assert "by mail.example.test" in got  # dakiya's own submission hop is below it
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    att = [e[3] for e in events(a, "attempt")]
    assert any("host=mx.pf.test" in t and "tls=TLSv1." in t and "outcome=ok" in t
               for t in att), att
    assert a.mailbox(ALICE) == []


def test_messages_to_postfix_share_one_connection(make_server, make_dns, make_postfix):
    pf = make_postfix(mailboxes={"carl@pf.test", "dora@pf.test"})
    a, dns = start_sender(make_server, make_dns, mx_zone("pf.test", pf.ip),
                          connections_per_domain=1, connection_cache_time=10)
    submit_many(a, lambda i: ("carl@pf.test", "dora@pf.test")[i % 2], 6, "reuse")
    assert len(pf.wait_messages("carl@pf.test", 3)) == 3
    assert len(pf.wait_messages("dora@pf.test", 3)) == 3
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    # one SMTP session at Postfix carried all six (RSET between them)
    log = pf.log_text()
    conns = re.findall(r"smtpd\[\d+\]: connect from \S*\[%s\]" % re.escape(a.ip), log)
    assert len(conns) == 1, log[-3000:]
    assert "reused=yes" in a.log_text()


def test_postfix_refusal_bounces_to_the_sender(make_server, make_dns, make_postfix):
    pf = make_postfix(mailboxes={"carl@pf.test"})
    a, dns = start_sender(make_server, make_dns, mx_zone("pf.test", pf.ip))
    submit(a, ["nobody@pf.test"], "to nobody at postfix")
    text = bounce_of(a)
    assert "nobody@pf.test" in text and "Action: failed" in text
    assert "550 5.1.1" in text and "Recipient address rejected" in text, text
    assert "Remote-MTA: dns; mx.pf.test" in text, text
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")


def test_postfix_relays_to_a_dakiya_mx(make_server, make_postfix):
    b = make_server(domain="receive.test", users=("bob",), tls=True)
    pf = make_postfix(routes={"receive.test": "%s:%d" % (b.ip, SMTP_PORT)})
    body = (b"From: someone@pf.test\r\nTo: bob@receive.test\r\nSubject: via postfix\r\n"
            b"\r\nrelayed by postfix\r\n")
    with smtplib.SMTP(pf.ip, SMTP_PORT, timeout=30) as c:
        c.sendmail("someone@pf.test", ["bob@receive.test"], body)
    msgs = b.wait_count("bob@receive.test", 1)
    text = b.message("bob@receive.test", msgs[0]["uid"]).decode(errors="replace")
    assert "relayed by postfix" in text and "Subject: via postfix" in text
    received = [h for h in re.split(r"\r\n(?=\S)", text.split("\r\n\r\n")[0])
                if h.startswith("Received:")]
    assert len(received) == 2, received
    # dakiya's hop names Postfix's host and address, ESMTPS with the TLS facts
    assert "from mx.pf.test" in received[0] and pf.ip in received[0], received[0]
    assert "by mail.receive.test" in received[0] and "ESMTPS" in received[0], received[0]
    assert "TLS" in received[0], received[0]
    assert "by mx.pf.test (Postfix)" in received[1], received[1]
    assert re.search(r"status=sent \(250 2\.0\.0 Ok: queued as \w+\)", pf.log_text()), \
        pf.log_text()[-2000:]
    assert pf.queue_size() == 0


def test_postfix_retries_after_dakiya_refuses_temporarily(make_server, make_postfix):
    """dakiya is down when Postfix first tries: Postfix defers (a connection
    failure), then delivers once dakiya is up."""
    b = make_server(domain="receive.test", users=("bob",), start=False)
    pf = make_postfix(routes={"receive.test": "%s:%d" % (b.ip, SMTP_PORT)}, tls=False)
    with smtplib.SMTP(pf.ip, SMTP_PORT, timeout=30) as c:
        c.sendmail("someone@pf.test", ["bob@receive.test"],
                   b"From: someone@pf.test\r\nSubject: later\r\n\r\nlater\r\n")
    wait_for(lambda: "status=deferred" in pf.log_text(), 30, "postfix to defer")
    b.start()
    pf.flush()
    assert len(b.wait_count("bob@receive.test", 1, timeout=30)) == 1
    wait_for(lambda: pf.queue_size() == 0, 10, "postfix's queue to empty")
