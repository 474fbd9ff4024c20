"""Run a command in a private mount namespace with directories hidden or replaced.

    hide_dir.py [--bind SRC DST]... [--tmpfs DIR]... -- CMD...

Meant to run under `unshare --mount --propagation private` (see `hiding` and `binding`):
the mounts exist in that namespace only, so the host's files and mounts are untouched,
and they vanish with the namespace when the command exits. Tests use it to take
journald's socket or the kernel headers away from one process, or to give a process
(a private journald, a daemon talking to it) its own /run/systemd/journal.
"""

import os
import subprocess
import sys
from pathlib import Path


def _wrapper(*args: str) -> list[str]:
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        sys.executable,
        str(Path(__file__).resolve()),
        *args,
        "--",
    ]


def hiding(*directories: str | os.PathLike[str]) -> list[str]:
    """A wrapper argv: what follows it runs with each of `directories` empty."""
    args: list[str] = []
    for directory in directories:
        args += ["--tmpfs", str(directory)]
    return _wrapper(*args)


#: Where a daemon finds journald: the trail's namespace first, the system's second.
JOURNALD_DIRS = ("/run/systemd/journal.clawvisor", "/run/systemd/journal")


def hiding_journald() -> list[str]:
    """A wrapper argv: what follows it finds no journald at all (the trail's namespace's
    nor the system's)."""
    return hiding(*JOURNALD_DIRS)


def binding(mounts: dict[str, str | os.PathLike[str]]) -> list[str]:
    """A wrapper argv: what follows it sees each key (a directory) as its value's contents."""
    args: list[str] = []
    for dst, src in mounts.items():
        args += ["--bind", str(src), dst]
    return _wrapper(*args)


def main(argv: list[str]) -> None:
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1 :]
    i = 0
    while i < len(opts):
        if opts[i] == "--tmpfs":
            if os.path.isdir(opts[i + 1]):
                subprocess.run(
                    ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", opts[i + 1]],
                    check=True,
                )
            i += 2
        elif opts[i] == "--bind":
            if os.path.isdir(opts[i + 1]):  # a file is bound over an existing file
                os.makedirs(opts[i + 2], exist_ok=True)
            subprocess.run(["mount", "--bind", opts[i + 1], opts[i + 2]], check=True)
            i += 3
        else:
            raise SystemExit(f"hide_dir.py: unknown option {opts[i]}")
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
