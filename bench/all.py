"""`make bench`: every benchmark beside its peers, one results table, the plots.

Each step is its own bench module, run as a child process (so that one's processes,
namespaces and kernel objects are gone before the next starts), with its output shown
under a progress line. When all are done, bench/results.md gets one table (figure,
clawvisor, peer, ratio, aim, command to reproduce) built from the steps' JSON in
bench/results/, and bench/results/*.png the plots. Every row's peer or floor was
measured in the same run as clawvisor's figure.

    .venv/bin/python -m bench.all [--only roundtrip monitors ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS, lossless_rate, machine

BENCH = Path(__file__).resolve().parent
PY = ".venv/bin/python"


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()

    def command(self, quick: bool) -> list[str]:
        return [sys.executable, "-m", f"bench.{self.name}", *(self.quick if quick else self.args)]

    def shown(self) -> str:
        return " ".join([PY, "-m", f"bench.{self.name}", *self.args])


STEPS = (
    Step(
        "roundtrip",
        "decision round trip beside polkit, pkcheck, sudo -n and the echo floor",
        ("--rounds", "5", "--requests", "4000"),
        ("--rounds", "1", "--requests", "1000"),
    ),
    Step(
        "allow_path",
        "the allow path's steps, each costed in process",
        (),
        ("--calls", "5000"),
    ),
    Step(
        "policy_eval",
        "policy evaluation beside cedarpy and casbin",
        (),
        ("--requests", "50", "--repeat", "5"),
    ),
    Step("ask_latency", "ask latency: intent to prompt at an agent", (), ("--rounds", "50")),
    Step(
        "monitors",
        "monitors beside bpftrace and inotifywait",
        (),
        (
            "--rates",
            "25000",
            "100000",
            "--seconds",
            "2",
            "--count",
            "50000",
            "--rounds",
            "1",
            "--bursts",
            "1",
        ),
    ),
    Step(
        "eventlog",
        "the kept event log at the monitors' rates beside journald; decisions meanwhile",
        (),
        ("--rates", "100000", "400000", "--seconds", "2", "--daemon-seconds", "4", "--rounds", "1"),
    ),
    Step(
        "secret_scan",
        "sync-out's secret scan per MiB beside detect-secrets and grep",
        (),
        ("--sizes", "0.25", "1", "--repeat", "1", "--syncs", "1"),
    ),
    Step(
        "openclaw_turn",
        "one OpenClaw turn: what clawvisor's plugin adds beside OpenClaw's own tool",
        (),
        ("--turns", "2", "--reads", "5"),
    ),
    Step("nft_counters", "nftables counters: JSON API beside nft -j", (), ("--reads", "20")),
    Step("footprint", "footprint: memory and start to READY", (), ("--requests", "5000")),
    Step("provision", "provisioning 20 workloads beside a script", ()),
    Step(
        "proxy",
        "egress proxy: first byte through Squid beside direct; allowlist reload",
        (),
        ("--requests", "60", "--reloads", "4"),
    ),
    Step(
        "fleet",
        "the fleet's trail: records/s into one collector from two VMs; VM to collector delay",
        (),
        ("--records", "5000", "--samples", "40"),
    ),
    Step(
        "policy_diff",
        "policy diff of two 1,000-rule policies",
        (),
        ("--rules", "200", "--repeat", "1"),
    ),
    Step(
        "web_console",
        "web console: an ask to its card in Chromium; memory after an hour's monitor events",
        (),
        ("--rounds", "20", "--events", "5000"),
    ),
)


@dataclass(frozen=True)
class Row:
    section: str
    figure: str
    ours: str
    peer: str
    theirs: str
    ratio: str
    aim: str
    command: str


def _x(v: float) -> str:
    return f"{v:.1f}x" if v < 100 else f"{v:.0f}x"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def d_before(d: dict[str, Any]) -> str:
    """The --before checkout a roundtrip result was measured against (its commit)."""
    before = d.get("before") or "?"
    return str(Path(before).name.removeprefix("before-"))


def monitors_section() -> list[str]:
    """The monitors step's conditions and the daemon's CPU per event (bench/monitors.py),
    below the table: what explains its loss rows."""
    d = _load("monitors")
    if d is None or not d.get("loss_clawvisor"):
        return []
    load = d.get("load_before")
    per = ", ".join(
        f"{r['offered_rate']:,}/s: {1e6 * r['daemon_cpu_s'] / max(r['captured'], 1):.0f} µs"
        for r in d["loss_clawvisor"]
    )
    s = d.get("slowdown") or {}
    return [
        "## The monitors' runs",
        "",
        f"Measured {measured(d, 'monitors')} UTC (`{PY} -m bench.monitors`"
        + (f"; load average {load[0]:.2f} before it started" if load else "")
        + f"). The daemon's CPU per captured event, by offered rate: {per}. Events the "
        "daemon's loop does not drain in time are lost in the kernel's ring buffer "
        "(`kernel_lost` in `results/monitors.json`)."
        + (
            f" The untraced runs start once the daemon has drained the traced run's events "
            f"({s['backlog_s']:.1f} s, median)."
            if "backlog_s" in s
            else ""
        ),
        "",
    ]


def corpora_section() -> list[str]:
    """The monitors against the attack and benign corpora (tests/integration/test_corpora.py
    writes the report), below the table: counts, not comparisons."""
    d = _load("corpora")
    if d is None:
        return []
    attacks = d["attack"]
    by = {k: sum(1 for a in attacks if a["caught"] == k) for k in ("specific", "generic", "missed")}
    false = [b["name"] for b in d["benign"] if b["high"]]
    return [
        "## The monitors against the corpora",
        "",
        f"Each behaviour run as a real workload user under the real BPF monitors "
        f"(`{PY} -m pytest tests/integration/test_corpora.py`, measured "
        f"{measured(d, 'corpora')} UTC; per behaviour, the alerts raised, in "
        "`results/corpora.json`).",
        "",
        "| corpus | behaviours | caught by a specific trigger | only generically | missed "
        "| high or critical alerts |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| attacks (tests/data) | {len(attacks)} | {by['specific']} | {by['generic']} "
        f"| {by['missed']} | |",
        f"| benign (builds, git, pip, ssh-keygen, tar, a gateway starting MCP servers) "
        f"| {len(d['benign'])} | | | | {len(false)} |",
        "",
    ]


def allow_path_section() -> list[str]:
    """The allow path step by step (bench/allow_path.py), below the table: costs, not
    comparisons, so they are not rows."""
    d = _load("allow_path")
    if d is None:
        return []
    return [
        "",
        "## The allow path, step by step",
        "",
        "What an allowed `status` costs the daemon in each step of the pipeline, measured in "
        f"process (`{PY} -m bench.allow_path`; medians, µs). The rest of a round trip's CPU "
        "(see the decisions rows) is the event loop and the socket system calls.",
        "",
        d["table"],
    ]


def roundtrip_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    rows: list[Row] = []
    by = {r["clients"]: r for r in d["rows"]}
    one = by.get(1)
    if one:
        c = one["clawvisor"]["p50_us"]
        ratio = one.get("polkit_over_clawvisor_p50", one["polkit_dbus"]["p50_us"] / c)
        rows.append(
            Row(
                "decisions",
                "allow decision p50, 1 client (µs)",
                f"{c:.0f}",
                "polkit CheckAuthorization (D-Bus)",
                f"{one['polkit_dbus']['p50_us']:.0f}",
                f"{_x(ratio)} faster",
                "≥ 8x" + (" met" if ratio >= 8 else " NOT met"),
                cmd,
            )
        )
        for key, name in (("pkcheck", "pkcheck"), ("sudo", "sudo -n /bin/true")):
            r = one[key]["p50_us"] / c
            aim = ""
            if key == "sudo":
                aim = "≥ 50x" + (" met" if r >= 50 else " NOT met")
            rows.append(
                Row(
                    "decisions",
                    "allow decision p50, 1 client (µs)",
                    f"{c:.0f}",
                    name,
                    f"{one[key]['p50_us']:.0f}",
                    f"{_x(r)} faster",
                    aim,
                    cmd,
                )
            )
        f = one["floor"]["p50_us"]
        rows.append(
            Row(
                "decisions",
                "allow decision p50, 1 client (µs)",
                f"{c:.0f}",
                "echo floor (no checks)",
                f"{f:.0f}",
                f"{_x(c / f)} the floor's time",
                "≤ 4x" + (" met" if c / f <= 4 else " NOT met"),
                cmd,
            )
        )
        cv, fl = one["clawvisor"], one["floor"]
        rows.append(
            Row(
                "decisions",
                "CPU per allowed status, 1 client (µs): daemon + journald",
                f"{cv['server_cpu_us_per_req']:.0f} + {cv['journald_cpu_us_per_req']:.0f}",
                "echo floor's server",
                f"{fl['server_cpu_us_per_req']:.0f}",
                f"{_x(cv['server_cpu_us_per_req'] / fl['server_cpu_us_per_req'])} the floor's",
                "",
                cmd,
            )
        )
        if "denied" in one:
            dp = one["denied"]["p50_us"]
            rows.append(
                Row(
                    "decisions",
                    "denied decision p50, 1 client (µs; no executor, no result)",
                    f"{dp:.0f}",
                    "echo floor (no checks)",
                    f"{f:.0f}",
                    f"{_x(dp / f)} the floor's time",
                    "",
                    cmd,
                )
            )
        if "before" in one:
            b = one["before"]["p50_us"]
            rows.append(
                Row(
                    "decisions",
                    "allow decision p50, 1 client (µs), this build vs the one before",
                    f"{c:.0f}",
                    f"build at commit {d_before(d)}",
                    f"{b:.0f}",
                    f"{_x(b / c)} faster" if b >= c else f"{_x(c / b)} slower",
                    "not slower" + (" met" if c <= b * 1.05 else " NOT met"),
                    cmd + f" --before build/before-{d_before(d)}",
                )
            )
        rows.append(
            Row(
                "decisions",
                "allow decision p99, 1 client (µs)",
                f"{one['clawvisor']['p99_us']:.0f}",
                "polkit (D-Bus)",
                f"{one['polkit_dbus']['p99_us']:.0f}",
                f"{_x(one['polkit_dbus']['p99_us'] / one['clawvisor']['p99_us'])} faster",
                "",
                cmd,
            )
        )
    for n in sorted(by):
        if n == 1:
            continue
        r = by[n]
        c, p, f = (r[k]["throughput_rps"] for k in ("clawvisor", "polkit_dbus", "floor"))
        aim = ""
        if n == max(by):
            aim = "≥ 10,000/s" + (" met" if c >= 10000 else " NOT met")
        rows.append(
            Row(
                "decisions",
                f"decisions/s, {n} clients, journald on",
                f"{c:,.0f}",
                "polkit (D-Bus)",
                f"{p:,.0f}",
                f"{_x(c / p)} more",
                aim,
                cmd,
            )
        )
        rows.append(
            Row(
                "decisions",
                f"decisions/s, {n} clients, journald on",
                f"{c:,.0f}",
                "echo floor",
                f"{f:,.0f}",
                f"{_x(f / c)} fewer",
                "",
                cmd,
            )
        )
        cp, pp = r["clawvisor"]["p50_us"], r["polkit_dbus"]["p50_us"]
        rows.append(
            Row(
                "decisions",
                f"decision p50, {n} clients (µs)",
                f"{cp:.0f}",
                "polkit (D-Bus)",
                f"{pp:.0f}",
                f"{_x(pp / cp)} faster",
                "",
                cmd,
            )
        )
    return rows


def policy_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    rows = []
    for r in d["rows"]:
        c = r["clawvisor_us"]
        for key, name in (("cedarpy_us", "cedarpy (Cedar)"), ("casbin_us", "casbin")):
            rows.append(
                Row(
                    "policy",
                    f"decision, {r['rules']} rules (µs)",
                    f"{c:.2f}",
                    name,
                    f"{r[key]:.1f}",
                    f"{_x(r[key] / c)} faster",
                    "",
                    cmd,
                )
            )
    w = d.get("worst")
    if w:
        rows.append(
            Row(
                "policy",
                "worst case, 1,000 globs on one action (µs)",
                f"{w['clawvisor_us']:.0f}",
                "cedarpy",
                f"{w['cedarpy_us']:.0f}",
                f"{_x(w['cedarpy_us'] / w['clawvisor_us'])} faster",
                "",
                cmd,
            )
        )
    return rows


def ask_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    a, f = d["ask_to_prompt_p50_ms"], d["allow_round_trip_p50_ms"]
    return [
        Row(
            "approvals",
            "ask: intent to prompt at the agent, p50 (ms)",
            f"{a:.2f}",
            "allow round trip (floor)",
            f"{f:.2f}",
            f"{_x(a / f)} the floor's time",
            "< 20 ms" + (" met" if a < 20 else " NOT met"),
            cmd,
        )
    ]


def monitor_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    rows = []
    for o, b in zip(d.get("loss_clawvisor", []), d.get("loss_bpftrace", []), strict=False):
        rate = o["offered_rate"]
        aim = ""
        if rate == 100000:
            # `lost` is opens less events captured: the load's own exec and exit make it
            # negative when nothing is lost; the kernel's count says whether anything was.
            met = o["lost"] <= 0 and o.get("kernel_lost", 0) == 0
            aim = "no loss at 100,000/s" + (" met" if met else " NOT met")
        rows.append(
            Row(
                "monitors",
                f"opens captured at {rate:,}/s offered",
                f"{o['captured']:,}/{o['opens']:,} (lost {o['lost']:,})",
                "bpftrace, same tracepoint",
                f"{b['captured']:,}/{b['opens']:,}",
                f"load ran at {o['achieved_rate']:,}/s vs {b['achieved_rate']:,}/s",
                aim,
                cmd,
            )
        )
    s = d.get("slowdown")
    if s:
        rows.append(
            Row(
                "monitors",
                "syscall-heavy load, traced uid (slowdown)",
                f"{s['clawvisor_ratio']:.2f}x",
                "bpftrace",
                f"{s['bpftrace_ratio']:.2f}x",
                f"{_x((s['bpftrace'] - s['none']) / max(s['clawvisor'] - s['none'], 1e-9))}"
                " less added time",
                "less than bpftrace"
                + (" met" if s["clawvisor_ratio"] < s["bpftrace_ratio"] else " NOT met"),
                cmd,
            )
        )
        untraced = s["untraced_clawvisor_ratio"]
        rows.append(
            Row(
                "monitors",
                "same load, untraced uid (slowdown)",
                f"{untraced:.3f}x",
                "bpftrace",
                f"{s['untraced_bpftrace_ratio']:.3f}x",
                "bpftrace: 1 tracepoint; ours: ~120, one array lookup each when unwatched",
                "< 1.02x" + (" met" if untraced < 1.02 else " NOT met"),
                cmd,
            )
        )
    for i, r in enumerate(d.get("overlay", [])):
        rows.append(
            Row(
                "monitors",
                f"overlay burst {i + 1}: files seen of {r['files']:,}",
                f"{r['clawvisor']:,}",
                "inotifywait -mr",
                f"{r['inotifywait']:,}",
                f"{r['files'] - r['inotifywait']:,} missed by the peer",
                "",
                cmd,
            )
        )
    return rows


def eventlog_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    """The kept event log (bench/eventlog.py): its lossless rate against journald's and a
    plain append's, and the decisions' latency under the monitors' load with it on/off."""
    ours, top = lossless_rate(d["writer"]), max(r["offered_rate"] for r in d["writer"])
    journald, append = lossless_rate(d["journald"]), lossless_rate(d["append"])
    shown = f"{ours:,}" + (f" (of {top:,} offered, the most tried)" if ours >= 0.99 * top else "")
    rows = [
        Row(
            "event log",
            "events/s into the kept log without loss (writer, in process)",
            shown,
            f"journald, own namespace, no rate limit (its pace, {d['seconds']:g} s runs)",
            f"{journald:,}",
            f"{_x(ours / journald)} more" if journald else "peer kept none",
            "≥ 100,000/s" + (" met" if ours >= 100000 else " NOT met"),
            cmd,
        ),
        Row(
            "event log",
            "events/s into the kept log without loss (writer, in process)",
            shown,
            "plain append, one write() per event on the loop",
            f"{append:,}",
            f"{_x(ours / append)} more" if append else "peer kept none",
            "",
            cmd,
        ),
    ]
    idle = next((r for r in d["daemon"] if r["offered_rate"] == 0), None)
    for on in (r for r in d["daemon"] if r["offered_rate"] and r["event_log"]):
        off = next(
            (
                r
                for r in d["daemon"]
                if r["offered_rate"] == on["offered_rate"] and not r["event_log"]
            ),
            None,
        )
        rate = on["offered_rate"]
        rows.append(
            Row(
                "event log",
                f"daemon: opens kept in the log at {rate:,}/s offered",
                f"{on['kept']:,}/{on['opens']:,}",
                "events the BPF monitor captured (same run, every kind)",
                f"{on['captured']:,}",
                f"{on['kept'] / on['opens']:.1%} of the opens kept",
                f"no loss at {rate:,}/s" + (" met" if on["lost"] == 0 else " NOT met"),
                cmd,
            )
        )
        for key in ("p50_us", "p99_us"):
            if off is not None:
                rows.append(
                    Row(
                        "event log",
                        f"status {key[:3]} under {rate:,} events/s, kept log on (µs)",
                        f"{on[key]:.0f}",
                        "same load, kept log off",
                        f"{off[key]:.0f}",
                        f"{_x(on[key] / off[key])} the time",
                        "",
                        cmd,
                    )
                )
            if idle is not None:
                rows.append(
                    Row(
                        "event log",
                        f"status {key[:3]} under {rate:,} events/s, kept log on (µs)",
                        f"{on[key]:.0f}",
                        "idle daemon, kept log on",
                        f"{idle[key]:.0f}",
                        f"{_x(on[key] / idle[key])} the time",
                        "",
                        cmd,
                    )
                )
    return rows


