"""Run a command where journald cannot be reached.

Meant to run under `unshare --mount --propagation private`: it hides the journal socket
directory under an empty tmpfs in that private mount namespace only, then execs the
command. The host's journald and mounts are untouched; the mount vanishes with the
namespace when the command exits.
"""

import os
import subprocess
import sys

JOURNAL_DIR = "/run/systemd/journal"

if os.path.isdir(JOURNAL_DIR):
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", JOURNAL_DIR], check=True
    )
os.execv(sys.argv[1], sys.argv[1:])
