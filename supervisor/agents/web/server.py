"""Running the console: uvicorn on a loopback port (reached from elsewhere with
`ssh -L 8765:127.0.0.1:8765`), the feed from the control socket, and the login link."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

import uvicorn

from .activity import Activity
from .app import Console, build
from .auth import mint_link
from .feed import Feed
from .tools import Tools


def private_dir(path: Path) -> None:
    """Make `path` (and its parents) with mode 0700 for the last: only its owner enters."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def links_dir(state_dir: Path) -> Path:
    return state_dir / "links"


def login_url(base: str, token: str) -> str:
    return f"{base}/login?t={token}"


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise ValueError(f"{listen}: the console listens on loopback only (use ssh -L)")
    return host.strip("[]"), int(port)


async def serve(
    socket: Path | dict[str, Path],
    *,
    listen: str,
    state_dir: Path,
    hosts: list[str],
    secure: bool,
    tools: Tools,
    out: TextIO = sys.stdout,
) -> int:
    """Serve until stopped (for one daemon, or for each VM's: `{name: socket}`); print
    where, and a first login link."""
    private_dir(state_dir)
    host, port = parse_listen(listen)
    # The names it answers for: its own, and those given (a TLS proxy's, a tunnel's).
    allowed = {f"127.0.0.1:{port}", f"localhost:{port}", *hosts}
    base = f"http://127.0.0.1:{port}"
    scheme = "https" if secure else "http"
    origins = {f"{scheme}://{h}" for h in allowed}
    console = Console(
        Feed(socket), Activity(socket), tools, links_dir(state_dir), allowed, origins, secure
    )
    config = uvicorn.Config(
        build(console),
        host=host,
        port=port,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        access_log=False,
        # A local user holding connections open must not lock the operator out for long.
        limit_concurrency=256,
        timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    token = mint_link(links_dir(state_dir))
    print(f"clawvisor web console at {base}", file=out)
    print(f"log in (once, within 10 min): {login_url(base, token)}", file=out, flush=True)
    await server.serve()
    return 0


def link(state_dir: Path, base: str, out: TextIO = sys.stdout) -> int:
    """Mint a one-time login link for the console using `state_dir`, and print it."""
    token = mint_link(links_dir(state_dir))
    print(login_url(base, token), file=out)
    return 0
