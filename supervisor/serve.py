"""`clawvisor serve`: load the configuration, open the audit trail, run the daemon in the
foreground until it is told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys

from .audit import CRIT, Auditor, AuditRecord
from .audit.chain import HEAD_FILE
from .audit.journal import JournalSender, reachable, socket_path, use_namespace
from .config import Config, ConfigError, Paths, embedded_config, load_config
from .daemon import Daemon


def embedded_banner(config: Config) -> str:
    """What `make run` prints so the user can try the demo from another terminal."""
    demo = next(iter(config.workloads.values()))
    sock = config.paths.intents_socket
    prefix = "" if demo.uid == 0 else f"(as {demo.user}) "
    return "\n".join(
        [
            "clawvisor: no config directory, running the embedded demo config:",
            f"  workload 'demo' is uid {demo.uid} ({demo.user}); `status` is allowed,",
            "  `open-url` and `install-app` ask (answer with `clawvisor approve ID` or",
            "  `clawvisor approver cli` as root; unanswered asks time out to deny);",
            "  all else is denied.",
            f"Try it {prefix}from a second terminal:",
            f"  {sys.prefix}/bin/clawvisor send --socket {sock} status",
            f"  {sys.prefix}/bin/clawvisor send --socket {sock} open-url url=https://example.org/",
            f'  echo \'{{"id":"1","intent":{{"action":"status"}}}}\' | socat - UNIX-CONNECT:{sock}',
            "Stop with Ctrl-C.",
        ]
    )


def raise_fd_limit(want: int = 65536) -> None:
    """Lift the soft RLIMIT_NOFILE towards the hard one: systemd leaves the soft limit at
    1024 for select()'s sake, and every gateway connection is a descriptor (epoll has no
    such limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def trail_sender(namespace: str) -> tuple[JournalSender, str]:
    """The sender for the trail's journald, and what is wrong with it ("" when nothing):
    its namespace's journald, or (loudly) the system's when that one is not running."""
    use_namespace(namespace)
    if not namespace:
        return JournalSender(), ""
    path = socket_path(namespace)
    if reachable(path):
        return JournalSender(path), ""
    return JournalSender(), (
        f"no journald runs for the trail's namespace {namespace!r} ({path}): records go to "
        "the system journal, where other logs can rotate them away (run clawvisor.service, "
        f'whose LogNamespace={namespace} starts one, or set [audit] journal_namespace = "")'
    )


def serve(paths: Paths, *, embedded: bool) -> int:
    """Run the daemon in the foreground; the exit status for the CLI."""
    try:
        config = embedded_config(paths) if embedded else load_config(paths)
    except ConfigError as exc:
        print(f"clawvisor: cannot start: {exc}", file=sys.stderr)
        return 2
    for warning in config.warnings:
        print(f"clawvisor: warning: {warning}", file=sys.stderr)
    raise_fd_limit()
    try:
        paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        print(f"clawvisor: cannot start: state directory {paths.state_dir}: {exc}", file=sys.stderr)
        return 2
    sender, where = trail_sender(config.settings.audit.journal_namespace)
    auditor = Auditor(
        paths.log_dir,
        fallback_name=config.settings.audit.fallback_file,
        head_path=paths.state_dir / HEAD_FILE,
        backlog_cap=config.settings.audit.backlog,
        sender=sender,
    )
    if where:
        print(f"clawvisor: WARNING: {where}", file=sys.stderr, flush=True)
        auditor.note(AuditRecord(kind="audit", priority=CRIT, message=where))

    async def main() -> int:
        daemon = Daemon(config, auditor)
        if config.embedded:
            print(embedded_banner(config), file=sys.stderr, flush=True)
        return await daemon.run()

    try:
        return asyncio.run(main())
    except RuntimeError as exc:
        print(f"clawvisor: cannot start: {exc}", file=sys.stderr)
        return 2
