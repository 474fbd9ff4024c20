"""`[fleet] collector` in clawvisor.toml: what provisioning writes for it, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from supervisor.config import DaemonSettings, Paths
from supervisor.fleet.journal import trail_directory
from supervisor.provision.box import Box
from supervisor.provision.fleet import plan_fleet, wanted_unit
from supervisor.provision.plan import Plan, ProvisionError

PATHS = Paths(Path("/etc/cv"), Path("/run/cv"), Path("/var/lib/cv"), Path("/var/log/cv"))


def box_with(fleet: dict[str, object]) -> Box:
    settings = msgspec.convert({"fleet": fleet}, DaemonSettings)
    return Box(paths=PATHS, settings=settings, workloads={})


def certs_for(tmp_path: Path, vm: str) -> Path:
    for name in ("ca.pem", f"{vm}.pem", f"{vm}.key"):
        (tmp_path / name).write_text("x")
    return tmp_path


def test_no_collector_means_no_upload_unit():
    assert wanted_unit(box_with({})) is None


def test_the_unit_ships_the_trails_namespace_with_the_key_as_a_credential(tmp_path):
    certs = certs_for(tmp_path, "vm1")
    url = "https://collector.example:19532"
    text = wanted_unit(box_with({"collector": url, "certs": str(certs), "name": "vm1"}))
    assert text is not None
    assert f'"--url={url}"' in text
    assert f"LoadCredential=vm1.key:{certs}/vm1.key" in text
    assert '"--key=%d/vm1.key"' in text and '"--trust=%d/ca.pem"' in text
    mid = Path("/etc/machine-id").read_text().strip()
    assert f'"--directory={trail_directory("clawvisor", mid)}"' in text
    assert str(trail_directory("clawvisor", mid)).endswith(f"{mid}.clawvisor")
    assert "DynamicUser=yes" in text and "SupplementaryGroups=systemd-journal" in text


def test_a_collector_without_this_vms_certificate_is_refused_by_name(tmp_path):
    certs = certs_for(tmp_path, "vm1")
    (certs / "vm1.key").unlink()
    with pytest.raises(ProvisionError, match=r"vm1\.key"):
        wanted_unit(box_with({"collector": "https://c:1", "certs": str(certs), "name": "vm1"}))


@pytest.mark.parametrize(
    "url", ["http://collector:19532", "https://c/%d", "https://c$(id)", "https://c\nExecStart=x"]
)
def test_a_collector_that_is_not_a_plain_https_url_is_refused(url):
    with pytest.raises(msgspec.ValidationError):
        box_with({"collector": url})


def test_missing_certificates_skip_shipping_loudly_and_provisioning_goes_on(tmp_path):
    plan = Plan()
    plan_fleet(box_with({"collector": "https://c:1", "certs": str(tmp_path), "name": "vm9"}), plan)
    assert not plan.changes
    [(kind, why)] = plan.skipped
    assert kind == "fleet" and "not shipped" in why and "vm9.key" in why
