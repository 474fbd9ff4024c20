"""The fixed catalogue of actions clawvisor can carry out. Nothing else can run."""

from __future__ import annotations

from types import MappingProxyType

from . import (
    capabilities,
    egress_allow,
    install_app,
    notify,
    open_url,
    run_ops,
    search,
    status,
    sync_out,
    workload_control,
)
from .base import Action

#: Every action by its wire name. The daemon dispatches only to these.
ACTIONS: MappingProxyType[str, Action] = MappingProxyType(
    {
        a.name: a
        for a in (
            status.ACTION,
            open_url.ACTION,
            search.ACTION,
            install_app.ACTION,
            egress_allow.ACTION,
            sync_out.ACTION,
            workload_control.START,
            workload_control.STOP,
            workload_control.RESTART,
            notify.ACTION,
            run_ops.ACTION,
            capabilities.ACTION,
        )
    }
)

__all__ = ["ACTIONS", "Action"]
