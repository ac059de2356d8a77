"""DKIM and DMARC on both sides (issue 5), end to end.

The two-domain journey of the outbound tests, with the trust checks on:
A (example.test) signs what alice submits with the keys `dakiya dkim keygen`
made, the records `dakiya dns records` prints are served by a real unbound,
and B (receive.test) checks SPF, both DKIM signatures and DMARC, states
them in Authentication-Results and applies example.test's policy to forged
mail: p=reject refuses it at the end of DATA, p=quarantine files it in
Junk, a DNS failure never refuses. dkimpy (Debian python3-dkim) checks
what A signed, independently.
"""
import json
import smtplib
import sqlite3
import subprocess
import time

import dkim
import pytest

from conftest import dot_stuff, next_ip, open_conn, split_received
from test_delivery import ALICE, configure, mx_zone, qlist, submit, wait_for

DMARC_REJECT = '_dmarc.example.test. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:postmaster@example.test"'
DMARC_QUARANTINE = '_dmarc.example.test. 300 IN TXT "v=DMARC1; p=quarantine"'


def published(a):
    """A's DKIM records as `dns records --json` gives them."""
    recs = json.loads(a.cli("dns", "records", "example.test", "--json").stdout)
    return {r["name"]: r["value"] for r in recs if "._domainkey." in r["name"]}


def txt_rr(name, value):
    """A TXT record in zone-file form, split into strings of 255 bytes."""
    parts = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return "%s. 300 IN TXT %s" % (name, " ".join('"%s"' % p for p in parts))


def zones(a, b, dmarc=DMARC_REJECT, keys=None):
    z = {"example.test": ["example.test. 300 IN MX 10 mx.example.test.",
                          "mx.example.test. 300 IN A %s" % a.ip,
                          'example.test. 300 IN TXT "v=spf1 ip4:%s -all"' % a.ip]}
    keys = published(a) if keys is None else keys
    z["example.test"] += [txt_rr(n, v) for n, v in keys.items()]
    if dmarc:
        z["example.test"].append(dmarc)
    z.update(mx_zone("receive.test", b.ip))
    return z


@pytest.fixture
def pair(make_server, make_dns):
    """A (example.test, signing, delivering) and B (receive.test, checking),
    sharing one DNS server; returns (a, b, dns)."""
    a = make_server(domain="example.test", users=("alice",), tls=True, start=False,
                    delivery=True)
    b = make_server(domain="receive.test", users=("bob",), tls=True, start=False, spf=True)
    a.cli("dkim", "keygen", "example.test")
    dns = make_dns(zones(a, b), servfail=["broken.test"])
    configure(a, dns)
    b.conf.write_text(b.conf.read_text() + "\n" + dns.conf_line() + "\n")
    return a.start(), b.start(), dns


def stored(b, folder=None, n=1):
    got = b.wait_count("bob@receive.test", n, folder=folder)
    return b.message("bob@receive.test", got[-1]["uid"], folder)


def auth_results(raw):
    ar, _ = split_received(raw, b"Authentication-Results")
    return ar.decode()


def forge(b, body, mail_from="ceo@example.test", src=None):
    """Send straight to B's MX from an address outside example.test's SPF;
    the reply to the end of DATA."""
    c = open_conn(b.ip, source=src or next_ip())
    try:
        c.expect("MAIL FROM:<%s>" % mail_from, 250)
        c.expect("RCPT TO:<bob@receive.test>", 250)
        c.expect("DATA", 354)
        c.send(dot_stuff(body) + b".\r\n")
        return c.reply()
    finally:
        c.close()


FORGED = (b"From: The CEO <ceo@example.test>\r\nTo: bob@receive.test\r\n"
          b"Subject: wire the money\r\n\r\nurgent\r\n")


def dmarc_rows(b):
    db = sqlite3.connect(str(b.dir / "data" / "dakiya.db"))
    try:
        return db.execute("SELECT header_from, policy_domain, policy, disposition, dmarc, spf,"
                          " dkim, rua FROM dmarc_results ORDER BY id").fetchall()
    finally:
        db.close()


