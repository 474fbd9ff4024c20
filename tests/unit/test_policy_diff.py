"""`policy diff`: before/after pairs, the cells they change, and the witnesses or proofs."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest

from policy import evaluate, load_policy_texts
from policy.diff import diff_policies
from supervisor import policy_tools
from supervisor.actions import POLICY_CATALOG
from tests.helpers import rules

WORKLOADS = {"research": frozenset({"trusted"}), "social": frozenset()}


def load(text: str):
    return load_policy_texts([("p.toml", text)], POLICY_CATALOG, WORKLOADS)


def rule(action: str, params: dict[str, str] | None = None, **fields: Any) -> str:
    """rules.rule() from research on @self unless `fields` say otherwise; params (raw TOML
    values) as dotted keys."""
    fields = {"source": "research", "target": "@self", "decision": "allow", **fields}
    return rules.rule(action, params=params, dotted=True, **fields)


def changes(old: str, new: str):
    """(cell, kind, wider, params) for every change, each witness checked under evaluate."""
    p_old, p_new = load(old), load(new)
    d = diff_policies(p_old, p_new, POLICY_CATALOG)
    found = []
    for cell in d.cells:
        for ch in cell.changes:
            args = (cell.source, cell.action, cell.target, ch.params)
            assert evaluate(p_old, *args).decision == ch.before.split()[0]
            assert evaluate(p_new, *args).decision == ch.after.split()[0]
            found.append(((cell.source, cell.action, cell.target), ch.kind, ch.wider, ch.params))
    return d, found


def kinds(found):
    return {(cell, kind) for cell, kind, _, _ in found}


SELF_CELLS = [("research", None), ("research", "research")]


@pytest.mark.parametrize(
    "old, new",
    [
        pytest.param(
            rule("egress-allow", {"host": '{ glob = ["a.org", "*.a.org"] }'}),
            rule("egress-allow", {"host": '{ domain = ["a.org", "*.a.org"] }'}),
            id="host glob rewritten as the same domain list",
        ),
        pytest.param(
            rule("search", {"query": '{ one_of = ["cats", "dogs"] }'}),
            rule("search", {"query": '{ regex = "cats|dog(s)" }'}),
            id="one_of rewritten as a regex",
        ),
        pytest.param(
            rule("egress-allow", {"ttl": "{ range = [60, 3600] }"}),
            rule("egress-allow", {"ttl": "{ one_of = [60] }"})
            + rule("egress-allow", {"ttl": "{ range = [61, 3600] }"}),
            id="a range split in two rules",
        ),
        pytest.param(
            rule("sync-out", {"paths": '{ under = "exports" }'}),
            rule("sync-out", {"paths": '{ regex = "exports(/.*)?" }'}),
            id="under rewritten as a regex over normalised paths",
        ),
    ],
)
def test_a_change_that_only_looks_different_changes_nothing(old, new):
    d, found = changes(old, new)
    assert d.cells, "the rules changed, so the cells are examined"
    assert found == []
    assert not d.newly_allowed
    assert all(c.none_wider and c.none_narrower for c in d.cells)


def test_a_url_glob_rewritten_as_a_domain_is_wider_than_it_looks():
    d, found = changes(
        rule("open-url", {"url": '{ glob = "https://*.a.org/*" }'}),
        rule("open-url", {"url": '{ domain = "*.a.org" }'}),
    )
    assert d.newly_allowed
    assert kinds(found) == {(("research", "open-url", t), "deny -> allow") for _, t in SELF_CELLS}
    [url] = {p["url"] for _, _, _, p in found}
    assert url == "http://a.a.org"  # http and no path: the glob said neither


@pytest.mark.parametrize(
    "old, new, kind, wider, params",
    [
        pytest.param(
            rule("egress-allow", {"ttl": "{ range = [60, 3600] }"}),
            rule("egress-allow", {"ttl": "{ range = [60, 600] }"}),
            "allow -> deny",
            False,
            {"host": "a", "ttl": 601},
            id="range narrowed",
        ),
        pytest.param(
            rule("egress-allow", {"host": '"security.debian.org"'}),
            rule("egress-allow", {"host": '"security.debian.org"', "port": "443"}),
            "allow -> deny",
            False,
            {"host": "security.debian.org", "ttl": 3600},  # no port: every port
            id="port added",
        ),
        pytest.param(
            rule("sync-out", {"paths": '{ under = "exports/public" }'}),
            rule("sync-out", {"paths": '{ under = "exports" }'}),
            "deny -> allow",
            True,
            {"paths": ["exports"]},
            id="under widened",
        ),
        pytest.param(
            rule("run-ops", {"args": '["origin"]'}),
            rule("run-ops", {"args": '{ one_of = ["origin", "main"] }'}),
            "deny -> allow",
            True,
            {"script": "a", "args": ["main"]},
            id="exact list widened to one_of",
        ),
        pytest.param(
            rule("open-url", {"url": '{ prefix = "https://docs.a.org/" }'}),
            rule("open-url", {"url": '{ prefix = "https://docs.a.org/en/" }'}),
            "allow -> deny",
            False,
            {"url": "https://docs.a.org/"},
            id="prefix narrowed",
        ),
        pytest.param(
            rule("open-url", decision="ask"),
            rule("open-url"),
            "ask -> allow",
            True,
            {"url": "http://a"},
            id="ask becomes allow",
        ),
        pytest.param(
            rule("notify", target="*", rate="10/min"),
            rule("notify", target="*"),
            "rate 10/min -> none",
            True,
            {"message": "a"},
            id="rate removed",
        ),
    ],
)
def test_changes_are_found_with_their_witness(old, new, kind, wider, params):
    d, found = changes(old, new)
    assert {(k, w) for _, k, w, _ in found} == {(kind, wider)}
    assert {str(p) for _, _, _, p in found} == {str(params)}
    assert d.newly_allowed == wider


def test_attribute_changes_are_listed_but_allow_nothing_new():
    old = rule("open-url", decision="ask", timeout="60", approvers=["cli"])
    new = rule(
        "open-url", decision="ask", timeout="120", grant="30m", approvers=["cli", "telegram"]
    )
    d, found = changes(old, new)
    assert {k for _, k, _, _ in found} == {
        "approvers ['cli'] -> ['cli', 'telegram']",
        "timeout 60 s -> 120 s",
        "grant once -> 30m",
    }
    assert not d.newly_allowed


def test_a_new_target_changes_only_its_own_cell():
    d, found = changes("", rule("open-url", target="social"))
    assert kinds(found) == {(("research", "open-url", "social"), "deny -> allow")}
    assert [(c.source, c.action, c.target) for c in d.cells] == [("research", "open-url", "social")]
    assert d.unchanged_cells == d.total_cells - 1


def test_a_moved_default_target_runs_elsewhere_and_is_wider():
    old = rule("open-url", target="@default", default_target="research", decision="ask")
    new = rule("open-url", target="@default", default_target="social", decision="ask")
    d, found = changes(old, new)
    assert kinds(found) == {(("research", "open-url", None), "runs on social (was research)")}
    assert d.newly_allowed


def test_a_deny_in_front_only_narrows_and_proves_it():
    old = rule("open-url", {"url": '{ domain = "a.org" }'})
    new = rule("open-url", {"url": '{ prefix = "https://a.org/private/" }'}, decision="deny") + old
    d, found = changes(old, new)
    assert {k for _, k, _, _ in found} == {"allow -> deny"}
    assert all(c.none_wider and not c.none_narrower for c in d.cells)


def test_a_rule_moved_to_another_line_changes_no_cell():
    text = rule("open-url")
    d, found = changes(text, "\n\n# moved\n" + text)
    assert d.cells == [] and found == []


# --- the tool: exit codes and output ----------------------------------------------------


@pytest.fixture
def config(tmp_path):
    etc = tmp_path / "etc"
    (etc / "policy.d").mkdir(parents=True)
    (etc / "workloads.toml").write_text('[workloads.research]\nuser = "root"\n')
    (etc / "policy.d" / "10.toml").write_text(rule("open-url", decision="ask"))
    os.chmod(etc, 0o755)
    return etc


def write_new(tmp_path, text):
    new = tmp_path / "new.d"
    new.mkdir()
    (new / "10.toml").write_text(text)
    return new


def test_the_tool_exits_zero_when_nothing_is_newly_allowed(config, tmp_path):
    out = io.StringIO()
    new = write_new(tmp_path, rule("open-url", decision="deny"))
    assert policy_tools.diff(config, new, json=False, out=out) == 0
    text = out.getvalue()
    assert "narrower allow" not in text and "ask -> deny" in text
    assert "nothing is newly allowed" in text


def test_the_tool_exits_one_when_something_is_and_shows_the_witness(config, tmp_path):
    out = io.StringIO()
    new = write_new(tmp_path, rule("open-url"))
    assert policy_tools.diff(config, new, json=False, out=out) == 1
    assert 'WIDER    ask -> allow: url="http://a"' in out.getvalue()


def test_the_tool_exits_two_when_a_policy_does_not_load(config, tmp_path):
    out = io.StringIO()
    new = write_new(tmp_path, rule("status"))  # @self on status
    assert policy_tools.diff(config, new, json=False, out=out) == 2
    assert "the new policy does not load" in out.getvalue()


def test_json_output_carries_every_changed_cell(config, tmp_path):
    out = io.StringIO()
    new = write_new(tmp_path, rule("open-url"))
    assert policy_tools.diff(config, new, json=True, out=out) == 1
    data = json.loads(out.getvalue())
    assert data["newly_allowed"] is True
    cells = {(c["source"], c["action"], c["target"]) for c in data["cells"]}
    assert cells == {("research", "open-url", None), ("research", "open-url", "research")}
    change = data["cells"][0]["changes"][0]
    assert change["kind"] == "ask -> allow" and change["params"] == {"url": "http://a"}


def test_reload_diff_shows_the_change_and_asks(config):
    in_force = [("policy.d/10.toml", rule("open-url", decision="deny"))]
    out = io.StringIO()
    asked = []
    go = policy_tools.reload_diff(
        config, in_force, out=out, confirm=lambda q: asked.append(q) or "y"
    )
    assert go and asked == ["reload this policy? [y/N] "]
    assert "deny -> ask" in out.getvalue()
    assert not policy_tools.reload_diff(config, in_force, out=io.StringIO(), confirm=lambda q: "")
