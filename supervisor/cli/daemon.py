"""`clawvisor serve | reload | doctor`: the daemon itself."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config import DEFAULT_CONFIG_DIR, DEFAULT_LOG_DIR, DEFAULT_STATE_DIR
from .common import (
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_OK,
    JSON_HELP,
    Subcommands,
    daemon_socket,
    guard,
    runtime_dir_arg,
)


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..config import Paths
    from ..serve import serve

    config_dir: Path | None = args.config_dir
    embedded = config_dir is None and not DEFAULT_CONFIG_DIR.is_dir()
    if config_dir is not None and not config_dir.is_dir():
        print(f"clawvisor: config directory {config_dir} does not exist", file=sys.stderr)
        return EXIT_ERROR
    paths = Paths(
        config_dir=config_dir or DEFAULT_CONFIG_DIR,
        runtime_dir=args.runtime_dir,
        state_dir=args.state_dir,
        log_dir=args.log_dir,
    )
    return serve(paths, embedded=embedded)


def _cmd_reload(args: argparse.Namespace) -> int:
    from ..wire.client import Client

    try:
        with Client(args.socket, timeout=60) as client:
            if args.diff and not _diff_first(client, args):
                print("clawvisor reload: not reloaded", file=sys.stderr)
                return EXIT_DENIED
            reply, _ = client.control("reload")
    except (OSError, ConnectionError) as exc:
        print(f"clawvisor reload: {args.socket}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if reply.status == "ok":
        r = reply.result
        print(
            f"reloaded: {r['rules']} rules from {len(r['files'])} files, "
            f"{len(r['workloads'])} workloads"
        )
        return EXIT_OK
    message = reply.error.message if reply.error else "reload failed"
    print(f"clawvisor reload: {message}", file=sys.stderr)
    return EXIT_DENIED


def _diff_first(client: Any, args: argparse.Namespace) -> bool:
    """`reload --diff`: what the policy on disk decides differently from the one in
    force, then (on a terminal) the question; True to go ahead."""
    from ..policy_tools import reload_diff

    reply, _ = client.control("policy-source")
    if reply.status != "ok":
        print(f"clawvisor reload: {reply.error.message if reply.error else '?'}", file=sys.stderr)
        return False
    in_force = [(f["name"], f["text"]) for f in reply.result["files"]]
    # An older daemon sends no workloads: the ones on disk stand in for them.
    sent = reply.result.get("workloads")
    workloads = None if sent is None else {n: frozenset(t) for n, t in sent.items()}
    confirm = input if sys.stdin.isatty() else None
    go: bool = reload_diff(
        args.config_dir, in_force, workloads=workloads, out=sys.stdout, confirm=confirm
    )
    return go


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ..doctor import report

    return report(args.socket, as_json=args.json, bpf=not args.no_bpf)


def _cmd_status(args: argparse.Namespace) -> int:
    from ..agents.commands import status

    return guard(lambda: status(args.socket, as_json=args.json))


def register(sub: Subcommands) -> None:
    """Add this group's subcommands."""
    p = sub.add_parser(
        "serve",
        help="run the daemon in the foreground",
        description="Run the daemon in the foreground. Without a config "
        "directory it runs the embedded demo config.",
    )
    p.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        help=f"configuration directory (default {DEFAULT_CONFIG_DIR}; when that "
        "does not exist, the embedded demo config)",
    )
    runtime_dir_arg(p, "where the sockets go")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"persistent state (default {DEFAULT_STATE_DIR})",
    )
    p.add_argument(
        "--log-dir",
        type=Path,
        default=DEFAULT_LOG_DIR,
        help=f"audit fallback log (default {DEFAULT_LOG_DIR})",
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "reload",
        help="re-read config and policy in the running daemon",
        description="Ask the daemon to re-read its config and policy. A "
        "policy that does not load (or whose tests fail) is "
        "refused and the previous one stays in force; then this "
        "exits 1 with the reason.",
    )
    daemon_socket(p)
    p.add_argument(
        "--diff",
        action="store_true",
        help="first show what the policy on disk decides differently from the one in force "
        "(`policy diff`), and on a terminal ask before reloading",
    )
    p.add_argument(
        "--config-dir",
        type=Path,
        default=DEFAULT_CONFIG_DIR,
        help="the configuration the daemon reloads from, for --diff (default %(default)s)",
    )
    p.set_defaults(func=_cmd_reload)

    p = sub.add_parser(
        "doctor",
        help="check what this host offers clawvisor",
        description="Check the kernel (BPF, headers, tracepoints, cgroup v2, overlayfs), "
        "nftables, journald, systemd and D-Bus, then the running daemon's monitors: one "
        "line each, with the fix for anything missing. Exit 1 on any FAIL.",
    )
    daemon_socket(p)
    p.add_argument("--json", action="store_true", help="one JSON object per check")
    p.add_argument(
        "--no-bpf", action="store_true", help="skip compiling and loading the BPF program"
    )
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser(
        "status",
        help="the running daemon's state",
        description="Version, uptime, policy in force, workloads, grants and monitors, as "
        "control.sock tells operators. (A workload's own `clawvisor send status` shows only "
        "what concerns it.)",
    )
    daemon_socket(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=_cmd_status)