def test_journey_spf_dkim_dmarc_pass(pair):
    """alice's message reaches bob with spf=pass, two dkim=pass (RSA and
    Ed25519, d=example.test) and dmarc=pass in B's header; dkimpy verifies
    both signatures with the published keys."""
    a, b, dns = pair
    submit(a, ["bob@receive.test"], "signed")
    raw = stored(b)
    ar = auth_results(raw)
    assert ar.startswith("Authentication-Results: mail.receive.test;"), ar
    assert "spf=pass" in ar and "smtp.mailfrom=alice@example.test" in ar, ar
    assert ar.count("dkim=pass") == 2, ar
    assert "header.d=example.test" in ar and "header.a=rsa-sha256" in ar, ar
    assert "header.a=ed25519-sha256" in ar, ar
    assert "dmarc=pass (p=reject dis=none) header.from=example.test" in ar, ar
    sigs = [l for l in raw.split(b"\r\n") if l.startswith(b"DKIM-Signature:")]
    assert len(sigs) == 2 and b"c=relaxed/relaxed" in sigs[0], sigs
    assert b"h=from:from:" in raw.replace(b"\r\n\t", b" "), raw[:800]
    keys = published(a)

    def dnsfunc(name, timeout=5):
        return keys.get(name.decode().rstrip("."), "").encode() or None

    def dkimpy(msg, idx):
        try:
            return dkim.DKIM(msg).verify(idx=idx, dnsfunc=dnsfunc)
        except dkim.DKIMException:  # dkimpy raises on a body hash mismatch
            return False

    assert dkimpy(raw, 0) and dkimpy(raw, 1)
    assert not dkimpy(raw.replace(b"hello from alice", b"hello from mallory"), 0)
    assert not dkimpy(raw.replace(b"Subject: signed", b"Subject: signex"), 1)
    wait_for(lambda: qlist(a) == [], 10, "an empty queue on A")
    rows = dmarc_rows(b)
    assert rows and rows[-1][:5] == ("example.test", "example.test", "reject", "none", "pass")
    assert rows[-1][5] == "pass example.test" and "s=" in rows[-1][6] and "pass" in rows[-1][6]
    assert rows[-1][7] == "postmaster@example.test"


def test_forged_from_refused_under_p_reject(pair):
    """ceo@example.test, sent to B's MX from outside example.test's SPF and
    unsigned, is refused with 550 5.7.1 at the end of DATA; nothing is
    stored, the DMARC result is kept for the aggregate report; the session
    goes on."""
    a, b, dns = pair
    code, text = forge(b, FORGED)
    assert code == 550 and text[4:].startswith("5.7.1"), (code, text)
    assert "reject" in text and "example.test" in text, text
    assert b.mailbox("bob@receive.test") == [] and b.mailbox("bob@receive.test", "Junk") == []
    rows = dmarc_rows(b)
    assert rows[-1][:5] == ("example.test", "example.test", "reject", "reject", "fail"), rows
    assert rows[-1][5] == "fail example.test"
    assert "event=checks" in b.log_text() and "action=refuse" in b.log_text()
    # a tampered copy of a message A signed fails DKIM as well
    submit(a, ["bob@receive.test"], "original")
    raw = stored(b)
    # B's own Authentication-Results in it is dropped on the way in (ours)
    tampered = raw.replace(b"hello from alice: original", b"hello from alice: changed!")
    code, text = forge(b, tampered, mail_from="alice@example.test")
    assert code == 550, (code, text)


def test_forged_from_to_junk_under_p_quarantine(pair):
    a, b, dns = pair
    dns.set_records(zones(a, b, dmarc=DMARC_QUARANTINE))
    code, text = forge(b, FORGED)
    assert code == 250, (code, text)
    ar = auth_results(stored(b, "Junk"))
    assert "dmarc=fail (p=quarantine dis=quarantine) header.from=example.test" in ar, ar
    assert "spf=fail" in ar and "dkim=none" in ar, ar
    assert b.mailbox("bob@receive.test") == []


