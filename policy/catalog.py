"""What the policy needs to know about actions, handed in by the daemon.

The policy package does not import the executors: the daemon describes each action as
data (its params and their kinds, whether it mutates) and the compiler checks rules
against that description.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

ParamKind = Literal["str", "int", "bool", "list"]


class ActionInfo(msgspec.Struct, frozen=True):
    """One action as the policy sees it."""

    name: str
    params: Mapping[str, ParamKind]
    mutating: bool
    primary: str | None = None
    #: An intent of this action that names no target runs on its sender (`@self` matches).
    runs_on_sender: bool = False


Catalog = Mapping[str, ActionInfo]
