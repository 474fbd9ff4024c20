"""sync-out against a real tree full of traps: every one refused with its reason."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.helpers import rig
from tests.helpers.rig import call
from tests.helpers.rules import rule

POLICY = rule("sync-out", "alpha", "allow", "@self")
SETTINGS = """
[server]
socket_group = "cvt-no-such-group"
[executors.sync-out]
max_file_bytes = 1048576
max_request_bytes = 1500000
allow = ["docs/*", "big.bin", "link-out", "dirlink/*", "hard", "fifo", "mid/*", "missing", "deep/*"]
"""
KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + base64.encodebytes(os.urandom(600)).decode()
    + "-----END RSA PRIVATE KEY-----\n"
)


class Tree(NamedTuple):
    """The daemon, the workload's user, its overlay upper layer and its destination."""

    daemon: rig.Daemon
    alpha: rig.User
    upper: Path
    dest: Path


@pytest.fixture(scope="module")
def tree(make_user, make_daemon, journal):
    alpha = make_user()
    holder: dict[str, Path] = {}

    def prepare(root: Path) -> None:
        upper = root / "state" / "overlay" / "alpha" / "upper"
        (upper / "docs").mkdir(parents=True)
        (upper / "docs" / "clean.txt").write_text("hello, host\n")
        (upper / "docs" / "clean2.txt").write_text("second\n")
        (upper / "docs" / "key.pem").write_text(KEY)
        (upper / "docs" / "half.bin").write_bytes(os.urandom(800_000))
        (upper / "docs" / "half2.bin").write_bytes(os.urandom(800_000))
        (upper / "big.bin").write_bytes(b"\0" * (2 * 1024 * 1024))
        (upper / "link-out").symlink_to("/etc/passwd")
        (upper / "dirlink").symlink_to("/etc")
        (upper / "mid").mkdir()
        (upper / "deep" / "a" / "b").mkdir(parents=True)
        (upper / "deep" / "a" / "b" / "clean.txt").write_text("fine\n")
        (upper / "deep" / "a" / "b" / "key.pem").write_text(KEY)
        outside = root / "outside-secret.txt"
        outside.write_text("not the workload's\n")
        os.link(outside, upper / "hard")
        os.mkfifo(upper / "fifo")
        dest = root / "dest"
        dest.mkdir()
        holder["upper"], holder["dest"] = upper, dest

    daemon = make_daemon(
        {"alpha": alpha},
        {"10.toml": POLICY},
        SETTINGS,
        prepare=prepare,
        workload_extra={
            "alpha": 'overlay = { lower = "/srv" }\ndestination = "__DEST__"'.replace(
                "__DEST__", "/x"
            )
        },
    )
    # The destination lives under the daemon's own temp root; point the config at it.
    wl = daemon.config_dir / "workloads.toml"
    wl.write_text(wl.read_text().replace('destination = "/x"', f'destination = "{holder["dest"]}"'))
    daemon.restart()
    return Tree(daemon, alpha, holder["upper"], holder["dest"])


def sync(tree, *paths):
    daemon, alpha = tree.daemon, tree.alpha
    return call(daemon.intents, alpha, {"action": "sync-out", "paths": list(paths)})


