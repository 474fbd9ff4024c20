"""The daemon's own surfaces, seen from a workload user: closed."""

from __future__ import annotations

import errno
import os

import pytest

from tests.helpers import rig
from tests.helpers.hide_dir import hiding_journald
from tests.helpers.rig import as_euid, call
from tests.helpers.rules import rule

POLICY = rule("status") + rule("open-url", "w", "ask", "@self", timeout=1, grant="always")


@pytest.fixture(scope="module")
def daemon_and_user(make_user, make_daemon):
    user = make_user()
    daemon = make_daemon(
        {"w": user},
        {"10.toml": POLICY},
        '[server]\nsocket_group = "cvt-no-such-group"\n[executors.open-url]\n'
        'argv = ["/bin/true", "{url}"]\n',
        wrapper=hiding_journald(),  # so the fallback log holds records
    )
    # Leave something in each file: a pending ask that timed out, records in the fallback.
    call(daemon.intents, user, {"action": "open-url", "url": "https://e.example/"})
    return daemon, user


def _opens(user: rig.User, path: os.PathLike[str] | str, flags: int) -> int:
    """0 if `user` can open `path` with `flags`, else the errno."""
    with as_euid(user.uid, user.gid):
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            return exc.errno or -1
        os.close(fd)
        return 0


@pytest.mark.reliability("isolation", "workloads cannot read the state directory")
def test_a_workload_cannot_read_the_state_directory_or_its_files(daemon_and_user):
    daemon, user = daemon_and_user
    state = daemon.root / "state"
    files = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.name == "audit-chain.json" for p in files), files
    assert _opens(user, state, os.O_RDONLY | os.O_DIRECTORY) == errno.EACCES
    for path in files:
        assert _opens(user, path, os.O_RDONLY) == errno.EACCES, path


@pytest.mark.reliability("isolation", "workloads cannot read or write the fallback log")
def test_a_workload_cannot_read_or_write_the_fallback_log(daemon_and_user):
    daemon, user = daemon_and_user
    assert daemon.fallback.exists() and daemon.fallback_records()
    assert _opens(user, daemon.fallback, os.O_RDONLY) == errno.EACCES
    assert _opens(user, daemon.fallback, os.O_WRONLY | os.O_APPEND) == errno.EACCES
    assert _opens(user, daemon.fallback.parent, os.O_RDONLY | os.O_DIRECTORY) == errno.EACCES


@pytest.mark.reliability("isolation", "workloads cannot connect to control.sock")
def test_a_workload_cannot_connect_to_the_control_socket(daemon_and_user):
    daemon, user = daemon_and_user
    with pytest.raises(PermissionError):
        rig.connect_as(daemon.control, user)
