"""What clawvisor does when a trigger fires, or when an operator says so.

alert          audit at the trigger's severity; show the approval agents and live viewers
freeze         move the workload's processes into its cgroup and freeze it (`thaw` undoes)
kill           freeze, SIGKILL every process of the workload (by pid), thaw, until none
cut-network    put its uid in the table's `cut` set (all its traffic dropped, established
               connections too) and empty its dynamic allow sets (`restore-network` undoes)
revoke-grants  remove every grant the workload holds
Every response is audited with its result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

import msgspec

from executors.nft import CUT_SET, DYNAMIC_SETS, FAMILY, TABLE, Nft, NftError, set_name

from .approvals.grants import GrantStore
from .audit import AuditRecord, bounded_json
from .cgroups import CgroupError, WorkloadCgroup, pids_of
from .config import Config
from .monitors import events as ev
from .triggers import Alert
from .wire.control import Response

PRIORITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}


class ResponseError(Exception):
    """A response that could not be carried out (the message says why)."""


def summary(event: ev.Event) -> str:
    """A short, human description of an event."""
    kind = event.__struct_config__.tag
    detail = ""
    if isinstance(event, ev.Exec):
        detail = event.filename + (" (memfd)" if event.memfd else "")
    elif isinstance(event, ev.Connect):
        detail = f"{event.addr}:{event.port}"
    elif isinstance(event, ev.Open | ev.FileChange):
        detail = event.path
    elif isinstance(event, ev.Net):
        detail = f"{event.reason} +{event.packets} packets"
    elif isinstance(event, ev.Throttled):
        detail = f"{event.dropped} events dropped"
    elif isinstance(event, ev.MonitorState):
        detail = f"{event.monitor} {event.state}: {event.detail}"
    who = event.workload or "-"
    return f"{who} {kind} {detail}".strip()


class Responder:
    """Carries out responses for the daemon."""

    def __init__(
        self,
        config: Callable[[], Config],
        grants: GrantStore,
        audit: Callable[[AuditRecord], bool],
        show: Callable[[Alert], None],
    ) -> None:
        self.config = config
        self.grants = grants
        self.audit = audit
        self.show = show

    def _uid(self, workload: str) -> int:
        account = self.config().workloads.get(workload)
        if account is None:
            raise ResponseError(f"no workload {workload!r}")
        return account.uid

    # --- responses -------------------------------------------------------------------

    def freeze(self, workload: str) -> str:
        uid = self._uid(workload)
        try:
            cg = WorkloadCgroup(workload)
            moved = cg.adopt(uid)
            cg.freeze(True)
            cg.adopt(uid)  # anything forked while we were moving the others
        except (CgroupError, OSError) as exc:
            raise ResponseError(f"freeze {workload}: {exc}") from None
        return f"froze {workload} ({len(cg.members())} processes, {moved} moved in)"

    def thaw(self, workload: str) -> str:
        try:
            WorkloadCgroup(workload).freeze(False)
        except (CgroupError, OSError) as exc:
            raise ResponseError(f"thaw {workload}: {exc}") from None
        return f"thawed {workload}"

    def kill(self, workload: str) -> str:
        uid = self._uid(workload)
        killed = 0
        try:
            cg = WorkloadCgroup(workload)
            for _ in range(10):
                cg.adopt(uid)
                cg.freeze(True)  # nothing can fork away while we kill
                pids = pids_of(uid)
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        killed += 1
                cg.freeze(False)  # a frozen process cannot die
                deadline = time.monotonic() + 2
                while pids_of(uid) and time.monotonic() < deadline:
                    time.sleep(0.01)
            cg.freeze(False)
        except (CgroupError, OSError) as exc:
            raise ResponseError(f"kill {workload}: {exc}") from None
        left = len(pids_of(uid))
        if left:
            raise ResponseError(f"kill {workload}: {left} processes survived")
        return f"killed {killed} processes of {workload}"

    def cut_network(self, workload: str) -> str:
        uid = self._uid(workload)
        commands = [
            {"add": {"element": {"family": FAMILY, "table": TABLE, "name": CUT_SET, "elem": [uid]}}}
        ]
        commands += [
            {"flush": {"set": {"family": FAMILY, "table": TABLE, "name": set_name(kind, workload)}}}
            for kind in DYNAMIC_SETS
        ]
        try:
            Nft().run(*commands)
        except NftError as exc:
            raise ResponseError(f"cut-network {workload}: {exc}") from None
        return f"cut {workload}'s network (uid {uid} in @cut, allow sets emptied)"

    def restore_network(self, workload: str) -> str:
        uid = self._uid(workload)
        try:
            Nft().run(
                {
                    "delete": {
                        "element": {
                            "family": FAMILY,
                            "table": TABLE,
                            "name": CUT_SET,
                            "elem": [uid],
                        }
                    }
                }
            )
        except NftError as exc:
            raise ResponseError(f"restore-network {workload}: {exc}") from None
        return f"restored {workload}'s network"

    def revoke_grants(self, workload: str) -> str:
        gone = self.grants.revoke_workload(workload)
        return f"revoked {len(gone)} grants of {workload}"

    def run(self, response: str, workload: str) -> str:
        """Carry out one response by name."""
        typed: dict[Response, Callable[[str], str]] = {
            "freeze": self.freeze,
            "thaw": self.thaw,
            "kill": self.kill,
            "cut-network": self.cut_network,
            "restore-network": self.restore_network,
            "revoke-grants": self.revoke_grants,
        }
        actions: dict[str, Callable[[str], str]] = {k: v for k, v in typed.items()}
        action = actions.get(response)
        if action is None:
            raise ResponseError(f"unknown response {response!r}")
        return action(workload)

    # --- triggers ------------------------------------------------------------------------

    def handle(self, alert: Alert) -> None:
        """The trigger engine's hand-off: respond, audit, show."""
        event = alert.event
        results: list[str] = []
        for response in alert.responses:
            if response == "alert":
                results.append("alerted")
                continue
            if event.workload is None:
                results.append(f"{response}: no workload to act on")
                continue
            try:
                results.append(self.run(response, event.workload))
            except ResponseError as exc:
                results.append(f"{response} FAILED: {exc}")
        alert.results = results
        self.audit(
            AuditRecord(
                kind="alert",
                priority=PRIORITY[alert.severity],
                workload=event.workload,
                uid=event.uid,
                pid=event.pid,
                rule=alert.trigger,
                outcome="; ".join(results),
                detail=bounded_json(event, 4096),
                message=f"[{alert.severity}] {alert.trigger}: {summary(event)}"
                + (f" -> {'; '.join(results)}" if results else ""),
            )
        )
        self.show(alert)

    def operator(self, response: str, workload: str, by: str) -> str:
        """A response an operator asked for on the control socket (audited)."""
        try:
            result = self.run(response, workload)
            ok = True
        except ResponseError as exc:
            result, ok = str(exc), False
        self.audit(
            AuditRecord(
                kind="alert",
                priority=4 if ok else 3,
                workload=workload,
                outcome=result,
                approver=by,
                rule=f"operator:{response}",
                message=f"operator {by}: {response} {workload}: {result}",
            )
        )
        if not ok:
            raise ResponseError(result)
        return result


def alert_json(alert: Alert) -> bytes:
    """An alert as a monitor line: the event's own fields, plus severity and trigger."""
    body = msgspec.json.encode(alert.event)
    extra = msgspec.json.encode(
        {
            "event": "monitor",
            "severity": alert.severity,
            "alert": alert.trigger,
            "responses": alert.results,
        }
    )
    return extra[:-1] + b"," + body[1:] + b"\n"
