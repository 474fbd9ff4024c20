"""Parse one TOML policy file into rule drafts that remember their lines.

tomllib does not report positions, so the file's `[[rule]]` header lines are located in
the text and paired with the parsed tables in order. A file whose rules are not written
as `[[rule]]` tables (an inline array, say) is refused rather than given wrong lines.
"""

from __future__ import annotations

import re
import tomllib
from typing import Annotated, Any

import msgspec

from .errors import PolicyError
from .model import Decision

_RULE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*rule[ \t]*\]\][ \t]*(?:#.*)?$")
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
_FIELD_IN_MSG = re.compile(r"(?:unknown field|at) `\$?\.?([A-Za-z0-9_.\-\[\]]*)`")
TOP_LEVEL_KEYS = frozenset({"rule"})


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A `[[rule]]` table exactly as written."""

    action: str
    source: str
    target: str
    decision: Decision
    params: dict[str, Any] = {}
    timeout: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 120.0


class RuleDraft(msgspec.Struct, frozen=True):
    """A parsed rule with its position and the line of each of its keys."""

    spec: RuleSpec
    file: str
    line: int
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        """The line where `key` (or `params.key`) is written, else the rule's header."""
        if key in self.key_lines:
            return self.key_lines[key]
        return self.key_lines.get(key.split(".", 1)[0], self.line)


def parse_toml_policy(text: str, file: str) -> list[RuleDraft]:
    """Parse a TOML policy file; raises PolicyError with file:line:column."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS.search(str(exc))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
        raise PolicyError(file, line, col, _TOML_POS.sub("", str(exc)).strip()) from None
    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            raise PolicyError(
                file,
                _find_key_line(text.splitlines(), key, 0),
                1,
                f"unknown top-level key {key!r} (expected: rule)",
            )
    tables = doc.get("rule", [])
    lines = text.splitlines()
    headers = [i for i, ln in enumerate(lines) if _RULE_HEADER.match(ln)]
    if not isinstance(tables, list) or len(headers) != len(tables):
        raise PolicyError(file, 1, 1, "write each rule as its own [[rule]] table")
    drafts: list[RuleDraft] = []
    for n, (table, start) in enumerate(zip(tables, headers, strict=True)):
        end = headers[n + 1] if n + 1 < len(headers) else len(lines)
        key_lines = _key_lines(lines, start, end)
        try:
            spec = msgspec.convert(table, RuleSpec)
        except msgspec.ValidationError as exc:
            m = _FIELD_IN_MSG.search(str(exc))
            key = m.group(1) if m else ""
            raise PolicyError(file, key_lines.get(key, start + 1), 1, f"rule: {exc}") from None
        drafts.append(RuleDraft(spec=spec, file=file, line=start + 1, key_lines=key_lines))
    return drafts


_KEY = re.compile(r"^[ \t]*([A-Za-z0-9_\-]+(?:[ \t]*\.[ \t]*[A-Za-z0-9_\-]+)*)[ \t]*=")
_SUBTABLE = re.compile(r"^[ \t]*\[[ \t]*rule[ \t]*\.[ \t]*([A-Za-z0-9_\-]+)[ \t]*\]")


def _key_lines(lines: list[str], start: int, end: int) -> dict[str, int]:
    """Map each key written in a rule's span to its 1-based line (`params.x` for params)."""
    found: dict[str, int] = {}
    prefix = ""
    for i in range(start + 1, end):
        sub = _SUBTABLE.match(lines[i])
        if sub:
            prefix = sub.group(1) + "."
            found.setdefault(sub.group(1), i + 1)
            continue
        m = _KEY.match(lines[i])
        if m:
            key = prefix + re.sub(r"[ \t]", "", m.group(1))
            found.setdefault(key, i + 1)
            if "." in key:
                found.setdefault(key.split(".", 1)[0], i + 1)
    return found


def _find_key_line(lines: list[str], key: str, start: int) -> int:
    for i in range(start, len(lines)):
        m = _KEY.match(lines[i])
        if m and m.group(1).split(".")[0].strip() == key:
            return i + 1
        if lines[i].lstrip().startswith(f"[{key}") or lines[i].lstrip().startswith(f"[[{key}"):
            return i + 1
    return 1
