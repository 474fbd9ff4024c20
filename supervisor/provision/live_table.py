"""The live `inet clawvisor` table as the kernel has it: its listing, the run-time
elements (egress allows) to carry over a re-provisioning, and a fingerprint that tells
whether anything in it changed since clawvisor wrote it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from executors.nft import DYNAMIC_SETS, FAMILY, TABLE, Nft, NftError


def current_table(nft: Nft) -> list[dict[str, Any]] | None:
    """The table as listed now, or None if it does not exist."""
    try:
        out = nft.run({"list": {"table": {"family": FAMILY, "name": TABLE}}})
    except NftError:
        return None
    return [x for x in (out or {}).get("nftables", []) if "metainfo" not in x]


def live_elements(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Commands re-adding dynamic set elements that still have time left."""
    cmds = []
    for item in listing:
        s = item.get("set")
        if not s or not s["name"].startswith(tuple(f"{k}_" for k in DYNAMIC_SETS)):
            continue
        elems = [
            e
            for e in s.get("elem", [])
            if isinstance(e, dict) and e.get("elem", {}).get("expires", 0) > 1
        ]
        if elems:
            cmds.append(
                {
                    "add": {
                        "element": {
                            "family": FAMILY,
                            "table": TABLE,
                            "name": s["name"],
                            "elem": elems,
                        }
                    }
                }
            )
    return cmds


def fingerprint(listing: list[dict[str, Any]]) -> str:
    """A hash of the table's structure: no handles, counter values or dynamic elements."""

    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {
                k: clean(v)
                for k, v in obj.items()
                if k not in ("handle", "packets", "bytes", "expires")
            }
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    items = []
    for item in listing:
        s = item.get("set")
        if s and s["name"].startswith(tuple(f"{k}_" for k in DYNAMIC_SETS)):
            items.append(clean({"set": {k: v for k, v in s.items() if k != "elem"}}))
        else:
            items.append(clean(item))
    items.sort(key=lambda x: json.dumps(x, sort_keys=True))
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()
