"""egress-allow against real nftables, in a network namespace made by the test."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.helpers import rig
from tests.helpers.rig import call
from tests.helpers.rules import rule

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
POLICY = rule("egress-allow", "*", "allow", "@self")
RULESET = """
table inet clawvisor {
    set allow4_alpha { type ipv4_addr; flags timeout; }
    set allow6_alpha { type ipv6_addr; flags timeout; }
    set allowp4_alpha { type ipv4_addr . inet_service; flags timeout; }
    set allowp6_alpha { type ipv6_addr . inet_service; flags timeout; }
}
"""
DNS = {
    "good.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "mixed.example": ["93.184.216.34", "10.1.2.3"],
    "meta.example": ["169.254.169.254"],
    "cgnat.example": ["100.64.1.1"],
    "loop.example": ["127.0.0.1"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "ula.example": ["fd00::1"],
    "linklocal.example": ["fe80::1"],
    "multicast.example": ["224.0.0.1"],
    "zero.example": ["0.0.0.0"],
}


def in_ns(ns: str, *argv: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=True, **kw
    )


def set_elements(ns: str, name: str) -> list:
    out = json.loads(in_ns(ns, "nft", "-j", "list", "set", "inet", "clawvisor", name).stdout)
    for item in out["nftables"]:
        if "set" in item:
            return item["set"].get("elem", [])
    return []


@pytest.fixture(scope="module")
def netns(make_user, make_daemon):
    ns = f"cvt{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(ns, "nft", "-f", "-", input=RULESET)
        alpha, beta = make_user(), make_user()
        root = rig.shared_tmpdir("clawvisor-dns-")
        (root / "dns.json").write_text(json.dumps(DNS))
        (root / "log.jsonl").touch()
        (root / "log.jsonl").chmod(0o666)
        resolver = [
            "/usr/bin/python3",
            str(HELPERS / "resolver_stub.py"),
            str(root / "dns.json"),
            str(root / "log.jsonl"),
            "{host}",
        ]
        settings = (
            '[server]\nsocket_group = "cvt-no-such-group"\n[executors.egress-allow]\n'
            f"argv = {json.dumps(resolver)}\n"
        )
        daemon = make_daemon(
            {"alpha": alpha, "beta": beta},
            {"10.toml": POLICY},
            settings,
            wrapper=["ip", "netns", "exec", ns],
        )
        yield ns, daemon, alpha, beta
        daemon.stop()
        rig.cleanup_root(root)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_answers_are_added_with_their_timeout(netns):
    ns, daemon, alpha, _ = netns
    reply = call(
        daemon.intents, alpha, {"action": "egress-allow", "host": "GOOD.example", "ttl": 600}
    )
    assert reply["status"] == "ok", reply
    assert reply["result"]["addresses"] == DNS["good.example"]
    assert reply["result"]["sets"] == ["allow4_alpha", "allow6_alpha"]
    [v4] = set_elements(ns, "allow4_alpha")
    assert v4["elem"]["val"] == "93.184.216.34" and v4["elem"]["timeout"] == 600
    assert 0 < v4["elem"]["expires"] <= 600
    [v6] = set_elements(ns, "allow6_alpha")
    assert v6["elem"]["val"] == DNS["good.example"][1]


def test_a_port_goes_into_the_address_and_port_sets(netns):
    ns, daemon, alpha, _ = netns
    reply = call(
        daemon.intents,
        alpha,
        {"action": "egress-allow", "host": "good.example", "port": 443, "ttl": 120},
    )
    assert reply["status"] == "ok", reply
    [p4] = set_elements(ns, "allowp4_alpha")
    assert p4["elem"]["val"] == {"concat": ["93.184.216.34", 443]}
    assert p4["elem"]["timeout"] == 120


def _members(ns: str, name: str) -> list:
    """A set's elements without their countdown (`expires` ticks between two reads)."""
    return [
        {**e, "elem": {k: v for k, v in e["elem"].items() if k != "expires"}}
        if isinstance(e, dict) and isinstance(e.get("elem"), dict)
        else e
        for e in set_elements(ns, name)
    ]


@pytest.mark.parametrize(
    "host",
    [
        "mixed.example",
        "meta.example",
        "cgnat.example",
        "loop.example",
        "mapped.example",
        "ula.example",
        "linklocal.example",
        "multicast.example",
        "zero.example",
    ],
)
def test_private_answers_refuse_the_whole_request(netns, host):
    ns, daemon, alpha, _ = netns
    before = {n: _members(ns, n) for n in ("allow4_alpha", "allow6_alpha")}
    reply = call(daemon.intents, alpha, {"action": "egress-allow", "host": host})
    assert reply["error"]["code"] == "executor_failed"
    assert "is not a public address" in reply["error"]["message"]
    assert "nothing was allowed" in reply["error"]["message"]
    assert {n: _members(ns, n) for n in before} == before


def test_a_workload_without_allow_sets_gets_a_clear_failure(netns):
    _, daemon, _, beta = netns
    reply = call(daemon.intents, beta, {"action": "egress-allow", "host": "good.example"})
    assert reply["error"]["code"] == "executor_failed"
    assert "nftables refused" in reply["error"]["message"]


def test_an_unresolvable_name_is_a_failure(netns):
    _, daemon, alpha, _ = netns
    reply = call(daemon.intents, alpha, {"action": "egress-allow", "host": "nx.example"})
    assert reply["error"]["code"] == "executor_failed"
