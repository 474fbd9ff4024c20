"""The command line as people type it and scripts read it, against a real daemon: options
anywhere, `--runtime-dir` everywhere, `--json` shapes, and `approve` asking first."""

from __future__ import annotations

import argparse
import os
import pty
import select
import subprocess
import time
import uuid
from pathlib import Path

import msgspec
import pytest

from supervisor.cli import build_parser
from supervisor.cli.output import EXIT_STATUSES, json_outputs
from tests.helpers import rig
from tests.helpers.rig import connect_as, read_lines, request_line
from tests.helpers.rules import rule

RECORDER = Path(__file__).resolve().parents[1] / "helpers" / "recorder.py"
POLICY = (
    rule("status", "alpha")
    + rule("open-url", "alpha", "ask", "@self", timeout=120)
    + rule("search", "alpha", "allow", "@self")
)


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable subcommand: its words and its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    out = []
    for name, child in subs[0].choices.items():
        out += leaves(child, (*path, name))
    return out


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


class Env:
    def __init__(self, daemon: rig.Daemon, alpha: rig.User, record: Path) -> None:
        self.daemon, self.alpha, self.record = daemon, alpha, record

    @property
    def run_dir(self) -> Path:
        return self.daemon.root / "run"

    def cli(
        self, *argv: str, user: rig.User | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        extra = rig.as_user(user) if user is not None else {}
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [str(rig.CLAWVISOR), *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env=full_env,
            **extra,
        )

    def ask(self, url: str):
        sock = connect_as(self.daemon.intents, self.alpha)
        rid = f"cli-{uuid.uuid4().hex[:8]}"
        sock.sendall(request_line(rid, {"action": "open-url", "target": "alpha", "url": url}))
        return sock

    def pending_id(self, url: str) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with connect_as(self.daemon.control, None) as c:
                c.sendall(b'{"id":"p","op":"pending"}\n')
                for p in read_lines(c, 1)[0]["result"]["pending"]:
                    if p["params"]["url"] == url:
                        return str(p["id"])
            time.sleep(0.05)
        raise AssertionError(f"{url} is not pending")


@pytest.fixture(scope="module")
def env(make_user, make_daemon, journal):
    alpha = make_user()
    rec_dir = rig.shared_tmpdir("clawvisor-rec-")
    rec_dir.chmod(0o1777)
    record = rec_dir / "calls.jsonl"
    settings = (
        '[server]\nsocket_group = "cvt-no-such-group"\n'
        "[executors.open-url]\n"
        f'argv = ["/usr/bin/python3", "{RECORDER}", "{record}", "{{url}}"]\n'
        "[executors.search]\n"
        f'argv = ["/usr/bin/python3", "{RECORDER}", "{record}", "{{url}}"]\n'
    )
    daemon = make_daemon({"alpha": alpha}, {"10.toml": POLICY}, settings)
    yield Env(daemon, alpha, record)
    rig.cleanup_root(rec_dir)


# --- options anywhere -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "--target", "alpha", "search", "query=cats"],
        ["send", "search", "--target", "alpha", "query=cats"],
        ["send", "search", "query=cats", "--target", "alpha"],
    ],
    ids=["before", "between", "after"],
)
def test_send_takes_its_options_before_or_after_the_action_and_params(env, argv):
    out = env.cli(*argv, "--runtime-dir", str(env.run_dir), user=env.alpha)
    assert out.returncode == 0, out.stderr
    assert '"status":"ok"' in out.stdout.replace(" ", "")


@pytest.mark.parametrize(
    "tail",
    [
        ["--source", "alpha", "search", "--target", "alpha", "query=x"],  # the README's form
        ["search", "query=x", "--source", "alpha", "--target", "alpha"],
        ["--source", "alpha", "--target", "alpha", "search", "query=x"],
    ],
)
def test_policy_explain_takes_its_options_anywhere(env, tail):
    out = env.cli("policy", "explain", "--config-dir", str(env.daemon.config_dir), *tail)
    assert out.returncode == 0, out.stderr
    assert "allow" in out.stdout and "10.toml" in out.stdout


