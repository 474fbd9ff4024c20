"""What the Policy and Audit pages ask for: the rules in force (from the daemon's
`policy-source`, parsed as the daemon parses them, each with its file:line), and the
operator's own tools (`policy explain`, `policy diff`, `audit log`, `audit verify`) run
as child processes with the operator's permissions, argv only, every value checked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from policy.errors import PolicyError
from policy.load import parse_file

NAME = re.compile(r"[a-zA-Z0-9-]{1,64}")
ACTION = re.compile(r"[a-z][a-z0-9-]{0,63}")
KEY = re.compile(r"[a-z_][a-z0-9_]{0,63}")
TIMEOUT = 60.0
#: At most this much of a tool's output is kept (the rest is cut, and said so).
OUTPUT_CAP = 4 * 1024 * 1024


def rules_in_force(files: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Every rule of the policy in force, in evaluation order, with its file:line."""
    out: list[dict[str, Any]] = []
    for f in files:
        try:
            draft = parse_file(f["text"], f["name"])
        except PolicyError as exc:
            out.append({"where": f["name"], "error": str(exc)})
            continue
        for r in draft.rules:
            s = r.spec
            out.append(
                {
                    "where": f"{r.at.file}:{r.at.line}",
                    "action": s.action if isinstance(s.action, str) else ", ".join(s.action),
                    "source": s.source,
                    "target": s.target,
                    "decision": s.decision,
                    "params": json.dumps(s.params, sort_keys=True) if s.params else "",
                    "timeout": str(s.timeout),
                    "grant": str(getattr(s, "grant", "once")),
                }
            )
    return out


@dataclass(frozen=True)
class Tools:
    """Where the operator's tools look: the config directory, and the audit trail's."""

    config_dir: str
    audit: tuple[str, ...] = ()  # --journal-dir, --state-dir, --log-dir ... as given

    async def run(self, *argv: str) -> tuple[int, str]:
        """`clawvisor ARGV` as a child; (exit status, its output, cut at OUTPUT_CAP)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "supervisor", *argv,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return 124, f"timed out after {TIMEOUT:g} s"
        text = out[:OUTPUT_CAP].decode("utf-8", "replace")
        if len(out) > OUTPUT_CAP:
            text += "\n(cut)"
        return proc.returncode or 0, text

    async def explain(
        self, source: str, action: str, target: str | None, params: dict[str, str]
    ) -> tuple[int, str]:
        if not NAME.fullmatch(source) or not ACTION.fullmatch(action):
            raise ValueError("source and action must be names")
        argv = ["policy", "explain", "--config-dir", self.config_dir, "--source", source]
        if target:
            if not NAME.fullmatch(target):
                raise ValueError("target must be a name")
            argv += ["--target", target]
        pairs = []
        for key, value in params.items():
            if not KEY.fullmatch(key) or len(value) > 4096:
                raise ValueError(f"bad param {key!r}")
            pairs.append(f"{key}={value}")  # starts with a key: never read as an option
        return await self.run(*argv, action, *pairs)

    async def diff(self, directory: str) -> tuple[int, str]:
        if not directory.startswith("/") or "\0" in directory or len(directory) > 4096:
            raise ValueError("the candidate policy directory must be an absolute path")
        return await self.run("policy", "diff", "--config-dir", self.config_dir, "--", directory)

    async def audit_log(self, workload: str | None, since: str | None) -> tuple[int, str]:
        argv = ["audit", "log", "--format", "json", "--chain", "all", *self.audit]
        if workload:
            if not NAME.fullmatch(workload):
                raise ValueError("workload must be a name")
            argv += ["--workload", workload]
        if since:
            if not re.fullmatch(r"[0-9TZ:.+-]{1,40}|\d{1,6}[smhd]", since):
                raise ValueError("since: an age (30m, 2h, 1d), a Unix time or ISO 8601")
            argv += ["--since", since]
        return await self.run(*argv)

    async def audit_chains(self) -> list[dict[str, Any]]:
        """`audit verify` of every chain the trail holds (a daemon starts one per state
        directory: a reinstall, or another VM's records, is another chain)."""
        code, output = await self.run("audit", "log", "--format", "json", "--chain", "all",
                                      *self.audit)  # fmt: skip
        chains: dict[str, None] = {}
        for line in output.splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict) and rec.get("chain"):
                    chains[str(rec["chain"])] = None
        if not chains:
            raise LookupError(output.strip()[-500:] or f"no records (exit {code})")
        out = []
        for chain in chains:
            if not re.fullmatch(r"[0-9a-fA-F-]{1,64}", chain):
                continue
            code, text = await self.run("audit", "verify", "--json", "--chain", chain,
                                        *self.audit)  # fmt: skip
            try:
                status = json.loads(text.strip().splitlines()[-1])
            except (ValueError, IndexError):
                status = {"chain": chain, "state": text.strip()[-300:]}
            out.append({"intact": code in (0, 3), **status})
        return out
