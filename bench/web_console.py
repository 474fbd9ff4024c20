"""Web console: an ask from the workload's intent to its card in a browser, and the
console's memory after an hour's worth of monitor events.

A real daemon (journald auditing on, the BPF monitor on: overlay and counters off) with a
workload user and an operator user (in the daemon's control group). `clawvisor approver
web` runs as the operator on a loopback port and is logged in with its printed one-time
link from Debian's Chromium, headless, driven by Playwright, as
tests/integration/test_web_console.py does.

1. Ask latency. Each round the workload sends an `open-url` ask (rule decision `ask`) over
   intents.sock. Timed from right before `sendall` (time.monotonic()) to the card's `li`
   entering the Pending page's DOM, stamped in the page by a MutationObserver with
   performance.now(); both are CLOCK_MONOTONIC on Linux, and the offset between them is
   measured by round trips (the fastest of 30, before and after the rounds: the drift
   between the two is reported). Also: the next animation frame after the insertion (the
   card painted), and when Playwright's `evaluate` returned it to the bench (an upper
   bound: one more CDP round trip). The floor, in the same run and for the very same ask:
   a raw control-socket subscriber (`subscribe` as `cli`, as bench/ask_latency.py) holding
   the pending event. It then denies the ask (a verdict over the control socket) and the
   round waits for the card to leave the page, so the queue is empty for the next.
   The page's CSP has no 'unsafe-eval'; what Playwright evaluates goes through CDP, which
   the page's CSP does not govern (checked: `evaluate` and `wait_for_function`, with a
   function or an expression, both work on the console's pages).
2. Memory. With a second page on the Activity page the whole time, the workload user runs
   `/bin/true` in a loop until the console has received `--events` monitor events (as its
   timeline caption in that page counts them: the browser kept up to that count); the
   hour's 36,000 at 10/s, compressed into as long as the loop takes (said in the result).
   The console's VmRSS (/proc/PID/status) at the start and end, and its peak, beside the
   same console's VmRSS idle right after login. Compressed in time, the events fall into
   a few of the timeline's 10-second buckets instead of 360: the buckets are a few bytes
   each, the per-workload lists of the last 500 events are what is exercised.

    .venv/bin/python -m bench.web_console [--rounds 100] [--events 36000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TypedDict

from bench.common import machine, write_result
from tests.helpers import rig
from tests.helpers.chromium import CHROMIUM, FLAGS
from tests.helpers.rules import rule

POLICY = rule("open-url", "alpha", "ask", "@self", timeout=60) + rule("status")

# Page side: stamp every card entering #pending (and the frame after), by request id.
OBSERVE = """() => {
  window.__seen = new Map(); window.__painted = new Map(); window.__waiters = new Map();
  new MutationObserver((records) => {
    const t = performance.now();
    for (const r of records) for (const n of r.addedNodes) {
      if (n.nodeType !== 1 || !n.matches("li.card")) continue;
      const id = n.dataset.id;
      if (window.__seen.has(id)) continue;
      window.__seen.set(id, t);
      requestAnimationFrame(() => {
        window.__painted.set(id, performance.now());
        const w = window.__waiters.get(id);
        if (w) { window.__waiters.delete(id); w(); }
      });
    }
  }).observe(document.getElementById("pending"), { childList: true });
  return true;
}"""
SEEN = """async (id) => {
  if (!window.__painted.has(id)) {
    const timer = new Promise((res) => setTimeout(res, 10000));
    await Promise.race([new Promise((res) => window.__waiters.set(id, res)), timer]);
  }
  return [window.__seen.get(id) ?? null, window.__painted.get(id) ?? null];
}"""
GONE = """async (id) => {
  for (let i = 0; i < 1000; i++) {
    if (!document.querySelector(`#pending li.card[data-id="${id}"]`)) return true;
    await new Promise((res) => setTimeout(res, 5));
  }
  return false;
}"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class AsUser(TypedDict):
    user: int
    group: int
    extra_groups: list[int]


def as_user(u: rig.User) -> AsUser:
    """rig.as_user, typed for subprocess.Popen's overloads."""
    return {"user": u.uid, "group": u.gid, "extra_groups": os.getgrouplist(u.name, u.gid)}