def test_every_subcommand_with_params_parses_them_with_options_on_either_side():
    parser = build_parser()
    with_params = [
        (words, p) for words, p in leaves(parser) if any(a.dest == "params" for a in p._actions)
    ]
    assert {w for w, _ in with_params} == {("send",), ("policy", "explain")}
    for words, p in with_params:
        need = ["--source", "s"] if "--source" in options(p) else []
        a = parser.parse_args([*words, *need, "act", "k=v", "--target", "t", "k2=v2"])
        b = parser.parse_args([*words, "--target", "t", *need, "act", "k=v", "k2=v2"])
        assert a.params == b.params == ["k=v", "k2=v2"] and a.target == b.target == "t"


def test_an_unknown_option_is_reported_with_the_subcommands_usage(env):
    out = env.cli("send", "search", "query=x", "--bogus")
    assert out.returncode == 2
    assert "usage: clawvisor send" in out.stderr
    assert "unrecognized arguments: --bogus" in out.stderr


# --- --runtime-dir everywhere -----------------------------------------------------------


def test_every_command_that_reaches_the_daemon_takes_runtime_dir():
    missing = [
        " ".join(words)
        for words, p in leaves(build_parser())
        if "--socket" in options(p) and "--runtime-dir" not in options(p)
    ]
    assert not missing


@pytest.mark.parametrize(
    "argv",
    [["pending"], ["grants", "list"], ["status"], ["reload"], ["doctor", "--no-bpf"]],
    ids=lambda a: " ".join(a),
)
def test_runtime_dir_finds_the_control_socket(env, argv):
    out = env.cli(*argv, "--runtime-dir", str(env.run_dir))
    assert out.returncode == 0, out.stderr


def test_runtime_dir_finds_the_intents_socket_for_a_workload(env):
    out = env.cli("send", "status", "--runtime-dir", str(env.run_dir), user=env.alpha)
    assert out.returncode == 0, out.stderr


def test_clawvisor_runtime_dir_sets_the_default(env):
    out = env.cli("status", env={"CLAWVISOR_RUNTIME_DIR": str(env.run_dir)})
    assert out.returncode == 0, out.stderr
    wrong = env.cli("status", env={"CLAWVISOR_RUNTIME_DIR": str(env.run_dir / "nope")})
    assert wrong.returncode == 2 and str(env.run_dir / "nope" / "control.sock") in wrong.stderr


def test_socket_still_overrides_runtime_dir(env):
    out = env.cli("status", "--runtime-dir", "/nonexistent", "--socket", str(env.daemon.control))
    assert out.returncode == 0, out.stderr


# --- --json shapes ----------------------------------------------------------------------


def _decode(command: str, stdout: str) -> list[object]:
    out = json_outputs()[command]
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not out.lines:
        assert len(lines) == 1, stdout
    return [msgspec.json.decode(ln, type=out.type, strict=True) for ln in lines]


def test_pending_and_grants_json_match_their_schema(env):
    url = f"https://json.example/{uuid.uuid4().hex[:6]}"
    with env.ask(url):
        env.pending_id(url)
        out = env.cli("pending", "--json", "--runtime-dir", str(env.run_dir))
        [listed] = _decode("pending", out.stdout)
        assert any(p.params["url"] == url for p in listed.pending)  # type: ignore[attr-defined]
        rid = env.pending_id(url)
        env.cli("deny", rid, "--runtime-dir", str(env.run_dir))
    out = env.cli("grants", "list", "--json", "--runtime-dir", str(env.run_dir))
    [grants] = _decode("grants list", out.stdout)
    assert grants.grants == []  # type: ignore[attr-defined]


def test_status_json_matches_its_schema_and_names_every_workload(env):
    out = env.cli("status", "--json", "--runtime-dir", str(env.run_dir))
    [status] = _decode("status", out.stdout)
    assert status.workloads == ["alpha"] and status.policy.rules == 3  # type: ignore[attr-defined]


def test_policy_check_json_matches_its_schema(env, tmp_path):
    out = env.cli("policy", "check", "--json", "--config-dir", str(env.daemon.config_dir))
    [report] = _decode("policy check", out.stdout)
    assert out.returncode == 0 and report.loaded and report.rules == 3  # type: ignore[attr-defined]
    broken = tmp_path / "etc"
    (broken / "policy.d").mkdir(parents=True)
    (broken / "workloads.toml").write_text("")
    (broken / "policy.d" / "10.toml").write_text("[[rule]]\naction = = 1\n")
    out = env.cli("policy", "check", "--json", "--config-dir", str(broken))
    [report] = _decode("policy check", out.stdout)
    assert out.returncode == 1 and not report.loaded  # type: ignore[attr-defined]
    assert report.findings[0].where.startswith("policy.d/10.toml:2")  # type: ignore[attr-defined]


