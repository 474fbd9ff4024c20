"""What every subcommand group shares: exit codes, the socket and directory options,
the guard around control-socket calls, and `key=value` params."""

from __future__ import annotations

import argparse
import os
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
#: Sets every command's default `--runtime-dir` (where both sockets are).
RUNTIME_DIR_ENV = "CLAWVISOR_RUNTIME_DIR"
CONTROL, INTENTS = "control.sock", "intents.sock"
JSON_HELP = "print JSON (its shape: `clawvisor schema cli`)"
CONFIG_HELP = "configuration directory (default %(default)s)"
JOURNAL_DIR_HELP = "read the journal files in this directory instead of the system journal"
#: The `sub` each group adds its parsers to.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Parser(argparse.ArgumentParser):
    """Options before or after a command's positionals and `key=value` params
    (`send open-url --target t url=...` and `send --target t open-url url=...` alike),
    and an error in a subcommand printed with that subcommand's usage."""

    _mixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._mixing or any(isinstance(a, argparse._SubParsersAction) for a in self._actions):
            return super().parse_known_args(args, namespace)
        # A leaf: intermixed parsing (which calls back into this method, hence the flag),
        # and anything left over is this subcommand's error, not the top level's.
        self._mixing = True
        try:
            ns, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


def runtime_dir_default() -> Path:
    """`$CLAWVISOR_RUNTIME_DIR`, or the packaged runtime directory."""
    env = os.environ.get(RUNTIME_DIR_ENV)
    return Path(env) if env else DEFAULT_RUNTIME_DIR


def runtime_dir_arg(p: argparse.ArgumentParser, what: str = "the daemon's sockets") -> None:
    p.add_argument(
        "--runtime-dir",
        type=Path,
        default=runtime_dir_default(),
        help=f"{what} (default %(default)s; ${RUNTIME_DIR_ENV} sets it)",
    )


def daemon_socket(p: argparse.ArgumentParser, name: str = CONTROL) -> None:
    """`--runtime-dir` (both sockets follow from it) and `--socket` to name one directly."""
    runtime_dir_arg(p)
    p.add_argument(
        "--socket", type=Path, default=None, help=f"the socket itself (default RUNTIME_DIR/{name})"
    )
    p.set_defaults(socket_name=name)


#: The socket this run's command talks to, named when it cannot be reached.
_socket: list[Path] = []


def resolve_sockets(args: argparse.Namespace) -> None:
    """`args.socket` from `--runtime-dir` where `--socket` was not given."""
    name = getattr(args, "socket_name", None)
    if name is not None and args.socket is None:
        args.socket = args.runtime_dir / name
    if name is not None:
        _socket[:] = [args.socket]


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
        where = f" at {_socket[0]}" if _socket else ""
        print(f"clawvisor: cannot reach the daemon{where}: {exc}", file=sys.stderr)
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
    runtime_dir_arg(p)
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="state: overlays, firewall record (default %(default)s)",
    )


def intents_socket(p: argparse.ArgumentParser) -> None:
    daemon_socket(p, INTENTS)
