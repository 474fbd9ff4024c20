"""Durations and rates as people write them in policies and on the command line."""

from __future__ import annotations

import math
import re

from .model import Rate

_DURATION = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


def _unit(word: str) -> float:
    base = word[:-1] if word.endswith("s") and word[:-1] in _UNITS else word
    if base not in _UNITS:
        raise ValueError(f"unit must be one of s, min, h, day; not {word!r}")
    return _UNITS[base]


def parse_duration(text: str) -> float:
    """`"30m"`, `"2h"`, `"45s"`, `"1day"` -> seconds; raises ValueError."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"a duration looks like 30m, 2h or 45s, not {text!r}")
    seconds = int(m.group(1)) * _unit(m.group(2))
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


MAX_TIMEOUT = 86400.0


def parse_timeout(value: float | str) -> float:
    """An ask's timeout: seconds (`60`, `"60"`) or a duration (`"30s"`, `"2m"`), in (0, 1 day]."""
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parse_duration(value)
            except ValueError:
                raise ValueError(
                    f"timeout must be seconds (60) or a duration (30s, 2m), not {value!r}"
                ) from None
    else:
        seconds = float(value)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError("timeout must be more than 0 and at most 1 day (86400 s)")
    return seconds


def parse_grant(text: str) -> float:
    """What an approval may grant: `"once"` -> 0, `"always"` -> inf, a duration -> seconds."""
    if text == "once":
        return 0.0
    if text == "always":
        return math.inf
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(
            f"grant must be once, always or a duration like 30m, not {text!r}"
        ) from None


def parse_rate(text: str) -> Rate:
    """`"10/min"`, `"5/30s"`, `"100/hour"` -> Rate; raises ValueError."""
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"rate must look like '10/min' or '5/30s', not {text!r}")
    count, mult = int(m.group(1)), m.group(2)
    per = _unit(m.group(3)) * (int(mult) if mult else 1)
    if count < 1 or per <= 0:
        raise ValueError("rate must allow at least one request per period")
    return Rate(count=count, per=per, text=text.strip())
