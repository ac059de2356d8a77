"""Outbound delivery (issue 4): the queue runner against real peers.

Every test runs a real unbound (make_dns) serving the test zones and a
sending dakiya for example.test (alice) with short retry settings; the
receiving side is a second dakiya (the journey) or a scripted Python SMTP
peer on another loopback address, port 2525 (delivery.port). Mail is
submitted the way a client does it: smtplib, AUTH PLAIN on loopback.
"""
import json
import smtplib
import socket
import sqlite3
import threading
import time

import pytest

from conftest import SMTP_PORT, SUBMISSION_PORT, next_ip

PW = "secret-Passw0rd"
ALICE = "alice@example.test"


# ---------------------------------------------------------------- helpers

class Peer:
    """A scripted SMTP peer on ip:2525. rcpt(conn_no, addr) gives the reply
    line to RCPT (conn_no counts connections from 1); messages are kept as
    (rcpts, data bytes)."""

    def __init__(self, ip, rcpt=lambda n, addr: "250 2.1.5 ok", listen=True, bad_tls=False,
                 data_delay=0.0, drop_after=0, dsn=False):
        self.ip = ip
        self.dsn = dsn  # offer DSN (RFC 3461)
        self.lines = []  # every MAIL and RCPT command as received
        self.rcpt = rcpt
        self.bad_tls = bad_tls  # offer STARTTLS, then answer the handshake with junk
        self.data_delay = data_delay  # seconds before the reply to the final dot
        # close a connection without a reply at the first command after this
        # many messages on it (a server that timed out a kept connection)
        self.drop_after = drop_after
        self.msgs = []
        self.senders = []  # MAIL FROM of each message in msgs
        self.conns = 0
        self.active = 0  # connections open now
        self.max_active = 0
        self.per_conn = []  # messages carried by each connection (when it ended)
        self.lock = threading.Lock()
        self.sock = None
        if listen:
            self.start()

    def start(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.ip, SMTP_PORT))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def _accept(self):
        sock = self.sock
        while True:
            try:
                c, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _session(self, c):
        with self.lock:
            self.conns += 1
            n = self.conns
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        f = c.makefile("rb")
        carried = 0
        counted = True  # in self.active

        def w(line):
            c.sendall((line + "\r\n").encode())

        try:
            w("220 peer.test ESMTP scripted")
            rcpts = []
            for raw in f:
                cmd = raw.decode(errors="replace").rstrip("\r\n")
                up = cmd.upper()
                if self.drop_after and carried >= self.drop_after:
                    break
                if up.startswith("MAIL") or up.startswith("RCPT"):
                    with self.lock:
                        self.lines.append(cmd)
                if up.startswith("EHLO"):
                    w("250-peer.test")
                    if self.bad_tls:
                        w("250-STARTTLS")
                    if self.dsn:
                        w("250-DSN")
                    w("250 8BITMIME")
                elif up == "STARTTLS" and self.bad_tls:
                    w("220 2.0.0 go ahead")
                    # junk right behind the 220 would be refused as injected
                    # plaintext (outcome protocol): wait for the ClientHello
                    c.recv(4096)
                    c.sendall(b"this is not a TLS server hello\r\n" * 4)
                    break
                elif up.startswith("HELO"):
                    w("250 peer.test")
                elif up.startswith("MAIL"):
                    rcpts = []
                    sender = cmd[cmd.index("<") + 1:cmd.index(">")]
                    w("250 2.1.0 ok")
                elif up.startswith("RCPT"):
                    addr = cmd[cmd.index("<") + 1:cmd.index(">")]
                    r = self.rcpt(n, addr)
                    if r.startswith("250"):
                        rcpts.append(addr)
                    w(r)
                elif up == "DATA":
                    w("354 go ahead")
                    data = b""
                    for d in f:
                        if d == b".\r\n":
                            break
                        data += d
                    if self.data_delay:
                        time.sleep(self.data_delay)
                    with self.lock:
                        self.senders.append(sender)
                        self.msgs.append((rcpts, data))
                    carried += 1
                    w("250 2.0.0 accepted")
                elif up in ("RSET", "NOOP"):
                    w("250 2.0.0 ok")
                elif up == "QUIT":
                    # no longer active from here: the client may open the
                    # next connection as soon as it has the reply
                    with self.lock:
                        self.active -= 1
                        counted = False
                    w("221 2.0.0 bye")
                    break
                else:
                    w("502 5.5.2 not here")
        except OSError:
            pass
        finally:
            with self.lock:
                if counted:
                    self.active -= 1
                self.per_conn.append(carried)
            c.close()

    def wait(self, n=1, timeout=30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.msgs) >= n:
                return self.msgs
            time.sleep(0.05)
        raise AssertionError("peer %s got %d messages, expected %d" % (self.ip, len(self.msgs), n))


