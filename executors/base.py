"""What every executor shares: the intent base Struct, the action descriptor, the context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import msgspec

if TYPE_CHECKING:
    from .capabilities import Capability


def whole(body: str) -> str:
    """A msgspec/JSON Schema pattern matching `body` as the whole string, in both dialects.

    Python's `$` also matches before a final newline, ECMA-262's (JSON Schema) does not:
    the lookahead makes the daemon's decoder and the published schema agree.
    """
    return f"^(?:{body})$(?!\\n)"


#: A workload name as it appears on the wire, in workloads.toml and in the policy.
WORKLOAD_NAME_PATTERN = whole(r"[a-zA-Z0-9-]+")
WorkloadName = Annotated[
    str,
    msgspec.Meta(
        pattern=WORKLOAD_NAME_PATTERN,
        min_length=1,
        max_length=64,
        description="A workload name: letters, digits and '-'.",
    ),
]


class IntentBase(
    msgspec.Struct,
    tag_field="action",
    forbid_unknown_fields=True,
    kw_only=True,
    frozen=True,
):
    """Base of every intent: the action tag plus an optional target workload.

    The sender is never part of the message; it comes from SO_PEERCRED.
    """

    target: WorkloadName | None = None


class ResultBase(msgspec.Struct, tag_field="action", kw_only=True, frozen=True):
    """Base of every executor result; tagged with the action that produced it."""


class ExecError(Exception):
    """An executor ran (or tried to) and failed; `executor_failed` unless `code` says else."""

    def __init__(
        self,
        message: str,
        *,
        exit_status: int | None = None,
        stderr: str = "",
        code: Literal["executor_failed", "rate_limited", "invalid_params"] = "executor_failed",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_status = exit_status
        self.stderr = stderr
        self.code = code


@dataclass(frozen=True, slots=True)
class Account:
    """A workload's Linux account: the one a request came from (the sender), or the one an
    executor acts as (its target)."""

    workload: str
    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


class DaemonView(Protocol):
    """Read-only facts about the running daemon that `status` and `capabilities` report."""

    @property
    def version(self) -> str: ...
    @property
    def uptime(self) -> float: ...
    @property
    def workload_names(self) -> Sequence[str]: ...
    @property
    def policy_files(self) -> Sequence[str]: ...
    @property
    def policy_rules(self) -> int: ...
    @property
    def policy_error(self) -> str | None: ...
    @property
    def grants(self) -> int: ...
    @property
    def monitors(self) -> Sequence[MonitorInfo]: ...
    @property
    def verify(self) -> VerifyState | None: ...
    def capabilities(self, source: str) -> Sequence[Capability]:
        """The actions `source`'s policy could allow or ask about, with their rules."""
        ...


class MonitorInfo(msgspec.Struct, frozen=True):
    """One monitor: bpf, overlay or nftables; `ok`, `degraded` (and why), or `off`."""

    name: str
    state: str
    detail: str = ""
    #: Running totals: bpf events/lost/throttled, overlay files/overflows, nftables reads.
    counts: dict[str, int] = {}


class VerifyState(msgspec.Struct, frozen=True):
    """The daemon's last standing `verify` (every `[verify] interval` and after each
    reload): when it ran, the counts, and each failure as `workload: check: reason`."""

    at: float
    passed: int
    failed: int
    skipped: int
    failures: list[str] = []
    #: Why it could not run at all (then the counts are 0).
    error: str | None = None


class NoOptions(msgspec.Struct, forbid_unknown_fields=True):
    """An action with nothing to configure beyond argv, timeout and output cap."""


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    """Per-action settings from clawvisor.toml: the argv template, limits and options."""

    argv: tuple[str, ...] = ()
    timeout: float = 30.0
    output_cap: int = 64 * 1024
    #: Fixed environment entries the command gets on top of the clean environment.
    env: Mapping[str, str] = field(default_factory=dict)
    #: The action's own `Options` Struct, filled from clawvisor.toml.
    options: Any = None
    #: How processes are started: directly, or as transient units under systemd.
    launcher: Literal["direct", "systemd-run"] = "direct"


@dataclass(frozen=True, slots=True)
class WorkloadFiles:
    """Where a workload's files are: its overlay upper layer, sync destination, ops tier."""

    upper: str | None
    destination: str | None
    ops: str | None


@dataclass(frozen=True, slots=True)
class ExecContext:
    """Everything an executor may use besides its params. Built by the daemon."""

    source: str
    target: Account | None
    settings: ExecutorSettings
    daemon: DaemonView
    files: WorkloadFiles | None = None
    #: Delivers a notice to the operator's approval agents; returns how many got it.
    notify: Callable[[str, str], int] | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """One fixed action: its wire params, its result, and how it runs.

    Exactly one of `run_inline` (pure, in-process, no I/O that can block) and
    `run` (a coroutine, typically starting a process) is set.
    """

    name: str
    params: type[IntentBase]
    result: type[ResultBase]
    summary: str
    mutating: bool
    needs_target: bool
    default_argv: tuple[str, ...] = ()
    #: Placeholders its argv template may use (default: its params).
    placeholders: tuple[str, ...] | None = None
    options: type[msgspec.Struct] = NoOptions
    default_env: tuple[tuple[str, str], ...] = ()
    default_timeout: float = 30.0
    #: Put the result (bounded) in the audit record, e.g. the sha256 of copied files.
    audit_result: bool = False
    run_inline: Callable[[Any, ExecContext], ResultBase] | None = None
    run: Callable[[Any, ExecContext], Awaitable[ResultBase]] | None = None
    #: Raises ExecError when the intent cannot run (a missing or untrusted script), so
    #: that a human is never asked to approve what cannot run. Cheap: a few syscalls.
    precheck: Callable[[Any, ExecContext], None] | None = None
    #: Params passed to the program as its own arguments, options included (no `--`
    #: before them): the policy warns on rules that leave them unconstrained.
    argv_params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.run_inline is None) == (self.run is None):
            raise TypeError(f"action {self.name}: set exactly one of run_inline and run")

    @property
    def param_names(self) -> tuple[str, ...]:
        """The params an intent for this action may carry (the target is not one)."""
        return tuple(f for f in self.params.__struct_fields__ if f != "target")

    @property
    def template_names(self) -> tuple[str, ...]:
        """The `{name}` placeholders its argv template may use."""
        return self.placeholders if self.placeholders is not None else self.param_names
