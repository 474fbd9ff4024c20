"""Property: every witness `policy diff` gives flips the decision under `evaluate` as it
says, and every request whose decision flips is in a cell the diff reports with that
change (so "none exists" is never wrong)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import evaluate, load_policy_texts
from policy.diff import diff_policies
from supervisor.actions import POLICY_CATALOG
from tests.helpers.rules import rule

WORKLOADS = {"a": frozenset({"red"}), "b": frozenset()}
URL_CONSTRAINTS = [
    'url = "https://a.org/x"',
    'url = { glob = "https://*.a.org/*" }',
    'url = { glob = "https://a.org/*" }',
    'url = { domain = ["a.org", "*.a.org"] }',
    'url = { prefix = "https://a.org/" }',
    'url = { regex = "https?://[a-z.]+/x" }',
    'url = { one_of = ["https://a.org/x", "http://b.a.org"] }',
]
EGRESS_CONSTRAINTS = [
    'host = "a.org"',
    'host = { domain = "*.a.org" }',
    "port = 443",
    "port = { range = [1, 1024] }",
    "ttl = { range = [60, 600] }",
    'host = { glob = "*.org" }',
]
ARGS_CONSTRAINTS = [
    'args = ["x"]',
    'args = { one_of = ["x", "y"] }',
    'args = { glob = "-*" }',
    "args = []",
]
CONSTRAINTS = {
    "open-url": URL_CONSTRAINTS,
    "egress-allow": EGRESS_CONSTRAINTS,
    "run-ops": ARGS_CONSTRAINTS,
}
VALUES = {
    "open-url": [
        {"url": u}
        for u in [
            "https://a.org/x",
            "http://a.org/x",
            "https://b.a.org/",
            "http://b.a.org",
            "https://evil.com/.a.org/x",
            "https://a.org",
            "https://a.org:8443/x",
            "http://c.org/x",
        ]
    ],
    "egress-allow": [
        {"host": h, "ttl": t, **({"port": p} if p else {})}
        for h in ["a.org", "b.a.org", "c.org"]
        for t in [60, 3600]
        for p in [None, 443, 8080]
    ],
    "run-ops": [{"script": "s", "args": a} for a in [[], ["x"], ["y"], ["x", "y"], ["-v"], ["z"]]],
}


@st.composite
def rules(draw):
    action = draw(st.sampled_from(sorted(CONSTRAINTS)))
    cs = draw(
        st.lists(st.sampled_from(CONSTRAINTS[action]), max_size=2, unique_by=lambda c: c.split()[0])
    )
    target = draw(st.sampled_from(["*", "@self", "@anyvm", "@default", "b", "@tag:red"]))
    decision = draw(st.sampled_from(["allow", "ask", "deny"]))
    source = draw(st.sampled_from(["*", "a", "b"]))
    extra = {}
    if target in ("@default", "*") and decision != "deny" and draw(st.booleans()):
        extra["default_target"] = draw(st.sampled_from(["a", "b"]))
    params = dict(c.split(" = ", 1) for c in cs) or None
    return rule(action, source, decision, target, params, dotted=True, **extra)


policies = st.lists(rules(), max_size=6).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies, policies)
def test_witnesses_flip_and_no_flip_goes_unreported(old_text, new_text):
    old = load_policy_texts([("old.toml", old_text)], POLICY_CATALOG, WORKLOADS)
    new = load_policy_texts([("new.toml", new_text)], POLICY_CATALOG, WORKLOADS)
    d = diff_policies(old, new, POLICY_CATALOG)
    reported = {}
    for cell in d.cells:
        for ch in cell.changes:
            args = (cell.source, cell.action, cell.target, ch.params)
            before, after = evaluate(old, *args), evaluate(new, *args)
            assert before.decision == ch.before.split()[0]
            assert after.decision == ch.after.split()[0]
            if "->" in ch.kind and not ch.kind.startswith(
                ("rate", "approvers", "quorum", "timeout", "grant")
            ):
                assert before.decision != after.decision
        reported[(cell.source, cell.action, cell.target)] = {ch.kind for ch in cell.changes}
    for action, pool in VALUES.items():
        for source in WORKLOADS:
            for target in [None, *WORKLOADS]:
                for params in pool:
                    b = evaluate(old, source, action, target, params).decision
                    a = evaluate(new, source, action, target, params).decision
                    if a != b:
                        assert f"{b} -> {a}" in reported.get((source, action, target), set()), (
                            source,
                            action,
                            target,
                            params,
                        )
    wider = any(ch.wider for c in d.cells for ch in c.changes)
    assert d.newly_allowed == wider
