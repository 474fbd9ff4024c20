"""Split a byte stream into lines, refusing any line longer than the cap.

Linear in the bytes received: each byte is scanned for a newline once, whatever the
write sizes (a 60 KB line sent 8 bytes at a time costs 60 KB of scanning, not 450 MB of
re-concatenation). Lines are taken one at a time (`next_line`), so what a connection
costs the event loop per turn is bounded by the lines it is given, not by the size of
the read that brought them (256 KiB of 2-byte lines is 128k lines). A line that breaks
the cap ends the stream, but the complete lines before it are still handed out first.
"""

from __future__ import annotations

#: Consumed bytes kept before the buffer is compacted (compaction copies what is left).
_COMPACT = 64 * 1024


class FrameTooLong(Exception):
    """A line exceeded the cap; the stream cannot be trusted to resynchronise."""


class LineFramer:
    """Buffers bytes and yields complete lines (without the newline), skipping blank ones."""

    __slots__ = ("_buf", "_pos", "_scanned", "broken", "max_line")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        #: Start of the first line not yet handed out.
        self._pos = 0
        #: Bytes from `_pos` up to here hold no newline (never scanned twice).
        self._scanned = 0
        #: Set once a line broke the cap: no line after it is handed out.
        self.broken: FrameTooLong | None = None

    @property
    def partial(self) -> int:
        """Bytes of an incomplete line held now (0 while a complete line waits)."""
        return 0 if self.has_line() else len(self._buf) - self._pos

    def push(self, data: bytes) -> None:
        """Add received bytes (cheap: the newline search happens as lines are taken)."""
        if self.broken is not None:
            return
        if self._pos >= _COMPACT and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._scanned -= self._pos
            self._pos = 0
        self._buf += data
        if not self.has_line() and len(self._buf) - self._pos > self.max_line:
            self._break()

    def has_line(self) -> bool:
        """True when a complete line (or the end of one over the cap) is buffered."""
        nl = self._buf.find(b"\n", max(self._pos, self._scanned))
        if nl == -1:
            self._scanned = len(self._buf)
            return False
        self._scanned = nl
        return True

    def next_line(self) -> bytes | None:
        """The next complete, non-blank line, or None (none yet, or the stream broke)."""
        while self.broken is None and self.has_line():
            nl = self._scanned
            if nl - self._pos > self.max_line:
                self._break()
                return None
            line = bytes(self._buf[self._pos : nl])
            self._pos = self._scanned = nl + 1
            if line and not line.isspace():
                return line
        if self.broken is None and len(self._buf) - self._pos > self.max_line:
            self._break()
        return None

    def clear(self) -> None:
        """Drop everything buffered (the connection is going away)."""
        self._buf = bytearray()
        self._pos = self._scanned = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add data; return the complete lines it finished. Raises FrameTooLong."""
        lines, error = self.feed_until_broken(data)
        if error is not None:
            raise error
        return lines

    def feed_until_broken(self, data: bytes) -> tuple[list[bytes], FrameTooLong | None]:
        """Add data; the complete lines before any over-long one, and the error if one was."""
        self.push(data)
        lines = []
        while (line := self.next_line()) is not None:
            lines.append(line)
        return lines, self.broken

    def _break(self) -> None:
        self.clear()
        self.broken = FrameTooLong(f"line longer than {self.max_line} bytes")
