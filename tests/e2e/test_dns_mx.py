"""`dakiya mx DOMAIN` against a real unbound serving test zones (make_dns).

Covers the DNS half of outbound delivery as the CLI shows it (the same
dns_targets code delivery uses): MX order and shuffling, the implicit MX
(RFC 5321 5.1), null MX (RFC 7505), hosts without addresses, CNAMEs, IPv6
and the family policy, NXDOMAIN, SERVFAIL and a stopped DNS server
(temporary failure, never "no such domain"), and the --json contract.
"""
import json
import subprocess
import time

import pytest

from conftest import DAKIYA

ZONES = {
    "example.test": [
        "example.test. 300 IN MX 20 mx2.example.test.",
        "example.test. 300 IN MX 10 mx1.example.test.",
        "example.test. 300 IN MX 30 mx3.example.test.",
        "mx1.example.test. 300 IN A 127.0.0.2",
        "mx2.example.test. 300 IN A 127.0.0.3",
        "mx3.example.test. 300 IN A 127.0.0.4",
        'example.test. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"',
    ],
    "simple.test": [
        "simple.test. 300 IN MX 10 mx.simple.test.",
        "mx.simple.test. 300 IN A 192.0.2.1",
    ],
    "equal.test": [
        "equal.test. 300 IN MX 10 a.equal.test.",
        "equal.test. 300 IN MX 10 b.equal.test.",
        "equal.test. 300 IN MX 5 first.equal.test.",
        "a.equal.test. 300 IN A 127.0.0.11",
        "b.equal.test. 300 IN A 127.0.0.12",
        "first.equal.test. 300 IN A 127.0.0.10",
    ],
    "aonly.test": [
        "aonly.test. 300 IN A 127.0.0.20",
        "aonly.test. 300 IN AAAA 2001:db8::20",
    ],
    "null.test": ["null.test. 300 IN MX 0 ."],
    "noaddr.test": [
        "noaddr.test. 300 IN MX 10 gone.noaddr.test.",
        "noaddr.test. 300 IN MX 20 txtonly.noaddr.test.",
        "noaddr.test. 300 IN MX 30 ok.noaddr.test.",
        'txtonly.noaddr.test. 300 IN TXT "no address here"',
        "ok.noaddr.test. 300 IN A 127.0.0.30",
    ],
    "deadend.test": [
        "deadend.test. 300 IN MX 10 gone.deadend.test.",
        "deadend.test. 300 IN MX 20 txtonly.deadend.test.",
        'txtonly.deadend.test. 300 IN TXT "no address here"',
    ],
    "nothing.test": ['nothing.test. 300 IN TXT "exists, but no MX and no address"'],
    "cname.test": [
        "cname.test. 300 IN MX 10 alias.cname.test.",
        "alias.cname.test. 300 IN CNAME real.cname.test.",
        "real.cname.test. 300 IN A 127.0.0.40",
    ],
    "six.test": [
        "six.test. 300 IN MX 10 mx.six.test.",
        "six.test. 300 IN MX 20 v6only.six.test.",
        "mx.six.test. 300 IN A 127.0.0.50",
        "mx.six.test. 300 IN A 127.0.0.51",
        "mx.six.test. 300 IN AAAA 2001:db8::50",
        "mx.six.test. 300 IN AAAA 2001:db8::51",
        "v6only.six.test. 300 IN AAAA ::1",
    ],
    "half.test": [
        "half.test. 300 IN MX 10 mx.broken.test.",
        "half.test. 300 IN MX 20 mx.half.test.",
        "mx.half.test. 300 IN A 127.0.0.60",
    ],
    "allbroken.test": ["allbroken.test. 300 IN MX 10 mx.broken.test."],
}


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    """One unbound for the module (the read-only tests); tests that stop or
    change DNS use make_dns for their own."""
    from conftest import DnsServer
    d = DnsServer(tmp_path_factory.mktemp("dns"), ZONES, servfail=["broken.test"]).start()
    yield d
    d.stop()


def mx(resolver, *args, config=None, timeout=60):
    cmd = [DAKIYA]
    if config is not None:
        cmd += ["-c", str(config)]
    cmd += ["mx", *args]
    if resolver is not None:
        cmd += ["--resolver", resolver]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def mx_json(dns, domain, *args):
    r = mx(dns.addr, domain, "--json", *args)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" or "null MX" in r.stderr, r.stderr
    return json.loads(r.stdout)


def lines(r):
    return [l.split() for l in r.stdout.splitlines()]


# ---------------------------------------------------------------- order


