"""An approval agent's view of the control socket, for tests: subscribed, its events kept."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tests.helpers.rig import connect_as


class Subscriber:
    """An approval agent subscribed on the control socket; a thread collects its events."""

    def __init__(self, control: Path) -> None:
        self.sock = connect_as(control, None, timeout=None)
        self.sock.sendall(b'{"id":"s","op":"subscribe","agent":"cli"}\n')
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            self.events += [json.loads(ln) for ln in lines if ln.strip()]

    def wait(self, kind: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if e.get("event") == kind:
                    return e
            time.sleep(0.02)
        raise AssertionError(f"no {kind} event: {self.events}")

    def close(self) -> None:
        self.sock.close()
