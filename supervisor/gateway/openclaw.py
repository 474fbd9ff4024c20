"""`clawvisor openclaw setup`: a workload's OpenClaw config that leaves clawvisor the only
way for its agent to act.

It sets, in the workload's `~/.openclaw/openclaw.json` (HOME as its gateway unit has it,
`home_root`/NAME/work): the MCP server entry (`clawvisor mcp`, a timeout above the longest ask
in the workload's policy, the env that stops OpenClaw's OOM wrapper) and a tool policy
that turns OpenClaw's own acting tools off. Everything else in the file (the model
provider, channels) is left as the user has it. `--check` only reports what in the
existing file lets the agent act without clawvisor.

The file lives in a directory the workload owns, so root never opens it: reading and
writing happen in a child process running as the workload's user (a symlink planted
there reaches only what that user could reach anyway).
"""

from __future__ import annotations

import json
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TextIO

#: OpenClaw's own tools that act on the machine without asking anyone, and the tool
#: groups that hold them (its `tools.deny` takes `group:NAME`).
HOST_TOOLS: Final = ("exec", "process", "write", "web_fetch", "browser")
HOST_GROUPS: Final = ("group:runtime", "group:fs", "group:web", "group:ui")
#: Tool profiles without the host tools.
SAFE_PROFILES: Final = ("messaging", "minimal")
SERVER: Final = "clawvisor"
#: OpenClaw's MCP client gives up after this (ms) unless the entry says otherwise.
OPENCLAW_DEFAULT_TIMEOUT_MS: Final = 60_000
MARGIN_S: Final = 30.0

_READ = """
import os, stat, sys
path = sys.argv[1]
try:
    # O_NONBLOCK: a FIFO planted there opens at once (and is refused below).
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
except FileNotFoundError:
    sys.exit(3)
if not stat.S_ISREG(os.fstat(fd).st_mode):
    sys.exit("not a regular file")
with os.fdopen(fd, "rb") as f:
    sys.stdout.buffer.write(f.read(1 << 20))
"""
_WRITE = """
import os, sys
path = sys.argv[1]
os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
tmp = path + ".clawvisor-tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
with os.fdopen(fd, "wb") as f:
    f.write(sys.stdin.buffer.read())
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, path)
"""


#: The native plugin, shipped in the package (`openclaw plugins install` takes this dir).
PLUGIN_DIR: Final = Path(__file__).resolve().parent / "openclaw_plugin"
PLUGIN_MANIFEST: Final = PLUGIN_DIR / "openclaw.plugin.json"
#: OpenClaw's tool profiles the plugin's tools belong to.
PLUGIN_PROFILES: Final = ("coding", "messaging", "minimal")


def plugin_tool(action: str) -> str:
    """The plugin's tool name for `action` (as index.js names it)."""
    return "clawvisor_" + action.replace("-", "_")


def plugin_manifest() -> str:
    """openclaw.plugin.json: OpenClaw wants every tool name a plugin may offer declared up
    front, so it lists every action clawvisor has; a turn offers only the allowed ones."""
    from executors import ACTIONS

    from .describe import NOT_TOOLS

    tools = [plugin_tool(a) for a in ACTIONS if a not in NOT_TOOLS]
    manifest = {
        "id": SERVER,
        "name": "clawvisor",
        "description": "The machine owner's policy between the agent and the machine: each "
        "clawvisor action is a tool, and every call is allowed, asked about or refused by "
        "clawvisor.",
        "activation": {"onStartup": True},
        "contracts": {"tools": tools},
        "toolMetadata": {t: {"profiles": list(PLUGIN_PROFILES)} for t in tools},
        "configSchema": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "socket": {
                    "type": "string",
                    "description": "clawvisor's intents socket (default "
                    "/run/clawvisor/intents.sock; the caller's by-uid socket first).",
                },
                "blockHostTools": {
                    "type": "boolean",
                    "description": "Block OpenClaw's own tools (exec, write, web_fetch, ...) "
                    "from this plugin's before_tool_call hook. Advisory: keep the tool "
                    "profile's deny as well.",
                },
            },
        },
    }
    return json.dumps(manifest, indent=2) + "\n"


