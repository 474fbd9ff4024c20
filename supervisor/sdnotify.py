"""sd_notify for systemd's Type=notify: readiness, status, stopping. A no-op outside systemd."""

from __future__ import annotations

import os
import sys

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
