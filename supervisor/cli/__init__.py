"""The `clawvisor` command line: one module per command group, each adding its own
subcommands; the work lives in the modules they call."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import approvals, audit, daemon, fleet, gateway, monitor, policy, provision
from .common import Parser, resolve_sockets

#: The groups, in the order `clawvisor --help` lists their commands.
GROUPS = (daemon, gateway, policy, audit, approvals, provision, monitor, fleet)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = Parser(
        prog="clawvisor", description="Supervisor between AI agent gateways and the machine."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `clawvisor` console script."""
    args = build_parser().parse_args(argv)
    resolve_sockets(args)
    result: int = args.func(args)
    return result
