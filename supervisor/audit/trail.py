"""The audit trail: every decision, result and refusal, to journald or, failing that, a file.

Records go to journald with SYSLOG_IDENTIFIER=clawvisor, a fixed MESSAGE_ID per kind
(catalogued in units/clawvisor.catalog), PRIORITY and CLAWVISOR_* fields. When journald
does not take a record, it goes to a JSONL file in the log directory and a warning says
so; when neither can take it, `AuditUnavailable` is raised and the caller must not act.

A record that does not lead to an action (a refusal, or a read-only intent the operator
chose to serve while the trail is down) may instead be deferred: it waits, in order, in
a bounded backlog that is written first as soon as either sink takes records again. So
a full disk delays records instead of losing them; only an overflowing backlog loses
any, and then the count of lost records is itself written, at CRIT, when the trail is back.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import msgspec

from .chain import Head, load_head, new_head, recover, save_head
from .journal import JournalSender, JournalUnavailable
from .record import (
    CRIT,
    MESSAGE_IDS,
    WARNING,
    AuditRecord,
    record_bytes,
    seal,
)

#: Records journald took that are written to the fallback too when journald goes away.
RECENT = 256


class AuditUnavailable(Exception):
    """Neither journald nor the fallback file took the record."""


class FallbackRecord(msgspec.Struct, kw_only=True):
    """A record as the JSONL fallback stores it: the record plus its MESSAGE_ID."""

    message_id: str
    record: AuditRecord


def bounded_json(value: object, cap: int) -> str:
    """JSON of `value`, cut to `cap` bytes with a marker when longer."""
    data = msgspec.json.encode(value)
    if len(data) <= cap:
        return data.decode("utf-8")
    return data[: cap - 16].decode("utf-8", "ignore") + "...(truncated)"


class Auditor:
    """Writes records in order, numbering them; journald first, the JSONL file second."""

    def __init__(
        self,
        log_dir: Path,
        *,
        fallback_name: str = "audit.jsonl",
        sender: JournalSender | None = None,
        warn: TextIO = sys.stderr,
        head_path: Path | None = None,
        backlog_cap: int = 10_000,
    ) -> None:
        self.log_dir = log_dir
        self.fallback_path = log_dir / fallback_name
        self._sender = sender if sender is not None else JournalSender()
        self._warn = warn
        self._fd: int | None = None
        self._journal_ok = True
        self._head_path = head_path
        saved = load_head(head_path) if head_path is not None else None
        head = new_head() if saved is None else recover(saved, self.fallback_path)
        self.chain = head.chain
        #: This run's segment of the chain (its first record links to where the last
        #: run stood as far as anything on disk tells: the saved head or the sinks).
        self.segment = secrets.token_hex(4)
        self._seq, self._hash = head.seq, head.hash
        self._saved_seq = -1
        self.save_head()
        self._encoder = msgspec.json.Encoder()
        self._encoded: dict[Any, bytes] = {}
        self.written_journal = 0
        self.written_fallback = 0
        self._fallback_mark = 0
        self._backlog: deque[AuditRecord] = deque()
        # The last records journald accepted: a journald killed with records still in its
        # socket queue loses them, so on the switch to the fallback they are written there
        # too (identical copies: the chain check counts them once).
        self._recent: deque[AuditRecord] = deque(maxlen=RECENT)
        #: Called with each record once written (the live monitor's viewers); never raises.
        self.taps: list[Callable[[AuditRecord], None]] = []
        self.backlog_cap = backlog_cap
        #: Deferred records dropped because the backlog was full (reported when back).
        self.lost = 0
        self._loss_said = False

    @property
    def journal_ok(self) -> bool:
        """False while records are going to the fallback file."""
        return self._journal_ok

    @property
    def backlog(self) -> int:
        """Deferred records still waiting for a sink."""
        return len(self._backlog)

    def license(self, rec: AuditRecord) -> None:
        """Write a record that lets something run: written now, or AuditUnavailable is
        raised and the caller must not act."""
        self.write(rec)

    def note(self, rec: AuditRecord) -> bool:
        """Write a record that licenses nothing: now, or held in the bounded backlog until
        a sink takes records again. False when even the backlog was full: the loss is
        counted and reported at CRIT once the trail is back, never silent."""
        try:
            self.write(rec, defer=True)
        except AuditUnavailable as exc:
            if not self._loss_said:
                self._loss_said = True
                self._say(f"AUDIT RECORDS LOST (counted, reported when the trail is back): {exc}")
            return False
        return True

    def write(self, rec: AuditRecord, *, defer: bool = False) -> None:
        """The mechanism under `license` (defer=False) and `note` (defer=True): record
        `rec` durably or raise AuditUnavailable. Never drops it silently.

        With `defer`, a record no sink takes waits in the backlog instead (raising only
        when the backlog is full).
        """
        if rec.ts is None:
            rec.ts = time.time()
        try:
            if self._backlog or self.lost:
                self.flush()
            self._write_now(rec)
            self._tap(rec)
        except AuditUnavailable:
            if not defer:
                raise
            if len(self._backlog) >= self.backlog_cap:
                self.lost += 1
                raise
            if not self._backlog:
                self._say(f"audit trail unavailable; holding records (at most {self.backlog_cap})")
            self._backlog.append(rec)

    def _tap(self, rec: AuditRecord) -> None:
        for tap in self.taps:
            try:
                tap(rec)
            except Exception as exc:  # a viewer's failure must never touch the trail
                print(f"clawvisor: audit tap failed: {exc!r}", file=sys.stderr)

    def flush(self) -> None:
        """Write the deferred records, oldest first; AuditUnavailable if a sink still fails."""
        while self._backlog:
            self._write_now(self._backlog[0])
            self._backlog.popleft()
        if self.lost:
            lost, self.lost = self.lost, 0
            try:
                self._write_now(
                    AuditRecord(
                        kind="audit",
                        priority=CRIT,
                        message=f"{lost} audit records were lost: the trail was unavailable "
                        f"and more than {self.backlog_cap} records waited",
                        ts=time.time(),
                    )
                )
            except AuditUnavailable:
                self.lost += lost
                raise
            self._say(f"{lost} deferred audit records were lost (backlog full)")
            self._loss_said = False

    def _write_now(self, rec: AuditRecord) -> None:
        rec.chain, rec.segment = self.chain, self.segment
        rec.seq, rec.prev = self._seq + 1, self._hash
        rec.hash, payload = seal(record_bytes(rec, self._encoded))
        try:
            self._sender.send(payload)
        except JournalUnavailable as exc:
            if self._journal_ok:
                self._journal_ok = False
                self._fallback_mark = self.written_fallback
                self._say(
                    f"journald unreachable ({exc.strerror}); audit records go to "
                    f"{self.fallback_path} until it is back"
                )
                while self._recent:
                    self._fallback(self._recent[0])
                    self._recent.popleft()
            self._fallback(rec)  # raises AuditUnavailable: the chain stays where it was
            self._seq, self._hash = rec.seq, rec.hash
            self.written_fallback += 1
            return
        self._seq, self._hash = rec.seq, rec.hash
        self.written_journal += 1
        self._recent.append(rec)
        if not self._journal_ok:
            self._journal_ok = True
            self._say("journald reachable again; audit records go to journald")
            if self.written_fallback > self._fallback_mark:  # else they waited in memory
                self._write_now(
                    AuditRecord(
                        kind="audit",
                        priority=WARNING,
                        message="audit records between journald outages are in "
                        f"{self.fallback_path}",
                        ts=time.time(),
                    )
                )

    def _fallback(self, rec: AuditRecord) -> None:
        line = (
            self._encoder.encode(FallbackRecord(message_id=MESSAGE_IDS[rec.kind], record=rec))
            + b"\n"
        )
        try:
            if self._fd is None:
                self.log_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
                self._fd = os.open(
                    self.fallback_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
            end = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(f"short write ({written} of {len(line)} bytes)")
            except OSError:
                # A full disk may take half a line: cut it off, or every later line
                # would be glued to the fragment and unreadable.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, end)
                raise
        except OSError as exc:
            raise AuditUnavailable(
                f"journald and {self.fallback_path} both failed: {exc}"
            ) from None

    def _say(self, text: str) -> None:
        print(f"clawvisor: audit: {text}", file=self._warn, flush=True)

    def save_head(self) -> None:
        """Persist where the chain stands (when it moved since the last save)."""
        if self._head_path is None or self._saved_seq == self._seq:
            return
        try:
            save_head(
                self._head_path,
                Head(chain=self.chain, seq=self._seq, hash=self._hash, segment=self.segment),
            )
            self._saved_seq = self._seq
        except OSError as exc:
            self._say(f"cannot save the chain head to {self._head_path}: {exc}")

    def close(self) -> None:
        """Write what waits, save the chain head; close the fallback file and the socket."""
        try:
            self.flush()
        except AuditUnavailable:
            # The last place left: stderr (under systemd, journald's stream; else a terminal).
            for rec in self._backlog:
                self._say("unwritten record: " + self._encoder.encode(rec).decode())
            self._say(f"{len(self._backlog) + self.lost} audit records could not be written")
        self.save_head()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._sender.close()
