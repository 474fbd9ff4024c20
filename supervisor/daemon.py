"""`clawvisor serve`: load config and policy, open the sockets, serve until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from executors.base import Account
from policy import Policy, PolicyError

from . import sdnotify
from .actions import load_policy
from .activation import code_identity, handoff
from .approvals.broker import Broker
from .approvals.grants import GrantStore
from .approvals.leftovers import deny_leftovers
from .approvals.sanitize import visible
from .audit import CRIT, INFO, NOTICE, Auditor, AuditRecord, AuditUnavailable
from .audit.chain import ended
from .config import (
    Config,
    ConfigError,
    embedded_config,
    group_gid,
    load_config,
)
from .connection import Acceptance, Connection, Limits, LineHandler
from .control import ControlServices, OperatorSession
from .identity import Peer, peer_groups
from .listen import listening_sockets, refresh_intents_acl
from .monitors.manager import Monitors
from .pipeline import Caller, Pipeline, grant_recorder
from .pipeline.running import Running, record_interrupted
from .rejections import Rejections, counted_refusals
from .responses import Responder, alert_json, summary
from .server import Endpoint
from .session import Gateways
from .standing_verify import StandingVerify, keep_and_alert
from .state import DaemonState
from .triggers import Alert, Trigger, TriggerError, load_triggers
from .wire.control import AlertEvent
from .workload_sockets import WorkloadSockets

HEAD_SAVE_INTERVAL = 5.0
#: At shutdown, how long owed replies may sit unread before they are given up (a peer
#: that keeps reading gets them all, up to the drain deadline plus this).
FLUSH_TIMEOUT = 2.0


class Daemon:
    """The running daemon: state, auditor, broker, and the two endpoints."""

    def __init__(self, config: Config, auditor: Auditor) -> None:
        self.auditor = auditor
        policy = self._initial_policy(config)
        self.state = DaemonState(config, policy, grant_count=lambda: len(self.grants.list()))
        state_dir = config.paths.state_dir
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.grants = GrantStore(state_dir / "grants.json", on_save_error=self._grants_unsaved)
        self.grants.load()
        pending_file = state_dir / "pending.json"
        note = auditor.note
        left = deny_leftovers(
            pending_file,
            note,
            lambda records: ended(
                auditor.chain,
                ((r.workload, r.intent_id, r.created) for r in records),
                auditor.fallback_path,
            ),
        )
        if left:
            print(
                f"clawvisor: {left} request(s) pending when the daemon last stopped are "
                "recorded as denied",
                file=sys.stderr,
                flush=True,
            )
        self.broker = Broker(
            note,
            pending_file,
            max_pending_per_workload=config.settings.approvals.max_pending_per_workload,
            record_grant=grant_recorder(self.grants, auditor, config.settings.audit.params_cap),
        )
        self.pipeline = Pipeline(self.state, auditor, self.broker, self.grants)
        running_file = state_dir / "running.json"
        interrupted = record_interrupted(
            running_file,
            note,
            lambda runs: ended(
                auditor.chain,
                ((r.workload, r.intent_id, r.started) for r in runs),
                auditor.fallback_path,
            ),
        )
        if interrupted:
            print(
                f"clawvisor: {interrupted} execution(s) running when the daemon last stopped "
                "are recorded as interrupted",
                file=sys.stderr,
                flush=True,
            )
        self.pipeline.execution.running = Running(running_file, self._state_unsaved)
        self.rejections = Rejections(
            auditor,
            rate=config.settings.audit.rejected_rate,
            burst=config.settings.audit.rejected_burst,
            interval=config.settings.audit.rejected_interval,
        )
        self.pipeline.count_denial = counted_refusals(auditor, config.settings.audit)
        self.monitors: Monitors | None = None
        self.responder: Responder | None = None
        ms = config.settings.monitors
        if ms.enabled:
            self.responder = Responder(
                lambda: self.state.config, self.grants, note, self._show_alert
            )
            self.monitors = Monitors(
                ms,
                self._initial_triggers(config),
                self.responder.handle,
                config.settings.provision.home_root,
            )
            self.state.monitor_status = self.monitors.status
            auditor.taps.append(self.monitors.show_record)
        self.services = ControlServices(
            state=self.state,
            broker=self.broker,
            grants=self.grants,
            audit=note,
            reload=self.reload,
            pipeline=self.pipeline,
            telegram_uid=self._telegram_uid,
            monitors=self.monitors,
            responder=self.responder,
        )
        s = config.settings.server
        limits = Limits(
            max_connections_per_uid=s.max_connections_per_uid,
            max_inflight=s.max_inflight,
            idle_timeout=s.idle_timeout,
            frame_timeout=s.frame_timeout,
        )
        over_cap = self._over_cap
        self.intents = Endpoint(
            "intents", limits, self._accept_gateway, self.rejections.frame, over_cap
        )
        self.control = Endpoint(
            "control", limits, self._accept_operator, self.rejections.frame, over_cap
        )
        self.workload_sockets = WorkloadSockets(self.intents, config.paths.runtime_dir)
        self.gateways = Gateways(self.pipeline, self.rejections)
        paths = config.paths
        self.standing = StandingVerify.for_daemon(
            paths.config_dir,
            paths.state_dir,
            paths.runtime_dir,
            0.0 if config.embedded else config.settings.verify.interval,  # a demo: nothing
            keep_and_alert(self.state, self.auditor.note, self.broker.notice),
            config.settings.server.launcher,
        )
        self._stop = asyncio.Event()
        self._sockets: dict[str, socket.socket] = {}
        self._owned: list[Path] = []
        self._argv = [sys.argv[0], *sys.argv[1:]]
        self._code = code_identity(self._argv[0])
        self._upgrade_to: str | None = None

    def _initial_policy(self, config: Config) -> Policy:
        try:
            policy = load_policy(config)
        except PolicyError as exc:
            reason = f"policy not loaded, running deny-all: {exc}"
            print(f"clawvisor: {reason}", file=sys.stderr, flush=True)
            self._audit_policy(CRIT, reason, exc.where)
            return Policy.deny_all(str(exc))
        self._audit_policy(
            INFO, f"policy loaded: {len(policy.rules)} rules from {len(policy.files)} files", None
        )
        return policy

    def _initial_triggers(self, config: Config) -> list[Trigger]:
        ms = config.settings.monitors
        try:
            return load_triggers(
                config.paths.config_dir / "triggers.d", defaults=ms.default_triggers
            )
        except TriggerError as exc:
            message = f"triggers not loaded, only the defaults are in force: {exc}"
            print(f"clawvisor: {message}", file=sys.stderr, flush=True)
            self._audit_policy(CRIT, message, None)
            return load_triggers(None, defaults=True)

    def _show_alert(self, alert: Alert) -> None:
        if self.monitors is not None:
            self.monitors.show_alert(alert, alert_json(alert))
        if "alert" in alert.responses:
            self.broker.alert(
                AlertEvent(
                    trigger=alert.trigger,
                    severity=alert.severity,
                    workload=alert.event.workload,
                    summary=visible(summary(alert.event))[:300],
                    results=alert.results,
                )
            )

    def _state_unsaved(self, exc: OSError) -> None:
        self.auditor.note(
            AuditRecord(
                kind="daemon",
                priority=CRIT,
                detail=str(exc),
                message=f"the state directory refused a write ({exc}): until it takes writes "
                "again, no ask is put to anyone and no process executor starts",
            )
        )

    def _grants_unsaved(self, exc: OSError) -> None:
        self.auditor.note(
            AuditRecord(
                kind="approval",
                priority=CRIT,
                outcome="unavailable",
                detail=str(exc),
                message=f"the grants file could not be saved ({exc}); grants in force stay in "
                "memory until it can be",
            )
        )

    def _telegram_uid(self) -> int | None:
        name = self.state.config.settings.approvals.telegram_agent_user
        if name is None:
            return None
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            return None

    def _audit_policy(self, priority: int, message: str, where: str | None) -> None:
        self.auditor.note(
            AuditRecord(kind="policy", priority=priority, message=message, rule=where)
        )

    def _accept_gateway(self, peer: Peer, sock: socket.socket) -> Acceptance:
        account = self.state.config.by_uid.get(peer.uid)
        if account is None:
            return Acceptance(
                refusal=self.rejections.connection(
                    peer, "unauthorized", f"uid {peer.uid} is not a workload of this daemon"
                )
            )
        return self.gateways.acceptance(Caller(peer=peer, account=account))

    def _accept_operator(self, peer: Peer, sock: socket.socket) -> Acceptance:
        group = self.state.config.settings.server.control_group
        gid = group_gid(group)
        if peer.uid != 0 and not (
            gid is not None and (peer.gid == gid or gid in peer_groups(sock))
        ):
            return Acceptance(
                refusal=self.rejections.connection(
                    peer, "unauthorized", f"the control socket is for root and group {group}"
                )
            )
        holder: list[OperatorSession] = []

        def bind(conn: Connection) -> LineHandler:
            session = OperatorSession(peer, conn, self.services)
            holder.append(session)
            return session.handle

        def on_close() -> None:
            for session in holder:
                session.close()

        return Acceptance(bind=bind, on_close=on_close)

    def _over_cap(self, peer: Peer) -> bytes:
        cap = self.state.config.settings.server.max_connections_per_uid
        return self.rejections.connection(
            peer, "rate_limited", f"too many connections from uid {peer.uid} (cap {cap})"
        )

    def reload(self) -> str | None:
        """Re-read config and policy; swap both in one step, or keep the old ones.

        Returns None on success, else the error (the old config and policy stay in force).
        """
        sdnotify.reloading("reloading config and policy")
        try:
            config = (
                embedded_config(self.state.config.paths)
                if self.state.config.embedded
                else load_config(self.state.config.paths)
            )
            policy = load_policy(config)
            triggers = (
                load_triggers(
                    config.paths.config_dir / "triggers.d",
                    defaults=config.settings.monitors.default_triggers,
                )
                if self.monitors is not None
                else []
            )
        except (ConfigError, PolicyError, TriggerError) as exc:
            where = exc.where if isinstance(exc, PolicyError) else None
            message = f"reload refused, previous policy stays in force: {exc}"
            print(f"clawvisor: {message}", file=sys.stderr, flush=True)
            self._audit_policy(CRIT, message, where)
            sdnotify.notify("READY=1", f"STATUS={self.status_line()}")
            return str(exc)
        old_by_uid = self.state.config.by_uid
        told = {w: list(self.state.capabilities(w)) for w in self.gateways.watched()}
        self.state.config, self.state.policy = config, policy
        self.pipeline.limiter.retain(policy.rules)
        self._drop_remapped(old_by_uid)
        self._own_sockets(config)
        self.gateways.capabilities_changed(
            lambda w: list(self.state.capabilities(w)) != told.get(w)
        )
        self.standing.soon()
        if self.monitors is not None:
            self.monitors.configure(config, triggers)
        self._audit_policy(
            NOTICE,
            f"policy reloaded: {len(policy.rules)} rules from {len(policy.files)} files",
            None,
        )
        sdnotify.notify("READY=1", f"STATUS={self.status_line()}")
        return None

    def _own_sockets(self, config: Config) -> None:
        """Each workload uid's own intents socket, in step with `config` (a failure is
        said, not fatal: the shared socket serves that workload)."""
        for problem in [
            *self.workload_sockets.sync(config),
            *refresh_intents_acl(config, self._owned),
        ]:
            print(f"clawvisor: socket: {problem}", file=sys.stderr, flush=True)

    def _drop_remapped(self, old_by_uid: Mapping[int, Account]) -> None:
        """Close gateway connections whose uid no longer maps to the same workload."""
        new_by_uid = self.state.config.by_uid
        for conn in list(self.intents.connections):
            if conn.peer is None:
                continue
            old, new = old_by_uid.get(conn.peer.uid), new_by_uid.get(conn.peer.uid)
            if old is not None and (new is None or new.workload != old.workload):
                conn.close()

    def status_line(self) -> str:
        """One line for systemctl status."""
        p = self.state.policy
        mode = f"DENY-ALL ({p.error})" if p.error else f"{len(p.rules)} rules"
        return f"{len(self.state.config.workloads)} workloads, policy: {mode}"

    async def run(self) -> int:
        """Listen, serve until SIGTERM/SIGINT, then shut down cleanly."""
        self._sockets, self._owned = listening_sockets(self.state.config, self._audit_daemon)
        await self.intents.start(self._sockets["intents"])
        await self.control.start(self._sockets["control"])
        self._own_sockets(self.state.config)
        loop = asyncio.get_running_loop()
        interval = sdnotify.watchdog_interval()
        watchdog = sdnotify.Watchdog(loop, interval) if interval is not None else None
        if watchdog is not None:
            watchdog.start()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        if "stall" in os.environ.get("CLAWVISOR_TEST_HOOKS", "").split(","):
            # Test-only: SIGUSR2 blocks the event loop, so the watchdog can be seen to bite.
            loop.add_signal_handler(signal.SIGUSR2, time.sleep, 3600)
        if self.monitors is not None:
            # A stop while the BPF program compiles is not held up by it.
            starting = loop.create_task(self.monitors.start(loop, self.state.config))
            stopping = loop.create_task(self._stop.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
            stopping.cancel()
        self._audit_daemon(
            f"clawvisor started (pid {os.getpid()}, audit chain {self.auditor.chain}); "
            f"{self.status_line()}"
        )
        self._save_head_later(loop)
        self.standing.start()
        sdnotify.notify("READY=1", f"STATUS={self.status_line()}")
        await self._stop.wait()
        self.standing.stop()  # first: a verify in progress is killed, not left (or exec'd) over
        code = 0
        if self._upgrade_to is not None:
            await self._reexec(self._upgrade_to)  # returns only if the exec failed
            code = 1  # so that Restart=on-failure starts whatever build is installed
        sdnotify.notify("STOPPING=1", "STATUS=stopping")
        summary = await self._drain()
        if watchdog is not None:
            watchdog.stop()
        if self.monitors is not None:
            self.monitors.stop()
        self.workload_sockets.close()
        await self.intents.close()
        await self.control.close()
        for path in self._owned:  # systemd owns the sockets it passed
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._audit_daemon(f"clawvisor stopped ({summary})")
        self.auditor.close()
        return code

    async def _drain(self) -> str:
        """Stop taking requests, answer pending asks `unavailable`, let started executors
        finish (until `[server] drain_timeout`), write their outcomes, flush the replies
        owed; cancel (and so record as interrupted) only what is still running then."""
        started = time.monotonic()
        deadline = started + self.state.config.settings.server.drain_timeout
        self.pipeline.draining = True
        self.broker.close()
        late = await self.intents.drain(deadline)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=FLUSH_TIMEOUT)
            self._audit_daemon(
                f"shutdown: {len(late)} request(s) still running after the "
                f"{self.state.config.settings.server.drain_timeout:g} s drain deadline were "
                "interrupted (each has its outcome recorded)",
                priority=CRIT,
            )
        await self.intents.flush(FLUSH_TIMEOUT, max(deadline, time.monotonic()) + FLUSH_TIMEOUT)
        self.rejections.flush()
        # What is left waiting or running is on disk as it is now (nothing, normally).
        running = self.pipeline.execution.running
        for saved in (self.broker.saved(), running.saved() if running else None):
            if saved is not None:
                with contextlib.suppress(OSError):  # the next start checks the trail
                    await saved
        took = time.monotonic() - started
        return f"drained in {took:.2f} s, {len(late)} interrupted"

    # --- upgrades ------------------------------------------------------------------------

    def _on_sighup(self) -> None:
        """`systemctl reload`: a newer build installed means re-exec into it, else reload."""
        now = code_identity(self._argv[0])
        if now != self._code:
            self._upgrade_to = now
            sdnotify.reloading(f"re-executing into {now}")
            self._stop.set()
            return
        self.reload()

    async def _reexec(self, target: str) -> None:
        """Hand the listening sockets to the newer build in this same process (pid kept)."""
        self._audit_daemon(f"upgrade: re-executing into {target} (was {self._code})")
        # New connections wait in the listening sockets' backlog for the new build; the
        # work in flight here ends (asks answered `unavailable`) and is answered first.
        summary = await self._drain()
        self.control.stop_accepting()
        for conn in list(self.control.connections):
            conn.close()
        if self.monitors is not None:
            self.monitors.stop()
        self._audit_daemon(f"upgrade: {summary}; handing over")
        self.auditor.close()
        try:
            handoff(self._sockets, self._argv)
        except OSError as exc:
            message = f"upgrade failed, staying on the running build: {exc}"
            print(f"clawvisor: {message}", file=sys.stderr, flush=True)
            self._audit_daemon(message, priority=CRIT)
            self._upgrade_to = None

    def _save_head_later(self, loop: asyncio.AbstractEventLoop) -> None:
        # journald holds the chain itself; the saved head only has to survive journald
        # losing its tail, so every few seconds is enough.
        if self.auditor.backlog or self.auditor.lost:
            try:
                self.auditor.flush()
            except AuditUnavailable:
                held = self.auditor.backlog  # still down: they keep waiting, counted
                sdnotify.notify(f"STATUS={self.status_line()}; {held} audit records held")
        self.auditor.save_head()
        loop.call_later(HEAD_SAVE_INTERVAL, self._save_head_later, loop)

    def _audit_daemon(self, message: str, priority: int = NOTICE) -> None:
        self.auditor.note(AuditRecord(kind="daemon", priority=priority, message=message))

    def stop(self) -> None:
        """Ask the daemon to shut down."""
        self._stop.set()
