"""`capabilities`: what the sending workload's policy lets it ask for. In-process; reads nothing.

Answers only about the sender (its identity comes from SO_PEERCRED like every other
intent), so a workload learns its own rights and nobody else's. Gateways use it to
offer an agent exactly the actions that can succeed: the MCP bridge lists them as
tools and `clawvisor skill` writes them into a SKILL.md.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .base import Action, ExecContext, IntentBase, ResultBase


class Params(IntentBase, tag="capabilities", frozen=True):
    """List the actions this workload's policy could allow or ask about. Takes no params."""


class RuleInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """One rule that can decide an action for this workload, in evaluation order."""

    decision: Literal["allow", "ask", "deny"]
    #: The rule's `file:line`, as replies and audit records name it.
    rule: str
    #: What a request must satisfy for this rule to decide it, in words.
    conditions: list[str]
    #: Who is asked, how long they have, and what they may grant (ask rules only).
    approvers: list[str] = []
    timeout: float | None = None
    grant: str | None = None
    default_target: str | None = None


class Capability(msgspec.Struct, frozen=True):
    """One action the workload may use, and the rules that decide it (first match wins).

    `description` and `params` are what a gateway offers its agent as a tool (the text an
    agent reads, and the JSON Schema of the params beside `target`), so that every
    gateway (the MCP bridge, the OpenClaw plugin, a SKILL.md) says the same thing.
    """

    action: str
    summary: str
    mutating: bool
    rules: list[RuleInfo]
    description: str = ""
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class Result(ResultBase, tag="capabilities", frozen=True):
    """The sender's workload and each action some rule could allow or ask about.

    A request that no listed rule matches is denied.
    """

    workload: str
    actions: list[Capability]


def run(params: Params, ctx: ExecContext) -> Result:
    """Describe the sender's own policy."""
    return Result(workload=ctx.source, actions=list(ctx.daemon.capabilities(ctx.source)))


ACTION = Action(
    name="capabilities",
    params=Params,
    result=Result,
    summary="List the actions this workload's policy could allow or ask about, with their rules.",
    mutating=False,
    needs_target=False,
    run_inline=run,
)
