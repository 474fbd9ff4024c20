"""Shared bench plumbing: machine facts, per-process CPU time, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of a process and its living children (the daemon and its monitor
    worker, where the BPF events are decoded)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    total = cpu_seconds(pid)
    for kid in kids:
        try:
            total += tree_cpu_seconds(int(kid))
        except OSError:  # gone since the listing
            continue
    return total


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Per-key median over repeated rounds."""
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def write_result(name: str, data: object) -> Path:
    """Store one benchmark's figures as JSON under bench/results/ (a dict gets the time it
    was measured, UTC: results.md says it, and a checkout's file times do not)."""
    if isinstance(data, dict):
        data = {"measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M}", **data}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def lossless_rate(rows: list[dict[str, Any]]) -> int:
    """The highest rate a sink took events at with every one of them kept (a sink that
    blocks keeps everything, but slows its feeder to its own pace: that pace is its rate).
    Rows have `offered` (events handed over), `lost` and `achieved_rate`."""
    return max((r["achieved_rate"] for r in rows if r["lost"] == 0 and r["offered"] > 0), default=0)


def settled(
    count: Callable[[], int],
    want: int,
    quiet: float = 3.0,
    limit: float = 120.0,
    poll: float = 0.1,
) -> int:
    """`count()` once it reaches `want` or stops growing for `quiet` seconds."""
    last, since, start = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - start < limit:
        n = count()
        if n >= want:
            return n
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > quiet:
            return n
        time.sleep(poll)
    return count()
