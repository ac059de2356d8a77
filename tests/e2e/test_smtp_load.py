"""Load, big messages, misbehaving clients and the durability contract.

- 1,000 messages over 20 parallel smtplib connections all arrive, checked by
  count and by SHA-256 of every stored message against what was sent;
- a 20 MB message is stored byte for byte;
- clients that vanish mid-DATA or sit idle do not disturb anyone else;
- `250` means durable: after kill -9, every acknowledged message is there.
"""
import base64
import hashlib
import os
import signal
import smtplib
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SMTP_PORT, assert_stored, open_conn, queue_id, split_received


def body_lines(nbytes, seed):
    """Random printable CRLF-terminated lines (base64), about nbytes long."""
    raw = hashlib.sha256(seed.encode()).digest()
    rnd = os.urandom(max(1, nbytes * 3 // 4))
    b64 = base64.b64encode(raw + rnd)
    return b"".join(b64[i:i + 76] + b"\r\n" for i in range(0, len(b64), 76))


def stored_content(server, rcpt, uid):
    return split_received(server.message(rcpt, uid))[1]


# ---------------------------------------------------------------- 1,000 messages, 20 connections

def test_1000_messages_over_20_parallel_connections(make_server):
    users = ["r%d" % i for i in range(10)]
    s = make_server(users=users)
    nconn, per_conn = 20, 50
    expected = {}  # subject -> (rcpt, sha256 of the content)
    lock = threading.Lock()
    errors = []

    def worker(t):
        try:
            with smtplib.SMTP(s.ip, SMTP_PORT, local_hostname="load%d.test" % t, timeout=60) as c:
                for i in range(per_conn):
                    rcpt = "%s@example.test" % users[(t * per_conn + i) % len(users)]
                    subject = "load %d-%d" % (t, i)
                    content = (b"From: load@other.test\r\nSubject: " + subject.encode() +
                               b"\r\n\r\n" + body_lines(1000 + 37 * i, subject))
                    c.sendmail("load@other.test", [rcpt], content)
                    with lock:
                        expected[subject] = (rcpt, hashlib.sha256(content).hexdigest())
        except Exception as e:  # reported below, with the thread number
            errors.append((t, repr(e)))

    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nconn)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=180)
    took = time.time() - t0
    assert not errors, errors[:5]
    assert len(expected) == nconn * per_conn
    assert took < 60, "1,000 messages took %.1fs" % took

    # by count, per user and in total
    listed = {}
    for u in users:
        addr = "%s@example.test" % u
        want = sum(1 for r, _ in expected.values() if r == addr)
        got = s.wait_count(addr, want)
        assert len(got) == want, "%s: %d stored, %d sent" % (addr, len(got), want)
        for m in got:
            assert m["subject"] not in listed, "duplicate: %s" % m["subject"]
            listed[m["subject"]] = (addr, m["uid"])
    assert set(listed) == set(expected)

    # by checksum of every stored message
    def check(subject):
        addr, uid = listed[subject]
        return subject, hashlib.sha256(stored_content(s, addr, uid)).hexdigest()

    with ThreadPoolExecutor(4) as ex:
        sums = dict(ex.map(check, list(listed)))
    bad = [k for k in expected if sums[k] != expected[k][1]]
    assert not bad, "%d messages differ, e.g. %s" % (len(bad), bad[:5])


# ---------------------------------------------------------------- 20 MB

def test_20_mb_message(make_server):
    s = make_server()
    content = b"From: big@other.test\r\nSubject: twenty megabytes\r\n\r\n" + body_lines(20 * 1024 * 1024, "big")
    assert len(content) >= 20 * 1024 * 1024
    t0 = time.time()
    with smtplib.SMTP(s.ip, SMTP_PORT, local_hostname="big.test", timeout=120) as c:
        c.ehlo()
        c.mail("big@other.test", ["SIZE=%d" % len(content), "BODY=8BITMIME"])
        c.rcpt("alice@example.test")
        code, resp = c.data(content)
    took = time.time() - t0
    assert code == 250, resp
    assert took < 60, "20 MB took %.1fs" % took
    qid = queue_id("250 " + resp.decode())
    got = s.mailbox("alice@example.test")
    assert len(got) == 1
    stored = s.message("alice@example.test", got[0]["uid"])
    assert got[0]["size"] == len(stored)
    hdr, rest = split_received(stored)
    assert len(rest) == len(content)
    assert hashlib.sha256(rest).digest() == hashlib.sha256(content).digest()
    assert qid.encode() in hdr


def test_20_mb_message_with_bdat_chunks(make_server):
    s = make_server()
    content = b"Subject: big bdat\r\n\r\n" + body_lines(20 * 1024 * 1024, "bdat")
    c = open_conn(s.ip, timeout=120)
    c.expect("MAIL FROM:<big@other.test> SIZE=%d" % len(content), 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    step = 1024 * 1024 + 7
    chunks = [content[i:i + step] for i in range(0, len(content), step)]
    for ch in chunks[:-1]:
        c.send(b"BDAT %d\r\n" % len(ch) + ch)
    c.send(b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1])
    replies = [c.reply() for _ in chunks]
    assert all(code == 250 for code, _ in replies), replies[-3:]
    qid = queue_id(replies[-1][1])
    got = s.mailbox("alice@example.test")
    stored = s.message("alice@example.test", got[0]["uid"])
    hdr, rest = split_received(stored)
    assert hashlib.sha256(rest).digest() == hashlib.sha256(content).digest()
    assert qid.encode() in hdr
    c.close()


