"""The fleet's trail: how many records one collector takes from two VMs, and how long a
record written on a VM takes to be readable on the collector.

Real parts, on this machine's loopback: two "VMs", each a journald of its own
(tests/helpers/private_journald.py; no rate limit, as the trail's namespace has none) with
trail-shaped records (a MESSAGE and the CLAWVISOR_* fields of an intent record, ~700
bytes), each shipped by its own systemd-journal-upload with its fleet client certificate
to `clawvisor fleet collector --run` (stunnel requiring the certificate, then
systemd-journal-remote), certificates from `clawvisor fleet certs`. The peer, in the same
run: the same uploads to systemd-journal-remote alone, plain HTTP on loopback (no TLS, no
stunnel): what the client certificates and the TLS wrapper cost.

1. Throughput: `--records` records written into each VM's journal first; then both
   uploads started at once (without --follow); timed until both have exited 0, and the
   records on the collector counted (every one must be there).
2. Delay: both uploads following; `--samples` records written, alternately on each VM,
   50 ms apart; each timed from right before the writer's `journal.send` (its
   time.monotonic()) to this process reading it from the collector's files with
   sd-journal (woken by inotify); p50 and p99.

    .venv/bin/python -m bench.fleet [--records 50000] [--samples 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from systemd import journal

from bench.common import machine, write_result
from supervisor.fleet.journal import REMOTE, UPLOAD
from tests.helpers import rig
from tests.helpers.private_journald import PrivateJournald

CONF = "[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRuntimeMaxUse=2G\n"
# The VM side: writes trail-shaped records; `bulk N` or `one ID` on stdin, answered with
# `done` or the monotonic time right before the send.
WRITER = r"""
import sys, time, json, uuid
from systemd import journal
run, vm = sys.argv[1], sys.argv[2]
params = json.dumps({"query": "x" * 80, "url": "https://example.org/" + "p" * 60})
def send(seq, probe=""):
    journal.send(
        f"intent search by alpha: allowed (rule /etc/clawvisor/policy.d/10.toml:{seq % 90})",
        SYSLOG_IDENTIFIER="clawvisor", CLAWVISOR_KIND="intent", CLAWVISOR_CHAIN=run,
        CLAWVISOR_SEQ=str(seq), CLAWVISOR_HASH=uuid.uuid4().hex * 2,
        CLAWVISOR_PREV=uuid.uuid4().hex * 2, CLAWVISOR_ACTION="search",
        CLAWVISOR_WORKLOAD="alpha", CLAWVISOR_OUTCOME="allowed",
        CLAWVISOR_REQUEST=uuid.uuid4().hex[:12], CLAWVISOR_PARAMS=params,
        BENCH_RUN=run, BENCH_VM=vm, BENCH_PROBE=probe,
    )
seq = 0
for line in sys.stdin:
    cmd, arg = line.split()
    if cmd == "bulk":
        for _ in range(int(arg)):
            seq += 1
            send(seq)
        print("done", flush=True)
    else:
        seq += 1
        t = time.monotonic()
        send(seq, arg)
        print(t, flush=True)
"""


free_port = rig.free_port


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the collector did not start") from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM by its own pid, then SIGKILL."""
    rig.stop_process(proc)


