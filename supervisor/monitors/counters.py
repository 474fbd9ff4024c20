"""Read the provisioned table's named counters in one libnftables call, on an interval;
what each counter gained since the last reading becomes a Net event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from executors.nft import FAMILY, REASONS, TABLE, Nft, NftError

from . import events as ev


def parse_name(name: str, slugs: Mapping[str, str]) -> tuple[str, str] | None:
    """`research_drop_lan` -> ("research", "drop_lan"), for the workloads in `slugs`."""
    for reason in sorted(REASONS, key=len, reverse=True):
        suffix = "_" + reason
        if name.endswith(suffix) and name[: -len(suffix)] in slugs:
            return slugs[name[: -len(suffix)]], reason
    return None


class CounterMonitor:
    """Polls the counters; publishes deltas; degraded (not dead) when there is no table."""

    def __init__(self, publish: Callable[[ev.Event], None], interval: float = 2.0) -> None:
        self.publish = publish
        self.interval = interval
        self.state = "stopped"
        self.detail = ""
        self._last: dict[str, tuple[int, int]] = {}
        self._slugs: dict[str, str] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nft: Nft | None = None
        self.reads = 0
        self.events = 0

    def set_workloads(self, names: list[str]) -> None:
        self._slugs = {n.replace("-", "_"): n for n in names}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        try:
            self._nft = Nft()
        except ImportError as exc:
            self._set("degraded", f"python3-nftables is missing: {exc}")
            return
        self.read()
        self._timer = loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.state = "stopped"

    def _tick(self) -> None:
        self.read()
        if self._loop is not None:
            self._timer = self._loop.call_later(self.interval, self._tick)

    def _set(self, state: str, detail: str) -> None:
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail = state, detail
            self.publish(
                ev.MonitorState(
                    ts=time.time(),
                    monitor="nftables",
                    state="ok" if state == "ok" else "degraded",
                    detail=detail,
                )
            )

    def read(self) -> int:
        """One reading; the number of Net events published."""
        if self._nft is None:
            return 0
        try:
            out = self._nft.run({"list": {"counters": {"family": FAMILY, "table": TABLE}}})
        except NftError as exc:
            self._set("degraded", f"no table {FAMILY} {TABLE} ({exc}); run clawvisor provision")
            return 0
        self._set("ok", "reading counters")
        self.reads += 1
        now = time.time()
        published = 0
        for item in (out or {}).get("nftables", []):
            c = item.get("counter")
            if not c:
                continue
            name = c["name"]
            packets, nbytes = int(c.get("packets", 0)), int(c.get("bytes", 0))
            before = self._last.get(name)
            self._last[name] = (packets, nbytes)
            if before is None or (packets, nbytes) == before:
                continue
            parsed = parse_name(name, self._slugs)
            if parsed is None:
                continue
            workload, reason = parsed
            dp, db = packets - before[0], nbytes - before[1]
            if dp < 0:  # the table was replaced: counters started again
                dp, db = packets, nbytes
            self.publish(ev.Net(ts=now, workload=workload, reason=reason, packets=dp, bytes=db))
            published += 1
        self.events += published
        return published
