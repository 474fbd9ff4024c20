"""`run-ops`: run one of the operator's scripts from the target workload's root-only ops tier.

The request names a script, never a path: the name has no `/`, the script lives in the
workload's `ops/` directory, and both must be owned by root and writable by nobody else
(a script a workload could change would be a way to run its code as root). Arguments
are validated and passed after the script, each as one argument (no `--`: the script
gets exactly the arguments asked for, `$1` first). Before an ask is offered the daemon
checks the script exists and can be trusted, so nobody approves what cannot run.
"""

from __future__ import annotations

import os
import stat
from typing import Annotated

import msgspec

from .base import Action, ExecContext, ExecError, IntentBase, ResultBase, whole
from .common import need_target, run_template
from .validate import field_check, has_control

ScriptName = Annotated[
    str,
    msgspec.Meta(
        pattern=whole(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"),
        description="A script name in ops/ (no '/').",
    ),
]
Arg = Annotated[str, msgspec.Meta(max_length=256)]


def _check_args(args: list[str]) -> list[str]:
    for a in args:
        if has_control(a):
            raise ValueError(f"argument {a[:40]!r} contains control characters")
    return args


class Params(IntentBase, tag="run-ops", frozen=True):
    """Run ops script `script` with `args` (at most 16, each at most 256 characters)."""

    script: ScriptName
    args: Annotated[
        list[Arg],
        msgspec.Meta(max_length=16, description="The script's arguments: each one argv element."),
    ] = []

    def __post_init__(self) -> None:
        field_check("args", lambda: _check_args(list(self.args)))


class Result(ResultBase, tag="run-ops", frozen=True):
    """The script that ran and its (capped) output."""

    script: str
    exit_status: int
    output: str


def _trusted(path: str, st: os.stat_result, what: str) -> None:
    if st.st_uid != 0:
        raise ExecError(f"{what} {path} is not owned by root; refusing to run it")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ExecError(f"{what} {path} is writable by others; refusing to run it")


def locate(ops_dir: str, script: str) -> str:
    """The script's path, after checking the directory and the file can be trusted."""
    try:
        dir_fd = os.open(ops_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ExecError(f"ops directory {ops_dir}: {exc.strerror}") from None
    try:
        _trusted(ops_dir, os.fstat(dir_fd), "ops directory")
        try:
            st = os.stat(script, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise ExecError(f"no ops script {script!r}") from None
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(st.st_mode):
        raise ExecError(f"ops script {script!r} is not a regular file")
    _trusted(f"{ops_dir}/{script}", st, "ops script")
    if not st.st_mode & stat.S_IXUSR:
        raise ExecError(f"ops script {script!r} is not executable")
    return f"{ops_dir}/{script}"


def script_path(params: Params, ctx: ExecContext) -> str:
    """The trusted script the intent names in its target's ops tier; ExecError if none."""
    target = need_target(ctx, "run-ops")
    if ctx.files is None or ctx.files.ops is None:
        raise ExecError(f"workload {target.workload} has no ops tier")
    return locate(ctx.files.ops, params.script)


def precheck(params: Params, ctx: ExecContext) -> None:
    """Refuse before any ask what `run` would refuse: no ops tier, no such script, or one
    that is not root's alone."""
    script_path(params, ctx)


async def run(params: Params, ctx: ExecContext) -> Result:
    """Run the script as root with its arguments."""
    path = script_path(params, ctx)
    outcome = await run_template(
        ctx, {"script": path}, user=None, what="ops script", tail=tuple(params.args)
    )
    return Result(
        script=params.script,
        exit_status=outcome.exit_status,
        output=outcome.stdout.decode("utf-8", "replace"),
    )


ACTION = Action(
    name="run-ops",
    params=Params,
    result=Result,
    summary="Run a named script from the target workload's root-only ops tier, as root.",
    mutating=True,
    needs_target=True,
    default_argv=("{script}",),
    placeholders=("script",),
    default_timeout=300.0,
    run=run,
    precheck=precheck,
    argv_params=("args",),
)
