"""A real OpenClaw's start-up and turns, through the plugin and through the MCP bridge,
raise no alert from the default triggers (the BPF monitors on, watching its user); what
the defaults exempt for gateways is the OOM wrapper's exact argv prefix, nothing looser."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.helpers import rig
from tests.helpers.model_server import say, tool_call
from tests.helpers.openclaw import daemon_settings, gateway, installed
from tests.helpers.rules import rule
from tests.helpers.stream import Stream

POLICY = rule("capabilities") + rule("notify")


@pytest.fixture(scope="module")
def watched(make_user, make_daemon, journal):
    if not installed():
        pytest.fail("the pinned OpenClaw is not installed: run `make openclaw`")
    homes = rig.shared_tmpdir("clawvisor-ocq-")
    users = {"ocp": make_user(), "ocm": make_user()}
    daemon = make_daemon(
        users,
        {"10.toml": POLICY},
        settings=daemon_settings(homes) + "[monitors]\nenabled = true\n",
    )
    stream = Stream(daemon.control)
    try:
        yield daemon, users, homes, stream
    finally:
        stream.sock.close()
        shutil.rmtree(homes, ignore_errors=True)


@pytest.mark.parametrize("via", ["plugin", "mcp"])
def test_an_openclaw_turn_raises_no_alert_for_its_workload(watched, via):
    daemon, users, homes, stream = watched
    name = "ocp" if via == "plugin" else "ocm"
    user = users[name]
    with gateway(via, user, daemon, homes, name) as g:
        # From here on: installing the plugin is the user's one-off step, not the gateway's.
        time.sleep(1)
        start = len(stream.items)
        tool = "clawvisor_notify" if via == "plugin" else "tool_call"
        args = (
            {"message": "quiet"}
            if via == "plugin"
            else {"id": "clawvisor__notify", "args": {"message": "quiet"}}
        )
        g.model.scenarios["quiet"] = [tool_call(tool, **args), say("done")]
        out = g.turn("quiet")
        assert out.get("final") == "done", out
    # The monitors saw this user's OpenClaw turn (so silence means something) ...
    seen = stream.items[start:]
    assert [i for i in seen if i.get("kind") == "exec" and i.get("uid") == user.uid]
    # ... and no trigger fired for it.
    time.sleep(2)
    alerts = [i for i in stream.items[start:] if "alert" in i and i.get("uid") == user.uid]
    assert alerts == [], sorted(
        {(a["alert"], str(a.get("argv") or a.get("path"))[-60:]) for a in alerts}
    )
