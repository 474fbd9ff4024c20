"""A `monitor` subscription on a daemon's control socket, collected by a thread."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tests.helpers import rig


class Stream:
    """A `monitor` subscription on the control socket, collected by a thread."""

    def __init__(self, path: Path):
        self.sock = rig.connect_as(path, None, timeout=None)
        self.sock.sendall(b'{"id":"m","op":"monitor"}\n')
        self.items: list[dict] = []
        self.lock = threading.Lock()
        self.buf = b""
        self._reply = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._reply.wait(10)

    def _read(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                return
            if not chunk:
                return
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            for ln in lines:
                obj = json.loads(ln)
                if obj.get("id") == "m":
                    self._reply.set()
                elif obj.get("event") == "monitor":
                    with self.lock:
                        self.items.append(obj)

    def find(self, pred, timeout: float = 10.0, count: int = 1) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [i for i in self.items if pred(i)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)
