"""A real OpenClaw (the pinned build `make openclaw` installs in build/openclaw) run as a
workload user against a daemon, its model a ScriptedModel: what the gateway tests and the
bench's OpenClaw turn share."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import rig
from tests.helpers.model_server import ScriptedModel, serving, tool_call

ROOT = Path(__file__).resolve().parents[2]
OPENCLAW = ROOT / "build" / "openclaw"
NODE_BIN = OPENCLAW / "bin"
ENTRY = OPENCLAW / "node_modules" / "openclaw" / "openclaw.mjs"
PLUGIN_DIR = ROOT / "supervisor" / "gateway" / "openclaw_plugin"
GATEWAY_TOKEN = "cvt-test-token"


def daemon_settings(homes: Path) -> str:
    """clawvisor.toml for a daemon whose workloads' homes (home_root) are under `homes`."""
    return f'[server]\nsocket_group = "cvt-no-such-group"\n[provision]\nhome_root = "{homes}"\n'


def installed() -> bool:
    """Whether `make openclaw` has run."""
    return ENTRY.exists() and (NODE_BIN / "node").exists()


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
            "OPENCLAW_GATEWAY_TOKEN": GATEWAY_TOKEN,
            "DO_NOT_TRACK": "1",
            "CI": "1",
        }

    @contextmanager
    def served(self, run_timeout: int) -> Iterator[subprocess.Popen[str]]:
        """`openclaw gateway run` (the long-running gateway, as a workload unit runs it) on a
        free loopback port, its agent runs cut off after `run_timeout` s; stopped by pid."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = self.home / ".openclaw" / "openclaw.json"
        conf = json.loads(cfg.read_text())
        conf["gateway"] = {"mode": "local", "port": port, "bind": "loopback",
                           "auth": {"mode": "token", "token": GATEWAY_TOKEN}}  # fmt: skip
        conf["cron"] = {"enabled": False}
        conf["agents"]["defaults"]["timeoutSeconds"] = run_timeout
        cfg.write_text(json.dumps(conf))
        proc = subprocess.Popen(
            self.argv("gateway", "run", "--port", str(port), "--bind", "loopback"),
            cwd=self.home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, f"openclaw gateway exited {proc.returncode}"
                assert time.monotonic() < deadline, "openclaw gateway not ready"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                        if b"ready" in r.read():
                            break
                except OSError:
                    pass
                time.sleep(0.5)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def gateway_turn(self, scenario: str) -> subprocess.Popen[str]:
        """Start one turn sent to the running gateway (`openclaw agent`, not embedded)."""
        return subprocess.Popen(
            self.argv("agent", "--agent", "main", "--session-key", f"agent:main:{scenario}",
                      "--message", f"[scenario {scenario}] go", "--json"),
            cwd=self.home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

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

    def local_turn(self, scenario: str) -> str:
        """One turn of the embedded agent (`openclaw agent --local`: plugin hooks run there,
        unlike under `agent exec`); the agent's reply text."""
        done = self.openclaw(
            "agent", "--local", "--agent", "main", "--session-key", f"agent:main:{scenario}",
            "--message", f"[scenario {scenario}] go", "--json", timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return str(json.loads(done.stdout)["payloads"][0]["text"])

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


def base_config(base_url: str) -> dict[str, Any]:
    """A user's own OpenClaw config: the scripted model at `base_url` (".../v1"), and
    nothing that reaches the network."""
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
                    "baseUrl": base_url,
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


@contextmanager
def gateway(
    via: str, user: rig.User, daemon: rig.Daemon, homes: Path, name: str = "oc"
) -> Iterator[Gateway]:
    """Workload `name`'s OpenClaw, set up the way the README says (the plugin installed
    first), for `daemon` (whose [provision] home_root is `homes`), its model serving."""
    (homes / name).mkdir(mode=0o755)
    home = homes / name / "work"  # the gateway's HOME, as provision makes it
    home.mkdir(mode=0o700)
    os.chown(home, user.uid, user.gid)
    model = ScriptedModel()
    try:
        with serving(model):
            g = Gateway(via, user, home, daemon, model)
            cfg = home / ".openclaw" / "openclaw.json"
            cfg.parent.mkdir(mode=0o700)
            cfg.write_text(json.dumps(base_config(model.base_url)))
            for p in (cfg.parent, cfg):
                os.chown(p, user.uid, user.gid)
            if via == "plugin":
                # The plugin first: OpenClaw holds an entry for a plugin it lacks as unfinished.
                done = g.openclaw(
                    "plugins", "install", str(PLUGIN_DIR), "--force", "--accept-capabilities"
                )
                assert done.returncode == 0, done.stdout + done.stderr
            setup = subprocess.run(
                [str(rig.CLAWVISOR), "openclaw", "setup", "--workload", name, "--via", via,
                 "--socket", str(daemon.intents), "--config-dir", str(daemon.config_dir),
                 "--state-dir", str(daemon.root / "state")],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert setup.returncode == 0, setup.stderr
            yield g
    finally:
        _clean_tmp(user.uid)
        shutil.rmtree(home, ignore_errors=True)
