"""`policy diff`: what a policy change newly allows (or denies), proved cell by cell.

For every (source workload, action, target) the old and new policies are each a first-
match list of rules over the params. The params a request can carry are split into the
regions where one old rule and one new rule decide; a region is examined only when
those two decide differently, and then it is either shown empty (a proof) or given a
concrete request from it (a witness, checked under `evaluate`).
"""

from __future__ import annotations

from .cells import diff_policies
from .report import CellDiff, Change, PolicyDiff, render_text

__all__ = ["CellDiff", "Change", "PolicyDiff", "diff_policies", "render_text"]
