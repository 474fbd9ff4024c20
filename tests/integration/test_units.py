"""The unit files as systemd's own tools score them; the catalog covers every MESSAGE_ID.

(`systemd-analyze verify` needs the units installed: tests/system/ runs it inside a
booted container after `make install`.)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from supervisor.audit import MESSAGE_IDS

UNITS = Path(__file__).resolve().parents[2] / "units"
README = UNITS.parent / "README.md"
#: The aims: 3.0 for the root daemon, 2.0 for what runs agents' or the network's code.
AIMS = {
    "clawvisor.service": 3.0,
    "clawvisor-workload@.service": 2.0,
    "clawvisor-approver-telegram.service": 2.0,
}


def exposure(unit: str) -> float:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNITS / unit)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)[1])


@pytest.mark.parametrize("unit", sorted(AIMS))
def test_the_unit_scores_at_or_under_its_aim(unit):
    assert exposure(unit) <= AIMS[unit]


@pytest.mark.parametrize("unit", sorted(AIMS))
def test_the_readme_records_the_units_score(unit):
    row = next(ln for ln in README.read_text().splitlines() if ln.startswith(f"| `{unit}` |"))
    assert f"| {exposure(unit):.1f} |" in row


def test_every_message_id_has_a_catalog_entry_with_a_subject():
    text = (UNITS / "clawvisor.catalog").read_text()
    entries = dict(re.findall(r"^-- ([0-9a-f]{32})\nSubject: (.+)$", text, re.M))
    assert set(entries) == set(MESSAGE_IDS.values())
    assert all(entries.values())


def test_socket_units_never_keep_the_default_mode():
    for sock in UNITS.glob("*.socket"):
        text = sock.read_text()
        assert "SocketMode=0660" in text and "SocketGroup=" in text, sock.name
