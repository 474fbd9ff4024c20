"""Groups `clawvisor-gw` and `clawvisor-ops`; one system user per workload, no password."""

from __future__ import annotations

import grp
import pwd
from functools import partial
from pathlib import Path

from .box import NOLOGIN, Box, gid_of, uid_of
from .plan import Plan, ProvisionError, run

SHADOW = Path("/etc/shadow")


def _locked(user: str) -> bool:
    try:
        for line in SHADOW.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name == user:
                pw = rest.split(":", 1)[0]
                return pw.startswith(("!", "*")) or pw == ""
    except OSError:
        return True
    return True


def plan_accounts(box: Box, plan: Plan) -> None:
    """Plan the groups and users."""
    for group in (box.gw_group, box.ops_group):
        if gid_of(group) is None:
            plan.add(
                "users", f"create group {group}", partial(run, ["groupadd", "--system", group])
            )
    proxy = box.settings.proxy.user
    if any(s.internet == "proxy" for s in box.workloads.values()) and uid_of(proxy) is None:
        argv = ["useradd", "--system", "--user-group", "--no-create-home"]
        argv += ["--home-dir", "/nonexistent", "--shell", NOLOGIN, proxy]
        plan.add("users", f"create user {proxy} for the egress proxy", partial(run, argv))
    seen: dict[str, str] = {}
    for name, spec in box.workloads.items():
        if spec.user in seen:
            raise ProvisionError(
                f"workloads {seen[spec.user]!r} and {name!r} both use user {spec.user!r}"
            )
        seen[spec.user] = name
        home = str(box.home(name))
        try:
            pw = pwd.getpwnam(spec.user)
        except KeyError:
            argv = [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                home,
                "--shell",
                NOLOGIN,
                "--groups",
                box.gw_group,
            ]
            if spec.uid is not None:
                argv += ["--uid", str(spec.uid)]
            plan.add(
                "users",
                f"create user {spec.user} for workload {name}",
                partial(run, [*argv, spec.user]),
            )
            continue
        if spec.uid is not None and pw.pw_uid != spec.uid:
            raise ProvisionError(
                f"user {spec.user} exists with uid {pw.pw_uid}, but "
                f"workloads.toml says {spec.uid}; refusing to renumber it"
            )
        if pw.pw_dir != home:
            plan.add(
                "users",
                f"set {spec.user}'s home to {home}",
                partial(run, ["usermod", "--home", home, spec.user]),
            )
        if pw.pw_shell != NOLOGIN:
            plan.add(
                "users",
                f"set {spec.user}'s shell to {NOLOGIN}",
                partial(run, ["usermod", "--shell", NOLOGIN, spec.user]),
            )
        gw = gid_of(box.gw_group)
        members = grp.getgrnam(box.gw_group).gr_mem if gw is not None else []
        if spec.user not in members:
            plan.add(
                "users",
                f"add {spec.user} to {box.gw_group}",
                partial(run, ["usermod", "--append", "--groups", box.gw_group, spec.user]),
            )
        if not _locked(spec.user):
            plan.add(
                "users",
                f"lock {spec.user}'s password",
                partial(run, ["usermod", "--lock", spec.user]),
            )
