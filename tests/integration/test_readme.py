"""The README is tested: its socat example runs, its tables match the code."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from executors import ACTIONS
from supervisor.wire.common import DENIAL_CODES, ERROR_CODES
from tests.helpers.rules import rule

README = Path(__file__).resolve().parents[2] / "README.md"
POLICY = rule("status")


def readme() -> str:
    return README.read_text()


def test_readme_opens_with_make_run_and_make_test():
    first_block = readme().split("```")[1]
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines()[1:] if ln.strip()]
    assert commands == ["make run", "make test"]


def test_readme_socat_example_works_against_a_real_daemon(make_daemon):
    daemon = make_daemon({"w": None}, {"10.toml": POLICY})  # the test runs as root
    [line] = [ln for ln in readme().splitlines() if ln.startswith("echo ") and "socat" in ln]
    left, right = line.split("|", 1)
    payload = shlex.split(left)[1]
    argv = shlex.split(right)
    assert argv[0] == "socat"
    argv = [a.replace("/run/clawvisor/intents.sock", str(daemon.intents)) for a in argv]
    out = subprocess.run(
        argv, input=payload + "\n", capture_output=True, text=True, timeout=30, check=True
    )
    reply = json.loads(out.stdout)
    assert reply["id"] == json.loads(payload)["id"]
    assert reply["status"] == "ok" and reply["result"]["action"] == "status"


def test_readme_error_table_is_exactly_the_protocol_codes():
    rows = re.findall(r"^\| `([a-z_]+)` \| (ok|denied|error) \| (.+?) \|$", readme(), re.M)
    assert [r[0] for r in rows] == list(ERROR_CODES)
    for code, status, meaning in rows:
        assert meaning == ERROR_CODES[code]
        assert status == ("denied" if code in DENIAL_CODES else "error")


def test_readme_documents_every_action_and_no_other():
    text = readme()
    table = text[text.index("| action | params | what it does |") :]
    table = table[: table.index("\n\n")]
    named = {
        n for row in table.splitlines()[2:] for n in re.findall(r"`([a-z-]+)`", row.split("|")[1])
    }
    assert named == set(ACTIONS)


def test_readme_trigger_example_loads():
    from supervisor.triggers import parse_triggers

    [block] = [b[len("toml\n") :] for b in readme().split("```") if "[[trigger]]" in b]
    [trigger] = parse_triggers(block, "README.md")
    assert trigger.name == "ssh-keys"