@pytest.fixture
def peers():
    made = []

    def make(*a, **kw):
        p = Peer(next_ip(), *a, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def sender_zone(a_ip):
    return {"example.test": ["example.test. 300 IN MX 10 mx.example.test.",
                             "mx.example.test. 300 IN A %s" % a_ip,
                             'example.test. 300 IN TXT "v=spf1 ip4:%s -all"' % a_ip]}


def mx_zone(domain, ip):
    return {domain: ["%s. 300 IN MX 10 mx.%s." % (domain, domain),
                     "mx.%s. 300 IN A %s" % (domain, ip)]}


def configure(s, dns, **delivery):
    """Point s at the test DNS and give it short delivery settings."""
    opts = {"port": SMTP_PORT, "source": '"%s"' % s.ip, "scan_interval": 1, "retry_min": 1,
            "retry_max": 2, "max_lifetime": 3600, "delay_warning": 0}
    opts.update(delivery)
    lines = [dns.conf_line(), "delivery {"] + ["  %s = %s" % kv for kv in opts.items()] + [
        "}", "submission { plain_auth_loopback = true }", ""]
    s.conf.write_text(s.conf.read_text() + "\n".join(lines))


def start_sender(make_server, make_dns, zones, start_dns=True, **delivery):
    """The sending server A (example.test, alice) and the DNS with zones
    (a dict, or a function of A's address giving one)."""
    a = make_server(domain="example.test", users=("alice",), tls=True, start=False,
                    delivery=True)
    z = sender_zone(a.ip)
    z.update(zones(a) if callable(zones) else zones)
    dns = make_dns(z, start=start_dns)
    configure(a, dns, **delivery)
    return a.start(), dns


def submit(a, rcpts, subject, sender=ALICE):
    body = ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nhello from alice: %s\r\n"
            % (sender, ", ".join(rcpts), subject, subject))
    with smtplib.SMTP(a.ip, SUBMISSION_PORT, timeout=30) as c:
        c.login(ALICE, PW)
        c.sendmail(sender, rcpts, body.encode())


def qlist(s):
    return json.loads(s.cli("queue", "list", "--json").stdout)


def qshow(s, qid):
    return json.loads(s.cli("queue", "show", qid, "--json").stdout)


