"""`clawvisor deprovision NAME [--purge]`: remove what provisioning made for one workload.

The firewall table is rebuilt without it, its overlay unmounted, its units removed and
its user deleted. Its home and overlay data stay unless `--purge`.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TextIO

from ..cgroups import holders_of
from .box import SYSTEMD_RUNNING, Box, uid_of
from .firewall import plan_firewall
from .overlay import lower_view, mounted_at, unmount
from .plan import Plan, ProvisionError, report, run
from .proxy import plan_proxy
from .units import OVERLAYS_UNIT, gateway_dropin, legacy_mount_unit


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _delete_user(user: str, uid: int) -> None:
    """userdel, after ending what still runs as the user (its gateway, a probe, anything
    it left behind), found by uid and killed by pid: userdel refuses a user in use, and a
    workload being removed keeps nothing running."""
    deadline = time.monotonic() + 10
    while True:
        # Every process with the uid as its real, effective or saved uid (what userdel
        # counts), alive: a zombie is only unreaped, and userdel lets it be.
        while alive := [pid for pid, up in holders_of(uid) if up]:
            if time.monotonic() > deadline:
                raise ProvisionError(f"processes of {user} would not die: {alive[:10]}")
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        try:
            run(["userdel", user])
            return
        except subprocess.CalledProcessError as exc:
            # 8: in use again (one started as the user since the check, e.g. a unit's
            # restart): end it too, and again.
            if exc.returncode != 8 or time.monotonic() > deadline:
                raise


def plan_deprovision(box: Box, name: str, purge: bool) -> Plan:
    """The changes that remove workload `name`."""
    if name not in box.workloads:
        raise ProvisionError(f"no workload {name!r} in workloads.toml")
    spec = box.workloads[name]
    plan = Plan()
    rest = replace(box, workloads={n: s for n, s in box.workloads.items() if n != name})
    plan_firewall(rest, plan)
    plan_proxy(rest, plan)
    views = (box.merged(name), lower_view(box, name))
    if spec.overlay is not None and any(mounted_at(v) is not None for v in views):
        plan.add("overlay", f"unmount {box.merged(name)}", partial(unmount, box, name))
    units = Path(box.settings.provision.unit_dir)
    files = []
    if spec.overlay is not None:
        files.append(units / legacy_mount_unit(box, name))
        if all(s.overlay is None for s in rest.workloads.values()):
            files.append(units / OVERLAYS_UNIT)
    dropin = gateway_dropin(box, name)
    if dropin is not None:
        files.append(units / dropin[0])
    present = [f for f in files if f.exists()]
    if units / OVERLAYS_UNIT in present and SYSTEMD_RUNNING.is_dir():
        disable = ["systemctl", "disable", OVERLAYS_UNIT]
        plan.add("units", f"disable {OVERLAYS_UNIT}", partial(run, disable))
    for f in present:
        plan.add("units", f"remove {f}", partial(_remove, f))
    if present and SYSTEMD_RUNNING.is_dir():
        plan.add("units", "systemctl daemon-reload", partial(run, ["systemctl", "daemon-reload"]))
    uid = uid_of(spec.user)
    if uid is not None:
        plan.add("users", f"delete user {spec.user}", partial(_delete_user, spec.user, uid))
    else:
        plan.note("users", f"user {spec.user} is already gone")
    if not rest.workloads:
        _plan_groups(box, spec.user, plan)
    if purge:
        for path in (box.home(name), box.overlay_root(name)):
            if path.exists():
                plan.add("dirs", f"delete {path} and everything in it", partial(_remove, path))
    else:
        plan.note("dirs", f"kept {box.home(name)} and {box.overlay_root(name)} (use --purge)")
    return plan


def _plan_groups(box: Box, leaving: str, plan: Plan) -> None:
    """After the last workload: the gateway group goes when nobody else is in it; the
    operators' group stays while it has members (people answer asks through it)."""
    server = box.settings.server
    for group, who in ((server.socket_group, "gateways"), (server.control_group, "operators")):
        try:
            members = [m for m in grp.getgrnam(group).gr_mem if m != leaving]
        except KeyError:
            continue
        if members:
            plan.note("users", f"kept group {group} ({who}: {', '.join(members)})")
        else:
            plan.add("users", f"delete group {group}", partial(run, ["groupdel", group]))


def deprovision(box: Box, name: str, purge: bool, out: TextIO = sys.stdout) -> int:
    """Show and apply the plan; exit 0 on success."""
    try:
        plan = plan_deprovision(box, name, purge)
        plan.show(out, "deprovision")
        report(plan.apply(out), out)
    except ProvisionError as exc:
        print(f"clawvisor deprovision: {exc}", file=out)
        return 1
    return 0
