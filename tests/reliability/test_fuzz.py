"""Everything that parses outside input, fed garbage: a typed error or a right answer,
never a crash, never a wrong yes. `--profile full` (make fuzz, make reliability) runs a
million protocol inputs."""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executors import ACTIONS
from policy import PolicyError, evaluate, load_policy_texts
from supervisor.actions import POLICY_CATALOG, normalise_params
from supervisor.agents.desktop import DesktopAgent
from supervisor.agents.telegram import AgentState, TelegramAgent
from supervisor.config import ConfigError, Paths, load_settings_and_specs
from supervisor.triggers import TriggerError, parse_triggers
from supervisor.wire import common, control, intents
from tests.helpers import garbage, rig
from tests.helpers.rig import connect_as, read_lines
from tests.helpers.rules import rule

SEED = 20261124
CODES = set(common.ERROR_CODES)
WORKLOADS = {"alpha": frozenset({"dev"}), "beta": frozenset()}
ACTION_OF = {a.params: name for name, a in ACTIONS.items()}
WHERE = re.compile(r"^[^:\n]+:\d+:\d+: ")


def decode_one(line: bytes) -> None:
    """The daemon's decoding of one line: a Request, or a typed error it can encode."""
    try:
        req = intents.decode_request(line)
    except common.ProtocolError as exc:
        assert exc.code in CODES, exc.code
        reply = common.encode_reply(common.error_reply(exc.request_id, exc.code, exc.message))
        assert len(reply) < 8192 and json.loads(reply)["status"] == "error"
        return
    assert isinstance(req, intents.Request)
    params = intents.intent_params(req.intent)
    normalise_params(ACTION_OF[type(req.intent)], req.intent.target, params)


@pytest.mark.reliability("fuzz", "wire protocol, in process")
def test_protocol_decoder_gives_a_request_or_a_typed_error(profile, row):
    n = garbage.run(profile.fuzz_inputs, SEED, lambda rng: decode_one(garbage.protocol_line(rng)))
    examples = max(200, profile.fuzz_inputs // 500)

    @settings(max_examples=examples, deadline=None, database=None)
    @given(st.binary(max_size=512))
    def bytes_(data: bytes) -> None:
        decode_one(data.replace(b"\n", b" "))

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.sampled_from(garbage.KEYS) | st.text(max_size=8), inner)
            ),
            max_leaves=12,
        )
    )
    def structured(value: Any) -> None:
        decode_one(json.dumps({"id": "h", "intent": value}).encode())
        decode_one(json.dumps(value).encode())

    bytes_()
    structured()
    row.inputs = n + 3 * examples


@pytest.mark.reliability("fuzz", "wire protocol, over the socket")
def test_garbage_over_the_socket_gets_one_typed_reply_per_line(
    make_user, make_daemon, journal, profile, row
):
    user = make_user()
    # Every refused line is to have its own record here, so the per-uid budget for
    # refusals (the hostile rows show it aggregating) is lifted.
    daemon = make_daemon(
        {"w": user},
        {"10.toml": rule("*", "w", "deny")},
        '[server]\nsocket_group = "cvt-no-such-group"\n[audit]\nrejected_burst = 1000000\n',
    )
    rng = random.Random(SEED)
    chain = daemon.chain

    def recorded() -> int:
        return len(rig.chain_field(chain, "CLAWVISOR_SEQ"))

    before = recorded()
    total = 0
    with connect_as(daemon.intents, user, timeout=60) as sock:
        while total < profile.wire_inputs:
            batch = [
                garbage.protocol_line(rng) for _ in range(min(500, profile.wire_inputs - total))
            ]
            # Blank lines are skipped by design (no reply); everything else gets one.
            batch = [ln for ln in batch if ln.strip() and len(ln) < 60000]
            sock.sendall(b"".join(ln + b"\n" for ln in batch))
            replies = read_lines(sock, len(batch), timeout=60)
            assert len(replies) == len(batch)
            assert all(r["status"] in ("error", "denied") for r in replies), replies[:3]
            assert all(r["error"]["code"] in CODES for r in replies)
            total += len(batch)
    assert daemon.alive()
    deadline = time.monotonic() + 60
    while recorded() - before < total and time.monotonic() < deadline:
        time.sleep(0.5)
    row.inputs = row.requests = total
    row.lost = max(0, total - (recorded() - before))
    assert row.lost == 0