class Vm:
    """One VM: its own journald, a writer logging to it, its journal directory."""

    def __init__(self, stack: ExitStack, name: str, run: str) -> None:
        self.name = name
        self.jd = stack.enter_context(PrivateJournald(config=CONF))
        self.writer = subprocess.Popen(
            [*self.jd.client_wrapper(), sys.executable, "-c", WRITER, run, name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        stack.callback(stop, self.writer)

    def ask(self, line: str) -> str:
        assert self.writer.stdin and self.writer.stdout
        self.writer.stdin.write(line + "\n")
        self.writer.stdin.flush()
        return self.writer.stdout.readline().strip()

    @property
    def directory(self) -> Path:
        [d] = [p for p in self.jd.files.iterdir() if p.is_dir()]
        return d


@contextmanager
def collector(root: Path, certs: Path, tls: bool) -> Iterator[tuple[str, Path]]:
    """Ours (`fleet collector --run`, https) or the peer (journal-remote alone, http):
    (URL, output directory)."""
    out = root / f"out-{uuid.uuid4().hex[:6]}"
    port = free_port()
    if tls:
        argv = [str(rig.CLAWVISOR), "fleet", "collector", "--certs", str(certs), "--name",
                "collector", "--listen", f"127.0.0.1:{port}",
                "--inner", f"127.0.0.1:{free_port()}", "--output", str(out), "--run"]  # fmt: skip
    else:
        out.mkdir()
        argv = [REMOTE, f"--listen-http=127.0.0.1:{port}", f"--output={out}/", "--split-mode=host"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", out
    finally:
        stop(proc)


def upload(vm: Vm, url: str, certs: Path, state: Path, follow: bool) -> subprocess.Popen[bytes]:
    argv = [UPLOAD, f"--url={url}", f"--directory={vm.directory}", f"--save-state={state}",
            f"--follow={'yes' if follow else 'no'}"]  # fmt: skip
    if url.startswith("https"):
        argv += [f"--key={certs / f'{vm.name}.key'}", f"--cert={certs / f'{vm.name}.pem'}",
                 f"--trust={certs / 'ca.pem'}"]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def count(out: Path, run: str) -> int:
    fields = ["-o", "cat", "--output-fields=BENCH_VM", f"BENCH_RUN={run}"]
    argv = ["journalctl", "-D", str(out), *fields]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return sum(1 for line in done.stdout.splitlines() if line)


def throughput(vms: list[Vm], root: Path, certs: Path, run: str, tls: bool) -> dict[str, Any]:
    with collector(root, certs, tls) as (url, out):
        t0 = time.monotonic()
        procs = [upload(vm, url, certs, root / f"st-{uuid.uuid4().hex[:6]}", False) for vm in vms]
        codes = [p.wait(900) for p in procs]
        elapsed = time.monotonic() - t0
        assert codes == [0, 0], codes
        got = count(out, run)
    return {"seconds": elapsed, "records": got, "per_s": got / elapsed}


def delays(vms: list[Vm], root: Path, certs: Path, samples: int, tls: bool) -> dict[str, Any]:
    with collector(root, certs, tls) as (url, out):
        procs = [upload(vm, url, certs, root / f"st-{uuid.uuid4().hex[:6]}", True) for vm in vms]
        try:
            # Until the collector's file exists (the backlog shipped), then probes only.
            deadline = time.monotonic() + 300
            while not any(out.glob("*.journal")):
                assert time.monotonic() < deadline, "nothing reached the collector"
                time.sleep(0.1)
            reader = journal.Reader(path=str(out))
            reader.seek_tail()
            reader.get_previous()
            got: list[float] = []
            for i in range(samples):
                probe = uuid.uuid4().hex
                t0 = float(vms[i % 2].ask(f"one {probe}"))
                while True:
                    entry = reader.get_next()
                    if not entry:
                        assert time.monotonic() - t0 < 60, "a probe never arrived"
                        reader.wait(1)
                    elif entry.get("BENCH_PROBE") == probe:
                        got.append((time.monotonic() - t0) * 1000)
                        break
                time.sleep(0.05)
            reader.close()
        finally:
            for p in procs:
                stop(p)
    q = statistics.quantiles(got, n=100)
    return {"p50_ms": statistics.median(got), "p99_ms": q[98], "max_ms": max(got), "n": len(got)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50000, help="per VM")
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    run = uuid.uuid4().hex
    root = rig.shared_tmpdir("clawvisor-bench-fleet-")
    try:
        certs = root / "certs"
        subprocess.run([str(rig.CLAWVISOR), "fleet", "certs", "--dir", str(certs), "--collector",
                        "collector", "--address", "127.0.0.1", "--vm", "vm1", "--vm", "vm2"],
                       check=True, capture_output=True)  # fmt: skip
        with ExitStack() as stack:
            vms = [Vm(stack, name, run) for name in ("vm1", "vm2")]
            t0 = time.monotonic()
            for vm in vms:
                assert vm.ask(f"bulk {args.records}") == "done"
            written = time.monotonic() - t0
            print(f"wrote {2 * args.records:,} records in {written:.1f} s", flush=True)
            ours = throughput(vms, root, certs, run, tls=True)
            peer = throughput(vms, root, certs, run, tls=False)
            print(f"throughput: ours {ours['per_s']:,.0f}/s, plain {peer['per_s']:,.0f}/s")
            lat = delays(vms, root, certs, args.samples, tls=True)
            lat_peer = delays(vms, root, certs, args.samples, tls=False)
            print(f"delay p50/p99: ours {lat['p50_ms']:.1f}/{lat['p99_ms']:.1f} ms, "
                  f"plain {lat_peer['p50_ms']:.1f}/{lat_peer['p99_ms']:.1f} ms")  # fmt: skip
        version = subprocess.run([UPLOAD, "--version"], capture_output=True, text=True)
        result = {
            "machine": machine(),
            "records_per_vm": args.records,
            "expected": 2 * args.records,
            "throughput": {"ours": ours, "plain": peer},
            "delay": {"ours": lat, "plain": lat_peer},
            "upload": version.stdout.splitlines()[0],
        }
        assert ours["records"] == 2 * args.records, ours
        assert peer["records"] == 2 * args.records, peer
        print(json.dumps(result, indent=2))
        write_result("fleet", result)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
