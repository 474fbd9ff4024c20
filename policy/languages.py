"""Every value a param can take, and every constraint, as a regular language.

`policy diff` and `policy check` reason about strings through these trees; the glob and
prefix readers for URLs build theirs here too, so matching and reasoning share them.

A value universe is what the daemon's decoder can hand the policy (a normalised URL,
host or relative path), described a little wider than the decoder is where exactness
would cost much (label lengths, say): a proof that no value exists is never wrong, and a
witness is checked against the decoder before it is shown.
"""

from __future__ import annotations

import contextlib
import re

from .catalog import ParamType
from .hosts import WEB_SCHEMES, normalise_domain
from .patterns.charset import ANY, CharSet
from .patterns.glob import parse_glob
from .patterns.regex import parse_regex
from .patterns.syntax import Chars, Node, Repeat, alt, literal, seq, star

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
# The last label of a DNS name is not all digits (that would be an IP address written oddly).
_LAST = r"(?:[a-z](?:[a-z0-9-]*[a-z0-9])?|[0-9][a-z0-9-]*[a-z](?:[a-z0-9-]*[a-z0-9])?)"
HOST_RE = rf"(?:{_LABEL}\.)*{_LAST}"
_IPV4 = r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}"
_PORT = r"(?::(?:0|[1-9][0-9]{0,4}))?"
# Path, query and fragment: printable ASCII without backslash, after '/', '?' or '#'.
_REST = r"(?:[/?#][!-\[\]-~]*)?"
URL_RE = rf"https?://(?:{HOST_RE}|{_IPV4}|\[[0-9a-f:.]+\]){_PORT}{_REST}"
_PART = r"[^/\x00-\x1f\x7f-\x9f]+"
HOST = parse_regex(HOST_RE)
URL = parse_regex(URL_RE)
# A relative path whose parts are neither empty, '.' nor '..', without control characters.
PATH = seq(
    parse_regex(rf"{_PART}(?:/{_PART})*"),
)
_NOT_DOTS = parse_regex(r"(?:[^/]*/)*\.\.?(?:/.*)?")  # some part is '.' or '..'
HOST_CHARS = CharSet.of([(ord("a"), ord("z")), (ord("0"), ord("9"))]).union(CharSet.chars(".-"))
_WHOLE = re.compile(r"^\^\(\?:(.*)\)\$\(\?!\\n\)$", re.S)


def universe(t: ParamType) -> tuple[list[Node], list[Node]]:
    """The strings a str param (or each element of a list) can be: in all of the first
    languages and none of the second."""
    inside: list[Node] = []
    outside: list[Node] = []
    if t.format == "url":
        inside.append(URL)
    elif t.format == "host":
        inside.append(HOST)
    elif t.format == "path":
        inside.append(PATH)
        outside.append(_NOT_DOTS)
    else:
        inside.append(star(Chars(ANY)))
    if t.min_length:
        inside.append(seq(Repeat(Chars(ANY), t.min_length, None)))
    if t.pattern is not None:
        m = _WHOLE.match(t.pattern)
        # A pattern outside the subset leaves the universe wider than the decoder's:
        # still never wrong about what cannot exist.
        with contextlib.suppress(ValueError):
            inside.append(parse_regex(m.group(1) if m else t.pattern))
    return inside, outside


def domain_language(exact: frozenset[str], suffixes: tuple[str, ...], t: ParamType) -> Node:
    """The values whose host is one of `exact` or ends in one of `suffixes` (`.a.org`)."""
    hosts = alt(
        *(literal(e) for e in sorted(exact)),
        *(seq(Repeat(Chars(HOST_CHARS), 1, None), literal(s)) for s in suffixes),
    )
    if t.format == "url":
        return seq(
            parse_regex("https?://"),
            hosts,
            parse_regex(_PORT),
            alt(seq(), seq(Chars(CharSet.chars("/?#")), star(Chars(ANY)))),
        )
    return hosts


def under_language(bases: tuple[str, ...]) -> Node:
    """The strings `Under` accepts: after dropping empty and '.' parts, a base or below it;
    no '..' part and no NUL anywhere."""
    good = r"(?:[^/\x00.][^/\x00]*|\.|\.[^/\x00.][^/\x00]*|\.\.[^/\x00]+)"  # not '', '..'
    tail = rf"(?:/(?:{good})?)*"
    options = []
    for base in bases:
        parts = [re.escape(p) for p in base.split("/") if p]
        if base.startswith("/"):
            if not parts:
                options.append(rf"/(?:{good})?{tail}")
                continue
            lead = r"/(?:\.?/)*"
        else:
            if base == ".":
                options.append(rf"{good}{tail}")
                continue
            lead = r"(?:\.(?:/\.?)*/)?"
        options.append(lead + r"(?:/\.?)*/".join(parts) + tail)
    return parse_regex("|".join(f"(?:{o})" for o in options))


class PatternError(ValueError):
    """A glob or prefix on a URL param that could reach past the host it names."""


_URL_PARTS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)$", re.S)


def _url_host(scheme: str, authority: str, what: str) -> tuple[str, Node]:
    """The lower-cased `scheme://host[:port]` text and the tree for the host part."""
    if scheme.lower() not in WEB_SCHEMES:
        raise PatternError(f"a {what} on a URL starts with http:// or https://, not {scheme}://")
    host, colon, port = authority.partition(":")
    if colon and not (port.isdigit() and int(port) <= 65535):
        raise PatternError(f"a {what} on a URL takes a port written as digits, not {port!r}")
    wildcard = host.startswith("*.")
    name = normalise_domain(host[2:] if wildcard else host)
    if name is None or (what != "glob" and wildcard) or "*" in host[2 if wildcard else 0 :]:
        rule = "a name, or '*.' and a name" if what == "glob" else "a name"
        raise PatternError(
            f"the host in a URL {what} follows the domain rules ({rule}), so the pattern "
            f"cannot reach past it: {host!r} is not one"
        )
    prefix = f"{scheme.lower()}://"
    suffix = f":{port}" if colon else ""
    if wildcard:
        node = seq(Repeat(Chars(HOST_CHARS), 1, None), literal("." + name))
    else:
        node = literal(name)
    text = prefix + ("*." if wildcard else "") + name + suffix
    return text, seq(literal(prefix), node, literal(suffix))


def url_glob(pattern: str) -> Node:
    """A glob on a URL, matched per part: `http(s)://`, the host by the domain rules (a name,
    or `*.name` for its subdomains), a literal port, then a glob over path, query and
    fragment. `https://*.a.org/*` never matches `https://evil.com/.a.org/x`."""
    m = _URL_PARTS.match(pattern)
    if m is None:
        raise PatternError(
            "a glob on a URL names its scheme and host, like https://*.example.org/*"
        )
    _, host = _url_host(m.group(1), m.group(2), "glob")
    return seq(host, parse_glob(m.group(3)))


def url_prefix(prefix: str) -> str:
    """A prefix on a URL, checked to end past the host (lower-cased scheme and host)."""
    m = _URL_PARTS.match(prefix)
    if m is None or not m.group(3):
        raise PatternError(
            "a prefix on a URL must go past the host, to the '/' after it "
            "(https://docs.example.org/), or the host could go on "
            "(https://docs.example.org.evil.net/); use domain for hosts"
        )
    text, _ = _url_host(m.group(1), m.group(2), "prefix")
    return text + m.group(3)
