"""Fast generators of hostile input: mutated valid samples, random JSON, random bytes.

Hypothesis explores structure well but runs a few thousand examples a second; these
generators feed the million-input runs (`make fuzz`), seeded so a failure can be replayed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

HOSTILE = [
    "",
    " ",
    "\x00",
    "\n",
    "\r\n",
    "-rf",
    "--",
    "-",
    "../../../etc/shadow",
    "/etc/passwd",
    "$(id)",
    "`id`",
    "; rm -rf /",
    "a|b",
    "\u202e\u0041",
    "\ud7ff",
    "é",
    "😀",
    "\\",
    '"',
    "%00",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "http://169.254.169.254/",
    "https://evilexample.com/",
    "https://example.com@evil.test/",
    "xn--e1afmkfd.xn--p1ai",
    "*",
    "@anyvm",
    "{url}",
    "x" * 300,
    "x" * 5000,
]
KEYS = [
    "id",
    "intent",
    "action",
    "target",
    "url",
    "query",
    "message",
    "script",
    "args",
    "paths",
    "host",
    "ttl",
    "package",
    "op",
    "agent",
    "request",
    "digest",
    "allow",
]
ACTIONS = [
    "status",
    "open-url",
    "search",
    "notify",
    "run-ops",
    "sync-out",
    "egress-allow",
    "install-app",
    "workload-start",
    "workload-stop",
    "workload-restart",
    "nope",
    "",
]


def json_value(rng: random.Random, depth: int = 0) -> object:
    """A random JSON value, biased to the shapes and strings a request carries."""
    r = rng.random()
    if depth > 4 or r < 0.35:
        return rng.choice(
            [
                rng.choice(HOSTILE),
                rng.choice(ACTIONS),
                rng.randint(-(2**70), 2**70),
                rng.randint(-5, 100),
                rng.random() * 1e6,
                True,
                False,
                None,
            ]
        )
    if r < 0.7:
        n = rng.randint(0, 5)
        keys = [rng.choice(KEYS) if rng.random() < 0.8 else rng.choice(HOSTILE) for _ in range(n)]
        return {k: json_value(rng, depth + 1) for k in keys}
    return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def request_like(rng: random.Random) -> dict[str, object]:
    """A request that is mostly right, with one thing (or more) wrong."""
    intent: dict[str, object] = {"action": rng.choice(ACTIONS)}
    for _ in range(rng.randint(0, 3)):
        intent[rng.choice(KEYS)] = json_value(rng, 2)
    req: dict[str, object] = {"id": rng.choice(["r1", 7, None, "x" * 200, "é"]), "intent": intent}
    if rng.random() < 0.2:
        req[rng.choice(KEYS)] = json_value(rng, 3)
    if rng.random() < 0.1:
        del req["id"]
    return req


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Byte-level damage: flips, insertions, deletions, duplication, truncation."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif op == 2 and buf:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            buf[pos:pos] = buf[pos : pos + rng.randint(1, 16)]
        elif op == 4:
            del buf[pos:]
        else:
            buf[pos:pos] = rng.choice([b'{"', b"[", b"]", b"}", b'"', b"\\", b"\\u0000", b","])
    return bytes(buf)


def protocol_line(rng: random.Random) -> bytes:
    """One line for the intents socket (no newline inside)."""
    kind = rng.random()
    if kind < 0.45:
        line = mutate(rng, json.dumps(request_like(rng)).encode())
    elif kind < 0.8:
        line = json.dumps(request_like(rng)).encode()
    elif kind < 0.9:
        line = json.dumps(json_value(rng)).encode()
    else:
        line = rng.randbytes(rng.randint(0, 200))
    return line.replace(b"\n", b" ")


def text_mutant(rng: random.Random, text: str) -> str:
    """A damaged config or policy file: line edits and byte damage."""
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        if not lines:
            lines = [""]
        i = rng.randrange(len(lines))
        op = rng.randrange(5)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2:
            lines[i] = mutate(rng, lines[i].encode()).decode("utf-8", "replace")
        elif op == 3:
            lines[i] = lines[i] + " " + rng.choice(HOSTILE)
        else:
            words = lines[i].split()
            if words:
                words[rng.randrange(len(words))] = rng.choice(HOSTILE + ACTIONS)
            lines[i] = " ".join(words)
    return "\n".join(lines) + "\n"


def run(count: int, seed: int, one: Callable[[random.Random], None]) -> int:
    """Call `one` with a seeded generator `count` times; how many ran."""
    rng = random.Random(seed)
    for _ in range(count):
        one(rng)
    return count
