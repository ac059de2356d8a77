"""End-to-end harness: real `dakiya serve` processes on loopback addresses.

Each server gets its own directory, its own 127.0.0.x address and the
development ports, so servers never collide with each other or with other
software. Everything is driven through the real CLI (`dakiya -c CONF ...`).
"""
import hashlib
import itertools
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAKIYA = os.environ.get("DAKIYA_BIN") or str(ROOT / "build" / "dakiya")

# 127.0.0.20 .. 127.0.0.250: one address per server started in this run,
# starting at a place that depends on the process, so that two test runs on
# one machine rarely pick the same address at the same time
_start = 20 + os.getpid() % 231
_ips = itertools.cycle(list(range(_start, 251)) + list(range(20, _start)))

SMTP_PORT = 2525
SUBMISSION_PORT = 2587   # STARTTLS
SUBMISSIONS_PORT = 2465  # implicit TLS


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


def make_cert(cert, key, cn, keytype="ec"):
    """A self-signed certificate for cn (openssl req -x509): EC P-256 by
    default (fast to make), or "rsa" (RSA 2048)."""
    newkey = (["-newkey", "rsa:2048"] if keytype == "rsa" else
              ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-sha256", "-days", "30",
                    "-subj", "/CN=%s" % cn, "-addext", "subjectAltName=DNS:%s" % cn,
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)


class Server:
    """One dakiya instance: config, store, a running `serve` process.

    tls=True: a self-signed certificate (tls/cert.pem, tls/key.pem in the
    server's directory, CN = the hostname) in `tls { }`, and the submission
    (STARTTLS, port 2587) and submissions (implicit TLS, 2465) listeners on
    the server's address besides smtp."""

    def __init__(self, base, domain="example.test", limits=None, extra="", tls=False,
                 workers=2, delivery=False, spf=False):
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.domain = domain
        self.ip = next_ip()
        self.port = SMTP_PORT
        self.hostname = "mail." + domain
        self.tls = tls
        self.cert = self.dir / "tls" / "cert.pem"
        self.key = self.dir / "tls" / "key.pem"
        self.conf = self.dir / "dakiya.conf"
        self.log = self.dir / "serve.log"
        self.proc = None
        lim = {"command_timeout": 30, "data_timeout": 30}
        lim.update(limits or {})
        lines = [
            'hostname = "%s"' % self.hostname,
            'data_dir = "%s"' % (self.dir / "data"),
            "workers = %d" % workers,
            "listen {",
            '  smtp = {"%s:%d"}' % (self.ip, self.port),
        ]
        if tls:
            lines += ['  submission = {"%s:%d"}' % (self.ip, SUBMISSION_PORT),
                      '  submissions = {"%s:%d"}' % (self.ip, SUBMISSIONS_PORT)]
        lines += ["}", "limits {"]
        lines += ["  %s = %s" % (k, v) for k, v in lim.items()]
        lines += ["}"]
        if tls:
            self.cert.parent.mkdir(exist_ok=True)
            make_cert(self.cert, self.key, self.hostname)
            lines += ['tls {', '  cert = "%s"' % self.cert, '  key = "%s"' % self.key, '}']
        if not delivery:
            # outbound delivery (issue 4) is off unless a test asks for it: most
            # tests queue mail for made-up domains and look at the queue as it is
            lines += ["delivery {", "  enabled = false", "}"]
        if not spf:
            # SPF, DKIM and DMARC on received mail are off unless a test asks
            # for them (with its own DNS server): the made-up sender domains
            # must not reach real DNS
            lines += ["checks {", "  spf = false", "  dkim = false", "  dmarc = false", "}"]
        lines += [extra]
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

    def wait_count(self, address, n, timeout=30.0, folder=None):
        deadline = time.time() + timeout
        got = []
        while time.time() < deadline:
            got = self.mailbox(address, folder)
            if len(got) >= n:
                return got
            time.sleep(0.1)
        raise AssertionError("%s has %d messages, expected %d" % (address, len(got), n))

    # ---- process
    def start(self):
        for attempt in range(5):
            self.logf = open(self.log, "ab")
            offset = self.logf.tell()
            self.proc = subprocess.Popen([DAKIYA, "-c", str(self.conf), "serve"],
                                         stdout=self.logf, stderr=subprocess.STDOUT)
            # ready, or gone: a port taken by another test run on this machine
            # is only seen in the log (connecting would reach the other server)
            deadline = time.time() + 20
            while self.proc.poll() is None and time.time() < deadline:
                with open(self.log, "rb") as f:
                    f.seek(offset)
                    if b"event=ready" in f.read():
                        break
                time.sleep(0.02)
            if self.proc.poll() is None or getattr(self, "_started", False) or \
                    b"Address already in use" not in self.log.read_bytes()[offset:]:
                break
            # first start only: move to another address (listeners only) and
            # retry; that attempt's log goes aside (an ASan build reports the
            # leaks of its exit there), so that the checks see this server's
            self.proc.wait()
            self.logf.close()
            text = self.log.read_bytes()
            with open(str(self.log) + ".address-in-use", "ab") as f:
                f.write(text[offset:])
            with open(self.log, "r+b") as f:
                f.truncate(offset)
            old, self.ip = self.ip, next_ip()
            self.conf.write_text(self.conf.read_text().replace('"%s:' % old, '"%s:' % self.ip))
        self._started = True
        wait_port(self.ip, self.port, proc=self.proc)
        if self.tls:
            wait_port(self.ip, SUBMISSION_PORT, proc=self.proc)
            wait_port(self.ip, SUBMISSIONS_PORT, proc=self.proc)
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

    def make(domain="example.test", users=("alice", "bob"), limits=None, extra="", start=True,
             tls=False, workers=2, delivery=False, spf=False):
        s = Server(tmp_path / ("srv%d" % len(servers)), domain, limits, extra, tls=tls,
                   workers=workers, delivery=delivery, spf=spf)
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


