"""Split a byte stream into lines, refusing any line longer than the cap before buffering it.

Linear in the bytes received: each byte is scanned for a newline once, whatever the
write sizes (a 60 KB line sent 8 bytes at a time costs 60 KB of scanning, not 450 MB of
re-concatenation). A line that breaks the cap ends the stream, but the complete lines
before it in the same read are still handed out, so they can be answered first.
"""

from __future__ import annotations


class FrameTooLong(Exception):
    """A line exceeded the cap; the stream cannot be trusted to resynchronise."""


class LineFramer:
    """Accumulates bytes and yields complete lines (without the newline), skipping blank ones."""

    __slots__ = ("_buf", "broken", "max_line")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        #: Set once a line broke the cap: every later byte is refused.
        self.broken: FrameTooLong | None = None

    @property
    def partial(self) -> int:
        """Bytes of an incomplete line held now."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add data; return the complete lines it finished. Raises FrameTooLong."""
        lines, error = self.feed_until_broken(data)
        if error is not None:
            raise error
        return lines

    def feed_until_broken(self, data: bytes) -> tuple[list[bytes], FrameTooLong | None]:
        """Add data; the complete lines before any over-long one, and the error if one was."""
        if self.broken is not None:
            return [], self.broken
        cap = self.max_line
        buf = self._buf
        lines: list[bytes] = []
        start = 0
        nl = data.find(b"\n")
        while nl != -1:
            if buf:
                if len(buf) + nl - start > cap:
                    return lines, self._break()
                buf += data[start:nl]
                line = bytes(buf)
                buf.clear()
            else:
                if nl - start > cap:
                    return lines, self._break()
                line = data[start:nl]
            if line and not line.isspace():
                lines.append(line)
            start = nl + 1
            nl = data.find(b"\n", start)
        if len(buf) + len(data) - start > cap:
            return lines, self._break()
        buf += data[start:]
        return lines, None

    def _break(self) -> FrameTooLong:
        self._buf = bytearray()
        self.broken = FrameTooLong(f"line longer than {self.max_line} bytes")
        return self.broken
