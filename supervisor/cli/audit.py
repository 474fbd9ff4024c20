"""`clawvisor audit log | verify`: reading and checking the trail."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..audit.journal import NAMESPACE
from ..config import DEFAULT_LOG_DIR, DEFAULT_STATE_DIR
from .common import JOURNAL_DIR_HELP, Subcommands


def _trail(args: argparse.Namespace) -> None:
    from ..audit.journal import use_namespace

    use_namespace(args.namespace)


def _local_chain(args: argparse.Namespace) -> str | None:
    """`--chain`, or the chain whose head is in `--state-dir` (None: every chain)."""
    from ..audit.chain import HEAD_FILE, load_head

    if args.chain == "all":
        return None
    if args.chain is not None:
        return str(args.chain)
    head = load_head(args.state_dir / HEAD_FILE)
    return head.chain if head is not None else None


def _cmd_audit_log(args: argparse.Namespace) -> int:
    from ..audit.log import show

    _trail(args)
    return show(
        args.log_dir / args.fallback_file,
        fmt=args.format,
        workload=args.workload,
        since=args.since,
        follow_new=args.follow,
        journal_dir=args.journal_dir,
        chain=_local_chain(args),
        intent=args.intent,
        kinds=args.kind or (),
        host=args.host,
    )


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from ..audit.chain import HEAD_FILE, load_head, report

    _trail(args)
    fleet = args.fleet or (
        args.journal_dir is not None
        and args.chain is None
        and load_head(args.state_dir / HEAD_FILE) is None
    )
    if fleet:
        if args.journal_dir is None:
            print("clawvisor audit verify: --fleet reads a collector's --journal-dir")
            return 2
        from ..audit import fleet as fleet_verify

        return fleet_verify.report(args.journal_dir, as_json=args.json, stale=args.stale)
    return report(
        args.state_dir,
        args.log_dir / args.fallback_file,
        args.chain,
        as_json=args.json,
        journal_dir=args.journal_dir,
    )


def _where_the_trail_is(p: argparse.ArgumentParser) -> None:
    """The options both readers take: the fallback file and the journal to read."""
    p.add_argument(
        "--log-dir",
        type=Path,
        default=DEFAULT_LOG_DIR,
        help="where the audit fallback file is (default %(default)s)",
    )
    p.add_argument("--fallback-file", default="audit.jsonl", help="its name (default %(default)s)")
    p.add_argument("--journal-dir", type=Path, help=JOURNAL_DIR_HELP)
    p.add_argument(
        "--namespace",
        default=NAMESPACE,
        help="the trail's journal namespace, read with the system journal ('' for the "
        "system journal alone; default %(default)s)",
    )


def register(sub: Subcommands) -> None:
    """Add this group's subcommands."""
    aud = sub.add_parser("audit", help="the audit trail", description="The audit trail.")
    asub = aud.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    p = asub.add_parser(
        "verify",
        help="check the audit hash chain",
        description="Read the chain from journald and the fallback file and check every "
        "link: each record matches its hash and follows the one before. Exit 1 if broken.",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where the chain head is kept (default %(default)s)",
    )
    p.add_argument("--chain", metavar="ID", help="another chain than the state directory's")
    _where_the_trail_is(p)
    p.add_argument("--json", action="store_true", help="the verdict as JSON")
    p.add_argument(
        "--fleet",
        action="store_true",
        help="every chain of every VM in --journal-dir (a collector's files; the default "
        "there when --state-dir holds no chain head)",
    )
    p.add_argument(
        "--stale",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="with --fleet: a VM whose newest record is older is reported stale",
    )
    p.set_defaults(func=_cmd_audit_verify)

    p = asub.add_parser(
        "log",
        help="show the audit trail",
        description="Records from journald and the fallback file, oldest first. "
        "--format cef gives ArcSight CEF:0, one line per record, severity from PRIORITY.",
    )
    p.add_argument("--workload", metavar="W", help="only records about workload W")
    p.add_argument("--intent", metavar="ID", help="only the records of this intent id")
    p.add_argument(
        "--host", metavar="VM", help="only the records of this VM (its hostname, on a collector)"
    )
    p.add_argument(
        "--kind",
        action="append",
        metavar="KIND",
        help="only records of this kind (decision, result, approval, alert, ...); repeatable",
    )
    p.add_argument(
        "--chain",
        metavar="ID",
        help="only this daemon's chain ('all' for every chain; default: the chain whose "
        "head is in --state-dir, i.e. the local daemon's)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="the local daemon's state, for its chain id (default %(default)s)",
    )
    p.add_argument("--since", metavar="T", help="Unix time, ISO 8601, or an age: 30m, 2h, 1d")
    p.add_argument("--format", choices=("text", "json", "cef"), default="text")
    p.add_argument("--follow", "-f", action="store_true", help="then print new records")
    _where_the_trail_is(p)
    p.set_defaults(func=_cmd_audit_log)
