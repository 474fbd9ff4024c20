"""`clawvisor openclaw setup`: the workload's OpenClaw config made to go through clawvisor
only, read and written as the workload's user, idempotent, and `--check` naming bypasses."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers import rig
from tests.helpers.rules import rule

POLICY = rule("status", "oc") + rule("open-url", "oc", "ask", "@self", timeout=300)


class Box(NamedTuple):
    root: Path
    user: rig.User
    file: Path

    def setup(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(rig.CLAWVISOR),
                "openclaw",
                "setup",
                "--config-dir",
                str(self.root / "etc"),
                "--state-dir",
                str(self.root / "state"),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def write_as_user(self, data: object) -> None:
        self.file.parent.mkdir(mode=0o700, exist_ok=True)
        self.file.write_text(json.dumps(data))
        for p in (self.file.parent, self.file):
            os.chown(p, self.user.uid, self.user.gid)


@pytest.fixture
def box(make_user):
    root = rig.shared_tmpdir("clawvisor-oc-")
    homes = root / "homes"
    homes.mkdir()
    user = make_user()
    rig.write_config(
        root,
        workloads={"oc": user},
        policy={"10.toml": POLICY},
        settings=f'[provision]\nhome_root = "{homes}"\n',
    )
    (homes / "oc").mkdir(mode=0o755)
    home = homes / "oc" / "work"  # the gateway's HOME, as provision makes it
    home.mkdir(mode=0o700)
    os.chown(home, user.uid, user.gid)
    yield Box(root, user, home / ".openclaw" / "openclaw.json")
    rig.cleanup_root(root)


def test_setup_writes_the_server_entry_and_turns_host_tools_off_keeping_the_rest(box):
    box.write_as_user({"models": {"default": "local/qwen"}, "tools": {"allow": ["exec", "x"]}})
    out = box.setup()
    assert out.returncode == 0, out.stderr
    cfg = json.loads(box.file.read_text())
    assert cfg["models"] == {"default": "local/qwen"}  # the user's own settings stay
    entry = cfg["mcp"]["servers"]["clawvisor"]
    assert entry["command"] == "clawvisor" and entry["args"] == ["mcp"]
    assert entry["requestTimeoutMs"] == (300 + 30) * 1000  # the longest ask plus a margin
    assert entry["env"] == {"OPENCLAW_CHILD_OOM_SCORE_ADJ": "0"}
    assert cfg["tools"]["profile"] == "messaging"
    assert set(cfg["tools"]["deny"]) >= {"group:runtime", "group:fs", "group:web", "group:ui"}
    assert cfg["tools"]["allow"] == ["x"]  # exec is no longer let through
    st = box.file.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (box.user.uid, 0o600)


def test_setup_is_idempotent(box):
    assert box.setup().returncode == 0
    first = box.file.read_bytes()
    again = box.setup()
    assert again.returncode == 0 and "unchanged" in again.stdout
    assert box.file.read_bytes() == first


def test_print_shows_the_config_and_writes_nothing(box):
    out = box.setup("--print")
    assert out.returncode == 0
    assert json.loads(out.stdout)["mcp"]["servers"]["clawvisor"]["args"] == ["mcp"]
    assert not box.file.exists()


def test_check_names_each_bypass_then_passes_after_setup(box):
    box.write_as_user(
        {
            "tools": {"profile": "coding"},
            "mcp": {"servers": {"clawvisor": {"requestTimeoutMs": 60000}}},
        }
    )
    found = box.setup("--check")
    assert found.returncode == 1
    assert "tools.profile is 'coding'" in found.stdout
    assert "requestTimeoutMs is 60000 ms, below" in found.stdout
    assert box.setup().returncode == 0
    clean = box.setup("--check")
    assert clean.returncode == 0 and "only way" in clean.stdout


def test_a_planted_symlink_reaches_only_what_the_workload_could(box):
    secret = box.root / "root-only"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    box.file.parent.mkdir(mode=0o700)
    os.chown(box.file.parent, box.user.uid, box.user.gid)
    box.file.symlink_to(secret)
    printed = box.setup("--print")
    assert "root's secret" not in printed.stdout + printed.stderr
    assert printed.returncode == 2
    written = box.setup()
    assert written.returncode == 2
    assert secret.read_text() == "root's secret\n" and secret.stat().st_uid == 0


def test_setup_writes_where_the_gateway_unit_has_home_in_a_home_as_provision_makes_it(box):
    home = box.file.parent.parent.parent  # root's, 0700, the workload let in by ACL
    os.chown(home, 0, 0)
    home.chmod(0o700)
    subprocess.run(["setfacl", "-m", f"u:{box.user.uid}:rx", str(home)], check=True)
    assert box.file.parent.parent == home / "work"  # the unit's HOME=
    out = box.setup()
    assert out.returncode == 0, out.stderr
    st = box.file.parent.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (box.user.uid, 0o700)
    assert box.file.stat().st_uid == box.user.uid


def test_a_planted_fifo_or_a_deeply_nested_file_is_an_error_not_a_hang_or_a_crash(box):
    box.file.parent.mkdir(mode=0o700)
    os.chown(box.file.parent, box.user.uid, box.user.gid)
    os.mkfifo(box.file)
    os.chown(box.file, box.user.uid, box.user.gid)
    started = time.monotonic()
    fifo = box.setup("--print")
    assert fifo.returncode == 2 and time.monotonic() - started < 20
    assert "not a regular file" in fifo.stderr
    box.file.unlink()
    box.write_as_user(json.loads("[" * 50 + "]" * 50))  # valid, shallow enough to write
    box.file.write_text("[" * 100_000 + "]" * 100_000)
    deep = box.setup("--check")
    assert deep.returncode == 2 and "Traceback" not in deep.stderr


def test_check_sees_an_agent_that_takes_the_host_tools_back(box):
    assert box.setup().returncode == 0
    cfg = json.loads(box.file.read_text())
    cfg["agents"] = {"list": [{"id": "main", "tools": {"profile": "full"}}]}
    box.write_as_user(cfg)
    out = box.setup("--check")
    assert out.returncode == 1 and "agents.list[0].tools" in out.stdout
