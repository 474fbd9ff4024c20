"""What the commands print with `--json`, and every command's exit statuses: declared once
here, printed by `clawvisor schema cli`, and held to the README's table by a test."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import msgspec


@dataclass(frozen=True)
class JsonOutput:
    """One command's `--json` output: the Struct each printed object is, and whether it
    prints one object or one per line (JSON Lines, so a long run streams)."""

    type: Any
    lines: bool = False


def json_outputs() -> dict[str, JsonOutput]:
    """Command -> its `--json` output. Imported late: each type lives with its command."""
    from executors.status import Result as StatusResult

    from ..audit.chain import ChainStatus
    from ..doctor import Check as DoctorCheck
    from ..policy_tools import CheckReport
    from ..verify_result import Check as VerifyCheck
    from ..wire.control import GrantList, PendingList

    return {
        "pending": JsonOutput(PendingList),
        "grants list": JsonOutput(GrantList),
        "status": JsonOutput(StatusResult),
        "policy check": JsonOutput(CheckReport),
        "audit verify": JsonOutput(ChainStatus),
        "doctor": JsonOutput(DoctorCheck, lines=True),
        "verify": JsonOutput(VerifyCheck, lines=True),
    }


#: For every command: exit status -> what it means. Every command also exits 2 on a
#: usage error (argparse). The response commands (freeze, thaw, kill, cut-network, ...)
#: share one entry.
EXIT_STATUSES: Final[dict[str, dict[int, str]]] = {
    "serve": {0: "stopped cleanly", 2: "cannot start (config, sockets, state)"},
    "reload": {
        0: "reloaded",
        1: "refused: the previous policy stays in force (or --diff was declined)",
        2: "the daemon cannot be reached",
    },
    "status": {0: "shown", 1: "the daemon refused", 2: "the daemon cannot be reached"},
    "doctor": {0: "no check failed (warnings allowed)", 1: "a check failed"},
    "send": {0: "ok", 1: "denied", 2: "any other error, no reply in time, or no daemon"},
    "schema": {0: "printed"},
    "mcp": {0: "the client closed the session", 2: "cannot start (no SDK, no daemon)"},
    "skill": {0: "written", 1: "the daemon refused", 2: "an error, or no daemon"},
    "openclaw setup": {
        0: "written, unchanged, printed, or --check found nothing",
        1: "--check found a way for the agent to act without clawvisor",
        2: "an error (no such workload, a file that is not JSON, ...)",
    },
    "openclaw plugin": {0: "printed"},
    "policy check": {
        0: "the policy loads and its tests pass (warnings allowed)",
        1: "errors: it does not load or a test fails",
    },
    "policy explain": {0: "explained, whatever the decision", 2: "the policy does not load"},
    "policy diff": {0: "nothing newly allowed", 1: "something newly allowed", 2: "error"},
    "policy replay": {0: "replayed", 2: "error"},
    "audit verify": {
        0: "intact from the chain's first record",
        1: "broken at seq N",
        2: "nothing to check",
        3: "intact from seq N: earlier records rotated out",
    },
    "audit log": {0: "shown", 2: "a --since that is not a time"},
    "pending": {0: "shown", 1: "the daemon refused", 2: "the daemon cannot be reached"},
    "approve": {
        0: "approved (or the approval recorded, waiting for quorum)",
        1: "refused (unknown or changed request), or not confirmed at the prompt",
        2: "the daemon cannot be reached",
    },
    "deny": {0: "denied", 1: "refused (unknown request)", 2: "the daemon cannot be reached"},
    "grants": {0: "listed or revoked", 1: "refused (unknown grant)", 2: "no daemon"},
    "approver": {0: "the agent stopped", 2: "the daemon cannot be reached"},
    "provision": {0: "converged (or the plan shown)", 1: "a step failed, or bad config"},
    "deprovision": {0: "removed", 1: "a step failed, or bad config"},
    "verify": {0: "no probe failed", 1: "a probe failed", 2: "the config does not load"},
    "monitor": {0: "stopped", 1: "refused", 2: "the daemon cannot be reached"},
    "RESPONSE": {0: "done", 1: "refused", 2: "the daemon cannot be reached"},
    "fleet certs": {0: "made (or already there)", 1: "openssl refused"},
    "fleet collector": {0: "units written (or, with --run, stopped)", 1: "a part failed"},
    "fleet upload": {0: "uploaded", 1: "journal-upload failed (refused by the collector...)"},
}


def cli_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of every `--json` output, one `$defs` entry each."""
    outputs = json_outputs()
    names = list(outputs)
    roots, defs = msgspec.json.schema_components(
        [o.type for o in outputs.values()], ref_template="#/$defs/{name}"
    )
    commands = {
        name: {
            "$ref": root["$ref"],
            "description": (
                "one JSON object per line, each this" if o.lines else "one JSON object"
            ),
        }
        for name, root, o in zip(names, roots, outputs.values(), strict=True)
    }
    from ..wire.schema import DIALECT, clean_descriptions

    schema: dict[str, Any] = clean_descriptions(
        {
            "$schema": DIALECT,
            "$id": "urn:clawvisor:cli",
            "title": "clawvisor --json outputs",
            "description": "What each command prints with --json; `commands` maps a command "
            "to its output.",
            "commands": commands,
            "exit_statuses": {
                cmd: {str(k): v for k, v in codes.items()} for cmd, codes in EXIT_STATUSES.items()
            },
            "$defs": defs,
        }
    )
    return schema


def cli_schema_text() -> str:
    """`clawvisor schema cli`."""
    return json.dumps(cli_schema(), indent=2, ensure_ascii=False) + "\n"
