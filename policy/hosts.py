"""Hosts and paths as the policy compares them: normalised first, refused when ambiguous."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_HOST_CHARS = re.compile(r"^[a-z0-9.-]+$")
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
WEB_SCHEMES = ("http", "https")


def normalise_domain(host: str) -> str | None:
    """Lower-case, one trailing dot dropped, IDNA-encoded; None if not a plausible host."""
    if not host or len(host) > 253 or host.startswith(".") or ".." in host:
        return None
    if host.endswith("."):
        host = host[:-1]
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    if not ascii_host or not _HOST_CHARS.match(ascii_host):
        return None
    return ascii_host


def host_of(value: str) -> str | None:
    """The normalised host of a URL or a bare host name; None when it cannot be trusted."""
    if _BAD_URL_CHARS.search(value):
        return None
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme.lower() not in WEB_SCHEMES:
            return None  # javascript://host/... names a host but is not a request to it
        if "@" in parts.netloc:
            return None  # credentials would make the host ambiguous to a reader
        try:
            hostname = parts.hostname
        except ValueError:
            return None
        if hostname is None:
            return None
        return normalise_domain(hostname)
    if "/" in value or "@" in value or ":" in value:
        return None
    return normalise_domain(value)


def normalise_path(path: str) -> str | None:
    """`path` with repeated slashes and `.` removed; None if it has `..` or a NUL."""
    if not path or "\x00" in path:
        return None
    parts = path.split("/")
    if ".." in parts:
        return None
    absolute = path.startswith("/")
    kept = [p for p in parts if p not in ("", ".")]
    joined = "/".join(kept)
    return ("/" + joined) if absolute else (joined or ".")


def inside(path: str, base: str) -> bool:
    """True when the normalised `path` is the normalised `base` or below it."""
    if path.startswith("/") != base.startswith("/"):
        return False
    if base in (".", "/"):
        return True
    return path == base or path.startswith(base + "/")
