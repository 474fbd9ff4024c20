"""nftables through libnftables' JSON API (python3-nftables): the one way clawvisor touches it.

Also the one home of the vocabulary every part agrees on (provisioning writes it; the
executors, the counters monitor and the responses use it; none of them imports another
for it): table `inet clawvisor`; per workload the allow sets `allow4_W` / `allow6_W`
(any port) and `allowp4_W` / `allowp6_W` (address . port), which `egress-allow` fills
and `cut-network` empties; the `cut` set of uids whose traffic is dropped; and the named
counters `W_REASON`, one per verdict reason. `-` in workload names is written `_` (names
never contain `_`, so the mapping is one-to-one).
"""

from __future__ import annotations

from typing import Any

FAMILY = "inet"
TABLE = "clawvisor"
#: Per-workload sets filled at run time (egress-allow), kept across re-provisioning.
DYNAMIC_SETS = ("allow4", "allow6", "allowp4", "allowp6")
#: The set of uids a `cut-network` response drops all traffic of.
CUT_SET = "cut"
#: Why a packet of a workload was accepted or dropped: one named counter per workload each.
#: Every counter's reason. No reason ends in `_` and another reason, so that W_reason
#: is never also W2_reason2 for another workload W2 (workload names may hold `-`, `_`).
REASONS = (
    "cut",
    "inbound",
    "drop_in",
    "est",
    "resolver",
    "drop_dns",
    "host",
    "proxy",
    "drop_meta",
    "drop_lan",
    "accept",
    "drop",
)


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