def test_audit_verify_json_matches_its_schema(env):
    out = env.cli(
        "audit",
        "verify",
        "--json",
        "--state-dir",
        str(env.daemon.root / "state"),
        "--log-dir",
        str(env.daemon.root / "log"),
    )
    [verdict] = _decode("audit verify", out.stdout)
    assert verdict.exit == out.returncode  # type: ignore[attr-defined]
    assert verdict.chain == env.daemon.chain  # type: ignore[attr-defined]


def test_doctor_json_is_one_check_per_line(env):
    out = env.cli("doctor", "--json", "--no-bpf", "--runtime-dir", str(env.run_dir))
    checks = _decode("doctor", out.stdout)
    assert len(checks) > 5 and all(c.name for c in checks)  # type: ignore[attr-defined]


def test_every_json_flag_has_a_declared_shape():
    with_json = {" ".join(w) for w, p in leaves(build_parser()) if "--json" in options(p)}
    # `policy diff` and `monitor` print their own streams (documented in the README).
    assert with_json - {"policy diff", "monitor"} == set(json_outputs())


def test_clawvisor_schema_cli_describes_every_output_and_exit_status(env):
    out = env.cli("schema", "cli")
    schema = msgspec.json.decode(out.stdout)
    assert set(schema["commands"]) == set(json_outputs())
    for ref in schema["commands"].values():
        assert ref["$ref"].rsplit("/", 1)[1] in schema["$defs"]
    assert schema["exit_statuses"]["audit verify"]["3"].startswith("intact from seq N")


def test_every_command_has_its_exit_statuses_declared():
    from supervisor.wire.control import RESPONSES

    undeclared = []
    for words, _ in leaves(build_parser()):
        name = "RESPONSE" if words[0] in RESPONSES else " ".join(words)
        if name not in EXIT_STATUSES and words[0] not in EXIT_STATUSES:
            undeclared.append(name)
    assert not undeclared


def test_the_readme_lists_every_exit_status():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("### Exit statuses", 1)[1].split("\n#", 1)[0]
    rows = {
        tuple(c.strip(" `") for c in ln.strip("|").split("|")[:2])
        for ln in section.splitlines()
        if ln.startswith("| `")
    }
    for command, codes in EXIT_STATUSES.items():
        for code in codes:
            assert (command, str(code)) in rows, (command, code)


# --- approve asks first -----------------------------------------------------------------


def _on_a_terminal(argv: list[str], answer: bytes) -> tuple[int, str]:
    """Run `clawvisor argv` with a pty as stdin and stdout, typing `answer` at its prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(rig.CLAWVISOR), *argv], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(master, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    rc = proc.wait(10)
    os.close(master)
    return rc, seen.decode(errors="replace")


def test_approve_on_a_terminal_shows_the_request_and_asks_before_approving(env):
    url = f"https://confirm.example/{uuid.uuid4().hex[:6]}"
    with env.ask(url) as gateway:
        rid = env.pending_id(url)
        rc, seen = _on_a_terminal(["approve", rid, "--runtime-dir", str(env.run_dir)], b"n\n")
        assert rc == 1 and url in seen and "not approved" in seen
        assert env.pending_id(url) == rid  # still waiting: nothing was sent
        rc, seen = _on_a_terminal(["approve", rid, "--runtime-dir", str(env.run_dir)], b"y\n")
        assert rc == 0 and "approved" in seen
        assert read_lines(gateway, 1)[0]["status"] == "ok"


def test_approve_yes_approves_without_asking(env):
    url = f"https://yes.example/{uuid.uuid4().hex[:6]}"
    with env.ask(url) as gateway:
        rid = env.pending_id(url)
        rc, seen = _on_a_terminal(
            ["approve", "--yes", rid, "--runtime-dir", str(env.run_dir)], b"n\n"
        )
        assert rc == 0 and "[y/N]" not in seen and url in seen
        assert read_lines(gateway, 1)[0]["status"] == "ok"
