"""Input refused before it became an intent: undecodable lines, broken frames, peers
that may not connect. Each is a `rejected` record (one that licenses nothing) and a
reply line saying why."""

from __future__ import annotations

from .audit import WARNING, Auditor, AuditRecord
from .identity import Peer
from .wire.common import ErrorCode, encode_reply, error_reply


class Rejections:
    """Audits and answers what the daemon refuses at its front door."""

    def __init__(self, trail: Auditor) -> None:
        self.trail = trail

    def rejected(
        self,
        peer: Peer,
        workload: str | None,
        request_id: str | None,
        code: ErrorCode,
        message: str,
    ) -> bytes:
        """Record one refused line; its reply."""
        self.trail.note(
            AuditRecord(
                kind="rejected",
                priority=WARNING,
                intent_id=request_id,
                workload=workload,
                uid=peer.uid,
                pid=peer.pid,
                outcome=code,
                message=f"rejected input from uid {peer.uid} ({workload or 'unknown'}): "
                f"{code}: {message}"[:1024],
            )
        )
        return encode_reply(error_reply(request_id, code, message))

    def connection(self, peer: Peer, code: ErrorCode, message: str) -> bytes:
        """Record and answer a connection refused before any request (unknown uid, caps)."""
        return self.rejected(peer, None, None, code, message)

    def frame(self, peer: Peer, workload: str | None, message: str) -> bytes:
        """Record and answer a line that breaks framing (too long, never completed)."""
        return self.rejected(peer, workload, None, "bad_frame", message)