def wait_for(pred, timeout=30.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def events(s, kind=None):
    """Every event in the store (the journey outlives the queue entry)."""
    db = sqlite3.connect(str(s.dir / "data" / "dakiya.db"))
    try:
        rows = db.execute("SELECT queue_id, kind, rcpt, text FROM events ORDER BY id").fetchall()
    finally:
        db.close()
    return [r for r in rows if kind is None or r[1] == kind]


def bounce_of(a, subject_part=None, timeout=30.0):
    """The text of the (first) delivery status notification in alice's INBOX."""
    msgs = a.wait_count(ALICE, 1, timeout=timeout)
    assert len(msgs) == 1, msgs
    text = a.message(ALICE, msgs[0]["uid"]).decode(errors="replace")
    assert "multipart/report" in text and "MAILER-DAEMON@" in text, text
    return text


# ---------------------------------------------------------------- tests

def test_journey_two_servers(make_server, make_dns):
    """alice@example.test submits to bob@receive.test through A; A finds
    receive.test's MX in DNS and relays to B over STARTTLS; the message is in
    bob's INBOX with both servers' Received: headers."""
    b = make_server(domain="receive.test", users=("bob",), tls=True, start=False)
    a, dns = start_sender(make_server, make_dns, mx_zone("receive.test", b.ip))
    b.conf.write_text(b.conf.read_text() + "\n" + dns.conf_line() + "\n")
    b.start()
    submit(a, ["bob@receive.test"], "journey")
    got = b.wait_count("bob@receive.test", 1)
    text = b.message("bob@receive.test", got[0]["uid"]).decode(errors="replace")
    assert "hello from alice: journey" in text
    received = [l for l in text.split("\r\n") if l.startswith("Received:")]
    assert len(received) == 2, text
    assert "by mail.receive.test" in text and "by mail.example.test" in text, text
    wait_for(lambda: qlist(a) == [], 10, "an empty queue on A")
    att = [e for e in events(a, "attempt") if "mx.receive.test" in e[3]]
    assert att and "ip=%s" % b.ip in att[0][3] and "tls=TLSv1." in att[0][3], att
    assert "event=attempt" in a.log_text()
    assert qlist(a) == [] and a.mailbox(ALICE) == []


def test_451_then_delivered_on_a_later_attempt(make_server, make_dns, peers):
    allow = threading.Event()
    p = peers(rcpt=lambda n, addr: "250 2.1.5 ok" if allow.is_set() else
              "451 4.7.1 greylisted, come back later")
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip))
    submit(a, ["carl@peer.test"], "greylisted")
    q = wait_for(lambda: [e for e in qlist(a) if e["attempts"] >= 1], 30, "a first attempt")
    qid = q[0]["id"]
    show = qshow(a, qid)
    assert show["recipient_status"][0]["status"] == "pending"
    assert "451 4.7.1" in show["recipient_status"][0]["last_reply"]
    assert any(e["kind"] == "attempt" and "451" in e["text"] for e in show["events"]), show
    out = a.cli("queue", "show", qid).stdout.decode()
    assert "attempt" in out and "mx.peer.test" in out, out
    allow.set()
    msgs = p.wait(1)
    assert msgs[0][0] == ["carl@peer.test"] and b"greylisted" in msgs[0][1]
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    att = [e for e in events(a, "attempt") if e[0] == qid]
    assert len(att) >= 2 and "451" in att[0][3] and "accepted" in att[-1][3], att
    assert a.mailbox(ALICE) == []  # no bounce, no warning


def test_550_bounces_to_the_sender(make_server, make_dns, peers):
    p = peers(rcpt=lambda n, addr: "550 5.1.1 <%s>: no such user here" % addr)
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip))
    submit(a, ["nobody@peer.test"], "to nobody")
    text = bounce_of(a)
    assert "nobody@peer.test" in text
    assert "550 5.1.1" in text and "no such user here" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "Subject: to nobody" in text  # the original headers come back
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    assert p.msgs == []


def test_null_mx_bounces_at_once(make_server, make_dns):
    a, dns = start_sender(make_server, make_dns, {"nullmx.test": ["nullmx.test. 300 IN MX 0 ."]},
                   retry_min=600, retry_max=600)
    submit(a, ["x@nullmx.test"], "null mx")
    text = bounce_of(a, timeout=15)
    assert "x@nullmx.test" in text and "5.1.10" in text
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")


def test_domain_with_only_an_a_record(make_server, make_dns, peers):
    p = peers()
    a, dns = start_sender(make_server, make_dns, {"aonly.test": ["aonly.test. 300 IN A %s" % p.ip]})
    submit(a, ["y@aonly.test"], "implicit mx")
    assert p.wait(1)[0][0] == ["y@aonly.test"]
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")


