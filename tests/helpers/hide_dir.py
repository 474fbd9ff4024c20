"""Run a command with one directory hidden under an empty tmpfs: hide_dir.py DIR CMD...

Meant to run under `unshare --mount --propagation private` (see `hiding` below): the
tmpfs exists in that private mount namespace only, so the host's files and mounts are
untouched, and it vanishes with the namespace when the command exits. Tests use it to
take journald's socket or the kernel headers away from one process.
"""

import os
import subprocess
import sys
from pathlib import Path


def hiding(directory: str | os.PathLike[str]) -> list[str]:
    """A wrapper argv: what follows it runs with `directory` empty."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        sys.executable,
        str(Path(__file__).resolve()),
        str(directory),
    ]


if __name__ == "__main__":
    hidden = sys.argv[1]
    if os.path.isdir(hidden):
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", hidden], check=True
        )
    os.execv(sys.argv[2], sys.argv[2:])
