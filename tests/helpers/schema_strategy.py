"""Hypothesis strategies drawn from a JSON Schema: the schema decides what is generated.

Covers the keywords the protocol's schema uses (msgspec's output): `$ref`, `anyOf`,
`oneOf`, `enum`, `const`, `type`, object `properties`/`required`, string length and
`pattern`, integer and number bounds, array `items` and sizes. Anything else is an
error rather than a silent approximation.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_IGNORED = {
    "title",
    "description",
    "default",
    "discriminator",
    "$schema",
    "$id",
    "$defs",
    "examples",
}
_KNOWN = _IGNORED | {
    "$ref",
    "anyOf",
    "oneOf",
    "enum",
    "const",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "items",
    "minItems",
    "maxItems",
    "format",
}


def from_schema(
    schema: dict[str, Any], defs: dict[str, Any] | None = None
) -> st.SearchStrategy[Any]:
    """Values that `schema` accepts."""
    defs = defs if defs is not None else schema.get("$defs", {})
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"schema keywords not supported: {sorted(unknown)}")
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            # oneOf branches of the protocol are disjoint, so any branch's value is valid.
            return st.one_of([from_schema(s, defs) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "string":
        return _string(schema)
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {}), defs),
            min_size=schema.get("minItems", 0),
            max_size=schema.get("maxItems", 8),
        )
    if kind == "object":
        return _object(schema, defs)
    raise ValueError(f"schema without a supported type: {schema}")


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength", 64)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"]).filter(lambda s: low <= len(s) <= high)
    return st.text(min_size=low, max_size=min(high, 300))


def _object(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    if schema.get("additionalProperties", False) is not False:
        raise ValueError("open objects are not generated")
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {k: from_schema(v, defs) for k, v in props.items() if k in required},
        optional={k: from_schema(v, defs) for k, v in props.items() if k not in required},
    )
