"""`clawvisor monitor` and the responses (`freeze`, `thaw`, `kill`, `cut-network`, ...)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import DEFAULT_LOG_DIR
from ..wire.control import RESPONSES
from .common import EXIT_DENIED, EXIT_OK, Subcommands, daemon_socket, guard


def _cmd_monitor(args: argparse.Namespace) -> int:
    from ..agents.monitor_view import Format, from_log, parse_since, run

    fmt: Format = args.format or ("json" if args.json else "text")
    if args.since is not None:
        return from_log(
            args.log_dir / "events",
            parse_since(args.since),
            follow=args.follow,
            workload=args.workload,
            kinds=args.kind or [],
            severity=args.severity,
            alerts_only=args.alerts,
            fmt=fmt,
        )
    return guard(
        lambda: run(
            args.socket,
            workload=args.workload,
            kinds=args.kind or [],
            severity=args.severity,
            alerts_only=args.alerts,
            as_json=args.json,
            fmt=fmt,
        )
    )


def _cmd_respond(args: argparse.Namespace) -> int:
    from ..wire.client import Client

    def go() -> int:
        with Client(args.socket, timeout=60) as client:
            reply, _ = client.control("respond", response=args.command, workload=args.workload)
        if reply.status == "ok":
            print(reply.result["result"])
            return EXIT_OK
        print(
            f"clawvisor {args.command}: {reply.error.message if reply.error else '?'}",
            file=sys.stderr,
        )
        return EXIT_DENIED

    return guard(go)


def register(sub: Subcommands) -> None:
    """Add this group's subcommands."""
    p = sub.add_parser(
        "monitor",
        help="watch monitor events and alerts live",
        description="Show the workloads' syscall, file and network events and "
        "the alerts they raise, as they happen.",
    )
    daemon_socket(p)
    p.add_argument("--workload", metavar="W", help="only this workload")
    p.add_argument(
        "--kind",
        action="append",
        metavar="KIND",
        help="only this event kind (exec, connect, open, file, net, ...); repeatable",
    )
    p.add_argument(
        "--severity",
        default="info",
        choices=["info", "low", "medium", "high", "critical"],
        help="only alerts at least this severe (events count as info)",
    )
    p.add_argument("--alerts", action="store_true", help="only alerts")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: kind, severity, workload, uid, pid, comm "
        "and the event's own fields",
    )
    p.add_argument("--format", choices=["text", "json", "cef"], help="output format")
    p.add_argument(
        "--since", metavar="WHEN", help="from the kept event log: 1h, 30m, 2d or epoch seconds"
    )
    p.add_argument("--follow", action="store_true", help="with --since: then keep reading")
    p.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR, help="the daemon's log dir")
    p.set_defaults(func=_cmd_monitor)

    for name, what in RESPONSES.items():
        p = sub.add_parser(name, help=what, description=what.capitalize() + " (audited).")
        daemon_socket(p)
        p.add_argument("workload", metavar="W")
        p.set_defaults(func=_cmd_respond)
