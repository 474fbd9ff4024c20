"""Property: the compiled, indexed evaluator agrees with a naive reference on any policy.

The reference below is written separately from `policy/`: a plain loop over every rule
in order, with its own reading of sources, targets, groups and constraints.
"""

from __future__ import annotations

import fnmatch
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import evaluate, explain, load_policy_texts
from supervisor.actions import POLICY_CATALOG
from tests.helpers.rules import groups, rule

NAMES = ["a", "b", "c"]
WORKLOADS = {"a": frozenset({"red"}), "b": frozenset({"blue"}), "c": frozenset({"red", "blue"})}
GROUPS = {"g1": ["status"], "g2": ["status", "open-url"]}
URLS = [
    "https://a.org/x",
    "https://b.a.org/",
    "https://evil.org/",
    "https://a.org/y/z",
    "https://xa.org/",
]

actions = st.sampled_from(["status", "open-url", "*", "@g1", "@g2", "@readonly"])
sources = st.sampled_from(["*", "@anyvm", "@tag:red", "@tag:blue", *NAMES])
targets = st.sampled_from(["*", "@anyvm", "@default", "@self", "@tag:red", *NAMES])
decisions = st.sampled_from(["allow", "ask", "deny"])
url_constraints = st.sampled_from(
    [
        None,
        ("exact", "https://a.org/x"),
        ("glob", "https://*.org/*"),
        ("prefix", "https://a.org/"),
        ("domain", "*.a.org"),
        ("domain", "a.org"),
        ("regex", "https://[a-z.]+/x"),
        ("one_of", ["https://evil.org/", "https://a.org/y/z"]),
    ]
)


@st.composite
def rules(draw):
    action = draw(actions)
    c = draw(url_constraints) if action == "open-url" else None
    target = draw(targets)
    if target == "@self" and not any(POLICY_CATALOG[a].runs_on_sender for a in ref_actions(action)):
        target = "*"  # refused at load: test_policy_types covers that
    return (action, draw(sources), target, draw(decisions), c)


def to_toml(rule_list) -> str:
    out = [groups(**GROUPS)]
    for action, source, target, decision, c in rule_list:
        url = None
        if c is not None:
            kind, value = c
            url = json.dumps(value) if kind == "exact" else f"{{ {kind} = {json.dumps(value)} }}"
        params = {"url": url} if url else None
        out.append(rule(action, source, decision, target, params, dotted=True))
    return "".join(out)


def ref_actions(spec):
    if spec == "*":
        return set(POLICY_CATALOG)
    if spec == "@readonly":
        return {a for a, info in POLICY_CATALOG.items() if not info.mutating}
    if spec.startswith("@"):
        return set(GROUPS[spec[1:]])
    return {spec}


def ref_source(pattern, source):
    if pattern in ("*", "@anyvm"):
        return True
    if pattern.startswith("@tag:"):
        return pattern[5:] in WORKLOADS[source]
    return pattern == source


def ref_target(pattern, source, target, action):
    if pattern == "*":
        return True
    if pattern == "@default":
        return target is None
    if target is None:
        # an action that runs on its sender when no target is named: that is @self
        return pattern == "@self" and POLICY_CATALOG[action].runs_on_sender
    if pattern == "@anyvm":
        return True
    if pattern == "@self":
        return target == source
    if pattern.startswith("@tag:"):
        return pattern[5:] in WORKLOADS[target]
    return pattern == target


def ref_host(url):
    return url.split("://", 1)[1].split("/", 1)[0]


def ref_constraint(c, url):
    if c is None:
        return True
    if url is None:
        return False
    kind, value = c
    if kind == "exact":
        return url == value
    if kind == "glob":
        # Per part: the pattern's host by the domain rules, the rest as a glob.
        scheme, rest = value.split("://", 1)
        host, _, path = rest.partition("/")
        if not url.startswith(scheme + "://"):
            return False
        url_host = ref_host(url)
        url_path = url.split("://", 1)[1][len(url_host) :]
        return ref_constraint(("domain", host), url) and fnmatch.fnmatchcase(url_path, "/" + path)
    if kind == "prefix":
        return url.startswith(value)
    if kind == "one_of":
        return url in value
    if kind == "regex":
        import re

        return re.fullmatch(value, url) is not None
    host = ref_host(url)
    if value.startswith("*."):
        return host.endswith(value[1:]) and host != value[2:]
    return host == value


def reference(rule_list, source, action, target, url):
    for i, (a, s, t, d, c) in enumerate(rule_list):
        if (
            action in ref_actions(a)
            and ref_source(s, source)
            and ref_target(t, source, target, action)
            and ref_constraint(c, url)
        ):
            return d, i
    return "deny", None


requests = st.tuples(
    st.sampled_from(NAMES),
    st.sampled_from(["status", "open-url"]),
    st.sampled_from([None, *NAMES]),
    st.sampled_from(URLS),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rules(), max_size=25), st.lists(requests, min_size=1, max_size=20))
def test_compiled_evaluator_agrees_with_the_reference(rule_list, reqs):
    policy = load_policy_texts([("p.toml", to_toml(rule_list))], POLICY_CATALOG, WORKLOADS)
    for source, action, target, url in reqs:
        params = {"url": url} if action == "open-url" else {}
        v = evaluate(policy, source, action, target, params)
        assert explain(policy, source, action, target, params).ruling == v
        decision, index = reference(
            rule_list, source, action, target, url if action == "open-url" else None
        )
        assert v.decision == decision
        if index is None:
            assert v.rule is None and v.rule_name == "default"  # default deny
        else:
            assert v.rule is not None and v.rule.index == index


@settings(max_examples=200, deadline=None)
@given(st.lists(rules().filter(lambda r: r[3] != "deny"), max_size=15), requests)
def test_a_request_no_rule_matches_is_denied(rule_list, req):
    source, action, target, url = req
    policy = load_policy_texts([("p.toml", to_toml(rule_list))], POLICY_CATALOG, WORKLOADS)
    decision, index = reference(
        rule_list, source, action, target, url if action == "open-url" else None
    )
    v = evaluate(policy, source, action, target, {"url": url} if action == "open-url" else {})
    if index is None:
        assert v.decision == "deny" and v.rule is None
    else:
        assert v.decision == decision != "deny"
