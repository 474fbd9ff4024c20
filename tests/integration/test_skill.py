"""`clawvisor skill` as the workload user, the same from the policy files, and refusals."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers import rig
from tests.helpers.rules import rule, starts

POLICY = rule("capabilities", "alpha") + rule("search", "alpha") + rule("install-app", "*", "ask")


class Env(NamedTuple):
    """The daemon, two workload users, and the skills folder written to."""

    daemon: rig.Daemon
    alpha: rig.User
    beta: rig.User
    out: Path


@pytest.fixture(scope="module")
def env(make_user, make_daemon):
    alpha, beta = make_user(), make_user()
    daemon = make_daemon({"alpha": alpha, "beta": beta}, {"10.toml": POLICY})
    out = rig.shared_tmpdir("clawvisor-skill-")
    out.chmod(0o1777)
    yield Env(daemon, alpha, beta, out)
    shutil.rmtree(out, ignore_errors=True)


def clawvisor(*argv: str, user=None) -> subprocess.CompletedProcess[str]:
    extra = rig.as_user(user) if user is not None else {}
    return subprocess.run(
        [str(rig.CLAWVISOR), *argv], capture_output=True, text=True, timeout=60, **extra
    )


def test_skill_written_as_the_workload_user_describes_exactly_its_actions(env):
    daemon, alpha, out = env.daemon, env.alpha, env.out
    done = clawvisor("skill", "--socket", str(daemon.intents), "--out", str(out / "a"), user=alpha)
    assert done.returncode == 0, done.stderr
    text = (out / "a" / "clawvisor" / "SKILL.md").read_text()
    sections = [ln[3:] for ln in text.splitlines() if ln.startswith("## ")]
    assert sections == ["search", "install-app"]
    assert "clawvisor send search query=<query>" in text
    assert "clawvisor send install-app package=<package>" in text
    assert f"policy.d/10.toml:{starts(POLICY, 2)}" in text and "waits for a human" in text


def test_skill_from_the_policy_files_matches_what_the_daemon_says(env):
    daemon, alpha, out = env.daemon, env.alpha, env.out
    live = clawvisor(
        "skill", "--socket", str(daemon.intents), "--out", str(out / "live"), user=alpha
    )
    offline = clawvisor(
        "skill",
        "--config-dir",
        str(daemon.config_dir),
        "--workload",
        "alpha",
        "--out",
        str(out / "offline"),
    )
    assert live.returncode == 0 and offline.returncode == 0, live.stderr + offline.stderr
    assert (out / "live" / "clawvisor" / "SKILL.md").read_text() == (
        out / "offline" / "clawvisor" / "SKILL.md"
    ).read_text()


def test_a_workload_not_allowed_to_see_its_rights_gets_no_skill_and_a_clear_message(env):
    daemon, beta, out = env.daemon, env.beta, env.out
    done = clawvisor("skill", "--socket", str(daemon.intents), "--out", str(out / "b"), user=beta)
    assert done.returncode == 1
    assert "policy_denied" in done.stderr
    assert not (out / "b").exists()


def test_the_mcp_bridge_refuses_to_start_when_the_workload_may_not_see_its_rights(env):
    daemon, beta = env.daemon, env.beta
    done = subprocess.run(
        [str(rig.CLAWVISOR), "mcp", "--socket", str(daemon.intents)],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        **rig.as_user(beta),
    )
    assert done.returncode == 2
    assert "refused to list this workload's actions" in done.stderr
    assert "policy_denied" in done.stderr
