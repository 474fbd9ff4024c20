"""Each workload uid has its own intents socket beside the shared one: only it can reach
it, the client library uses it, and it follows the workloads through reloads."""

from __future__ import annotations

import os
import stat
import subprocess
from typing import NamedTuple

import pytest

from tests.helpers import rig
from tests.helpers.rig import call, connect_as
from tests.helpers.rules import rule

POLICY = rule("status")


def own(daemon: rig.Daemon, user: rig.User) -> os.PathLike[str]:
    return daemon.intents.parent / "by-uid" / f"{user.uid}.sock"


class Two(NamedTuple):
    """A daemon with two workloads' users."""

    daemon: rig.Daemon
    a: rig.User
    b: rig.User


@pytest.fixture(scope="module")
def two(make_user, make_daemon):
    a, b = make_user(), make_user()
    return Two(make_daemon({"a": a, "b": b}, {"10.toml": POLICY}), a, b)


def test_each_workload_uid_has_its_own_socket_only_it_can_open(two):
    daemon, a, b = two.daemon, two.a, two.b
    for user in (a, b):
        st = os.stat(own(daemon, user))
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == user.uid
    with pytest.raises(PermissionError):
        connect_as(own(daemon, a), b)


def test_a_request_on_its_own_socket_is_identified_by_the_kernel_as_always(two):
    daemon, a = two.daemon, two.a
    reply = call(own(daemon, a), a, {"action": "status"})
    assert reply["status"] == "ok" and reply["result"]["workloads"] == ["a"]


def test_the_client_library_uses_the_callers_own_socket(two):
    daemon, a = two.daemon, two.a
    code = (
        "import sys; from supervisor.wire.calls import connect_unix; "
        "s = connect_unix(sys.argv[1], 5); print(s.getpeername())"
    )
    out = subprocess.run(
        [str(rig.VENV_BIN / "python"), "-c", code, str(daemon.intents)],
        capture_output=True,
        text=True,
        check=True,
        **rig.as_user(a),
    )
    assert out.stdout.strip() == str(own(daemon, a))


def test_the_shared_socket_still_serves_every_workload(two):
    daemon, b = two.daemon, two.b
    assert call(daemon.intents, b, {"action": "status"})["status"] == "ok"


def test_sockets_follow_the_workloads_through_a_reload_and_go_at_stop(make_user, make_daemon):
    a, b = make_user(), make_user()
    daemon = make_daemon({"a": a}, {"10.toml": POLICY})
    assert os.path.exists(own(daemon, a)) and not os.path.exists(own(daemon, b))
    (daemon.config_dir / "workloads.toml").write_text(f'[workloads.b]\nuser = "{b.name}"\n')
    reloaded = rig.reload(daemon)
    assert reloaded.returncode == 0, reloaded.stderr
    assert os.path.exists(own(daemon, b)) and not os.path.exists(own(daemon, a))
    assert call(own(daemon, b), b, {"action": "status"})["status"] == "ok"
    daemon.stop()
    assert not os.path.exists(own(daemon, b))


def test_the_shared_sockets_acl_follows_the_workloads_through_a_reload(make_user, make_daemon):
    # A hand-started daemon (no gateway group): the shared socket admits workload users
    # by ACL, which a reload must keep exact: the added one in, the removed one out.
    a, b = make_user(), make_user()
    daemon = make_daemon({"a": a}, {"10.toml": POLICY})
    with pytest.raises(PermissionError):
        connect_as(daemon.intents, b).close()
    (daemon.config_dir / "workloads.toml").write_text(f'[workloads.b]\nuser = "{b.name}"\n')
    reloaded = rig.reload(daemon)
    assert reloaded.returncode == 0, reloaded.stderr
    assert call(daemon.intents, b, {"action": "status"})["status"] == "ok"
    with pytest.raises(PermissionError):
        connect_as(daemon.intents, a).close()
