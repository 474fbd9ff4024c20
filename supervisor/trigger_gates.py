"""Which triggers an event could fire, decided before any trigger is checked.

Every monitor event (up to 100,000 a second) goes past the triggers, and nearly none
fires one. Per event kind, each trigger sits behind one necessary condition, its gate:
its first whole-value pattern (all the triggers' patterns on a field are one union
regex, behind a literal prefilter and a table of recent answers), else its most
selective exact value (`resolved = false`). One pass over the gates gives a bit set;
only the triggers behind no gate or an open one are checked in full, and the engine
memoizes that list per bit set.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

from policy.constraints import Exact
from policy.matchers import Glob, Regex
from policy.patterns.prefilter import Prefilter, prefilter

from .monitors import events as ev

if TYPE_CHECKING:
    from .triggers import Trigger

#: How many values a pattern gate keeps its answer for.
GATE_MEMO = 16384
KINDS: dict[str, type[ev.MonitorEvent]] = {str(t.__struct_config__.tag): t for t in ev.EVENT_TYPES}


class PatternGate(msgspec.Struct):
    """A field, a cheap test every match passes, the union regex, recent answers."""

    field: str
    cheap: Prefilter
    union: re.Pattern[str]
    seen: dict[str, bool] = {}


class KindGates:
    """The gates of one event kind, and each trigger with the bit of its gate."""

    def __init__(self, kind: str, triggers: list[Trigger]) -> None:
        fields: dict[str, list[Glob | Regex]] = {}
        exacts: dict[tuple[str, type, Any], int] = {}
        where: list[tuple[str, Any] | None] = []
        for t in triggers:
            gate = next((m for m in t.matchers if isinstance(m, Glob | Regex) and not m.each), None)
            if gate is not None:
                fields.setdefault(gate.param, []).append(gate)
                where.append(("pattern", gate.param))
                continue
            exact = _exact_gate(t, kind)
            if exact is None:
                where.append(None)
                continue
            key = (exact.param, type(exact.value), exact.value)
            exacts.setdefault(key, len(exacts))
            where.append(("exact", key))
        names = list(fields)
        self.patterns = [
            PatternGate(
                field=n,
                cheap=prefilter([g.node for g in fields[n]]),
                union=re.compile(
                    "|".join(f"(?:{g.compiled.pattern})" for g in fields[n]), re.DOTALL
                ),
            )
            for n in names
        ]
        #: A field and the one value some trigger needs it to have (`write = true`).
        self.exacts: list[tuple[str, Any]] = [(param, value) for param, _t, value in exacts]

        def bit(w: tuple[str, Any] | None) -> int | None:
            if w is None:
                return None
            return names.index(w[1]) if w[0] == "pattern" else len(names) + exacts[w[1]]

        #: The triggers in order, each with its gate's bit (None: always checked).
        self.entries: list[tuple[Trigger, int | None]] = [
            (t, bit(w)) for t, w in zip(triggers, where, strict=True)
        ]

        # Plans per set of open gates; the commonest (every gate shut: only the
        # triggers behind none) is there from the start.
        self._plans: dict[int, list[Trigger]] = {0: [t for t, b in self.entries if b is None]}
        # The gates flattened for open_bits: no attribute lookups per event.
        self._checks = [
            (1 << i, g.field, g.seen, g.cheap.admits, g.union.fullmatch)
            for i, g in enumerate(self.patterns)
        ]
        self._exact_checks = [
            (1 << (len(self.patterns) + i), name, value)
            for i, (name, value) in enumerate(self.exacts)
        ]

    def candidates(self, event: ev.MonitorEvent) -> list[Trigger]:
        """The triggers, in order, behind no gate or an open one (memoized per set of
        open gates: a handful of sets cover every event)."""
        bits = self.open_bits(event)
        found = self._plans.get(bits)
        if found is None:
            found = [t for t, g in self.entries if g is None or bits >> g & 1]
            self._plans[bits] = found
        return found

    def open_bits(self, event: ev.MonitorEvent) -> int:
        """The bit set of the gates this event passes."""
        bits = 0
        for bit, name, seen, admits, fullmatch in self._checks:
            value = getattr(event, name, None)
            # A pattern never matches a missing value; a list is matched element-wise
            # by the trigger itself, so it passes the gate.
            if value is None:
                continue
            if type(value) is not str:
                bits |= bit
                continue
            # The same few paths come again and again (a build opens its headers, a
            # shell /dev/null): their answer is kept, in a table of bounded size.
            hit = seen.get(value)
            if hit is None:
                if len(seen) >= GATE_MEMO:
                    seen.clear()
                hit = seen[value] = admits(value) and fullmatch(value) is not None
            if hit:
                bits |= bit
        for bit, name, wanted in self._exact_checks:
            value = getattr(event, name, None)
            if value == wanted and type(value) is type(wanted):  # type-strict, as Exact
                bits |= bit
        return bits


def _exact_gate(t: Trigger, kind: str) -> Exact | None:
    """The trigger's most selective exact scalar match: one asking for a value other than
    the field's default (`resolved = false`) rules out more events than one asking for it."""
    exact = [m for m in t.matchers if isinstance(m, Exact) and not isinstance(m.value, tuple)]
    defaults = {
        f.name: f.default
        for f in msgspec.structs.fields(KINDS[kind])
        if f.default is not msgspec.NODEFAULT
    }
    rare = [m for m in exact if m.param in defaults and defaults[m.param] != m.value]
    found = rare or exact
    return found[0] if found else None
