"""The README's policy examples run, and mean what their comments say."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from policy import evaluate, load_policy_texts, runs_on
from policy.constraints import parse_constraint
from supervisor import policy_tools
from supervisor.actions import POLICY_CATALOG
from tests.helpers.rules import rule

README = Path(__file__).resolve().parents[2] / "README.md"
WORKLOADS = {
    "research": frozenset({"trusted"}),
    "social": frozenset(),
    "sys-clawd": frozenset(),
    "dom0": frozenset(),
}


def section() -> str:
    text = README.read_text()
    return text[
        text.index("`policy.d/*.toml` and `policy.d/*.policy`") : text.index(
            "`clawvisor.toml` (all optional)"
        )
    ]


def blocks(marker: str) -> list[str]:
    parts = section().split("```")
    return [b.split("\n", 1)[1] for b in parts[1::2] if marker in b]


def load(*files: tuple[str, str]):
    return load_policy_texts(list(files), POLICY_CATALOG, WORKLOADS)


def test_the_rule_example_asks_for_wikipedia_only_with_its_timeout_and_rate():
    [block] = blocks('approvers = ["desktop", "cli"]')
    p = load(("10.toml", block))
    v = evaluate(p, "research", "open-url", None, {"url": "https://en.wikipedia.org/wiki/X"})
    assert v.decision == "ask"
    assert v.rule.timeout == 60 and v.rule.rate.text == "10/min"
    assert v.rule.approvers == ("desktop", "cli")
    assert (
        evaluate(p, "research", "open-url", None, {"url": "https://evil.example/"}).decision
        == "deny"
    )
    assert (
        evaluate(p, "research", "status", None, {}).decision == "deny"
    )  # a group alone allows nothing


def test_the_typed_params_example_means_its_comments():
    [block] = blocks("updates only")
    p = load(("10.toml", block))
    egress = {"host": "security.debian.org", "ttl": 600}
    assert (
        evaluate(p, "research", "egress-allow", None, {**egress, "port": 443}).decision == "allow"
    )
    assert evaluate(p, "research", "egress-allow", None, egress).decision == "deny"  # every port
    assert (
        evaluate(p, "research", "egress-allow", None, {**egress, "port": 443, "ttl": 7200}).decision
        == "deny"
    )
    assert (
        evaluate(p, "research", "sync-out", None, {"paths": ["exports/a", "exports/b/c"]}).decision
        == "ask"
    )
    assert (
        evaluate(p, "research", "sync-out", None, {"paths": ["exports/a", "home/x"]}).decision
        == "deny"
    )
    run = {"script": "git-pull"}
    assert evaluate(p, "research", "run-ops", None, {**run, "args": ["origin"]}).decision == "allow"
    assert (
        evaluate(p, "research", "run-ops", None, {**run, "args": ["origin", "-f"]}).decision
        == "deny"
    )
    assert evaluate(p, "research", "run-ops", None, {**run, "args": []}).decision == "deny"


def test_the_qrexec_example_means_its_comments():
    [block] = blocks("ClawdWrite")
    groups = re.search(r"holds: (\[groups\].*)", block).group(1)
    groups_toml = groups.replace("] ", "]\n", 1).replace("], ", "]\n")
    p = load(("00-groups.toml", groups_toml), ("10.policy", block))
    assert evaluate(p, "sys-clawd", "search", "dom0", {"query": "x"}).decision == "allow"
    assert evaluate(p, "sys-clawd", "search", None, {"query": "x"}).decision == "deny"
    url = {"url": "https://example.org/"}
    v = evaluate(p, "sys-clawd", "open-url", None, url)
    assert v.decision == "ask" and v.rule_name == "10.policy:4"
    assert runs_on(p, v.rule, "sys-clawd", "open-url", None) == "dom0"
    assert evaluate(p, "sys-clawd", "open-url", "dom0", url).rule_name == "10.policy:4"
    v = evaluate(p, "social", "open-url", None, url)
    assert v.rule_name == "10.policy:5" and v.rule.timeout == 60
    assert runs_on(p, v.rule, "social", "open-url", None) == "research"


def test_the_test_example_loads_and_passes():
    [block] = blocks("[[test]]")
    allow = rule("open-url", "research", params={"url": '{ domain = "a.org" }'}, dotted=True)
    load(("10.toml", allow + block))


def test_the_glob_row_matches_what_it_says():
    row = next(ln for ln in section().splitlines() if ln.startswith("| `glob` |"))
    spec = re.search(r"`(\{ glob = .*? \})`", row).group(1)
    assert spec == '{ glob = "https://*.a.org/*" }'
    c = parse_constraint(
        "url", POLICY_CATALOG["open-url"].types["url"], {"glob": "https://*.a.org/*"}
    )
    for url in re.findall(r"matches `([^`]+)`", row):
        assert c.matches(url), url
    never = row.split("never ", 1)[1]
    for url in re.findall(r"`(https?://[^`]+)`", never):
        assert not c.matches(url), url


@pytest.mark.parametrize(
    "row, param, action",
    [
        ("exact", "url", "open-url"),
        ("`regex`", "query", "search"),
        ("`prefix`", "url", "open-url"),
        ("`domain`", "url", "open-url"),
        ("`range`", "port", "egress-allow"),
        ("`one_of`", "query", "search"),
        ("`under`", "paths", "sync-out"),
    ],
)
def test_every_constraint_row_loads_on_a_param_it_is_for(row, param, action):
    line = next(ln for ln in section().splitlines() if ln.startswith(f"| {row} |"))
    example = re.search(r"\| `([^`]+)` \|", line[len(row) + 3 :]).group(1)
    value = example.split(" = ", 1)[1] if example.startswith("url = ") else example
    load(("10.toml", rule(action, "research", "allow", "@self", {param: value}, dotted=True)))


OLD = rule(
    "open-url",
    "research",
    "allow",
    "@self",
    params={"url": '{ glob = "https://*.wikipedia.org/*" }'},
    dotted=True,
) + rule(
    "egress-allow",
    "research",
    "allow",
    "@self",
    params={"host": '"security.debian.org"'},
    dotted=True,
)
NEW = rule(
    "open-url",
    "research",
    "allow",
    "@self",
    params={"url": '{ domain = "*.wikipedia.org" }'},
    dotted=True,
) + rule(
    "egress-allow",
    "research",
    "allow",
    "@self",
    params={"host": '"security.debian.org"', "port": "443"},
    dotted=True,
)


def test_the_diff_shown_is_the_diff_the_tool_prints(tmp_path):
    etc = tmp_path / "etc"
    (etc / "policy.d").mkdir(parents=True)
    (etc / "workloads.toml").write_text(
        '[workloads.research]\nuser = "daemon"\ntags = ["trusted"]\n'
        '[workloads.social]\nuser = "bin"\n'
    )
    (etc / "policy.d" / "30-user.toml").write_text(OLD)
    new = tmp_path / "new"
    new.mkdir()
    (new / "30-user.toml").write_text(NEW)
    os.chmod(etc, 0o755)
    out = io.StringIO()
    assert policy_tools.diff(etc, new, json=False, out=out) == 1
    printed = out.getvalue().splitlines()
    [block] = [b for b in section().split("```")[1::2] if "$ clawvisor policy diff" in b]
    shown = block.split("\n")[2:-1]
    assert printed[0] == f"policy diff {etc}/policy.d -> {new}: " + shown[0].split(": ", 1)[1]
    cut = shown.index("...")
    assert printed[1:cut] == shown[1:cut]
    assert printed[len(printed) - (len(shown) - cut - 1) :] == shown[cut + 1 :]