class SetupError(Exception):
    """The setup cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Workload:
    """Whose OpenClaw config: the workload, its user and home, its longest ask (s)."""

    name: str
    user: str
    home: Path
    longest_ask: float
    #: How OpenClaw reaches clawvisor: the native plugin or the MCP bridge.
    via: Literal["plugin", "mcp"] = "mcp"
    #: The intents socket, when not the default one.
    socket: str | None = None

    @property
    def config_file(self) -> Path:
        return self.home / ".openclaw" / "openclaw.json"

    @property
    def timeout_ms(self) -> int:
        """The MCP entry's timeout: the longest ask plus a margin, never below OpenClaw's."""
        return max(OPENCLAW_DEFAULT_TIMEOUT_MS, int((self.longest_ask + MARGIN_S) * 1000))


def _as_user(user: str, code: str, path: Path, data: bytes | None = None) -> bytes | None:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise SetupError(f"no user {user!r}: run `clawvisor provision` first") from None
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, str(path)],
        input=data,
        capture_output=True,
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(path.parent.parent)},
        cwd="/",
        timeout=30,
        check=False,
    )
    if proc.returncode == 3:
        return None
    if proc.returncode != 0:
        why = proc.stderr.decode("ascii", "replace").strip().splitlines()[-1:] or ["?"]
        raise SetupError(f"{path}: as {user}: {why[0][:200]!r}")
    return proc.stdout


def read_config(w: Workload) -> dict[str, Any]:
    """The workload's OpenClaw config as it is ({} when there is none)."""
    raw = _as_user(w.user, _READ, w.config_file)
    if raw is None or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SetupError(
            f"{w.config_file} is not plain JSON ({exc}); edit it by hand with what "
            "`clawvisor openclaw setup --print` shows"
        ) from None
    if not isinstance(data, dict):
        raise SetupError(f"{w.config_file}: not a JSON object")
    return data


def _table(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key)
    if not isinstance(value, dict):
        value = d[key] = {}
    return value


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def server_entry(w: Workload) -> dict[str, Any]:
    """The MCP server entry for `clawvisor mcp`."""
    return {
        "command": "clawvisor",
        "args": ["mcp", *(["--socket", w.socket] if w.socket else [])],
        # OpenClaw's key (2026.9): an unknown key such as `timeout` fails its config check.
        "requestTimeoutMs": w.timeout_ms,
        "env": {"OPENCLAW_CHILD_OOM_SCORE_ADJ": "0"},
    }


def plugin_entry(w: Workload) -> dict[str, Any]:
    """The plugin's entry: enabled, blocking OpenClaw's own tools as well (the tool policy
    stays the guard: hooks are advisory)."""
    config: dict[str, Any] = {"blockHostTools": True}
    if w.socket:
        config["socket"] = w.socket
    return {"enabled": True, "config": config}


def configured(current: dict[str, Any], w: Workload) -> dict[str, Any]:
    """`current` with clawvisor's server entry and a tool policy without host tools."""
    out: dict[str, Any] = json.loads(json.dumps(current))
    if w.via == "mcp":
        _table(_table(out, "mcp"), "servers")[SERVER] = server_entry(w)
    else:
        _table(_table(out, "plugins"), "entries")[SERVER] = plugin_entry(w)
        # One way in: the bridge beside the plugin would offer every action twice.
        servers = _dict(_dict(out.get("mcp")).get("servers"))
        servers.pop(SERVER, None)
    tools = _table(out, "tools")
    if tools.get("profile") not in SAFE_PROFILES:
        tools["profile"] = "messaging"
    deny = _list(tools.get("deny"))
    tools["deny"] = [*deny, *(g for g in HOST_GROUPS if g not in deny)]
    allow = tools.get("allow")
    if isinstance(allow, list):
        kept = [t for t in allow if t not in HOST_TOOLS and t not in HOST_GROUPS]
        if kept:
            tools["allow"] = kept
        else:
            del tools["allow"]
    return out


