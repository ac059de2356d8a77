"""Who may receive mail on the inbound MX: local users and aliases only.

Port 25 never relays (DESIGN.md, durability and safety contract): any other
domain, and every relay trick in the local part or the route, is refused at
RCPT with 550 5.7.1; an unknown local user with 550 5.1.1, never a bounce later.
"""
import pytest

from conftest import assert_stored, fresh_user, unique


@pytest.fixture(scope="module")
def server(module_server):
    s = module_server(pool=25)
    # a second local domain with a catch-all; example.test itself has none,
    # so unknown users there are still refused
    s.cli("domain", "add", "catch.test")
    s.add_user("carol@catch.test")
    s.add_user("dave@catch.test")
    s.cli("alias", "add", "@catch.test", "carol@catch.test")
    return s


def msg(subject):
    return ("From: s@other.test\r\nSubject: %s\r\n\r\nbody of %s\r\n" % (subject, subject)).encode()


def rcpt_reply(conn, address, mail_params=""):
    c = conn()
    c.expect("MAIL FROM:<s@other.test>%s" % mail_params, 250)
    return c.cmd("RCPT TO:<%s>" % address), c


def deliver(conn, rcpts, subject):
    c = conn()
    content = msg(subject)
    qid = c.send_message("s@other.test", rcpts, content)
    return qid, content


def subjects(server, address):
    return sorted(m["subject"] for m in server.mailbox(address))


# ---------------------------------------------------------------- relay refused

RELAY_FORMS = [
    "bob@other.test",                      # plainly another domain
    "alice@sub.example.test",              # a subdomain is another domain
    "alice@example.test.other.test",
    "user%other.test@example.test",        # percent hack
    "alice%other.test@example.test",
    "alice%example.test@example.test",     # percent hack even towards ourselves
    '"user@other.test"@example.test',      # quoted local part with @
    '"alice@example.test"@example.test',
    "@a.test:user@other.test",             # source route
    "@a.test,@b.test:user@other.test",
    "user!other@example.test",             # UUCP bang path
    "other.test!user@example.test",
    "alice@[127.0.0.1]",                   # address literals
    "alice@[192.0.2.1]",
    "alice@[IPv6:::1]",
]


@pytest.mark.parametrize("address", RELAY_FORMS)
def test_relay_is_denied(server, conn, address):
    (code, text), c = rcpt_reply(conn, address)
    assert code == 550, "%s -> %s" % (address, text)
    assert text[4:].startswith("5.7.1 "), "%s -> %s" % (address, text)
    # the refusal does not end the transaction: a local recipient still works
    c.expect("RCPT TO:<alice@example.test>", 250)


def test_relay_denied_for_utf8_domain(server, conn):
    (code, text), c = rcpt_reply(conn, "user@bücher.test", " SMTPUTF8")
    assert code == 550 and text[4:].startswith("5.7.1 "), text


def test_nothing_relayed_to_other_domains(server, conn):
    # a message with only refused recipients cannot be sent at all
    c = conn()
    c.expect("MAIL FROM:<s@other.test>", 250)
    for a in RELAY_FORMS[:5]:
        code, _ = c.cmd("RCPT TO:<%s>" % a)
        assert code == 550
    code, text = c.cmd("DATA")
    assert code in (503, 554), text


# ---------------------------------------------------------------- unknown users

@pytest.mark.parametrize("address", [
    "nobody@example.test",
    "nobody+tag@example.test",
    "alice.smith@example.test",
    "alic@example.test",
])
def test_unknown_user_is_550_511(server, conn, address):
    (code, text), c = rcpt_reply(conn, address)
    assert code == 550, text
    assert text[4:].startswith("5.1.1 "), text


def test_unknown_domain_is_relay(server, conn):
    (code, text), _ = rcpt_reply(conn, "alice@example.org")
    assert (code, text[4:10]) == (550, "5.7.1 "), text


# ---------------------------------------------------------------- address forms that deliver

@pytest.mark.parametrize("form", [
    "{u}@EXAMPLE.TEST",
    "{u}@Example.Test",
    "{u}@example.test",
])
def test_domain_is_case_insensitive(server, conn, form):
    user = fresh_user(server)
    local = user.split("@")[0]
    subject = unique("case")
    deliver(conn, [form.format(u=local)], subject)
    assert subjects(server, user) == [subject]


