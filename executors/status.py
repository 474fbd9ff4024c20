"""`status`: read-only facts about the daemon. Runs in-process; starts nothing."""

from __future__ import annotations

import msgspec

from .base import Action, ExecContext, IntentBase, MonitorInfo, ResultBase


class Params(IntentBase, tag="status", frozen=True):
    """Ask the daemon for its state. Takes no params."""


class PolicyState(msgspec.Struct, frozen=True):
    """The policy in force: files loaded, rule count, and why it is deny-all if it is."""

    files: list[str]
    rules: int
    error: str | None = None


class Result(ResultBase, tag="status", frozen=True):
    """The daemon's version, uptime in seconds, workloads and policy state."""

    version: str
    uptime: float
    workloads: list[str]
    policy: PolicyState
    #: Standing approvals in force.
    grants: int = 0
    monitors: list[MonitorInfo] = []


def run(params: Params, ctx: ExecContext) -> Result:
    """Report the daemon's state."""
    d = ctx.daemon
    return Result(
        version=d.version,
        uptime=round(d.uptime, 3),
        workloads=list(d.workload_names),
        policy=PolicyState(files=list(d.policy_files), rules=d.policy_rules, error=d.policy_error),
        grants=d.grants,
        monitors=list(d.monitors),
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
