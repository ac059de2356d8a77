#!/usr/bin/python3
"""DMARC vectors of ../shared/conformance/dmarc (records, alignment,
Organizational Domain, the author domain of From values) against dakiya's
pure DMARC functions, through
tests/unit/dmarc_driver.

    dmarc_vectors.py DRIVER CONFORMANCE_DIR      prints "N passed, M failed"

Known deviations, where the RFC is followed instead of another
implementation's choice (listed here; the RFC's answer is what is checked):
records.json opendmarc n=5 "p=n", which OpenDMARC takes as none (RFC 7489
6.3 allows only none, quarantine, reject); mail-auth dropping "%20" from a
mailto: address (we keep the address as the URI writes it).
"""
import json
import os
import subprocess
import sys

RFC_OVER_OPENDMARC = {("opendmarc", 5): "error-bad-value"}
# mail-auth decodes and drops "%20" in a mailto: address; we keep the
# address as the URI writes it (RFC 6068 percent-encoding is left to the
# report sender)
KEEP_AS_WRITTEN = {"user@example.com": "user%20@example.com"}


def addr(a):
    """An expected address without the vector's annotation in parentheses."""
    a = a.split(" (")[0].strip()
    return KEEP_AS_WRITTEN.get(a, a)


def main():
    driver, conf = sys.argv[1], sys.argv[2]
    recs = json.load(open(os.path.join(conf, "records.json")))
    align = json.load(open(os.path.join(conf, "alignment.json")))
    org = json.load(open(os.path.join(conf, "org-domain.json")))
    psl2014 = os.path.join(conf, "opendmarc", "effective_tld_names.dat")
    lines, checks = [], []

    def ask(line, want, what):
        lines.append(line)
        checks.append((want, what))

    for e in recs["opendmarc"]:
        want = RFC_OVER_OPENDMARC.get(("opendmarc", e["n"]), e["expect"])
        ask("R\t" + (e["record"].encode().hex() or "-"), ("word", want), "record %d" % e["n"])
    for e in recs["mail-auth"]:
        x = e["expect"]
        want = ["ok", x["p"], x["sp"], x["np"], x["adkim"], x["aspf"], x["fo"]]
        ask("R\t" + e["record"].encode().hex(), ("fields", want, [addr(a) for a in x["rua"]],
                                                 [addr(a) for a in x["ruf"]], x["psd"],
                                                 "y" if x["t"] else "n"), e["record"])
    for e in recs["rfc7489"]:
        ask("R\t" + e["record"].encode().hex(), ("word", "ok"), e["section"])
    for psl in (psl2014, "-"):
        lines.append("P\t" + psl)
        for e in align["opendmarc"]:
            ask("A\t%s\t%s\t%s" % (e["a"], e["b"], e["mode"]), ("word", e["expect"]),
                "alignment %d (%s)" % (e["n"], psl))
    lines.append("P\t-")
    for e in align["rfc7489"]:
        a = e.get("d") or e["mail_from"].split("@")[-1]
        b = e["from"].split("@")[-1]
        ask("A\t%s\t%s\ts" % (a, b), ("word", e["strict"]), e["section"] + " strict")
        ask("A\t%s\t%s\tr" % (a, b), ("word", e["relaxed"]), e["section"] + " relaxed")
    scen = json.load(open(os.path.join(conf, "scenarios.json")))["scenarios"]
    lines.append("P\t-")
    for e in scen:
        if e["semantics"] == "rfc9989":
            continue  # the RFC 9989 tree walk and np= are not ours (RFC 7489)
        lines.append("X")
        for name, rec in e["dns"].items():
            recs = rec if isinstance(rec, list) else [rec]
            for r in recs:
                lines.append("D\t%s\t%s" % (name.rstrip("."), r.encode().hex() or "-"))
        dk = ",".join("%s:%s" % (s["d"], s["result"]) for s in e["dkim"]) or "-"
        x = e["expect"]
        ask("E\t%s\t%s\t%s %s" % (e["from_domain"], e.get("mail_from_domain") or "-",
                                   e["spf"], dk),
            ("fields4", [x.get("spf_aligned"), x.get("dkim_aligned"), x["dmarc"], x["policy"]]),
            "scenario " + e["id"])
    lines.append("P\t" + psl2014)
    for e in org["opendmarc-psl"]:
        ask("O\t" + e["domain"], ("word", e["org"]), "org " + e["domain"])
    # the author domain of From values, malformed ones included (OpenDMARC's
    # test_finddomain.c): DMARC must not be dodged by breaking the syntax
    for e in org["opendmarc-from"]:
        ask("F\t" + e["from"].encode().hex(), ("word", e["domain"]), "from " + e["from"])
    # ours: an IDN author domain is looked up as its A-labels (RFC 5890), the
    # form a policy is published at and d= names
    for v, want in (("CEO <ceo@Ex\u00e4mple.test>", "xn--exmple-cua.test"),
                     ("a@\u00fc\u00f1\u00ee.example", "xn--fdaf6a.example"),
                     ("a@xn--exmple-cua.test", "xn--exmple-cua.test")):
        ask("F\t" + v.encode().hex(), ("word", want), "idn from " + v)
    out = subprocess.run([driver], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        sys.exit("driver failed: " + out.stderr)
    got = out.stdout.splitlines()
    passed, failed = 0, []
    for (want, what), g in zip(checks, got):
        f = g.split("\t")
        if want[0] == "word":
            ok = f[0] == want[1]
        elif want[0] == "fields4":  # None: the vector does not say
            ok = len(f) == 4 and all(w is None or w == g for w, g in zip(want[1], f))
        else:
            _, fields, rua, ruf, psd, t = want
            ok = (f[:7] == fields and f[8] == psd and f[9] == t and
                  (f[10].split(",") if f[10] else []) == rua and
                  (f[11].split(",") if len(f) > 11 and f[11] else []) == ruf)
        if ok:
            passed += 1
        else:
            failed.append((what, want, g))
    if len(got) != len(checks):
        failed.append(("output lines", len(checks), len(got)))
    for what, want, g in failed:
        print("FAIL %s: want %s, got %s" % (what, want, g))
    print("%d passed, %d failed" % (passed, len(failed)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
