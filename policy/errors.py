"""The errors the policy package raises, always with a position."""

from __future__ import annotations

from collections.abc import Sequence


class PolicyError(Exception):
    """A policy that cannot be loaded: file, line, column and what is wrong."""

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.file = file
        self.line = line
        self.column = column
        self.message = message

    @property
    def where(self) -> str:
        """`file:line:column` of the problem."""
        return f"{self.file}:{self.line}:{self.column}"


class PolicyTestError(PolicyError):
    """The policy compiled but its own `[[test]]` tables fail: refused like a broken file."""

    def __init__(
        self, file: str, line: int, column: int, message: str, failures: Sequence[object]
    ) -> None:
        super().__init__(file, line, column, message)
        self.failures = list(failures)