def test_mx_fallback_to_the_secondary(make_server, make_dns, peers):
    p = peers()
    dead = next_ip()  # nothing listens there: connection refused
    a, dns = start_sender(make_server, make_dns, {"fb.test": [
        "fb.test. 300 IN MX 10 mx1.fb.test.", "fb.test. 300 IN MX 20 mx2.fb.test.",
        "mx1.fb.test. 300 IN A %s" % dead, "mx2.fb.test. 300 IN A %s" % p.ip]},
        retry_min=600, retry_max=600)
    submit(a, ["z@fb.test"], "fallback")
    assert p.wait(1)[0][0] == ["z@fb.test"]
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    att = [e[3] for e in events(a, "attempt")]
    assert any("mx1.fb.test" in t and "connect-failed" in t for t in att), att
    assert any("mx2.fb.test" in t for t in att), att


def test_dns_down_keeps_the_message_queued(make_server, make_dns, peers):
    p = peers()
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip))
    dns.stop()
    submit(a, ["w@peer.test"], "dns down")
    q = wait_for(lambda: [e for e in qlist(a) if e["attempts"] >= 1], 45, "a failed attempt")
    assert "DNS" in q[0]["last_error"] or "dns" in q[0]["last_error"], q
    assert a.mailbox(ALICE) == [] and p.msgs == []
    dns.start()
    assert p.wait(1, timeout=45)[0][0] == ["w@peer.test"]
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    assert a.mailbox(ALICE) == []


def test_restart_mid_queue_delivers_once(make_server, make_dns, peers):
    p = peers(listen=False)  # the peer is down at first
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip))
    submit(a, ["v@peer.test"], "restart")
    wait_for(lambda: [e for e in qlist(a) if e["attempts"] >= 1], 30, "a failed attempt")
    assert a.stop() == 0
    p.start()
    a.start()
    p.wait(1)
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    time.sleep(2)  # two more scans: nothing goes twice
    assert len(p.msgs) == 1
    assert a.mailbox(ALICE) == []


def test_delay_warning_once_then_expiry_bounce(make_server, make_dns, peers):
    """A peer that always says 451: one delay warning (NOTIFY default allows
    it), then after max_lifetime the recipient fails and bounces."""
    p = peers(rcpt=lambda n, addr: "451 4.3.2 not now")
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip),
                          delay_warning=1, max_lifetime=5)
    submit(a, ["slow@peer.test"], "slow one")
    msgs = a.wait_count(ALICE, 2, timeout=30)
    texts = [a.message(ALICE, m["uid"]).decode(errors="replace") for m in msgs]
    assert "Action: delayed" in texts[0] and "slow@peer.test" in texts[0], texts[0]
    assert "Action: failed" in texts[1] and "451 4.3.2 not now" in texts[1], texts[1]
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    time.sleep(1.5)
    assert len(a.mailbox(ALICE)) == 2  # one warning, one bounce, nothing more


def test_bounce_to_a_remote_sender_and_never_for_the_null_sender(make_server, make_dns, peers):
    """Mail relayed through an alias to a domain that refuses it: the bounce
    goes to the (remote) sender's MX with MAIL FROM:<>; the same with a
    null sender bounces nothing."""
    rej = peers(rcpt=lambda n, addr: "550 5.7.1 refused")
    home = peers()
    a, dns = start_sender(make_server, make_dns, {**mx_zone("rej.test", rej.ip),
                                                  **mx_zone("home.test", home.ip)})
    a.cli("alias", "add", "fwd@example.test", "gone@rej.test")
    from conftest import open_conn
    c = open_conn(a.ip)
    c.send_message("carol@home.test", ["fwd@example.test"],
                   b"From: carol@home.test\r\nSubject: via alias\r\n\r\nhi\r\n")
    c.send_message("", ["fwd@example.test"],
                   b"From: daemon@home.test\r\nSubject: a report\r\n\r\nhi\r\n")
    c.close()
    got = home.wait(1)
    assert home.senders == [""] and got[0][0] == ["carol@home.test"]
    assert b"gone@rej.test" in got[0][1] and b"550 5.7.1 refused" in got[0][1]
    wait_for(lambda: qlist(a) == [], 15, "an empty queue")
    wait_for(lambda: "reason=null-sender" in a.log_text(), 10, "the suppressed bounce")
    time.sleep(1.5)
    assert len(home.msgs) == 1


