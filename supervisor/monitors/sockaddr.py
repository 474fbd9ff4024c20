"""Socket families, types and addresses as the events name them."""

from __future__ import annotations

import socket

SOCK_TYPES = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 10: "packet"}
FAMILIES = {1: "unix", 2: "inet", 10: "inet6", 16: "netlink", 17: "packet"}


def decode_sockaddr(raw: bytes) -> tuple[str, str | None, int | None]:
    """(family, address, port) from the first bytes of a struct sockaddr."""
    if len(raw) < 2:
        return "unknown", None, None
    family = int.from_bytes(raw[0:2], "little")
    if family == socket.AF_INET and len(raw) >= 8:
        return "inet", socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6 and len(raw) >= 24:
        return (
            "inet6",
            socket.inet_ntop(socket.AF_INET6, raw[8:24]),
            int.from_bytes(raw[2:4], "big"),
        )
    if family == socket.AF_UNIX:
        path = raw[2:].split(b"\0", 1)[0].decode("utf-8", "replace")
        return "unix", path or None, None
    return FAMILIES.get(family, str(family)), None, None
