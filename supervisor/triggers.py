"""Trigger rules: which monitor events are alerts, and what to do about them.

    [[trigger]]
    name = "persistence"
    kind = "open"                          # an event kind, or a list of them
    severity = "high"                      # info | low | medium | high | critical
    responses = ["alert"]                  # alert | freeze | kill | cut-network | revoke-grants
    except_tags = ["uses-shell"]           # workloads with one of these tags are exempt
    [trigger.match]                        # every field must match
    write = true                           # a bare value: equal (a list: one of)
    path = { glob = ["*/.ssh/*"] }         # glob | regex | prefix | cidr | one_of | range
    [trigger.rate]                         # optional: fire when `count` matches fall
    count = 5                              # within `window` seconds, per workload
    window = 10

A field holding a list (argv) matches when any element does. The defaults ship in
supervisor/defaults/triggers.toml; CONFIG/triggers.d/*.toml are read after them, in
name order. Every rule is checked when loaded: an unknown kind, field or response is an
error naming the file and the trigger.
"""

from __future__ import annotations

import ipaddress
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from executors.base import whole
from policy.constraints import Exact, parse_constraint

from .monitors import events as ev

Response = Literal["alert", "freeze", "kill", "cut-network", "revoke-grants"]
KINDS: dict[str, type[ev.MonitorEvent]] = {
    t.__struct_config__.tag: t  # type: ignore[misc]
    for t in (
        ev.Exec,
        ev.Connect,
        ev.Open,
        ev.Ptrace,
        ev.Setid,
        ev.Capset,
        ev.Mount,
        ev.Umount,
        ev.Bpf,
        ev.Module,
        ev.Namespace,
        ev.Fork,
        ev.Exit,
        ev.Throttled,
        ev.Lost,
        ev.FileChange,
        ev.Overflow,
        ev.Net,
        ev.MonitorState,
    )
}


class TriggerError(Exception):
    """A trigger file that cannot be used."""


class RateSpec(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=100000)]
    window: Annotated[float, msgspec.Meta(gt=0, le=86400)]


class TriggerSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A `[[trigger]]` table as written."""

    name: Annotated[str, msgspec.Meta(pattern=whole(r"[a-z0-9][a-z0-9-]{0,63}"))]
    kind: str | list[str]
    severity: ev.Severity = "medium"
    responses: list[Response] = msgspec.field(default_factory=lambda: ["alert"])
    except_tags: list[str] = []
    match: dict[str, Any] = {}
    rate: RateSpec | None = None


class TriggerFile(msgspec.Struct, forbid_unknown_fields=True):
    trigger: list[TriggerSpec] = []


class _Cidr(msgspec.Struct, frozen=True):
    param: str
    nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def matches(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(addr in net for net in self.nets)

    def describe(self) -> str:
        return f"{self.param} in {[str(n) for n in self.nets]}"


Matcher = Callable[[object], bool]


def _matcher(field_name: str, ftype: Any, spec: Any) -> Any:
    if isinstance(spec, dict) and set(spec) == {"cidr"}:
        raw = spec["cidr"]
        nets = tuple(
            ipaddress.ip_network(n, strict=False) for n in ([raw] if isinstance(raw, str) else raw)
        )
        return _Cidr(param=field_name, nets=nets)
    kind = _kind_of(ftype)
    if kind == "list":
        kind = "str"  # matched element by element: any element may match
    if isinstance(spec, list) and not isinstance(spec, dict):
        spec = {"one_of": spec}
    if isinstance(spec, bool) and kind != "bool":
        raise ValueError(f"{field_name} is not a bool")
    return parse_constraint(field_name, kind, spec)


def _kind_of(ftype: Any) -> Literal["str", "int", "bool", "list"]:
    text = str(ftype)
    if "bool" in text:
        return "bool"
    if "list" in text:
        return "list"
    if "int" in text and "str" not in text:
        return "int"
    return "str"


@dataclass
class Trigger:
    """A compiled trigger."""

    name: str
    kinds: frozenset[str]
    severity: ev.Severity
    responses: tuple[Response, ...]
    except_tags: frozenset[str]
    matchers: tuple[Any, ...]
    rate: RateSpec | None
    origin: str
    hits: dict[str, deque[float]] = field(default_factory=dict)

    def matches(self, event: ev.MonitorEvent) -> bool:
        for m in self.matchers:
            value = getattr(event, m.param, None)
            if isinstance(value, list) and not isinstance(m, Exact):
                if not any(m.matches(v) for v in value):
                    return False
            elif not m.matches(value):
                return False
        return True

    def counted(self, workload: str, now: float) -> bool:
        """With a rate: True when this match makes `count` within `window` (then resets)."""
        if self.rate is None:
            return True
        hits = self.hits.setdefault(workload, deque())
        hits.append(now)
        while hits and now - hits[0] > self.rate.window:
            hits.popleft()
        if len(hits) >= self.rate.count:
            hits.clear()
            return True
        return False


def compile_trigger(spec: TriggerSpec, origin: str) -> Trigger:
    """Check one trigger against the event schemas and compile its matchers."""
    kinds = [spec.kind] if isinstance(spec.kind, str) else list(spec.kind)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise TriggerError(
            f"{origin}: trigger {spec.name!r}: unknown event kinds {unknown} "
            f"(known: {', '.join(sorted(KINDS))})"
        )
    matchers = []
    for fname, value in spec.match.items():
        types = [KINDS[k].__annotations__.get(fname) or _inherited(KINDS[k], fname) for k in kinds]
        if any(t is None for t in types):
            lacking = [k for k, t in zip(kinds, types, strict=True) if t is None]
            raise TriggerError(
                f"{origin}: trigger {spec.name!r}: events {lacking} have no field {fname!r}"
            )
        try:
            matchers.append(_matcher(fname, types[0], value))
        except (ValueError, TypeError, msgspec.ValidationError) as exc:
            raise TriggerError(f"{origin}: trigger {spec.name!r}: match.{fname}: {exc}") from None
    return Trigger(
        name=spec.name,
        kinds=frozenset(kinds),
        severity=spec.severity,
        responses=tuple(dict.fromkeys(spec.responses)),
        except_tags=frozenset(spec.except_tags),
        matchers=tuple(matchers),
        rate=spec.rate,
        origin=origin,
    )


def _inherited(cls: type, fname: str) -> Any:
    for base in cls.__mro__:
        ann = getattr(base, "__annotations__", {})
        if fname in ann:
            return ann[fname]
    return None


def parse_triggers(text: str, origin: str) -> list[Trigger]:
    """Every trigger in one TOML file."""
    try:
        doc = msgspec.convert(tomllib.loads(text), TriggerFile)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise TriggerError(f"{origin}: {exc}") from None
    return [compile_trigger(spec, origin) for spec in doc.trigger]


def load_triggers(directory: Path | None, *, defaults: bool = True) -> list[Trigger]:
    """The default triggers (unless turned off), then CONFIG/triggers.d/*.toml in order."""
    out: list[Trigger] = []
    if defaults:
        text = resources.files("supervisor").joinpath("defaults/triggers.toml").read_text()
        out += parse_triggers(text, "<default>/triggers.toml")
    if directory is not None and directory.is_dir():
        for path in sorted(directory.glob("*.toml")):
            out += parse_triggers(path.read_text(), f"triggers.d/{path.name}")
    names = [t.name for t in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise TriggerError(f"trigger names used twice: {sorted(dupes)}")
    return out


class Alert(msgspec.Struct, kw_only=True):
    """A trigger that fired: what it saw and what was done."""

    trigger: str
    severity: ev.Severity
    responses: list[str]
    event: ev.Event
    results: list[str] = []


class TriggerEngine:
    """Matches every event against the triggers for its kind; hands fired ones on."""

    def __init__(
        self,
        triggers: Iterable[Trigger],
        tags: Mapping[str, frozenset[str]],
        fire: Callable[[Alert], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fire = fire
        self.clock = clock
        self.fired = 0
        self.set_rules(triggers, tags)

    def set_rules(self, triggers: Iterable[Trigger], tags: Mapping[str, frozenset[str]]) -> None:
        self.triggers = list(triggers)
        self.tags = dict(tags)
        self.by_kind: dict[str, list[Trigger]] = {}
        for t in self.triggers:
            for k in t.kinds:
                self.by_kind.setdefault(k, []).append(t)

    def on_event(self, event: ev.Event) -> None:
        """The bus listener."""
        kind: str = event.__struct_config__.tag  # type: ignore[assignment]
        for t in self.by_kind.get(kind, ()):
            if event.workload is not None and t.except_tags & self.tags.get(
                event.workload, frozenset()
            ):
                continue
            if not t.matches(event):
                continue
            if not t.counted(event.workload or "", self.clock()):
                continue
            self.fired += 1
            self.fire(
                Alert(trigger=t.name, severity=t.severity, responses=list(t.responses), event=event)
            )
