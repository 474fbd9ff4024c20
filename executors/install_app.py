"""`install-app`: install one Debian package with apt-get, as root (the default policy asks)."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from .base import Action, ExecContext, IntentBase, ResultBase
from .common import run_template
from .validate import field_check

_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[0-9A-Za-z.+~:-]+)?$")


def _check_package(name: str) -> str:
    if not _PACKAGE.match(name) or "=-" in name:
        raise ValueError(
            "must be a Debian package name (lower-case letters, digits, "
            "'+', '.', '-'; optionally '=VERSION')"
        )
    return name


class Params(IntentBase, tag="install-app", frozen=True):
    """Install `package` (a Debian package name, optionally `=version`)."""

    package: Annotated[
        str,
        msgspec.Meta(min_length=2, max_length=200, description="Debian package name[=version]."),
    ]

    def __post_init__(self) -> None:
        field_check("package", lambda: _check_package(self.package))


class Result(ResultBase, tag="install-app", frozen=True):
    """The package installed and the tail of apt-get's output."""

    package: str
    output: str


async def run(params: Params, ctx: ExecContext) -> Result:
    """apt-get install -y --no-install-recommends -- PACKAGE, as root."""
    outcome = await run_template(ctx, {"package": params.package}, user=None, what="apt-get")
    return Result(package=params.package, output=outcome.stdout.decode("utf-8", "replace")[-4000:])


ACTION = Action(
    name="install-app",
    params=Params,
    result=Result,
    summary="Install a Debian package with apt-get (as root).",
    mutating=True,
    needs_target=False,
    default_argv=("apt-get", "install", "-y", "--no-install-recommends", "--", "{package}"),
    default_env=(("DEBIAN_FRONTEND", "noninteractive"),),
    default_timeout=900.0,
    run=run,
)
