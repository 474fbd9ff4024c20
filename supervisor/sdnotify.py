"""sd_notify for systemd's Type=notify: readiness, status, reloading, watchdog, stopping.

A no-op outside systemd. The watchdog is pinged by a timer on the event loop itself, so
a loop that stops turning stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

_warned = False


def notify(*assignments: str) -> bool:
    """Send `KEY=value` lines to $NOTIFY_SOCKET if we were given one; never raises.

    Returns False when the notification could not be delivered (reported once on stderr:
    a missing supervisor must not take the daemon down).
    """
    global _warned
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    from systemd import daemon  # python3-systemd; imported only when systemd is there

    try:
        return bool(daemon.notify("\n".join(assignments)))
    except OSError as exc:
        if not _warned:
            _warned = True
            print(f"clawvisor: sd_notify failed ({exc}); continuing", file=sys.stderr)
        return False


def reloading(status: str) -> bool:
    """RELOADING=1 with the monotonic timestamp systemd >= 253 insists on."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={status}")


def watchdog_interval() -> float | None:
    """Seconds between pings systemd asked for (half its WatchdogSec), or None."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None


class Watchdog:
    """WATCHDOG=1 from the event loop every `interval` seconds until stopped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self.interval = interval
        self._timer: asyncio.TimerHandle | None = None
        self.pings = 0

    def start(self) -> None:
        self._ping()

    def _ping(self) -> None:
        notify("WATCHDOG=1")
        self.pings += 1
        self._timer = self._loop.call_later(self.interval, self._ping)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
