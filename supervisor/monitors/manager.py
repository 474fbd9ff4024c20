"""The monitors together: the bus, the monitors, the trigger engine, live viewers.

The BPF syscall monitor, the triggers on its events and the kept event log run in the
monitor worker (worker.py, a process of their own: their rate must not slow decisions);
the overlay, counter and proxy monitors run here, on the daemon's loop, and their events
go to the worker's log too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from executors.base import MonitorInfo

from ..audit.record import AuditRecord
from ..cgroups import CgroupError, WorkloadCgroup, cgroup2_root
from ..config import Config, ConfigError, MonitorSettings, load_settings_and_specs, overlay_dir
from ..proxy.accesslog import ProxyLogMonitor
from ..proxy.squid_conf import ProxyLayout
from ..triggers import Alert, Trigger, TriggerEngine
from . import events as ev
from .bus import Bus
from .channel import WorkerStart
from .counters import CounterMonitor
from .overlay import OverlayWatcher
from .remote import LiveLines, MonitorWorker
from .syscalls import SyscallStatus, WorkloadView

SEVERITY_RANK = {s: i for i, s in enumerate(ev.SEVERITIES)}


@dataclass
class ViewerFilter:
    """What a live viewer (`clawvisor monitor`) wants to see."""

    workload: str | None = None
    kinds: frozenset[str] = frozenset()
    min_severity: ev.Severity = "info"
    alerts_only: bool = False

    def wants(self, workload: str | None, kind: str, severity: ev.Severity) -> bool:
        if self.workload is not None and workload != self.workload:
            return False
        if self.kinds and kind not in self.kinds:
            return False
        return SEVERITY_RANK[severity] >= SEVERITY_RANK[self.min_severity]


class Monitors:
    """Owns every monitor; the daemon starts it once and reconfigures it on reload."""

    def __init__(
        self,
        settings: MonitorSettings,
        triggers: list[Trigger],
        respond: Callable[[Alert], None],
        home_root: str,
    ) -> None:
        self.settings = settings
        self.home_root = home_root
        self.bus = Bus()
        self.worker: MonitorWorker | None = None
        self.overlay = OverlayWatcher(self.bus.publish)
        self.counters = CounterMonitor(self.bus.publish, interval=settings.counters_interval)
        self.proxy = ProxyLogMonitor(self.bus.publish)
        self._respond = respond
        self.engine = TriggerEngine(triggers, {}, self._fired)
        self.viewers: dict[object, tuple[ViewerFilter, Callable[[bytes], None]]] = {}
        self.bus.subscribe(self.engine.on_event)
        self.bus.subscribe(self._to_viewers)
        self._encoder = msgspec.json.Encoder()

    async def start(self, loop: asyncio.AbstractEventLoop, config: Config) -> None:
        """Start what the settings enable; a monitor that cannot start is degraded. The
        BPF compile runs in a thread: intents are served while it takes its seconds."""
        s = self.settings
        if s.bpf or s.event_log:
            start = WorkerStart(
                bpf=s.bpf,
                rate=s.rate,
                burst=s.burst,
                ringbuf_pages=s.ringbuf_pages,
                home_root=self.home_root,
                log_dir=str(config.paths.log_dir / "events") if s.event_log else None,
                log_max_bytes=s.event_log_max_bytes,
                log_max_age=s.event_log_max_age,
            )
            self.worker = MonitorWorker(start, self._fired, self._live_lines, self.bus.publish)
            if s.event_log:
                self.bus.subscribe(self._keep_event)
            self.configure(config)  # the worker starts knowing its workloads and triggers
            await self.worker.start(loop)
        if self.settings.overlay:
            self.overlay.start(loop)
        if self.settings.counters:
            self.counters.start(loop)
        self.configure(config)
        self.proxy.start(loop, config.paths.state_dir / "proxy-access.position")

    def stop(self) -> None:
        self.overlay.stop()
        self.counters.stop()
        self.proxy.stop()
        if self.worker is not None:
            self.worker.stop()

    def configure(self, config: Config, triggers: list[Trigger] | None = None) -> None:
        """Follow the workloads (and triggers) of a (re)loaded config."""
        home_root = config.settings.provision.home_root.rstrip("/")
        services = host_services(config)
        resolvers = frozenset(a.split("#")[0] for a in config.settings.provision.dns)
        views = {}
        for name, account in config.workloads.items():
            files = config.files.get(name)
            upper = files.upper if files is not None else None
            merged = f"{home_root}/{name}/shared" if upper else None
            views[account.uid] = WorkloadView(
                name=name,
                home=f"{home_root}/{name}",
                merged=merged,
                upper=upper,
                uid=account.uid,
                gid=account.gid,
                groups=frozenset(account.groups),
                resolvers=resolvers,
                services=services.get(name, frozenset()),
                cgroups=workload_cgroups(name),
            )
        if self.worker is not None:
            self.worker.set_workloads(views)
        self.overlay.merged = {
            str(overlay_dir(config.paths, n) / "upper"): f"{home_root}/{n}/shared"
            for n, f in config.files.items()
            if f.upper
        }
        self.counters.set_workloads(list(config.workloads))
        self.proxy.configure(ProxyLayout(Path(config.settings.proxy.dir)))
        if self.overlay.notifier is not None:
            wanted = {
                str(overlay_dir(config.paths, n) / "upper"): n
                for n, f in config.files.items()
                if f.upper
            }
            for upper in list(self.overlay.roots):
                if upper not in wanted:
                    self.overlay.unwatch(upper)
            for upper, name in wanted.items():
                self.overlay.watch(name, upper)
        rules = triggers if triggers is not None else self.engine.triggers
        self.engine.set_rules(rules, config.tags)
        if self.worker is not None:
            self.worker.set_rules(rules, config.tags)

    def status(self) -> list[MonitorInfo]:
        """Each monitor's state, why, and running totals, for `status` and `doctor`."""
        s = self.worker.status.syscalls if self.worker is not None else SyscallStatus()
        bpf_detail = s.detail
        w, c = self.overlay, self.counters
        if w.notifier is not None:
            overlay_state = "ok"
        else:
            overlay_state = "stopped" if self.settings.overlay else "off"
        return [
            MonitorInfo(
                name="bpf",
                state=s.state if self.settings.bpf else "off",
                detail=bpf_detail,
                counts={
                    "events": s.events,
                    "lost": s.lost,
                    "undecoded": s.undecoded,
                    "throttled": s.throttled,
                    "worker_restarts": self.worker.restarts if self.worker is not None else 0,
                },
            ),
            MonitorInfo(
                name="overlay",
                state=overlay_state,
                detail=f"watching {len(w.roots)} upper layers",
                counts={"files": w.files_seen, "overflows": w.overflows},
            ),
            MonitorInfo(
                name="nftables",
                state=c.state if self.settings.counters else "off",
                detail=c.detail,
                counts={"reads": c.reads, "events": c.events},
            ),
            MonitorInfo(
                name="proxy",
                state=self.proxy.state,
                detail=self.proxy.detail,
                counts={
                    "requests": self.proxy.requests,
                    "refused": self.proxy.refused,
                    "malformed": self.proxy.malformed,
                },
            ),
            *self._log_status(),
        ]

    def _log_status(self) -> list[MonitorInfo]:
        if self.worker is None or self.worker.start_args.log_dir is None:
            return []
        w = self.worker.status
        error = w.log_error or (self.worker.exited if not w.loaded else "")
        return [
            MonitorInfo(
                name="event-log",
                state="degraded" if error or w.log_dropped else "ok",
                detail=error or f"{self.worker.start_args.log_dir}, every event kept",
                counts={"written": w.log_written, "dropped": w.log_dropped},
            )
        ]

    # --- alerts and viewers ---------------------------------------------------------------

    def _fired(self, alert: Alert) -> None:
        self._respond(alert)

    def keep_alert(self, line: bytes) -> None:
        """An alert line (as viewers get it) into the kept log."""
        if self.worker is not None and self.settings.event_log:
            self.worker.keep(line)

    def _keep_event(self, event: ev.Event) -> None:
        # This loop's monitors only (overlay, counters, proxy): the worker keeps its own.
        if self.worker is not None:
            self.worker.keep(self._encoder.encode(event) + b"\n")

    def _live_lines(self, lines: LiveLines) -> None:
        """The worker's events, to the live viewers that want them."""
        for workload, kind, line in lines:
            for f, push in list(self.viewers.values()):
                if not f.alerts_only and f.wants(workload, kind, "info"):
                    push(line)

    def show_alert(self, alert: Alert, line: bytes) -> None:
        """Push an alert line to the viewers that want it (and keep it)."""
        self.keep_alert(line)
        kind = alert.event.__struct_config__.tag
        for f, push in list(self.viewers.values()):
            if f.wants(alert.event.workload, str(kind), alert.severity):
                push(line)

    def show_record(self, rec: AuditRecord) -> None:
        """An intent's decision or outcome, to the live viewers that follow `intent`
        events (the web console's timeline); the trail itself already keeps it."""
        if not self.viewers or rec.kind not in ("decision", "result", "approval"):
            return
        line: bytes | None = None
        for f, push in list(self.viewers.values()):
            if f.alerts_only or not f.wants(rec.workload, "intent", "info"):
                continue
            if line is None:
                body = {
                    "kind": "intent",
                    "record": rec.kind,
                    "ts": rec.ts,
                    "workload": rec.workload,
                    "action": rec.action,
                    "decision": rec.decision,
                    "outcome": rec.outcome,
                    "rule": rec.rule,
                    "message": rec.message,
                }
                line = ev.live_line(self._encoder.encode(body))
            push(line)

    def _to_viewers(self, event: ev.Event) -> None:
        if not self.viewers:
            return
        kind = str(event.__struct_config__.tag)
        line: bytes | None = None
        for f, push in list(self.viewers.values()):
            if f.alerts_only or not f.wants(event.workload, kind, "info"):
                continue
            if line is None:
                line = ev.live_line(self._encoder.encode(event))
            push(line)

    def add_viewer(self, key: object, f: ViewerFilter, push: Callable[[bytes], None]) -> None:
        self.viewers[key] = (f, push)
        self._tell_worker_of_viewers()

    def remove_viewer(self, key: object) -> None:
        self.viewers.pop(key, None)
        self._tell_worker_of_viewers()

    def _tell_worker_of_viewers(self) -> None:
        # The worker sends its events only while someone watches them live.
        if self.worker is not None:
            self.worker.set_viewers(any(not f.alerts_only for f, _ in self.viewers.values()))


def host_services(config: Config) -> dict[str, frozenset[tuple[str, int]]]:
    """Each workload's host_services as (address, port): not in the resolved Config, so
    read from workloads.toml (only at start and reload)."""
    try:
        _, specs = load_settings_and_specs(config.paths)
    except (ConfigError, OSError):
        return {}
    out: dict[str, frozenset[tuple[str, int]]] = {}
    for name, spec in specs.workloads.items():
        pairs = set()
        for entry in spec.host_services:
            host, _, port = entry.rpartition(":")
            pairs.add((host.strip("[]"), int(port)))
        out[name] = frozenset(pairs)
    return out


def workload_cgroups(name: str) -> tuple[str, ...]:
    """The cgroups a workload's processes run in: clawvisor's own (freeze moves them
    there) and its systemd unit's."""
    with contextlib.suppress(CgroupError, OSError):
        root = cgroup2_root()
        unit = "system.slice/system-clawvisor\\x2dworkload.slice"
        return (
            str(WorkloadCgroup(name, root).path),
            str(root / unit / f"clawvisor-workload@{name}.service"),
        )
    return ()