def secret_scan_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    """sync-out's secret scan (bench/secret_scan.py): seconds per MiB beside detect-secrets'
    own CLI and a regex-only grep, and another workload's status p99 while it runs."""
    rows = []
    for r in d["rows"]:
        s = r["scan_s_per_mib"]
        rows.append(
            Row(
                "sync-out",
                f"secret scan of {r['mib']:g} MiB of text, in the copy's child (s/MiB)",
                f"{s:.2f}",
                "detect-secrets scan (its CLI, whole run)",
                f"{r['detect_secrets_cli_s_per_mib']:.2f}",
                f"{_x(s / r['detect_secrets_cli_s_per_mib'])} the CLI's time"
                if r["detect_secrets_cli_s_per_mib"] > 0
                else "CLI too fast to time",
                "",
                cmd,
            )
        )
        rows.append(
            Row(
                "sync-out",
                f"secret scan of {r['mib']:g} MiB of text, in the copy's child (s/MiB)",
                f"{s:.2f}",
                "grep -P with detect-secrets' regexes only",
                f"{r['grep_s_per_mib']:.4f}",
                f"{_x(s / r['grep_s_per_mib'])} grep's time"
                if r["grep_s_per_mib"] > 0
                else "grep too fast to time",
                "",
                cmd,
            )
        )
    dm = d.get("daemon")
    if dm:
        rows.append(
            Row(
                "sync-out",
                f"another workload's status p99 while {dm['mib']:g} MiB sync-outs scan (µs)",
                f"{dm['during']['p99_us']:.0f}",
                "same daemon, nothing else running",
                f"{dm['idle']['p99_us']:.0f}",
                f"{_x(dm['during']['p99_us'] / dm['idle']['p99_us'])} the time",
                "",
                cmd,
            )
        )
    return rows


