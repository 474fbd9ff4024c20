"""Which control sockets an approval agent follows: one (`--socket PATH`, or the runtime
directory's), or one per VM, named: `--socket vm1=PATH` (repeatable) and `--fleet FILE`.

A fleet file is TOML, declared here as a msgspec Struct (the declaration is the
validator); strict: unknown keys are refused, a VM's name is
`[A-Za-z0-9][A-Za-z0-9._-]{0,62}`, a name or a socket given twice is refused::

    [vms.vm1]
    socket = "/run/user/1000/cv-vm1.sock"
    [vms.vm2]
    socket = "/run/user/1000/cv-vm2.sock"
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated

import msgspec

from executors.base import whole

#: A VM's name as prompts show it.
VM_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
#: At most this many VMs per agent (a Telegram button names its VM by index).
MAX_VMS = 256

VmName = Annotated[str, msgspec.Meta(pattern=whole(VM_NAME))]
SocketPath = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
_NAME = re.compile(whole(VM_NAME))


class FleetVm(msgspec.Struct, forbid_unknown_fields=True):
    """One VM: its control socket on this machine (e.g. forwarded with `ssh -L`)."""

    socket: SocketPath


class FleetFile(msgspec.Struct, forbid_unknown_fields=True):
    """A fleet file: `[vms.NAME]` tables."""

    vms: Annotated[dict[VmName, FleetVm], msgspec.Meta(min_length=1, max_length=MAX_VMS)]


class FleetError(ValueError):
    """A fleet file or a `--socket` that cannot be used; the message says why."""


def _named(named: dict[str, Path], name: str, path: Path, where: str) -> None:
    if not _NAME.match(name):
        raise FleetError(f"{where}: {name!r} is not a VM name ({VM_NAME})")
    if name in named:
        raise FleetError(f"{where}: VM {name!r} is named twice")
    if path in named.values():
        other = next(n for n, p in named.items() if p == path)
        raise FleetError(f"{where}: {path} is already the socket of VM {other!r}")
    if len(named) >= MAX_VMS:
        raise FleetError(f"{where}: at most {MAX_VMS} VMs")
    named[name] = path


def load_fleet(path: Path) -> dict[str, Path]:
    """The VMs of a fleet file, in the file's order: {name: socket}."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(f"{path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{path}: not valid TOML: {exc}") from None
    vms = data.get("vms")
    for name, table in vms.items() if isinstance(vms, dict) else ():
        # Each VM first, so a message names the VM; then the whole file, by its Struct.
        if not _NAME.match(name):
            raise FleetError(f"{path}: {name!r} is not a VM name ({VM_NAME})")
        try:
            msgspec.convert(table, FleetVm)
        except msgspec.ValidationError as exc:
            raise FleetError(f"{path}: VM {name!r}: {exc}") from None
    try:
        fleet = msgspec.convert(data, FleetFile)
    except msgspec.ValidationError as exc:
        raise FleetError(f"{path}: {exc}") from None
    named: dict[str, Path] = {}
    for name, vm in fleet.vms.items():
        socket = Path(vm.socket)
        if not socket.is_absolute():
            raise FleetError(f"{path}: VM {name!r}: the socket must be an absolute path")
        _named(named, name, socket, str(path))
    return named


def choose(given: list[str] | None, fleet: Path | None, default: Path) -> Path | dict[str, Path]:
    """The sockets to follow: `--socket PATH` alone, or the VMs named by `--socket
    NAME=PATH` (each) and `--fleet FILE` together; neither given: `default`."""
    items = given or []
    if fleet is None and not items:
        return default
    if fleet is None and len(items) == 1 and "=" not in items[0]:
        return Path(items[0])
    named = load_fleet(fleet) if fleet is not None else {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise FleetError(f"--socket {item!r}: with several sockets, each is NAME=PATH")
        _named(named, name, Path(path), "--socket")
    return named
