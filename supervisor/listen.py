"""The daemon's two listening sockets: passed by systemd (socket activation, by name) or
bound here, each with the owner, group and mode its users need and nobody else."""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from .activation import listen_fds, loose_mode
from .audit import CRIT
from .config import Config, group_gid
from .posix_acl import grant_users

#: Connections the kernel queues before the daemon accepts them: a workload's connect
#: flood must not fill it for everyone (the daemon accepts up to `ACCEPT_BATCH` a wake-up).
LISTEN_BACKLOG = 4096
ACCEPT_BATCH = 256
#: A batch with this many over-cap refusals is a flood: its listener rests FLOOD_REST s.
FLOOD_REFUSALS = ACCEPT_BATCH // 2
FLOOD_REST = 0.01


def listening_sockets(
    config: Config, say: Callable[..., None]
) -> tuple[dict[str, socket.socket], list[Path]]:
    """`intents` and `control`, and the paths bound here (systemd owns the ones it
    passed). `say(message, priority=...)` records a loose passed socket in the trail."""
    paths = config.paths
    owned: list[Path] = []
    activated = listen_fds()
    for name in sorted(set(activated) - {"intents", "control"}):
        print(f"clawvisor: ignoring passed socket {name!r}", file=sys.stderr, flush=True)
        activated.pop(name).close()
    for sock in activated.values():
        why = loose_mode(sock)
        if why is not None:
            say(f"socket activation: {why}", priority=CRIT)
            print(f"clawvisor: WARNING: {why}", file=sys.stderr, flush=True)
    if "intents" not in activated or "control" not in activated:
        paths.runtime_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    if "intents" not in activated:
        activated["intents"] = _bind_intents(config, paths.intents_socket)
        owned.append(paths.intents_socket)
    if "control" not in activated:
        ops_gid = group_gid(config.settings.server.control_group)
        activated["control"] = (
            bind_unix_socket(paths.control_socket, mode=0o660, gid=ops_gid)
            if ops_gid is not None
            else bind_unix_socket(paths.control_socket, mode=0o600)
        )
        owned.append(paths.control_socket)
    return activated, owned


def _bind_intents(config: Config, path: Path) -> socket.socket:
    gid = group_gid(config.settings.server.socket_group)
    if gid is not None:
        return bind_unix_socket(path, mode=0o660, gid=gid)
    # No gateway group on this box (a hand-started daemon): grant exactly the
    # configured workload users, by uid, through an ACL.
    sock = bind_unix_socket(path, mode=0o660)
    grant_users(path, 0o660, config.by_uid.keys(), 0o6)
    return sock


def refresh_intents_acl(config: Config, owned: list[Path]) -> list[str]:
    """After a reload: the shared intents socket this daemon bound itself with an ACL
    (no gateway group) grants exactly `config`'s workload users again, the new ones in
    and the removed ones out. What went wrong, said (the socket stays as it was)."""
    path = config.paths.intents_socket
    if path not in owned or group_gid(config.settings.server.socket_group) is not None:
        return []
    try:
        grant_users(path, 0o660, config.by_uid.keys(), 0o6)
    except OSError as exc:
        return [f"{path}: its ACL: {exc}"]
    return []


def bind_unix_socket(path: Path, *, mode: int, uid: int = 0, gid: int = 0) -> socket.socket:
    """Bind and listen on `path` with `mode`, replacing a stale socket but never a live one."""
    if path.exists() or path.is_symlink():
        st = path.lstat()
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeError(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
        else:
            raise RuntimeError(f"{path} is in use by another process (is clawvisor running?)")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)  # born 0600: never reachable before its mode is set
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    sock.listen(LISTEN_BACKLOG)
    return sock