@pytest.mark.reliability("fuzz", "every executor's params")
def test_every_executors_params_decode_or_fail_typed(profile, row):
    policy = load_policy_texts(
        [("all.toml", rule("*", "*", "ask"))],
        POLICY_CATALOG,
        WORKLOADS,
    )
    count = 0
    for name, action in ACTIONS.items():
        fields = list(action.params.__struct_fields__)

        def one(rng: random.Random, name: str = name, fields: list[str] = fields) -> None:
            intent: dict[str, object] = {"action": name}
            for f in fields:
                if f != "action" and rng.random() < 0.8:
                    intent[f] = garbage.json_value(rng, 2)
            extra = rng.choice(garbage.KEYS)
            if rng.random() < 0.2 and extra != "action":
                intent[extra] = garbage.json_value(rng, 3)
            line = json.dumps({"id": "p", "intent": intent}).encode()
            try:
                req = intents.decode_request(line)
            except common.ProtocolError as exc:
                assert exc.code in ("invalid_params", "bad_request", "bad_frame"), exc.code
                return
            params = intents.intent_params(req.intent)
            target = req.intent.target
            normalise_params(name, target, params)
            evaluate(policy, "alpha", name, target, params)

        count += garbage.run(profile.file_inputs * 4, SEED + count, one)
    row.inputs = count


def _policy_check(name: str, text: str) -> None:
    try:
        load_policy_texts([(name, text)], POLICY_CATALOG, WORKLOADS, normalise=normalise_params)
    except PolicyError as exc:
        assert WHERE.match(str(exc)), str(exc)  # always with file:line:column


TOML_POLICY = Path(__file__).resolve().parents[2] / "supervisor/defaults/etc/policy.d/10-base.toml"
LINE_POLICY = """\
# service  arg  source  target  action
[groups]
"""
QREXEC = """\
status      *        @anyvm    @default  allow
open-url    *        alpha     @default  ask default_target=alpha
search      +cats    @tag:dev  alpha     ask,default_target=alpha
notify      *        beta      @default  deny
"""


