"""A Telegram Bot API look-alike for tests: the methods the agent uses, on 127.0.0.1.

Tests push updates (messages, button presses); the server hands them out through
long-polled getUpdates and records every call, so a test can see exactly what the
agent sent.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CLONE_NEWNET = 0x40000000


def _in_netns(netns: str, make: Any) -> Any:
    """`make()` run in a thread that entered the network namespace file `netns`: a
    socket it creates listens there (the namespace is the socket's, not the thread's)."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def enter_and_make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(netns, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {netns}")
            out.append(make())
        except BaseException as exc:  # handed to the caller
            errors.append(exc)
        finally:
            os.close(fd)

    t = threading.Thread(target=enter_and_make)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return out[0]


class BotApi:
    def __init__(self, token: str, netns: str | None = None) -> None:
        """`netns`: listen on 127.0.0.1 of that network namespace (e.g. a container's
        /proc/PID/ns/net) rather than this process's."""
        self.token = token
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.updates: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._messages = itertools.count(100)
        self._cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                params = json.loads(self.rfile.read(length) or b"{}")
                prefix = f"/bot{api.token}/"
                if not self.path.startswith(prefix):
                    self._send(401, {"ok": False, "description": "Unauthorized"})
                    return
                method = self.path[len(prefix) :]
                result = api.handle(method, params)
                self._send(200, {"ok": True, "result": result})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)  # a client stopped mid long-poll

        def make() -> ThreadingHTTPServer:
            return ThreadingHTTPServer(("127.0.0.1", 0), Handler)

        self.server = make() if netns is None else _in_netns(netns, make)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> BotApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getUpdates":
            offset = int(params.get("offset", 0))
            deadline = time.monotonic() + min(float(params.get("timeout", 0)), 2.0)
            with self._cond:
                while True:
                    ready = [u for u in self.updates if u["update_id"] >= offset]
                    if ready or time.monotonic() >= deadline:
                        return ready
                    self._cond.wait(deadline - time.monotonic())
        with self._cond:
            self.calls.append((method, params))
            self._cond.notify_all()
        if method == "sendMessage":
            return {
                "message_id": next(self._messages),
                "chat": {"id": params["chat_id"]},
                "text": params.get("text"),
            }
        if method == "editMessageText":
            return {"message_id": params["message_id"], "text": params.get("text")}
        return True

    def push(self, update: dict[str, Any]) -> None:
        with self._cond:
            self.updates.append({"update_id": next(self._ids), **update})
            self._cond.notify_all()

    def wait(self, method: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [p for m, p in self.calls if m == method]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {method} #{count}; calls: {self.calls}")
                self._cond.wait(left)
