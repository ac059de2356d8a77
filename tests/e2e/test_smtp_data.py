"""Message content: DATA transparency, SMTP smuggling, BDAT (RFC 3030),
8BITMIME, SMTPUTF8 (RFC 6531) and the message size limit.

Every accepted message is checked byte for byte: the stored message must be
exactly our Received: header followed by what the client sent (after
dot-unstuffing for DATA; verbatim for BDAT).
"""
import time

import pytest

from conftest import assert_stored, dot_stuff, fresh_user, open_conn, queue_id

SIZE_LIMIT = 100000


@pytest.fixture(scope="module")
def server(module_server):
    s = module_server(pool=45, start=False)
    # checked in test_smtputf8_local_part, so that a CLI problem with UTF-8
    # does not take the whole module down
    s.utf8_user = s.cli("user", "add", "jösé@example.test", "--password-stdin",
                        input=b"secret-Passw0rd\n", check=False)
    return s.start()


@pytest.fixture(scope="module")
def small(module_server):
    """A server with a small message size limit."""
    return module_server(limits={"message_size": SIZE_LIMIT}, pool=10)


def only_message(server, rcpt):
    got = server.mailbox(rcpt)
    assert len(got) == 1, "%s has %d messages, expected 1" % (rcpt, len(got))
    return server.message(rcpt, got[0]["uid"])


def data_exchange(c, rcpt, raw, mail_params=""):
    """MAIL/RCPT/DATA, then send raw (already stuffed, with its terminator)."""
    c.expect("MAIL FROM:<s@other.test>%s" % mail_params, 250)
    c.expect("RCPT TO:<%s>" % rcpt, 250)
    c.expect("DATA", 354)
    c.send(raw)
    return c.reply()


# ---------------------------------------------------------------- DATA, exact bytes

def test_stored_bytes_are_exact(server, conn):
    rcpt = fresh_user(server)
    content = (b"Return-Path: <ignored@other.test>\r\n"
               b"From: Sender <s@other.test>\r\nTo: <%s>\r\nSubject: exact\r\n"
               b"Message-ID: <exact-1@other.test>\r\nX-Folded: one\r\n\ttwo\r\n\r\n"
               b"line with trailing spaces   \r\n\r\n\r\n\ttabbed\r\nlast line\r\n") % rcpt.encode()
    qid = conn().send_message("s@other.test", [rcpt], content)
    hdr = assert_stored(only_message(server, rcpt), content, qid, rcpt)
    assert b"by %s" % server.hostname.encode() in hdr
    assert b"from client.test" in hdr


