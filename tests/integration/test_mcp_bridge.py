"""`clawvisor mcp` driven by the MCP SDK's own client over stdio, run as each workload user."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.helpers import rig
from tests.helpers.rig import connect_as, read_lines
from tests.helpers.rules import rule, starts

RECORDER = Path(__file__).resolve().parents[1] / "helpers" / "recorder.py"

POLICY = (
    rule("capabilities")
    + rule("search", "alpha", "deny", params={"query": '{ prefix = "secret" }'})
    + rule("search", "alpha")
    + rule("install-app", "alpha", "ask", timeout=60)
    + rule("notify", "beta")
    + rule("install-app", "beta", "ask", timeout=1)
    + rule("open-url", "*", "deny")
)


def rule_line(nth: int) -> int:
    return starts(POLICY, nth)


class Env:
    def __init__(self, daemon, alpha, beta, rec: Path, log: Path):
        self.daemon, self.alpha, self.beta, self.rec, self.log = daemon, alpha, beta, rec, log

    def records(self, name: str) -> list[dict]:
        path = self.rec / name
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def control(self, op: str, **fields) -> dict:
        with connect_as(self.daemon.control, None) as sock:
            sock.sendall(json.dumps({"id": "c1", "op": op, **fields}).encode() + b"\n")
            return read_lines(sock, 1)[0]

    def pending(self, action: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.control("pending")["result"]["pending"]:
                if p["action"] == action:
                    return p
            time.sleep(0.05)
        raise AssertionError(f"no pending {action}")

    def call(self, user, tool: str, arguments: dict):
        """One tool call in a fresh session as `user`."""

        async def scenario():
            async with self.session(user) as s:
                return await s.call_tool(tool, arguments)

        return asyncio.run(scenario())

    @asynccontextmanager
    async def session(self, user, *extra: str, daemon=None, handler=None):
        """An MCP client session with `clawvisor mcp` running as `user`."""
        daemon = daemon or self.daemon
        params = StdioServerParameters(
            command="/usr/bin/setpriv",
            args=[
                f"--reuid={user.uid}",
                f"--regid={user.gid}",
                "--clear-groups",
                str(rig.CLAWVISOR),
                "mcp",
                "--socket",
                str(daemon.intents),
                *extra,
            ],
            env={"HOME": "/nonexistent"},
        )
        with self.log.open("a") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write, message_handler=handler) as session:
                    await session.initialize()
                    yield session


@pytest.fixture(scope="module")
def env(make_user, make_daemon, journal):
    rec = rig.shared_tmpdir("clawvisor-mcp-")
    rec.chmod(0o1777)
    alpha, beta = make_user(), make_user()

    def argv(name: str, *template: str) -> str:
        return json.dumps(["/usr/bin/python3", str(RECORDER), str(rec / name), *template])

    settings = f"""
