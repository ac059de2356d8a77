#!/usr/bin/python3
"""The RFC 7208 SPF test suite (openspf, as shipped in ../shared/conformance)
against dakiya's evaluator: each scenario's zone data becomes canned DNS
answers for tests/unit/spf_driver, following the reference driver's rules
(pyspf testspf.py, summed up in the conformance README): SPF records are
also served as TXT unless the name has TXT data of its own, "TXT: NONE"
serves nothing, a list is one record of several strings, TIMEOUT makes a
type time out unless records of it come before the marker, CNAMEs are
followed, missing names are NXDOMAIN and missing types NODATA.

    spf_suite.py DRIVER SUITE.yml [-v]     prints "N passed, M failed"
"""
import subprocess
import sys

import yaml

TYPES = ("A", "AAAA", "MX", "TXT", "PTR")


def txt_of(v):
    if isinstance(v, list):
        return "".join(str(x) for x in v)
    return str(v)


def answer(zone, name, qtype, depth=0):
    """(status, [records]) for name/qtype by the harness rules."""
    entries = zone.get(name.lower())
    if entries is None:
        return "nxdomain", []
    if depth < 8:
        for e in entries:
            if isinstance(e, dict) and "CNAME" in e:
                return answer(zone, str(e["CNAME"]), qtype, depth + 1)
    has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
    recs = []
    for e in entries:
        if e == "TIMEOUT":
            if recs:
                return "ok", recs
            return "tempfail", []
        if not isinstance(e, dict):
            continue
        (k, v), = e.items()
        if qtype == "TXT":
            if k == "TXT" and v != "NONE":
                recs.append(txt_of(v))
            elif k == "SPF" and not has_txt:
                recs.append(txt_of(v))
        elif k == qtype:
            if qtype == "MX":
                recs.append("%d:%s" % (int(v[0]), v[1]))
            else:
                recs.append(str(v))
    return ("ok", recs) if recs else ("nodata", [])


def encode(qtype, r):
    return r.encode().hex() if qtype == "TXT" else r


def main():
    driver, suite = sys.argv[1], sys.argv[2]
    verbose = "-v" in sys.argv
    docs = [d for d in yaml.safe_load_all(open(suite)) if d]
    lines, expect = [], {}
    for doc in docs:
        zone = {}
        for name, entries in (doc.get("zonedata") or {}).items():
            zone[str(name).lower()] = entries or []
        lines.append("R")
        for name in zone:
            for qt in TYPES:
                st, recs = answer(zone, name, qt)
                lines.append("\t".join(["Q", name, qt, st] + [encode(qt, r) for r in recs]))
        for tid, t in doc["tests"].items():
            res = t["result"]
            expect[tid] = (res if isinstance(res, list) else [res], t.get("explanation"),
                           doc["description"])
            # "-" for an empty string: empty fields would vanish between tabs
            lines.append("\t".join(["T", tid, str(t["host"]),
                                    str(t.get("helo") or "").encode().hex() or "-",
                                    str(t.get("mailfrom") or "").encode().hex() or "-"]))
    out = subprocess.run([driver], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        print(out.stderr)
        sys.exit("driver failed with %d" % out.returncode)
    got = {}
    for line in out.stdout.splitlines():
        f = line.split("\t")
        got[f[0]] = f
    passed, failed = 0, []
    for tid, (results, exp, scen) in expect.items():
        g = got.get(tid)
        ok = g is not None and g[1] in results
        if ok and exp is not None:
            ours = None if g[2] == "-" else bytes.fromhex(g[2]).decode(errors="replace").rstrip("\0")
            ok = (ours is None) if exp == "DEFAULT" else ours == exp
        if ok:
            passed += 1
        else:
            failed.append((scen, tid, results, exp, g))
    for scen, tid, results, exp, g in failed:
        print("FAIL %s / %s: want %s%s, got %s" % (
            scen, tid, "|".join(results), "" if exp is None else " exp=%r" % exp,
            g[1:] if g else None))
    if verbose:
        print(out.stdout)
    print("%d passed, %d failed" % (passed, len(failed)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
