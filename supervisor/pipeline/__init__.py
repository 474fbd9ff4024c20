"""The pipeline: one typed request in, exactly one outcome out.

- `decide`: the entry point (`Pipeline.submit`) and the policy's decision;
- `ask`: grants, the broker, and the re-decision at release;
- `execute`: the executors, in process or as processes, and their context;
- `ledger`: what each intent writes to the audit trail (licences, its one final record);
- `case`: one intent and what has been decided about it;
- `outcome`: the caller, the connection's handle on an intent (`Job`), the outcome.
"""

from __future__ import annotations

from .ask import grant_recorder
from .decide import Pipeline
from .outcome import Answer, Caller, Job, Outcome

__all__ = ["Answer", "Caller", "Job", "Outcome", "Pipeline", "grant_recorder"]
