"""install-app with a real apt-get, in simulation mode."""

from __future__ import annotations

import pytest

from tests.helpers.rig import call
from tests.helpers.rules import rule

POLICY = rule("install-app")
SETTINGS = """
[server]
socket_group = "cvt-no-such-group"
[executors.install-app]
argv = ["apt-get", "install", "--simulate", "-y", "--no-install-recommends", "--", "{package}"]
timeout = 120
"""


@pytest.fixture(scope="module")
def apt(make_user, make_daemon):
    user = make_user()
    return make_daemon({"w": user}, {"10.toml": POLICY}, SETTINGS), user


def test_apt_get_simulates_installing_an_installed_package(apt):
    daemon, user = apt
    reply = call(daemon.intents, user, {"action": "install-app", "package": "socat"})
    assert reply["status"] == "ok", reply
    assert "socat is already the newest version" in reply["result"]["output"]


def test_an_unknown_package_is_executor_failed_with_apts_own_words(apt):
    daemon, user = apt
    reply = call(
        daemon.intents, user, {"action": "install-app", "package": "clawvisor-no-such-package"}
    )
    assert reply["error"]["code"] == "executor_failed"
    assert reply["error"]["exit_status"] == 100
    assert "Unable to locate package" in reply["error"]["stderr"]