def test_tls_handshake_failure_retries_in_the_clear(make_server, make_dns, peers):
    p = peers(bad_tls=True)
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip),
                          retry_min=600, retry_max=600)
    submit(a, ["t@peer.test"], "tls fallback")
    assert p.wait(1)[0][0] == ["t@peer.test"]
    assert p.conns == 2
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    att = [e[3] for e in events(a, "attempt")]
    assert "outcome=tls-failed" in att[0] and "outcome=ok" in att[1], att


# ---------------------------------------------------------------- connections

def submit_many(a, rcpt_of, n, tag):
    """n messages in one submission session, the i-th to rcpt_of(i)."""
    with smtplib.SMTP(a.ip, SUBMISSION_PORT, timeout=30) as c:
        c.login(ALICE, PW)
        for i in range(n):
            r = rcpt_of(i)
            body = ("From: %s\r\nTo: %s\r\nSubject: %s %d\r\n\r\nbody %s %d\r\n"
                    % (ALICE, r, tag, i, tag, i))
            c.sendmail(ALICE, [r], body.encode())


def test_messages_to_one_domain_share_a_kept_connection(make_server, make_dns, peers):
    """With one connection per domain allowed, ten messages queued for the
    same domain go over a single connection (RSET, next MAIL), each once."""
    p = peers()
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip),
                          connections_per_domain=1, connection_cache_time=10)
    submit_many(a, lambda i: "r%d@peer.test" % i, 10, "kept")
    msgs = p.wait(10)
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    assert p.conns == 1 and p.max_active == 1, (p.conns, p.max_active)
    assert sorted(m[0][0] for m in msgs) == sorted("r%d@peer.test" % i for i in range(10))
    assert all(b"body kept" in m[1] for m in msgs)
    assert "reused=yes" in a.log_text()
    time.sleep(1)
    assert len(p.msgs) == 10


def test_without_a_cache_time_every_message_has_its_own_connection(
        make_server, make_dns, peers):
    p = peers()
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip),
                          connections_per_domain=1, connection_cache_time=0)
    submit_many(a, lambda i: "n%d@peer.test" % i, 4, "fresh")
    p.wait(4)
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    assert p.conns == 4 and p.max_active == 1 and p.per_conn.count(1) == 4, p.per_conn
    assert "reused=yes" not in a.log_text()


def test_reuse_max_ends_a_connection_after_that_many_messages(make_server, make_dns, peers):
    p = peers()
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip),
                          connections_per_domain=1, connection_cache_time=10,
                          connection_reuse_max=3)
    submit_many(a, lambda i: "m%d@peer.test" % i, 7, "capped")
    p.wait(7)
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    wait_for(lambda: p.active == 0 and sum(p.per_conn) == 7, 20, "the connections to end")
    assert max(p.per_conn) <= 3 and p.conns >= 3, p.per_conn


