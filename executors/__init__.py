"""The fixed catalogue of actions clawvisor can carry out. Nothing else can run."""

from __future__ import annotations

from types import MappingProxyType

from . import open_url, status
from .base import Action

#: Every action by its wire name. The daemon dispatches only to these.
ACTIONS: MappingProxyType[str, Action] = MappingProxyType(
    {a.name: a for a in (status.ACTION, open_url.ACTION)}
)

__all__ = ["ACTIONS", "Action"]