def test_a_clean_file_arrives_with_its_sha256(tree, journal):
    reply = sync(tree, "docs/clean.txt")
    assert reply["status"] == "ok", reply
    upper, dest = tree.upper, tree.dest
    data = (upper / "docs" / "clean.txt").read_bytes()
    assert (dest / "docs" / "clean.txt").read_bytes() == data
    [f] = reply["result"]["files"]
    assert f == {
        "path": "docs/clean.txt",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert not [p for p in (dest / "docs").iterdir() if p.name.startswith(".clawvisor-")]
    recs = journal.wait_entries(
        1, CLAWVISOR_ACTION="sync-out", CLAWVISOR_KIND="result", CLAWVISOR_OUTCOME="ok"
    )
    assert any(hashlib.sha256(data).hexdigest() in r.get("CLAWVISOR_DETAIL", "") for r in recs)


def written(root: Path) -> list[Path]:
    """Everything under root but the daemon's own record of what runs (state/running.json,
    rewritten around every execution), which is not the copy's doing."""
    return sorted(p for p in root.rglob("*") if "running.json" not in p.name)


@pytest.mark.parametrize(
    "path, why",
    [
        ("link-out", "link-out: is a symlink"),
        ("dirlink/passwd", "'dirlink' is a symlink or not a directory"),
        ("hard", "hard: has 2 hard links"),
        ("docs/key.pem", "looks like it holds secrets (Private Key on line 1"),
        ("big.bin", "2097152 bytes is over the cap of 1048576"),
        ("fifo", "fifo: not a regular file"),
        ("notlisted.txt", "not in the sync-out allowlist"),
        ("missing", "missing: does not exist"),
        ("mid/../../x", ".."),
    ],
)
@pytest.mark.reliability("isolation", "sync-out traps write nothing anywhere")
def test_traps_are_refused_with_their_reason(tree, path, why):
    dest = tree.dest
    before = written(dest.parent)
    reply = sync(tree, path)
    assert reply["status"] == "error", reply
    assert why in reply["error"]["message"], reply["error"]["message"]
    assert not (dest / path).exists()
    assert written(dest.parent) == before  # nothing written, inside or out
    assert not any(p.name.startswith(".clawvisor-") for p in dest.rglob("*"))


def test_a_refused_request_leaves_no_directory_it_made_for_its_files(tree):
    dest = tree.dest
    assert not (dest / "deep").exists()
    reply = sync(tree, "deep/a/b/clean.txt", "deep/a/b/key.pem")
    assert "secrets" in reply["error"]["message"]
    assert not (dest / "deep").exists()
    ok = sync(tree, "deep/a/b/clean.txt")
    assert ok["status"] == "ok", ok
    assert (dest / "deep" / "a" / "b" / "clean.txt").read_text() == "fine\n"
    shutil.rmtree(dest / "deep")


def test_a_request_is_all_or_nothing(tree):
    reply = sync(tree, "docs/clean2.txt", "docs/key.pem")
    assert "secrets" in reply["error"]["message"]
    assert not (tree[3] / "docs" / "clean2.txt").exists()


def test_the_per_request_cap_counts_every_file(tree):
    reply = sync(tree, "docs/half.bin", "docs/half2.bin")
    assert "over the cap" in reply["error"]["message"]
    assert not (tree[3] / "docs" / "half.bin").exists()


def test_nothing_outside_the_destination_was_written(tree):
    dest = tree.dest
    root = dest.parent
    assert (root / "outside-secret.txt").read_text() == "not the workload's\n"
    names = {str(p.relative_to(dest)) for p in dest.rglob("*")}
    assert names <= {"docs", "docs/clean.txt"}
    shutil.rmtree(dest / "docs", ignore_errors=True)


def test_every_file_of_a_100_file_request_is_in_the_trail_with_its_hash(tree, journal):
    """Its params and its result are longer than one record's field (params_cap): both
    are written whole, in as many records as it takes."""
    daemon, alpha, upper, dest = tree.daemon, tree.alpha, tree.upper, tree.dest
    names = [f"docs/many-{n:03d}-{'x' * 40}.txt" for n in range(100)]
    for n, name in enumerate(names):
        (upper / name).write_text(f"file {n}\n")
    rid = f"hundred-{os.urandom(4).hex()}"
    reply = call(daemon.intents, alpha, {"action": "sync-out", "paths": names}, rid=rid)
    assert reply["status"] == "ok", reply
    recs = journal.wait_entries(10, CLAWVISOR_INTENT_ID=rid, CLAWVISOR_CHAIN=daemon.chain)

    def joined(kind: str) -> dict | list:
        parts = [
            r for r in recs if r.get("CLAWVISOR_OUTCOME") == "part" and r["CLAWVISOR_KIND"] == kind
        ]
        assert parts, f"no {kind} parts"
        return json.loads("".join(r["CLAWVISOR_DETAIL"] for r in parts))

    params = joined("decision")
    assert params["paths"] == names
    result = joined("result")
    hashes = {f["path"]: f["sha256"] for f in result["files"]}
    assert len(hashes) == 100
    for n, name in enumerate(names):
        assert hashes[name] == hashlib.sha256(f"file {n}\n".encode()).hexdigest()
    assert next(r for r in recs if r.get("CLAWVISOR_FINAL") == "1")["CLAWVISOR_KIND"] == "result"
    shutil.rmtree(dest / "docs", ignore_errors=True)