def test_connections_per_domain_and_in_total_are_limits(make_server, make_dns, peers):
    """A slow peer keeps connections busy: at most connections_per_domain
    of them to one domain, at most connections in total over two domains."""
    p = peers(data_delay=0.4)
    q = peers(data_delay=0.4)
    a, dns = start_sender(make_server, make_dns,
                          {**mx_zone("one.test", p.ip), **mx_zone("two.test", q.ip)},
                          connections_per_domain=2, connections=3, connection_cache_time=0)
    both = [0]  # the most connections open to the two peers at once

    def watch():
        while len(p.msgs) + len(q.msgs) < 12:
            both[0] = max(both[0], p.active + q.active)
            time.sleep(0.005)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    submit_many(a, lambda i: "x%d@%s" % (i, "one.test" if i % 2 else "two.test"), 12, "limits")
    p.wait(6)
    q.wait(6)
    w.join(5)
    wait_for(lambda: qlist(a) == [], 15, "an empty queue")
    assert p.max_active <= 2 and q.max_active <= 2, (p.max_active, q.max_active)
    assert p.max_active == 2 or q.max_active == 2  # the slow peers really made them wait
    assert 2 <= both[0] <= 3, both


def test_a_kept_connection_the_peer_dropped_is_replaced_at_once(make_server, make_dns, peers):
    """The peer closes each connection, without a reply, at the first command
    after one message (as a server whose idle timeout ran out would): the
    next message goes on a new connection in the same attempt, not after a
    retry delay."""
    p = peers(drop_after=1)
    a, dns = start_sender(make_server, make_dns, mx_zone("peer.test", p.ip),
                          connections_per_domain=1, connection_cache_time=10,
                          retry_min=600, retry_max=600)
    submit_many(a, lambda i: "d%d@peer.test" % i, 3, "dropped")
    p.wait(3, timeout=20)
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    assert len(p.msgs) == 3 and p.conns >= 3
    att = [e[3] for e in events(a, "attempt")]
    assert any("outcome=closed" in t for t in att), att  # a kept one was tried and failed
    assert sorted(m[0][0] for m in p.msgs) == ["d0@peer.test", "d1@peer.test", "d2@peer.test"]


def test_stop_records_what_was_done_and_a_restart_repeats_only_the_rest(
        make_server, make_dns, peers):
    """One message for two domains: one.test takes it at once, two.test
    hangs at RCPT when the server is stopped. The stop records one.test as
    sent; after the restart only two.test gets it (due at once despite the
    long retry delay), and one.test never sees it twice."""
    gate = threading.Event()
    one = peers()
    two = peers(rcpt=lambda n, addr: (gate.wait(30), "250 2.1.5 ok")[1] if n == 1
                else "250 2.1.5 ok")
    a, dns = start_sender(make_server, make_dns,
                          {**mx_zone("one.test", one.ip), **mx_zone("two.test", two.ip)},
                          retry_min=600, retry_max=600)
    submit(a, ["x@one.test", "y@two.test"], "half done")
    one.wait(1)
    wait_for(lambda: two.conns >= 1, 10, "two.test's first connection")
    assert a.stop() == 0
    gate.set()
    a.start()
    assert two.wait(1, timeout=20)[0][0] == ["y@two.test"]
    wait_for(lambda: qlist(a) == [], 10, "an empty queue")
    time.sleep(1.5)
    assert len(one.msgs) == 1 and len(two.msgs) == 1
    assert a.mailbox(ALICE) == []
    sent = [e for e in events(a, "sent")]
    assert [e[2] for e in sent].count("x@one.test") == 1, sent


def test_a_kept_connection_gives_its_slot_to_another_domain_waiting(
        make_server, make_dns, peers):
    """With one connection in total and a long cache time, the connection
    kept for one.test is closed at once when two.test waits for the slot,
    rather than two.test waiting out the cache time."""
    one = peers(data_delay=0.5)
    two = peers()
    a, dns = start_sender(make_server, make_dns,
                          {**mx_zone("one.test", one.ip), **mx_zone("two.test", two.ip)},
                          connections=1, connection_cache_time=20)
    t0 = time.time()
    submit_many(a, lambda i: ("x@one.test", "y@two.test")[i], 2, "slot")
    one.wait(1)
    two.wait(1, timeout=15)
    assert time.time() - t0 < 10, "two.test waited %.1f s" % (time.time() - t0)
    assert one.max_active + two.max_active <= 2 and max(one.max_active, two.max_active) == 1
