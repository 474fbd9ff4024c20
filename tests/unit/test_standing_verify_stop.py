"""Stopping the standing verify ends a run in progress at once: its child is killed,
not left to finish (or to hold up the daemon's shutdown)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from supervisor.standing_verify import StandingVerify


def test_stop_kills_the_verify_child_that_is_running(tmp_path: Path):
    pidfile = tmp_path / "pid"
    child = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    results = []

    async def scenario() -> int:
        sv = StandingVerify([sys.executable, "-c", child], 3600, results.append)
        sv._fire()  # one run now, as the timer would
        while not pidfile.exists() or not pidfile.read_text():
            await asyncio.sleep(0.02)
        sv.stop()
        await asyncio.sleep(0.5)
        return int(pidfile.read_text())

    pid = asyncio.run(scenario())
    try:
        os.kill(pid, 0)
        alive = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except ProcessLookupError:
        alive = False
    assert not alive and results == []  # a cancelled run is no result
