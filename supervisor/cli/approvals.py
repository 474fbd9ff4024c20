"""`clawvisor pending | approve | deny | grants | approver`: a human's side of an ask."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import JSON_HELP, Subcommands, daemon_socket, guard, runtime_dir_arg


def _cmd_pending(args: argparse.Namespace) -> int:
    from ..agents.commands import pending

    return guard(lambda: pending(args.socket, args.show, as_json=args.json))


def _cmd_approve(args: argparse.Namespace) -> int:
    from ..agents.commands import verdict

    grant = "always" if args.always else (args.grant_for or "once")
    confirm = input if sys.stdin.isatty() and not args.yes else None
    return guard(
        lambda: verdict(
            args.socket,
            args.request,
            allow=True,
            grant=grant,
            release_all=args.all,
            confirm=confirm,
        )
    )


def _cmd_deny(args: argparse.Namespace) -> int:
    from ..agents.commands import verdict

    return guard(lambda: verdict(args.socket, args.request, allow=False, reason=args.reason))


def _cmd_grants(args: argparse.Namespace) -> int:
    from ..agents.commands import grants

    revoke = args.grant if args.grants_command == "revoke" else None
    return guard(lambda: grants(args.socket, revoke, as_json=getattr(args, "json", False)))


def _cmd_approver(args: argparse.Namespace) -> int:
    import asyncio

    if args.agent == "web" and args.link:
        from ..agents.web import server

        _, port = server.parse_listen(args.listen)
        return server.link(args.state_dir, f"http://127.0.0.1:{port}")
    if args.agent == "telegram" and args.telegram_command == "pair":
        from ..agents import telegram

        return telegram.pair(args.state_dir, timeout=args.timeout)
    sockets = _agent_sockets(args)
    if sockets is None:
        return 2
    if args.agent == "cli":
        from ..agents import cli

        return guard(lambda: asyncio.run(cli.run(sockets)))
    if args.agent == "desktop":
        from ..agents import desktop

        return guard(lambda: asyncio.run(desktop.run(sockets)))
    if args.agent == "web":
        from ..agents.web import server
        from ..agents.web.tools import Tools

        return guard(
            lambda: asyncio.run(
                server.serve(
                    sockets,
                    listen=args.listen,
                    state_dir=args.state_dir,
                    hosts=args.allow_host,
                    secure=args.secure_cookie,
                    tools=Tools(str(args.config_dir), tuple(args.audit_arg)),
                )
            )
        )
    from ..agents import telegram

    return guard(
        lambda: asyncio.run(
            telegram.run(
                sockets,
                token_file=args.token_file,
                api_base=args.api_base,
                state_dir=args.state_dir,
            )
        )
    )


def _agent_sockets(args: argparse.Namespace) -> Path | dict[str, Path] | None:
    """`--socket PATH`, or the VMs of `--socket NAME=PATH` (each) and `--fleet FILE`;
    none given: RUNTIME_DIR/control.sock. None (said why) when they cannot be used."""
    from ..agents.fleet_sockets import FleetError, choose

    try:
        return choose(args.socket, args.fleet, Path(args.runtime_dir) / "control.sock")
    except FleetError as exc:
        print(f"clawvisor approver {args.agent}: {exc}")
        return None


def _agent_socket_args(a: argparse.ArgumentParser) -> None:
    """The sockets an approval agent follows: one, or one per VM."""
    runtime_dir_arg(a)
    a.add_argument(
        "--socket",
        action="append",
        metavar="[NAME=]PATH",
        help="the control socket (default RUNTIME_DIR/control.sock); repeat as NAME=PATH "
        "to answer for several VMs (each prompt names its VM, each verdict goes back to it)",
    )
    a.add_argument(
        "--fleet",
        type=Path,
        metavar="FILE",
        help="a fleet file naming each VM's socket ([vms.NAME] socket = PATH)",
    )


def register(sub: Subcommands) -> None:
    """Add this group's subcommands."""
    p = sub.add_parser(
        "pending",
        help="list requests waiting for approval",
        description="List the requests waiting for a human, or one in full.",
    )
    daemon_socket(p)
    p.add_argument("--show", metavar="ID", help="show one request with every value in full")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=_cmd_pending)

    p = sub.add_parser(
        "approve",
        help="allow a pending request",
        description="Show a pending request in full and allow exactly what is shown. On a "
        "terminal it asks first; --yes (for scripts) does not.",
    )
    p.add_argument("--yes", "-y", action="store_true", help="approve without asking")
    daemon_socket(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--for",
        dest="grant_for",
        metavar="DURATION",
        help="also let this exact intent through without asking for DURATION "
        "(e.g. 30m), if the rule allows",
    )
    g.add_argument(
        "--always",
        action="store_true",
        help="let this exact intent through from now on, if the rule allows",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="release every identical request shown as waiting behind this one (without "
        "it, an approval releases exactly one)",
    )
    p.add_argument("request", metavar="ID")
    p.set_defaults(func=_cmd_approve)

    p = sub.add_parser(
        "deny", help="deny a pending request", description="Show a pending request and deny it."
    )
    daemon_socket(p)
    p.add_argument("--reason", help="why (recorded in the audit trail and told the gateway)")
    p.add_argument("request", metavar="ID")
    p.set_defaults(func=_cmd_deny)

    p = sub.add_parser(
        "grants",
        help="list or revoke standing approvals",
        description="Grants let one exact intent through without asking until they expire.",
    )
    gsub = p.add_subparsers(dest="grants_command", required=True, metavar="COMMAND")
    r = gsub.add_parser("list", help="list grants in force")
    daemon_socket(r)
    r.add_argument("--json", action="store_true", help=JSON_HELP)
    r = gsub.add_parser("revoke", help="revoke one grant")
    daemon_socket(r)
    r.add_argument("grant", metavar="ID")
    p.set_defaults(func=_cmd_grants)

    p = sub.add_parser(
        "approver",
        help="run an approval agent",
        description="Approval agents put pending requests before a human. "
        "Each is a separate, unprivileged process.",
    )
    asub = p.add_subparsers(dest="agent", required=True, metavar="AGENT")
    a = asub.add_parser("cli", help="interactive prompt in this terminal (default: deny)")
    _agent_socket_args(a)
    a = asub.add_parser("desktop", help="freedesktop notifications in this session")
    _agent_socket_args(a)
    a = asub.add_parser("web", help="a console in a browser, on a loopback port")
    _agent_socket_args(a)
    a.add_argument("--listen", default="127.0.0.1:8765", help="loopback ADDRESS:PORT")
    a.add_argument(
        "--state-dir",
        type=Path,
        default=Path.home() / ".local" / "state" / "clawvisor-web",
        help="its login links, mode 0700 (default %(default)s)",
    )
    a.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="another Host it answers for (a tunnel's or TLS proxy's); repeatable",
    )
    a.add_argument(
        "--secure-cookie",
        action="store_true",
        help="mark the session cookie Secure (behind a TLS proxy)",
    )
    a.add_argument(
        "--config-dir",
        type=Path,
        default=Path("/etc/clawvisor"),
        help="for policy explain and diff (default %(default)s)",
    )
    a.add_argument(
        "--audit-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="passed on to `audit log` and `audit verify` (e.g. --audit-arg=--journal-dir=D)",
    )
    a.add_argument(
        "--link",
        action="store_true",
        help="print a new one-time login link for the console running with this state dir",
    )
    a = asub.add_parser(
        "telegram", help="a Telegram bot (its own user, network allowed; one for every VM)"
    )
    _agent_socket_args(a)
    a.add_argument(
        "--token-file",
        type=Path,
        default=Path("/etc/clawvisor/telegram.token"),
        help="bot token, mode 0600 (default %(default)s)",
    )
    a.add_argument(
        "--api-base",
        default="https://api.telegram.org",
        help="Bot API base URL, e.g. a self-hosted Bot API server",
    )
    a.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/var/lib/clawvisor-telegram"),
        help="paired users and keys (default %(default)s)",
    )
    tsub = a.add_subparsers(dest="telegram_command", metavar="COMMAND")
    t = tsub.add_parser("pair", help="print a one-time code to pair a Telegram user")
    t.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/var/lib/clawvisor-telegram"),
        help="the agent's state directory (default %(default)s)",
    )
    t.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds the code stays valid (default %(default)s)",
    )
    p.set_defaults(func=_cmd_approver)
