"""Start a command the way systemd socket activation does: activate.py NAME=PATH:MODE ... -- CMD

Binds and listens on each Unix socket, moves them to fds 3.., sets LISTEN_PID (this pid,
which exec keeps), LISTEN_FDS and LISTEN_FDNAMES, and execs the command in place.
"""

import os
import socket
import sys


def main() -> None:
    split = sys.argv.index("--")
    specs, argv = sys.argv[1:split], sys.argv[split + 1 :]
    socks = []
    for spec in specs:
        name, rest = spec.split("=", 1)
        path, mode = rest.rsplit(":", 1)
        if os.path.exists(path):
            os.unlink(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        os.chmod(path, int(mode, 8))
        s.listen(64)
        socks.append((name, s))
    # Above the target range first, so that placing one cannot close another.
    high = [(name, os.dup2(s.fileno(), 100 + i)) for i, (name, s) in enumerate(socks)]
    for i, (_, fd) in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = str(len(socks))
    os.environ["LISTEN_FDNAMES"] = ":".join(name for name, _ in socks)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
