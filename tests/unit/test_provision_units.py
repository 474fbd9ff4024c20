"""The units provisioning writes for overlays: a boot-time service, wanted by the gateways."""

from __future__ import annotations

import shlex
from pathlib import Path

from supervisor.config import DaemonSettings, OverlaySpec, Paths, WorkloadSpec
from supervisor.provision.box import Box
from supervisor.provision.units import OVERLAYS_UNIT, gateway_dropin, wanted_units

PATHS = Paths(
    config_dir=Path("/etc/cv"),
    runtime_dir=Path("/run/cv"),
    state_dir=Path("/var/lib/cv"),
    log_dir=Path("/var/log/cv"),
)


def box(**workloads: WorkloadSpec) -> Box:
    return Box(paths=PATHS, settings=DaemonSettings(), workloads=workloads)


def with_overlay(gateway: list[str] | None = None) -> WorkloadSpec:
    return WorkloadSpec(user="alpha", overlay=OverlaySpec(lower="/srv/p"), gateway=gateway)


def test_an_overlay_gets_the_boot_service_that_reprovisions_overlays_only():
    text = wanted_units(box(alpha=with_overlay()))[OVERLAYS_UNIT]
    [line] = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[1:6] == ["-m", "supervisor", "provision", "--only", "overlay"]
    assert argv[argv.index("--config-dir") + 1] == "/etc/cv"
    assert argv[argv.index("--state-dir") + 1] == "/var/lib/cv"
    assert "Type=oneshot" in text and "RemainAfterExit=yes" in text
    assert "Before=clawvisor.service" in text and "WantedBy=multi-user.target" in text


def test_no_overlay_no_boot_service_and_no_mount_unit():
    files = wanted_units(box(alpha=WorkloadSpec(user="alpha")))
    assert OVERLAYS_UNIT not in files
    assert not [f for f in files if f.endswith(".mount")]


def test_a_gateway_with_an_overlay_starts_after_the_overlays():
    dropin = gateway_dropin(box(alpha=with_overlay(["/bin/gw"])), "alpha")
    assert dropin is not None
    assert f"Wants={OVERLAYS_UNIT}" in dropin[1] and f"After={OVERLAYS_UNIT}" in dropin[1]


def test_a_gateway_without_an_overlay_does_not_wait_for_it():
    dropin = gateway_dropin(box(alpha=WorkloadSpec(user="alpha", gateway=["/bin/gw"])), "alpha")
    assert dropin is not None and OVERLAYS_UNIT not in dropin[1]
