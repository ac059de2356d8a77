#!/usr/bin/python3
"""DKIM vectors of ../shared/conformance/dkim (40 verification cases: RFC
8463's own example, real list and bulk mail, dkimpy's messages and the
derived tampered/bad-key set) through dakiya's verifier, via
tests/unit/dkim_driver.

    dkim_vectors.py DRIVER CONFORMANCE_DIR      prints "N passed, M failed"

Each case's DNS records are the driver's table (a name not in it answers
NXDOMAIN); the message is turned into CRLF as SMTP carries it; every
signature's result must be one of the expected words.
"""
import json
import os
import subprocess
import sys
import time


def load(conf, case):
    raw = open(os.path.join(conf, case["message"]), "rb").read()
    if case.get("format") == "mail-auth":
        raw = raw.split(b"\n\n", 1)[1]
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def main():
    driver, conf = sys.argv[1], sys.argv[2]
    cases = []
    for manifest in ("cases.json", os.path.join("derived", "cases.json")):
        cases += json.load(open(os.path.join(conf, manifest)))["cases"]
    lines = []
    for c in cases:
        lines.append("X")
        for name, val in c["dns"].items():
            lines.append("D\t%s\t%s" % (name.rstrip("."), val.encode().hex() or "-"))
        now = c.get("verify_time") or int(time.time())
        lines.append("V\t%s\t%d" % (load(conf, c).hex() or "-", now))
    p = subprocess.run([driver], input="\n".join(lines) + "\n", capture_output=True,
                       text=True, check=True)
    out = p.stdout.splitlines()
    if len(out) != len(cases):
        print("driver gave %d lines for %d cases" % (len(out), len(cases)))
        print(p.stdout, p.stderr)
        return 1
    bad = 0
    for c, line in zip(cases, out):
        count, _, rest = line.partition("\t")
        got = [r.split("\t") for r in rest.split("|")] if int(count) else []
        want = c["expect"]
        ok = len(got) == len(want)
        for g, w in zip(got, want):
            ok = ok and g[0] in ([w] if isinstance(w, str) else w)
        bad += not ok
        print("%-4s %-30s expect=%-44s got=%s" % ("ok" if ok else "BAD", c["id"],
              json.dumps(want), "; ".join("%s (%s)" % (g[0], g[2]) for g in got) or "none"))
    print("%d passed, %d failed" % (len(cases) - bad, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
