"""`egress-allow`: let the target workload reach a host name for a while.

The name is resolved by an unprivileged process as the target workload's user (the
configured resolver argv, `getent ahosts` by default), so the root daemon never opens a
network connection itself. Every address the resolver returns must be a public one: a
private, loopback, link-local, CGNAT, multicast or metadata answer refuses the whole
request (a DNS rebinding attempt gets nothing). The addresses go into the workload's
nftables allow set with the requested timeout, in one transaction.

A workload with `internet = "proxy"` is allowed the *name* instead: it is added, with its
expiry, to that workload's list in the egress proxy (supervisor/proxy/control.py), which
re-reads its lists without dropping connections. Nothing is resolved by the daemon then:
the proxy resolves at connect time and refuses private answers itself.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import msgspec

from .addresses import IPAddress, parse_answers, public_address
from .base import Action, ExecContext, ExecError, IntentBase, ResultBase
from .common import need_target, run_template
from .nft import TABLE, Nft, NftError, set_name
from .validate import field_check, normalise_host

MAX_TTL = 24 * 3600


class Options(msgspec.Struct, forbid_unknown_fields=True):
    """The nftables table the workload sets live in, and a cap on addresses per request."""

    table: str = TABLE
    max_addresses: Annotated[int, msgspec.Meta(ge=1, le=256)] = 32
    #: The egress proxy's directory: set from `[proxy] dir` by the daemon.
    proxy_dir: str = "/var/lib/clawvisor-proxy"


class Params(IntentBase, tag="egress-allow", frozen=True):
    """Allow the target to reach `host` (a DNS name, not an IP) on `port` for `ttl` seconds."""

    host: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=253, description="A DNS host name (IDNA); no IP literals."
        ),
    ]
    port: (
        Annotated[
            int,
            msgspec.Meta(ge=1, le=65535, description="Only this port; omitted: every port."),
        ]
        | None
    ) = None
    ttl: Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL, description="Seconds, at most 24 h.")] = 3600

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(
            self, "host", field_check("host", lambda: normalise_host(self.host))
        )


class Result(ResultBase, tag="egress-allow", frozen=True):
    """What the workload may now reach, and until when."""

    host: str
    addresses: list[str]
    port: int | None
    ttl: int
    sets: list[str]
    #: `nftables` (addresses in its allow sets) or `proxy` (the name on its proxy list).
    via: str = "nftables"


def _proxied(proxy_dir: Path, workload: str) -> bool:
    """Whether provisioning gave the workload a port of the egress proxy."""
    try:
        inputs = msgspec.json.decode((proxy_dir / "inputs.json").read_bytes())
    except (OSError, msgspec.DecodeError):
        return False
    return isinstance(inputs, dict) and workload in inputs.get("ports", {})


#: The allow child's limit: its own wait for Squid (10 s), and the lock and files.
_CHILD_TIMEOUT = 30.0


async def _allow_in_proxy(proxy_dir: str, workload: str, params: Params) -> None:
    """Add the name to the workload's proxy list: in a child process, like every
    executor's work (supervisor/proxy/control.py writes the lists and reloads Squid)."""
    argv = [sys.executable, "-m", "supervisor.proxy.control", "allow", proxy_dir, workload]
    argv += [params.host, str(params.port or 0), str(params.ttl)]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        # Bounded: the child waits at most RELOAD_WAIT for Squid, and must never hold
        # the intent without an outcome.
        _, err = await asyncio.wait_for(proc.communicate(), _CHILD_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ExecError("the proxy's list update did not finish in time") from None
    if proc.returncode != 0:
        why = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no reason given"]
        raise ExecError(why[0])


async def run(params: Params, ctx: ExecContext) -> Result:
    """Resolve as the target, check every answer, add them to its allow sets."""
    target = need_target(ctx, "egress-allow")
    options: Options = ctx.settings.options
    if await asyncio.to_thread(_proxied, Path(options.proxy_dir), target.workload):
        await _allow_in_proxy(options.proxy_dir, target.workload, params)
        return Result(
            host=params.host, addresses=[], port=params.port, ttl=params.ttl, sets=[], via="proxy"
        )
    outcome = await run_template(ctx, {"host": params.host}, user=target, what="resolver")
    answers = parse_answers(outcome.stdout.decode("ascii", "replace"))
    if not answers:
        raise ExecError(f"{params.host} did not resolve to any address")
    if len(answers) > options.max_addresses:
        raise ExecError(
            f"{params.host} resolved to {len(answers)} addresses (at most {options.max_addresses})"
        )
    addresses: list[IPAddress] = []
    for text in answers:
        try:
            addresses.append(public_address(text))
        except ValueError as exc:
            raise ExecError(
                f"refused: {params.host} resolved to {exc}; nothing was allowed"
            ) from None
    v4 = [str(a) for a in addresses if a.version == 4]
    v6 = [str(a) for a in addresses if a.version == 6]
    nft = Nft()
    sets: list[str] = []
    commands = []
    for family, values in (("4", v4), ("6", v6)):
        if not values:
            continue
        kind = f"allowp{family}" if params.port is not None else f"allow{family}"
        name = set_name(kind, target.workload)
        elems = (
            [{"concat": [v, params.port]} for v in values] if params.port is not None else values
        )
        commands.append(
            {
                "add": {
                    "element": {
                        "family": "inet",
                        "table": options.table,
                        "name": name,
                        "elem": [{"elem": {"val": e, "timeout": params.ttl}} for e in elems],
                    }
                }
            }
        )
        sets.append(name)
    try:
        nft.run(*commands)
    except NftError as exc:
        raise ExecError(f"nftables refused the allow-set update: {exc}") from None
    return Result(
        host=params.host, addresses=[*v4, *v6], port=params.port, ttl=params.ttl, sets=sets
    )


ACTION = Action(
    name="egress-allow",
    params=Params,
    result=Result,
    summary="Let the target workload reach a host name (resolved, public addresses only) "
    "for up to 24 h.",
    mutating=True,
    needs_target=True,
    default_argv=("getent", "ahosts", "{host}"),
    placeholders=("host",),
    options=Options,
    audit_result=True,
    run=run,
)