def bypasses(current: dict[str, Any], w: Workload) -> list[str]:
    """What in `current` lets the agent act without clawvisor, or loses its answers."""
    found: list[str] = []
    tools = _dict(current.get("tools"))
    deny = _list(tools.get("deny"))
    if tools.get("profile") not in SAFE_PROFILES and not all(g in deny for g in HOST_GROUPS):
        found.append(
            f"tools.profile is {tools.get('profile')!r} and tools.deny lacks "
            f"{[g for g in HOST_GROUPS if g not in deny]}: OpenClaw's own exec, write, "
            "web_fetch and browser act as the workload without asking clawvisor"
        )
    allow = _list(tools.get("allow"))
    opened = [t for t in allow if t in HOST_TOOLS or t in HOST_GROUPS]
    if opened:
        found.append(f"tools.allow lets host tools through: {opened}")
    for n, agent in enumerate(_list(_dict(current.get("agents")).get("list"))):
        own = _dict(_dict(agent).get("tools"))
        opened = [t for t in _list(own.get("allow")) if t in HOST_TOOLS or t in HOST_GROUPS]
        if ("profile" in own and own["profile"] not in SAFE_PROFILES) or opened:
            found.append(
                f"agents.list[{n}].tools ({own.get('profile')!r}, allow {opened}) gives that "
                "agent OpenClaw's own acting tools back"
            )
    servers = _dict(_dict(current.get("mcp")).get("servers"))
    entry = servers.get(SERVER)
    plugin = _dict(_dict(_dict(current.get("plugins")).get("entries")).get(SERVER))
    if plugin.get("enabled") is not True and not isinstance(entry, dict):
        found.append(
            f"mcp.servers has no {SERVER!r} entry and plugins.entries.{SERVER} is not "
            "enabled: the agent has no clawvisor tools"
        )
    if isinstance(entry, dict):
        timeout = entry.get("requestTimeoutMs", OPENCLAW_DEFAULT_TIMEOUT_MS)
        if not isinstance(timeout, int | float) or timeout < w.timeout_ms:
            found.append(
                f"mcp.servers.{SERVER}.requestTimeoutMs is {timeout!r} ms, below the longest "
                f"ask in the policy plus {MARGIN_S:g} s ({w.timeout_ms} ms): OpenClaw would "
                "give up on an ask a human may still answer (clawvisor then withdraws it)"
            )
    return found


def setup(w: Workload, *, print_only: bool, check: bool, out: TextIO = sys.stdout) -> int:
    """`clawvisor openclaw setup`: 0 done (or nothing to change, or a clean check), 1 when
    `--check` found a bypass, 2 on an error."""
    try:
        current = read_config(w)
        if check:
            found = bypasses(current, w)
            for line in found:
                print(f"{w.config_file}: {line}", file=out)
            if not found:
                print(f"{w.config_file}: clawvisor is the only way for the agent to act", file=out)
            return 1 if found else 0
        new = configured(current, w)
        # ASCII only: what the workload wrote (C1 controls, bidi overrides) reaches root's
        # terminal with --print only as \u escapes.
        text = json.dumps(new, indent=2, ensure_ascii=True) + "\n"
        if print_only:
            out.write(text)
            return 0
        if new == current:
            print(f"{w.config_file}: unchanged", file=out)
            return 0
        _as_user(w.user, _WRITE, w.config_file, text.encode())
    except (SetupError, OSError, subprocess.SubprocessError) as exc:
        print(f"clawvisor openclaw setup: {exc}", file=sys.stderr)
        return 2
    if w.via == "mcp":
        print(f"{w.config_file}: written (mcp.servers.{SERVER}, tools.profile/deny)", file=out)
    else:
        print(f"{w.config_file}: written (plugins.entries.{SERVER}, tools.profile/deny)", file=out)
        print(
            f"then, as {w.user}: openclaw plugins install {PLUGIN_DIR} --force "
            "--accept-capabilities",
            file=out,
        )
    return 0
