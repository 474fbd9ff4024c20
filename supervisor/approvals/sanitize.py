"""Make untrusted text safe to show a human, without hiding what it says.

Control characters (so also the ESC that starts an ANSI sequence), bidirectional
overrides and zero-width or other invisible format characters are replaced by a
visible `\\xXX` / `\\uXXXX` escape, so a prompt shows exactly what will run and nothing
can re-order, hide or colour it. Long values are cut with a marker; the full text stays
available (`clawvisor pending --show ID`).
"""

from __future__ import annotations

import unicodedata

#: Characters that change how surrounding text is displayed without being seen
#: (beyond the Unicode format category, which is escaped as a whole).
_INVISIBLE = frozenset("\u2028\u2029\u00ad\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control, bidi and invisible character replaced by its escape."""
    return "".join(
        _escape(ch) if ch in _INVISIBLE or unicodedata.category(ch) in _HIDDEN_CATEGORIES else ch
        for ch in text
    )


def shown(text: str, limit: int = 200) -> tuple[str, bool]:
    """The visible form of `text`, cut to `limit` characters; True when it was cut."""
    safe = visible(text)
    if len(safe) <= limit:
        return safe, False
    return safe[:limit] + f"... ({len(safe) - limit} more characters)", True
