"""Make untrusted text safe to show a human, without hiding what it says.

Control characters (so also the ESC that starts an ANSI sequence), bidirectional
overrides and zero-width or other invisible format characters are replaced by a
visible `\\xXX` / `\\uXXXX` escape, so a prompt shows exactly what will run and nothing
can re-order, hide or colour it. A backslash is shown doubled, so the text `\\x1b` and
an escaped ESC never look alike; blank-looking characters other than the plain space
(no-break and wide spaces, the braille blank) and runs of more than three spaces are
escaped too, so padding cannot draw a fake line of the prompt. Long values are cut with
a marker; the full text stays available (`clawvisor pending --show ID`).
"""

from __future__ import annotations

import unicodedata

#: Characters that change how surrounding text is displayed without being seen
#: (beyond the Unicode format category, which is escaped as a whole).
_INVISIBLE = frozenset("\u2028\u2029\u00ad\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})
#: Looks blank, but is a symbol (category So).
_BLANK_SYMBOLS = frozenset("\u2800")
#: More plain spaces in a row than this are escaped (all of the run).
_SPACE_RUN = 3


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _hidden(ch: str) -> bool:
    if ch == " ":
        return False
    return (
        ch in _INVISIBLE or ch in _BLANK_SYMBOLS or unicodedata.category(ch) in _HIDDEN_CATEGORIES
    )


def visible(text: str) -> str:
    """`text` with every control, bidi, invisible and blank-looking character replaced by
    its escape, and backslashes doubled."""
    out: list[str] = []
    run = 0
    for i, ch in enumerate(text):
        if ch == " ":
            run += 1
            long_run = run > _SPACE_RUN or (
                run == 1 and text[i : i + _SPACE_RUN + 1] == " " * (_SPACE_RUN + 1)
            )
            out.append("\\x20" if long_run or (run > 1 and out[-1] == "\\x20") else " ")
            continue
        run = 0
        if ch == "\\":
            out.append("\\\\")
        elif _hidden(ch):
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


def shown(text: str, limit: int = 200) -> tuple[str, bool]:
    """The visible form of `text`, cut to `limit` characters; True when it was cut."""
    safe = visible(text)
    if len(safe) <= limit:
        return safe, False
    return safe[:limit] + f"... ({len(safe) - limit} more characters)", True
