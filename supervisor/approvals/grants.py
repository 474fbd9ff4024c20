"""Grants: what a human's "allow for 30 minutes" or "always" lets through without asking.

A grant covers exactly one intent (workload, action, target and params, hashed in
canonical form) decided by exactly one rule (its identity: file:line and a hash of its
content), is only consulted when that rule says `ask` (so it never overrides a `deny`,
and a grant given under a looser rule never serves a stricter one), and survives
restarts in the state directory. The file is written off the event loop; a revocation
is answered only once it is on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from ..persist import Saver, read_or_none

_canonical = msgspec.json.Encoder(order="sorted")


def intent_key(
    workload: str, action: str, target: str | None, params: Mapping[str, Any], rule: str = ""
) -> str:
    """sha256 of the intent in canonical JSON and of the identity of the rule deciding it:
    what prompts, approvals and grants bind to."""
    doc = {"workload": workload, "action": action, "target": target, "params": params, "rule": rule}
    return hashlib.sha256(_canonical.encode(doc)).hexdigest()


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """One standing approval for one exact intent."""

    id: str
    key: str
    workload: str
    action: str
    target: str | None
    params: str
    rule: str
    approvers: list[str]
    created: float
    #: Seconds since the epoch; None means it never expires.
    expires: float | None = None
    #: The deciding rule's identity when it was given (part of `key`).
    rule_id: str = ""


def _report(exc: OSError) -> None:
    print(f"clawvisor: cannot save grants: {exc}", file=sys.stderr, flush=True)


class GrantStore:
    """The grants in force, persisted as JSON in the state directory."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        on_save_error: Callable[[OSError], None] = _report,
    ) -> None:
        self.path = path
        self._clock = clock
        self._grants: dict[str, Grant] = {}
        self._saver = Saver(path, self._snapshot, on_save_error)

    def load(self) -> None:
        """Read the grants file (a missing file means no grants)."""
        data = read_or_none(self.path)
        grants = msgspec.json.decode(data, type=list[Grant]) if data else []
        self._grants = {g.id: g for g in grants}

    def _snapshot(self) -> bytes:
        return msgspec.json.encode(list(self._grants.values()))

    def _save(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a CLI tool, no loop: write now
            self._saver.write_now()
        else:
            self._saver.touch()

    async def persisted(self) -> None:
        """Wait until the grants as they are now are on disk (OSError if they cannot be)."""
        await self._saver.commit()

    def _live(self, g: Grant) -> bool:
        return g.expires is None or g.expires > self._clock()

    def add(
        self,
        *,
        key: str,
        workload: str,
        action: str,
        target: str | None,
        params: str,
        rule: str,
        approvers: list[str],
        seconds: float,
        rule_id: str = "",
    ) -> Grant:
        """Record a grant for `seconds` (inf: always); it is written to disk soon after."""
        now = self._clock()
        grant = Grant(
            id=f"g-{secrets.token_hex(5)}",
            key=key,
            workload=workload,
            action=action,
            target=target,
            params=params,
            rule=rule,
            approvers=approvers,
            created=now,
            expires=None if math.isinf(seconds) else now + seconds,
            rule_id=rule_id,
        )
        self._grants[grant.id] = grant
        self._prune()
        self._save()
        return grant

    def match(self, key: str) -> Grant | None:
        """A live grant for exactly this intent, if any."""
        for g in self._grants.values():
            if g.key == key and self._live(g):
                return g
        return None

    def revoke(self, grant_id: str) -> Grant | None:
        """Remove a grant (at once for matching; on disk soon after, see `persisted`)."""
        grant = self._grants.pop(grant_id, None)
        if grant is not None:
            self._save()
        return grant

    def revoke_workload(self, workload: str) -> list[Grant]:
        """Remove every grant of one workload (a trigger's `revoke-grants`)."""
        gone = [g for g in self._grants.values() if g.workload == workload]
        for g in gone:
            del self._grants[g.id]
        if gone:
            self._save()
        return gone

    def list(self) -> list[Grant]:
        """The live grants, oldest first."""
        return [g for g in self._grants.values() if self._live(g)]

    def _prune(self) -> None:
        self._grants = {i: g for i, g in self._grants.items() if self._live(g)}
