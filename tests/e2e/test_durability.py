"""Durability: what got 250 is in the store, whatever other processes do.

Regression: a second connection opened in the server process once closed a
descriptor of the database file, which dropped the process's POSIX locks; the
next CLI command then took the database for unused, checkpointed and deleted
the WAL, and later commits went to the deleted file (250 sent, message lost).
"""
import smtplib
import sqlite3


def send(server, rcpt, subject):
    with smtplib.SMTP(server.ip, server.port, timeout=30) as s:
        s.sendmail("someone@elsewhere.test", [rcpt],
                   ("From: someone@elsewhere.test\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n"
                    % (rcpt, subject)).encode())


def test_acknowledged_messages_survive_other_readers_and_restart(server):
    rcpt = "bob@example.test"
    send(server, rcpt, "one")
    send(server, rcpt, "two")
    # other processes read the store, and close it, while the server runs
    assert len(server.mailbox(rcpt)) == 2
    db = sqlite3.connect(str(server.dir / "data" / "dakiya.db"))
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 2
    db.close()
    send(server, rcpt, "three")
    send(server, rcpt, "four")
    subjects = [m["subject"] for m in server.mailbox(rcpt)]
    assert subjects == ["one", "two", "three", "four"]
    # and after a restart
    server.stop()
    server.start()
    assert [m["subject"] for m in server.mailbox(rcpt)] == ["one", "two", "three", "four"]


def test_kill_9_loses_no_acknowledged_message(server):
    import signal
    rcpt = "alice@example.test"
    for i in range(20):
        send(server, rcpt, "m%d" % i)
    server.stop(sig=signal.SIGKILL)
    server.start()
    assert [m["subject"] for m in server.mailbox(rcpt)] == ["m%d" % i for i in range(20)]


def test_serves_as_unprivileged_user():
    """user = "nobody": listeners bound as root, then the server runs as nobody;
    the CLI run as root works as nobody too, so no store file becomes root's."""
    import os
    import pwd
    import shutil
    import tempfile
    import pytest
    from conftest import Server
    if os.geteuid() != 0:
        pytest.skip("needs root")
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="dakiya-nobody-")
    os.chmod(base, 0o755)
    data = os.path.join(base, "srv", "data")
    os.makedirs(data)
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    s = None
    try:
        s = Server(os.path.join(base, "srv"), extra='user = "nobody"')
        s.add_user("bob@example.test")
        s.start()
        assert os.stat("/proc/%d" % s.proc.pid).st_uid == nobody.pw_uid
        send(s, "bob@example.test", "as nobody")
        s.add_user("carol@example.test")      # the CLI, as root, while it runs
        send(s, "carol@example.test", "new user")
        assert [m["subject"] for m in s.mailbox("carol@example.test")] == ["new user"]
        assert [m["subject"] for m in s.mailbox("bob@example.test")] == ["as nobody"]
        for root, dirs, files in os.walk(data):
            for n in dirs + files:
                assert os.stat(os.path.join(root, n)).st_uid == nobody.pw_uid, n
        assert s.alive()
    finally:
        if s is not None:
            assert s.stop() == 0
        shutil.rmtree(base)
