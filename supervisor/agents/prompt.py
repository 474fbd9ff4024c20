"""How a pending request is put to a human: the same words on every channel.

Every value has already been made safe by the daemon (control characters, bidi and
invisible characters shown as escapes); this only lays it out.
"""

from __future__ import annotations

import time

from ..wire.control import PendingView


def title(p: PendingView) -> str:
    """One line: who wants what where."""
    return f"{p.workload} wants {p.action} in {p.target or p.workload}"


def body(p: PendingView, now: float | None = None) -> str:
    """The details: params, rule, deadline, what an approval may grant."""
    left = max(0, int(p.deadline - (now if now is not None else time.time())))
    lines = [f"{name}: {value}" for name, value in p.params.items()]
    if p.cut:
        lines.append(f"(values cut; full text: clawvisor pending --show {p.id})")
    lines.append(f"rule {p.rule}; {left} s to answer; request {p.id}")
    if p.quorum > 1:
        lines.append(f"needs {p.quorum} approvers ({p.votes} so far)")
    if p.grant != "once":
        lines.append(f"an approval may be granted for up to: {p.grant}")
    if p.waiting > 1:
        lines.append(
            f"{p.waiting} identical requests wait: allowing once releases one of them; "
            f"'allow all {p.waiting}' is a choice of its own"
        )
    return "\n".join(lines)


def offers_thirty_minutes(p: PendingView) -> bool:
    """True when the rule lets an approval cover the next 30 minutes."""
    if p.grant == "always":
        return True
    if p.grant == "once":
        return False
    from policy.quantities import parse_duration

    try:
        return parse_duration(p.grant) >= 1800
    except ValueError:
        return False