def test_dns_trouble_never_refuses(pair):
    """The From domain's DMARC record cannot be fetched (SERVFAIL): the
    message is delivered, dmarc=temperror; a DKIM key that cannot be
    fetched is temperror."""
    a, b, dns = pair
    msg = (b"From: x@broken.test\r\nSubject: s\r\n"
           b"DKIM-Signature: v=1; a=rsa-sha256; d=broken.test; s=k; h=from; bh=AAAA; b=AAAA\r\n"
           b"\r\nbody\r\n")
    code, text = forge(b, msg, mail_from="x@broken.test")
    assert code == 250, (code, text)
    ar = auth_results(stored(b))
    assert "dmarc=temperror" in ar and "dkim=temperror" in ar and "spf=temperror" in ar, ar


def test_no_dmarc_record_spf_fail_goes_to_junk_and_none_is_delivered(pair):
    a, b, dns = pair
    dns.set_records(zones(a, b, dmarc=None))
    assert forge(b, FORGED)[0] == 250
    ar = auth_results(stored(b, "Junk"))
    assert "spf=fail" in ar and "dmarc=none" in ar, ar
    # a domain with neither SPF nor DMARC: none, delivered
    assert forge(b, b"From: a@elsewhere.test\r\n\r\nhi\r\n", mail_from="a@elsewhere.test")[0] == 250
    ar = auth_results(stored(b))
    assert "spf=none" in ar and "dmarc=none" in ar and "dkim=none" in ar, ar


def test_key_rotation_old_selector_still_verifies(pair):
    """A new keygen while keys sign: the new ones wait until activated (their
    records must be published first); then they sign, and a message signed
    with the old ones still verifies while their records stay published."""
    a, b, dns = pair
    old = set(published(a))
    submit(a, ["bob@receive.test"], "before")
    before = stored(b)
    out = a.cli("dkim", "keygen", "example.test", "--selector", "next").stdout.decode()
    assert "dakiya dkim activate example.test --selector next" in out, out
    keys = json.loads(a.cli("dkim", "list", "example.test", "--json").stdout)
    assert sorted(k["selector"] for k in keys if not k["active"]) == ["nexte", "nextr"], keys
    assert not any(k["signing"] for k in keys if k["selector"].startswith("next")), keys
    dns.set_records(zones(a, b))  # old and new records published
    a.cli("dkim", "activate", "example.test", "--selector", "next")
    keys = json.loads(a.cli("dkim", "list", "example.test", "--json").stdout)
    signing = sorted(k["selector"] for k in keys if k["signing"])
    assert signing == ["nexte", "nextr"], keys
    submit(a, ["bob@receive.test"], "after")
    after = stored(b, n=2)
    assert b"s=nextr;" in after and b"s=nexte;" in after
    assert not any(("s=%s;" % s.split(".")[0]).encode() in after for s in old)
    assert auth_results(after).count("dkim=pass") == 2
    # the first message, checked again now: the old keys still verify it
    f = b.dir / "before.eml"
    f.write_bytes(before)
    out = json.loads(b.cli("check", str(f), "--ip", a.ip, "--helo", "mx.example.test",
                           "--mail-from", ALICE, "--json").stdout)
    assert [d["result"] for d in out["dkim"]] == ["pass", "pass"], out
    assert out["dmarc"]["result"] == "pass" and out["action"] == "deliver", out


def test_check_command_text_and_json(pair):
    a, b, dns = pair
    submit(a, ["bob@receive.test"], "for check")
    f = b.dir / "m.eml"
    f.write_bytes(stored(b).replace(b"\r\n", b"\n"))  # LF line ends are taken as CRLF
    r = b.cli("check", str(f), "--ip", a.ip, "--helo", "mx.example.test", "--mail-from", ALICE)
    text = r.stdout.decode()
    lines = text.splitlines()
    assert lines[0].startswith("spf: pass"), text
    assert sum(l.startswith("dkim: pass (good signature) d=example.test") for l in lines) == 2
    assert any(l.startswith("dmarc: pass (p=reject at example.test") for l in lines), text
    assert "action: deliver" in text and "Authentication-Results: mail.receive.test;" in text
    outsider = next_ip()
    j = json.loads(b.cli("check", str(f), "--ip", outsider, "--helo", "x.test", "--mail-from",
                         ALICE, "--json").stdout)
    assert j["spf"]["result"] == "fail" and j["dmarc"]["result"] == "pass", j  # DKIM aligned
    f.write_bytes(f.read_bytes().replace(b"for check", b"for cheque"))
    j = json.loads(b.cli("check", str(f), "--ip", outsider, "--helo", "x.test", "--mail-from",
                         ALICE, "--json").stdout)
    assert [d["result"] for d in j["dkim"]] == ["fail", "fail"], j
    assert j["dmarc"]["result"] == "fail" and j["action"] == "refuse", j
    r = b.cli("check", str(f), "--helo", "x.test", check=False)
    assert r.returncode == 1 and b"--ip" in r.stderr


