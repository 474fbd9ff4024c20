"""A small authoritative DNS server for the lab: A records from a JSON table, over UDP.

argv: dns_server.py ADDRESS TABLE [LOG]. TABLE maps names to a list of IPv4 addresses, or to a
list of such lists to answer in turn (a rebinding name: a public address, then a private
one); every answer has TTL 0. Unknown names get NXDOMAIN, other types an empty answer.
Every question asked is appended to LOG (a line: NAME TYPE), when given. Prints "ready"
once bound.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import sys


def parse_question(packet: bytes) -> tuple[str, int, int]:
    """(name, qtype, end offset) of the first question."""
    labels, i = [], 12
    while packet[i]:
        n = packet[i]
        labels.append(packet[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += n + 1
    qtype = struct.unpack("!H", packet[i + 1 : i + 3])[0]
    return ".".join(labels).lower(), qtype, i + 5


def main() -> int:
    address, table_path = sys.argv[1], sys.argv[2]
    log = None
    if len(sys.argv) > 3:
        log = open(sys.argv[3], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (lives on)
    with open(table_path, encoding="utf-8") as f:
        table: dict[str, list[object]] = json.load(f)
    turns: dict[str, int] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    print("ready", flush=True)
    while True:
        packet, peer = sock.recvfrom(4096)
        if len(packet) < 17:
            continue
        name, qtype, end = parse_question(packet)
        if log is not None:
            log.write(f"{name} {qtype}\n")
        entry = table.get(name)
        flags = 0x8400 if entry is not None else 0x8403  # response, authoritative; NXDOMAIN
        answers: list[str] = []
        if entry is not None and qtype == 1:
            if entry and isinstance(entry[0], list):
                turn = turns.get(name, 0)
                turns[name] = turn + 1
                answers = list(entry[min(turn, len(entry) - 1)])  # type: ignore[arg-type]
            else:
                answers = [str(a) for a in entry]
        head = packet[:2] + struct.pack("!HHHHH", flags, 1, len(answers), 0, 0)
        body = packet[12:end]
        for a in answers:
            body += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4)
            body += ipaddress.IPv4Address(a).packed
        sock.sendto(head + body, peer)


if __name__ == "__main__":
    sys.exit(main())
