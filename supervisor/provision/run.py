"""Put the provisioning modules together: plan everything, show it, apply it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TextIO

from ..config import ConfigError, Paths, load_settings_and_specs
from .accounts import plan_accounts
from .box import Box
from .dirs import plan_dirs
from .firewall import plan_firewall
from .fleet import plan_fleet
from .overlay import plan_overlay
from .plan import KINDS, Kind, Plan, ProvisionError, report
from .proxy import plan_proxy
from .sysctl import plan_sysctl
from .units import plan_units

PLANNERS: dict[Kind, Callable[[Box, Plan], None]] = {
    "users": plan_accounts,
    "dirs": plan_dirs,
    "overlay": plan_overlay,
    "proxy": plan_proxy,
    "firewall": plan_firewall,
    "sysctl": plan_sysctl,
    "units": plan_units,
    "fleet": plan_fleet,
}


def load_box(paths: Paths) -> Box:
    """The desired state from the config directory."""
    settings, specs = load_settings_and_specs(paths)
    return Box(paths=paths, settings=settings, workloads=dict(specs.workloads))


def make_plan(box: Box, only: Iterable[Kind] = KINDS) -> Plan:
    """Look at the system and list what must change (nothing is touched)."""
    plan = Plan()
    for kind in KINDS:
        if kind in only:
            PLANNERS[kind](box, plan)
    return plan


def provision(
    paths: Paths, *, dry_run: bool = False, only: Iterable[Kind] = KINDS, out: TextIO = sys.stdout
) -> int:
    """`clawvisor provision`: exit 0 on success (or a dry run), 1 on failure."""
    try:
        box = load_box(paths)
        plan = make_plan(box, tuple(only))
    except (ConfigError, ProvisionError) as exc:
        print(f"clawvisor provision: {exc}", file=out)
        return 1
    plan.show(out)
    if dry_run:
        print("dry run: nothing was changed", file=out)
        return 0
    try:
        applied = plan.apply(out)
    except ProvisionError as exc:
        print(f"clawvisor provision: {exc}", file=out)
        print("stopped; run it again to converge", file=out)
        return 1
    report(applied, out)
    return 0
