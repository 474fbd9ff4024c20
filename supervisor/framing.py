"""Split a byte stream into lines, refusing any line longer than the cap before buffering it."""

from __future__ import annotations


class FrameTooLong(Exception):
    """A line exceeded the cap; the stream cannot be trusted to resynchronise."""


class LineFramer:
    """Accumulates bytes and yields complete lines (without the newline), skipping blank ones."""

    __slots__ = ("_buf", "max_line")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = b""

    @property
    def partial(self) -> int:
        """Bytes of an incomplete line held now."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add data; return the complete lines it finished. Raises FrameTooLong."""
        if self._buf:
            data = self._buf + data
        parts = data.split(b"\n")
        rest = parts.pop()
        if len(rest) > self.max_line:
            self._buf = b""
            raise FrameTooLong(f"line longer than {self.max_line} bytes")
        self._buf = rest
        for part in parts:
            if len(part) > self.max_line:
                self._buf = b""
                raise FrameTooLong(f"line longer than {self.max_line} bytes")
        return [p for p in parts if p.strip()]