free_port = rig.free_port


def offset_ms(page: Any, tries: int = 30) -> tuple[float, float]:
    """(monotonic ms - performance.now(), the round trip it was measured in), fastest try."""
    best = (0.0, float("inf"))
    for _ in range(tries):
        t1 = time.monotonic()
        p = float(page.evaluate("() => performance.now()"))
        t2 = time.monotonic()
        if t2 - t1 < best[1]:
            best = ((t1 + t2) / 2 * 1e3 - p, t2 - t1)
    return best[0], best[1] * 1e3


def bpf_counts(daemon: rig.Daemon) -> dict[str, Any]:
    with rig.connect_as(daemon.control, None) as c:
        c.sendall(b'{"id":"s","op":"status"}\n')
        reply = rig.read_lines(c, 1)[0]
    [m] = [m for m in reply["result"]["monitors"] if m["name"] == "bpf"]
    return {"state": m["state"], **m["counts"]}


class Console:
    """`clawvisor approver web` as the operator, on a loopback port."""

    def __init__(self, daemon: rig.Daemon, op: rig.User, home: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.err = (home / "console.stderr").open("wb")
        self.proc = subprocess.Popen(
            [str(rig.CLAWVISOR), "approver", "web", "--socket", str(daemon.control),
             "--listen", f"127.0.0.1:{self.port}", "--state-dir", str(home / "web"),
             "--config-dir", str(daemon.config_dir),
             f"--audit-arg=--log-dir={daemon.root / 'log'}"],
            stdout=subprocess.PIPE, stderr=self.err, text=True,
            env={"PATH": os.environ["PATH"], "HOME": str(home)}, **as_user(op),
        )  # fmt: skip
        assert self.proc.stdout is not None
        if "web console at" not in self.proc.stdout.readline():
            raise RuntimeError("the console did not start")
        self.link = self.proc.stdout.readline().split(": ", 1)[1].strip()
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the console did not listen") from None
                time.sleep(0.1)

    def rss(self) -> float:
        return rss_mib(self.proc.pid)

    def stop(self) -> None:
        rig.stop_process(self.proc)
        self.err.close()


def verdict(agent: socket.socket, i: int, p: dict[str, Any]) -> None:
    agent.sendall(
        json.dumps(
            {"id": f"v{i}", "op": "verdict", "request": p["id"], "digest": p["digest"],
             "allow": False, "reason": "bench"}
        ).encode()
        + b"\n"
    )  # fmt: skip


def ask_rounds(
    daemon: rig.Daemon, alpha: rig.User, page: Any, rounds: int, warmup: int
) -> dict[str, Any]:
    agent = rig.connect_as(daemon.control, None)
    agent.sendall(b'{"id":"s","op":"subscribe","agent":"cli"}\n')
    rig.read_lines(agent, 1)
    gateway = rig.connect_as(daemon.intents, alpha)
    page.evaluate(OBSERVE)
    before, rtt_before = offset_ms(page)
    raw: list[float] = []
    dom: list[float] = []
    painted: list[float] = []
    returned: list[float] = []
    try:
        for i in range(warmup + rounds):
            url = f"https://web-bench.example/{i}"
            intent: dict[str, object] = {"action": "open-url", "target": "alpha", "url": url}
            line = rig.request_line(f"a{i}", intent)
            t0 = time.monotonic()
            gateway.sendall(line)
            [event] = rig.read_lines(agent, 1)
            t_raw = time.monotonic()
            p = event["request"]
            seen, frame = page.evaluate(SEEN, p["id"])
            t_back = time.monotonic()
            if seen is None or frame is None:
                raise RuntimeError(f"ask {i}: no card for {p['id']} in 10 s")
            verdict(agent, i, p)
            rig.read_lines(agent, 2)  # the verdict's reply and the withdrawal
            [reply] = rig.read_lines(gateway, 1)
            if reply.get("status") != "denied":
                raise RuntimeError(f"ask {i}: {reply}")
            if not page.evaluate(GONE, p["id"]):
                raise RuntimeError(f"ask {i}: the card stayed after the deny")
            if i < warmup:
                continue
            start_ms = t0 * 1e3 - before  # in the page's performance.now() clock
            raw.append((t_raw - t0) * 1e3)
            dom.append(seen - start_ms)
            painted.append(frame - start_ms)
            returned.append((t_back - t0) * 1e3)
    finally:
        agent.close()
        gateway.close()
    after, rtt_after = offset_ms(page)

    def figures(xs: list[float]) -> dict[str, float]:
        return {"p50_ms": pct(xs, 0.5), "p99_ms": pct(xs, 0.99), "max_ms": max(xs),
                "mean_ms": statistics.fmean(xs)}  # fmt: skip

    return {
        "rounds": rounds,
        "warmup": warmup,
        "browser_dom": figures(dom),
        "browser_painted": figures(painted),
        "browser_seen_by_bench": figures(returned),
        "raw_subscriber": figures(raw),
        # Per ask, the card's time less the floor's (below 0 when the page stamped the card
        # before the bench's own read of the floor's event woke up).
        "browser_dom_minus_raw": figures([x - y for x, y in zip(dom, raw, strict=True)]),
        "clock_offset_drift_ms": after - before,
        "clock_offset_rtt_ms": [rtt_before, rtt_after],
        "samples_dom_ms": [round(x, 3) for x in dom],
        "samples_raw_ms": [round(x, 3) for x in raw],
    }


class MonitorTap:
    """A raw `monitor` subscriber for the workload on control.sock, counting its lines."""

    def __init__(self, daemon: rig.Daemon) -> None:
        self.sock = rig.connect_as(daemon.control, None)
        self.sock.sendall(b'{"id":"m","op":"monitor","workload":"alpha"}\n')
        rig.read_lines(self.sock, 1)
        self.count = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        self.sock.settimeout(None)
        with self.sock.makefile("rb") as f:
            try:
                for line in f:
                    if b'"event":"monitor"' in line:
                        self.count += 1
            except OSError:
                pass

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def caption_count(page: Any) -> int:
    caption = page.locator(".timeline[data-workload='alpha'] figcaption")
    text = caption.inner_text() if caption.count() else ""
    found = re.match(r"alpha: (\d+) in the last hour", text)
    return int(found[1]) if found else 0


def memory_run(
    daemon: rig.Daemon, alpha: rig.User, console: Console, page: Any, events: int, limit: float
) -> dict[str, Any]:
    tap = MonitorTap(daemon)
    time.sleep(1.0)
    start_rss, start_count = console.rss(), caption_count(page)
    bpf_before = bpf_counts(daemon)
    samples: list[list[float]] = []
    loop = subprocess.Popen(["/bin/sh", "-c", "while :; do /bin/true; done"], **as_user(alpha))
    t0 = time.monotonic()
    reached = False
    try:
        while time.monotonic() - t0 < limit:
            n = caption_count(page) - start_count
            samples.append([round(time.monotonic() - t0, 2), n, round(console.rss(), 2)])
            if n >= events:
                reached = True
                break
            time.sleep(0.5)
    finally:
        loop.kill()
        loop.wait()
    took = time.monotonic() - t0
    # What is still on its way (ring buffer, the daemon, the console's 0.25 s batches).
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 2.0:
        n = caption_count(page) - start_count
        if n != last:
            last, since = n, time.monotonic()
        time.sleep(0.25)
    received = last
    end_rss = console.rss()
    samples.append([round(time.monotonic() - t0, 2), received, round(end_rss, 2)])
    bpf_after = bpf_counts(daemon)
    tapped = tap.count
    tap.close()
    return {
        "events_target": events,
        "events_received": received,
        "reached": reached,
        "load_seconds": took,
        "events_per_s": received / took if took else 0.0,
        "daemon_sent_to_a_raw_monitor_subscriber": tapped,
        "bpf_events": bpf_after["events"] - bpf_before["events"],
        "bpf_lost": bpf_after["lost"] - bpf_before["lost"],
        "bpf_throttled": bpf_after["throttled"] - bpf_before["throttled"],
        "rss_start_mib": start_rss,
        "rss_end_mib": end_rss,
        "rss_peak_mib": max(s[2] for s in samples),
        "samples_s_events_rssmib": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--events", type=int, default=36_000)
    parser.add_argument("--limit", type=float, default=180.0, help="seconds of load at most")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    group = rig.create_group("cvbops")
    users: list[rig.User] = []
    root = rig.shared_tmpdir("clawvisor-bench-web-")
    home = rig.shared_tmpdir("clawvisor-bench-webhome-")
    daemon: rig.Daemon | None = None
    console: Console | None = None
    try:
        alpha = rig.create_user("cvbw")
        op = rig.create_user("cvbo", groups=(group,))
        users += [alpha, op]
        os.chown(home, op.uid, op.gid)
        settings = (
            f'[server]\nsocket_group = "cvt-no-such-group"\ncontrol_group = "{group}"\n'
            '[executors.open-url]\nargv = ["/bin/true", "{url}"]\n'
            "[monitors]\noverlay = false\ncounters = false\n"
        )
        with rig.journald():
            rig.write_config(
                root, workloads={"alpha": alpha}, policy={"10.toml": POLICY}, settings=settings
            )
            daemon = rig.start_daemon(root, ready_timeout=120)
            deadline = time.monotonic() + 120
            while (state := bpf_counts(daemon)["state"]) != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the BPF monitor is {state}")
                time.sleep(0.2)
            console = Console(daemon, op, home)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
                context = browser.new_context()
                page = context.new_page()
                page.goto(console.link)
                page.wait_for_selector("#status:text('connected')", timeout=10_000)
                time.sleep(2.0)
                idle_rss = console.rss()
                asks = ask_rounds(daemon, alpha, page, args.rounds, args.warmup)
                page.close()
                activity = context.new_page()
                activity.goto(console.base + "/activity")
                activity.wait_for_selector("#status:text('connected')", timeout=10_000)
                memory = memory_run(daemon, alpha, console, activity, args.events, args.limit)
                memory["rss_idle_after_login_mib"] = idle_rss
                context.close()
                browser.close()
    finally:
        if console is not None:
            console.stop()
        if daemon is not None:
            daemon.stop()
        for u in users:
            rig.delete_user(u)
        rig.delete_group(group)
        rig.cleanup_root(root)
        rig.cleanup_root(home)
    b, r = asks["browser_dom"], asks["raw_subscriber"]
    m = memory
    table = "\n".join(
        [
            "| figure | web console: card in the page's DOM | floor: raw control-socket "
            "subscriber | ratio |",
            "| --- | --- | --- | --- |",
            *(
                f"| {k[:3]} ms | {b[k]:.2f} | {r[k]:.2f} | {b[k] / r[k]:.1f}x |"
                for k in ("p50_ms", "p99_ms")
            ),
            "",
            "| console VmRSS | MiB |",
            "| --- | --- |",
            f"| idle after login | {m['rss_idle_after_login_mib']:.1f} |",
            f"| before the events | {m['rss_start_mib']:.1f} |",
            f"| after {m['events_received']:,} events ({m['load_seconds']:.0f} s) "
            f"| {m['rss_end_mib']:.1f} |",
            f"| peak | {m['rss_peak_mib']:.1f} |",
        ]
    )
    write_result("web_console", {"machine": machine(), "asks": asks, "memory": memory,
                                 "table": table})  # fmt: skip
    print(f"machine: {machine()}")
    print(table)
    print(
        f"painted p50/p99 {asks['browser_painted']['p50_ms']:.2f}/"
        f"{asks['browser_painted']['p99_ms']:.2f} ms; back in the bench p50/p99 "
        f"{asks['browser_seen_by_bench']['p50_ms']:.2f}/"
        f"{asks['browser_seen_by_bench']['p99_ms']:.2f} ms; clock offset drift "
        f"{asks['clock_offset_drift_ms']:.3f} ms"
    )
    print(
        f"events: {m['events_received']:,} at the console, "
        f"{m['daemon_sent_to_a_raw_monitor_subscriber']:,} to a raw subscriber, "
        f"bpf {m['bpf_events']:,} (lost {m['bpf_lost']}, throttled "
        f"{m['bpf_throttled']}), {m['events_per_s']:.0f}/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