def measured(d: dict[str, Any], name: str) -> str:
    """When a step's results were measured: its own record, else its file's time."""
    if d.get("measured"):
        return str(d["measured"])
    mtime = (RESULTS / f"{name}.json").stat().st_mtime
    return f"{datetime.fromtimestamp(mtime, UTC):%Y-%m-%d %H:%M}"


def eventlog_when(d: dict[str, Any]) -> str:
    """When the writer and the daemon parts were measured (one date if one run)."""
    w, dm = d.get("writer_measured"), d.get("daemon_measured")
    if w and dm and w != dm:
        return f"{w} (writer) and {dm} (daemon)"
    return measured(d, "eventlog")


def eventlog_section() -> list[str]:
    """The kept event log's runs in full (bench/eventlog.py), below the table."""
    d = _load("eventlog")
    if d is None:
        return []
    load = d.get("load_before")
    return [
        "## The kept event log at the monitors' rates",
        "",
        f"Measured {eventlog_when(d)} UTC (`{PY} -m bench.eventlog`"
        + (f"; load average {load[0]:.2f} before it started" if load else "")
        + f"). Writer: `Open` events handed to the real `EventLog` on an asyncio loop for "
        f"{d['seconds']:g} s at each rate, then read back with the log's reader; beside it "
        "journald (its own namespace, rate limit off, one datagram per event, the send "
        "waiting when its queue is full) and a plain append (one write() per event). A "
        "sink's rate without loss is the highest pace it took events at with every one read "
        "back (journald keeps all it takes, but holds the sender to its own pace). "
        "Daemon: a workload opening /dev/null for writing at the rate under the real BPF "
        "monitor, another workload asking `status` once a millisecond meanwhile "
        f"({d.get('daemon_seconds', 10):g} s runs, {d.get('rounds', 1)} interleaved rounds: "
        "latencies and CPU are medians, counts those of the round with the median capture).",
        "",
        d["table"],
        "",
        *eventlog_notes(d),
    ]


