"""One intents socket per workload uid, RUNTIME_DIR/by-uid/UID.sock (owned by that uid,
mode 0600), beside the shared intents.sock.

Each has its own listen queue, so a workload's connect flood fills only its own: another
workload connecting through its socket never meets the flood in the kernel's queue, and
the endpoint serves each listener in its own turn. The client library uses the caller's
socket when it is there (supervisor/wire/calls.py `gateway_socket`). Identity is still
SO_PEERCRED: the file's owner only decides who can reach it.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from .config import Config
from .listen import bind_unix_socket
from .server import Endpoint

BY_UID = "by-uid"


class WorkloadSockets:
    """The per-uid listeners of one endpoint, kept in step with the config in force."""

    def __init__(self, endpoint: Endpoint, runtime_dir: Path) -> None:
        self.endpoint = endpoint
        self.directory = runtime_dir / BY_UID
        #: uid -> (the endpoint's handle, the bound socket, its path)
        self._bound: dict[int, tuple[int, socket.socket, Path]] = {}

    def sync(self, config: Config) -> list[str]:
        """Bind a socket for each workload uid that has none, drop those of uids no longer
        configured; what could not be bound (the shared socket still serves them)."""
        problems: list[str] = []
        wanted = set(config.by_uid)
        for uid in sorted(set(self._bound) - wanted):
            self._drop(uid)
        if wanted - set(self._bound):
            self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            self.directory.chmod(0o755)
        for uid in sorted(wanted - set(self._bound)):
            path = self.directory / f"{uid}.sock"
            try:
                sock = bind_unix_socket(path, mode=0o600, uid=uid)
            except (OSError, RuntimeError) as exc:
                problems.append(f"{path}: {exc}")
                continue
            self._bound[uid] = (self.endpoint.listen(sock), sock, path)
        return problems

    def _drop(self, uid: int) -> None:
        handle, sock, path = self._bound.pop(uid)
        self.endpoint.unlisten(handle)
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def close(self) -> None:
        """Unbind every per-uid socket and remove its file."""
        for uid in list(self._bound):
            self._drop(uid)
