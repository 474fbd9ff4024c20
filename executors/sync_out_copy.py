"""The sync-out copy as its own process: `python -I -m executors.sync_out_copy`.

The daemon never reads, hashes or scans a workload's files itself: this child does, under
the executor's timeout, output cap and resource limits like every other executor, so a
large or hostile file costs the daemon nothing but a wait (the secret scan alone takes
seconds per MiB). It prints the copied files as JSON; a refusal exits 3 with the reason
on stderr, a failure 4. It stops itself SECONDS after it started (before the daemon's
own timeout would kill it), removing what it had staged, so a timed-out copy leaves
nothing behind.

    python -I -m executors.sync_out_copy UPPER DESTINATION OPTIONS_JSON SECONDS -- PATH...
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import msgspec

from .sync_out import Options, Refused, copy_out

REFUSED, FAILED = 3, 4


class _OutOfTime(Exception):
    pass


def _out_of_time(signum: int, frame: FrameType | None) -> None:
    raise _OutOfTime


def main(argv: list[str]) -> int:
    """Copy the paths in `argv` (see the module's docstring); the exit status."""
    if len(argv) < 5 or argv[4] != "--":
        print(
            "usage: sync_out_copy UPPER DESTINATION OPTIONS_JSON SECONDS -- PATH...",
            file=sys.stderr,
        )
        return FAILED
    upper, destination, options_json, seconds = argv[:4]
    paths = argv[5:]
    options = msgspec.json.decode(options_json, type=Options)
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        copied = copy_out(upper, destination, paths, options)
    except _OutOfTime:  # copy_out removed what it had staged on the way out
        print(f"out of time after {float(seconds):g} s; nothing was copied", file=sys.stderr)
        return FAILED
    except Refused as exc:
        print(str(exc), file=sys.stderr)
        return REFUSED
    except OSError as exc:
        print(exc.strerror or str(exc), file=sys.stderr)
        return FAILED
    sys.stdout.buffer.write(msgspec.json.encode(copied))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
