"""A real OpenClaw gateway (the pinned `openclaw` npm package on Node 24, `make openclaw`)
run as a workload user against a real daemon, its model a scripted OpenAI-compatible
server: through clawvisor's native plugin and through the MCP bridge, each set up by
`clawvisor openclaw setup`. Allow, deny, an approved ask, an abandoned ask, a reload and
OpenClaw's own `exec` are each one agent turn, `openclaw agent exec`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.helpers import rig
from tests.helpers.model_server import SEPARATOR, echo_results, tool_call
from tests.helpers.openclaw import Gateway, daemon_settings, gateway, installed
from tests.helpers.rules import rule, starts
from tests.helpers.subscriber import Subscriber

POLICY = (
    rule("capabilities", "oc")
    + rule("notify", "oc", "deny", params={"message": '{ prefix = "secret" }'})
    + rule("notify", "oc", "ask", params={"message": '{ prefix = "ask" }'}, timeout=300)
    + rule("notify", "oc")
)
DENY_LINE = starts(POLICY, 2)
RELOADED = POLICY + rule("status", "oc")
#: The turn that abandons an ask: OpenClaw gives up on the whole turn after this (s).
ABANDON_AFTER = 20


@contextmanager
def set_up(make_user, make_daemon, via: str) -> Iterator[Gateway]:
    """A daemon with workload `oc` and its OpenClaw, reaching clawvisor `via` plugin or mcp."""
    if not installed():
        pytest.fail("the pinned OpenClaw is not installed: run `make openclaw`")
    homes = rig.shared_tmpdir("clawvisor-ocg-")
    user = make_user()
    daemon = make_daemon({"oc": user}, {"10.toml": POLICY}, settings=daemon_settings(homes))
    try:
        with gateway(via, user, daemon, homes) as g:
            yield g
    finally:
        shutil.rmtree(homes, ignore_errors=True)


@pytest.fixture(scope="module", params=["plugin", "mcp"])
def gw(request, make_user, make_daemon, journal):
    with set_up(make_user, make_daemon, request.param) as g:
        yield g


def test_setup_leaves_no_way_around_clawvisor(gw):
    check = subprocess.run(
        [str(rig.CLAWVISOR), "openclaw", "setup", "--check", "--via", gw.via,
         "--config-dir", str(gw.daemon.config_dir), "--state-dir", str(gw.daemon.root / "state")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.fixture(scope="module")
def basic(gw):
    """One turn: an allowed call, a denied one, and OpenClaw's own `exec`."""
    marker = gw.home / "exec-ran"
    gw.model.scenarios[f"basic-{gw.via}"] = [
        gw.call("notify", message="hello from the agent"),
        gw.call("notify", message="secret plans"),
        tool_call("exec", command=f"touch {marker}"),
        echo_results(),
    ]
    out = gw.turn(f"basic-{gw.via}")
    return out, marker


def results(out: dict[str, Any]) -> list[str]:
    final = str(out.get("final") or "")
    assert final.startswith("RESULTS: "), out
    return final.removeprefix("RESULTS: ").split(SEPARATOR)


def test_the_agent_is_offered_clawvisors_tools_and_not_exec(gw, basic):
    offered = gw.offered(f"basic-{gw.via}")
    assert "exec" not in offered and "process" not in offered and "write" not in offered
    if gw.via == "plugin":
        assert gw.tool("notify") in offered
        assert gw.tool("status") not in offered  # no rule lets this workload use it
        assert f"[rule policy.d/10.toml:{DENY_LINE}]" in offered[gw.tool("notify")]
    else:
        assert "tool_search" in offered  # OpenClaw defers MCP tools behind its Tool Search


def test_an_allowed_call_reaches_the_agent_with_its_result(gw, basic):
    out, _ = basic
    allowed = results(out)[0]
    assert '"action": "notify"' in allowed.replace('":"', '": "') or "notify" in allowed
    assert "refused" not in allowed and "not found" not in allowed.lower()


def test_a_denied_call_tells_the_agent_the_rule_and_not_to_retry(gw, basic):
    out, _ = basic
    denied = results(out)[1]
    assert f"policy.d/10.toml:{DENY_LINE}" in denied and "policy_denied" in denied
    assert "will not change that" in denied


def test_openclaws_own_exec_does_not_run(gw, basic):
    out, marker = basic
    assert "not found" in results(out)[2].lower() or "blocked" in results(out)[2]
    assert not marker.exists()


def test_an_ask_approved_through_the_control_socket_runs_and_the_agent_gets_the_result(gw):
    scenario = f"ask-{gw.via}"
    gw.model.scenarios[scenario] = [gw.call("notify", message="ask: may I?"), echo_results()]
    proc = gw.turn_process(scenario)
    try:
        p = gw.pending("ask: may I?")
        verdict = gw.control("verdict", request=p["id"], digest=p["digest"], allow=True)
        assert verdict["status"] == "ok", verdict
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    [got] = results(json.loads(out))
    assert "refused" not in got and "notify" in got


