"""Provenance: which files the watched processes made, and what feeds their shells.

A file a watched process created, wrote, renamed or linked into place, or made
executable is remembered (bounded, oldest forgotten first) with who did it, wherever it
is: /tmp, /dev/shm and $HOME as much as work/. Executing one is `dropped`.

A pipe's ends are followed through fork and dup2 (lineage.Fd), so a shell or interpreter
whose stdin is the read end of a pipe whose write end is the stdout of a network tool or
a decoder is seen as one thing, whichever of the two execs comes first.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import NamedTuple

SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish", "csh", "tcsh"}
)
INTERPRETERS = frozenset({"python", "python3", "perl", "ruby", "node", "php", "lua", "tclsh"})
FEEDERS = frozenset(
    {
        # network tools
        "curl",
        "wget",
        "nc",
        "ncat",
        "netcat",
        "socat",
        "telnet",
        "ssh",
        "ftp",
        "tftp",
        # decoders and unpackers
        "base64",
        "base32",
        "basenc",
        "xxd",
        "uudecode",
        "openssl",
        "gunzip",
        "zcat",
        "gzip",
        "bzip2",
        "bunzip2",
        "xz",
        "unxz",
        "rev",
    }
)


def program(path: str) -> str:
    """A program's name from its path, without a version suffix (python3.11 -> python3)."""
    name = os.path.basename(path)
    if name.startswith("python3"):
        return "python3"
    return name


def is_shell(path: str) -> bool:
    name = program(path)
    return name in SHELLS or name in INTERPRETERS


class Maker(NamedTuple):
    """Who made a file (a tuple: one is made for every write-open, and a tuple is the
    cheapest thing to make)."""

    pid: int
    comm: str
    how: str  # write, rename, link, chmod

    def describe(self) -> str:
        return f"{self.comm} (pid {self.pid}, {self.how})"


class Provenance:
    """Files made by watched processes: path -> Maker (bounded, the least recently made
    forgotten first)."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        # Ordered for eviction: a plain dict's oldest key is found by walking past the
        # holes its deletions leave, which a stream of new files makes a long walk.
        self._made: OrderedDict[str, Maker] = OrderedDict()

    def __len__(self) -> int:
        return len(self._made)

    def made(self, path: str, pid: int, comm: str, how: str) -> None:
        made = self._made
        made[path] = Maker(pid, comm, how)
        made.move_to_end(path)
        if len(made) > self.limit:
            made.popitem(last=False)

    def moved(self, old: str, new: str, pid: int, comm: str) -> None:
        """A rename: the file keeps who made it; one moved into place is made by the mover."""
        maker = self._made.pop(old, None)
        self.made(new, maker.pid if maker else pid, maker.comm if maker else comm, "rename")

    def removed(self, path: str) -> None:
        self._made.pop(path, None)

    def maker(self, path: str) -> Maker | None:
        return self._made.get(path)
