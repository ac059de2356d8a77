"""Every input has a limit (DESIGN.md; STYLE.md 7): past it the peer gets a
clear SMTP reply, and the server goes on serving everyone else.

Each test runs its own server with the limit it exercises (make_server).
"""
import socket
import time

from conftest import Conn, assert_stored, open_conn


def read_until_close(c, timeout=10):
    """All replies until the server closes the connection."""
    c.sock.settimeout(timeout)
    out = []
    while True:
        try:
            out.append(c.reply())
        except (EOFError, ConnectionResetError):
            return out


def only_message(server, rcpt):
    got = server.mailbox(rcpt)
    assert len(got) == 1, got
    return server.message(rcpt, got[0]["uid"])


# ---------------------------------------------------------------- recipients

def test_too_many_recipients_is_452(make_server):
    s = make_server(users=("alice", "bob", "carol", "dave", "erin"), limits={"recipients": 3})
    c = open_conn(s.ip)
    c.expect("MAIL FROM:<s@other.test>", 250)
    for u in ("alice", "bob", "carol"):
        c.expect("RCPT TO:<%s@example.test>" % u, 250)
    c.expect("RCPT TO:<dave@example.test>", 452, "4.5.3")
    c.expect("RCPT TO:<erin@example.test>", 452, "4.5.3")
    # the transaction goes on with the recipients already accepted
    c.expect("DATA", 354)
    content = b"Subject: three\r\n\r\nonly three\r\n"
    c.send(content + b".\r\n")
    code, text = c.reply()
    assert code == 250, text
    for u in ("alice", "bob", "carol"):
        assert len(s.mailbox("%s@example.test" % u)) == 1
    for u in ("dave", "erin"):
        assert s.mailbox("%s@example.test" % u) == []
    # the limit is per message: the next transaction may have 3 again
    c.expect("MAIL FROM:<s@other.test>", 250)
    for u in ("dave", "erin", "alice"):
        c.expect("RCPT TO:<%s@example.test>" % u, 250)
    c.close()


def test_refused_recipients_do_not_count_toward_the_limit(make_server):
    s = make_server(users=("alice", "bob", "carol"), limits={"recipients": 3})
    c = open_conn(s.ip)
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<nobody@example.test>", 550)
    c.expect("RCPT TO:<x@other.test>", 550)
    for u in ("alice", "bob", "carol"):
        c.expect("RCPT TO:<%s@example.test>" % u, 250)
    c.close()


# ---------------------------------------------------------------- errors and junk

def test_too_many_errors_is_421_then_close(make_server):
    n = 4
    s = make_server(limits={"errors": n})
    c = open_conn(s.ip)
    for _ in range(n):
        c.expect("FROB", 500, "5.5.2")
    c.expect("NOOP", 250)  # still open after exactly n errors
    c.send("FROB\r\n")
    replies = read_until_close(c)
    assert replies, "no reply before the close"
    last = replies[-1]
    assert last[0] == 421, replies
    assert all(code in (500, 421) for code, _ in replies), replies
    # everyone else is still served
    c2 = open_conn(s.ip)
    c2.expect("NOOP", 250)
    c2.close()


def test_errors_of_every_kind_count(make_server):
    s = make_server(limits={"errors": 3})
    c = open_conn(s.ip)
    c.expect("RCPT TO:<alice@example.test>", 503)       # wrong order
    c.expect("MAIL FROM:<broken", 501)                  # bad syntax
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<x@other.test>", 550)            # relay attempt
    c.send("RCPT TO:<nobody@example.test>\r\n")         # 4th error
    replies = read_until_close(c)
    assert replies[-1][0] == 421, replies


def test_too_many_junk_commands_is_421(make_server):
    s = make_server(limits={"junk_commands": 5})
    c = open_conn(s.ip)
    for _ in range(5):
        c.expect("NOOP", 250)
    c.send("NOOP\r\n")
    replies = read_until_close(c)
    assert replies[-1][0] == 421, replies


