"""`dakiya queue list|show|retry|hold|release|delete` against a running server.

A message reaches the queue the way real mail does: an alias whose target is
in another domain (fwd@example.test -> someone@remote.test), and a message
sent to it over SMTP. Nothing delivers yet, so it stays there for the CLI.
"""
import json
import time

import pytest

from conftest import Server, open_conn, unique


def content(subject):
    return ("From: sender@origin.test\r\nTo: fwd@example.test\r\nSubject: %s\r\n\r\n"
            "body\r\n" % subject).encode()


def queue_one(server, targets=("someone@remote.test",), sender="sender@origin.test",
              local=(), subject="queued"):
    """Send one message to a fresh alias pointing at targets; its queue id."""
    alias = "%s@example.test" % unique("fwd")
    server.cli("alias", "add", alias, *targets)
    c = open_conn(server.ip)
    try:
        return c.send_message(sender, [alias, *local], content(subject))
    finally:
        c.close()


def qlist(server):
    return json.loads(server.cli("queue", "list", "--json").stdout)


def qshow(server, qid):
    return json.loads(server.cli("queue", "show", qid, "--json").stdout)


def entry(server, qid):
    got = [e for e in qlist(server) if e["id"] == qid]
    assert len(got) == 1, got
    return got[0]


def fail(server, *args):
    r = server.cli(*args, check=False)
    assert r.returncode == 1, (args, r.stdout, r.stderr)
    err = r.stderr.decode()
    assert err.startswith("dakiya: "), err
    assert r.stdout == b""
    return err


@pytest.fixture
def offline(tmp_path):
    """A configured instance with a store and no running server: the queue
    commands work on the store alone."""
    return Server(tmp_path / "offline")


def test_empty_queue(offline):
    s = offline
    assert qlist(s) == []
    assert s.cli("queue", "list").stdout.decode() == "the queue is empty\n"


def test_list_json_contract(server):
    qid = queue_one(server, targets=("someone@remote.test", "other@far.test"))
    e = entry(server, qid)
    # the contract's fields first, in its order; added fields after
    assert list(e)[:6] == ["id", "sender", "recipients", "attempts", "next_attempt",
                           "last_error"]
    assert e["sender"] == "sender@origin.test"
    assert sorted(e["recipients"]) == ["other@far.test", "someone@remote.test"]
    assert e["attempts"] == 0
    assert e["last_error"] == ""
    assert e["held"] is False
    assert isinstance(e["next_attempt"], int) and e["next_attempt"] <= time.time() + 1
    assert abs(e["created"] - time.time()) < 120
    assert e["size"] > len(content("queued"))  # our Received: header was added


def test_local_and_remote_recipients(server):
    """The local recipient gets the message; only the remote one is queued."""
    qid = queue_one(server, local=("bob@example.test",), subject="split")
    assert entry(server, qid)["recipients"] == ["someone@remote.test"]
    assert "split" in [m["subject"] for m in server.mailbox("bob@example.test")]


def test_alias_with_local_target_only_is_not_queued(server):
    alias = "%s@example.test" % unique("loc")
    server.cli("alias", "add", alias, "alice@example.test")
    c = open_conn(server.ip)
    qid = c.send_message("x@origin.test", [alias], content("local only"))
    c.close()
    assert qid not in [e["id"] for e in qlist(server)]
    fail(server, "queue", "show", qid)


def test_null_sender(server):
    qid = queue_one(server, sender="")
    assert entry(server, qid)["sender"] == ""
    assert "<>" in server.cli("queue", "show", qid).stdout.decode()


def test_text_list(server):
    qid = queue_one(server)
    out = server.cli("queue", "list").stdout.decode()
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["QUEUE", "ID", "SIZE"]
    row = [l for l in lines if l.startswith(qid)]
    assert len(row) == 1 and row[0].endswith("<sender@origin.test>"), out
    assert "    to: someone@remote.test (pending)" in lines
    assert lines[-1].startswith("-- ") and "message" in lines[-1]