def test_an_ask_the_agent_abandons_is_withdrawn_and_approving_it_runs_nothing(gw):
    scenario = f"abandon-{gw.via}"
    gw.model.scenarios[scenario] = [gw.call("notify", message="ask: then leave"), echo_results()]
    agent = Subscriber(gw.daemon.control)
    try:
        proc = gw.turn_process(scenario, turn_timeout=ABANDON_AFTER)
        p = gw.pending("ask: then leave")
        proc.communicate(timeout=ABANDON_AFTER + 90)
        gone = agent.wait("withdrawn", timeout=30)
        assert gone["id"] == p["id"] and gone["reason"] == "withdrawn"
        late = gw.control("verdict", request=p["id"], digest=p["digest"], allow=True)
        assert late["status"] == "error", late
        assert not [q for q in gw.control("pending")["result"]["pending"] if q["id"] == p["id"]]
    finally:
        agent.close()


def test_a_reload_that_allows_an_action_shows_its_tool_at_the_next_turn(gw, basic):
    (gw.daemon.config_dir / "policy.d" / "10.toml").write_text(RELOADED)
    try:
        reloaded = gw.control("reload")
        assert reloaded["status"] == "ok", reloaded
        scenario = f"reload-{gw.via}"
        gw.model.scenarios[scenario] = [gw.call("status"), echo_results()]
        out = gw.turn(scenario)
        if gw.via == "plugin":
            assert gw.tool("status") in gw.offered(scenario)
        [got] = results(out)
        assert "refused" not in got and "policy" in got and "not found" not in got.lower()
    finally:
        (gw.daemon.config_dir / "policy.d" / "10.toml").write_text(POLICY)
        gw.control("reload")


def test_the_agent_finds_clawvisors_tool_for_a_task(gw):
    """Under OpenClaw's Tool Search (on by default) OpenClaw's own tools win generic names:
    the plugin's tools are offered as themselves, the bridge's are found by a search."""
    scenario = f"find-{gw.via}"
    gw.model.scenarios[scenario] = [
        tool_call("tool_search", query="clawvisor notify the operator"),
        echo_results(),
    ]
    [found] = results(gw.turn(scenario))
    if gw.via == "plugin":
        assert gw.tool("notify") in gw.offered(scenario)
    else:
        assert re.search(r"clawvisor__notify", found), found


@pytest.fixture(scope="module")
def loosened(make_user, make_daemon, journal):
    """A plugin set-up whose user then turned OpenClaw's coding tools back on."""
    with set_up(make_user, make_daemon, "plugin") as g:
        cfg = g.home / ".openclaw" / "openclaw.json"
        loose = json.loads(cfg.read_text())
        loose["tools"] = {"profile": "coding"}
        cfg.write_text(json.dumps(loose))
        yield g


def test_check_reports_a_tool_profile_turned_back_on(loosened):
    check = subprocess.run(
        [str(rig.CLAWVISOR), "openclaw", "setup", "--check", "--via", "plugin",
         "--config-dir", str(loosened.daemon.config_dir),
         "--state-dir", str(loosened.daemon.root / "state")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 1 and "coding" in check.stdout, check.stdout


def test_block_host_tools_blocks_exec_where_openclaw_runs_the_plugins_hooks(loosened):
    marker = loosened.home / "exec-ran"
    loosened.model.scenarios["blocked"] = [
        tool_call("exec", command=f"touch {marker}"),
        echo_results(),
    ]
    [got] = results({"final": loosened.local_turn("blocked")})
    assert "is one of OpenClaw's own tools" in got and "blocked" in got
    assert not marker.exists()


def test_block_host_tools_blocks_tool_call_whatever_it_names(loosened):
    # OpenClaw's tool_call reaches its whole catalog (by id, toolId or name): never let through.
    marker = loosened.home / "tool-call-ran"
    args = {"id": "clawvisor_notify", "name": "exec", "args": {"command": f"touch {marker}"}}
    loosened.model.scenarios["via-tool-call"] = [
        {"tool_calls": [{"name": "tool_call", "arguments": args}]},
        echo_results(),
    ]
    [got] = results({"final": loosened.local_turn("via-tool-call")})
    assert "tool_call is one of OpenClaw's own tools" in got, got
    assert not marker.exists()


def test_a_running_gateway_that_gives_up_on_a_turn_cancels_its_ask(loosened):
    """The plugin maps OpenClaw's abort to `cancel`: the gateway (and the plugin's connection)
    stays up when OpenClaw cuts a run off, so only the cancel can withdraw the ask."""
    g = loosened
    g.model.scenarios["cut-off"] = [g.call("notify", message="ask: cut off"), echo_results()]
    agent = Subscriber(g.daemon.control)
    try:
        with g.served(run_timeout=ABANDON_AFTER) as served:
            turn = g.gateway_turn("cut-off")
            p = g.pending("ask: cut off")
            gone = agent.wait("withdrawn", timeout=ABANDON_AFTER + 60)
            assert served.poll() is None  # withdrawn by the cancel, not by a gateway gone
            assert gone["id"] == p["id"] and gone["reason"] == "withdrawn"
            turn.communicate(timeout=120)
            late = g.control("verdict", request=p["id"], digest=p["digest"], allow=True)
            assert late["status"] == "error", late
    finally:
        agent.close()
