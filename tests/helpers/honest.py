"""An honest gateway: one request at a time, timed, while something hostile runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.helpers.rig import User, connect_as

_LINE = b'{"id":"honest","intent":{"action":"status"}}\n'


class Honest:
    """Sends `status` over its own connection in a loop; p99 of the round trips."""

    def __init__(self, path: Path, user: User) -> None:
        self._sock = connect_as(path, user)
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Honest:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._sock.close()

    def _run(self) -> None:
        buf = b""
        self._sock.settimeout(10)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                self._sock.sendall(_LINE)
                while b"\n" not in buf:
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        self.errors.append("closed")
                        return
                    buf += chunk
            except OSError as exc:
                self.errors.append(repr(exc))
                return
            line, _, buf = buf.partition(b"\n")
            self.latencies.append(time.perf_counter() - t0)
            if b'"status":"ok"' not in line:
                self.errors.append(line[:200].decode(errors="replace"))
            time.sleep(0.002)

    def p99_us(self) -> float:
        """The 99th percentile round trip, in microseconds."""
        assert self.latencies, f"the honest client got no reply: {self.errors}"
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6

    def check(self) -> float:
        """Its p99, after asserting every request was answered ok."""
        assert not self.errors, self.errors[:3]
        assert len(self.latencies) >= 5, f"only {len(self.latencies)} answers"
        return self.p99_us()