def test_show(server):
    qid = queue_one(server)
    out = server.cli("queue", "show", qid).stdout.decode()
    assert "id:            %s" % qid in out
    assert "sender:        <sender@origin.test>" in out
    assert "held:          no" in out
    assert "  someone@remote.test  pending  attempts=0" in out
    assert "events:" in out and "queued  someone@remote.test" in out

    j = qshow(server, qid)
    assert j["id"] == qid and j["recipients"] == ["someone@remote.test"]
    assert j["recipient_status"] == [{"rcpt": "someone@remote.test", "status": "pending",
                                      "attempts": 0, "last_reply": ""}]
    kinds = [e["kind"] for e in j["events"]]
    assert "queued" in kinds
    q = [e for e in j["events"] if e["kind"] == "queued"][0]
    assert q["rcpt"] == "someone@remote.test"
    assert q["time"].endswith("Z") and abs(q["time_ms"] / 1000 - time.time()) < 120


def test_hold_release_retry(server):
    qid = queue_one(server)
    other = queue_one(server)
    r = server.cli("queue", "hold", qid)
    assert r.stdout.decode().startswith(qid + " is held")
    assert entry(server, qid)["held"] is True
    assert "held: yes" in server.cli("queue", "list").stdout.decode()
    server.cli("queue", "hold", qid)  # idempotent

    # retry of a held message: due now, still held, and the CLI says so
    out = server.cli("queue", "retry", qid).stdout.decode()
    assert "still held" in out
    assert entry(server, qid)["held"] is True

    out = server.cli("queue", "retry", "--all").stdout.decode()
    assert "due now" in out
    n = int(out.split()[0])
    assert n == len([e for e in qlist(server) if not e["held"]]) and n >= 1

    server.cli("queue", "release", qid)
    e = entry(server, qid)
    assert e["held"] is False and e["next_attempt"] <= time.time() + 1
    kinds = [ev["kind"] for ev in qshow(server, qid)["events"]]
    assert kinds[-4:] == ["held", "held", "retry", "released"], kinds
    assert entry(server, other)["held"] is False


def test_delete(server):
    keep = queue_one(server)
    qid = queue_one(server, local=("alice@example.test",), subject="kept locally")
    r = server.cli("queue", "delete", qid)
    assert r.stdout.decode() == "%s is deleted from the queue\n" % qid
    ids = [e["id"] for e in qlist(server)]
    assert qid not in ids and keep in ids
    # the local copy shares the body and stays readable
    msgs = [m for m in server.mailbox("alice@example.test") if m["subject"] == "kept locally"]
    assert len(msgs) == 1
    assert b"Subject: kept locally" in server.message("alice@example.test", msgs[0]["uid"])
    # gone: every verb says so
    for verb in ("show", "delete", "hold", "release", "retry"):
        err = fail(server, "queue", verb, qid)
        assert "no message %s in the queue" % qid in err


def test_delete_remote_only_removes_blob(server):
    qid = queue_one(server)
    blobs = list((server.dir / "data" / "blobs").rglob(qid))
    assert len(blobs) == 1
    server.cli("queue", "delete", qid)
    assert not blobs[0].exists()


def test_json_with_global_option_anywhere(server):
    qid = queue_one(server)
    r = server.cli("--json", "queue", "show", qid)
    assert json.loads(r.stdout)["id"] == qid


@pytest.mark.parametrize("args,what", [
    ((), "needs a verb"),
    (("frob",), "unknown verb"),
    (("show",), "exactly one queue ID"),
    (("hold",), "exactly one queue ID"),
    (("retry",), "(or --all)"),
    (("retry", "--all", "0123456789ABCDEF"), "not both"),
    (("hold", "--all"), "--all goes with 'queue retry' only"),
    (("list", "x"), "takes no arguments"),
    (("show", "a", "b"), "exactly one queue ID"),
    (("show", "../../etc/passwd"), "is not a queue ID"),
    (("delete", "has space"), "is not a queue ID"),
    (("show", "0123456789ABCDEF"), "no message 0123456789ABCDEF in the queue"),
    (("list", "--bogus"), "--bogus"),
])
def test_user_errors(offline, args, what):
    err = fail(offline, "queue", *args)
    assert what in err, err


def test_help(offline):
    s = offline
    for args in (("queue", "--help"), ("help", "queue"), ("queue", "list", "--help")):
        out = s.cli(*args).stdout.decode()
        assert out.startswith("NAME\n    dakiya queue")
        assert "retried after" in out and "delivery.max_lifetime" in out and "bounce" in out
    assert "queue list|show|retry" in s.cli("--help").stdout.decode()