[server]
socket_group = "cvt-no-such-group"
[executors.search]
argv = {argv("search.jsonl", "{url}")}
url_template = "https://search.example/?q={{query}}"
[executors.install-app]
argv = {argv("apt.jsonl", "install", "-y", "--", "{package}")}
"""
    daemon = make_daemon({"alpha": alpha, "beta": beta}, {"10.toml": POLICY}, settings)
    yield Env(daemon, alpha, beta, rec, rec / "mcp.stderr")
    shutil.rmtree(rec, ignore_errors=True)


def test_tools_are_exactly_what_each_workloads_policy_could_allow_or_ask(env):
    async def names(user) -> dict[str, str]:
        async with env.session(user) as s:
            return {t.name: t.description or "" for t in (await s.list_tools()).tools}

    alpha = asyncio.run(names(env.alpha))
    beta = asyncio.run(names(env.beta))
    # open-url is denied outright, status has no rule, capabilities is the bridge's own.
    assert set(alpha) == {"search", "install-app"}
    assert set(beta) == {"notify", "install-app"}


def test_tool_descriptions_say_what_allows_and_what_asks_with_the_rules(env):
    async def tools():
        async with env.session(env.alpha) as s:
            return {t.name: t for t in (await s.list_tools()).tools}

    found = asyncio.run(tools())
    search = found["search"].description
    assert (
        f"is refused when target: any workload or none; query starts with 'secret' "
        f"[rule policy.d/10.toml:{rule_line(2)}]" in search
    )
    assert (
        f"runs at once when target: any workload or none [rule policy.d/10.toml:"
        f"{rule_line(3)}]" in search
    )
    assert "waits for a human to approve" in found["install-app"].description
    assert found["search"].input_schema["required"] == ["query"]
    assert found["install-app"].annotations.destructive_hint is True


def test_an_allowed_call_returns_the_executors_result(env):
    result = env.call(env.alpha, "search", {"query": "debian trixie"})
    assert not result.is_error, result.content
    assert result.structured_content["action"] == "search"
    assert result.structured_content["url"] == "https://search.example/?q=debian+trixie"
    [rec] = env.records("search.jsonl")[-1:]
    assert rec["args"] == ["https://search.example/?q=debian+trixie"]
    assert rec["uid"] == env.alpha.uid


def test_a_denied_call_is_a_tool_error_naming_the_rule_and_saying_retrying_will_not_help(env):
    before = len(env.records("search.jsonl"))

    result = env.call(env.alpha, "search", {"query": "secret plans"})
    assert result.is_error
    text = result.content[0].text
    assert f"rule policy.d/10.toml:{rule_line(2)}" in text
    assert "policy_denied" in text and "will not change" in text
    assert result.structured_content["decision"] == "deny"
    assert result.structured_content["rule"] == f"policy.d/10.toml:{rule_line(2)}"
    assert len(env.records("search.jsonl")) == before


def test_a_call_no_rule_allows_is_refused_by_the_default_rule(env):
    result = env.call(env.beta, "search", {"query": "anything"})
    assert result.is_error
    assert result.structured_content["rule"] == "default"
    assert "Retrying" in result.content[0].text


def call_and_answer(env, package: str, allow: bool):
    """Call install-app as alpha; answer the ask it raises through control.sock."""

    async def scenario():
        async with env.session(env.alpha) as s:
            call = asyncio.create_task(s.call_tool("install-app", {"package": package}))
            pending = await asyncio.to_thread(env.pending, "install-app")
            assert not call.done()  # it waits for the human
            verdict = await asyncio.to_thread(
                env.control,
                "verdict",
                request=pending["id"],
                digest=pending["digest"],
                allow=allow,
            )
            assert verdict["status"] == "ok", verdict
            return await asyncio.wait_for(call, 30)

    return asyncio.run(scenario())


def test_an_ask_approved_through_the_control_socket_completes(env):
    result = call_and_answer(env, "jq", allow=True)
    assert not result.is_error, result.content
    assert result.structured_content["action"] == "install-app"
    assert result.structured_content["package"] == "jq"
    assert env.records("apt.jsonl")[-1]["args"] == ["install", "-y", "--", "jq"]


def test_an_ask_refused_by_a_human_says_so_and_that_retrying_will_not_help(env):
    result = call_and_answer(env, "nmap", allow=False)
    assert result.is_error
    text = result.content[0].text
    assert "approval_denied" in text and "said no" in text and "Do not retry" in text
    assert result.structured_content["decision"] == "ask"


def test_invalid_arguments_come_back_as_a_tool_error_naming_the_param(env):
    result = env.call(env.alpha, "search", {"query": "x", "shell": "id"})
    assert result.is_error
    assert "invalid_params" in result.content[0].text and "shell" in result.content[0].text


def test_an_ask_nobody_answers_says_so_and_that_retrying_will_not_help(env):
    result = env.call(env.beta, "install-app", {"package": "jq"})
    assert result.is_error
    text = result.content[0].text
    assert "approval_timeout" in text and "did not answer in time" in text
    assert "Retrying will not help" in text
    assert result.structured_content["error"]["code"] == "approval_timeout"


def test_the_bridge_reconnects_after_a_daemon_restart(env, make_daemon):
    daemon = make_daemon({"alpha": env.alpha}, {"10.toml": POLICY})
    bridge = Env(daemon, env.alpha, env.beta, env.rec, env.log)

    async def scenario():
        async with bridge.session(env.alpha) as s:
            before = await s.call_tool("search", {"query": "secret one"})
            await asyncio.to_thread(daemon.restart)
            after = await s.call_tool("search", {"query": "secret two"})
            return before, after

    before, after = asyncio.run(scenario())
    # Both reached a daemon and were decided (denied by the same rule), none was lost.
    for result in (before, after):
        assert result.is_error
        assert result.structured_content["rule"] == f"policy.d/10.toml:{rule_line(2)}"


def test_a_bridge_that_cannot_reach_the_daemon_says_what_to_fix_on_one_stderr_line(tmp_path):
    missing = tmp_path / "no.sock"
    proc = subprocess.run(
        [str(rig.VENV_BIN / "clawvisor"), "mcp", "--socket", str(missing)],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert str(missing) in line and "systemctl status clawvisor-intents.socket" in line


def test_a_reload_pushes_tools_list_changed_and_the_next_list_has_the_new_tool(env, make_daemon):
    import mcp_types as types

    daemon = make_daemon({"beta": env.beta}, {"10.toml": rule("capabilities") + rule("notify")})
    changed = asyncio.Event()

    async def handler(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async def scenario() -> tuple[set[str], set[str], bool]:
        async with env.session(env.beta, daemon=daemon, handler=handler) as s:
            caps = s.server_capabilities
            assert caps is not None and caps.tools is not None and caps.tools.list_changed
            before = {t.name for t in (await s.list_tools()).tools}
            (daemon.config_dir / "policy.d" / "20.toml").write_text(rule("search", "beta"))
            reloaded = await asyncio.to_thread(rig.reload, daemon)
            assert reloaded.returncode == 0
            await asyncio.wait_for(changed.wait(), 15)  # pushed, not polled for
            after = {t.name for t in (await s.list_tools()).tools}
            return before, after, changed.is_set()

    before, after, told = asyncio.run(scenario())
    assert before == {"notify"} and after == {"notify", "search"} and told


def test_a_waiting_ask_sends_progress_notifications_until_it_is_answered(env):
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async def scenario():
        async with env.session(env.alpha, "--progress-every", "0.2") as s:
            call = asyncio.create_task(
                s.call_tool(
                    "install-app", {"package": "progress-pkg"}, progress_callback=on_progress
                )
            )
            p = await asyncio.to_thread(env.pending, "install-app")
            deadline = time.monotonic() + 15
            while len(seen) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            env.control("verdict", request=p["id"], digest=p["digest"], allow=True)
            return await call

    result = asyncio.run(scenario())
    assert not result.is_error
    assert len(seen) >= 2 and seen[0][0] < seen[1][0]  # progress only grows
    assert "a human may have been asked" in (seen[0][1] or "")
