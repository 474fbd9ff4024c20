"""`workload-start|stop|restart`: the target workload's gateway unit, through systemctl."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from .base import Action, ExecContext, IntentBase, ResultBase
from .common import need_target, run_template

Verb = Literal["start", "stop", "restart"]


class StartParams(IntentBase, tag="workload-start", frozen=True):
    """Start the target workload's gateway unit."""


class StopParams(IntentBase, tag="workload-stop", frozen=True):
    """Stop the target workload's gateway unit."""


class RestartParams(IntentBase, tag="workload-restart", frozen=True):
    """Restart the target workload's gateway unit."""


class Result(ResultBase, tag="workload-control", frozen=True):
    """What was done to which workload's unit."""

    verb: str
    workload: str


def _runner(verb: Verb) -> Callable[[Any, ExecContext], Awaitable[Result]]:
    async def run(params: IntentBase, ctx: ExecContext) -> Result:
        target = need_target(ctx, f"workload-{verb}")
        await run_template(ctx, {"target": target.workload}, user=None, what="systemctl")
        return Result(verb=verb, workload=target.workload)

    return run


def _action(verb: Verb, params: type[IntentBase]) -> Action:
    return Action(
        name=f"workload-{verb}",
        params=params,
        result=Result,
        summary=f"{verb.capitalize()} the target workload's clawvisor-workload@ unit.",
        mutating=True,
        needs_target=True,
        default_argv=("systemctl", verb, "clawvisor-workload@{target}.service"),
        placeholders=("target",),
        run=_runner(verb),
    )


START = _action("start", StartParams)
STOP = _action("stop", StopParams)
RESTART = _action("restart", RestartParams)