def eventlog_notes(d: dict[str, Any]) -> list[str]:
    """What the daemon runs say, in words, from their figures."""
    out = []
    for r in d.get("daemon", []):
        if not r["offered_rate"] or not r["event_log"]:
            continue
        rate, opens, kept, captured = r["offered_rate"], r["opens"], r["kept"], r["captured"]
        off = next(
            (o for o in d["daemon"] if o["offered_rate"] == rate and not o["event_log"]), None
        )
        if kept >= opens:
            out.append(
                f"- At {rate:,} opens/s the daemon kept every one ({kept:,}); its CPU was "
                f"{r['daemon_cpu_s']:.1f} s in the {d.get('daemon_seconds', 10):g} s run."
            )
        else:
            out.append(
                f"- At {rate:,} opens/s the daemon captured {captured:,} of {opens:,} (the "
                f"rest were lost in the kernel's ring buffer, {r['kernel_lost']:,}: its "
                f"event loop could not drain it) and the kept log held {kept:,} of them: "
                "the loss is upstream of the log, which keeps what the loop hands it. "
                f"Meanwhile `status` took {r['p50_us'] / 1000:,.0f} ms at the median "
                f"({r['decisions']:.0f} answered in the run)"
                + (
                    f"; with the kept log off, {off['p50_us'] / 1000:,.0f} ms "
                    f"({off['decisions']:.0f} answered)."
                    if off
                    else "."
                )
            )
    return out + ([""] if out else [])


