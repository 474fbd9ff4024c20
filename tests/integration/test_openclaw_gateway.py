"""A real OpenClaw gateway (the pinned `openclaw` npm package on Node 24, `make openclaw`)
run as a workload user against a real daemon, its model a scripted OpenAI-compatible
server: through clawvisor's native plugin and through the MCP bridge, each set up by
`clawvisor openclaw setup`. Allow, deny, an approved ask, an abandoned ask, a reload and
OpenClaw's own `exec` are each one agent turn, `openclaw agent exec`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import rig
from tests.helpers.model_server import SEPARATOR, ScriptedModel, echo_results, serving, tool_call
from tests.helpers.rules import rule, starts
from tests.helpers.subscriber import Subscriber

ROOT = Path(__file__).resolve().parents[2]
OPENCLAW = ROOT / "build" / "openclaw"
NODE_BIN = OPENCLAW / "bin"
ENTRY = OPENCLAW / "node_modules" / "openclaw" / "openclaw.mjs"
PLUGIN_DIR = ROOT / "supervisor" / "gateway" / "openclaw_plugin"

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


@dataclass
class Gateway:
    """One workload's OpenClaw, reaching clawvisor `via` the plugin or the MCP bridge."""

    via: str
    user: rig.User
    home: Path
    daemon: rig.Daemon
    model: ScriptedModel

    def tool(self, action: str) -> str:
        # The plugin's tools are its own; MCP tools are named SERVER__TOOL by OpenClaw.
        return (
            f"clawvisor_{action.replace('-', '_')}"
            if self.via == "plugin"
            else f"clawvisor__{action}"
        )

    def call(self, action: str, **args: Any) -> dict[str, Any]:
        """A step calling `action`'s tool: direct for the plugin (offered as itself), through
        OpenClaw's Tool Search `tool_call` for MCP tools (deferred behind it by default)."""
        if self.via == "plugin":
            return tool_call(self.tool(action), **args)
        return tool_call("tool_call", id=self.tool(action), args=args)

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "PATH": f"{NODE_BIN}:{rig.CLAWVISOR.parent}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "OPENCLAW_NO_AUTO_UPDATE": "1",
            "DO_NOT_TRACK": "1",
            "CI": "1",
        }

    def argv(self, *args: str) -> list[str]:
        return [
            "/usr/bin/setpriv",
            f"--reuid={self.user.uid}",
            f"--regid={self.user.gid}",
            "--clear-groups",
            "/usr/bin/env",
            "-i",
            *(f"{k}={v}" for k, v in self.env().items()),
            str(NODE_BIN / "node"),
            str(ENTRY),
            *args,
        ]

    def openclaw(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def turn_process(self, scenario: str, turn_timeout: int = 90) -> subprocess.Popen[str]:
        """Start one agent turn; its message names the scenario the model plays."""
        return subprocess.Popen(
            self.argv(
                "agent",
                "exec",
                "--json",
                "--timeout",
                str(turn_timeout),
                f"[scenario {scenario}] go",
            ),
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def turn(self, scenario: str, turn_timeout: int = 90) -> dict[str, Any]:
        """Run one agent turn to its end; OpenClaw's JSON envelope (`final` is the reply)."""
        proc = self.turn_process(scenario, turn_timeout)
        out, err = proc.communicate(timeout=turn_timeout + 60)
        try:
            return dict(json.loads(out))
        except ValueError:
            why = f"openclaw exit {proc.returncode}: {out[-2000:]} {err[-2000:]}"
            raise AssertionError(why) from None

    def offered(self, scenario: str) -> dict[str, str]:
        """The tools (name -> description) the model was offered in a scenario's first step."""
        return self.model.requests(scenario)[0].tools

    def control(self, op: str, **fields: Any) -> dict[str, Any]:
        with rig.connect_as(self.daemon.control, None) as sock:
            sock.sendall(json.dumps({"id": "c1", "op": op, **fields}).encode() + b"\n")
            return rig.read_lines(sock, 1)[0]

    def pending(self, message: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.control("pending")["result"]["pending"]:
                if p["params"].get("message") == message:
                    return p
            time.sleep(0.1)
        raise AssertionError(f"no pending ask for {message!r}")


def base_config(model: ScriptedModel) -> dict[str, Any]:
    """A user's own OpenClaw config: the local model, and nothing that reaches the network."""
    return {
        "update": {"checkOnStart": False},
        "telemetry": {"enabled": False},
        "agents": {
            "defaults": {
                "model": {"primary": "mock/scripted"},
                "skipBootstrap": True,
                "timeoutSeconds": 120,
                "heartbeat": {"every": "0m"},
            }
        },
        "plugins": {"entries": {"memory-core": {"config": {"dreaming": {"enabled": False}}}}},
        "models": {
            "mode": "merge",
            "catalogRefresh": {"enabled": False},
            "providers": {
                "mock": {
                    "baseUrl": model.base_url,
                    "apiKey": "mock-local",
                    "api": "openai-completions",
                    "timeoutSeconds": 60,
                    "models": [
                        {
                            "id": "scripted",
                            "name": "Scripted",
                            "reasoning": False,
                            "input": ["text"],
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000,
                            "maxTokens": 4096,
                        }
                    ],
                }
            },
        },
    }


def _clean_tmp(uid: int) -> None:
    # What OpenClaw leaves in /tmp for its user: its log, state locks, terminal staging.
    for p in Path("/tmp").iterdir():
        if p.name.startswith(("openclaw", ".openclaw")):
            try:
                if p.lstat().st_uid == uid:
                    shutil.rmtree(p, ignore_errors=True)
            except FileNotFoundError:
                pass


@pytest.fixture(scope="module", params=["plugin", "mcp"])
def gw(request, make_user, make_daemon, journal):
    if not (ENTRY.exists() and (NODE_BIN / "node").exists()):
        pytest.fail("the pinned OpenClaw is not installed: run `make openclaw`")
    via: str = request.param
    homes = rig.shared_tmpdir("clawvisor-ocg-")
    user = make_user()
    daemon = make_daemon(
        {"oc": user},
        {"10.toml": POLICY},
        settings=f'[server]\nsocket_group = "cvt-no-such-group"\n'
        f'[provision]\nhome_root = "{homes}"\n',
    )
    (homes / "oc").mkdir(mode=0o755)
    home = homes / "oc" / "work"  # the gateway's HOME, as provision makes it
    home.mkdir(mode=0o700)
    os.chown(home, user.uid, user.gid)
    model = ScriptedModel()
    with serving(model):
        g = Gateway(via, user, home, daemon, model)
        cfg = home / ".openclaw" / "openclaw.json"
        cfg.parent.mkdir(mode=0o700)
        cfg.write_text(json.dumps(base_config(model)))
        for p in (cfg.parent, cfg):
            os.chown(p, user.uid, user.gid)
        if via == "plugin":
            # The plugin first: OpenClaw holds an entry for a plugin it lacks as unfinished.
            done = g.openclaw(
                "plugins", "install", str(PLUGIN_DIR), "--force", "--accept-capabilities"
            )
            assert done.returncode == 0, done.stdout + done.stderr
        setup = subprocess.run(
            [str(rig.CLAWVISOR), "openclaw", "setup", "--via", via, "--socket", str(daemon.intents),
             "--config-dir", str(daemon.config_dir), "--state-dir", str(daemon.root / "state")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert setup.returncode == 0, setup.stderr
        yield g
    if os.environ.get("CVT_KEEP"):
        return
    _clean_tmp(user.uid)
    shutil.rmtree(homes, ignore_errors=True)


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
