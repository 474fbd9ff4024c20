"""Squid's external ACL helper: is the TLS client's SNI the host it sent CONNECT for?

Run by Squid (as the proxy's user), stdlib only. Each line is `HOST SNI` and then the
ACL's own arguments (`-`: none), URL-escaped by Squid, `-` for a missing value; the
answer is `OK` when the SNI names the CONNECT's host (or there is no SNI: Squid then
checks the CONNECT's host itself), `ERR` otherwise. So
a client cannot CONNECT to one allowed name and ask the server behind it for another.
"""

from __future__ import annotations

import sys
from urllib.parse import unquote


def same(host: str, sni: str) -> bool:
    """Whether an SNI value names the CONNECT host (case and a trailing dot aside)."""
    if sni in ("", "-"):
        return True
    return unquote(host).lower().rstrip(".") == unquote(sni).lower().rstrip(".")


def main() -> int:
    for line in sys.stdin:
        fields = line.split()
        ok = len(fields) >= 2 and same(fields[0], fields[1])
        sys.stdout.write("OK\n" if ok else "ERR\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
