#!/usr/bin/python3
"""Cross-check of dakiya's DKIM signer and verifier with dkimpy (Debian's
python3-dkim, with python3-nacl for Ed25519), via tests/unit/dkim_driver.

    dkim_dkimpy.py DRIVER CONFORMANCE_DIR      prints "N passed, M failed"

The keys are the test keys of CONFORMANCE_DIR/dkimpy (see its README): the
RSA-2048 PEM key, and the two Ed25519 keys, which are stored as base64
seeds and are turned into PKCS#8 PEM files in a temporary directory here.
Their key records are the published ones (RSA) or derived from the seeds
and compared with the published one (Ed25519). No DNS: dkimpy gets a
dnsfunc over a dict, the driver its D lines.

  (a) dakiya signs each unsigned message with the three keys at once;
      dkimpy must verify every signature (and dakiya too); the message
      without From must be refused.
  (b) dkimpy signs each message with each key type and each of the four
      c= combinations (and with l=, and with an h= naming absent and
      repeated fields); dakiya must say pass.
  (c) a body byte changed, or the Subject changed, in messages from (a)
      and (b): dakiya must say fail and dkimpy False.
  (d) changes in transit that one canonicalization forgives and the other
      does not (whitespace and case in fields and body, empty lines at the
      end, whitespace around b=, a new Received on top), to messages
      dkimpy signed with c=simple/simple and c=relaxed/relaxed: both must
      give the answer RFC 6376 3.4 and 3.7 give.

Exits 77 (skipped, for meson) when dkimpy or nacl is missing.
"""
import base64
import os
import subprocess
import sys
import tempfile
import time

try:
    import dkim
    import nacl.signing
except ImportError as e:
    print("dkim_dkimpy: skipped, %s (apt-get install python3-dkim python3-nacl)" % e)
    sys.exit(77)

MESSAGES = ["test.message", "rfc6376.msg", "ed25519test.msg", "message.mbox",
            "test_extra.message", "rfc6376.w1258.msg"]
NOFROM = "test_nofrom.message"
# made here: the corners of canonicalization (not WSP before a field's colon,
# which RFC 5322's obsolete syntax allows and dakiya takes, but dkimpy's
# parser refuses)
SYNTHETIC = {
    "empty-body": b"From: a@example.com\r\nSubject: empty\r\n\r\n",
    "only-empty-lines": b"From: a@example.com\r\nSubject: blank\r\n\r\n\r\n\r\n\r\n",
    "no-final-crlf": b"From: a@example.com\r\nSubject: x\r\n\r\nline one\r\nno end",
    "whitespace": b"From: a@example.com\r\nSubject:  lots \t of   space \r\n\r\n"
                  b"  a  \t b \r\n \t\r\n\r\nc\t\r\n \r\n\t\r\n\r\n",
    "folding": b"Subject:\r\n\tfolded \r\n  twice\r\nFrom:a@example.com\r\n"
               b"To: b@example.org,\r\n c@example.org\r\n\r\nbody\r\n",
    "upper-case-names": b"FROM: a@example.com\r\nSUBJECT: x\r\nto: b@example.org\r\n\r\nb\r\n",
    "two-froms": b"From: a@example.com\r\nFrom: b@example.com\r\nSubject: x\r\n\r\nb\r\n",
    "long-lines": b"From: a@example.com\r\nSubject: " + b"s" * 900 + b"\r\n\r\n"
                  + (b"y" * 997 + b"\r\n") * 3,
}
DOMAIN = "example.com"
# PKCS#8 PrivateKeyInfo for Ed25519 (RFC 8410 7) up to the 32-byte seed
ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")

passed = failed = 0


def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
    print("%-4s %s%s" % ("ok" if ok else "BAD", what, (" -- " + detail) if detail and not ok
                         else ""))


def crlf(raw):
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def split(msg):
    """(header section with its last CRLF, body) of a CRLF message."""
    i = msg.find(b"\r\n\r\n")
    if i < 0:
        return msg, b""
    return msg[:i + 2], msg[i + 4:]


class Driver:
    def __init__(self, path):
        self.path = path

    def run(self, lines):
        p = subprocess.run([self.path], input="\n".join(lines) + "\n", capture_output=True,
                           text=True)
        out = p.stdout.splitlines()
        want = sum(1 for l in lines if l[0] in "VS")
        if p.returncode != 0 or len(out) != want:
            print("driver failed (status %d, %d lines for %d):\n%s\n%s"
                  % (p.returncode, len(out), want, p.stdout, p.stderr))
            sys.exit(1)
        return out