def test_sorted_by_preference(dns):
    r = mx(dns.addr, "example.test")
    assert r.returncode == 0, r.stderr
    got = lines(r)
    assert [(l[0], l[1], l[2]) for l in got] == [
        ("10", "mx1.example.test", "127.0.0.2"),
        ("20", "mx2.example.test", "127.0.0.3"),
        ("30", "mx3.example.test", "127.0.0.4"),
    ]
    assert r.stderr == ""


def test_json_contract_shape(dns):
    # exactly the contract's shape when there is nothing more to say
    assert mx_json(dns, "simple.test") == [
        {"preference": 10, "host": "mx.simple.test", "addresses": ["192.0.2.1"]}]
    # a trailing dot is accepted
    assert mx_json(dns, "simple.test.") == mx_json(dns, "simple.test")


def test_equal_preferences_both_present_in_random_order(dns):
    orders = set()
    for _ in range(24):
        got = mx_json(dns, "equal.test")
        assert [h["preference"] for h in got] == [5, 10, 10]
        assert got[0]["host"] == "first.equal.test"
        assert sorted(h["host"] for h in got[1:]) == ["a.equal.test", "b.equal.test"]
        orders.add(tuple(h["host"] for h in got[1:]))
        if len(orders) == 2:
            break
    assert len(orders) == 2, "equal preferences always came in the same order: %r" % orders


# ---------------------------------------------------------------- RFC 5321 5.1, RFC 7505


def test_implicit_mx_from_address_records(dns):
    got = mx_json(dns, "aonly.test")
    assert got == [{"preference": 0, "host": "aonly.test",
                    "addresses": ["127.0.0.20", "2001:db8::20"], "implicit": True}]
    r = mx(dns.addr, "aonly.test")
    assert r.returncode == 0
    assert r.stdout.startswith("0 aonly.test 127.0.0.20 2001:db8::20 (implicit MX")


def test_null_mx(dns):
    r = mx(dns.addr, "null.test")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "null.test accepts no mail (null MX, RFC 7505)\n"
    r = mx(dns.addr, "null.test", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout) == []
    assert "null MX" in r.stderr


def test_mx_host_without_addresses_is_skipped(dns):
    got = mx_json(dns, "noaddr.test")
    assert [h["host"] for h in got] == ["gone.noaddr.test", "txtonly.noaddr.test",
                                        "ok.noaddr.test"]
    assert got[0]["addresses"] == [] and "does not exist" in got[0]["error"]
    assert got[1]["addresses"] == [] and "no A/AAAA record" in got[1]["error"]
    assert got[2] == {"preference": 30, "host": "ok.noaddr.test", "addresses": ["127.0.0.30"]}
    r = mx(dns.addr, "noaddr.test")
    assert "(skipped: gone.noaddr.test does not exist (NXDOMAIN))" in r.stdout


def test_no_mx_host_has_an_address_is_permanent(dns):
    r = mx(dns.addr, "deadend.test")
    assert r.returncode == 1
    assert "no MX host of deadend.test has an address" in r.stderr
    assert "temporary" not in r.stderr
    # the hosts are still shown, with the reasons
    assert "gone.deadend.test" in r.stdout and "skipped" in r.stdout
    r = mx(dns.addr, "deadend.test", "--json")
    assert r.returncode == 1
    assert [h["addresses"] for h in json.loads(r.stdout)] == [[], []]


def test_no_mx_and_no_address(dns):
    r = mx(dns.addr, "nothing.test")
    assert r.returncode == 1
    assert "nothing.test has no MX record and no A/AAAA record" in r.stderr
    assert "temporary" not in r.stderr
    # the implicit MX is shown, skipped
    assert r.stdout.startswith("0 nothing.test (implicit MX")
    assert "skipped" in r.stdout


def test_mx_pointing_to_a_cname(dns):
    got = mx_json(dns, "cname.test")
    assert got == [{"preference": 10, "host": "alias.cname.test", "addresses": ["127.0.0.40"],
                    "cname": "real.cname.test"}]
    r = mx(dns.addr, "cname.test")
    assert "(alias of real.cname.test)" in r.stdout


def test_nxdomain(dns):
    r = mx(dns.addr, "nosuchdomain.test")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith("dakiya: no such domain: nosuchdomain.test does not exist")
    assert "temporary" not in r.stderr


# ---------------------------------------------------------------- families


V4 = {"127.0.0.50", "127.0.0.51"}
V6 = {"2001:db8::50", "2001:db8::51"}


def fams(addresses):
    """"4" or "6" for each address, in order (within a family the order is
    the DNS server's, which rotates records)."""
    return "".join("6" if ":" in a else "4" for a in addresses)


