"""The ring buffer read straight from its mapping (supervisor/monitors/ring.py), against a
real BPF ring buffer: every committed record once, in order, whole across the wrap, the
discarded ones skipped, and the space given back to the kernel."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor.monitors import ring

pytestmark = pytest.mark.skipif(not ring.supported(), reason="the direct reader is x86-64's")

# One record per getppid() of the test process: a sequence number, then a size class
# chosen from it (12, 24 or 100 bytes: none a multiple of 8 but 24, so the padding is
# exercised); every seventh is reserved and then discarded.
PROGRAM = r"""
BPF_RINGBUF_OUTPUT(events, 1);
BPF_ARRAY(seq, u64, 1);
BPF_ARRAY(lost, u64, 1);
struct small { u64 n; u32 tag; } __attribute__((packed));
struct medium { u64 n; u64 tag; u64 pad; };
struct large { u64 n; u8 fill[92]; } __attribute__((packed));

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET)
        return 0;
    int zero = 0;
    u64 *s = seq.lookup(&zero);
    if (!s)
        return 0;
    u64 n = __sync_fetch_and_add(s, 1);
    long r = 0;
    if (n % 7 == 6) {
        struct small *d = events.ringbuf_reserve(sizeof(struct small));
        if (!d) {
            r = -1;
        } else {
            d->n = n;
            events.ringbuf_discard(d, 0);
        }
    } else if (n % 3 == 0) {
        struct small e = {.n = n, .tag = 0xabcd};
        r = events.ringbuf_output(&e, sizeof(e), 0);
    } else if (n % 3 == 1) {
        struct medium e = {.n = n, .tag = n * 3};
        r = events.ringbuf_output(&e, sizeof(e), 0);
    } else {
        struct large e = {.n = n};
        for (int i = 0; i < 92; i++)
            e.fill[i] = (u8)(n + i);
        r = events.ringbuf_output(&e, sizeof(e), 0);
    }
    if (r < 0) {
        u64 *l = lost.lookup(&zero);
        if (l)
            __sync_fetch_and_add(l, 1);
    }
    return 0;
}
"""


@pytest.fixture
def program() -> Iterator[Any]:
    from bcc import BPF

    bpf = BPF(text=PROGRAM.encode(), cflags=[f"-DTARGET={os.getpid()}"])
    try:
        yield bpf
    finally:
        bpf.cleanup()


def reader(bpf: Any) -> ring.RingReader:
    events = bpf[b"events"]
    return ring.RingReader(events.map_fd, events.max_entries)


def check(record: bytes) -> int:
    """The record's sequence number, after checking its body is the one its class has."""
    n = struct.unpack_from("<Q", record)[0]
    if n % 3 == 0:
        assert len(record) == 12 and struct.unpack_from("<I", record, 8)[0] == 0xABCD
    elif n % 3 == 1:
        assert len(record) == 24 and struct.unpack_from("<Q", record, 8)[0] == n * 3
    else:
        assert len(record) == 100 and record[8:] == bytes((n + i) & 0xFF for i in range(92))
    return n


def lost(bpf: Any) -> int:
    import ctypes

    return int(bpf[b"lost"][ctypes.c_int(0)].value)


def test_every_record_is_read_once_in_order_across_many_wraps(program) -> None:
    r = reader(program)
    seen: list[int] = []
    for _ in range(400):  # a 4 KiB ring: ~30 records each round, ~100 times around
        for _ in range(25):
            os.getppid()
        seen += [check(rec) for rec in r.read()]
    r.close()
    assert lost(program) == 0
    expected = [n for n in range(400 * 25) if n % 7 != 6]
    assert seen == expected


def test_a_read_of_an_empty_ring_returns_nothing_and_frees_nothing_twice(program) -> None:
    r = reader(program)
    assert r.read() == []
    os.getppid()
    assert [check(rec) for rec in r.read()] == [0]
    assert r.read() == []
    r.close()


def test_a_full_ring_refuses_records_until_read_then_takes_them_again(program) -> None:
    r = reader(program)
    for _ in range(200):  # far more than 4 KiB holds
        os.getppid()
    first = [check(rec) for rec in r.read()]
    refused = lost(program)
    assert refused > 0 and first == sorted(first) and first[0] == 0
    for _ in range(10):
        os.getppid()
    after = [check(rec) for rec in r.read()]
    assert lost(program) == refused  # the space read was given back
    assert after == [n for n in range(200, 210) if n % 7 != 6]
    r.close()


def test_a_size_that_is_not_a_ring_buffer_is_refused() -> None:
    with pytest.raises(ValueError):
        ring.RingReader(-1, 3 * 4096)
