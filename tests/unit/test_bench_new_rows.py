"""The event-log and secret-scan benches count what they claim to (no timings asserted)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bench import all as bench_all
from bench import eventlog, secret_scan
from bench.common import lossless_rate


def run(rate: int, kept: int, offered: int, achieved: int) -> dict[str, int]:
    return {"offered_rate": rate, "kept": kept, "offered": offered, "lost": offered - kept,
            "achieved_rate": achieved}  # fmt: skip


def test_a_sinks_rate_is_its_pace_with_nothing_lost():
    rows = [
        run(100, 1000, 1000, 100),
        run(200, 1999, 2000, 200),  # one lost
        run(400, 3000, 3000, 300),  # kept all, at the pace the sink allowed
    ]
    assert lossless_rate(rows) == 300
    assert lossless_rate([run(100, 0, 0, 0)]) == 0


def test_the_writer_run_reads_back_what_it_was_handed(tmp_path: Path):
    r = eventlog.ours_writer(2000, 0.2, tmp_path)
    assert r["offered"] > 0
    assert r["kept"] == r["written"] == r["offered"]
    assert r["dropped"] == 0 and r["lost"] == 0


def test_the_plain_append_counts_its_lines(tmp_path: Path):
    r = eventlog.append_writer(2000, 0.2, tmp_path)
    assert r["offered"] > 0 and r["kept"] == r["offered"]


def test_the_scan_text_holds_no_secrets(tmp_path: Path):
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    f = tmp_path / "t.py"
    f.write_bytes(secret_scan.text(256 * 1024))
    assert f.stat().st_size == 256 * 1024
    with default_settings():
        found = SecretsCollection()
        found.scan_file(str(f))
    assert not found.data


@pytest.mark.skipif(shutil.which("grep") is None, reason="no grep")
def test_the_grep_peer_finds_what_the_plugins_regexes_find(tmp_path: Path):
    f = tmp_path / "t.txt"
    f.write_text(
        secret_scan.text(4096).decode()
        + "AKIAIOSFODNN7EXAMPLE\n-----BEGIN RSA PRIVATE KEY-----\nhost 8.8.8.8:53\n"
    )
    pat = tmp_path / "pattern"
    pat.write_text(secret_scan.regex_pattern())
    got = subprocess.run(["grep", "-P", "-c", "-f", str(pat), str(f)], capture_output=True)
    assert got.stdout.strip() == b"3", got.stderr


def test_the_new_rows_name_a_peer_and_a_ratio():
    log = {
        "seconds": 1,
        "writer": [run(100000, 10, 10, 100000)],
        "journald": [run(100000, 10, 10, 50000)],
        "append": [run(100000, 10, 10, 100000)],
        "daemon": [
            {"offered_rate": 0, "event_log": True, "p50_us": 100.0, "p99_us": 200.0},
            {"offered_rate": 100000, "event_log": True, "p50_us": 150.0, "p99_us": 400.0,
             "kept": 9, "opens": 10, "captured": 10, "lost": 1},
            {"offered_rate": 100000, "event_log": False, "p50_us": 120.0, "p99_us": 300.0},
        ],
    }  # fmt: skip
    scan = {
        "rows": [{"mib": 1, "scan_s_per_mib": 2.0, "detect_secrets_cli_s_per_mib": 2.5,
                  "grep_s_per_mib": 0.01}],
        "daemon": {"mib": 4, "idle": {"p99_us": 200.0}, "during": {"p99_us": 500.0}},
    }  # fmt: skip
    rows = bench_all.eventlog_rows(log, "cmd") + bench_all.secret_scan_rows(scan, "cmd")
    assert len(rows) == 2 + 1 + 4 + 2 + 1
    for r in rows:
        assert r.peer and r.theirs and r.ratio, r
    assert any(r.aim == "no loss at 100,000/s NOT met" for r in rows)
    assert any(r.figure.startswith("events/s into the kept log without loss") for r in rows)


def test_the_openclaw_rows_set_clawvisors_figures_beside_openclaws_own():
    d = {
        "clawvisor": {"turn_s": 7.0, "tool_ms": 80.0},
        "openclaw_own": {"turn_s": 7.0, "tool_ms": 100.0},
        "capabilities_ms": 35.0,
    }
    rows = bench_all.openclaw_rows(d, "cmd")
    assert [r.ratio for r in rows] == ["0.8x the time", "0.5% of the turn", "1.0x the time"]
    assert rows[1].theirs == "7000"
