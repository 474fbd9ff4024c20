"""The units provisioning writes for overlays: a boot-time service, wanted by the gateways."""

from __future__ import annotations

import shlex
from pathlib import Path

import msgspec

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


def dropin_of(spec: WorkloadSpec) -> str:
    out = gateway_dropin(box(alpha=spec), "alpha")
    assert out is not None
    return out[1]


def test_a_workload_with_known_peers_gets_systemds_address_filter_too():
    spec = WorkloadSpec(
        user="alpha", internet="none", gateway=["/bin/gw"], host_services=["192.0.2.5:11434"]
    )
    text = dropin_of(spec)
    assert "IPAddressDeny=any\n" in text
    assert "IPAddressAllow=localhost 192.0.2.5\n" in text


def test_inbound_sources_are_allowed_through_the_address_filter():
    spec = msgspec.convert(
        {"user": "alpha", "internet": "proxy", "gateway": ["/bin/gw"],
         "inbound": [{"port": 8080, "sources": ["198.51.100.0/24"]}]},
        WorkloadSpec,
    )  # fmt: skip
    assert "IPAddressAllow=localhost 198.51.100.0/24\n" in dropin_of(spec)


def test_no_address_filter_where_the_peers_are_not_known_in_advance():
    for internet in ("open", "allowlist"):
        spec = WorkloadSpec(user="alpha", internet=internet, gateway=["/bin/gw"])
        assert "IPAddress" not in dropin_of(spec)
    anyone = msgspec.convert(
        {"user": "alpha", "internet": "none", "gateway": ["/bin/gw"],
         "inbound": [{"port": 8080}]},
        WorkloadSpec,
    )  # fmt: skip
    assert "IPAddress" not in dropin_of(anyone)