def test_ipv6_and_family_policies(dns):
    def addrs(fam):
        got = mx_json(dns, "six.test", "--family", fam)
        assert [h["host"] for h in got] == ["mx.six.test", "v6only.six.test"]
        return got[0]["addresses"], got[1]

    for fam, want in [("any", "4646"), ("prefer-ipv4", "4466"), ("prefer-ipv6", "6644"),
                      ("ipv6", "66"), ("ipv4", "44")]:
        a, v6only = addrs(fam)
        assert fams(a) == want, (fam, a)
        assert set(a) == (V4 if "4" in want else set()) | (V6 if "6" in want else set())
        if fam == "ipv4":
            assert v6only["addresses"] == [] and "no A record" in v6only["error"]
        else:
            assert v6only["addresses"] == ["::1"]


def test_family_and_resolver_from_config(dns, tmp_path):
    conf = tmp_path / "dakiya.conf"
    conf.write_text('hostname = "mail.example.test"\ndata_dir = "%s"\nresolver = "%s"\n'
                    'delivery {\n  family = "ipv6"\n}\n' % (tmp_path / "data", dns.addr))
    r = mx(None, "six.test", "--json", config=conf)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)[0]["addresses"]) == V6
    # options win over the file
    r = mx(None, "six.test", "--json", "--family", "ipv4", config=conf)
    assert set(json.loads(r.stdout)[0]["addresses"]) == V4


# ---------------------------------------------------------------- temporary failures


def test_servfail_is_temporary(dns):
    r = mx(dns.addr, "broken.test")
    assert r.returncode == 1
    assert "temporary DNS failure for broken.test" in r.stderr
    assert "SERVFAIL" in r.stderr
    assert "does not exist" not in r.stderr
    # the only MX host cannot be looked up: temporary, not "no address"
    r = mx(dns.addr, "allbroken.test")
    assert r.returncode == 1
    assert "temporary DNS failure for allbroken.test" in r.stderr


def test_servfail_for_one_host_skips_it(dns):
    got = mx_json(dns, "half.test")
    assert got[0]["host"] == "mx.broken.test" and got[0]["addresses"] == []
    assert "SERVFAIL" in got[0]["error"]
    assert got[1] == {"preference": 20, "host": "mx.half.test", "addresses": ["127.0.0.60"]}


def test_dns_server_stopped_then_back(make_dns):
    d = make_dns({"simple.test": ZONES["simple.test"]})
    assert mx(d.addr, "simple.test").returncode == 0
    d.stop()
    t0 = time.time()
    r = mx(d.addr, "simple.test", "--timeout", "2")
    took = time.time() - t0
    assert r.returncode == 1
    assert "temporary DNS failure for simple.test" in r.stderr
    assert "timeout" in r.stderr or "could not be reached" in r.stderr
    assert "try again" in r.stderr
    assert took < 10, "took %.1fs with --timeout 2" % took
    d.start()
    r = mx(d.addr, "simple.test")
    assert r.returncode == 0, r.stderr
    assert lines(r) == [["10", "mx.simple.test", "192.0.2.1"]]


def test_set_records_restarts_with_new_data(make_dns):
    d = make_dns({"simple.test": ZONES["simple.test"]})
    d.set_records({"simple.test": ["simple.test. 300 IN MX 0 ."]})
    assert mx(d.addr, "simple.test").stdout.startswith("simple.test accepts no mail")
    d.add_records("other.test", ["other.test. 300 IN A 127.0.0.70"])
    assert mx_json(d, "other.test")[0]["addresses"] == ["127.0.0.70"]


# ---------------------------------------------------------------- the command line


def test_usage_errors(dns):
    r = subprocess.run([DAKIYA, "mx", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "dakiya mx" in r.stdout and "null MX" in r.stdout
    r = subprocess.run([DAKIYA, "help", "mx"], capture_output=True, text=True)
    assert r.returncode == 0 and "SYNOPSIS" in r.stdout
    for args, words in [
        ([], "needs a domain"),
        (["bad..name"], "not a valid domain name"),
        (["a.test", "b.test"], "takes one domain"),
        (["a.test", "--family", "ipv5"], "--family"),
        (["a.test", "--timeout", "0"], "--timeout"),
        (["a.test", "--resolver", "not-an-ip"], "resolver"),
        (["a.test", "--resolver", "system,127.0.0.1"], "resolver"),
        (["a.test", "--bogus"], "unknown option"),
    ]:
        r = subprocess.run([DAKIYA, "mx", *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("dakiya: ") and words in r.stderr, (args, r.stderr)
        assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr


def test_several_forwarders(dns):
    # a list of forwarders (commas or spaces) is accepted; both are alive here
    r = mx("%s, %s" % (dns.addr, dns.addr), "simple.test")
    assert r.returncode == 0, r.stderr
    assert lines(r) == [["10", "mx.simple.test", "192.0.2.1"]]