# ---------------------------------------------------------------- misbehaving clients

def abort_conn(c):
    """Close with a TCP RST instead of a FIN."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_disconnects_mid_data(make_server, how):
    s = make_server()
    for i in range(5):
        c = open_conn(s.ip)
        c.expect("MAIL FROM:<s@other.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: cut\r\n\r\n" + b"partial line " * (1000 * i + 1))
        abort_conn(c) if how == "rst" else c.close()
    c = open_conn(s.ip)
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    c.expect("DATA", 354)
    c.send(b"Subject: cut\r\n\r\nup to the dot line\r\n")  # no terminator
    c.close()
    time.sleep(0.5)
    assert s.alive()
    assert s.mailbox("alice@example.test") == [], "a message cut short was stored"
    content = b"Subject: whole\r\n\r\nafter the cut ones\r\n"
    c = open_conn(s.ip)
    qid = c.send_message("s@other.test", ["alice@example.test"], content)
    got = s.mailbox("alice@example.test")
    assert len(got) == 1
    assert_stored(s.message("alice@example.test", got[0]["uid"]), content, qid)
    c.close()


def test_client_disconnects_mid_bdat(make_server):
    s = make_server()
    c = open_conn(s.ip)
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    c.send(b"BDAT 100000 LAST\r\n" + b"x" * 5000)
    c.close()
    c = open_conn(s.ip)
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    c.send(b"BDAT 10\r\n0123456789")
    assert c.reply()[0] == 250
    abort_conn(c)
    time.sleep(0.5)
    assert s.alive()
    assert s.mailbox("alice@example.test") == []
    c = open_conn(s.ip)
    c.send_message("s@other.test", ["alice@example.test"], b"Subject: ok\r\n\r\nok\r\n")
    c.close()


def test_disconnect_right_after_the_final_dot(make_server):
    # the client sends the whole message and leaves without reading the reply:
    # the message may or may not be stored, but the server must not crash
    s = make_server()
    for i in range(10):
        c = open_conn(s.ip)
        c.send(b"MAIL FROM:<s@other.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
               b"Subject: fire and forget %d\r\n\r\nbye\r\n.\r\n" % i)
        abort_conn(c) if i % 2 else c.close()
    time.sleep(1)
    assert s.alive()
    assert len(s.mailbox("alice@example.test")) <= 10
    c = open_conn(s.ip)
    c.expect("NOOP", 250)
    c.close()


def test_idle_clients_do_not_block_others(make_server):
    s = make_server()
    idle = []
    for i in range(30):
        c = open_conn(s.ip)
        if i % 3 == 1:
            c.expect("MAIL FROM:<s@other.test>", 250)
        if i % 3 == 2:
            c.expect("MAIL FROM:<s@other.test>", 250)
            c.expect("RCPT TO:<bob@example.test>", 250)
            c.expect("DATA", 354)
            c.send(b"Subject: slow\r\n\r\nhalf")
        idle.append(c)
    t0 = time.time()
    c = open_conn(s.ip)
    for i in range(5):
        c.send_message("s@other.test", ["alice@example.test"], b"Subject: %d\r\n\r\nx\r\n" % i)
    assert time.time() - t0 < 10
    assert len(s.mailbox("alice@example.test")) == 5
    # the slow ones can still finish
    slow = idle[2]
    slow.send(b" of a message\r\n.\r\n")
    code, text = slow.reply()
    assert code == 250, text
    got = s.mailbox("bob@example.test")
    assert len(got) == 1
    assert_stored(s.message("bob@example.test", got[0]["uid"]), b"Subject: slow\r\n\r\nhalf of a message\r\n")
    for x in idle + [c]:
        x.close()


# ---------------------------------------------------------------- durability

def test_acknowledged_messages_survive_kill_9(make_server):
    s = make_server()
    acked = {}
    stop = threading.Event()
    errors = []

    def sender(t):
        try:
            with smtplib.SMTP(s.ip, SMTP_PORT, local_hostname="crash.test", timeout=30) as c:
                i = 0
                while not stop.is_set():
                    subject = "crash %d-%d" % (t, i)
                    content = b"Subject: " + subject.encode() + b"\r\n\r\n" + body_lines(2000, subject)
                    c.sendmail("s@other.test", ["alice@example.test"], content)
                    acked[subject] = hashlib.sha256(content).hexdigest()  # after the 250 only
                    i += 1
        except (smtplib.SMTPException, OSError):
            pass  # the server was killed under us: expected
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    time.sleep(1.5)
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    stop.set()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors
    assert len(acked) > 10, "too few messages before the kill: %d" % len(acked)
    s.logf.close()
    s.proc = None
    s.start()  # the store must open cleanly after the crash
    got = s.mailbox("alice@example.test")
    stored = {}
    for m in got:
        stored[m["subject"]] = m["uid"]
    missing = sorted(set(acked) - set(stored))
    assert not missing, "%d acknowledged messages lost after kill -9, e.g. %s" % (len(missing), missing[:5])
    for subject in list(acked)[:50]:
        content = stored_content(s, "alice@example.test", stored[subject])
        assert hashlib.sha256(content).hexdigest() == acked[subject], subject
    # and it still takes mail
    c = open_conn(s.ip)
    c.send_message("s@other.test", ["alice@example.test"], b"Subject: after\r\n\r\nrestart\r\n")
    c.close()
