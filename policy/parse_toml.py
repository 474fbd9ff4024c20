"""Parse one TOML policy file: `[[rule]]` and `[[test]]` tables and a `[groups]` table.

tomllib does not report positions, so table headers are located in the text and paired
with the parsed tables in order. A file whose rules or tests are not written as their
own `[[rule]]` / `[[test]]` tables (an inline array, say) is refused rather than given
wrong lines.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import msgspec

from .drafts import FileDraft, GroupDraft, Positioned, RuleDraft, RuleSpec, TestDraft, TestSpec
from .errors import PolicyError

_ARRAY_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*(rule|test)[ \t]*\]\][ \t]*(?:#.*)?$")
_ANY_HEADER = re.compile(r"^[ \t]*\[\[?[ \t]*([A-Za-z0-9_\-]+)(?:[ \t]*\.[ \t]*([A-Za-z0-9_\-]+))?")
_KEY = re.compile(r"^[ \t]*([A-Za-z0-9_\-]+(?:[ \t]*\.[ \t]*[A-Za-z0-9_\-]+)*)[ \t]*=")
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
_FIELD_IN_MSG = re.compile(r"(?:unknown field|at) `\$?\.?([A-Za-z0-9_.\-\[\]]*)`")
TOP_LEVEL_KEYS = ("rule", "test", "groups")


def parse_toml_policy(text: str, file: str, *, tests_only: bool = False) -> FileDraft:
    """Parse a TOML policy file; raises PolicyError with file:line:column."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS.search(str(exc))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
        raise PolicyError(file, line, col, _TOML_POS.sub("", str(exc)).strip()) from None
    lines = text.splitlines()
    allowed = ("test",) if tests_only else TOP_LEVEL_KEYS
    for key in doc:
        if key not in allowed:
            raise PolicyError(
                file,
                _line_of_top_key(lines, key),
                1,
                f"unknown top-level key {key!r} (expected: {', '.join(allowed)})",
            )
    spans = _spans(lines)
    out = FileDraft()
    for kind in ("rule", "test"):
        tables = doc.get(kind, [])
        starts = [i for i, k in spans if k == kind]
        if not isinstance(tables, list) or len(starts) != len(tables):
            raise PolicyError(file, 1, 1, f"write each {kind} as its own [[{kind}]] table")
        for table, start in zip(tables, starts, strict=True):
            at = Positioned(
                file=file,
                line=start + 1,
                keys=_key_positions(lines, start, _span_end(spans, start, lines)),
            )
            if kind == "rule":
                out.rules.append(RuleDraft(spec=_convert(table, RuleSpec, at, "rule"), at=at))
            else:
                out.tests.append(TestDraft(spec=_convert(table, TestSpec, at, "test"), at=at))
    if "groups" in doc:
        out.groups.extend(_groups(doc["groups"], lines, spans, file))
    return out


def _convert(table: Any, kind: type[Any], at: Positioned, what: str) -> Any:
    try:
        return msgspec.convert(table, kind)
    except msgspec.ValidationError as exc:
        m = _FIELD_IN_MSG.search(str(exc))
        line, col = at.pos(m.group(1) if m else "")
        raise PolicyError(at.file, line, col, f"{what}: {exc}") from None


def _groups(
    table: Any, lines: list[str], spans: list[tuple[int, str]], file: str
) -> list[GroupDraft]:
    starts = [i for i, k in spans if k == "groups"]
    start = starts[0] if starts else 0
    keys = _key_positions(lines, start, _span_end(spans, start, lines)) if starts else {}
    if not isinstance(table, dict):
        raise PolicyError(file, start + 1, 1, "groups must be a table of name = [actions]")
    out = []
    for name, members in table.items():
        line, col = keys.get(name, (start + 1, 1))
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise PolicyError(file, line, col, f"group {name!r} must be a list of action names")
        out.append(
            GroupDraft(
                name=name, members=list(members), at=Positioned(file=file, line=line, keys={})
            )
        )
    return out


def _spans(lines: list[str]) -> list[tuple[int, str]]:
    """(line index, kind) of every top-level table header: rule, test, groups or other."""
    found: list[tuple[int, str]] = []
    for i, ln in enumerate(lines):
        m = _ARRAY_HEADER.match(ln)
        if m:
            found.append((i, m.group(1)))
            continue
        h = _ANY_HEADER.match(ln)
        if h and ln.lstrip().startswith("[") and h.group(2) is None:
            found.append((i, h.group(1)))
    return found


def _span_end(spans: list[tuple[int, str]], start: int, lines: list[str]) -> int:
    later = [i for i, _ in spans if i > start]
    return later[0] if later else len(lines)


def _key_positions(lines: list[str], start: int, end: int) -> dict[str, tuple[int, int]]:
    """Each key written in a table's span -> (line, column); `params.x` inside subtables."""
    found: dict[str, tuple[int, int]] = {}
    prefix = ""
    for i in range(start + 1, end):
        h = _ANY_HEADER.match(lines[i])
        if h and lines[i].lstrip().startswith("[") and h.group(2):
            prefix = h.group(2) + "."
            found.setdefault(h.group(2), (i + 1, 1))
            continue
        m = _KEY.match(lines[i])
        if m:
            key = prefix + re.sub(r"[ \t]", "", m.group(1))
            col = len(lines[i]) - len(lines[i].lstrip()) + 1
            found.setdefault(key, (i + 1, col))
            if "." in key:
                found.setdefault(key.split(".", 1)[0], (i + 1, col))
    return found


def _line_of_top_key(lines: list[str], key: str) -> int:
    for i, ln in enumerate(lines):
        m = _KEY.match(ln)
        if m and m.group(1).split(".")[0].strip() == key:
            return i + 1
        h = _ANY_HEADER.match(ln)
        if h and h.group(1) == key:
            return i + 1
    return 1
