"""The executors' catalogue described as data for the policy compiler."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgspec
import msgspec.inspect as mi

from executors import ACTIONS
from executors.base import Action
from policy.catalog import ActionInfo, ParamKind


def _kind(t: mi.Type) -> ParamKind:
    if isinstance(t, mi.UnionType):
        inner = [x for x in t.types if not isinstance(x, mi.NoneType)]
        if len(inner) == 1:
            return _kind(inner[0])
    if isinstance(t, mi.BoolType):
        return "bool"
    if isinstance(t, mi.IntType):
        return "int"
    if isinstance(t, (mi.ListType, mi.TupleType, mi.VarTupleType)):
        return "list"
    return "str"


def action_info(action: Action) -> ActionInfo:
    """One action's params and their kinds, as the policy sees them."""
    info = mi.type_info(action.params)
    assert isinstance(info, mi.StructType)
    params = {f.name: _kind(f.type) for f in info.fields if f.name != "target"}
    primary = next(iter(params), None)
    return ActionInfo(
        name=action.name,
        params=params,
        mutating=action.mutating,
        primary=primary,
        runs_on_sender=action.needs_target,
    )


#: What the policy compiler checks rules against.
POLICY_CATALOG: MappingProxyType[str, ActionInfo] = MappingProxyType(
    {name: action_info(a) for name, a in ACTIONS.items()}
)


def normalise_params(action: str, target: str | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as the daemon's decoder would hand them to the policy; ValueError if invalid.

    Policy tests and `policy explain` go through this, so they are decided on exactly
    what a real intent would be decided on (a normalised URL, say).
    """
    spec = ACTIONS[action]
    raw: dict[str, Any] = {"action": action, **params}
    if target is not None:
        raw["target"] = target
    try:
        intent = msgspec.convert(raw, spec.params)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    return {f: getattr(intent, f) for f in spec.param_names}