# ---------------------------------------------------------------- helpers

QUEUED_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})$")


def queue_id(reply_text):
    """The queue id of a `250 2.0.0 Ok: queued as ID` reply (16 hex digits)."""
    m = QUEUED_RE.match(reply_text.splitlines()[-1])
    assert m, "not a 'queued as' reply: %r" % reply_text
    return m.group(1)


def dot_stuff(content):
    """DATA transparency (RFC 5321 4.5.2): double a leading dot on every line."""
    if isinstance(content, str):
        content = content.encode()
    assert content == b"" or content.endswith(b"\r\n"), "DATA content must end with CRLF"
    out = []
    for line in content.split(b"\r\n")[:-1]:
        out.append((b"." + line) if line.startswith(b".") else line)
    return b"".join(l + b"\r\n" for l in out)


def split_received(stored, name=b"Received"):
    """Split stored bytes into (the first header field, the rest). The field
    is `Received:` (or name) with its folded continuation lines."""
    assert stored.startswith(name + b": "), "stored message does not start with %s: %r" % (
        name.decode(), stored[:200])
    i = 0
    while True:
        j = stored.index(b"\r\n", i) + 2
        if j >= len(stored) or stored[j:j + 1] not in (b" ", b"\t"):
            return stored[:j], stored[j:]
        i = j


def assert_stored(stored, content, qid=None, rcpt=None):
    """The stored message is exactly our Received: header followed by the
    bytes the client sent (after dot-unstuffing)."""
    if isinstance(content, str):
        content = content.encode()
    hdr, rest = split_received(stored)
    assert rest == content, (
        "stored bytes differ from what was sent (after the Received: header):\n"
        "sent   %d bytes %r\nstored %d bytes %r" % (len(content), content[:300], len(rest), rest[:300]))
    assert re.match(rb"^Received: from \S", hdr), hdr
    if qid is not None:
        assert re.search(rb"\bid " + qid.encode() + rb"\b", hdr), "queue id %s not in %r" % (qid, hdr)
    if rcpt is not None:
        assert (b"for <" + rcpt.encode() + b">") in hdr, "for <%s> not in %r" % (rcpt, hdr)
    return hdr


def sha256(b):
    return hashlib.sha256(b).hexdigest()


_uniq = itertools.count(1)


def unique(prefix="u"):
    """A name no other test in this run uses."""
    return "%s%d" % (prefix, next(_uniq))


def fresh_user(server, prefix="u"):
    """A user no other test has received mail for: from the pool made before
    the server started (so that tests do not all depend on live user changes,
    which test_cli.py covers), else added on the running server."""
    pool = getattr(server, "pool", None)
    if pool:
        return pool.pop()
    addr = "%s@%s" % (unique(prefix), server.domain)
    server.add_user(addr)
    return addr


def check_server_after(s):
    """Stop s and assert it neither crashed nor reported memory errors."""
    alive = s.alive()
    rc = s.stop()
    log = s.log_text()
    assert alive, "server died during the test; log:\n" + log[-4000:]
    assert rc == 0, "server exit code %s; log:\n%s" % (rc, log[-4000:])
    assert "ERROR: AddressSanitizer" not in log, log[-4000:]
    assert "ERROR: LeakSanitizer" not in log, log[-4000:]
    assert "runtime error:" not in log, log[-4000:]


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """One server shared by the tests of a module (only for tests that keep
    the default limits): module_server(users=..., limits=...)."""
    servers = []

    def make(domain="example.test", users=("alice", "bob"), limits=None, extra="", start=True,
             pool=0, tls=False):
        s = Server(tmp_path_factory.mktemp("msrv"), domain, limits, extra, tls=tls)
        for u in users:
            s.add_user("%s@%s" % (u, domain))
        s.pool = []
        for _ in range(pool):
            s.pool.append("%s@%s" % (unique("p"), domain))
            s.add_user(s.pool[-1])
        servers.append(s)
        return s.start() if start else s

    yield make
    for s in servers:
        check_server_after(s)


