"""Parse qrexec-style policy lines (`policy.d/*.policy`), as Qubes split-brain users write them.

    # SERVICE   ARG  SOURCE     TARGET    ACTION [PARAMS]
    ClawdRead   *    sys-clawd  dom0      allow
    ClawdWrite  *    sys-clawd  dom0      ask,default_target=dom0     (older comma form)
    open-url    *    @anyvm     @default  ask default_target=research (v2 space form)

SERVICE is an action or a group name; ARG is `*` or `+ARGUMENT` (an exact match on the
action's primary param). Anything this model cannot honour (`!include`, `user=`,
`target=` redirection, `@dispvm`, ...) is an error naming file, line and column, never
silently dropped.
"""

from __future__ import annotations

import re

from .drafts import FileDraft, Positioned, RuleDraft, RuleSpec
from .errors import PolicyError
from .model import DECISIONS, Decision

_TOKEN = re.compile(r"\S+")
_PARAMS = {"default_target", "timeout", "rate", "grant", "quorum"}
_UNSUPPORTED = {
    "target": "target= redirection is not supported; name the target in the TARGET column",
    "user": "user= is not supported: executors run as the target workload's user",
    "notify": "notify= is not supported: every decision is audited",
    "autostart": "autostart= is not supported",
}


def parse_line_policy(text: str, file: str) -> FileDraft:
    """Parse a `.policy` file; raises PolicyError with file:line:column."""
    out = FileDraft()
    for n, raw in enumerate(text.splitlines(), start=1):
        tokens = [(m.group(0), m.start() + 1) for m in _TOKEN.finditer(raw)]
        # A comment starts at a token beginning with '#'.
        for i, (tok, _) in enumerate(tokens):
            if tok.startswith("#"):
                tokens = tokens[:i]
                break
        if not tokens:
            continue
        if tokens[0][0].startswith("!"):
            raise PolicyError(file, n, tokens[0][1], f"directive {tokens[0][0]!r} is not supported")
        if len(tokens) < 5:
            raise PolicyError(
                file,
                n,
                tokens[-1][1] + len(tokens[-1][0]),
                "expected SERVICE ARG SOURCE TARGET ACTION",
            )
        out.rules.append(_rule(tokens, file, n))
    return out


def _rule(tokens: list[tuple[str, int]], file: str, n: int) -> RuleDraft:
    (service, c1), (arg, c2), (source, c3), (target, c4), (action_tok, c5) = tokens[:5]
    keys = {
        "action": (n, c1),
        "arg": (n, c2),
        "source": (n, c3),
        "target": (n, c4),
        "decision": (n, c5),
    }

    def fail(col: int, message: str) -> PolicyError:
        return PolicyError(file, n, col, message)

    action_word, *comma_params = action_tok.split(",")
    if action_word not in DECISIONS:
        raise fail(c5, f"action must be allow, ask or deny, not {action_word!r}")
    decision: Decision = action_word
    params: list[tuple[str, int]] = []
    col = c5 + len(action_word) + 1
    for p in comma_params:
        params.append((p, col))
        col += len(p) + 1
    params.extend(tokens[5:])
    if arg == "*":
        arg_value = None
    elif arg.startswith("+") and len(arg) > 1:
        arg_value = arg[1:]
    else:
        raise fail(c2, f"ARG must be '*' or '+ARGUMENT', not {arg!r}")
    if source.startswith("@") and source not in ("@anyvm",) and not source.startswith("@tag:"):
        raise fail(
            c3,
            f"source {source!r} is not supported here "
            "(use a workload name, '*', '@anyvm' or '@tag:NAME')",
        )
    if target.startswith("@dispvm") or target == "@adminvm":
        raise fail(c4, f"target {target!r} is not supported here")
    extra: dict[str, str] = {}
    for text, pcol in params:
        key, sep, value = text.partition("=")
        if not sep or not value:
            raise fail(pcol, f"expected NAME=VALUE after the action, got {text!r}")
        if key in _UNSUPPORTED:
            raise fail(pcol, _UNSUPPORTED[key])
        if key not in _PARAMS:
            raise fail(pcol, f"unknown param {key!r} (known: {', '.join(sorted(_PARAMS))})")
        if key in extra:
            raise fail(pcol, f"param {key!r} given twice")
        extra[key] = value
        keys[key] = (n, pcol)
    timeout: float | str = extra.get("timeout", 120.0)  # seconds or 30s: the compiler reads it
    quorum = 1
    if "quorum" in extra:
        if not extra["quorum"].isdigit() or not 1 <= int(extra["quorum"]) <= 5:
            raise fail(keys["quorum"][1], "quorum must be a number from 1 to 5")
        quorum = int(extra["quorum"])
    spec = RuleSpec(
        action=service,
        source=source,
        target=target,
        decision=decision,
        timeout=timeout,
        rate=extra.get("rate"),
        default_target=extra.get("default_target"),
        arg=arg_value,
        grant=extra.get("grant", "once"),
        quorum=quorum,
    )
    return RuleDraft(spec=spec, at=Positioned(file=file, line=n, keys=keys))
