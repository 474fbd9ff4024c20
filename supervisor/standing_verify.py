"""`verify` as a standing guard: the daemon runs `clawvisor verify --json` in a child
process every `[verify] interval` seconds and soon after every reload (one run at a time,
never on the loop), keeps the last result for `status`, and hands each failing run to
`on_result` (the daemon makes it a critical alert).

A child process, because verify probes as each workload's user (processes, sockets,
counters): slow, and nothing the daemon's loop should wait for. Under systemd the same
schedule runs in the service; a timer unit would only add a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec

from executors.base import VerifyState
from executors.runner import SAFE_PATH, stop_unit

from .audit import CRIT, AuditRecord
from .config import resolve_launcher
from .verify_result import Check

#: A reload's run waits this long, so that a burst of reloads costs one run.
AFTER_RELOAD = 5.0
#: Longest a run may take before it is killed (and recorded as an error).
RUN_TIMEOUT = 600.0

_check = msgspec.json.Decoder(Check)


class _Holder(Protocol):
    verify: VerifyState | None


def keep_and_alert(
    state: _Holder,
    note: Callable[[AuditRecord], object],
    notice: Callable[[str, str], object],
) -> Callable[[VerifyState], None]:
    """What the daemon does with a result: keep it for `status`; a FAIL (or a run that
    could not happen) is a critical alert record and a notice to the approval agents."""

    def on_result(result: VerifyState) -> None:
        state.verify = result
        if result.failed or result.error:
            what = result.error or "; ".join(result.failures)[:900]
            message = f"verify: {result.failed} check(s) FAIL: {what}"
            note(AuditRecord(kind="alert", priority=CRIT, outcome="verify_failed", message=message))
            notice("@verify", message)

    return on_result


class StandingVerify:
    """Runs verify on a schedule; `last` is the newest result."""

    def __init__(
        self,
        argv: list[str],
        interval: float,
        on_result: Callable[[VerifyState], None],
        systemd_run: str | None = None,
    ) -> None:
        self.argv = argv
        #: systemd-run, to run each verify as a transient unit of its own (under systemd).
        self.systemd_run = systemd_run
        self.interval = interval
        self.on_result = on_result
        self.last: VerifyState | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None

    @classmethod
    def for_daemon(
        cls,
        config_dir: Path,
        state_dir: Path,
        runtime_dir: Path,
        interval: float,
        on_result: Callable[[VerifyState], None],
        launcher: str = "direct",
    ) -> StandingVerify:
        """Verify the daemon's own box (its config, state and sockets). Under systemd in
        a transient unit of its own: the daemon's sandbox (ProtectHome=read-only and the
        rest) would refuse verify's own probe script, and make every write probe fail
        for the sandbox's sake (EROFS) rather than for the permissions it checks."""
        systemd_run = None
        if resolve_launcher(launcher) == "systemd-run":
            systemd_run = shutil.which("systemd-run", path=SAFE_PATH) or "systemd-run"
        argv = [
            sys.executable,
            "-m",
            "supervisor",
            "verify",
            "--json",
            "--config-dir",
            str(config_dir),
            "--state-dir",
            str(state_dir),
            "--runtime-dir",
            str(runtime_dir),
        ]
        return cls(argv, interval, on_result, systemd_run)

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self) -> None:
        """The first run after one interval (a fresh start is verified by provision)."""
        if self.enabled:
            self._schedule(self.interval)

    def soon(self) -> None:
        """Run again shortly (after a reload), unless a run is already on its way."""
        if self.enabled and (self._running is None or self._running.done()):
            self._schedule(AFTER_RELOAD)

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._run())
        self._schedule(self.interval)

    async def _run(self) -> None:
        state = await self.run_once()
        self.last = state
        self.on_result(state)

    async def run_once(self) -> VerifyState:
        """One verify in a child process, summarised."""
        now = time.time()
        argv, unit = self.argv, None
        if self.systemd_run is not None:
            unit = f"clawvisor-verify-{secrets.token_hex(4)}.service"
            argv = [self.systemd_run, "--quiet", "--collect", "--wait", "--pipe",
                    "--service-type=exec", f"--unit={unit}",
                    f"--property=RuntimeMaxSec={int(RUN_TIMEOUT) + 30}", "--", *argv]  # fmt: skip
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return VerifyState(at=now, passed=0, failed=0, skipped=0, error=str(exc))
        try:
            out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        except (TimeoutError, asyncio.CancelledError) as exc:
            # Stopping (or a run past its time) ends the verify now, not when it is done:
            # the child, and under systemd its unit, are killed.
            # The unit first: the client killed first could leave a unit behind unseen.
            if unit is not None:
                await stop_unit(unit)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return VerifyState(
                at=now, passed=0, failed=0, skipped=0, error=f"no result in {RUN_TIMEOUT:g} s"
            )
        checks: list[Check] = []
        for line in out.splitlines():
            with contextlib.suppress(msgspec.DecodeError):
                checks.append(_check.decode(line))
        if not checks:
            why = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            return VerifyState(
                at=now,
                passed=0,
                failed=0,
                skipped=0,
                error=f"verify exited {proc.returncode}: {why[0][:300]}",
            )
        return VerifyState(
            at=now,
            passed=sum(c.result == "PASS" for c in checks),
            failed=sum(c.result == "FAIL" for c in checks),
            skipped=sum(c.result == "SKIP" for c in checks),
            failures=[f"{c.workload}: {c.check}: {c.reason}" for c in checks if c.result == "FAIL"],
        )

    def stop(self) -> None:
        """No more runs; a run in progress is cancelled (its child killed)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running is not None:
            self._running.cancel()