class Conn:
    """A raw SMTP conversation over a socket, for exact protocol tests."""

    def __init__(self, ip, port=SMTP_PORT, timeout=15, source=None):
        self.sock = socket.create_connection((ip, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")

    def starttls(self, context=None, **kw):
        """Put TLS on the connection (after a 220 to STARTTLS, or at once
        on an implicit-TLS port). Returns the SSLSocket."""
        if context is None:
            context = ssl._create_unverified_context()
        self.f.close()
        self.sock = context.wrap_socket(self.sock, **kw)
        self.f = self.sock.makefile("rb")
        return self.sock

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
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- helpers added for the SMTP suites (test_smtp_*.py)
    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def expect(self, line, code, enhanced=None):
        """Send a command line; assert the reply code (and enhanced status)."""
        got, text = self.cmd(line)
        assert got == code, "%r -> %s" % (line, text)
        if enhanced is not None:
            assert text.splitlines()[-1][4:].startswith(enhanced + " "), \
                "%r -> %s (want %s)" % (line, text, enhanced)
        return text

    def send_message(self, mail_from, rcpts, content, mail_params=""):
        """One whole DATA transaction, lock-step. content is the message as
        it must be stored (unstuffed, CRLF). Returns the queue id."""
        self.expect("MAIL FROM:<%s>%s" % (mail_from, mail_params), 250)
        for r in rcpts:
            self.expect("RCPT TO:<%s>" % r, 250)
        self.expect("DATA", 354)
        self.send(dot_stuff(content) + b".\r\n")
        code, text = self.reply()
        assert code == 250, text
        return queue_id(text)


def open_conn(ip, ehlo=True, source=None, timeout=15):
    """A Conn past the banner (and EHLO unless ehlo=False)."""
    c = Conn(ip, source=source, timeout=timeout)
    code, text = c.reply()
    assert code == 220, text
    if ehlo:
        code, text = c.cmd("EHLO client.test")
        assert code == 250, text
    return c


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
    assert server.alive(), "server died during the test; log:\n" + server.log_text()[-4000:]


# ---------------------------------------------------------------- real DNS

UNBOUND = os.environ.get("UNBOUND_BIN") or "/usr/sbin/unbound"
DNS_PORT = 5354  # not 53 (root only), not 5353 (mDNS)


def dns_probe(ip, port, name=".", qtype=6, timeout=0.5):
    """Send one raw DNS query over UDP; the response's RCODE, or None when
    nothing answered. (No DNS library needed: readiness and sanity checks.)"""
    qid = os.getpid() & 0xFFFF
    q = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.strip(".").split("."):
        if label:
            q += bytes([len(label)]) + label.encode()
    q += b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, (ip, port))
            r = s.recv(4096)
        except OSError:
            return None
    if len(r) < 12 or r[:2] != q[:2]:
        return None
    return r[3] & 0x0F


def _udp_free(ip, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False


class DnsServer:
    """A real `unbound` in the foreground on a loopback address, answering
    only from local data: the test zones, NXDOMAIN for every other name
    (`local-zone: "." static`), so no query ever leaves the machine.

        dns = DnsServer(dir, {"example.test": ["example.test. 300 IN MX 10 mx.example.test.",
                                               "mx.example.test. 300 IN A 127.0.0.2"]})
        dns.start(); dns.addr  -> "127.0.0.37@5354", for `resolver = "..."`

    zones maps a zone name to its records in zone-file syntax (absolute
    names); each zone is a `static` local zone, so a name in it without the
    asked type is NODATA and an unknown name NXDOMAIN. servfail lists names
    (zones) whose every query fails at once with SERVFAIL, for
    temporary-failure tests: their stub zone points at a second interface of
    the same unbound (PORT + 1) that refuses every query. set_records() replaces the
    data and restarts unbound (no unbound-control needed)."""

    def __init__(self, base, zones=None, servfail=(), ip=None, port=DNS_PORT, slow=()):
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "unbound.conf"
        self.log = self.dir / "unbound.log"
        self.port = port
        self.ip = ip
        for _ in range(231):
            if self.ip is not None and _udp_free(self.ip, self.port) and \
                    _udp_free(self.ip, self.port + 1) and _udp_free(self.ip, self.port + 2):
                break
            self.ip = next_ip()
        self.zones = dict(zones or {})
        self.servfail = list(servfail)
        # names whose queries go to a server that never answers (PORT + 2):
        # the resolver's timeouts, for tests of slow DNS
        self.slow = list(slow)
        self.blackhole = None
        self.proc = None
        self.logf = None
        self._write()

    @property
    def addr(self):
        """The resolver setting for dakiya.conf: "IP@PORT"."""
        return "%s@%d" % (self.ip, self.port)

    def conf_line(self):
        return 'resolver = "%s"' % self.addr

    @staticmethod
    def _quote(rr):
        if '"' not in rr:
            return '"%s"' % rr
        assert "'" not in rr, "a record cannot hold both quote characters: %r" % rr
        return "'%s'" % rr

    def _write(self):
        d = str(self.dir)
        lines = [
            "server:",
            "  verbosity: 1",
            "  interface: %s" % self.ip,
            "  port: %d" % self.port,
            "  interface: %s@%d" % (self.ip, self.port + 1),
            "  interface-action: %s@%d refuse" % (self.ip, self.port + 1),
            "  do-ip4: yes",
            "  do-ip6: %s" % ("yes" if ":" in self.ip else "no"),
            "  do-udp: yes",
            "  do-tcp: yes",
            "  access-control: 127.0.0.0/8 allow",
            "  access-control: ::1/128 allow",
            '  username: ""',
            '  chroot: ""',
            '  directory: "%s"' % d,
            '  pidfile: "%s"' % (self.dir / "unbound.pid"),
            "  use-syslog: no",
            '  logfile: ""',
            "  num-threads: 1",
            "  so-reuseport: no",
            '  module-config: "iterator"',
            "  do-not-query-localhost: no",
            "  cache-max-ttl: 0",
            "  cache-max-negative-ttl: 0",
            '  local-zone: "." static',
        ]
        for name in self.servfail + self.slow:
            name = name.rstrip(".") + "."
            lines.append('  local-zone: "%s" transparent' % name)
        for zone, records in self.zones.items():
            lines.append('  local-zone: "%s." static' % zone.rstrip("."))
            for rr in records:
                lines.append("  local-data: %s" % self._quote(rr))
        for name in self.servfail:
            # the refusing interface: SERVFAIL at once (a closed port would
            # only time out, slowly: unbound retries as if packets were lost)
            lines += ["stub-zone:", '  name: "%s."' % name.rstrip("."),
                      "  stub-addr: %s@%d" % (self.ip, self.port + 1)]
        for name in self.slow:
            lines += ["stub-zone:", '  name: "%s."' % name.rstrip("."),
                      "  stub-addr: %s@%d" % (self.ip, self.port + 2)]
        lines += ["remote-control:", "  control-enable: no", ""]
        self.conf.write_text("\n".join(lines))

    def start(self, timeout=15.0):
        assert self.proc is None, "unbound already running"
        if self.slow and self.blackhole is None:
            self.blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.blackhole.bind((self.ip, self.port + 2))  # takes queries, never answers
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", str(self.conf)],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.logf.close()
                self.proc = None
                raise RuntimeError("unbound exited; log:\n" + self.log_text()[-4000:])
            if dns_probe(self.ip, self.port) is not None:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("unbound does not answer on %s; log:\n%s" % (self.addr, self.log_text()[-4000:]))

    def stop(self):
        """Stop unbound (queries then fail: the port is closed)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.logf.close()
            self.proc = None
        if self.blackhole is not None:
            self.blackhole.close()
            self.blackhole = None

    def set_records(self, zones, servfail=None):
        """Replace all zones (and optionally the SERVFAIL names); restart if
        running."""
        running = self.proc is not None
        self.stop()
        self.zones = dict(zones)
        if servfail is not None:
            self.servfail = list(servfail)
        self._write()
        if running:
            self.start()
        return self

    def add_records(self, zone, records):
        """Add records to a zone (created if new); restart if running."""
        zones = dict(self.zones)
        zones[zone] = list(zones.get(zone, [])) + list(records)
        return self.set_records(zones)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def make_dns(tmp_path):
    """make_dns(zones, servfail=(), start=True) -> a running DnsServer; all
    are stopped after the test."""
    servers = []

    def make(zones=None, servfail=(), start=True, slow=()):
        d = DnsServer(tmp_path / ("dns%d" % len(servers)), zones, servfail, slow=slow)
        servers.append(d)
        return d.start() if start else d

    yield make
    for d in servers:
        d.stop()
