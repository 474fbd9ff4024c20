"""sd_notify for systemd's Type=notify: readiness, status, stopping. A no-op outside systemd."""

from __future__ import annotations

import os


def notify(*assignments: str) -> None:
    """Send `KEY=value` lines to $NOTIFY_SOCKET, if systemd (or a test) gave us one."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    from systemd import daemon  # python3-systemd; imported only when systemd is there

    daemon.notify("\n".join(assignments))
