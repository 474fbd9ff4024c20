"""One-time login links, sessions and CSRF tokens (no password, no login form).

A link's token is random (32 bytes); only its SHA-256 is kept, as a file in the
console's links directory (mode 0700, the operator's), so `clawvisor approver web
--link` can mint one for a console already running. A token is good once, for
LINK_TTL seconds; using it deletes it. A session is a second random token, set as an
HttpOnly, SameSite=Strict cookie; each has its own CSRF token, which every request that
changes anything must carry in a header.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

LINK_TTL = 600.0
SESSION_TTL = 12 * 3600.0
COOKIE = "cv_session"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mint_link(links: Path) -> str:
    """A new one-time token, recorded (by its hash) in `links`."""
    links.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(links, 0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(links / _digest(token), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    return token


def use_link(links: Path, token: str, now: float | None = None) -> bool:
    """Whether `token` is a valid, unused, unexpired link; it is used up either way."""
    if not token or len(token) > 100:
        return False
    path = links / _digest(token)
    try:
        made = path.stat().st_mtime
        path.unlink()  # one use: a second request with it finds nothing
    except (FileNotFoundError, ValueError, OSError):
        return False
    return (time.time() if now is None else now) - made <= LINK_TTL


@dataclass
class Session:
    """A logged-in browser."""

    user: str
    csrf: str
    created: float = field(default_factory=time.time)


class Sessions:
    """The sessions of this console process (in memory: a restart logs everyone out)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}

    def open(self, user: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(user=user, csrf=secrets.token_urlsafe(32))
        self._by_id[_digest(sid)] = session
        return sid, session

    def get(self, sid: str | None, now: float | None = None) -> Session | None:
        if not sid or len(sid) > 100:
            return None
        key = _digest(sid)
        session = self._by_id.get(key)
        if session is None:
            return None
        if (time.time() if now is None else now) - session.created > SESSION_TTL:
            del self._by_id[key]
            return None
        return session

    def close(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(_digest(sid), None)


def csrf_ok(session: Session, given: str | None) -> bool:
    """Constant-time comparison of the request's CSRF token with the session's."""
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())