def secret_scan_section() -> list[str]:
    """sync-out's secret scan per MiB (bench/secret_scan.py), below the table."""
    d = _load("secret_scan")
    if d is None:
        return []
    load = d.get("load_before")
    return [
        "## sync-out's secret scan per MiB",
        "",
        f"Measured {measured(d, 'secret_scan')} UTC (`{PY} -m bench.secret_scan`"
        + (f"; load average {load[0]:.2f} before it started" if load else "")
        + "). The copy's child process (`python -I -m executors.sync_out_copy`) on one "
        "file of generated, secret-free source-like text, scan on and off (the scan is the "
        "difference; medians), beside `detect-secrets scan` on the same file and `grep -P` "
        "with the regular expressions of detect-secrets' regex-based plugins (no entropy "
        "or keyword checks).",
        "",
        d["table"],
        "",
        *secret_scan_notes(d),
    ]


def secret_scan_notes(d: dict[str, Any]) -> list[str]:
    """The daemon run in words: where the scan's time goes and what it costs others."""
    dm = d.get("daemon")
    alone = next((r for r in d["rows"] if dm and r["mib"] == dm["mib"]), None)
    if not dm or alone is None:
        return []
    took = sorted(dm["sync_out_s"])[len(dm["sync_out_s"]) // 2]
    return [
        f"- Through the daemon, a {dm['mib']:g} MiB sync-out took {took:.1f} s (the copy alone, "
        f"above: {alone['copy_scan_on_s']:.1f} s): the scan runs in the copy's child, so the "
        "daemon's loop is not blocked, but on two cores the child shares the CPU with the "
        "daemon and the asking workload; the asking workload's `status` p99 went from "
        f"{dm['idle']['p99_us'] / 1000:.1f} ms to {dm['during']['p99_us'] / 1000:.1f} ms.",
        f"- At {alone['scan_s_per_mib']:.1f} s/MiB, sync-out's default timeout "
        f"({d.get('default_timeout_s', 30):g} s) covers about "
        f"{d.get('default_timeout_s', 30) / alone['scan_s_per_mib']:.1f} MiB of text a "
        f"request, while its default caps allow {d.get('max_file_mib', 16):g} MiB a file and "
        f"{d.get('max_request_mib', 64):g} MiB a request: a larger text request times out "
        "(nothing copied) unless `[executors.sync-out] timeout` is raised.",
        "",
    ]


def nft_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    return [
        Row(
            "nftables",
            f"read {d['counters']} counters of {d['workloads']} workloads (ms)",
            f"{d['api_ms']:.2f}",
            "nft -j list counters (subprocess)",
            f"{d['subprocess_ms']:.2f}",
            f"{_x(d['subprocess_ms'] / d['api_ms'])} faster",
            "",
            cmd,
        )
    ]


def footprint_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    return [
        Row(
            "footprint",
            "RSS idle, all monitors loaded (MiB)",
            f"{d['clawvisor_rss_idle_mib']:.0f}",
            "polkitd",
            f"{d['polkitd_rss_idle_mib']:.0f}",
            f"{_x(d['clawvisor_rss_idle_mib'] / d['polkitd_rss_idle_mib'])} polkitd's",
            "",
            cmd,
        ),
        Row(
            "footprint",
            "private (anonymous) memory idle (MiB)",
            f"{d['clawvisor_anon_idle_mib']:.0f}",
            "echo floor (Python, no checks)",
            f"{d['floor_anon_idle_mib']:.0f}",
            f"{_x(d['clawvisor_anon_idle_mib'] / d['floor_anon_idle_mib'])} the floor's",
            "",
            cmd,
        ),
        Row(
            "footprint",
            f"private memory after {d['requests']:,} requests (MiB)",
            f"{d['clawvisor_anon_load_mib']:.0f}",
            "echo floor, same load",
            f"{d['floor_anon_load_mib']:.0f}",
            f"+{d['clawvisor_anon_load_mib'] - d['clawvisor_anon_idle_mib']:.1f} MiB vs "
            f"+{d['floor_anon_load_mib'] - d['floor_anon_idle_mib']:.1f} MiB",
            "",
            cmd,
        ),
        Row(
            "footprint",
            "start to READY, all monitors (s)",
            f"{d['clawvisor_start_s']:.2f}",
            "clawvisor without monitors",
            f"{d['clawvisor_bare_start_s']:.2f}",
            f"{_x(d['clawvisor_start_s'] / d['clawvisor_bare_start_s'])} (BPF compile)",
            "",
            cmd,
        ),
        Row(
            "footprint",
            "start to ready, no monitors (s)",
            f"{d['clawvisor_bare_start_s']:.2f}",
            "polkitd (to its bus name)",
            f"{d['polkitd_start_s']:.3f}",
            f"{_x(d['clawvisor_bare_start_s'] / d['polkitd_start_s'])} polkitd's",
            "",
            cmd,
        ),
    ]


def provision_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    return [
        Row(
            "provisioning",
            f"provision {d['workloads']} workloads, first run (s)",
            f"{d['first_s']:.2f}",
            "hand-written useradd/setfacl/nft script",
            f"{d['floor_s']:.2f}",
            f"{_x(d['first_s'] / d['floor_s'])} the script's time",
            "",
            cmd,
        )
    ]


def proxy_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    """The egress proxy (bench/proxy.py): an HTTPS request's first byte through Squid beside
    the same request sent directly, and an allowlist reload with a long list beside a short
    one, all in one run."""
    big, small = str(d["names"]), str(d["peer_names"])
    rows = []
    for n in (small, big):
        t = d["ttfb"][n]
        for key in ("p50", "p99"):
            p, q = t["proxied"][f"{key}_ms"], t["direct"][f"{key}_ms"]
            rows.append(
                Row(
                    "egress proxy",
                    f"HTTPS time to first byte through the proxy (CONNECT, TLS, GET), "
                    f"{int(n):,} names listed, {key} (ms)",
                    f"{p:.2f}",
                    "direct to the same server, same namespace",
                    f"{q:.2f}",
                    f"{_x(p / q)} the time",
                    "",
                    cmd,
                )
            )
    r, s = d["reload"][big], d["reload"][small]
    for key, figure in (
        ("reload", "egress-allow of one more name to its first spliced answer"),
        ("squid_reconfigure", "Squid's own reconfigure (its cache.log)"),
    ):
        a, b = r[key]["p50_ms"], s[key]["p50_ms"]
        rows.append(
            Row(
                "egress proxy",
                f"{figure}, {int(big):,} names listed, p50 (ms)",
                f"{a:.0f}",
                f"the same, {int(small):,} names listed",
                f"{b:.0f}",
                f"{_x(a / b)} the time",
                "",
                cmd,
            )
        )
    return rows


def fleet_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    """The fleet's trail (bench/fleet.py): two VMs' journal-uploads into one collector
    through stunnel with client certificates, beside journal-remote alone on plain HTTP."""
    ours, plain = d["throughput"]["ours"], d["throughput"]["plain"]
    rows = [
        Row(
            "fleet trail",
            f"records/s one collector takes from two VMs ({d['expected']:,} trail records, "
            "client certificates, stunnel, journal-remote)",
            f"{ours['per_s']:,.0f}",
            "journal-remote alone, plain HTTP, same uploads",
            f"{plain['per_s']:,.0f}",
            f"{_x(ours['per_s'] / plain['per_s'])} the rate",
            "",
            cmd,
        )
    ]
    for key in ("p50", "p99"):
        a, b = d["delay"]["ours"][f"{key}_ms"], d["delay"]["plain"][f"{key}_ms"]
        rows.append(
            Row(
                "fleet trail",
                f"a record written on a VM to readable on the collector, {key} (ms)",
                f"{a:.0f}",
                "journal-remote alone, plain HTTP",
                f"{b:.0f}",
                f"{_x(a / b)} the time",
                "",
                cmd,
            )
        )
    return rows


def proxy_section() -> list[str]:
    """The proxy's reload in parts (bench/proxy.py), below the table."""
    d = _load("proxy")
    if d is None:
        return []
    r = d["reload"][str(d["names"])]
    load = d.get("load_before")

    def p50(key: str) -> str:
        return f"{r[key]['p50_ms']:.1f} ms"

    return [
        "## The egress proxy's reload",
        "",
        f"Measured {measured(d, 'proxy')} UTC (`{PY} -m bench.proxy`; {d['squid']}"
        + (f"; load average {load[0]:.2f} before it started" if load else "")
        + f"). With {d['names']:,} names listed, an `egress-allow` took {p50('reload')} "
        "at the median. The medians of its parts: "
        f"`control.allow` rendering, writing and signalling {p50('allow_call')}; Squid "
        f"starting to reconfigure {p50('sighup_to_reconfiguring')} later; its reconfigure "
        f"{p50('squid_reconfigure')} (its cache.log's `Reconfiguring Squid Cache` line to its "
        "`Accepting` line for the workload's port, stamped as Squid wrote them; the port is "
        "closed meanwhile, so a new connection in that window is refused); then "
        f"{p50('accepting_to_spliced')} to the polling client's first "
        f"spliced answer (a poll every {d['poll_ms']:g} ms). Squid's CPU per reload: "
        f"{r['squid_cpu_ms_p50']:.0f} ms with {d['names']:,} names, "
        f"{d['reload'][str(d['peer_names'])]['squid_cpu_ms_p50']:.0f} ms with "
        f"{d['peer_names']:,}. Through the proxy, the request's name is the last of the "
        "list's `ssl_bump splice` rules, which Squid tries in order. A tunnel opened before "
        f"a reload still carried a request after it in {d['tunnels_kept']} reloads.",
        "",
    ]


def policy_diff_section() -> list[str]:
    """`policy diff` of two large policies (bench/policy_diff.py), below the table: no tool
    answers the same question, so it is a cost against its aim, not a comparison."""
    d = _load("policy_diff")
    if d is None:
        return []
    return [
        "## `policy diff` on large policies",
        "",
        f"Every changed (source, action, target) cell with a witness intent, or a proof that "
        f"none is wider (`{PY} -m bench.policy_diff`):",
        "",
        d["table"],
        "",
    ]


def openclaw_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    """One OpenClaw turn (bench/openclaw_turn.py): the tool step through clawvisor's plugin
    beside OpenClaw's own tool, and the per-turn tool-list read beside the whole turn."""
    c, o = d["clawvisor"], d["openclaw_own"]
    caps = d["capabilities_ms"]
    return [
        Row(
            "OpenClaw",
            "tool step of a turn calling clawvisor_notify (allowed intent), median (ms)",
            f"{c['tool_ms']:.0f}",
            "the same turn calling OpenClaw's own tool_search",
            f"{o['tool_ms']:.0f}",
            f"{_x(c['tool_ms'] / o['tool_ms'])} the time",
            "",
            cmd,
        ),
        Row(
            "OpenClaw",
            "the plugin's per-turn capabilities read, median (ms)",
            f"{caps:.0f}",
            "the whole turn it is part of (ms)",
            f"{c['turn_s'] * 1000:.0f}",
            f"{caps / (c['turn_s'] * 1000):.1%} of the turn",
            "",
            cmd,
        ),
        Row(
            "OpenClaw",
            "one whole turn with a clawvisor call, median (s)",
            f"{c['turn_s']:.2f}",
            "the same turn with OpenClaw's own tool",
            f"{o['turn_s']:.2f}",
            f"{_x(c['turn_s'] / o['turn_s'])} the time",
            "",
            cmd,
        ),
    ]


def web_console_rows(d: dict[str, Any], cmd: str) -> list[Row]:
    """The web console (bench/web_console.py): an ask from the workload's intent to its card
    in the browser's DOM beside a raw control-socket subscriber holding the same ask, and the
    console's memory after an hour's worth of monitor events beside it idle after login."""
    a, m = d["asks"], d["memory"]
    b, r = a["browser_dom"], a["raw_subscriber"]
    rows = []
    for key in ("p50_ms", "p99_ms"):
        aim = ""
        if key == "p99_ms":
            aim = "< 1 s" + (" met" if b[key] < 1000 else " NOT met")
        rows.append(
            Row(
                "web console",
                f"ask: intent to its card in the Pending page's DOM (Chromium), {key[:3]} (ms)",
                f"{b[key]:.1f}",
                "raw control-socket subscriber, same asks (floor)",
                f"{r[key]:.1f}",
                f"{_x(b[key] / r[key])} the floor's time",
                aim,
                cmd,
            )
        )
    got = m["events_received"]
    rows.append(
        Row(
            "web console",
            f"console VmRSS after {got:,} monitor events (an hour at 10/s, in "
            f"{m['load_seconds']:.0f} s), Activity page open (MiB)",
            f"{m['rss_end_mib']:.1f}",
            "same console idle after login",
            f"{m['rss_idle_after_login_mib']:.1f}",
            f"{_x(m['rss_end_mib'] / m['rss_idle_after_login_mib'])} the idle's",
            "",
            cmd,
        )
    )
    return rows


def web_console_section() -> list[str]:
    """How the web console's figures were taken (bench/web_console.py), below the table."""
    d = _load("web_console")
    if d is None:
        return []
    a, m = d["asks"], d["memory"]
    p, s = a["browser_painted"], a["browser_seen_by_bench"]
    extra = a.get("browser_dom_minus_raw")
    text = (
        f"Measured {measured(d, 'web_console')} UTC (`{PY} -m bench.web_console`; "
        f"{a['rounds']} asks after {a['warmup']} unmeasured, headless Chromium). An ask is "
        "timed from the bench's `sendall` (time.monotonic()) to a MutationObserver in the "
        "page seeing the card's element (performance.now(); both clocks are CLOCK_MONOTONIC, "
        "their offset measured by the fastest of 30 CDP round trips, "
        f"{max(a['clock_offset_rtt_ms']):.1f} ms at most, drifting "
        f"{a['clock_offset_drift_ms']:.2f} ms over the rounds). The next animation frame "
        f"(the card painted): p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms; the "
        f"bench holding the page's answer (one more CDP round trip): p50 {s['p50_ms']:.1f} "
        f"ms, p99 {s['p99_ms']:.1f} ms. The floor is another agent subscribed to the same "
        "daemon, timed on the same asks, on a machine busy with the browser and the console"
    )
    if extra:
        text += (
            f"; per ask, the card was in the DOM p50 {extra['p50_ms']:.1f} ms, p99 "
            f"{extra['p99_ms']:.1f} ms after the floor held the event"
        )
    text += "."
    if a["rounds"] <= 100:
        text += f" Of {a['rounds']} asks, p99 is the slowest."
    text += (
        f" Memory: the workload ran `/bin/true` in a loop for {m['load_seconds']:.0f} s "
        f"({m['events_per_s']:,.0f} events/s; the BPF monitor lost {m['bpf_lost']:,}); the "
        f"console's timeline counted {m['events_received']:,}, a raw monitor subscriber "
        f"{m['daemon_sent_to_a_raw_monitor_subscriber']:,}. VmRSS before the events "
        f"{m['rss_start_mib']:.1f} MiB, peak {m['rss_peak_mib']:.1f} MiB. Compressed in time, "
        "the events fill a few of the timeline's 10-second buckets, not an hour's 360."
    )
    return ["## The web console", "", text, ""]


EXTRACT = {
    "roundtrip": roundtrip_rows,
    "policy_eval": policy_rows,
    "ask_latency": ask_rows,
    "monitors": monitor_rows,
    "eventlog": eventlog_rows,
    "secret_scan": secret_scan_rows,
    "openclaw_turn": openclaw_rows,
    "nft_counters": nft_rows,
    "footprint": footprint_rows,
    "provision": provision_rows,
    "proxy": proxy_rows,
    "fleet": fleet_rows,
    "web_console": web_console_rows,
}


def results_md(rows: list[Row], ran: dict[str, float], quick: bool) -> str:
    m = machine()
    out = [
        "# clawvisor benchmarks",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {m['cores']} cores ({m['cpu']}), "
        f"kernel {m['kernel']}, Python {m['python']}"
        + (" -- QUICK profile, figures indicative only" if quick else "")
        + ". Every peer was measured in the same run; `make bench` reproduces all of it, "
        "each row's command reproduces that row.",
        "",
        "| section | figure | clawvisor | peer | peer's figure | ratio | aim | reproduce |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        out.append(
            f"| {r.section} | {r.figure} | {r.ours} | {r.peer} | {r.theirs} | {r.ratio} "
            f"| {r.aim} | `{r.command}` |"
        )
    out += allow_path_section()
    out += monitors_section()
    out += corpora_section()
    out += eventlog_section()
    out += secret_scan_section()
    out += policy_diff_section()
    out += proxy_section()
    out += web_console_section()
    out += [
        "",
        "Plots: `results/latency.png` (1-client latency distributions), "
        "`results/loss.png` (events captured against event rate), "
        "`results/throughput.png` (decisions per second against clients).",
        "",
        (
            "Step durations: " + ", ".join(f"{k} {v:.0f} s" for k, v in ran.items())
            if ran
            else "Rebuilt from each step's last results (each step measures its peers with it): "
            + ", ".join(
                f"{f.stem} {measured(_load(f.stem) or {}, f.stem)}"
                for f in sorted(RESULTS.glob("*.json"))
            )
            + " UTC"
        ),
        "",
    ]
    return "\n".join(out)


def plots() -> list[Path]:
    """The PNGs, from the steps' JSON; returns what it wrote."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rt = _load("roundtrip")
    if rt and rt.get("samples_us"):
        fig, ax = plt.subplots(figsize=(8, 5))
        for label, values in rt["samples_us"].items():
            xs = sorted(values)
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.plot(xs, ys, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("round trip (µs, log scale)")
        ax.set_ylabel("fraction of requests")
        ax.set_title("Allow decision latency, 1 client (CDF)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        written.append(_save(fig, "latency.png"))
        fig, ax = plt.subplots(figsize=(8, 5))
        clients = [r["clients"] for r in rt["rows"]]
        for key, label in (
            ("clawvisor", "clawvisor"),
            ("floor", "echo floor"),
            ("polkit_dbus", "polkit D-Bus"),
        ):
            ax.plot(
                clients, [r[key]["throughput_rps"] for r in rt["rows"]], marker="o", label=label
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("decisions per second")
        ax.set_title("Throughput against clients (journald auditing on)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        written.append(_save(fig, "throughput.png"))
    mon = _load("monitors")
    if mon and mon.get("loss_clawvisor"):
        fig, ax = plt.subplots(figsize=(8, 5))
        for key, label in (
            ("loss_clawvisor", "clawvisor (whole pipeline)"),
            ("loss_bpftrace", "bpftrace (printing each event)"),
        ):
            pts = mon[key]
            ax.plot(
                [p["offered_rate"] for p in pts],
                [100 * p["captured"] / max(p["opens"], 1) for p in pts],
                marker="o",
                label=f"{label}: % captured",
            )
            ax.plot(
                [p["offered_rate"] for p in pts],
                [100 * p["achieved_rate"] / p["offered_rate"] for p in pts],
                linestyle="--",
                marker="x",
                label=f"{label}: % of offered rate the load reached",
            )
        ax.set_xlabel("offered events per second (opens by one workload uid)")
        ax.set_ylabel("%")
        ax.set_ylim(0, 105)
        ax.set_title("Events captured against event rate")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        written.append(_save(fig, "loss.png"))
    return written


def _save(fig: Any, name: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def with_before(step: Step, commit: str) -> Step:
    """The roundtrip step also serving `status` from a worktree of `commit`."""
    if step.name != "roundtrip":
        return step
    tree = Path("build") / f"before-{commit}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], check=True)
    extra = ("--before", str(tree.resolve()))
    return Step(step.name, step.title, step.args + extra, step.quick + extra)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[s.name for s in STEPS])
    parser.add_argument("--quick", action="store_true", help="small runs (a smoke test)")
    parser.add_argument("--report-only", action="store_true", help="rebuild results.md/plots")
    parser.add_argument(
        "--before",
        metavar="COMMIT",
        help="also measure the allow path of COMMIT's code in the same run (a git worktree)",
    )
    args = parser.parse_args()
    steps = [s for s in STEPS if not args.only or s.name in args.only]
    if args.before:
        steps = [with_before(s, args.before) for s in steps]
    ran: dict[str, float] = {}
    start = time.monotonic()
    failed = []
    for i, step in enumerate(steps if not args.report_only else []):
        print(
            f"\n[{i + 1}/{len(steps)}] {step.title}  ({time.monotonic() - start:.0f} s so far)",
            flush=True,
        )
        t0 = time.monotonic()
        proc = subprocess.Popen(
            step.command(args.quick), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"    {line.rstrip()}", flush=True)
        if proc.wait() != 0:
            failed.append(step.name)
            print(f"    !! {step.name} failed (exit {proc.returncode})", flush=True)
        ran[step.name] = time.monotonic() - t0
    rows: list[Row] = []
    for step in STEPS:
        data = _load(step.name)
        if data is not None and step.name in EXTRACT:
            rows += EXTRACT[step.name](data, step.shown())
    (BENCH / "results.md").write_text(results_md(rows, ran, args.quick))
    written = plots()
    print(f"\nwrote {BENCH / 'results.md'} and {', '.join(str(p) for p in written)}")
    print(f"total {time.monotonic() - start:.0f} s")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
