"""nftables through libnftables' JSON API (python3-nftables): the one way clawvisor touches it.

Also the naming convention every part agrees on: table `inet clawvisor`, and per workload
the allow sets `allow4_W` / `allow6_W` (any port) and `allowp4_W` / `allowp6_W`
(address . port), with `-` in workload names written `_` (names never contain `_`,
so the mapping is one-to-one).
"""

from __future__ import annotations

from typing import Any

FAMILY = "inet"
TABLE = "clawvisor"


class NftError(Exception):
    """libnftables refused a command; the message is its own."""


def slug(workload: str) -> str:
    """A workload name as nftables object names carry it (`-` written `_`)."""
    return workload.replace("-", "_")


def set_name(kind: str, workload: str) -> str:
    """The name of one of a workload's sets (`allow4`, `static4`, ...)."""
    return f"{kind}_{slug(workload)}"


class Nft:
    """A libnftables context with JSON output."""

    def __init__(self) -> None:
        import nftables  # python3-nftables, from Debian; imported where it is needed

        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(True)

    def run(self, *commands: dict[str, Any]) -> Any:
        """Run commands as one transaction; their JSON output (or None)."""
        rc, output, error = self._nft.json_cmd({"nftables": list(commands)})
        if rc != 0:
            raise NftError((error or f"nft exited {rc}").strip())
        return output or None
