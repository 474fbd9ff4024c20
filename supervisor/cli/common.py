"""What every subcommand group shares: exit codes, the socket and directory options,
the guard around control-socket calls, and `key=value` params."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import msgspec

from ..config import DEFAULT_CONFIG_DIR, DEFAULT_LOG_DIR, DEFAULT_RUNTIME_DIR, DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from ..config import Paths
    from ..provision.box import Box

EXIT_OK, EXIT_DENIED, EXIT_ERROR = 0, 1, 2
CONTROL_SOCKET = DEFAULT_RUNTIME_DIR / "control.sock"
SOCKET_HELP = "control socket (default %(default)s)"
CONFIG_HELP = "configuration directory (default %(default)s)"
JOURNAL_DIR_HELP = "read the journal files in this directory instead of the system journal"
#: The `sub` each group adds its parsers to.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def parse_params(action: str, items: Sequence[str]) -> dict[str, Any]:
    """`key=value` (a string; a number for int params) and `key:=JSON` into params."""
    from ..actions import POLICY_CATALOG

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


def guard(run: Callable[[], int]) -> int:
    """Run a control-socket command; a missing or refusing daemon is a clear error."""
    try:
        return run()
    except KeyboardInterrupt:
        return EXIT_OK
    except (OSError, ConnectionError) as exc:
        print(f"clawvisor: cannot reach the daemon: {exc}", file=sys.stderr)
        return EXIT_ERROR


def box_paths(args: argparse.Namespace) -> Paths:
    """The paths the provisioning commands work on (config, runtime and state directories)."""
    from ..config import Paths

    return Paths(
        config_dir=args.config_dir,
        runtime_dir=args.runtime_dir,
        state_dir=args.state_dir,
        log_dir=DEFAULT_LOG_DIR,
    )


def load_box(args: argparse.Namespace, command: str) -> Box | None:
    from ..config import ConfigError
    from ..provision.run import load_box

    if not args.config_dir.is_dir():
        print(f"clawvisor {command}: no config directory {args.config_dir}", file=sys.stderr)
        return None
    try:
        return load_box(box_paths(args))
    except ConfigError as exc:
        print(f"clawvisor {command}: {exc}", file=sys.stderr)
        return None


def box_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config-dir",
        type=Path,
        default=DEFAULT_CONFIG_DIR,
        help="configuration directory (default %(default)s)",
    )
    p.add_argument(
        "--runtime-dir",
        type=Path,
        default=DEFAULT_RUNTIME_DIR,
        help="the daemon's sockets (default %(default)s)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="state: overlays, firewall record (default %(default)s)",
    )


def intents_socket(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_RUNTIME_DIR / "intents.sock",
        help="intents socket (default %(default)s)",
    )
