"""`clawvisor policy check | explain | replay | diff`: the operator's tools around the policy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import DEFAULT_CONFIG_DIR, DEFAULT_LOG_DIR, DEFAULT_STATE_DIR
from .common import CONFIG_HELP, EXIT_ERROR, Subcommands, parse_params


def _cmd_policy_check(args: argparse.Namespace) -> int:
    from ..policy_tools import check

    return check(args.config_dir, as_json=args.json)


def _cmd_policy_explain(args: argparse.Namespace) -> int:
    from ..policy_tools import explain_request

    try:
        params = parse_params(args.action, args.params)
    except ValueError as exc:
        print(f"clawvisor policy explain: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return explain_request(
        args.config_dir, args.source, args.action, args.target, params, state_dir=args.state_dir
    )


def _cmd_policy_diff(args: argparse.Namespace) -> int:
    from ..policy_tools import diff

    if not args.socket and args.fleet is None and args.runtime_dir is None:
        return diff(args.config_dir, args.new_policy_dir, json=args.json, out=sys.stdout)
    from ..agents.fleet_sockets import FleetError, choose
    from ..fleet.policy_diff import diff_fleet

    try:
        chosen = choose(args.socket, args.fleet, (args.runtime_dir or Path()) / "control.sock")
    except FleetError as exc:
        print(f"clawvisor policy diff: {exc}", file=sys.stderr)
        return 2
    vms = {"daemon": chosen} if isinstance(chosen, Path) else chosen
    return diff_fleet(vms, args.new_policy_dir, json=args.json, out=sys.stdout)


def _cmd_policy_replay(args: argparse.Namespace) -> int:
    from ..audit.log import parse_since
    from ..policy_tools import replay

    try:
        since = parse_since(args.since) if args.since else 0.0
    except ValueError as exc:
        print(f"clawvisor policy replay: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return replay(
        args.policy_dir, args.config_dir, since, args.log_dir, use_journal=not args.no_journal
    )


def register(sub: Subcommands) -> None:
    """Add this group's subcommands."""
    pol = sub.add_parser(
        "policy",
        help="check, explain and replay the policy",
        description="Tools for the policy in CONFIG_DIR/policy.d.",
    )
    psub = pol.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")

    p = psub.add_parser(
        "check",
        help="lint the policy and run its tests",
        description="Errors (exit 1): the policy does not load, or one of "
        "its [[test]] tables fails. Warnings (exit 0): rules that "
        "never decide, asks no approver can answer, mutating "
        "allows for every source, files others can write.",
    )
    p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR, help=CONFIG_HELP)
    p.add_argument("--json", action="store_true", help="the findings and counts as JSON")
    p.set_defaults(func=_cmd_policy_check)

    p = psub.add_parser(
        "explain",
        help="which rule decides a request, and why",
        description="Show the decision for a request, the deciding rule's "
        "file:line, and why each earlier rule did not match.",
    )
    p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR, help=CONFIG_HELP)
    p.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where grants are kept (default %(default)s)",
    )
    p.add_argument("--source", required=True, help="the sending workload")
    p.add_argument("--target", default=None, help="target workload (default: none given)")
    p.add_argument("action", help="the action")
    p.add_argument("params", nargs="*", metavar="key=value", help="params: key=value, or key:=JSON")
    p.set_defaults(func=_cmd_policy_explain)

    p = psub.add_parser(
        "diff",
        help="what a new policy newly allows, proved",
        description="Compare NEW_POLICY_DIR with the policy in CONFIG_DIR/policy.d, for every "
        "(source, action, target) cell: the decisions before and after, a witness request for "
        "each change (or the proof that none exists), and changes of approvers, quorum, "
        "timeout, rate and grant. With --runtime-dir, --socket or --fleet, compare it with "
        "the policy each daemon is running instead (its workloads too), VM by VM. Exit 0 "
        "when nothing is newly allowed, 1 when something is, 2 on error (any VM).",
    )
    p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR, help=CONFIG_HELP)
    p.add_argument(
        "--runtime-dir",
        type=Path,
        default=None,
        help="diff against the policy the daemon whose sockets are here runs (its control.sock)",
    )
    p.add_argument(
        "--socket",
        action="append",
        metavar="[NAME=]PATH",
        help="a daemon's control socket: diff against the policy it runs; repeat as "
        "NAME=PATH for several VMs (e.g. forwarded with ssh -L)",
    )
    p.add_argument(
        "--fleet",
        type=Path,
        metavar="FILE",
        help="a fleet file naming each VM's control socket ([vms.NAME] socket = PATH)",
    )
    p.add_argument("--json", action="store_true", help="print the diff as JSON")
    p.add_argument("new_policy_dir", type=Path, metavar="NEW_POLICY_DIR")
    p.set_defaults(func=_cmd_policy_diff)

    p = psub.add_parser(
        "replay",
        help="re-decide audited intents under another policy",
        description="Read decisions from journald and the audit fallback, "
        "decide each again under the policy in --policy-dir, and "
        "list those whose decision would change.",
    )
    p.add_argument("--policy-dir", type=Path, required=True, help="the new policy.d")
    p.add_argument("--since", default=None, help="only records since: 30m, 2h, 1d or ISO time")
    p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR, help=CONFIG_HELP)
    p.add_argument(
        "--log-dir",
        type=Path,
        default=DEFAULT_LOG_DIR,
        help="where the audit fallback file is (default %(default)s)",
    )
    p.add_argument("--no-journal", action="store_true", help="read only the fallback file")
    p.set_defaults(func=_cmd_policy_replay)
