"""Grants: what a human's "allow for 30 minutes" or "always" lets through without asking.

A grant covers exactly one intent (workload, action, target and params, hashed in
canonical form), is only consulted when the policy says `ask` (so it never overrides a
`deny`), and survives restarts in the state directory.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from .statefile import read_or_none, write_atomic

_canonical = msgspec.json.Encoder(order="sorted")


def intent_key(workload: str, action: str, target: str | None, params: Mapping[str, Any]) -> str:
    """sha256 of the intent in canonical JSON: the identity approvals and grants bind to."""
    doc = {"workload": workload, "action": action, "target": target, "params": params}
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


class GrantStore:
    """The grants in force, persisted as JSON in the state directory."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._grants: dict[str, Grant] = {}

    def load(self) -> None:
        """Read the grants file (a missing file means no grants)."""
        data = read_or_none(self.path)
        grants = msgspec.json.decode(data, type=list[Grant]) if data else []
        self._grants = {g.id: g for g in grants}

    def _save(self) -> None:
        write_atomic(self.path, msgspec.json.encode(list(self._grants.values())))

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
    ) -> Grant:
        """Record a grant for `seconds` (inf: always) and persist it."""
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
        """Remove a grant; the removed grant, or None if there was none."""
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
