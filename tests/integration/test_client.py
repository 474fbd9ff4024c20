"""supervisor.wire.client against a real daemon: typed results and errors, pipelining, timeouts,
a daemon that goes away mid-stream, and an import that needs nothing the daemon needs."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executors import status
from executors.capabilities import Result as CapabilitiesResult
from supervisor.wire.client import AsyncClient, Client
from supervisor.wire.errors import (
    ClientTimeout,
    ConnectionLost,
    InvalidParams,
    PolicyDenied,
    Refused,
    Unavailable,
    UnknownAction,
)
from tests.helpers import rig
from tests.helpers.rules import rule, starts

POLICY = (
    rule("status", "gw")
    + rule("capabilities", "gw")
    + rule("open-url", "gw", "deny")
    + rule("install-app", "gw", "ask", timeout=60)
)
N = 10_000


@pytest.fixture(scope="module")
def gw(make_user):
    return make_user()


@pytest.fixture(scope="module")
def daemon(make_daemon, gw, journal):
    return make_daemon({"gw": gw}, {"10.toml": POLICY})


def client_as(user, path, timeout: float | None = 30.0) -> Client:
    with rig.as_euid(user.uid, user.gid):
        return Client(path, timeout=timeout)


async def async_client_as(user, path, timeout: float | None = 30.0) -> AsyncClient:
    # SO_PEERCRED is taken at connect time; nothing else runs while this awaits.
    with rig.as_euid(user.uid, user.gid):
        return await AsyncClient.connect(path, timeout=timeout)


def test_a_result_comes_back_typed(daemon, gw):
    with client_as(gw, daemon.intents) as c:
        result = c.request("status")
        assert isinstance(result, status.Result)
        assert result.workloads == ["gw"]
        caps = c.request(status.Params())  # a Struct intent works the same
        assert isinstance(caps, status.Result)


def test_capabilities_lists_what_this_workload_may_do(daemon, gw):
    with client_as(gw, daemon.intents) as c:
        result = c.request("capabilities")
    assert isinstance(result, CapabilitiesResult)
    assert result.workload == "gw"
    assert [a.action for a in result.actions] == ["status", "install-app", "capabilities"]
    [ask] = next(a for a in result.actions if a.action == "install-app").rules
    assert (
        ask.decision == "ask"
        and ask.timeout == 60
        and ask.rule.endswith(f"10.toml:{starts(POLICY, 4)}")
    )


def test_each_error_code_raises_its_own_class_with_decision_and_rule(daemon, gw):
    with client_as(gw, daemon.intents) as c:
        with pytest.raises(PolicyDenied) as denied:
            c.request("open-url", url="https://example.com/")
        assert isinstance(denied.value, Refused)
        assert denied.value.decision == "deny"
        assert denied.value.rule is not None and denied.value.rule.endswith(
            f"10.toml:{starts(POLICY, 3)}"
        )
        with pytest.raises(PolicyDenied) as default:
            c.request("search", query="x")
        assert default.value.rule == "default"
        with pytest.raises(InvalidParams) as invalid:
            c.request("open-url", url="ftp://example.com/")
        assert "url" in invalid.value.message
        with pytest.raises(UnknownAction):
            c.request("rm-rf")


def test_ten_thousand_pipelined_requests_on_one_connection_each_reply_matched(daemon, gw):
    with client_as(gw, daemon.intents) as c:
        ids = [c.submit("status", f"p-{i}") for i in range(N)]
        # Collect out of order: replies to other ids are kept until asked for.
        order = ids[1::2] + ids[0::2]
        replies = {rid: c.reply(rid) for rid in order}
    assert len(replies) == N
    assert all(r.id == rid and r.status == "ok" for rid, r in replies.items())
    assert all(isinstance(r.result, status.Result) for r in replies.values())


def test_ten_thousand_concurrent_requests_on_one_asyncio_connection(daemon, gw):
    async def run() -> list:
        async with await async_client_as(gw, daemon.intents) as client:
            return await asyncio.gather(
                *(client.reply("status", request_id=f"q-{i}") for i in range(N))
            )

    replies = asyncio.run(run())
    assert [r.id for r in replies] == [f"q-{i}" for i in range(N)]
    assert all(r.status == "ok" for r in replies)


def test_the_clients_own_timeout_ends_a_wait_for_a_human(daemon, gw):
    with client_as(gw, daemon.intents, timeout=1.0) as c:
        start = time.monotonic()
        with pytest.raises(ClientTimeout):
            c.request("install-app", package="jq")
        assert time.monotonic() - start < 10


def test_a_daemon_restart_mid_stream_is_a_connection_error_not_a_hang(make_daemon, gw):
    d = make_daemon({"gw": gw}, {"10.toml": POLICY})
    c = client_as(gw, d.intents, timeout=20)
    ids = [c.submit("status") for _ in range(N)]
    for rid in ids[:100]:
        assert c.reply(rid).status == "ok"
    d.signal(signal.SIGKILL)
    d.proc.wait(10)
    with pytest.raises(ConnectionLost) as lost:
        for rid in ids[100:]:
            c.reply(rid)
    assert lost.value.unanswered > 0
    assert "got no reply" in str(lost.value)
    # The connection stays lost; a new one reaches the restarted daemon.
    with pytest.raises(ConnectionLost):
        c.request("status")
    c.close()
    d.restart()
    with client_as(gw, d.intents) as again:
        assert isinstance(again.request("status"), status.Result)


def test_an_asyncio_client_gets_unavailable_for_every_waiting_request_then_connection_lost(
    make_daemon, gw
):
    d = make_daemon({"gw": gw}, {"10.toml": POLICY})

    async def run() -> tuple[list, AsyncClient]:
        client = await async_client_as(gw, d.intents, timeout=20)
        waiting = [
            asyncio.ensure_future(client.request("install-app", package=f"p{i}")) for i in range(5)
        ]
        await asyncio.sleep(0.5)  # all five now wait for a human
        await asyncio.to_thread(d.restart)  # SIGTERM, then a new daemon on the same socket
        return await asyncio.gather(*waiting, return_exceptions=True), client

    outcomes, client = asyncio.run(asyncio.wait_for(run(), 60))
    # The stopping daemon answers each waiting ask (`unavailable`: nobody will answer it
    # now) before it closes the connection; none is left to learn of it by a lost line.
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    assert client.lost


BLOCKED = [
    "bcc",
    "nftables",
    "systemd",
    "pyroute2",
    "pyinotify",
    "jeepney",
    "httpx",
    "detect_secrets",
    "mcp",
]
IMPORT_ONLY_CLIENT = """
import importlib.abc, json, sys
BLOCKED = set(json.loads(sys.argv[1]))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"the client must not need {name}")
sys.meta_path.insert(0, Block())
from supervisor.wire.client import Client
with Client(sys.argv[2]) as c:
    result = c.request("status")
print(json.dumps({"version": result.version,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
"""


def test_the_client_imports_nothing_the_daemon_needs(daemon, gw):
    out = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_ONLY_CLIENT, json.dumps(BLOCKED), str(daemon.intents)],
        capture_output=True,
        text=True,
        timeout=60,
        **rig.as_user(gw),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["loaded"] == []


def test_the_readmes_python_example_runs_against_a_real_daemon(daemon, gw):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [code] = [
        b.split("```")[0] for b in readme.split("```python\n")[1:] if "supervisor.wire.client" in b
    ]
    path = str(daemon.intents)
    code = code.replace("/run/clawvisor/intents.sock", path).replace(
        "AsyncClient.connect()", f"AsyncClient.connect({path!r})"
    )
    code += "\nasyncio.run(gateway())\nprint(len(results))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, **rig.as_user(gw)
    )
    assert out.returncode == 0, out.stderr
    uptime, refused, count = out.stdout.splitlines()
    assert float(uptime) > 0 and count == "1000"
    assert refused.startswith(f"policy_denied policy.d/10.toml:{starts(POLICY, 3)}"), refused
