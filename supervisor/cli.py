"""The `clawvisor` command line. Each subcommand is thin; the work lives in its module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .config import DEFAULT_CONFIG_DIR, DEFAULT_LOG_DIR, DEFAULT_RUNTIME_DIR, DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from .config import Paths
    from .provision.box import Box

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
    from .client import Client, ClientTimeout

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
    from .schema import schema_text

    text = schema_text(args.part)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return EXIT_OK


def _cmd_mcp(args: argparse.Namespace) -> int:
    try:
        from .gateway.mcp_server import serve
    except ImportError as exc:
        print(
            f"clawvisor mcp: the MCP SDK is not installed ({exc}); pip install 'clawvisor[mcp]'",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return serve(str(args.socket), None if args.timeout <= 0 else args.timeout)


def _cmd_skill(args: argparse.Namespace) -> int:
    from .gateway import skill

    if args.config_dir is not None:
        if args.workload is None:
            print("clawvisor skill: --config-dir needs --workload", file=sys.stderr)
            return EXIT_ERROR
        from .policy_tools import capabilities_offline

        found = capabilities_offline(args.config_dir, args.workload)
        if isinstance(found, str):
            print(f"clawvisor skill: {found}", file=sys.stderr)
            return EXIT_ERROR
        workload, caps = args.workload, found
    else:
        from executors.capabilities import Result as CapabilitiesResult

        from .client import ClawvisorError, Client

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


def _cmd_reload(args: argparse.Namespace) -> int:
    from .client import Client

    try:
        with Client(args.socket, timeout=60) as client:
            reply, _ = client.control("reload")
    except (OSError, ConnectionError) as exc:
        print(f"clawvisor reload: {args.socket}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if reply.status == "ok":
        r = reply.result
        print(
            f"reloaded: {r['rules']} rules from {len(r['files'])} files, "
            f"{len(r['workloads'])} workloads"
        )
        return EXIT_OK
    message = reply.error.message if reply.error else "reload failed"
    print(f"clawvisor reload: {message}", file=sys.stderr)
    return EXIT_DENIED


def _cmd_policy_check(args: argparse.Namespace) -> int:
    from .policy_tools import check

    return check(args.config_dir)


def _cmd_policy_explain(args: argparse.Namespace) -> int:
    from .policy_tools import explain_request

    try:
        params = parse_params(args.action, args.params)
    except ValueError as exc:
        print(f"clawvisor policy explain: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return explain_request(
        args.config_dir, args.source, args.action, args.target, params, state_dir=args.state_dir
    )


def _cmd_audit_log(args: argparse.Namespace) -> int:
    from .audit_log import show

    return show(
        args.log_dir / args.fallback_file,
        fmt=args.format,
        workload=args.workload,
        since=args.since,
        follow_new=args.follow,
        journal_dir=args.journal_dir,
    )


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from .audit_chain import report

    return report(
        args.state_dir,
        args.log_dir / args.fallback_file,
        args.chain,
        as_json=args.json,
        journal_dir=args.journal_dir,
    )


def _cmd_policy_replay(args: argparse.Namespace) -> int:
    from .audit_log import parse_since
    from .policy_tools import replay

    try:
        since = parse_since(args.since) if args.since else 0.0
    except ValueError as exc:
        print(f"clawvisor policy replay: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return replay(
        args.policy_dir, args.config_dir, since, args.log_dir, use_journal=not args.no_journal
    )


def _cmd_pending(args: argparse.Namespace) -> int:
    from .agents.commands import pending

    return _guard(lambda: pending(args.socket, args.show))


def _cmd_approve(args: argparse.Namespace) -> int:
    from .agents.commands import verdict

    grant = "always" if args.always else (args.grant_for or "once")
    return _guard(
        lambda: verdict(args.socket, args.request, allow=True, grant=grant, release_all=args.all)
    )


def _cmd_deny(args: argparse.Namespace) -> int:
    from .agents.commands import verdict

    return _guard(lambda: verdict(args.socket, args.request, allow=False, reason=args.reason))


def _cmd_grants(args: argparse.Namespace) -> int:
    from .agents.commands import grants

    revoke = args.grant if args.grants_command == "revoke" else None
    return _guard(lambda: grants(args.socket, revoke))


def _cmd_approver(args: argparse.Namespace) -> int:
    import asyncio

    if args.agent == "cli":
        from .agents import cli

        return _guard(lambda: asyncio.run(cli.run(args.socket)))
    if args.agent == "desktop":
        from .agents import desktop

        return _guard(lambda: asyncio.run(desktop.run(args.socket)))
    from .agents import telegram

    if args.telegram_command == "pair":
        return telegram.pair(args.state_dir, timeout=args.timeout)
    return _guard(
        lambda: asyncio.run(
            telegram.run(
                args.socket,
                token_file=args.token_file,
                api_base=args.api_base,
                state_dir=args.state_dir,
            )
        )
    )


def _guard(run: Callable[[], int]) -> int:
    """Run a control-socket command; a missing or refusing daemon is a clear error."""
    try:
        return run()
    except KeyboardInterrupt:
        return EXIT_OK
    except (OSError, ConnectionError) as exc:
        print(f"clawvisor: cannot reach the daemon: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _box_paths(args: argparse.Namespace) -> Paths:
    """The paths the provisioning commands work on (config, runtime and state directories)."""
    from .config import Paths

    return Paths(
        config_dir=args.config_dir,
        runtime_dir=args.runtime_dir,
        state_dir=args.state_dir,
        log_dir=DEFAULT_LOG_DIR,
    )


def _load_box(args: argparse.Namespace, command: str) -> Box | None:
    from .config import ConfigError
    from .provision.run import load_box

    if not args.config_dir.is_dir():
        print(f"clawvisor {command}: no config directory {args.config_dir}", file=sys.stderr)
        return None
    try:
        return load_box(_box_paths(args))
    except ConfigError as exc:
        print(f"clawvisor {command}: {exc}", file=sys.stderr)
        return None


def _cmd_provision(args: argparse.Namespace) -> int:
    from .provision.run import provision

    only = args.only.split(",") if args.only else None
    return provision(_box_paths(args), dry_run=args.dry_run, **({"only": only} if only else {}))


def _cmd_deprovision(args: argparse.Namespace) -> int:
    from .provision.deprovision import deprovision

    box = _load_box(args, "deprovision")
    if box is None:
        return EXIT_DENIED
    return deprovision(box, args.name, args.purge)


def _cmd_verify(args: argparse.Namespace) -> int:
    from .provision.verify import verify

    box = _load_box(args, "verify")
    if box is None:
        return EXIT_ERROR
    return verify(box, args.workload, args.json)


def _cmd_monitor(args: argparse.Namespace) -> int:
    from .agents.monitor_view import Format, from_log, parse_since, run

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
    return _guard(
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


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import report

    return report(args.socket, as_json=args.json, bpf=not args.no_bpf)


def _cmd_respond(args: argparse.Namespace) -> int:
    from .client import Client

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

    return _guard(go)


def _box_args(p: argparse.ArgumentParser) -> None:
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


def _intents_socket(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_RUNTIME_DIR / "intents.sock",
        help="intents socket (default %(default)s)",
    )


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
    _intents_socket(p)
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
        "commands on control.sock, or all of them.",
    )
    p.add_argument("part", nargs="?", default="all", choices=("all", "request", "reply", "control"))
    p.add_argument("-o", "--output", type=Path, default=None, help="write to this file")
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser(
        "mcp",
        help="serve MCP over stdio: this workload's actions as tools",
        description="An MCP server on stdin/stdout for an agent runtime. Run it as the "
        "workload user: its tools are the actions that workload's policy could allow or "
        "ask about; each call is one intent, decided by the daemon.",
    )
    _intents_socket(p)
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for a reply, raised to each rule's approval timeout plus "
        "30 s; 0 waits for ever (default %(default)s)",
    )
    p.set_defaults(func=_cmd_mcp)

    p = sub.add_parser(
        "skill",
        help="write a SKILL.md describing this workload's actions",
        description="Write OUT/clawvisor/SKILL.md for an OpenClaw-style agent runtime: each "
        "action the workload may use, the rules that decide it, and how to call it with "
        "`clawvisor send`. Asks the daemon as the calling user, or with --config-dir "
        "reads the policy files for --workload.",
    )
    p.add_argument("--out", type=Path, default=Path("skills"), help="skills folder")
    _intents_socket(p)
    p.add_argument("--config-dir", type=Path, default=None, help="read this config instead")
    p.add_argument("--workload", default=None, help="the workload (with --config-dir)")
    p.set_defaults(func=_cmd_skill)

    p = sub.add_parser(
        "reload",
        help="re-read config and policy in the running daemon",
        description="Ask the daemon to re-read its config and policy. A "
        "policy that does not load (or whose tests fail) is "
        "refused and the previous one stays in force; then this "
        "exits 1 with the reason.",
    )
    p.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_RUNTIME_DIR / "control.sock",
        help="control socket (default %(default)s)",
    )
    p.set_defaults(func=_cmd_reload)

    pol = sub.add_parser(
        "policy",
        help="check, explain and replay the policy",
        description="Tools for the policy in CONFIG_DIR/policy.d.",
    )
    psub = pol.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    config_help = "configuration directory (default %(default)s)"

    p = psub.add_parser(
        "check",
        help="lint the policy and run its tests",
        description="Errors (exit 1): the policy does not load, or one of "
        "its [[test]] tables fails. Warnings (exit 0): rules that "
        "never decide, asks no approver can answer, mutating "
        "allows for every source, files others can write.",
    )
    p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR, help=config_help)
    p.set_defaults(func=_cmd_policy_check)

    p = psub.add_parser(
        "explain",
        help="which rule decides a request, and why",
        description="Show the decision for a request, the deciding rule's "
        "file:line, and why each earlier rule did not match.",
    )
    p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR, help=config_help)
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
        "replay",
        help="re-decide audited intents under another policy",
        description="Read decisions from journald and the audit fallback, "
        "decide each again under the policy in --policy-dir, and "
        "list those whose decision would change.",
    )
    p.add_argument("--policy-dir", type=Path, required=True, help="the new policy.d")
    p.add_argument("--since", default=None, help="only records since: 30m, 2h, 1d or ISO time")
    p.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR, help=config_help)
    p.add_argument(
        "--log-dir",
        type=Path,
        default=DEFAULT_LOG_DIR,
        help="where the audit fallback file is (default %(default)s)",
    )
    p.add_argument("--no-journal", action="store_true", help="read only the fallback file")
    p.set_defaults(func=_cmd_policy_replay)

    control = DEFAULT_RUNTIME_DIR / "control.sock"
    socket_help = "control socket (default %(default)s)"

    journal_dir_help = "read the journal files in this directory instead of the system journal"
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
    p.add_argument(
        "--log-dir",
        type=Path,
        default=DEFAULT_LOG_DIR,
        help="where the audit fallback file is (default %(default)s)",
    )
    p.add_argument("--fallback-file", default="audit.jsonl", help="its name (default %(default)s)")
    p.add_argument("--chain", metavar="ID", help="another chain than the state directory's")
    p.add_argument("--journal-dir", type=Path, help=journal_dir_help)
    p.add_argument("--json", action="store_true", help="the verdict as JSON")
    p.set_defaults(func=_cmd_audit_verify)

    p = asub.add_parser(
        "log",
        help="show the audit trail",
        description="Records from journald and the fallback file, oldest first. "
        "--format cef gives ArcSight CEF:0, one line per record, severity from PRIORITY.",
    )
    p.add_argument("--workload", metavar="W", help="only records about workload W")
    p.add_argument("--since", metavar="T", help="Unix time, ISO 8601, or an age: 30m, 2h, 1d")
    p.add_argument("--format", choices=("text", "json", "cef"), default="text")
    p.add_argument("--follow", "-f", action="store_true", help="then print new records")
    p.add_argument(
        "--log-dir",
        type=Path,
        default=DEFAULT_LOG_DIR,
        help="where the audit fallback file is (default %(default)s)",
    )
    p.add_argument("--fallback-file", default="audit.jsonl", help="its name (default %(default)s)")
    p.add_argument("--journal-dir", type=Path, help=journal_dir_help)
    p.set_defaults(func=_cmd_audit_log)

    p = sub.add_parser(
        "pending",
        help="list requests waiting for approval",
        description="List the requests waiting for a human, or one in full.",
    )
    p.add_argument("--socket", type=Path, default=control, help=socket_help)
    p.add_argument("--show", metavar="ID", help="show one request with every value in full")
    p.set_defaults(func=_cmd_pending)

    p = sub.add_parser(
        "approve",
        help="allow a pending request",
        description="Show a pending request and allow exactly what is shown.",
    )
    p.add_argument("--socket", type=Path, default=control, help=socket_help)
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
    p.add_argument("--socket", type=Path, default=control, help=socket_help)
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
    r.add_argument("--socket", type=Path, default=control, help=socket_help)
    r = gsub.add_parser("revoke", help="revoke one grant")
    r.add_argument("--socket", type=Path, default=control, help=socket_help)
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
    a.add_argument("--socket", type=Path, default=control, help=socket_help)
    a = asub.add_parser("desktop", help="freedesktop notifications in this session")
    a.add_argument("--socket", type=Path, default=control, help=socket_help)
    a = asub.add_parser("telegram", help="a Telegram bot (its own user, network allowed)")
    a.add_argument("--socket", type=Path, default=control, help=socket_help)
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

    p = sub.add_parser(
        "provision",
        help="converge the box to workloads.toml",
        description="Create the groups, users, homes and tiers, overlay "
        "mounts, the nftables table, kernel settings and systemd "
        "units that workloads.toml describes. Prints the plan "
        "first; a second run changes nothing.",
    )
    _box_args(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument(
        "--only", metavar="KINDS", help="comma-separated: users,dirs,overlay,firewall,sysctl,units"
    )
    p.set_defaults(func=_cmd_provision)

    p = sub.add_parser(
        "deprovision",
        help="remove one workload's users, mounts and rules",
        description="Remove what provision made for one workload. Its home "
        "and overlay data are kept unless --purge.",
    )
    _box_args(p)
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
    _box_args(p)
    p.add_argument("--workload", metavar="W", help="only this workload")
    p.add_argument("--json", action="store_true", help="one JSON object per check")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "monitor",
        help="watch monitor events and alerts live",
        description="Show the workloads' syscall, file and network events and "
        "the alerts they raise, as they happen.",
    )
    p.add_argument("--socket", type=Path, default=control, help=socket_help)
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

    p = sub.add_parser(
        "doctor",
        help="check what this host offers clawvisor",
        description="Check the kernel (BPF, headers, tracepoints, cgroup v2, overlayfs), "
        "nftables, journald, systemd and D-Bus, then the running daemon's monitors: one "
        "line each, with the fix for anything missing. Exit 1 on any FAIL.",
    )
    p.add_argument("--socket", type=Path, default=control, help=socket_help)
    p.add_argument("--json", action="store_true", help="one JSON object per check")
    p.add_argument(
        "--no-bpf", action="store_true", help="skip compiling and loading the BPF program"
    )
    p.set_defaults(func=_cmd_doctor)

    for name, what in (
        ("freeze", "freeze every process of a workload (cgroup)"),
        ("thaw", "thaw a frozen workload"),
        ("kill", "kill every process of a workload"),
        ("cut-network", "drop all of a workload's traffic and empty its allow sets"),
        ("restore-network", "undo cut-network"),
        ("revoke-grants", "revoke every grant a workload holds"),
    ):
        p = sub.add_parser(name, help=what, description=what.capitalize() + " (audited).")
        p.add_argument("--socket", type=Path, default=control, help=socket_help)
        p.add_argument("workload", metavar="W")
        p.set_defaults(func=_cmd_respond)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `clawvisor` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
