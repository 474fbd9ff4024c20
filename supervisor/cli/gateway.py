"""`clawvisor send | schema | mcp | skill`: what a gateway (a workload user) runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from .common import (
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_OK,
    Subcommands,
    box_args,
    box_paths,
    intents_socket,
    parse_params,
)


def _cmd_send(args: argparse.Namespace) -> int:
    from ..wire.client import Client
    from ..wire.errors import ClientTimeout

    try:
        params = parse_params(args.action, args.params)
    except ValueError as exc:
        print(f"clawvisor send: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.target is not None:
        params["target"] = args.target
    try:
        with Client(args.socket, timeout=args.timeout) as client:
            raw = client.wait_raw(client.submit(args.action, args.id, **params))
    except ClientTimeout:
        print(f"clawvisor send: no reply within {args.timeout:g} s", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, ConnectionError) as exc:
        print(f"clawvisor send: {args.socket}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(raw.decode("utf-8", "replace"))
    status = msgspec.json.decode(raw).get("status")
    return {"ok": EXIT_OK, "denied": EXIT_DENIED}.get(status, EXIT_ERROR)


def _cmd_schema(args: argparse.Namespace) -> int:
    from ..wire.schema import schema_text

    if args.part == "cli":
        from .output import cli_schema_text

        text = cli_schema_text()
    else:
        text = schema_text(args.part)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return EXIT_OK


def _cmd_mcp(args: argparse.Namespace) -> int:
    try:
        from ..gateway.mcp_server import serve
    except ImportError as exc:
        print(
            f"clawvisor mcp: the MCP SDK is not installed ({exc}); pip install 'clawvisor[mcp]'",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return serve(str(args.socket), None if args.timeout <= 0 else args.timeout, args.progress_every)


def _cmd_skill(args: argparse.Namespace) -> int:
    from ..gateway import skill

    if args.config_dir is not None:
        if args.workload is None:
            print("clawvisor skill: --config-dir needs --workload", file=sys.stderr)
            return EXIT_ERROR
        from ..policy_tools import capabilities_offline

        found = capabilities_offline(args.config_dir, args.workload)
        if isinstance(found, str):
            print(f"clawvisor skill: {found}", file=sys.stderr)
            return EXIT_ERROR
        workload, caps = args.workload, found
    else:
        from executors.capabilities import Result as CapabilitiesResult

        from ..wire.client import Client
        from ..wire.errors import ClawvisorError

        try:
            with Client(args.socket, timeout=30) as client:
                result = client.request("capabilities")
        except ClawvisorError as exc:
            print(f"clawvisor skill: clawvisor refused: {exc}", file=sys.stderr)
            return EXIT_DENIED
        except (OSError, ConnectionError) as exc:
            print(f"clawvisor skill: {args.socket}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        assert isinstance(result, CapabilitiesResult)
        workload, caps = result.workload, result.actions
    path = skill.write(args.out, workload, caps)
    print(path)
    return EXIT_OK


def _cmd_openclaw_setup(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..gateway.openclaw import Workload, setup
    from ..policy_tools import capabilities_offline
    from ..provision.run import load_box

    try:
        box = load_box(box_paths(args))
    except ConfigError as exc:
        print(f"clawvisor openclaw setup: {exc}", file=sys.stderr)
        return EXIT_ERROR
    names = sorted(box.workloads)
    name = args.workload or (names[0] if len(names) == 1 else None)
    if name is None or name not in box.workloads:
        print(f"clawvisor openclaw setup: give --workload, one of {names}", file=sys.stderr)
        return EXIT_ERROR
    caps = capabilities_offline(args.config_dir, name)
    if isinstance(caps, str):
        print(f"clawvisor openclaw setup: {caps}", file=sys.stderr)
        return EXIT_ERROR
    asks = [r.timeout for c in caps for r in c.rules if r.timeout is not None]
    w = Workload(
        name=name,
        user=box.workloads[name].user,
        home=box.gateway_home(name),
        longest_ask=max(asks, default=0.0),
        via=args.via,
        socket=args.socket,
    )
    return setup(w, print_only=args.print, check=args.check)


def _cmd_openclaw_plugin(args: argparse.Namespace) -> int:
    from ..gateway.openclaw import PLUGIN_DIR

    print(PLUGIN_DIR)
    return EXIT_OK


def register(sub: Subcommands) -> None:
    """Add this group's subcommands."""
    p = sub.add_parser(
        "send",
        help="send one intent and print the reply",
        description="Send one intent to the intents socket and print the "
        "reply JSON. Exit status: 0 ok, 1 denied, 2 error.",
    )
    intents_socket(p)
    p.add_argument("--target", default=None, help="target workload")
    p.add_argument("--id", default=None, help="request id (default: generated)")
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the reply (default %(default)s)",
    )
    p.add_argument("action", help="the action, e.g. status or open-url")
    p.add_argument(
        "params",
        nargs="*",
        metavar="key=value",
        help="params: key=value, or key:=JSON for lists and numbers",
    )
    p.set_defaults(func=_cmd_send)

    p = sub.add_parser(
        "schema",
        help="print the JSON Schema of the protocol",
        description="Print the JSON Schema (2020-12) of the protocol, generated from the "
        "daemon's own msgspec Structs: requests and replies on intents.sock, operator "
        "commands on control.sock, or all of them; or `cli`: what each command prints with "
        "--json, and every command's exit statuses.",
    )
    p.add_argument(
        "part", nargs="?", default="all", choices=("all", "request", "reply", "control", "cli")
    )
    p.add_argument("-o", "--output", type=Path, default=None, help="write to this file")
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser(
        "mcp",
        help="serve MCP over stdio: this workload's actions as tools",
        description="An MCP server on stdin/stdout for an agent runtime. Run it as the "
        "workload user: its tools are the actions that workload's policy could allow or "
        "ask about; each call is one intent, decided by the daemon.",
    )
    intents_socket(p)
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for a reply, raised to each rule's approval timeout plus "
        "30 s; 0 waits for ever (default %(default)s)",
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="while a call waits (for a human), a progress notification this often, to "
        "clients that asked for them (default %(default)s)",
    )
    p.set_defaults(func=_cmd_mcp)

    oc = sub.add_parser(
        "openclaw",
        help="OpenClaw: a workload's config that leaves clawvisor the only way to act",
        description="OpenClaw gateways (the `openclaw` npm package).",
    )
    ocsub = oc.add_subparsers(dest="openclaw_command", required=True, metavar="COMMAND")
    p = ocsub.add_parser(
        "setup",
        help="write the workload's ~/.openclaw/openclaw.json for clawvisor",
        description="As root: set the workload's OpenClaw config (in home_root/NAME/work, "
        "its gateway unit's HOME) to use clawvisor's plugin or `clawvisor mcp` with a "
        "timeout above its longest ask, and "
        "turn OpenClaw's own acting tools off (tools.profile messaging, tools.deny of the "
        "runtime, fs, web and ui groups); the rest of the file stays as it is. The file is "
        "read and written as the workload's user. Idempotent. Exit 0 done, 1 --check "
        "found a bypass, 2 error.",
    )
    box_args(p)
    p.add_argument("--workload", metavar="W", help="the workload (default: the only one)")
    p.add_argument(
        "--via",
        choices=("plugin", "mcp"),
        default="mcp",
        help="plugin: clawvisor's native OpenClaw plugin (`clawvisor openclaw plugin` is its "
        "directory, for `openclaw plugins install`); mcp: the `clawvisor mcp` bridge",
    )
    p.add_argument(
        "--socket", default=None, help="the intents socket, when not /run/clawvisor/intents.sock"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--print", action="store_true", help="print the config, write nothing")
    g.add_argument(
        "--check", action="store_true", help="report what lets the agent bypass clawvisor"
    )
    p.set_defaults(func=_cmd_openclaw_setup)
    p = ocsub.add_parser(
        "plugin",
        help="print the directory of clawvisor's native OpenClaw plugin",
        description="Print the directory of the native plugin shipped with clawvisor; as "
        'the workload\'s user: `openclaw plugins install "$(clawvisor openclaw plugin)" '
        "--force --accept-capabilities`.",
    )
    p.set_defaults(func=_cmd_openclaw_plugin)

    p = sub.add_parser(
        "skill",
        help="write a SKILL.md describing this workload's actions",
        description="Write OUT/clawvisor/SKILL.md for an OpenClaw-style agent runtime: each "
        "action the workload may use, the rules that decide it, and how to call it with "
        "`clawvisor send`. Asks the daemon as the calling user, or with --config-dir "
        "reads the policy files for --workload.",
    )
    p.add_argument("--out", type=Path, default=Path("skills"), help="skills folder")
    intents_socket(p)
    p.add_argument("--config-dir", type=Path, default=None, help="read this config instead")
    p.add_argument("--workload", default=None, help="the workload (with --config-dir)")
    p.set_defaults(func=_cmd_skill)
