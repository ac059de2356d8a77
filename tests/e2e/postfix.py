"""A private Postfix instance on one loopback address, for interop tests and
the outbound benchmark.

It has its own configuration, queue, Maildirs and log under one directory
and never touches the system's /etc/postfix. Nothing it does can leave the
machine: it resolves nothing in DNS (smtp_dns_support_level = disabled, no
reverse lookups of clients), delivers only to the Maildirs of its own
domains, and relays only to the next hops it is given as numeric addresses.

Roles, which may be combined:
  mailboxes={"carl@pf.test", ...}   an MX for those addresses' domains that
                                    files their mail into Maildirs (virtual(8));
                                    other addresses there are refused at RCPT
  routes={"receive.test": "127.0.0.5:2525", "*": ...}
                                    relays mail for those domains (or for all,
                                    "*") from clients in 127.0.0.0/8 to that
                                    next hop, STARTTLS when offered
Needs root (Postfix's own users and set-gid programs) and the Debian
package postfix; `available()` says whether both are there.
"""
import os
import shutil
import subprocess
import time
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"


def available():
    return os.geteuid() == 0 and os.path.exists(POSTFIX) and shutil.which("postconf") is not None


class Postfix:
    def __init__(self, base, ip, port=2525, hostname="mx.pf.test", mailboxes=(), routes=None,
                 cert=None, key=None, extra=None):
        self.dir = Path(base)
        self.ip = ip
        self.port = port
        self.hostname = hostname
        self.etc = self.dir / "etc"
        self.spool = self.dir / "spool"
        self.maildir = self.dir / "maildir"
        self.log = self.dir / "postfix.log"
        self.mailboxes = sorted(mailboxes)
        self.routes = dict(routes or {})
        self.started = False
        for d in (self.etc, self.spool, self.maildir):
            d.mkdir(parents=True, exist_ok=True)
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        shutil.chown(data, "postfix")
        os.chmod(data, 0o700)
        nobody = 65534
        os.chown(self.maildir, nobody, nobody)
        domains = sorted({a.split("@", 1)[1] for a in self.mailboxes})
        (self.etc / "vmailbox").write_text(
            "".join("%s %s/\n" % (a, a) for a in self.mailboxes) or "# none\n")
        transport = "".join("%s smtp:[%s]:%s\n" % (d, *hop.rsplit(":", 1))
                            for d, hop in self.routes.items() if d != "*")
        (self.etc / "transport").write_text(transport or "# none\n")
        default_hop = self.routes.get("*")
        cf = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(data),
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "shlib_directory": "/usr/lib/postfix",
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": "postfix-test",
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(self.dir),
            "myhostname": hostname,
            "mydomain": hostname.split(".", 1)[1],
            "myorigin": "$myhostname",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "relayhost": "[%s]:%s" % tuple(default_hop.rsplit(":", 1)) if default_hop else "",
            "relay_domains": " ".join(d for d in self.routes if d != "*"),
            "transport_maps": "texthash:%s" % (self.etc / "transport"),
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "smtpd_peername_lookup": "no",
            "virtual_mailbox_domains": " ".join(domains),
            "virtual_mailbox_base": str(self.maildir),
            "virtual_mailbox_maps": "texthash:%s" % (self.etc / "vmailbox"),
            "virtual_uid_maps": "static:%d" % nobody,
            "virtual_gid_maps": "static:%d" % nobody,
            "local_transport": "error:no local delivery in this test instance",
            "default_transport": "smtp" if self.routes else "error:no outbound delivery here",
            "smtp_dns_support_level": "disabled",
            "smtp_bind_address": ip,
            "smtp_tls_security_level": "may",
            "smtp_tls_loglevel": "1",
            # quick retries: a test that makes a hop fail does not wait long
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "queue_run_delay": "2s",
            "biff": "no",
        }
        if cert:
            cf.update({"smtpd_tls_cert_file": str(cert), "smtpd_tls_key_file": str(key),
                       "smtpd_tls_security_level": "may", "smtpd_tls_loglevel": "1",
                       "smtpd_tls_received_header": "yes"})
        cf.update(extra or {})
        (self.etc / "main.cf").write_text("".join("%s = %s\n" % kv for kv in cf.items()))
        master = [
            "%s:%d inet n - n - - smtpd" % (ip, port),
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        (self.etc / "master.cf").write_text("\n".join(master) + "\n")

    def _ctl(self, *args, check=True):
        # postfix(1) reports errors to a terminal or syslog only: script(1) gives it one
        cmd = "%s -c %s %s" % (POSTFIX, self.etc, " ".join(args))
        r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                           timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError("postfix %s failed: %s %s" % (
                " ".join(args), r.stdout.decode(errors="replace"), self.log_text()[-2000:]))
        return r

    def start(self, timeout=20.0):
        import socket
        self._ctl("check")
        self._ctl("start")
        self.started = True
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with socket.create_connection((self.ip, self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("postfix not listening on %s:%d; log:\n%s" % (
            self.ip, self.port, self.log_text()[-2000:]))

    def stop(self):
        if not self.started:
            return
        pidfile = self.spool / "pid" / "master.pid"
        pid = None
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pass
        self._ctl("stop", check=False)
        for _ in range(100):
            if pid is None:
                break
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        self.started = False

    def flush(self):
        """Try deferred mail now (postqueue -f)."""
        subprocess.run(["postqueue", "-c", str(self.etc), "-f"], capture_output=True, timeout=30)

    def queue_size(self):
        """Messages still in the queue (incoming, active, deferred, hold)."""
        n = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            d = self.spool / sub
            if d.exists():
                n += sum(len(files) for _, _, files in os.walk(d))
        return n

    def messages(self, address):
        """The bytes of each message in address's Maildir, oldest first."""
        out = []
        for sub in ("new", "cur"):
            d = self.maildir / address / sub
            if d.exists():
                for f in sorted(d.iterdir(), key=lambda p: p.stat().st_mtime):
                    out.append(f.read_bytes())
        return out

    def wait_messages(self, address, n, timeout=30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.messages(address)
            if len(m) >= n:
                return m
            time.sleep(0.1)
        raise AssertionError("postfix: %s has %d messages, expected %d; log:\n%s" % (
            address, len(self.messages(address)), n, self.log_text()[-3000:]))

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""
