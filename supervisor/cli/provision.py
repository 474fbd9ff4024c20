"""`clawvisor provision | deprovision | verify`: converging the box and checking it."""

from __future__ import annotations

import argparse

from .common import EXIT_DENIED, EXIT_ERROR, Subcommands, box_args, box_paths, load_box


def _cmd_provision(args: argparse.Namespace) -> int:
    from ..provision.run import provision

    only = args.only.split(",") if args.only else None
    return provision(box_paths(args), dry_run=args.dry_run, **({"only": only} if only else {}))


def _cmd_deprovision(args: argparse.Namespace) -> int:
    from ..provision.deprovision import deprovision

    box = load_box(args, "deprovision")
    if box is None:
        return EXIT_DENIED
    return deprovision(box, args.name, args.purge)


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..provision.verify import verify

    box = load_box(args, "verify")
    if box is None:
        return EXIT_ERROR
    return verify(box, args.workload, args.json)


def register(sub: Subcommands) -> None:
    """Add this group's subcommands."""
    p = sub.add_parser(
        "provision",
        help="converge the box to workloads.toml",
        description="Create the groups, users, homes and tiers, overlay "
        "mounts, the nftables table, kernel settings and systemd "
        "units that workloads.toml describes. Prints the plan "
        "first; a second run changes nothing.",
    )
    box_args(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument(
        "--only",
        metavar="KINDS",
        help="comma-separated: users,dirs,overlay,proxy,firewall,sysctl,units",
    )
    p.set_defaults(func=_cmd_provision)

    p = sub.add_parser(
        "deprovision",
        help="remove one workload's users, mounts and rules",
        description="Remove what provision made for one workload. Its home "
        "and overlay data are kept unless --purge.",
    )
    box_args(p)
    p.add_argument("--purge", action="store_true", help="also delete its home and overlay data")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_cmd_deprovision)

    p = sub.add_parser(
        "verify",
        help="probe each workload's confinement from inside it",
        description="Run negative and positive probes as each workload's "
        "user and print PASS/FAIL/SKIP per check; exit 1 on any "
        "FAIL.",
    )
    box_args(p)
    p.add_argument("--workload", metavar="W", help="only this workload")
    p.add_argument("--json", action="store_true", help="one JSON object per check")
    p.set_defaults(func=_cmd_verify)
