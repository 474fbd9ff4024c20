"""`status`: read-only facts about the daemon. Runs in-process; starts nothing.

An operator (control.sock) sees everything; a workload sees only what concerns it: its
own name, the rules that could decide its intents, and whether the policy is deny-all.
Other workloads' names, the list of policy files, grant counts, the monitors' details
and the standing verify's findings are the operator's business (a compromised agent
would use them to aim). The `file:line` of a rule that decides the workload's own
intents is not hidden: replies and `capabilities` name it by design, so that an agent
can tell its user which rule said no."""

from __future__ import annotations

import msgspec

from .base import Action, ExecContext, IntentBase, MonitorInfo, ResultBase, VerifyState


class Params(IntentBase, tag="status", frozen=True):
    """Ask the daemon for its state. Takes no params."""


class PolicyState(msgspec.Struct, frozen=True):
    """The policy in force: files loaded, rule count, and why it is deny-all if it is."""

    files: list[str]
    rules: int
    error: str | None = None


class Result(ResultBase, tag="status", frozen=True):
    """The daemon's version, uptime in seconds, workloads and policy state (for a
    workload: itself, and the number of rules that could decide its intents)."""

    version: str
    uptime: float
    workloads: list[str]
    policy: PolicyState
    #: Standing approvals in force.
    grants: int = 0
    monitors: list[MonitorInfo] = []
    #: The daemon's last standing `verify` (operators only).
    verify: VerifyState | None = None


#: The `source` of an operator's context (control.sock), which no workload can be named.
OPERATOR = "@operator"


def run(params: Params, ctx: ExecContext) -> Result:
    """Report the daemon's state: all of it to an operator, a workload's share to it."""
    d = ctx.daemon
    if ctx.source != OPERATOR:
        rules = sum(len(c.rules) for c in d.capabilities(ctx.source))
        error = "the policy in force does not load: every intent is denied"
        return Result(
            version=d.version,
            uptime=round(d.uptime, 3),
            workloads=[ctx.source],
            policy=PolicyState(files=[], rules=rules, error=error if d.policy_error else None),
        )
    return Result(
        version=d.version,
        uptime=round(d.uptime, 3),
        workloads=list(d.workload_names),
        policy=PolicyState(files=list(d.policy_files), rules=d.policy_rules, error=d.policy_error),
        grants=d.grants,
        monitors=list(d.monitors),
        verify=d.verify,
    )


ACTION = Action(
    name="status",
    params=Params,
    result=Result,
    summary="Report the daemon's version, uptime, workloads and policy state.",
    mutating=False,
    needs_target=False,
    run_inline=run,
)