@pytest.mark.reliability("fuzz", "policy files (TOML and qrexec lines)")
def test_broken_policy_files_are_errors_with_a_position(profile, row):
    base = TOML_POLICY.read_text()

    def one(rng: random.Random) -> None:
        _policy_check("10-base.toml", garbage.text_mutant(rng, base))
        _policy_check("20-lines.policy", garbage.text_mutant(rng, QREXEC))

    row.inputs = 2 * garbage.run(profile.file_inputs * 4, SEED, one)
    # And the CLI people run says so too, with a position, for a broken file.
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "policy.d").mkdir()
        (Path(tmp) / "policy.d" / "bad.policy").write_text("status * @anyvm @default maybe\n")
        proc = subprocess.run(
            [str(rig.CLAWVISOR), "policy", "check", "--config-dir", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
    assert proc.returncode != 0 and "bad.policy:1:" in proc.stdout + proc.stderr


WORKLOADS_TOML = """\
[workloads.research]
user = "root"
internet = "allowlist"
egress_allow = ["pypi.org:443", "10.0.0.0/8"]
tags = ["dev"]
[workloads.research.overlay]
docs = { lower = "/srv/docs" }
[workloads.mail]
user = "root"
internet = "none"
"""


@pytest.mark.reliability("fuzz", "workloads.toml and clawvisor.toml")
def test_broken_config_files_are_config_errors(profile, row):
    settings_text = (
        Path(__file__).resolve().parents[2] / "supervisor/defaults/etc/clawvisor.toml"
    ).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        etc = Path(tmp)
        paths = Paths(config_dir=etc, runtime_dir=etc, state_dir=etc, log_dir=etc)

        def one(rng: random.Random) -> None:
            (etc / "workloads.toml").write_text(garbage.text_mutant(rng, WORKLOADS_TOML))
            (etc / "clawvisor.toml").write_text(
                garbage.text_mutant(rng, settings_text) if rng.random() < 0.5 else ""
            )
            try:
                load_settings_and_specs(paths)
            except ConfigError as exc:
                assert str(exc).startswith(str(etc)), exc  # names the file

        row.inputs = garbage.run(profile.file_inputs * 2, SEED, one)


@pytest.mark.reliability("fuzz", "trigger rules")
def test_broken_trigger_files_are_trigger_errors(profile, row):
    base = (Path(__file__).resolve().parents[2] / "supervisor/defaults/triggers.toml").read_text()

    def one(rng: random.Random) -> None:
        try:
            parse_triggers(garbage.text_mutant(rng, base), "t.toml")
        except TriggerError as exc:
            assert "t.toml" in str(exc), exc

    row.inputs = garbage.run(profile.file_inputs * 4, SEED, one)


class _Recorder:
    """The agent's end of the control socket and Bot API, recording what it is asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, op: str, **fields: Any) -> common.Reply:
        self.calls.append((op, fields))
        return common.Reply(id="x", status="ok")


@pytest.mark.reliability("fuzz", "Telegram updates as the agent receives them")
def test_garbage_telegram_updates_never_crash_or_approve(profile, row, tmp_path):
    link, api = _Recorder(), _Recorder()
    state = AgentState(tmp_path)
    state.load()
    state.add_paired(42)
    agent = TelegramAgent(link, api, state, io.StringIO())  # type: ignore[arg-type]
    rng = random.Random(SEED)

    def update() -> object:
        cq = {
            "id": garbage.json_value(rng, 3),
            "from": rng.choice([{"id": 42}, {"id": 7}, garbage.json_value(rng, 3)]),
            "data": rng.choice([garbage.json_value(rng, 3), "a:" + uuid.uuid4().hex]),
            "message": garbage.json_value(rng, 2),
        }
        shapes = [
            {"update_id": rng.randint(0, 9), "callback_query": cq},
            {"update_id": 1, "message": garbage.json_value(rng, 1)},
            {
                "update_id": 1,
                "message": {
                    "text": "/pair " + str(garbage.json_value(rng, 4)),
                    "chat": {"type": "private", "id": 1},
                    "from": {"id": 9},
                },
            },
            garbage.json_value(rng),
        ]
        return rng.choice(shapes)

    async def main() -> int:
        n = profile.file_inputs * 4
        for _ in range(n):
            await agent.handle(update())
        return n

    row.inputs = asyncio.run(main())
    assert [c for c in link.calls if c[0] == "verdict"] == []  # no forged approval went through
    assert 42 in state.paired and len(state.paired) == 1  # nobody paired without the code


@pytest.mark.reliability("fuzz", "D-Bus notification signals as the agent receives them")
def test_garbage_dbus_signals_never_crash_and_only_a_real_click_answers(profile, row):
    link = _Recorder()
    agent = DesktopAgent(link, None, io.StringIO())  # type: ignore[arg-type]
    view = msgspec.convert(
        {
            "id": "p1",
            "workload": "w",
            "action": "open-url",
            "target": "w",
            "params": {},
            "cut": False,
            "rule": "r",
            "deadline": 0.0,
            "digest": "d",
            "grant": "once",
            "quorum": 1,
            "votes": 0,
        },
        control.PendingView,
    )
    rng = random.Random(SEED)
    legit = 0

    async def main() -> int:
        nonlocal legit
        n = profile.file_inputs * 4
        for _ in range(n):
            agent.by_notification[7] = view
            member = rng.choice(["ActionInvoked", "NotificationClosed", "Other", None, 3])
            body = rng.choice(
                [
                    (7, rng.choice(["allow", "deny", "default", "x", "allow-always"])),
                    (rng.randint(0, 9), garbage.json_value(rng, 3)),
                    garbage.json_value(rng),
                    (),
                    (7,),
                ]
            )
            before = len(link.calls)
            await agent.signal(member, body)
            if len(link.calls) > before:
                assert member == "ActionInvoked" and body[0] == 7, (member, body)
                legit += 1
        return n

    row.inputs = asyncio.run(main())
    row.note(f"{legit} real clicks answered")
