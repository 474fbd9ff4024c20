"""Running an executor's argv template and turning its outcome into a result or an error."""

from __future__ import annotations

from collections.abc import Mapping

from .base import Account, ExecContext, ExecError
from .runner import Outcome, render_argv, run_argv


async def run_template(
    ctx: ExecContext,
    values: Mapping[str, str],
    *,
    user: Account | None,
    what: str,
    tail: tuple[str, ...] = (),
) -> Outcome:
    """Fill the action's argv template, run it as `user` (root: None), fail on non-zero.

    `tail` is appended as whole arguments after the template (after a `--` the
    template itself ends with, where the program parses options).
    """
    argv = [*render_argv(ctx.settings.argv, values), *tail]
    try:
        outcome = await run_argv(
            argv,
            user=user,
            timeout=ctx.settings.timeout,
            output_cap=ctx.settings.output_cap,
            extra_env=ctx.settings.env,
            launcher=ctx.settings.launcher,
        )
    except OSError as exc:
        raise ExecError(f"cannot start {what} {argv[0]!r}: {exc.strerror or exc}") from None
    stderr = outcome.stderr.decode("utf-8", "replace")
    if outcome.timed_out:
        raise ExecError(f"{what} timed out after {ctx.settings.timeout:g} s", stderr=stderr)
    if outcome.exit_status != 0:
        raise ExecError(
            f"{what} exited with status {outcome.exit_status}",
            exit_status=outcome.exit_status,
            stderr=stderr,
        )
    return outcome


def need_target(ctx: ExecContext, action: str) -> Account:
    """The target workload's account, or a clear error."""
    if ctx.target is None:
        raise ExecError(f"{action} needs a target workload")
    return ctx.target
