"""`notify`: a short message from a workload to the operator, through the approval agents."""

from __future__ import annotations

from typing import Annotated

import msgspec

from policy.quantities import parse_rate

from .base import Action, ExecContext, ExecError, IntentBase, ResultBase


class Options(msgspec.Struct, forbid_unknown_fields=True):
    """How many notices one workload may send (a token bucket, e.g. "6/min")."""

    rate: str = "6/min"

    def __post_init__(self) -> None:
        parse_rate(self.rate)


class Params(IntentBase, tag="notify", frozen=True):
    """Tell the operator `message` (at most 500 characters; shown made safe)."""

    message: Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=500, description="The text for the operator, plain."),
    ]


class Result(ResultBase, tag="notify", frozen=True):
    """How many connected approval agents received the notice."""

    delivered: int


def run(params: Params, ctx: ExecContext) -> Result:
    """Hand the message to the daemon's notifier (rate-limited per workload)."""
    if ctx.notify is None:
        raise ExecError("no notifier is available")
    return Result(delivered=ctx.notify(ctx.source, params.message))


ACTION = Action(
    name="notify",
    params=Params,
    result=Result,
    summary="Send the operator a short message through the approval agents.",
    mutating=False,
    needs_target=False,
    options=Options,
    run_inline=run,
)