def test_plus_tag_delivers_to_user(server, conn):
    user = fresh_user(server)
    local = user.split("@")[0]
    qid, content = deliver(conn, ["%s+newsletter@example.test" % local], "tagged")
    got = server.mailbox(user)
    assert [m["subject"] for m in got] == ["tagged"]
    assert_stored(server.message(user, got[0]["uid"]), content, qid)


def test_multiple_recipients_each_get_one_copy(server, conn):
    a, b = fresh_user(server), fresh_user(server)
    qid, content = deliver(conn, [a, b], "two")
    for u in (a, b):
        got = server.mailbox(u)
        assert len(got) == 1
        hdr = assert_stored(server.message(u, got[0]["uid"]), content, qid)
        assert b"for <" not in hdr, "no 'for' clause with several recipients: %r" % hdr


def test_duplicate_recipients_deliver_once(server, conn):
    a = fresh_user(server)
    local = a.split("@")[0]
    deliver(conn, [a, a, "%s+x@example.test" % local, "%s@EXAMPLE.test" % local], "dup")
    assert subjects(server, a) == ["dup"]


def test_single_recipient_in_received_for(server, conn):
    a = fresh_user(server)
    qid, content = deliver(conn, [a], "for-clause")
    got = server.mailbox(a)
    assert_stored(server.message(a, got[0]["uid"]), content, qid, rcpt=a)


# ---------------------------------------------------------------- aliases

def test_alias_to_one_user(server, conn):
    a = fresh_user(server)
    alias = "%s@example.test" % unique("alias")
    server.cli("alias", "add", alias, a)
    qid, content = deliver(conn, [alias], "via alias")
    got = server.mailbox(a)
    assert [m["subject"] for m in got] == ["via alias"]
    assert_stored(server.message(a, got[0]["uid"]), content, qid)


def test_alias_to_several_users(server, conn):
    a, b = fresh_user(server), fresh_user(server)
    alias = "%s@example.test" % unique("team")
    server.cli("alias", "add", alias, a, b)
    deliver(conn, [alias], "to the team")
    assert subjects(server, a) == ["to the team"]
    assert subjects(server, b) == ["to the team"]


def test_alias_and_its_target_deliver_once(server, conn):
    a = fresh_user(server)
    alias = "%s@example.test" % unique("dup-alias")
    server.cli("alias", "add", alias, a)
    deliver(conn, [alias, a], "once")
    assert subjects(server, a) == ["once"]


def test_alias_plus_tag(server, conn):
    a = fresh_user(server)
    name = unique("sales")
    server.cli("alias", "add", "%s@example.test" % name, a)
    deliver(conn, ["%s+eu@example.test" % name], "alias tag")
    assert subjects(server, a) == ["alias tag"]


def test_alias_chain(server, conn):
    a = fresh_user(server)
    first, second = unique("chain"), unique("chain")
    server.cli("alias", "add", "%s@example.test" % second, a)
    server.cli("alias", "add", "%s@example.test" % first, "%s@example.test" % second)
    deliver(conn, ["%s@example.test" % first], "chained")
    assert subjects(server, a) == ["chained"]


def test_alias_loop_does_not_hang_or_crash(server, conn):
    x, y = unique("loop"), unique("loop")
    server.cli("alias", "add", "%s@example.test" % x, "%s@example.test" % y)
    server.cli("alias", "add", "%s@example.test" % y, "%s@example.test" % x)
    (code, text), c = rcpt_reply(conn, "%s@example.test" % x)
    # nobody to deliver to: refused, or accepted and handled later; never a hang
    assert code in (250, 550, 451), text
    c.expect("RSET", 250)


def test_catch_all_delivers_unknown_local_parts(server, conn):
    subject = unique("catch")
    deliver(conn, ["%s@catch.test" % unique("anything"), ], subject)
    assert subject in subjects(server, "carol@catch.test")


def test_catch_all_does_not_steal_existing_users(server, conn):
    subject = unique("own")
    deliver(conn, ["dave@catch.test"], subject)
    assert subject in subjects(server, "dave@catch.test")
    assert subject not in subjects(server, "carol@catch.test")


def test_catch_all_does_not_open_relay(server, conn):
    (code, text), _ = rcpt_reply(conn, "x%other.test@catch.test")
    assert (code, text[4:10]) == (550, "5.7.1 "), text
    (code, text), _ = rcpt_reply(conn, "x@sub.catch.test")
    assert (code, text[4:10]) == (550, "5.7.1 "), text
