"""Property: every action x param x constraint kind either refuses to load, with a position,
or evaluates any value without raising, and `explain` agrees with `evaluate`."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from policy import PolicyError, evaluate, explain, load_policy_texts
from supervisor.actions import POLICY_CATALOG
from tests.helpers.rules import rule

WORKLOADS = {"w": frozenset()}
PAIRS = [(a, p) for a, info in POLICY_CATALOG.items() for p in info.types]
KINDS = ["exact", "glob", "regex", "prefix", "domain", "range", "one_of", "under", "list"]

scalars = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 70000),
    st.booleans(),
    st.sampled_from(
        ["https://a.org/x", "a.org", "*.a.org", "exports", "/srv", "https://*.a.org/*"]
    ),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.none())


def spec(kind: str, arg: object) -> object:
    if kind == "exact":
        return arg
    if kind == "list":
        return arg if isinstance(arg, list) else [arg]
    return {kind: arg}


def toml_value(v: object) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)  # a TOML basic string or integer


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(PAIRS),
    st.sampled_from(KINDS),
    st.one_of(
        scalars,
        st.lists(scalars, max_size=3),
        st.tuples(st.integers(-5, 9), st.integers(-5, 70000)).map(list),
    ),
    st.lists(values, min_size=1, max_size=4),
    st.sampled_from([None, "w"]),
)
def test_each_constraint_loads_with_a_position_or_evaluates_without_raising(
    pair, kind, arg, tried, target
):
    action, param = pair
    text = rule(action, "w", params={param: toml_value(spec(kind, arg))}, dotted=True)
    try:
        policy = load_policy_texts([("p.toml", text)], POLICY_CATALOG, WORKLOADS)
    except PolicyError as exc:
        assert (exc.file, exc.line) == ("p.toml", 6) and exc.column >= 1, exc
        return
    for value in tried:
        params = {} if value is None else {param: value}
        v = evaluate(policy, "w", action, target, params)
        assert explain(policy, "w", action, target, params).ruling == v
