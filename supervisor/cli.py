"""The `clawvisor` command line. Each subcommand is thin; the work lives in its module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from .config import DEFAULT_CONFIG_DIR, DEFAULT_LOG_DIR, DEFAULT_RUNTIME_DIR, DEFAULT_STATE_DIR

EXIT_OK, EXIT_DENIED, EXIT_ERROR = 0, 1, 2


def _cmd_serve(args: argparse.Namespace) -> int:
    from .config import Paths
    from .daemon import serve

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


def parse_params(action: str, items: Sequence[str]) -> dict[str, Any]:
    """`key=value` (a string; a number for int params) and `key:=JSON` into params."""
    from .catalog import POLICY_CATALOG

    kinds = POLICY_CATALOG[action].params if action in POLICY_CATALOG else {}
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value or key:=JSON, got {item!r}")
        if key.endswith(":"):
            key = key[:-1]
            try:
                params[key] = msgspec.json.decode(value.encode())
            except msgspec.DecodeError as exc:
                raise ValueError(f"{key}: not JSON: {exc}") from None
            continue
        kind = kinds.get(key)
        if kind == "int" and value.lstrip("-").isdigit():
            params[key] = int(value)
        elif kind == "bool" and value in ("true", "false"):
            params[key] = value == "true"
        else:
            params[key] = value
    return params


def _cmd_send(args: argparse.Namespace) -> int:
    from .client import Client

    try:
        params = parse_params(args.action, args.params)
    except ValueError as exc:
        print(f"clawvisor send: {exc}", file=sys.stderr)
        return EXIT_ERROR
    intent: dict[str, Any] = {"action": args.action, **params}
    if args.target is not None:
        intent["target"] = args.target
    try:
        with Client(args.socket, timeout=args.timeout) as client:
            reply, raw = client.call(intent, args.id)
    except (OSError, ConnectionError) as exc:
        print(f"clawvisor send: {args.socket}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(raw.decode("utf-8", "replace"))
    return {"ok": EXIT_OK, "denied": EXIT_DENIED}.get(reply.status, EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="clawvisor", description="Supervisor between AI agent gateways and the machine."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument(
        "--runtime-dir",
        type=Path,
        default=DEFAULT_RUNTIME_DIR,
        help=f"where the sockets go (default {DEFAULT_RUNTIME_DIR})",
    )
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
        "send",
        help="send one intent and print the reply",
        description="Send one intent to the intents socket and print the "
        "reply JSON. Exit status: 0 ok, 1 denied, 2 error.",
    )
    p.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_RUNTIME_DIR / "intents.sock",
        help="intents socket (default %(default)s)",
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `clawvisor` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
