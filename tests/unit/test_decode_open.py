"""Decoding an open record: its narrow header reads what the full one does, and what an
absolute path means is kept per path, never what a relative one means (that depends on
the process's cwd or dirfd)."""

from __future__ import annotations

import ctypes

from supervisor.monitors import abi
from supervisor.monitors import events as ev
from supervisor.monitors.decode import Decode, WorkloadView
from supervisor.monitors.fsdecode import PATH_MEMO
from supervisor.monitors.lineage import AT_FDCWD

O_WRONLY, O_CREAT, O_TRUNC = 0o1, 0o100, 0o1000


def record(pid: int, path: bytes, flags: int, result: int = 3, dirfd: int = AT_FDCWD) -> bytes:
    r = abi.RawEvent()
    r.kind, r.pid, r.tid, r.uid, r.gid, r.workload = abi.Kind.OPEN, pid, pid, 1001, 1001, 1
    r.ts, r.result = 5_000_000_000, result
    r.num[0], r.num[1] = flags, dirfd
    r.comm = b"cc"
    r.path = path
    return ctypes.string_at(ctypes.addressof(r), abi.PATH_OFF + abi.PATHLEN)


def decoder() -> Decode:
    d = Decode("/home/", ("/home/", "/etc/shadow"))
    d.set_views({1: WorkloadView(name="w", home="/home/w", merged=None, upper=None)})
    for pid, cwd in ((100, "/home/w/a"), (200, "/home/w/b")):
        d.lineage.proc(pid, 1001, 0.0).cwd = cwd
    return d


def opened(d: Decode, raw: bytes) -> ev.Open:
    e = d.decode(raw)
    assert isinstance(e, ev.Open)
    return e


def test_the_open_header_reads_the_same_fields_as_the_full_header():
    raw = record(100, b"/tmp/x", O_WRONLY | O_CREAT, result=-13, dirfd=7)
    pid, uid, idx, ts, result, flags, dirfd, comm = abi.OPEN_HEADER.unpack_from(raw)
    h = abi.HEADER.unpack_from(raw)
    assert (pid, uid, idx, ts, result, flags, dirfd, comm) == (
        h[1], h[3], h[5], h[6], h[7], h[8], h[9], h[-1],
    )  # fmt: skip
    assert (pid, uid, idx, result, flags, dirfd) == (100, 1001, 1, -13, O_WRONLY | O_CREAT, 7)


def test_a_relative_path_means_each_processes_own_cwd_every_time():
    d = decoder()
    for _ in range(3):  # again and again: never answered from what another saw
        assert opened(d, record(100, b"x.o", O_WRONLY)).path == "/home/w/a/x.o"
        assert opened(d, record(200, b"x.o", O_WRONLY)).path == "/home/w/b/x.o"


def test_a_relative_path_follows_a_chdir_between_two_identical_opens():
    d = decoder()
    assert opened(d, record(100, b"x.o", O_WRONLY)).path == "/home/w/a/x.o"
    p = d.lineage.get(100)
    assert p is not None
    p.cwd = "/tmp"
    assert opened(d, record(100, b"x.o", O_WRONLY)).path == "/tmp/x.o"


def test_an_absolute_path_is_normalized_the_second_time_as_the_first():
    d = decoder()
    first = opened(d, record(100, b"/tmp/../etc/shadow", 0))
    again = opened(d, record(200, b"/tmp/../etc/shadow", 0))
    assert first.path == again.path == "/etc/shadow"  # a wanted read, both times


def test_an_absolute_read_outside_the_wanted_prefixes_is_no_event_the_second_time_either():
    d = decoder()
    assert d.decode(record(100, b"/usr/lib/libc.so.6", 0)) is None
    assert d.decode(record(200, b"/usr/lib/libc.so.6", 0)) is None


def test_another_homes_file_is_named_whoever_opens_it_and_however_often():
    d = decoder()
    d.set_views({
        1: WorkloadView(name="w", home="/home/w", merged=None, upper=None),
        2: WorkloadView(name="v", home="/home/v", merged=None, upper=None),
    })  # fmt: skip
    for _ in range(2):
        e = opened(d, record(100, b"/home/v/.ssh/id_rsa", 0))
        assert e.other_home == "v"
        own = opened(d, record(100, b"/home/w/.ssh/id_rsa", 0))
        assert own.other_home is None


def test_a_refused_open_carries_its_error_and_a_truncating_one_says_so():
    d = decoder()
    refused = opened(d, record(100, b"/etc/passwd", O_WRONLY, result=-13))
    assert (refused.result, refused.error) == (-13, "EACCES")
    trunc = opened(d, record(100, b"/home/w/.bash_history", O_WRONLY | O_TRUNC))
    assert trunc.truncate and trunc.create and trunc.error is None


def test_a_written_absolute_path_is_made_by_its_writer_each_time():
    d = decoder()
    opened(d, record(100, b"/tmp/payload", O_WRONLY | O_CREAT))
    opened(d, record(200, b"/tmp/payload", O_WRONLY | O_CREAT))
    maker = d.provenance.maker("/tmp/payload")
    assert maker is not None and maker.pid == 200


def test_the_table_of_absolute_paths_is_bounded():
    d = decoder()
    for i in range(PATH_MEMO + 10):
        d.decode(record(100, f"/usr/share/f{i}".encode(), 0))
    assert 0 < len(d._paths) <= PATH_MEMO
    # Still right after the table was emptied.
    assert opened(d, record(100, b"/tmp/../etc/shadow", 0)).path == "/etc/shadow"