def test_dkim_and_dns_cli(make_server):
    s = make_server(domain="example.test", users=())
    r = s.cli("dkim", "list", "example.test")
    assert r.stdout == b"" and b"dkim keygen" in r.stderr
    s.cli("dkim", "keygen", "example.test", "--selector", "s1")
    keys = json.loads(s.cli("dkim", "list", "example.test", "--json").stdout)
    assert [(k["selector"], k["algorithm"], k["signing"]) for k in keys] == [
        ("s1r", "rsa", True), ("s1e", "ed25519", True)]
    for k in ("s1r", "s1e"):
        p = s.dir / "data" / "dkim" / "example.test" / (k + ".pem")
        assert oct(p.stat().st_mode & 0o777) == "0o600", p
    assert oct((s.dir / "data" / "dkim").stat().st_mode & 0o777) == "0o700"
    r = s.cli("dkim", "keygen", "example.test", "--selector", "s1", check=False)
    assert r.returncode == 1 and b"already has a key" in r.stderr
    r = s.cli("dkim", "keygen", "nowhere.test", check=False)
    assert r.returncode == 1 and b"domain add nowhere.test" in r.stderr
    zone = s.cli("dns", "records", "example.test").stdout.decode().splitlines()
    assert zone[0] == "example.test. 3600 IN MX 10 mail.example.test.", zone
    assert zone[1] == 'example.test. 3600 IN TXT "v=spf1 mx -all"', zone
    assert zone[2].startswith('s1r._domainkey.example.test. 3600 IN TXT "v=DKIM1; k=rsa; p=')
    assert '" "' in zone[2]  # split into 255-byte strings
    assert zone[3].startswith('s1e._domainkey.example.test. 3600 IN TXT "v=DKIM1; k=ed25519;')
    assert zone[4] == ('_dmarc.example.test. 3600 IN TXT '
                       '"v=DMARC1; p=reject; rua=mailto:postmaster@example.test"'), zone
    js = json.loads(s.cli("dns", "records", "example.test", "--json").stdout)
    assert [(r["name"], r["type"]) for r in js] == [
        ("example.test", "MX"), ("example.test", "TXT"), ("s1r._domainkey.example.test", "TXT"),
        ("s1e._domainkey.example.test", "TXT"), ("_dmarc.example.test", "TXT")]
    assert js[2]["value"] == keys[0]["record"]
    s.cli("dkim", "del", "example.test", "--selector", "S1R")  # selectors ignore case
    assert not (s.dir / "data" / "dkim" / "example.test" / "s1r.pem").exists()
    r = s.cli("dkim", "del", "example.test", "--selector", "s1r", check=False)
    assert r.returncode == 1 and b"no key with selector s1r" in r.stderr
    # the pair by its base name
    s.cli("dkim", "keygen", "example.test", "--selector", "s2")
    s.cli("dkim", "del", "example.test", "--selector", "s2")
    assert [k["selector"] for k in json.loads(
        s.cli("dkim", "list", "example.test", "--json").stdout)] == ["s1e"]
    r = s.cli("dkim", "list", "example.test", "--selector", "x", check=False)
    assert r.returncode == 1 and b"no --selector" in r.stderr
    # a planted symbolic link is not followed (root would chown its target)
    (s.dir / "data" / "dkim" / "other.test").symlink_to(s.dir)
    s.cli("domain", "add", "other.test")
    r = s.cli("dkim", "keygen", "other.test", check=False)
    assert r.returncode == 1 and b"no symbolic links" in r.stderr, r.stderr
    assert not list(s.dir.glob("*.pem"))
    assert b"keygen" in s.cli("dkim", "--help").stdout
    assert b"records" in s.cli("dns", "--help").stdout