def dns_lines(records):
    out = ["X"]
    for name, val in records.items():
        out.append("D\t%s\t%s" % (name, val.encode().hex()))
    return out


def verify_line(msg, now):
    return "V\t%s\t%d" % (msg.hex() or "-", now)


def parse_v(line):
    """The driver's V answer as [(result, reason)]."""
    count, _, rest = line.partition("\t")
    if int(count) == 0:
        return []
    return [(r.split("\t")[0], r.split("\t")[2]) for r in rest.split("|")]


def dkimpy_verify(msg, records):
    """dkimpy's answer for each signature (True/False, or the exception)."""
    def dnsfunc(name, timeout=5):
        v = records.get(name.decode("ascii", "replace").rstrip(".").lower())
        return v.encode() if v is not None else None
    d = dkim.DKIM(msg, minkey=1024)
    n = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
    got = []
    for i in range(n):
        try:
            got.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
        except Exception as e:  # dkimpy raises on some input
            got.append("%s: %s" % (type(e).__name__, e))
    return got


def tamper_body(msg):
    h, b = split(msg)
    for i, c in enumerate(b):
        if chr(c).isalnum():
            return h + b"\r\n" + b[:i] + (b"x" if c != ord("x") else b"y") + b[i + 1:]
    return None


def sub_sig(msg, f):
    """msg with f applied to its top DKIM-Signature field (up to its CRLF)."""
    end = msg.find(b"\r\n", 0)
    while msg[end + 2:end + 3] in (b" ", b"\t"):
        end = msg.find(b"\r\n", end + 2)
    return f(msg[:end + 2]) + msg[end + 2:]


def tamper_subject(msg):
    h, b = split(msg)
    if b"\r\nSubject: " not in h:
        return None
    return h.replace(b"\r\nSubject: ", b"\r\nSubject: Re: ", 1) + b"\r\n" + b


def main():
    with tempfile.TemporaryDirectory(prefix="dkim_dkimpy.") as tmp:
        return run(Driver(sys.argv[1]), sys.argv[2], tmp)


