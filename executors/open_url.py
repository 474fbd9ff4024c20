"""`open-url`: open an http(s) URL with the configured opener, as the target's user."""

from __future__ import annotations

from typing import Annotated

import msgspec

from .base import Action, ExecContext, ExecError, IntentBase, ResultBase
from .runner import render_argv, run_argv
from .validate import field_check, normalise_web_url

MAX_URL_BYTES = 2048


class Params(IntentBase, tag="open-url", frozen=True):
    """Open `url` in the target workload (http/https, no credentials, <= 2,048 bytes)."""

    url: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_URL_BYTES,
            description="http(s) URL; no credentials; at most 2,048 bytes.",
        ),
    ]

    def __post_init__(self) -> None:
        # Normalise once here so the policy, the audit and the opener all see one URL.
        url = field_check("url", lambda: normalise_web_url(self.url, max_bytes=MAX_URL_BYTES))
        msgspec.structs.force_setattr(self, "url", url)


class Result(ResultBase, tag="open-url", frozen=True):
    """The URL handed to the opener and the workload it was opened in."""

    url: str
    target: str
    exit_status: int


async def run(params: Params, ctx: ExecContext) -> Result:
    """Run the opener argv with the URL as one argv element, as the target user."""
    if ctx.target is None:
        raise ExecError("open-url needs a target workload")
    argv = render_argv(ctx.settings.argv, {"url": params.url})
    try:
        outcome = await run_argv(
            argv,
            user=ctx.target,
            timeout=ctx.settings.timeout,
            output_cap=ctx.settings.output_cap,
            extra_env=ctx.settings.env,
            launcher=ctx.settings.launcher,
        )
    except OSError as exc:
        raise ExecError(f"cannot start opener {argv[0]!r}: {exc.strerror or exc}") from None
    if outcome.timed_out:
        raise ExecError(
            f"opener timed out after {ctx.settings.timeout:g} s",
            stderr=outcome.stderr.decode("utf-8", "replace"),
        )
    if outcome.exit_status != 0:
        raise ExecError(
            f"opener exited with status {outcome.exit_status}",
            exit_status=outcome.exit_status,
            stderr=outcome.stderr.decode("utf-8", "replace"),
        )
    return Result(url=params.url, target=ctx.target.workload, exit_status=0)


ACTION = Action(
    name="open-url",
    params=Params,
    result=Result,
    summary="Open an http(s) URL in the target workload with the configured opener.",
    mutating=False,
    needs_target=True,
    default_argv=("xdg-open", "{url}"),
    run=run,
)
