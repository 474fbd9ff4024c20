"""`search`: open the configured search page for a query, through the opener, as the target."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote_plus

import msgspec

from .base import Action, ExecContext, IntentBase, ResultBase
from .common import need_target, run_template
from .validate import field_check, has_control, normalise_web_url


class Options(msgspec.Struct, forbid_unknown_fields=True):
    """`url_template`: the search URL; `{query}` is replaced by the URL-encoded query."""

    url_template: str = "https://duckduckgo.com/?q={query}"

    def __post_init__(self) -> None:
        if self.url_template.count("{query}") != 1:
            raise ValueError("url_template must contain {query} exactly once")
        normalise_web_url(self.url_template.replace("{query}", "x"))


def _check_query(query: str) -> str:
    if has_control(query):
        raise ValueError("must not contain control characters")
    if not query.strip():
        raise ValueError("must not be blank")
    return query


class Params(IntentBase, tag="search", frozen=True):
    """Search for `query` (at most 512 characters, no control characters)."""

    query: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=512, description="Search terms; no control characters."
        ),
    ]

    def __post_init__(self) -> None:
        field_check("query", lambda: _check_query(self.query))


class Result(ResultBase, tag="search", frozen=True):
    """The search URL that was opened, and where."""

    url: str
    target: str


async def run(params: Params, ctx: ExecContext) -> Result:
    """Build the URL (the query URL-encoded into the template) and hand it to the opener."""
    target = need_target(ctx, "search")
    options: Options = ctx.settings.options
    url = options.url_template.replace("{query}", quote_plus(params.query))
    await run_template(ctx, {"url": url}, user=target, what="opener")
    return Result(url=url, target=target.workload)


ACTION = Action(
    name="search",
    params=Params,
    result=Result,
    summary="Open a search for a query in the target workload, through the opener.",
    mutating=False,
    needs_target=True,
    default_argv=("xdg-open", "{url}"),
    placeholders=("url",),
    options=Options,
    run=run,
)