def test_big_message_and_bdat_verify(pair):
    """A 3 MB message (many flushes of the body canonicalizer) signed by A
    passes at B; the same content sent to B with BDAT in two chunks
    verifies too."""
    a, b, dns = pair
    line = "0123456789 " * 7 + "\r\n"
    body = ("From: %s\r\nTo: bob@receive.test\r\nSubject: big\r\n\r\n" % ALICE) + line * 40000
    with smtplib.SMTP(a.ip, 2587, timeout=60) as c:
        c.login(ALICE, "secret-Passw0rd")
        c.sendmail(ALICE, ["bob@receive.test"], body.encode())
    raw = stored(b)
    assert auth_results(raw).count("dkim=pass") == 2, auth_results(raw)
    c = open_conn(b.ip, source=a.ip)
    try:
        half = len(raw) // 2
        c.expect("MAIL FROM:<%s>" % ALICE, 250)
        c.expect("RCPT TO:<bob@receive.test>", 250)
        c.send(b"BDAT %d\r\n" % half + raw[:half])
        assert c.reply()[0] == 250
        c.send(b"BDAT %d LAST\r\n" % (len(raw) - half) + raw[half:])
        code, text = c.reply()
        assert code == 250, text
    finally:
        c.close()
    ar = auth_results(stored(b, n=2))
    assert ar.count("dkim=pass") == 2 and "dmarc=pass" in ar and "spf=pass" in ar, ar


def test_slow_key_lookup_and_a_client_that_leaves(make_server, make_dns):
    """A signature whose key server never answers: the end of DATA waits for
    the resolver's timeout, then dkim=temperror and the message is kept. A
    client that leaves while the server waits does not stop the commit (as
    during the fsync: input is not read meanwhile; at worst the message
    arrives twice, never not at all), and the server goes on."""
    b = make_server(domain="receive.test", users=("bob",), start=False, spf=True)
    dns = make_dns({"receive.test": ["receive.test. 300 IN MX 10 mail.receive.test."]},
                   slow=["slow.test"])
    b.conf.write_text(b.conf.read_text() + "\n" + dns.conf_line() + "\n")
    b.start()
    msg = (b"From: x@fine.test\r\nSubject: s\r\n"
           b"DKIM-Signature: v=1; a=rsa-sha256; d=slow.test; s=k; h=from; bh=AAAA; b=AAAA\r\n"
           b"\r\nbody\r\n")
    t0 = time.time()
    code, text = forge(b, msg, mail_from="x@fine.test")
    assert code == 250, text
    assert 3 < time.time() - t0 < 20
    ar = auth_results(stored(b))
    assert "dkim=temperror" in ar and "dmarc=none" in ar, ar
    c = open_conn(b.ip, source=next_ip())
    c.expect("MAIL FROM:<x@fine.test>", 250)
    c.expect("RCPT TO:<bob@receive.test>", 250)
    c.expect("DATA", 354)
    c.send(msg + b".\r\n")
    time.sleep(0.5)
    c.close()
    b.wait_count("bob@receive.test", 2, timeout=15)
    assert b.log_text().count('dkim="d=slow.test s=k temperror"') == 2, b.log_text()[-3000:]
    c = open_conn(b.ip, source=next_ip())  # still serving
    c.expect("QUIT", 221)
    c.close()


