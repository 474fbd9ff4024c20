"""What sync-out's secret scan costs per MiB, beside the same scan's parts run by others,
and what it costs another workload's decisions while it runs.

1. The copy as clawvisor runs it: `python -I -m executors.sync_out_copy` (the executor's
   child process, executors/sync_out.py) on one text file of each --sizes MiB in an upper
   layer, with the scan on (the default) and off; medians of --repeat runs, interleaved.
   The scan's cost is the difference (the rest is the child's start, the copy, the hash
   and the fsync). Beside it, in the same run on the same file: `detect-secrets scan`
   (the library's own CLI, every default plugin) and `grep -P -c` with the regular
   expressions of detect-secrets' own regex-based plugins joined into one (what a
   pattern-only scan costs: no entropy or keyword checks).
2. The daemon: a real `clawvisor serve` with a workload whose overlay holds the largest
   file, asked for `sync-out` of it --syncs times, while another workload asks `status`
   once a millisecond: that workload's p50/p99 while the copies run, beside the same
   asking with no copy running.

The text is generated (seeded): source-like lines with identifiers, numbers, short
quoted strings and comments, no secrets, so the whole file is scanned and the copy
goes through.

Writes bench/results/secret_scan.json.

    .venv/bin/python -m bench.secret_scan [--sizes 0.25 1 4] [--repeat 3] [--syncs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from bench.common import machine, write_result
from bench.eventlog import Asker
from executors import ACTIONS
from executors.sync_out import Options
from tests.helpers import rig

MIB = 1 << 20
VOCABULARY = (
    "self data value result config path name index count items buffer state reader "
    "writer request reply handler event record stream token parser module client server "
    "option limit offset length format status error message width height return yield "
    "import from class def if else for while with try except finally raise pass lambda"
)
WORDS = tuple(VOCABULARY.split())
POLICY = (
    '[[rule]]\naction = "sync-out"\nsource = "alpha"\ntarget = "@self"\ndecision = "allow"\n'
    '[[rule]]\naction = "status"\nsource = "*"\ntarget = "*"\ndecision = "allow"\n'
)
SETTINGS = """
[server]
socket_group = "cvt-no-such-group"
[executors.sync-out]
timeout = 600
max_file_bytes = 67108864
max_request_bytes = 67108864
"""


def text(size: int, seed: int = 0) -> bytes:
    """`size` bytes of secret-free source-like text."""
    rng = random.Random(seed)
    out: list[str] = []
    total = 0
    while total < size:
        kind = rng.random()
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
        if kind < 0.2:
            line = f"    # {words}"
        elif kind < 0.5:
            line = f"    {rng.choice(WORDS)}_{rng.randint(0, 99)} = {rng.randint(0, 10**6)}"
        elif kind < 0.7:
            line = f'    {rng.choice(WORDS)} = "{rng.choice(WORDS)} {rng.choice(WORDS)}"'
        else:
            line = f"    {rng.choice(WORDS)}({words.replace(' ', ', ')})"
        out.append(line)
        total += len(line) + 1
    return ("\n".join(out) + "\n").encode()[:size]


def regex_pattern() -> str:
    """detect-secrets' regex-based plugins' expressions, as one PCRE alternation."""
    from detect_secrets.core.plugins import initialize
    from detect_secrets.settings import default_settings, get_settings

    parts = []
    with default_settings():
        for name in get_settings().plugins:
            plugin: Any = initialize.from_plugin_classname(name)
            for r in getattr(plugin, "denylist", ()) or ():
                pattern = r.pattern
                if r.flags & re.VERBOSE:  # one line for grep: comments and spaces out
                    pattern = re.sub(r"\s+", "", re.sub(r"(?<!\\)#[^\n]*", "", pattern))
                flags = "i" if r.flags & re.IGNORECASE else ""
                parts.append(f"(?{flags}:{pattern})" if flags else f"(?:{pattern})")
    return "|".join(parts)


def timed(argv: list[str], ok: tuple[int, ...] = (0,), cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, check=False, cwd=cwd)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in ok:
        raise RuntimeError(f"{argv[:4]} exited {proc.returncode}: {proc.stderr[-500:]!r}")
    return elapsed


def copy_argv(upper: Path, dest: Path, name: str, scan: bool) -> list[str]:
    options = Options(max_file_bytes=1 << 30, max_request_bytes=1 << 30, scan_secrets=scan)
    return [
        sys.executable,
        "-I",
        "-m",
        "executors.sync_out_copy",
        str(upper),
        str(dest),
        msgspec.json.encode(options).decode(),
        "600",
        "--",
        name,
    ]


def ds_argv(path: Path) -> list[str]:
    """detect-secrets' CLI on one file, to be run in the file's directory: it scans only
    paths under its working directory (and, in a git checkout, only what git tracks)."""
    ds = str(Path(sys.executable).parent / "detect-secrets")
    return [ds, "scan", "--all-files", path.name]


def ds_finds(path: Path) -> int:
    out = subprocess.run(ds_argv(path), capture_output=True, check=True, cwd=path.parent).stdout
    return sum(len(v) for v in msgspec.json.decode(out)["results"].values())


def scan_rows(sizes: list[float], repeat: int, tmp: Path) -> list[dict[str, Any]]:
    upper, dest = tmp / "upper", tmp / "dest"
    upper.mkdir()
    dest.mkdir()
    pattern_file = tmp / "pattern"
    pattern_file.write_text(regex_pattern())
    canary = upper / "canary.py"
    canary.write_bytes(text(4096) + b'aws = "AKIAIOSFODNN7EXAMPLE"\n')
    if ds_finds(canary) != 1:  # the peer must really scan what it is given
        raise RuntimeError("detect-secrets' CLI did not find the canary's key")
    canary.unlink()
    rows = []
    for mib in sizes:
        name = f"text-{mib}.py"
        (upper / name).write_bytes(text(int(mib * MIB)))
        runs: dict[str, list[float]] = {k: [] for k in ("scan_on", "scan_off", "ds", "grep")}
        for _ in range(repeat):
            for scan, key in ((True, "scan_on"), (False, "scan_off")):
                runs[key].append(timed(copy_argv(upper, dest, name, scan)))
                (dest / name).unlink()
            runs["ds"].append(timed(ds_argv(upper / name), cwd=upper))
            # grep exits 1 when nothing matched: the clean text.
            runs["grep"].append(
                timed(["grep", "-P", "-c", "-f", str(pattern_file), str(upper / name)], (0, 1))
            )
        med = {k: statistics.median(v) for k, v in runs.items()}
        scan_s = med["scan_on"] - med["scan_off"]
        rows.append(
            {
                "mib": mib,
                "copy_scan_on_s": round(med["scan_on"], 3),
                "copy_scan_off_s": round(med["scan_off"], 3),
                "scan_s": round(scan_s, 3),
                "scan_s_per_mib": round(scan_s / mib, 3),
                "detect_secrets_cli_s": round(med["ds"], 3),
                "detect_secrets_cli_s_per_mib": round(med["ds"] / mib, 3),
                "grep_s": round(med["grep"], 4),
                "grep_s_per_mib": round(med["grep"] / mib, 4),
            }
        )
        print(f"{mib} MiB: {rows[-1]}", flush=True)
        (upper / name).unlink()
    return rows


def daemon_rows(mib: float, syncs: int, idle_s: float) -> dict[str, Any]:
    alpha, gw = rig.create_user(), rig.create_user()
    root = rig.shared_tmpdir("clawvisor-bench-scan-")
    try:
        upper = root / "state" / "overlay" / "alpha" / "upper"
        upper.mkdir(parents=True)
        dest = root / "dest"
        dest.mkdir()
        (upper / "big.py").write_bytes(text(int(mib * MIB)))
        rig.write_config(
            root,
            workloads={"alpha": alpha, "gw": gw},
            policy={"10.toml": POLICY},
            settings=SETTINGS,
            workload_extra={"alpha": f'overlay = {{ lower = "/srv" }}\ndestination = "{dest}"'},
        )
        with rig.journald():
            d = rig.start_daemon(root)
            try:
                with Asker(d.intents, gw) as idle:
                    time.sleep(idle_s)
                took = []
                with Asker(d.intents, gw) as busy:
                    time.sleep(0.3)  # the asker's warm-up, before the first copy
                    for i in range(syncs):
                        t0 = time.perf_counter()
                        with rig.connect_as(d.intents, alpha, timeout=900) as c:
                            c.sendall(
                                rig.request_line(
                                    f"s{i}", {"action": "sync-out", "paths": ["big.py"]}
                                )
                            )
                            [reply] = rig.read_lines(c, 1, timeout=900)
                        took.append(time.perf_counter() - t0)
                        if "result" not in reply:
                            raise RuntimeError(f"sync-out failed: {reply}")
                        (dest / "big.py").unlink()
            finally:
                d.stop()
    finally:
        rig.cleanup_root(root)
        rig.delete_user(alpha)
        rig.delete_user(gw)
    return {
        "mib": mib,
        "syncs": syncs,
        "sync_out_s": [round(t, 3) for t in took],
        "idle": idle.summary(),
        "during": busy.summary(),
    }


def table(data: dict[str, Any]) -> str:
    out = [
        "| text (MiB) | sync-out copy, scan on (s) | scan off (s) | the scan (s/MiB) "
        "| detect-secrets scan CLI (s/MiB) | grep -P, its regexes only (s/MiB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in data["rows"]:
        out.append(
            f"| {r['mib']:g} | {r['copy_scan_on_s']:.2f} | {r['copy_scan_off_s']:.2f} "
            f"| {r['scan_s_per_mib']:.2f} | {r['detect_secrets_cli_s_per_mib']:.2f} "
            f"| {r['grep_s_per_mib']:.4f} |"
        )
    d = data.get("daemon")
    if d:
        out += [
            "",
            f"Another workload's `status` (one a millisecond) while {d['syncs']} sync-out(s) "
            f"of {d['mib']:g} MiB ran (each {statistics.median(d['sync_out_s']):.1f} s), "
            "and with no copy running (the same daemon, just before):",
            "",
            "| while | decisions | status p50 (µs) | status p99 (µs) |",
            "| --- | --- | --- | --- |",
            f"| idle | {d['idle']['decisions']} | {d['idle']['p50_us']:.0f} "
            f"| {d['idle']['p99_us']:.0f} |",
            f"| sync-out scanning | {d['during']['decisions']} | {d['during']['p50_us']:.0f} "
            f"| {d['during']['p99_us']:.0f} |",
        ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1.0, 4.0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--syncs", type=int, default=3, help="sync-outs under the status load")
    args = parser.parse_args()
    defaults = Options()
    data: dict[str, Any] = {
        "machine": machine(),
        "load_before": os.getloadavg(),
        "default_timeout_s": ACTIONS["sync-out"].default_timeout,
        "max_file_mib": defaults.max_file_bytes / MIB,
        "max_request_mib": defaults.max_request_bytes / MIB,
    }
    tmp = Path(tempfile.mkdtemp(prefix="clawvisor-bench-scan-", dir="/tmp"))
    try:
        data["rows"] = scan_rows(args.sizes, args.repeat, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.syncs:
        data["daemon"] = daemon_rows(max(args.sizes), args.syncs, idle_s=5.0)
        print(f"daemon: {data['daemon']}", flush=True)
    data["load_after"] = os.getloadavg()
    data["table"] = table(data)
    path = write_result("secret_scan", data)
    print(data["table"])
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
