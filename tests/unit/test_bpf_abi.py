"""The BPF interface is declared once (supervisor/monitors/abi.py) and rendered into C."""

from __future__ import annotations

import ctypes

import pytest

from supervisor.monitors import abi


def test_the_rendered_struct_has_every_field_of_the_ctypes_layout_in_order():
    c = abi.prelude()
    body = c[c.index("struct event {") : c.index("};")]
    names = [line.split()[1].split("[")[0].rstrip(";") for line in body.splitlines()[1:]]
    assert names == [name for name, _ in abi.RawEvent._fields_]


def test_the_header_format_ends_where_the_path_begins():
    assert abi.HEADER.size == abi.RawEvent.path.offset
    assert ctypes.sizeof(abi.RawEvent) == abi.DATA_OFF + abi.DATALEN


def test_every_kind_is_a_c_macro():
    c = abi.prelude()
    for kind in abi.Kind:
        assert f"#define K_{kind.name} {kind.value}\n" in c


def test_a_syscall_without_its_tracepoint_is_dispatched_through_raw_syscalls_only():
    glue = abi.glue({"init_module"})
    raw = glue[glue.index("RAW_TRACEPOINT_PROBE(sys_enter)") :]
    assert "nr == __NR_init_module" in raw and "enter_init_module" in raw
    main = glue[glue.index("int on_enter") : glue.index("RAW_TRACEPOINT_PROBE(sys_enter)")]
    assert "enter_init_module" not in main and "case __NR_openat:" in main


def test_the_programs_on_every_syscall_are_compiled_in_only_where_wanted():
    # raw_syscalls fire for every syscall of the box: sys_enter for syscalls without a
    # tracepoint of their own or to tell 32-bit syscalls; sys_exit for the former only.
    glue = abi.glue(set())
    enter = glue.index("RAW_TRACEPOINT_PROBE(sys_enter)")
    assert "#if defined(RAW_WANTED) || defined(COMPAT_WATCH)" in glue[:enter]
    exit_ = glue.index("RAW_TRACEPOINT_PROBE(sys_exit)")
    assert glue[:exit_].rstrip().endswith("#ifdef RAW_WANTED")


def test_the_running_kernels_btf_gives_every_offset_the_cwd_walk_reads():
    from supervisor.monitors import btf

    offs = btf.offsets()
    assert set(offs) == {f"OFF_{s.upper()}_{m.upper()}" for s, ms in btf.WANTED.items() for m in ms}
    # Layouts every kernel since the walk's structs took their shape agrees on.
    assert offs["OFF_PATH_MNT"] == 0 and offs["OFF_PATH_DENTRY"] == 8
    assert offs["OFF_QSTR_NAME"] == 8
    assert offs["OFF_FS_STRUCT_PWD"] == offs["OFF_FS_STRUCT_ROOT"] + 16


def test_a_file_that_is_not_btf_is_refused(tmp_path):
    from supervisor.monitors import btf

    bad = tmp_path / "vmlinux"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(btf.BtfError):
        btf.offsets(bad)
