"""A plan: the changes provisioning would make, shown grouped by kind, then applied in order."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TextIO

Kind = Literal["users", "dirs", "overlay", "proxy", "firewall", "sysctl", "units", "fleet"]
KINDS: tuple[Kind, ...] = (
    "users", "dirs", "overlay", "proxy", "firewall", "sysctl", "units", "fleet",
)  # fmt: skip


class ProvisionError(Exception):
    """A change could not be made (the message says which and why)."""


@dataclass(frozen=True)
class Change:
    """One change: what it is, and how to make it."""

    kind: Kind
    what: str
    apply: Callable[[], None]


@dataclass
class Plan:
    """Changes in the order they must be made, plus what was skipped and why."""

    changes: list[Change] = field(default_factory=list)
    skipped: list[tuple[Kind, str]] = field(default_factory=list)
    notes: list[tuple[Kind, str]] = field(default_factory=list)

    def add(self, kind: Kind, what: str, apply: Callable[[], None]) -> None:
        self.changes.append(Change(kind, what, apply))

    def skip(self, kind: Kind, why: str) -> None:
        self.skipped.append((kind, why))

    def note(self, kind: Kind, text: str) -> None:
        self.notes.append((kind, text))

    def show(self, out: TextIO, command: str = "provision") -> None:
        """Print the plan grouped by kind, headed by the command that made it."""
        n = len(self.changes)
        print(f"clawvisor {command}: {n} change{'s' if n != 1 else ''} planned", file=out)
        for kind in KINDS:
            items = [c.what for c in self.changes if c.kind == kind]
            skipped = [w for k, w in self.skipped if k == kind]
            notes = [w for k, w in self.notes if k == kind]
            if not (items or skipped or notes):
                continue
            print(f"  {kind}:", file=out)
            for what in items:
                print(f"    + {what}", file=out)
            for why in skipped:
                print(f"    - skipped: {why}", file=out)
            for text in notes:
                print(f"    ! {text}", file=out)
        out.flush()

    def apply(self, out: TextIO) -> int:
        """Make every change in order, showing progress; the number made."""
        total = len(self.changes)
        for i, change in enumerate(self.changes, 1):
            print(f"[{i}/{total}] {change.kind}: {change.what} ...", end=" ", file=out, flush=True)
            try:
                change.apply()
            except (OSError, ProvisionError, subprocess.CalledProcessError) as exc:
                print("FAILED", file=out, flush=True)
                detail = getattr(exc, "stderr", None) or ""
                raise ProvisionError(f"{change.what}: {exc} {detail}".strip()) from None
            print("ok", file=out, flush=True)
        return total


def run(argv: Sequence[str]) -> None:
    """Run a system tool (argv, never a shell); raise with its stderr if it fails."""
    subprocess.run(list(argv), check=True, capture_output=True, text=True)


def report(applied: int, out: TextIO = sys.stdout) -> None:
    """The closing line."""
    if applied == 0:
        print("nothing to change: the box already matches workloads.toml (0 changes)", file=out)
    else:
        print(f"{applied} change{'s' if applied != 1 else ''} applied", file=out)
