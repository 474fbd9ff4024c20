"""The reliability table: tests marked `reliability(group, row)` are its rows.

`make test` runs every row at the quick profile; `make reliability` runs only the rows,
at the full profile (`--profile full`), and prints the table. A row's test records its
figures through the `row` fixture: honest clients' p99, bad inputs tried, requests sent,
audit records lost. A failing test is a failing row, and pytest's exit status says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

GROUPS = {
    "load": "loads held",
    "fault": "faults survived",
    "fuzz": "bad inputs",
    "isolation": "surfaces closed",
    "audit": "tamper evidence",
    "hostile": "hostile workloads held",
}


@dataclass(frozen=True)
class Profile:
    """How hard each row pushes: `quick` inside `make test`, `full` for `make reliability`."""

    name: str
    connections: int  # concurrent connections held open at once
    slow_clients: int
    slow_seconds: float
    memory_requests: int  # requests before the second RSS reading
    fuzz_inputs: int  # in-process protocol inputs
    wire_inputs: int  # garbage lines over the real socket
    file_inputs: int  # per kind of file (policy, workloads, triggers) and per agent


PROFILES = {
    "quick": Profile("quick", 1000, 100, 4.0, 30_000, 20_000, 3_000, 300),
    "full": Profile("full", 1000, 100, 30.0, 1_000_000, 1_000_000, 100_000, 5_000),
}


@dataclass
class Row:
    group: str
    name: str
    outcome: str = "not run"
    p99_us: float | None = None
    inputs: int | None = None
    requests: int | None = None
    lost: int | None = None
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)


_ROWS: dict[tuple[str, ...], Row] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--profile",
        choices=sorted(PROFILES),
        default="quick",
        help="how hard the reliability rows push (default quick)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability(group, row): a row of the reliability table (make reliability)"
    )


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> Profile:
    return PROFILES[request.config.getoption("--profile")]


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Row:
    """This test's row of the table, for its figures."""
    marker = request.node.get_closest_marker("reliability")
    assert marker is not None, "the row fixture is for tests marked reliability(group, row)"
    return _ROWS.setdefault(marker.args, Row(*marker.args))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    marker = item.get_closest_marker("reliability")
    if marker is None:
        return
    report = outcome.get_result()
    # A parametrized test is one row: it holds only if every case holds.
    r = _ROWS.setdefault(marker.args, Row(*marker.args))
    if r.outcome == "FAILED":
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        r.outcome = "ok" if report.passed else ("skipped" if report.skipped else "FAILED")


def _cell(value: float | int | None, fmt: str = "{:,}") -> str:
    return "-" if value is None else fmt.format(value)


def table(rows: list[Row]) -> list[str]:
    """The table's lines: one per row, then the totals."""
    head = ("", "row", "result", "honest p99", "requests", "bad inputs", "records lost")
    body = [
        (
            GROUPS.get(r.group, r.group),
            r.name + (f" ({'; '.join(r.notes)})" if r.notes else ""),
            r.outcome,
            _cell(r.p99_us, "{:,.0f} µs"),
            _cell(r.requests),
            _cell(r.inputs),
            _cell(r.lost),
        )
        for r in sorted(rows, key=lambda r: list(GROUPS).index(r.group))
    ]
    widths = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*b) for b in body]
    failed = [r for r in rows if r.outcome not in ("ok", "skipped")]
    lost = sum(r.lost or 0 for r in rows)
    lines.append("")
    for group, label in GROUPS.items():
        mine = [r for r in rows if r.group == group]
        if mine:
            held = sum(r.outcome == "ok" for r in mine)
            lines.append(f"{label}: {held}/{len(mine)}")
    lines.append(f"bad inputs tried: {sum(r.inputs or 0 for r in rows):,}")
    lines.append(f"audit records lost: {lost}")
    lines.append("RELIABILITY: " + ("FAILED" if failed or lost else "all rows hold"))
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if not _ROWS:
        return
    terminalreporter.section(f"reliability ({config.getoption('--profile')} profile)")
    for line in table(list(_ROWS.values())):
        terminalreporter.write_line(line)
