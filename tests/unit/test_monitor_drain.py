"""The syscall monitor's drain: one record a decoder fails on is counted and reported as
lost (`undecodable`, naming its workload), and costs no other record of its batch."""

from __future__ import annotations

from typing import Any

from supervisor.monitors import events as ev
from supervisor.monitors.decode import WorkloadView
from supervisor.monitors.syscalls import SyscallMonitor


class Ring:
    def __init__(self, records: list[bytes]) -> None:
        self.records = records

    def read(self) -> list[bytes]:
        out, self.records = self.records, []
        return out


def monitor(records: list[bytes]) -> tuple[SyscallMonitor, list[ev.Event]]:
    out: list[ev.Event] = []
    mon = SyscallMonitor(out.append)
    mon._bpf = object()  # as if loaded: the drain reads the ring below
    mon._ring = Ring(records)  # type: ignore[assignment]
    view = WorkloadView(name="w", home="/home/w", merged=None, upper=None)

    def decode(raw: bytes) -> Any:
        mon.decoder.current = view
        if raw == b"bad":
            raise ValueError("a crafted record")
        return ev.Open(ts=0.0, workload="w", result=3, path=raw.decode(), flags=1,
                       write=True, create=False)  # fmt: skip

    mon.decoder.decode = decode  # type: ignore[method-assign]
    return mon, out


def test_a_record_that_fails_to_decode_costs_none_of_the_others():
    mon, out = monitor([b"/a", b"bad", b"/b", b"bad", b"/c"])
    assert mon._drain() == 5
    assert [e.path for e in out if isinstance(e, ev.Open)] == ["/a", "/b", "/c"]
    [lost] = [e for e in out if isinstance(e, ev.Lost)]
    assert (lost.count, lost.reason, lost.workload) == (2, "undecodable", "w")
    assert mon.status.undecoded == 2 and mon.status.events == 5
