"""`[fleet] collector`: this VM's trail shipped to the fleet's collector. Writes and enables
clawvisor-fleet-upload.service (systemd-journal-upload, the VM's client certificate);
with no collector configured any more, takes it away again."""

from __future__ import annotations

import shutil
import socket
import subprocess
from functools import partial
from pathlib import Path

from ..fleet.journal import UPLOAD, UPLOAD_UNIT, trail_directory, upload_unit
from ..persist import write_atomic
from .box import SYSTEMD_RUNNING, Box
from .plan import Plan, ProvisionError, run


def wanted_unit(box: Box) -> str | None:
    """The upload unit this box's settings ask for (None: no collector)."""
    fleet = box.settings.fleet
    if fleet.collector is None:
        return None
    certs = Path(fleet.certs)
    vm = fleet.name or socket.gethostname()
    missing = [n for n in ("ca.pem", f"{vm}.pem", f"{vm}.key") if not (certs / n).is_file()]
    if missing:
        raise ProvisionError(
            f"[fleet] collector is set but {certs} lacks {', '.join(missing)}: make them with "
            f"`clawvisor fleet certs --dir DIR --vm {vm}` and copy them here"
        )
    machine_id = Path("/etc/machine-id").read_text().strip()
    namespace = box.settings.audit.journal_namespace
    directory = trail_directory(namespace, machine_id)
    return upload_unit(fleet.collector.rstrip("/"), certs, vm, directory, namespace)


def _install(path: Path, text: str) -> None:
    write_atomic(path, text.encode(), 0o644)
    if SYSTEMD_RUNNING.is_dir():
        run(["systemctl", "daemon-reload"])
        # restart, not start: a changed collector or certificate takes effect now.
        run(["systemctl", "enable", UPLOAD_UNIT])
        run(["systemctl", "restart", UPLOAD_UNIT])


def _remove(path: Path) -> None:
    if SYSTEMD_RUNNING.is_dir():
        stop = ["systemctl", "disable", "--now", UPLOAD_UNIT]
        subprocess.run(stop, capture_output=True, check=False)  # not loaded: nothing to stop
    path.unlink()
    if SYSTEMD_RUNNING.is_dir():
        run(["systemctl", "daemon-reload"])


def plan_fleet(box: Box, plan: Plan) -> None:
    """Plan the upload unit for `[fleet] collector`, or its removal once unset."""
    path = Path(box.settings.provision.unit_dir) / UPLOAD_UNIT
    try:
        text = wanted_unit(box)
    except ProvisionError as exc:
        # Said loudly, but the rest of the box is still provisioned: the trail is kept
        # here meanwhile, and a missing certificate must not leave the workloads unfenced.
        plan.skip("fleet", f"the trail is not shipped: {exc}")
        return
    if text is None:
        if path.exists():
            plan.add(
                "fleet", f"stop shipping the trail: remove {UPLOAD_UNIT}", partial(_remove, path)
            )
        return
    if shutil.which(UPLOAD) is None:
        raise ProvisionError(f"{UPLOAD} is missing: install systemd-journal-remote")
    if not SYSTEMD_RUNNING.is_dir():
        plan.skip("fleet", "systemd is not running: the trail's upload unit cannot run here")
        return
    current = path.read_text() if path.exists() else None
    active = subprocess.run(["systemctl", "is-active", UPLOAD_UNIT], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    if current != text or active != "active":
        url = box.settings.fleet.collector
        plan.add("fleet", f"ship the trail to {url}: {UPLOAD_UNIT}", partial(_install, path, text))
