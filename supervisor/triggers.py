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
    [trigger.unless]                       # optional: never when this also matches
    comm = "make"
    [trigger.rate]                         # optional: fire when `count` matches fall
    count = 5                              # within `window` seconds, per workload
    window = 10

`outcome` says which syscall outcomes a trigger sees: "success" (the default: a failed
PATH lookup is not an exec), "failure" (a refused read of /etc/shadow) or "any".

Expected behaviour is marked narrowly, without turning a trigger off, by an exemption
in any trigger file (also for a default trigger):

    [[exempt]]
    trigger = "shell-or-network-tool"      # a trigger name, or a list of them
    workloads = ["builder"]                # optional: only these workloads
    tags = ["ci"]                          # optional: only workloads with one of these
    [exempt.match]                         # the events it covers (same syntax as match)
    filename = "/usr/bin/git"

A field holding a list (argv) matches when any element does; `{ starts = [...] }`
matches the list's first elements exactly (and nothing else about it). The defaults ship in
supervisor/defaults/triggers.toml; CONFIG/triggers.d/*.toml are read after them, in
name order. Every rule is checked when loaded: an unknown kind, field, response or
exempted trigger is an error naming the file and the trigger.
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
from .trigger_gates import KINDS, KindGates
from .wire.control import TriggerResponse

Response = TriggerResponse
Outcome = Literal["success", "failure", "any"]


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
    outcome: Outcome = "success"
    match: dict[str, Any] = {}
    unless: dict[str, Any] = {}
    rate: RateSpec | None = None


class ExemptSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An `[[exempt]]` table: expected behaviour a trigger is not to fire on."""

    trigger: str | list[str]
    workloads: list[str] = []
    tags: list[str] = []
    match: dict[str, Any] = {}


class TriggerFile(msgspec.Struct, forbid_unknown_fields=True):
    trigger: list[TriggerSpec] = []
    exempt: list[ExemptSpec] = []


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


class _Starts(msgspec.Struct, frozen=True):
    """A list field (argv) whose first elements are exactly these: the whole list is
    matched, so an element elsewhere cannot make an unrelated command look like one."""

    param: str
    prefix: tuple[str, ...]

    def matches(self, value: object) -> bool:
        return isinstance(value, list) and tuple(value[: len(self.prefix)]) == self.prefix

    def describe(self) -> str:
        return f"{self.param} starts {list(self.prefix)}"


Matcher = Callable[[object], bool]


def _matcher(field_name: str, ftype: Any, spec: Any) -> Any:
    if isinstance(spec, dict) and set(spec) == {"cidr"}:
        raw = spec["cidr"]
        nets = tuple(
            ipaddress.ip_network(n, strict=False) for n in ([raw] if isinstance(raw, str) else raw)
        )
        return _Cidr(param=field_name, nets=nets)
    kind = _kind_of(ftype)
    if kind == "list" and isinstance(spec, dict) and set(spec) == {"starts"}:
        prefix = spec["starts"]
        if not (isinstance(prefix, list) and prefix and all(isinstance(a, str) for a in prefix)):
            raise ValueError(f"{field_name}: starts takes a non-empty list of strings")
        return _Starts(param=field_name, prefix=tuple(prefix))
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


def _all_match(matchers: tuple[Any, ...], event: ev.MonitorEvent) -> bool:
    for m in matchers:
        value = getattr(event, m.param, None)
        if isinstance(value, list) and not isinstance(m, (Exact, _Starts)):
            if not any(m.matches(v) for v in value):
                return False
        elif not m.matches(value):
            return False
    return True


@dataclass
class Exemption:
    """A compiled `[[exempt]]`: for some workloads (all when neither is given), events
    matching all of `matchers` do not fire the trigger."""

    workloads: frozenset[str]
    tags: frozenset[str]
    matchers: tuple[Any, ...]
    origin: str

    def covers(self, event: ev.MonitorEvent, tags: frozenset[str]) -> bool:
        if self.workloads and event.workload not in self.workloads:
            return False
        if self.tags and not self.tags & tags:
            return False
        return _all_match(self.matchers, event)


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
    outcome: Outcome = "success"
    unless: tuple[Any, ...] = ()
    exemptions: list[Exemption] = field(default_factory=list)
    hits: dict[str, deque[float]] = field(default_factory=dict)

    def matches(self, event: ev.MonitorEvent) -> bool:
        if self.outcome != "any" and isinstance(event, ev.SyscallEvent):
            failed = event.result < 0
            if failed != (self.outcome == "failure"):
                return False
        if not _all_match(self.matchers, event):
            return False
        return not (self.unless and _all_match(self.unless, event))

    def exempt(self, event: ev.MonitorEvent, tags: frozenset[str]) -> bool:
        return any(x.covers(event, tags) for x in self.exemptions)

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


def _compile_match(
    table: dict[str, Any], kinds: list[str], where: str, section: str
) -> tuple[Any, ...]:
    """Matchers for a match table, checked against every kind's fields."""
    matchers = []
    for fname, value in table.items():
        types = [KINDS[k].__annotations__.get(fname) or _inherited(KINDS[k], fname) for k in kinds]
        if any(t is None for t in types):
            lacking = [k for k, t in zip(kinds, types, strict=True) if t is None]
            raise TriggerError(f"{where}: events {lacking} have no field {fname!r}")
        try:
            matchers.append(_matcher(fname, types[0], value))
        except (ValueError, TypeError, msgspec.ValidationError) as exc:
            raise TriggerError(f"{where}: {section}.{fname}: {exc}") from None
    return tuple(matchers)


def compile_trigger(spec: TriggerSpec, origin: str) -> Trigger:
    """Check one trigger against the event schemas and compile its matchers."""
    kinds = [spec.kind] if isinstance(spec.kind, str) else list(spec.kind)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise TriggerError(
            f"{origin}: trigger {spec.name!r}: unknown event kinds {unknown} "
            f"(known: {', '.join(sorted(KINDS))})"
        )
    where = f"{origin}: trigger {spec.name!r}"
    return Trigger(
        name=spec.name,
        kinds=frozenset(kinds),
        severity=spec.severity,
        responses=tuple(dict.fromkeys(spec.responses)),
        except_tags=frozenset(spec.except_tags),
        matchers=_compile_match(spec.match, kinds, where, "match"),
        rate=spec.rate,
        origin=origin,
        outcome=spec.outcome,
        unless=_compile_match(spec.unless, kinds, where, "unless"),
    )


def _apply_exemptions(
    triggers: list[Trigger], specs: list[tuple[ExemptSpec, str]]
) -> list[Trigger]:
    by_name = {t.name: t for t in triggers}
    for spec, origin in specs:
        names = [spec.trigger] if isinstance(spec.trigger, str) else list(spec.trigger)
        for name in names:
            t = by_name.get(name)
            if t is None:
                raise TriggerError(f"{origin}: exempt: no trigger named {name!r}")
            where = f"{origin}: exempt from {name!r}"
            t.exemptions.append(
                Exemption(
                    workloads=frozenset(spec.workloads),
                    tags=frozenset(spec.tags),
                    matchers=_compile_match(spec.match, sorted(t.kinds), where, "match"),
                    origin=origin,
                )
            )
    return triggers


def _inherited(cls: type, fname: str) -> Any:
    for base in cls.__mro__:
        ann = getattr(base, "__annotations__", {})
        if fname in ann:
            return ann[fname]
    return None


def _parse(text: str, origin: str) -> TriggerFile:
    try:
        return msgspec.convert(tomllib.loads(text), TriggerFile)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise TriggerError(f"{origin}: {exc}") from None


def parse_triggers(text: str, origin: str) -> list[Trigger]:
    """Every trigger in one TOML file (its exemptions applied to its own triggers)."""
    doc = _parse(text, origin)
    triggers = [compile_trigger(spec, origin) for spec in doc.trigger]
    return _apply_exemptions(triggers, [(x, origin) for x in doc.exempt])


def load_triggers(directory: Path | None, *, defaults: bool = True) -> list[Trigger]:
    """The default triggers (unless turned off), then CONFIG/triggers.d/*.toml in order;
    exemptions from any file apply to the triggers of every file."""
    out: list[Trigger] = []
    exempts: list[tuple[ExemptSpec, str]] = []
    files: list[tuple[str, str]] = []
    if defaults:
        text = resources.files("supervisor").joinpath("defaults/triggers.toml").read_text()
        files.append((text, "<default>/triggers.toml"))
    if directory is not None and directory.is_dir():
        files += [(p.read_text(), f"triggers.d/{p.name}") for p in sorted(directory.glob("*.toml"))]
    for text, origin in files:
        doc = _parse(text, origin)
        out += [compile_trigger(spec, origin) for spec in doc.trigger]
        exempts += [(x, origin) for x in doc.exempt]
    names = [t.name for t in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise TriggerError(f"trigger names used twice: {sorted(dupes)}")
    return _apply_exemptions(out, exempts)


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
        # By event type, not tag: the type is one lookup away from the event.
        self._gated: dict[type, KindGates] = {
            KINDS[k]: KindGates(k, ts) for k, ts in self.by_kind.items()
        }

    def on_event(self, event: ev.Event) -> None:
        """The bus listener."""
        gated = self._gated.get(type(event))
        if gated is None:
            return
        # The gates rule out, at once, every trigger that cannot match (most events
        # match none): only the rest are checked.
        candidates = gated.candidates(event)
        if not candidates:
            return
        tags = self.tags.get(event.workload, frozenset()) if event.workload else frozenset()
        for t in candidates:
            if t.except_tags & tags:
                continue
            if not t.matches(event):
                continue
            if t.exemptions and t.exempt(event, tags):
                continue
            if not t.counted(event.workload or "", self.clock()):
                continue
            self.fired += 1
            self.fire(
                Alert(trigger=t.name, severity=t.severity, responses=list(t.responses), event=event)
            )