def test_opendkim_verifies_what_we_sign(pair, tmp_path):
    """OpenDKIM (Debian's opendkim, `opendkim -t` with TestPublicKeys: the
    published records, no DNS) verifies both of A's signatures on bob's
    copy, and fails both once a signed field changes."""
    a, b, dns = pair
    submit(a, ["bob@receive.test"], "for opendkim")
    raw = stored(b)
    keys = tmp_path / "keys"
    keys.write_text("".join("%s %s\n" % kv for kv in published(a).items()))
    conf = tmp_path / "opendkim.conf"
    conf.write_text("Mode v\nTestPublicKeys %s\nSyslog no\nAlwaysAddARHeader yes\n"
                    "MinimumKeyBits 1024\n" % keys)

    def opendkim(msg):
        f = tmp_path / "m.eml"
        f.write_bytes(msg)
        r = subprocess.run(["opendkim", "-x", str(conf), "-vvv", "-t", str(f)],
                           capture_output=True, timeout=60)
        out = (r.stdout + r.stderr).decode(errors="replace")
        return [l.strip() for l in out.splitlines() if l.strip().startswith("dkim=")]

    got = opendkim(raw)
    assert len(got) == 2 and all(l.startswith("dkim=pass") for l in got), got
    assert any("header.a=rsa-sha256" in l for l in got), got
    assert any("header.a=ed25519-sha256" in l for l in got), got
    got = opendkim(raw.replace(b"Subject: for opendkim", b"Subject: for opendkin"))
    assert len(got) == 2 and all(l.startswith("dkim=fail") for l in got), got


def test_dns_trouble_with_an_aligned_signature_is_not_a_fail(pair):
    """A message A signed, relayed to B from outside A's SPF (as a forwarder
    would), while A's key records cannot be fetched: dkim=temperror for the
    aligned signatures, so DMARC is temperror, never fail: delivered under
    p=reject."""
    a, b, dns = pair
    submit(a, ["bob@receive.test"], "relayed")
    raw = stored(b)
    z = zones(a, b, keys={})
    dns.set_records(z, servfail=["broken.test", "_domainkey.example.test"])
    code, text = forge(b, raw, mail_from="list@elsewhere.test")
    assert code == 250, (code, text)
    ar = auth_results(stored(b, n=2))
    assert ar.count("dkim=temperror") == 2 and "dmarc=temperror" in ar, ar


def test_several_from_fields_or_domains_are_refused(pair):
    """With DMARC on, a forger cannot hide ceo@example.test behind another
    author: a second From field, two author domains or a "from :" field are
    refused; a From longer than 8 KB is still read to its end. No From at
    all, or an empty group, names no author: delivered, without dmarc."""
    a, b, dns = pair
    for hdr in (b"From: x@elsewhere.test\r\nFrom: The CEO <ceo@example.test>\r\n",
                b"From: x@elsewhere.test, The CEO <ceo@example.test>\r\n",
                b"From: x@elsewhere.test\r\nfrom : ceo@example.test\r\n"):
        code, text = forge(b, hdr + b"Subject: hi\r\n\r\nbody\r\n", mail_from="x@elsewhere.test")
        assert code == 550 and text[4:].startswith("5.7.1"), (hdr, code, text)
    long_from = (b"From: (x@elsewhere.test" + b"\r\n " + b"y" * 70) * 130 + \
        b") The CEO <ceo@example.test>\r\n"
    code, text = forge(b, long_from + b"Subject: hi\r\n\r\nbody\r\n",
                       mail_from="x@elsewhere.test")
    assert code == 550 and "example.test is reject" in text, (code, text)
    assert b.mailbox("bob@receive.test") == []
    for n, hdr in enumerate((b"From: undisclosed:;\r\n", b"Sender: x@elsewhere.test\r\n")):
        code, text = forge(b, hdr + b"Subject: hi\r\n\r\nbody\r\n", mail_from="x@elsewhere.test")
        assert code == 250, (hdr, code, text)
        assert "dmarc=" not in auth_results(stored(b, n=n + 1)), hdr


def test_spf_off_does_not_turn_spf_aligned_mail_into_a_fail(make_server, make_dns):
    """checks.spf = false with DMARC on: a message aligned by SPF only
    cannot be judged, so it is delivered (dmarc=temperror), not refused."""
    b = make_server(domain="receive.test", users=("bob",), start=False, spf=True,
                    extra="checks { spf = false }")
    src = next_ip()
    dns = make_dns({"example.test": ['example.test. 300 IN TXT "v=spf1 ip4:%s -all"' % src,
                                     DMARC_REJECT]})
    b.conf.write_text(b.conf.read_text() + "\n" + dns.conf_line() + "\n")
    b.start()
    code, text = forge(b, FORGED, src=src)
    assert code == 250, (code, text)
    ar = auth_results(stored(b))
    assert "dmarc=temperror" in ar and "spf=" not in ar, ar
