"""`clawvisor policy diff --socket NAME=PATH ... NEW_POLICY_DIR`: a new policy against
the policy each VM is running (not the files on its disk, which may have been edited
since, or refused at reload), before a rollout.

Each VM's daemon hands over its policy in force and the workloads (with their tags) it
was compiled for (`policy-source` on its control socket, forwarded with `ssh -L`), so the
new policy is compiled here exactly as that VM would compile it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import msgspec

from policy import Policy, PolicyError, load_policy_dir, load_policy_texts, run_tests

from ..actions import POLICY_CATALOG, normalise_params
from ..wire.control import PolicySource


class Unreachable(Exception):
    """A VM's daemon could not be asked for its policy; the message says why."""


def running_policy(socket: Path) -> tuple[Policy, dict[str, frozenset[str]]]:
    """The policy `socket`'s daemon has in force, compiled as it compiled it, and its
    workloads with their tags. Unreachable for anything short of exactly that."""
    from ..wire.client import Client

    try:
        with Client(socket, timeout=30) as client:
            reply, _ = client.control("policy-source")
    except (OSError, ConnectionError, msgspec.MsgspecError) as exc:
        raise Unreachable(f"{socket}: {exc}") from None
    if reply.status != "ok":
        raise Unreachable(f"{socket}: {reply.error.message if reply.error else 'refused'}")
    if not isinstance(reply.result, dict):
        raise Unreachable(f"{socket}: not a policy-source reply")
    try:
        source = msgspec.convert(
            {**reply.result, "op": "policy-source"}, PolicySource, strict=False
        )
    except msgspec.ValidationError as exc:
        raise Unreachable(f"{socket}: not a policy-source reply: {exc}") from None
    if not source.workloads:
        # Compiled for no workload, every policy decides nothing: "nothing newly allowed"
        # would be said of any change.
        raise Unreachable(
            f"{socket}: the daemon did not say which workloads its policy is for "
            "(older than this clawvisor?); compare on the VM with `reload --diff`"
        )
    workloads = {name: frozenset(tags) for name, tags in source.workloads.items()}
    texts = [(f.name, f.text) for f in source.files]
    try:
        return load_policy_texts(texts, POLICY_CATALOG, workloads, check_tests=False), workloads
    except PolicyError as exc:  # it loaded there: a daemon of another version, say
        raise Unreachable(f"{socket}: its policy in force does not compile here: {exc}") from None


def _say(vm: str, level: str, message: str, *, json: bool, out: TextIO) -> None:
    """An error or a note about one VM: a line of text, or with --json an object of its own."""
    if json:
        out.write(msgspec.json.encode({"vm": vm, level: message}).decode() + "\n")
    else:
        print(f"{level}: {message}", file=out)


def _one(vm: str, socket: Path, new_dir: Path, *, json: bool, out: TextIO) -> int:
    from ..policy_tools import show_diff

    try:
        old, workloads = running_policy(socket)
        new = load_policy_dir(
            new_dir,
            POLICY_CATALOG,
            workloads,
            display_root=new_dir.parent,
            normalise=normalise_params,
            check_tests=False,
        )
    except Unreachable as exc:
        _say(vm, "error", str(exc), json=json, out=out)
        return 2
    except PolicyError as exc:
        _say(
            vm,
            "error",
            f"the new policy does not load for its workloads: {exc}",
            json=json,
            out=out,
        )
        return 2
    if run_tests(new, normalise_params):
        _say(
            vm,
            "note",
            "the new policy's own tests fail there; a reload would refuse it",
            json=json,
            out=out,
        )
    if not json:
        return show_diff(old, new, f"{vm} (in force)", str(new_dir), json=False, out=out)
    buf = io.StringIO()
    rc = show_diff(old, new, f"{vm} (in force)", str(new_dir), json=True, out=buf)
    if rc == 2:
        _say(vm, "error", buf.getvalue().strip().removeprefix("error: "), json=True, out=out)
    else:
        data = msgspec.json.decode(buf.getvalue())
        out.write(msgspec.json.encode({"vm": vm, **data}).decode() + "\n")
    return rc


def diff_fleet(vms: Mapping[str, Path], new_dir: Path, *, json: bool = False, out: TextIO) -> int:
    """Diff `new_dir` against every VM's policy in force, VM by VM (a section each, or one
    JSON object per line naming its `vm`). 2 when any VM could not be compared (the
    others still are), else 1 when anything is newly allowed on any VM, else 0."""
    worst = 0
    for vm, socket in vms.items():
        if not json:
            print(f"== {vm} ({socket})", file=out)
        rc = _one(vm, socket, new_dir, json=json, out=out)
        worst = 2 if 2 in (rc, worst) else max(rc, worst)
    if not json:
        newly = "something newly allowed" if worst == 1 else "nothing newly allowed"
        print(f"{len(vms)} VMs: " + ("error on at least one" if worst == 2 else newly), file=out)
    return worst
