"""End-to-end harness: real `dakiya serve` processes on loopback addresses.

Each server gets its own directory, its own 127.0.0.x address and the
development ports, so servers never collide with each other or with other
software. Everything is driven through the real CLI (`dakiya -c CONF ...`).
"""
import itertools
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAKIYA = os.environ.get("DAKIYA_BIN") or str(ROOT / "build" / "dakiya")

# 127.0.0.20 .. 127.0.0.250: one address per server started in this run
_ips = itertools.cycle(range(20, 251))

SMTP_PORT = 2525


def next_ip():
    return "127.0.0.%d" % next(_ips)


def wait_port(ip, port, timeout=20.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            with socket.create_connection((ip, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listening on %s:%d" % (ip, port))


class Server:
    """One dakiya instance: config, store, a running `serve` process."""

    def __init__(self, base, domain="example.test", limits=None, extra=""):
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.domain = domain
        self.ip = next_ip()
        self.port = SMTP_PORT
        self.hostname = "mail." + domain
        self.conf = self.dir / "dakiya.conf"
        self.log = self.dir / "serve.log"
        self.proc = None
        lim = {"command_timeout": 30, "data_timeout": 30}
        lim.update(limits or {})
        lines = [
            'hostname = "%s"' % self.hostname,
            'data_dir = "%s"' % (self.dir / "data"),
            "workers = 2",
            "listen {",
            '  smtp = {"%s:%d"}' % (self.ip, self.port),
            "}",
            "limits {",
        ]
        lines += ["  %s = %s" % (k, v) for k, v in lim.items()]
        lines += ["}", extra]
        self.conf.write_text("\n".join(lines) + "\n")
        self.cli("domain", "add", domain)

    # ---- CLI
    def cli(self, *args, input=None, check=True):
        r = subprocess.run([DAKIYA, "-c", str(self.conf), *args], input=input,
                           capture_output=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("dakiya %s failed (%d): %s%s" % (
                " ".join(args), r.returncode, r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace")))
        return r

    def add_user(self, address, password="secret-Passw0rd"):
        self.cli("user", "add", address, "--password-stdin", input=(password + "\n").encode())

    def mailbox(self, address, folder=None):
        args = ["mailbox", "list", address, "--json"]
        if folder:
            args += ["--folder", folder]
        return json.loads(self.cli(*args).stdout)

    def message(self, address, uid, folder=None):
        args = ["mailbox", "show", address, str(uid)]
        if folder:
            args += ["--folder", folder]
        return self.cli(*args).stdout

    def wait_count(self, address, n, timeout=30.0):
        deadline = time.time() + timeout
        got = []
        while time.time() < deadline:
            got = self.mailbox(address)
            if len(got) >= n:
                return got
            time.sleep(0.1)
        raise AssertionError("%s has %d messages, expected %d" % (address, len(got), n))

    # ---- process
    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([DAKIYA, "-c", str(self.conf), "serve"],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        wait_port(self.ip, self.port, proc=self.proc)
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def make_server(tmp_path):
    servers = []

    def make(domain="example.test", users=("alice", "bob"), limits=None, extra="", start=True):
        s = Server(tmp_path / ("srv%d" % len(servers)), domain, limits, extra)
        for u in users:
            s.add_user("%s@%s" % (u, domain))
        servers.append(s)
        return s.start() if start else s

    yield make
    for s in servers:
        alive = s.alive()
        rc = s.stop()
        # a server must never die under a test: that is a crash, whatever the test checked
        assert alive, "server died during the test; log:\n" + s.log_text()[-4000:]
        assert rc == 0, "server exit code %s; log:\n%s" % (rc, s.log_text()[-4000:])
        assert "ERROR: AddressSanitizer" not in s.log_text()
        assert "runtime error:" not in s.log_text(), s.log_text()[-4000:]


@pytest.fixture
def server(make_server):
    return make_server()


class Conn:
    """A raw SMTP conversation over a socket, for exact protocol tests."""

    def __init__(self, ip, port=SMTP_PORT, timeout=15):
        self.sock = socket.create_connection((ip, port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("connection closed; got %r" % lines)
            lines.append(line.decode(errors="replace").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def conn(server):
    conns = []

    def make(ehlo=True):
        c = Conn(server.ip)
        conns.append(c)
        code, _ = c.reply()
        assert code == 220
        if ehlo:
            code, _ = c.cmd("EHLO client.test")
            assert code == 250
        return c

    yield make
    for c in conns:
        c.close()
