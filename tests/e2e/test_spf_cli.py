"""`dakiya spf check` against a real unbound serving SPF records (issue 5):
the evaluator over the real asynchronous resolver, every result word, the
explanation, the HELO identity, the limits, DNS trouble (temperror, never
fail), the --json contract and usage errors.
"""
import json
import subprocess

import pytest

from conftest import DAKIYA

ZONES = {
    "spf.test": [
        'spf.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a:web.spf.test mx '
        'include:partner.test exp=why.spf.test -all"',
        'why.spf.test. 300 IN TXT "%{i} is not a server of %{d}"',
        "web.spf.test. 300 IN A 198.51.100.7",
        "spf.test. 300 IN MX 10 mx.spf.test.",
        "mx.spf.test. 300 IN A 203.0.113.25",
    ],
    "partner.test": ['partner.test. 300 IN TXT "v=spf1 ip4:198.18.0.0/15 -all"'],
    "soft.test": ['soft.test. 300 IN TXT "v=spf1 ~all"'],
    "neutral.test": ['neutral.test. 300 IN TXT "v=spf1 ?all"'],
    "nospf.test": ['nospf.test. 300 IN TXT "google-site-verification=abc"'],
    "two.test": ['two.test. 300 IN TXT "v=spf1 -all"', 'two.test. 300 IN TXT "v=spf1 +all"'],
    "broken.test": ['broken.test. 300 IN TXT "v=spf1 ip4:300.1.1.1 -all"'],
    "loop.test": ['loop.test. 300 IN TXT "v=spf1 include:loop.test -all"'],
    "helo.test": ['mail.helo.test. 300 IN TXT "v=spf1 a -all"',
                  "mail.helo.test. 300 IN A 192.0.2.77"],
    "tmp.test": ['tmp.test. 300 IN TXT "v=spf1 include:down.test -all"'],
}


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    from conftest import DnsServer
    d = DnsServer(tmp_path_factory.mktemp("spfdns"), ZONES, servfail=["down.test"]).start()
    yield d
    d.stop()


def spf(dns, *args):
    return subprocess.run([DAKIYA, "spf", "check", "--resolver", dns.addr, "--timeout", "3",
                           *args], capture_output=True, text=True, timeout=60)


def word(dns, ip, sender, helo="client.test"):
    r = spf(dns, "--ip", ip, "--helo", helo, "--mail-from", sender)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[0], r.stdout


def test_each_mechanism_and_result(dns):
    assert word(dns, "192.0.2.9", "a@spf.test")[0] == "pass"            # ip4
    assert word(dns, "2001:db8::1", "a@spf.test")[0] == "pass"          # ip6
    assert word(dns, "198.51.100.7", "a@spf.test")[0] == "pass"         # a:
    assert word(dns, "203.0.113.25", "a@spf.test")[0] == "pass"         # mx
    assert word(dns, "198.19.1.1", "a@spf.test")[0] == "pass"           # include:
    assert word(dns, "192.0.2.9", "a@soft.test")[0] == "softfail"
    assert word(dns, "192.0.2.9", "a@neutral.test")[0] == "neutral"
    assert word(dns, "192.0.2.9", "a@nospf.test")[0] == "none"
    assert word(dns, "192.0.2.9", "a@nosuchdomain.test")[0] == "none"
    assert word(dns, "192.0.2.9", "a@two.test")[0] == "permerror"
    assert word(dns, "192.0.2.9", "a@broken.test")[0] == "permerror"
    res, out = word(dns, "192.0.2.9", "a@loop.test")
    assert res == "permerror", out  # the include loop hits the limits


def test_fail_carries_the_expanded_explanation(dns):
    res, out = word(dns, "203.0.113.99", "a@spf.test")
    assert res == "fail" and "matched -all in spf.test" in out, out
    assert "explanation: 203.0.113.99 is not a server of spf.test" in out, out


def test_dns_trouble_is_temperror_never_fail(dns):
    res, out = word(dns, "192.0.2.9", "a@tmp.test")
    assert res == "temperror" and "down.test" in out, out


def test_helo_identity_when_mail_from_is_empty(dns):
    r = spf(dns, "--ip", "192.0.2.77", "--helo", "mail.helo.test", "--json")
    got = json.loads(r.stdout)
    assert got["result"] == "pass" and got["identity"] == "helo", got
    assert got["domain"] == "mail.helo.test"
    r = spf(dns, "--ip", "192.0.2.78", "--helo", "mail.helo.test", "--mail-from", "")
    assert r.stdout.startswith("fail "), r.stdout


def test_json_contract(dns):
    r = spf(dns, "--ip", "203.0.113.99", "--helo", "x.test", "--mail-from", "a@spf.test", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["result"] == "fail"
    assert got["explanation"] == "203.0.113.99 is not a server of spf.test"
    assert got["identity"] == "mailfrom" and got["domain"] == "spf.test"
    assert got["lookups"] >= 4  # TXT, A of web, MX, A of mx, TXT of partner, exp


@pytest.mark.parametrize("args,msg", [
    ((), "needs the verb check"),
    (("check",), "needs --ip"),
    (("check", "--ip", "300.1.2.3", "--helo", "h.test"), "not an IPv4 or IPv6 address"),
    (("check", "--ip", "192.0.2.1"), "give --mail-from, or --helo"),
    (("check", "--ip", "192.0.2.1", "--mail-from", "<a@b.test>"), "without the angle brackets"),
    (("check", "--ip", "192.0.2.1", "--helo", "h.test", "--timeout", "0"), "--timeout"),
    (("check", "--bogus"), "bogus"),
])
def test_usage_errors(args, msg):
    r = subprocess.run([DAKIYA, "spf", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and msg in r.stderr, r.stderr


def test_help():
    r = subprocess.run([DAKIYA, "spf", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("NAME\n    dakiya spf")
    assert "spf check --ip" in subprocess.run([DAKIYA, "--help"], capture_output=True,
                                               text=True).stdout
