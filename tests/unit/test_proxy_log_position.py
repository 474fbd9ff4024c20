"""The proxy's access log is followed from where the last run left it: a request Squid
refused while the daemon was down is still an event once it is back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from supervisor.monitors import events as ev
from supervisor.proxy.accesslog import ProxyLogMonitor
from supervisor.proxy.control import ProxyInputs, inputs_path
from supervisor.proxy.squid_conf import ProxyLayout


def line(domain: str) -> str:
    return f"1796296881.334 3300 CONNECT {domain} 443 77 0 NONE_NONE 0 - - terminate\n"


class Run:
    """One daemon run's proxy monitor over the same files."""

    def __init__(self, layout: ProxyLayout, position: Path) -> None:
        self.seen: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.monitor = ProxyLogMonitor(self._publish)
        self.monitor.configure(layout)
        self.monitor.start(self.loop, position)

    def _publish(self, event: ev.Event) -> None:
        assert isinstance(event, ev.Proxied)
        self.seen.append(event.domain)

    def read(self) -> list[str]:
        self.monitor.read()
        return self.seen

    def stop(self) -> None:
        self.monitor.stop()
        self.loop.close()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[ProxyLayout, Path]]:
    layout = ProxyLayout(tmp_path / "proxy")
    layout.var.mkdir(parents=True)
    inputs = ProxyInputs(ports={"alpha": 3300}, static={}, resolvers=[], refused=[])
    inputs_path(layout).write_bytes(msgspec.json.encode(inputs))
    layout.access_log.write_text(line("before-the-first-run.test"))
    yield layout, tmp_path / "state" / "proxy-access.position"


def append(layout: ProxyLayout, text: str) -> None:
    with layout.access_log.open("a") as f:
        f.write(text)


def restart(
    box: tuple[ProxyLayout, Path], first: str, while_down: Callable[[ProxyLayout], None]
) -> tuple[list[str], list[str]]:
    """What a run that sees `first` appended reads, then what the next run reads after
    `while_down` changed the files between them."""
    layout, position = box
    position.parent.mkdir(exist_ok=True)
    runs = [Run(layout, position)]
    append(layout, first)
    seen = [runs[0].read()]
    runs[0].stop()
    while_down(layout)
    runs.append(Run(layout, position))
    seen.append(runs[1].read())
    runs[1].stop()
    return seen[0], seen[1]


def test_the_first_run_follows_the_log_from_its_end(box):
    layout, position = box
    position.parent.mkdir()
    run = Run(layout, position)
    append(layout, line("during.test"))
    assert run.read() == ["during.test"]
    run.stop()


def test_lines_written_while_the_daemon_was_down_are_read_when_it_is_back(box):
    seen = restart(box, line("one.test"), lambda log: append(log, line("while-down.test")))
    assert seen == (["one.test"], ["while-down.test"])


def test_a_line_half_written_at_the_stop_is_read_whole_after(box):
    whole = line("split.test")
    seen = restart(box, whole[:20], lambda log: append(log, whole[20:]))
    assert seen == ([], ["split.test"])


def test_a_log_replaced_while_down_is_read_from_its_start(box):
    def replace(layout: ProxyLayout) -> None:
        os.unlink(layout.access_log)
        layout.access_log.write_text(line("new-file.test"))

    assert restart(box, line("old.test"), replace) == (["old.test"], ["new-file.test"])


def test_a_log_truncated_and_grown_past_the_position_while_down_is_read_from_its_start(box):
    # Same inode, longer than the saved offset: only the bytes before it tell.
    text = line("hidden-one.test") + line("hidden-two.test") * 3
    seen = restart(box, line("old.test"), lambda log: log.access_log.write_text(text))
    assert seen == (["old.test"], ["hidden-one.test"] + ["hidden-two.test"] * 3)


def test_a_position_file_longer_than_its_record_is_still_read(box):
    position = box[1]

    def scribble(layout: ProxyLayout) -> None:
        with position.open("ab") as f:
            f.write(b"junk left by something else\n" * 10)
        append(layout, line("while-down.test"))

    assert restart(box, line("one.test"), scribble) == (["one.test"], ["while-down.test"])


def test_a_position_that_cannot_be_kept_degrades_the_monitor_but_it_still_follows(box):
    layout, position = box  # its directory does not exist
    run = Run(layout, position)
    append(layout, line("still-seen.test"))
    assert run.read() == ["still-seen.test"]
    assert run.monitor.state == "degraded" and "position" in run.monitor.detail
    run.stop()
