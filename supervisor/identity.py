"""Who is on the other end of a socket, as the kernel says (SO_PEERCRED), never the message."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

_UCRED = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class Peer:
    """The credentials the kernel recorded when the peer connected."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> Peer:
    """SO_PEERCRED of a connected AF_UNIX socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid=pid, uid=uid, gid=gid)


SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13


def peer_groups(sock: socket.socket) -> tuple[int, ...]:
    """The peer's supplementary groups at connect time (SO_PEERGROUPS)."""
    size = 256
    while True:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * size)
        except OSError as exc:
            if exc.errno == 34 and size < 65536:  # ERANGE: more groups than room
                size *= 4
                continue
            raise
        return struct.unpack(f"{len(raw) // 4}I", raw)