def test_received_header_shape(server, conn):
    rcpt = fresh_user(server)
    content = b"Subject: shape\r\n\r\nx\r\n"
    qid = conn().send_message("s@other.test", [rcpt], content)
    hdr = assert_stored(only_message(server, rcpt), content, qid, rcpt)
    # RFC 5321 4.4: from-domain, by-domain, with-protocol, id, for, then "; date-time"
    text = hdr.decode()
    assert "with ESMTP" in text, text
    assert "[127.0.0.1]" in text, text
    assert ";" in text and text.rstrip().rsplit(";", 1)[1].strip()[:3] in (
        "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), text
    # header lines are CRLF-terminated and not longer than 998 characters
    assert all(len(l) <= 998 for l in hdr.split(b"\r\n"))


def test_message_without_header_section(server, conn):
    rcpt = fresh_user(server)
    content = b"just a body line, no headers at all\r\n"
    qid = conn().send_message("s@other.test", [rcpt], content)
    assert_stored(only_message(server, rcpt), content, qid)


def test_empty_message(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    code, text = data_exchange(c, rcpt, b".\r\n")
    assert code == 250, text
    assert_stored(only_message(server, rcpt), b"", queue_id(text))


def test_helo_session_received_says_smtp(server, conn):
    rcpt = fresh_user(server)
    c = conn(ehlo=False)
    c.expect("HELO old.client.test", 250)
    content = b"Subject: helo\r\n\r\nold client\r\n"
    qid = c.send_message("s@other.test", [rcpt], content)
    hdr = assert_stored(only_message(server, rcpt), content, qid)
    assert b"with SMTP " in hdr and b"old.client.test" in hdr, hdr


# ---------------------------------------------------------------- dot-stuffing

def test_dot_stuffing_is_undone(server, conn):
    rcpt = fresh_user(server)
    content = (b".starts with a dot\r\n"   # even the very first line
               b"Subject: dots\r\n\r\n"
               b".\r\n"
               b"..\r\n"
               b"...\r\n"
               b". space\r\n"
               b".leading\r\n"
               b"..double leading\r\n"
               b"middle . dot\r\n"
               b"end with dot.\r\n"
               b".\r\n")
    stuffed = dot_stuff(content)
    assert stuffed.count(b"\r\n..") >= 6
    c = conn()
    code, text = data_exchange(c, rcpt, stuffed + b".\r\n")
    assert code == 250, text
    assert_stored(only_message(server, rcpt), content, queue_id(text))


def test_unstuffed_line_lone_dot_in_body(server, conn):
    # the client sends "..\r\n" meaning a line with one dot; the stored
    # message must contain "\r\n.\r\n" (and the mailbox must still be readable)
    rcpt = fresh_user(server)
    c = conn()
    code, text = data_exchange(c, rcpt, b"Subject: lone\r\n\r\nbefore\r\n..\r\nafter\r\n.\r\n")
    assert code == 250, text
    assert_stored(only_message(server, rcpt), b"Subject: lone\r\n\r\nbefore\r\n.\r\nafter\r\n",
                  queue_id(text))


def test_terminator_split_across_packets(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<%s>" % rcpt, 250)
    c.expect("DATA", 354)
    content = b"Subject: split\r\n\r\n.dot\r\nbody\r\n"  # sent stuffed, as "..dot"
    for piece in [b"Subject: split\r", b"\n\r\n.", b".dot\r\nbody", b"\r", b"\n", b".", b"\r", b"\n"]:
        c.send(piece)
        time.sleep(0.05)
    code, text = c.reply()
    assert code == 250, text
    assert_stored(only_message(server, rcpt), content, queue_id(text))


def test_byte_at_a_time(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    content = b"Subject: bytes\r\n\r\n.x\r\n\r\n.\r\nend\r\n"
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<%s>" % rcpt, 250)
    c.expect("DATA", 354)
    for i, b in enumerate(dot_stuff(content) + b".\r\n"):
        c.send(bytes([b]))
        if i % 4 == 0:
            time.sleep(0.005)
    code, text = c.reply()
    assert code == 250, text
    assert_stored(only_message(server, rcpt), content, queue_id(text))


# ---------------------------------------------------------------- SMTP smuggling

SMUGGLE = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r\n.\r\r\n", b"\n..\n"]


@pytest.mark.parametrize("seq", SMUGGLE, ids=[repr(s)[2:-1] for s in SMUGGLE])
def test_smuggled_end_of_data_is_not_end(server, conn, seq):
    victim, evil_rcpt = fresh_user(server), fresh_user(server)
    c = conn()
    raw = (b"From: s@other.test\r\nSubject: carrier\r\n\r\nhello" + seq +
           b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<" + evil_rcpt.encode() + b">\r\n"
           b"DATA\r\nFrom: ceo@example.test\r\nSubject: smuggled\r\n\r\nwire money\r\n.\r\n")
    code, text = data_exchange(c, victim, raw)
    # exactly one reply for the whole thing: a refusal, after the real end
    assert code == 554, text
    assert text[4:].startswith("5.6.0 "), text
    # no further replies are pending: the smuggled commands were data
    c.expect("NOOP", 250)
    # the session is still usable
    ok = b"Subject: clean\r\n\r\nclean\r\n"
    qid = c.send_message("s@other.test", [victim], ok)
    assert_stored(only_message(server, victim), ok, qid)
    assert server.mailbox(evil_rcpt) == [], "a smuggled message was delivered"


def test_smuggling_all_in_one_send_with_pipelining(server, conn):
    victim, evil_rcpt = fresh_user(server), fresh_user(server)
    c = conn()
    c.send(b"MAIL FROM:<s@other.test>\r\nRCPT TO:<" + victim.encode() + b">\r\nDATA\r\n"
           b"Subject: carrier\r\n\r\nhi\n.\nMAIL FROM:<x@example.test>\r\nRCPT TO:<"
           + evil_rcpt.encode() + b">\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\nNOOP\r\n")
    codes = [c.reply()[0] for _ in range(5)]
    assert codes == [250, 250, 354, 554, 250], codes
    assert server.mailbox(victim) == []
    assert server.mailbox(evil_rcpt) == []


@pytest.mark.parametrize("content", [
    b"Subject: lf\r\n\r\nbare\nlf\r\n",
    b"Subject: cr\r\n\r\nbare\rcr\r\n",
    b"Subject: lf-header\nX: y\r\n\r\nbody\r\n",
    b"Subject: end\r\n\r\nends with bare lf\n\r\n",
], ids=["lf-body", "cr-body", "lf-header", "lf-before-crlf"])
def test_bare_lf_or_cr_refused(server, conn, content):
    rcpt = fresh_user(server)
    c = conn()
    code, text = data_exchange(c, rcpt, content + b".\r\n")
    assert (code, text[4:10]) == (554, "5.6.0 "), text
    c.expect("NOOP", 250)
    assert server.mailbox(rcpt) == []


# ---------------------------------------------------------------- 8BITMIME, SMTPUTF8

def test_8bit_body(server, conn):
    rcpt = fresh_user(server)
    content = ("Subject: 8bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n\r\nnamasté, डाकिया, こんにちは\r\n").encode()
    content += b"raw latin-1 \xe9\xe8 and every high byte " + bytes(range(0x80, 0x100)) + b"\r\n"
    qid = conn().send_message("s@other.test", [rcpt], content, " BODY=8BITMIME")
    assert_stored(only_message(server, rcpt), content, qid)


def test_7bit_body_parameter(server, conn):
    rcpt = fresh_user(server)
    content = b"Subject: 7bit\r\n\r\nplain\r\n"
    qid = conn().send_message("s@other.test", [rcpt], content, " BODY=7BIT")
    assert_stored(only_message(server, rcpt), content, qid)


def test_smtputf8_local_part(server, conn):
    rcpt = "jösé@example.test"
    r = server.utf8_user
    assert r.returncode == 0, "user add jösé@example.test: %s" % r.stderr.decode(errors="replace")
    before = len(server.mailbox(rcpt))
    c = conn()
    content = "From: Ännä <ännä@other.test>\r\nTo: jösé@example.test\r\nSubject: ünïcödé\r\n\r\nhallo\r\n".encode()
    c.send("MAIL FROM:<ännä@other.test> SMTPUTF8 BODY=8BITMIME\r\n".encode())
    assert c.reply()[0] == 250
    c.send("RCPT TO:<jösé@example.test>\r\n".encode())
    code, text = c.reply()
    assert code == 250, text
    c.expect("DATA", 354)
    c.send(content + b".\r\n")
    code, text = c.reply()
    assert code == 250, text
    got = server.mailbox(rcpt)
    assert len(got) == before + 1
    new = max(got, key=lambda m: m["uid"])
    assert new["subject"] == "ünïcödé"
    hdr = assert_stored(server.message(rcpt, new["uid"]), content, queue_id(text))
    assert b"with UTF8ESMTP" in hdr, hdr  # RFC 6531 3.7.3


def test_non_ascii_sender_needs_smtputf8(conn):
    c = conn()
    c.send("MAIL FROM:<ännä@other.test>\r\n".encode())
    code, text = c.reply()
    assert (code, text[4:10]) == (553, "5.6.7 "), text
    c.expect("NOOP", 250)


def test_non_ascii_recipient_needs_smtputf8(conn):
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.send("RCPT TO:<jösé@example.test>\r\n".encode())
    code, text = c.reply()
    assert (code, text[4:10]) == (553, "5.6.7 "), text


def test_invalid_utf8_in_address_refused(conn):
    c = conn()
    c.send(b"MAIL FROM:<\xc3(bad@other.test> SMTPUTF8\r\n")
    code, text = c.reply()
    assert code in (501, 553), text
    c.expect("NOOP", 250)


# ---------------------------------------------------------------- BDAT (CHUNKING)

def bdat_begin(c, rcpt):
    c.expect("MAIL FROM:<s@other.test>", 250)
    c.expect("RCPT TO:<%s>" % rcpt, 250)


def test_bdat_single_chunk(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    bdat_begin(c, rcpt)
    content = b"Subject: bdat\r\n\r\none chunk\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(content) + content)
    code, text = c.reply()
    assert code == 250, text
    assert_stored(only_message(server, rcpt), content, queue_id(text), rcpt)


def test_bdat_several_chunks_then_zero_last(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    bdat_begin(c, rcpt)
    chunks = [b"Subject: chunks\r\n", b"\r\nfirst ", b"half of a line", b" and the rest\r\n"]
    for ch in chunks:
        c.send(b"BDAT %d\r\n" % len(ch) + ch)
        code, text = c.reply()
        assert code == 250, text
    code, text = c.cmd("BDAT 0 LAST")
    assert code == 250, text
    assert_stored(only_message(server, rcpt), b"".join(chunks), queue_id(text))


def test_bdat_content_is_not_unstuffed_and_not_terminated(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    bdat_begin(c, rcpt)
    content = (b"Subject: raw\r\n\r\n.starts with dot\r\n..two dots\r\n"
               b"\r\n.\r\nQUIT\r\nMAIL FROM:<x@other.test>\r\n.\r\n")
    c.send(b"BDAT %d LAST\r\n" % len(content) + content)
    code, text = c.reply()
    assert code == 250, text
    assert_stored(only_message(server, rcpt), content, queue_id(text))
    c.expect("NOOP", 250)


def test_bdat_binary_and_no_final_crlf(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    c.expect("MAIL FROM:<s@other.test> BODY=8BITMIME", 250)
    c.expect("RCPT TO:<%s>" % rcpt, 250)
    content = b"Subject: bin\r\n\r\n" + bytes(range(0x20, 0x100)) + b"\r\nno newline at the end"
    c.send(b"BDAT %d LAST\r\n" % len(content) + content)
    code, text = c.reply()
    assert code == 250, text
    assert_stored(only_message(server, rcpt), content, queue_id(text))


def test_bdat_pipelined(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    a, b = b"Subject: piped bdat\r\n\r\n", b"body\r\n"
    c.send(b"MAIL FROM:<s@other.test>\r\nRCPT TO:<" + rcpt.encode() + b">\r\n" +
           b"BDAT %d\r\n" % len(a) + a + b"BDAT %d LAST\r\n" % len(b) + b + b"NOOP\r\n")
    replies = [c.reply() for _ in range(5)]
    assert [r[0] for r in replies] == [250, 250, 250, 250, 250], replies
    assert_stored(only_message(server, rcpt), a + b, queue_id(replies[3][1]))


def test_bdat_several_transactions_in_one_send(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    blob, contents = b"", []
    for i in range(4):
        content = b"Subject: bdat %d\r\n\r\nnumber %d\r\n.\r\n" % (i, i)
        contents.append(content)
        blob += (b"MAIL FROM:<s@other.test>\r\nRCPT TO:<" + rcpt.encode() + b">\r\n" +
                 b"BDAT %d LAST\r\n" % len(content) + content)
    c.send(blob)
    qids = []
    for i in range(4):
        r = [c.reply() for _ in range(3)]
        assert [x[0] for x in r] == [250, 250, 250], r
        qids.append(queue_id(r[2][1]))
    got = server.wait_count(rcpt, 4)
    assert len(got) == 4
    by_subject = {m["subject"]: m["uid"] for m in got}
    for i in range(4):
        assert_stored(server.message(rcpt, by_subject["bdat %d" % i]), contents[i], qids[i], rcpt)


def test_bdat_without_mail_is_503_and_chunk_consumed(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    chunk = b"MAIL FROM:<x@other.test>\r\nRCPT TO:<" + rcpt.encode() + b">\r\nQUIT\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    code, text = c.reply()
    assert (code, text[4:10]) == (503, "5.5.1 "), text
    c.expect("NOOP", 250)  # in sync: the chunk's "commands" were swallowed
    assert server.mailbox(rcpt) == []


def test_bdat_without_rcpt_is_refused_and_chunk_consumed(server, conn):
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    chunk = b"RSET\r\nNOOP\r\n"
    c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
    code, text = c.reply()
    assert code in (503, 554) and text[4:10] == "5.5.1 ", text
    c.expect("NOOP", 250)


def test_data_after_bdat_is_503(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    bdat_begin(c, rcpt)
    c.send(b"BDAT 5\r\nhello")
    assert c.reply()[0] == 250
    c.expect("DATA", 503, "5.5.1")
    c.expect("RSET", 250)
    assert server.mailbox(rcpt) == []


def test_rset_discards_partial_bdat(server, conn):
    rcpt = fresh_user(server)
    c = conn()
    bdat_begin(c, rcpt)
    c.send(b"BDAT 11\r\nSubject: x\r")
    assert c.reply()[0] == 250
    c.expect("RSET", 250)
    content = b"Subject: after rset\r\n\r\nok\r\n"
    qid = c.send_message("s@other.test", [rcpt], content)
    assert_stored(only_message(server, rcpt), content, qid)


def test_bdat_bad_size_is_501(conn):
    c = conn()
    code, text = c.cmd("BDAT lots")
    assert code == 501, text


# ---------------------------------------------------------------- size

def test_size_advertised(small):
    c = open_conn(small.ip, ehlo=False)
    text = c.expect("EHLO client.test", 250)
    assert "250-SIZE %d" % SIZE_LIMIT in text.splitlines() or "250 SIZE %d" % SIZE_LIMIT in text.splitlines()
    c.close()


def test_declared_size_over_limit_is_552(small):
    c = open_conn(small.ip)
    c.expect("MAIL FROM:<s@other.test> SIZE=%d" % (SIZE_LIMIT + 1), 552, "5.3.4")
    c.expect("MAIL FROM:<s@other.test> SIZE=%d" % SIZE_LIMIT, 250)
    c.expect("RSET", 250)
    code, text = c.cmd("MAIL FROM:<s@other.test> SIZE=999999999999999999999999")
    assert 500 <= code < 600, text  # overflowing SIZE: refused, however it is worded
    c.expect("NOOP", 250)
    c.close()


def test_actual_size_over_limit_is_552_and_session_goes_on(small):
    rcpt = fresh_user(small)
    c = open_conn(small.ip)
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (SIZE_LIMIT // 1000 + 50)
    code, text = data_exchange(c, rcpt, big + b".\r\n", " SIZE=1000")
    assert (code, text[4:10]) == (552, "5.3.4 "), text
    c.expect("NOOP", 250)
    ok = b"Subject: small\r\n\r\nfits\r\n"
    qid = c.send_message("s@other.test", [rcpt], ok)
    assert_stored(only_message(small, rcpt), ok, qid)
    c.close()


def test_message_just_under_limit_accepted(small):
    rcpt = fresh_user(small)
    c = open_conn(small.ip)
    content = b"Subject: fits\r\n\r\n" + (b"y" * 98 + b"\r\n") * ((SIZE_LIMIT - 2000) // 100)
    qid = c.send_message("s@other.test", [rcpt], content, " SIZE=%d" % len(content))
    assert_stored(only_message(small, rcpt), content, qid)
    c.close()


def test_bdat_over_limit_is_552(small):
    rcpt = fresh_user(small)
    c = open_conn(small.ip)
    bdat_begin(c, rcpt)
    half = b"z" * (SIZE_LIMIT * 2 // 3)
    c.send(b"BDAT %d\r\n" % len(half) + half)
    assert c.reply()[0] == 250
    c.send(b"BDAT %d LAST\r\n" % len(half) + half)
    code, text = c.reply()
    assert (code, text[4:10]) == (552, "5.3.4 "), text
    c.expect("NOOP", 250)
    assert small.mailbox(rcpt) == []
    c.close()
