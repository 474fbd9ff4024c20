"""The bench report: every row has a peer and a ratio; nothing stands alone."""

from __future__ import annotations

import pytest

from bench import all as bench_all


@pytest.fixture(scope="module")
def rows():
    out = []
    for step in bench_all.STEPS:
        data = bench_all._load(step.name)
        if data is not None and step.name in bench_all.EXTRACT:
            out += bench_all.EXTRACT[step.name](data, step.shown())
    if not out:
        pytest.skip("no bench results in bench/results/")
    return out


def test_every_row_names_a_peer_with_its_figure_and_a_ratio(rows):
    for r in rows:
        assert r.peer and r.theirs and r.ratio, r


def test_every_row_says_how_to_reproduce_it(rows):
    for r in rows:
        assert r.command.startswith(".venv/bin/python -m bench."), r


def test_the_issue_aims_are_reported_as_met_or_not(rows):
    aims = [r.aim for r in rows if r.aim]
    for fragment in ("≥ 8x", "≤ 4x", "≥ 50x", "≥ 10,000/s", "no loss at 100,000/s", "< 1.02x"):
        assert any(a.startswith(fragment) and a.endswith(("met", "NOT met")) for a in aims)


def test_the_table_has_one_line_per_row(rows):
    text = bench_all.results_md(rows, {}, quick=False)
    table = text.split("\n\n")[2]  # title, run line, then the table
    assert table.count("\n| ") + 1 == len(rows) + 2  # and the header and its rule