def run(drv, conf, tmp):
    data = os.path.join(conf, "dkimpy")
    now = int(time.time())

    # the keys: selector -> (PEM path, dkimpy private key, algorithm)
    keys = {}
    records = {}
    rsa_pem = os.path.join(data, "2048_testkey.key")
    keys["rsa"] = (rsa_pem, open(rsa_pem, "rb").read(), b"rsa-sha256")
    records["rsa._domainkey." + DOMAIN] = open(
        os.path.join(data, "2048_testkey_wo_markers.pub.txt")).read().strip()
    for sel, seedfile in (("ed", "ed25519test.key"), ("brisbane", "rfc8032_7_1.key")):
        b64 = open(os.path.join(data, seedfile), "rb").read().strip()
        seed = base64.b64decode(b64)
        assert len(seed) == 32, seedfile
        pem = os.path.join(tmp, sel + ".pem")
        with open(pem, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n"
                    % base64.b64encode(ED25519_PKCS8 + seed).decode())
        pub = bytes(nacl.signing.SigningKey(seed).verify_key)
        records["%s._domainkey.%s" % (sel, DOMAIN)] = (
            "v=DKIM1; k=ed25519; p=" + base64.b64encode(pub).decode())
        keys[sel] = (pem, b64, b"ed25519-sha256")
    published = open(os.path.join(data, "ed25519test.dns")).read().strip()
    check(published.endswith(records["ed._domainkey." + DOMAIN].split("; ", 2)[2]),
          "the Ed25519 key derived from ed25519test.key is the one in ed25519test.dns")
    check(records["brisbane._domainkey." + DOMAIN].endswith(
          "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="),
          "the Ed25519 key derived from rfc8032_7_1.key is RFC 8463's brisbane key")
    msgs = {m: crlf(open(os.path.join(data, m), "rb").read()) for m in MESSAGES + [NOFROM]}
    msgs.update(SYNTHETIC)
    old = {m: sum(1 for l in split(msgs[m])[0].split(b"\r\n")
                  if l.lower().startswith(b"dkim-signature:")) for m in msgs}

    # (a) dakiya signs, dkimpy verifies
    spec = ",".join("%s:%s" % (sel, k[0]) for sel, k in keys.items())
    out = drv.run(["S\t%s\t%s\t%s\t%d" % (msgs[m].hex(), DOMAIN, spec, now)
                   for m in MESSAGES + list(SYNTHETIC) + [NOFROM]])
    signed = {}
    for m, line in zip(MESSAGES + list(SYNTHETIC) + [NOFROM], out):
        if m == NOFROM:
            check(line.startswith("error") and "From" in line,
                  "(a) dakiya refuses to sign %s" % m, line)
            continue
        if line.startswith("error"):
            check(False, "(a) dakiya signs %s" % m, line)
            continue
        signed[m] = bytes.fromhex(line) + msgs[m]
        got = dkimpy_verify(signed[m], records)
        # message.mbox comes with a signature of its own, whose key is unknown
        check(got[:len(keys)] == [True] * len(keys) and len(got) == len(keys) + old[m]
              and True not in got[len(keys):],
              "(a) dkimpy verifies dakiya's %d signatures on %s" % (len(keys), m),
              "dkimpy says %s" % got)
    check(dkimpy_verify(msgs["test.message"], records) == [], "(a) unsigned: no signature")

    # (b) dkimpy signs, dakiya verifies
    variants = []  # (label, dkimpy-signed message, signatures it had before)
    canons = [(b"relaxed", b"relaxed"), (b"simple", b"simple"), (b"relaxed", b"simple"),
              (b"simple", b"relaxed")]
    for m in MESSAGES + list(SYNTHETIC):
        for sel in ("rsa", "ed"):
            for c in canons:
                sig = dkim.sign(msgs[m], sel.encode(), DOMAIN.encode(), keys[sel][1],
                                canonicalize=c, signature_algorithm=keys[sel][2])
                variants.append(("%s %s c=%s/%s" % (m, keys[sel][2].decode(), c[0].decode(),
                                 c[1].decode()), sig + msgs[m], old[m]))
        sig = dkim.sign(msgs[m], b"rsa", DOMAIN.encode(), keys["rsa"][1],
                        canonicalize=(b"relaxed", b"simple"), length=True)
        variants.append(("%s rsa-sha256 with l=" % m, sig + msgs[m], old[m]))
        sig = dkim.sign(msgs[m], b"ed", DOMAIN.encode(), keys["ed"][1],
                        canonicalize=(b"simple", b"simple"), signature_algorithm=b"ed25519-sha256",
                        include_headers=[b"from", b"to", b"subject", b"x-absent", b"from",
                                         b"to", b"message-id"])
        variants.append(("%s ed25519-sha256 h= with absent and repeated fields" % m,
                         sig + msgs[m], old[m]))
    # both signed, dkimpy on top of dakiya
    sig = dkim.sign(signed["rfc6376.msg"], b"rsa", DOMAIN.encode(), keys["rsa"][1],
                    canonicalize=(b"relaxed", b"relaxed"))
    variants.append(("rfc6376.msg, dkimpy's signature over dakiya's three",
                     sig + signed["rfc6376.msg"], 0))
    try:
        dkim.sign(msgs[NOFROM], b"rsa", DOMAIN.encode(), keys["rsa"][1])
        check(False, "(b) dkimpy refuses to sign %s" % NOFROM, "it signed")
    except dkim.ParameterError:
        check(True, "(b) dkimpy refuses to sign %s" % NOFROM)

    lines = dns_lines(records)
    lines += [verify_line(v[1], now) for v in variants]
    lines += [verify_line(signed[m], now) for m in sorted(signed)]
    out = drv.run(lines)
    for (label, msg, before), line in zip(variants, out):
        # all pass but those the message had before (unknown keys): those
        # neither verifier may pass
        got = parse_v(line)
        n = len(got) - before
        check(n >= 1 and all(r == "pass" for r, _ in got[:n])
              and all(r != "pass" for r, _ in got[n:]),
              "(b) dakiya verifies dkimpy's %s" % label, "dakiya says %s" % got)
        py = dkimpy_verify(msg, records)
        check(len(py) == len(got) and all(x is True for x in py[:n])
              and True not in py[n:], "(b) dkimpy verifies its own %s" % label,
              "dkimpy says %s" % py)
    for m, line in zip(sorted(signed), out[len(variants):]):
        got = parse_v(line)
        check(len(got) == len(keys) + old[m] and all(r == "pass" for r, _ in got[:len(keys)])
              and all(r != "pass" for r, _ in got[len(keys):]),
              "(a) dakiya verifies its own signatures on %s" % m, "dakiya says %s" % got)

    # (c) tampered: both must refuse
    tampered = []  # (label, message, signatures it had before signing)
    for m in sorted(signed):
        tampered.append(("dakiya-signed %s, a body byte changed" % m, tamper_body(signed[m]),
                         old[m]))
        tampered.append(("dakiya-signed %s, Subject changed" % m, tamper_subject(signed[m]),
                         old[m]))
    for label, msg, before in variants:
        if "c=relaxed/relaxed" in label or "c=simple/simple" in label:
            tampered.append(("dkimpy-signed %s, a body byte changed" % label, tamper_body(msg),
                             before))
            tampered.append(("dkimpy-signed %s, Subject changed" % label, tamper_subject(msg),
                             before))
    tampered = [t for t in tampered if t[1] is not None]
    out = drv.run(dns_lines(records) + [verify_line(t[1], now) for t in tampered])
    for (label, msg, before), line in zip(tampered, out):
        got = parse_v(line)
        n = len(got) - before
        py = dkimpy_verify(msg, records)
        check(n >= 1 and all(r == "fail" for r, _ in got[:n])
              and all(r != "pass" for r, _ in got[n:]), "(c) dakiya: %s" % label,
              "dakiya says %s" % got)
        check(len(py) == len(got) and True not in py, "(c) dkimpy: %s" % label,
              "dkimpy says %s" % py)

    # (d) what each canonicalization forgives
    changes = [  # (what, function, passes simple/simple, passes relaxed/relaxed)
        ("a Received field on top", lambda m: b"Received: from x by y\r\n" + m, True, True),
        ("Subject's name in upper case", lambda m: m.replace(b"\r\nSubject:", b"\r\nSUBJECT:"),
         False, True),
        ("Subject's value refolded", lambda m: m.replace(b"\r\nSubject: Is dinner",
                                                        b"\r\nSubject:  Is\r\n\t dinner"),
         False, True),
        ("WSP at the end of To", lambda m: m.replace(b".net>\r\n", b".net> \t\r\n", 1),
         False, True),
        ("empty lines added at the end", lambda m: m + b"\r\n\r\n\r\n", True, True),
        ("WSP added inside a body line", lambda m: m.replace(b"the game.", b"the  game."),
         False, True),
        ("WSP at the end of a body line", lambda m: m.replace(b"Hi.\r\n", b"Hi. \r\n"),
         False, True),
        ("a whitespace-only line at the end", lambda m: m + b" \t\r\n", False, True),
        ("an empty line added inside the body", lambda m: m.replace(b"Hi.\r\n", b"Hi.\r\n\r\n"),
         False, False),
        ("WSP after the b= value", lambda m: sub_sig(m, lambda v: v[:-2] + b" \r\n"), True, True),
        ("a fold after b=", lambda m: sub_sig(m, lambda v: v.replace(b"b=", b"b=\r\n\t", 1)
                                              if v.startswith(b"b=") else
                                              v.replace(b" b=", b" b=\r\n\t", 1)
                                              .replace(b"\tb=", b"\tb=\r\n\t", 1)),
         True, True),
        ("b = for b=", lambda m: sub_sig(m, lambda v: v.replace(b" b=", b" b = ", 1)
                                        .replace(b"\tb=", b"\tb = ", 1)), False, False),
    ]
    cases = []
    for c, name in (((b"simple", b"simple"), "simple"), ((b"relaxed", b"relaxed"), "relaxed")):
        msg = msgs["rfc6376.msg"]
        sig = dkim.sign(msg, b"rsa", DOMAIN.encode(), keys["rsa"][1], canonicalize=c,
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        for what, f, ok_simple, ok_relaxed in changes:
            if f(sig + msg) == sig + msg:
                check(False, "(d) %s changes the message" % what)
            cases.append(("%s, c=%s/%s" % (what, name, name), f(sig + msg),
                          ok_simple if name == "simple" else ok_relaxed))
    out = drv.run(dns_lines(records) + [verify_line(m, now) for _, m, _ in cases])
    for (label, msg, want), line in zip(cases, out):
        got = parse_v(line)
        py = dkimpy_verify(msg, records)
        check(len(got) == 1 and (got[0][0] == "pass") == want,
              "(d) dakiya: %s: %s" % (label, "pass" if want else "fail"), "dakiya says %s" % got)
        check(len(py) == 1 and (py[0] is True) == want,
              "(d) dkimpy: %s: %s" % (label, "True" if want else "False"), "dkimpy says %s" % py)

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