def test_too_many_messages_per_session(make_server):
    s = make_server(limits={"messages_per_session": 2})
    c = open_conn(s.ip)
    for i in range(2):
        c.send_message("s@other.test", ["alice@example.test"], b"Subject: %d\r\n\r\nx\r\n" % i)
    c.send("MAIL FROM:<s@other.test>\r\n")
    code, text = c.reply()
    assert code == 421, text
    assert c.closed()
    assert len(s.mailbox("alice@example.test")) == 2


# ---------------------------------------------------------------- line length

def test_overlong_command_line_is_500_and_session_goes_on(make_server):
    s = make_server()
    c = open_conn(s.ip)
    c.send(b"NOOP " + b"x" * 10000 + b"\r\n")
    code, text = c.reply()
    assert (code, text[4:10]) == (500, "5.5.2 "), text
    c.expect("NOOP", 250)
    content = b"Subject: after long line\r\n\r\nok\r\n"
    qid = c.send_message("s@other.test", ["alice@example.test"], content)
    assert_stored(only_message(s, "alice@example.test"), content, qid)
    c.close()


def test_overlong_line_refused_before_its_newline(make_server):
    s = make_server()
    c = open_conn(s.ip)
    c.send(b"MAIL FROM:<" + b"a" * 20000)  # no newline yet
    c.sock.settimeout(10)
    code, text = c.reply()
    assert (code, text[4:10]) == (500, "5.5.2 "), text
    # more of the same line, then its end: all of it is discarded, without a second reply
    c.send(b"b" * 20000 + b">\r\n")
    c.expect("NOOP", 250)
    c.close()


def test_overlong_rcpt_line_does_not_become_a_recipient(make_server):
    s = make_server()
    c = open_conn(s.ip)
    c.expect("MAIL FROM:<s@other.test>", 250)
    # the tail of an over-long line must not be parsed as a command of its own
    c.send(b"RCPT TO:<" + b"z" * 8000 + b"\r\nRCPT TO:<alice@example.test>\r\n")
    code, text = c.reply()
    assert code == 500, text
    code, text = c.reply()
    assert code == 250, text  # the next, normal line is a command again
    c.close()


def test_512_octet_line_is_accepted(make_server):
    # RFC 5321 4.5.3.1.4: a command line of 512 octets (with CRLF) must work
    s = make_server()
    c = open_conn(s.ip)
    line = "NOOP " + "n" * (512 - 2 - 5)
    assert len(line) + 2 == 512
    c.expect(line, 250)
    c.close()


# ---------------------------------------------------------------- timeouts

def test_command_timeout_is_421_and_close(make_server):
    s = make_server(limits={"command_timeout": 2})
    c = open_conn(s.ip)
    c.expect("MAIL FROM:<s@other.test>", 250)
    t0 = time.time()
    c.sock.settimeout(15)
    code, text = c.reply()
    took = time.time() - t0
    assert (code, text[4:10]) == (421, "4.4.2 "), text
    assert 1.0 <= took <= 8, "timeout after %.1fs, configured 2s" % took
    assert c.closed()


def test_timeout_before_ehlo(make_server):
    s = make_server(limits={"command_timeout": 2})
    c = Conn(s.ip, timeout=15)
    assert c.reply()[0] == 220
    code, text = c.reply()
    assert (code, text[4:10]) == (421, "4.4.2 "), text
    assert c.closed()


def test_activity_resets_the_command_timeout(make_server):
    s = make_server(limits={"command_timeout": 2})
    c = open_conn(s.ip)
    for _ in range(4):
        time.sleep(1)
        c.expect("NOOP", 250)
    c.close()


def test_data_timeout_is_421_and_nothing_stored(make_server):
    s = make_server(limits={"data_timeout": 2})
    c = open_conn(s.ip)
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    c.expect("DATA", 354)
    c.send(b"Subject: stalled\r\n\r\nhalf a mess")
    c.sock.settimeout(15)
    code, text = c.reply()
    assert (code, text[4:10]) == (421, "4.4.2 "), text
    assert c.closed()
    assert s.mailbox("alice@example.test") == []


# ---------------------------------------------------------------- connections

