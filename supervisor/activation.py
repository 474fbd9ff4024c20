"""Socket activation: take the listening sockets systemd passed, by FileDescriptorName.

systemd's protocol (sd_listen_fds_with_names): fds 3..3+LISTEN_FDS-1, meant for us only
when LISTEN_PID is our pid, named by LISTEN_FDNAMES (colon-separated). The same protocol
carries the sockets across a re-exec into a newer build (see `handoff`).
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

FIRST_FD = 3
ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(Exception):
    """A passed descriptor that is not what clawvisor can serve on."""


def listen_fds(environ: Mapping[str, str] | None = None) -> dict[str, socket.socket]:
    """The listening sockets passed to this process, by name; {} when not activated.

    The variables are removed from the environment either way, so no child sees them.
    """
    env = os.environ if environ is None else environ
    pid, count, names = (env.get(k) for k in ENV)
    if environ is None:
        for k in ENV:
            os.environ.pop(k, None)
    if pid is None or count is None or pid != str(os.getpid()):
        return {}
    try:
        n = int(count)
    except ValueError:
        raise ActivationError(f"LISTEN_FDS={count!r} is not a number") from None
    labels = names.split(":") if names else []
    out: dict[str, socket.socket] = {}
    for i in range(n):
        fd = FIRST_FD + i
        name = labels[i] if i < len(labels) and labels[i] else f"fd{fd}"
        sock = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            sock.close()
            raise ActivationError(f"socket {name!r} (fd {fd}) is not a Unix stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.close()
            raise ActivationError(f"socket {name!r} (fd {fd}) is not listening")
        out[name] = sock
    return out


def loose_mode(sock: socket.socket) -> str | None:
    """Why the socket's file is reachable by everyone, or None when it is not."""
    path = sock.getsockname()
    if not isinstance(path, str) or not path or path.startswith("\0"):
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if mode & 0o006:
        return f"{path} is mode {mode:04o}: any local user can connect (set SocketMode=0660)"
    return None


def handoff(sockets: Mapping[str, socket.socket], argv: list[str]) -> None:
    """Re-exec `argv` with `sockets` passed as if by systemd; does not return."""
    # Duplicate above the target range first: moving one socket onto fd 3 must not
    # close another that happens to sit there.
    dups = [
        (name, fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 100)) for name, s in sockets.items()
    ]
    for i, (_, fd) in enumerate(dups):
        os.dup2(fd, FIRST_FD + i, inheritable=True)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = str(len(dups))
    os.environ["LISTEN_FDNAMES"] = ":".join(name for name, _ in dups)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # noqa: S606 -- an argv, never a shell


def code_identity(argv0: str) -> str:
    """What identifies the installed build we run from: our entry point, links resolved."""
    return str(Path(argv0).resolve())
