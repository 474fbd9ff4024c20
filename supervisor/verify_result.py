"""What `clawvisor verify` finds, declared once: the row it prints per check (`--json`:
one per line). The summary the daemon keeps of its last standing run is
`executors.base.VerifyState` (status reports it)."""

from __future__ import annotations

from typing import Literal

import msgspec

Result = Literal["PASS", "FAIL", "SKIP"]


class Check(msgspec.Struct):
    """One row of the report."""

    workload: str
    check: str
    result: Result
    reason: str