def test_connections_per_ip(make_server):
    s = make_server(limits={"connections_per_ip": 3})
    held = [open_conn(s.ip) for _ in range(3)]
    extra = Conn(s.ip)
    code, text = extra.reply()
    assert code == 421, text
    assert extra.closed()
    extra.close()
    # another client address is not affected
    other = open_conn(s.ip, source="127.0.0.2")
    other.expect("NOOP", 250)
    # the held sessions still work
    for c in held:
        c.expect("NOOP", 250)
    # a closed session gives its slot back
    held.pop().expect("QUIT", 221)
    time.sleep(0.3)
    again = open_conn(s.ip)
    again.expect("NOOP", 250)
    for c in held + [other, again]:
        c.close()


def test_refused_connections_do_not_leak_slots(make_server):
    s = make_server(limits={"connections_per_ip": 2})
    held = [open_conn(s.ip) for _ in range(2)]
    for _ in range(20):
        c = Conn(s.ip)
        assert c.reply()[0] == 421
        c.close()
    for c in held:
        c.expect("QUIT", 221)
        c.close()
    time.sleep(0.3)
    fresh = [open_conn(s.ip) for _ in range(2)]
    for c in fresh:
        c.expect("NOOP", 250)
        c.close()


def test_total_sessions_limit(make_server):
    s = make_server(limits={"sessions": 4, "connections_per_ip": 100})
    held = [open_conn(s.ip, source="127.0.0.%d" % (2 + i)) for i in range(4)]
    extra = Conn(s.ip, source="127.0.0.9")
    code, text = extra.reply()
    assert code == 421, text
    assert extra.closed()
    extra.close()
    held.pop().expect("QUIT", 221)
    time.sleep(0.3)
    c = open_conn(s.ip, source="127.0.0.9")
    c.expect("NOOP", 250)
    for x in held + [c]:
        x.close()


def test_client_that_never_reads_does_not_block_others(make_server):
    s = make_server(limits={"junk_commands": 1000000})
    hog = Conn(s.ip)
    hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # thousands of pipelined commands whose replies are never read
    try:
        hog.sock.settimeout(5)
        hog.send(b"NOOP\r\n" * 200000)
    except (socket.timeout, OSError):
        pass
    c = open_conn(s.ip)
    content = b"Subject: while hogged\r\n\r\nfine\r\n"
    qid = c.send_message("s@other.test", ["alice@example.test"], content)
    assert_stored(only_message(s, "alice@example.test"), content, qid)
    c.close()
    hog.close()


# ---------------------------------------------------------------- header section size

def test_oversized_header_section_is_refused(make_server):
    # DESIGN.md: header size is one of the limits (limits.header_size)
    s = make_server(limits={"header_size": 4096})
    c = open_conn(s.ip)
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"h" * 70) for i in range(100))  # ~8 KB
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    c.expect("DATA", 354)
    c.send(b"Subject: big header\r\n" + headers + b"\r\nsmall body\r\n.\r\n")
    code, text = c.reply()
    assert code in (552, 554) and text[4:6] == "5.", text
    c.expect("NOOP", 250)
    assert s.mailbox("alice@example.test") == []
    # a message with a header section under the limit and a big body is fine
    content = b"Subject: small header\r\n\r\n" + (b"b" * 78 + b"\r\n") * 200
    qid = c.send_message("s@other.test", ["alice@example.test"], content)
    assert_stored(only_message(s, "alice@example.test"), content, qid)
    c.close()


def test_oversized_header_section_by_bdat_is_refused(make_server):
    s = make_server(limits={"header_size": 4096})
    c = open_conn(s.ip)
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"h" * 70) for i in range(100))  # ~8 KB
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    # the header section grows past the limit over two chunks
    first = b"Subject: big header\r\n" + headers[:3000]
    c.send(b"BDAT %d\r\n" % len(first) + first)
    code, text = c.reply()
    assert code == 250, text
    rest = headers[3000:] + b"\r\nbody\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(rest) + rest)
    code, text = c.reply()
    assert code == 552 and text[4:9] == "5.3.4", text
    c.expect("NOOP", 250)
    assert s.mailbox("alice@example.test") == []
    # the next transaction on the same session works
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    ok = b"Subject: fine\r\n\r\nbody\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(ok) + ok)
    code, text = c.reply()
    assert code == 250, text
    assert len(s.mailbox("alice@example.test")) == 1
    c.close()
