"""Validators shared by executor params. Each returns the normalised value or raises ValueError.

They run inside msgspec `__post_init__`, so a ValueError here becomes a ValidationError
naming the field, which the daemon turns into `invalid_params`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


def field_check(name: str, check: Callable[[], T]) -> T:
    """Run a validator, prefixing its error with the field name (msgspec cannot tell)."""
    try:
        return check()
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def has_control(text: str) -> bool:
    """True when text holds C0/C1 control characters or DEL."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def normalise_host(host: str) -> str:
    """Lower-case, IDNA-encode and check a DNS host name (no IP literal here)."""
    host = host.rstrip(".") if host.endswith(".") and not host.endswith("..") else host
    if not host:
        raise ValueError("host name is empty")
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ValueError(f"host name is not valid IDNA: {exc}") from None
    if len(ascii_host) > 253:
        raise ValueError("host name is longer than 253 characters")
    labels = ascii_host.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise ValueError(f"host name label {label!r} is not a valid DNS label")
    if labels[-1].isdigit():
        raise ValueError("host name's last label is numeric (an IP address written oddly?)")
    return ascii_host


def normalise_web_url(url: str, *, max_bytes: int = 2048) -> str:
    """Check an http(s) URL and return it with an IDNA, lower-case host.

    Refused: other schemes, credentials, control characters, whitespace, backslashes,
    non-ASCII outside the host, a missing host, a bad port, over `max_bytes` bytes.
    """
    if len(url.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ValueError(f"URL is longer than {max_bytes} bytes")
    if _CONTROL.search(url):
        raise ValueError("URL contains whitespace, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("URL scheme must be http or https")
    netloc = parts.netloc
    if not netloc:
        raise ValueError("URL has no host")
    if "@" in netloc:
        raise ValueError("URL must not carry credentials (user@host)")
    hostname = parts.hostname
    if not hostname:
        raise ValueError("URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("URL port is not a number in 0-65535") from None
    if hostname.startswith("[") or ":" in hostname:
        try:
            host = f"[{ipaddress.IPv6Address(hostname.strip('[]')).compressed}]"
        except ValueError:
            raise ValueError("URL host is not a valid IPv6 literal") from None
    else:
        try:
            host = str(ipaddress.IPv4Address(hostname))
        except ValueError:
            host = normalise_host(hostname)
    rest = parts.path + parts.query + parts.fragment
    if not rest.isascii():
        raise ValueError("URL path, query and fragment must be ASCII (percent-encode them)")
    new_netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((scheme, new_netloc, parts.path, parts.query, parts.fragment))
