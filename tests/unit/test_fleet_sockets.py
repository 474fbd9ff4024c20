"""Which sockets an approval agent follows: `--socket [NAME=]PATH` and `--fleet FILE`, the
fleet file strict (unknown keys, bad names, a VM or a socket twice: refused, clearly)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.agents.fleet_sockets import MAX_VMS, FleetError, choose, load_fleet

DEFAULT = Path("/run/clawvisor/control.sock")


def fleet_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def test_a_fleet_file_names_each_vms_socket_in_its_order(tmp_path):
    path = fleet_file(
        tmp_path,
        '[vms.vm2]\nsocket = "/run/u/vm2.sock"\n[vms."vm1.lan"]\nsocket = "/run/u/vm1.sock"\n',
    )
    assert load_fleet(path) == {"vm2": Path("/run/u/vm2.sock"), "vm1.lan": Path("/run/u/vm1.sock")}


@pytest.mark.parametrize(
    "text",
    [
        '[vms.vm1]\nsocket = "/a.sock"\nport = 22\n',
        '[vms.vm1]\nsocket = "/a.sock"\n[other]\nx = 1\n',
    ],
)
def test_an_unknown_key_is_refused_naming_it(tmp_path, text):
    with pytest.raises(FleetError, match=r"unknown field `(port|other)`"):
        load_fleet(fleet_file(tmp_path, text))


@pytest.mark.parametrize("name", ["-vm", ".vm", "vm 1", "vm/1", "v" * 64, '""', "vm|1"])
def test_a_vm_name_outside_the_pattern_is_refused(tmp_path, name):
    quoted = name if name == '""' else f'"{name}"'
    with pytest.raises(FleetError, match="is not a VM name"):
        load_fleet(fleet_file(tmp_path, f'[vms.{quoted}]\nsocket = "/a.sock"\n'))


def test_a_vm_named_twice_in_the_file_is_refused(tmp_path):
    text = '[vms.vm1]\nsocket = "/a.sock"\n[vms.vm1]\nsocket = "/b.sock"\n'
    with pytest.raises(FleetError, match="not valid TOML"):
        load_fleet(fleet_file(tmp_path, text))


def test_one_socket_for_two_vms_is_refused(tmp_path):
    text = '[vms.vm1]\nsocket = "/a.sock"\n[vms.vm2]\nsocket = "/a.sock"\n'
    with pytest.raises(FleetError, match="already the socket of VM 'vm1'"):
        load_fleet(fleet_file(tmp_path, text))


def test_a_relative_socket_is_refused(tmp_path):
    with pytest.raises(FleetError, match="absolute"):
        load_fleet(fleet_file(tmp_path, '[vms.vm1]\nsocket = "vm1.sock"\n'))


@pytest.mark.parametrize("text", ["", "[vms]\n", '[vms.vm1]\nsocket = ""\n', "[vms.vm1]\n"])
def test_a_fleet_with_no_vm_or_no_socket_is_refused(tmp_path, text):
    with pytest.raises(FleetError):
        load_fleet(fleet_file(tmp_path, text))


def test_too_many_vms_are_refused(tmp_path):
    text = "".join(f'[vms.vm{i}]\nsocket = "/s{i}.sock"\n' for i in range(MAX_VMS + 1))
    with pytest.raises(FleetError):
        load_fleet(fleet_file(tmp_path, text))


def test_a_missing_or_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(FleetError, match="No such file"):
        load_fleet(tmp_path / "nope.toml")


def test_no_socket_given_is_the_default():
    assert choose(None, None, DEFAULT) == DEFAULT


def test_one_unnamed_socket_is_that_socket():
    assert choose(["/x/control.sock"], None, DEFAULT) == Path("/x/control.sock")


def test_several_sockets_are_each_named():
    got = choose(["vm1=/a.sock", "vm2=/b.sock"], None, DEFAULT)
    assert got == {"vm1": Path("/a.sock"), "vm2": Path("/b.sock")}


def test_one_named_socket_is_a_fleet_of_one():
    assert choose(["vm1=/a.sock"], None, DEFAULT) == {"vm1": Path("/a.sock")}


@pytest.mark.parametrize(
    ("given", "why"),
    [
        (["/a.sock", "/b.sock"], "NAME=PATH"),
        (["vm1=/a.sock", "vm1=/b.sock"], "named twice"),
        (["vm1=/a.sock", "vm2=/a.sock"], "already the socket"),
        (["=/a.sock", "vm2=/b.sock"], "NAME=PATH"),
        (["vm 1=/a.sock"], "not a VM name"),
    ],
)
def test_bad_socket_arguments_are_refused(given, why):
    with pytest.raises(FleetError, match=why):
        choose(given, None, DEFAULT)


def test_socket_arguments_add_to_a_fleet_file_and_may_not_repeat_its_vms(tmp_path):
    path = fleet_file(tmp_path, '[vms.vm1]\nsocket = "/a.sock"\n')
    got = choose(["vm2=/b.sock"], path, DEFAULT)
    assert got == {"vm1": Path("/a.sock"), "vm2": Path("/b.sock")}
    with pytest.raises(FleetError, match="named twice"):
        choose(["vm1=/c.sock"], path, DEFAULT)
    with pytest.raises(FleetError, match="NAME=PATH"):
        choose(["/c.sock"], path, DEFAULT)
