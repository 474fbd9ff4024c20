"""The executors' catalogue described as data for the policy compiler.

Each param's type comes from the executor's msgspec `Params` Struct, read once here:
annotations (`Annotated[int, Meta(ge=1)]`, descriptions) and `| None` are unwrapped to
the kind the decoder really hands the policy, with its bounds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgspec
import msgspec.inspect as mi

from executors import ACTIONS
from executors.base import Action
from policy import Policy, load_policy_dir, load_policy_texts
from policy.catalog import ActionInfo, Format, ParamType, Scalar

if TYPE_CHECKING:
    from .config import Config

#: What a string param means where the policy matches by meaning (`domain` on URLs and
#: hosts, `under` on paths). The Structs do not say it; the test suite checks every entry
#: names a real string param.
FORMATS: Mapping[tuple[str, str], Format] = MappingProxyType(
    {
        ("open-url", "url"): "url",
        ("egress-allow", "host"): "host",
        ("sync-out", "paths"): "path",
    }
)


def _unwrap(t: mi.Type) -> tuple[mi.Type, bool]:
    """The type under descriptions and `| None`, and whether None was allowed."""
    optional = False
    while True:
        if isinstance(t, mi.Metadata):
            t = t.type
        elif isinstance(t, mi.UnionType):
            inner = [x for x in t.types if not isinstance(x, mi.NoneType)]
            if len(inner) != 1:
                raise TypeError(f"the policy cannot describe a union param {t}")
            optional = optional or len(inner) != len(t.types)
            t = inner[0]
        else:
            return t, optional


def _scalar(t: mi.Type, where: str) -> tuple[Scalar, dict[str, Any]]:
    if isinstance(t, mi.BoolType):
        return "bool", {}
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
        return "int", {"low": low, "high": high}
    if isinstance(t, mi.StrType):
        return "str", {
            "min_length": t.min_length or 0,
            "max_length": t.max_length,
            "pattern": t.pattern,
        }
    raise TypeError(f"the policy cannot describe param {where} of type {t}")


def param_type(
    t: mi.Type, where: str, fmt: Format = "text", default: Any = msgspec.NODEFAULT
) -> ParamType:
    """The policy's view of one field type: its kind, element kind, bounds and meaning."""
    inner, optional = _unwrap(t)
    if isinstance(default, (list, tuple)):
        default = tuple(default)
    elif default is msgspec.NODEFAULT:
        default = None
    if isinstance(inner, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        item, _ = _unwrap(inner.item_type)
        kind, facts = _scalar(item, where)
        return ParamType(
            kind="list",
            item=kind,
            format=fmt,
            optional=optional,
            min_items=inner.min_length or 0,
            max_items=inner.max_length,
            default=default,
            **facts,
        )
    kind, facts = _scalar(inner, where)
    return ParamType(kind=kind, format=fmt, optional=optional, default=default, **facts)


def action_info(action: Action) -> ActionInfo:
    """One action's params and their types, as the policy sees them."""
    info = mi.type_info(action.params)
    assert isinstance(info, mi.StructType)
    params = {
        f.name: param_type(
            f.type,
            f"{action.name}.{f.name}",
            FORMATS.get((action.name, f.name), "text"),
            f.default if f.default_factory is msgspec.NODEFAULT else f.default_factory(),
        )
        for f in info.fields
        if f.name != "target"
    }
    primary = next(iter(params), None)
    return ActionInfo(
        name=action.name,
        types=params,
        mutating=action.mutating,
        primary=primary,
        runs_on_sender=action.needs_target,
        argv_params=action.argv_params,
    )


#: What the policy compiler checks rules against.
POLICY_CATALOG: MappingProxyType[str, ActionInfo] = MappingProxyType(
    {name: action_info(a) for name, a in ACTIONS.items()}
)

_REGEX_MISMATCH = re.compile(r"Expected `str` matching regex '(?:[^'\\]|\\.)*'")
_AT = re.compile(r" - at `\$\.([a-z_]+)(?:\[\d+\])?`")


def _descriptions(action: str) -> dict[str, str]:
    """Each field's description (the target's too), as the schema gives it."""
    info = mi.type_info(ACTIONS[action].params)
    assert isinstance(info, mi.StructType)
    found = {}
    for f in info.fields:
        t: mi.Type = f.type
        while isinstance(t, (mi.Metadata, mi.UnionType)):
            if isinstance(t, mi.Metadata):
                desc = (t.extra_json_schema or {}).get("description")
                if desc:
                    found[f.name] = str(desc)
                    break
                t = t.type
            else:
                t = next(x for x in t.types if not isinstance(x, mi.NoneType))
    return found


def _in_words(action: str, message: str) -> str:
    """A decoder message with any raw regex replaced by what the field is, in words."""
    at = _AT.search(message)
    if not _REGEX_MISMATCH.search(message) or at is None:
        return message
    field = at.group(1)
    desc = _descriptions(action).get(field)
    if desc is None:
        return message
    words = desc[0].lower() + desc[1:].rstrip(".")
    return f"{field} must be {words}"


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
        raise ValueError(_in_words(action, str(exc))) from None
    return {f: getattr(intent, f) for f in spec.param_names}


def load_policy(config: Config) -> Policy:
    """The policy for `config`; raises PolicyError (never returns half a policy)."""
    from .config import EMBEDDED_POLICY_NAME, embedded_policy_text

    if config.embedded:
        return load_policy_texts(
            [(EMBEDDED_POLICY_NAME, embedded_policy_text())],
            POLICY_CATALOG,
            config.tags,
            normalise=normalise_params,
        )
    return load_policy_dir(
        config.paths.policy_dir,
        POLICY_CATALOG,
        config.tags,
        display_root=config.paths.config_dir,
        normalise=normalise_params,
    )
