"""A syscall-heavy load for bench.monitors: open(2) for writing, then close, in a loop.

Started (as the workload user) before the measurement so its own exec and startup are
not counted; it starts on a line on stdin, prints one JSON line with what it did, then
waits for stdin to close before exiting. Paced (--rate N a second for --seconds) or
flat out (--count N). Only the standard library: it must start fast and allocate little.

    python3 -S bench/open_load.py --rate 100000 --seconds 10 [--path /dev/null]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def paced(path: str, rate: int, seconds: float) -> int:
    flags = os.O_WRONLY | os.O_CLOEXEC
    done = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            return done
        due = int((now - t0) * rate)
        if due <= done:
            time.sleep(0.0005)
            continue
        for _ in range(min(due - done, 2000)):
            os.close(os.open(path, flags))
        done += min(due - done, 2000)


def flat_out(path: str, count: int) -> int:
    flags = os.O_WRONLY | os.O_CLOEXEC
    for _ in range(count):
        os.close(os.open(path, flags))
    return count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", default="/dev/null")
    parser.add_argument("--rate", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=0)
    args = parser.parse_args()
    print("ready", flush=True)
    if not sys.stdin.readline():
        return 1
    t0 = time.perf_counter()
    opens = (
        paced(args.path, args.rate, args.seconds) if args.rate else flat_out(args.path, args.count)
    )
    elapsed = time.perf_counter() - t0
    print(json.dumps({"opens": opens, "seconds": elapsed, "rate": opens / elapsed}), flush=True)
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
