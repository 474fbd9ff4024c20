"""Who a rule is about: source and target patterns and how they match.

Sources: a workload name, `*` or `@anyvm` (any workload), `@tag:NAME`.
Targets: a workload name, `*` (anything, also no target), `@anyvm` (any named target),
`@default` (no target given), `@self` (the source itself), `@tag:NAME`.
"""

from __future__ import annotations

import re

from .model import Workloads

ANY = "*"
ANYVM = "@anyvm"
DEFAULT = "@default"
SELF = "@self"
TAG = "@tag:"
NAME = re.compile(r"^[a-zA-Z0-9-]{1,64}$")
_TAG_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def source_error(pattern: str) -> str | None:
    """Why `pattern` is not a valid source, or None."""
    if pattern in (ANY, ANYVM) or NAME.match(pattern):
        return None
    if pattern.startswith(TAG) and _TAG_NAME.match(pattern[len(TAG) :]):
        return None
    return f"source must be a workload name, '*', '@anyvm' or '@tag:NAME', not {pattern!r}"


def target_error(pattern: str) -> str | None:
    """Why `pattern` is not a valid target, or None."""
    if pattern in (ANY, ANYVM, DEFAULT, SELF) or NAME.match(pattern):
        return None
    if pattern.startswith(TAG) and _TAG_NAME.match(pattern[len(TAG) :]):
        return None
    return (
        f"target must be a workload name, '*', '@anyvm', '@default', '@self' or "
        f"'@tag:NAME', not {pattern!r}"
    )


def source_matches(pattern: str, source: str, workloads: Workloads) -> bool:
    """True when the rule's source pattern covers the sending workload."""
    if pattern in (ANY, ANYVM):
        return True
    if pattern.startswith(TAG):
        return pattern[len(TAG) :] in workloads.get(source, ())
    return pattern == source


def target_matches(
    pattern: str,
    source: str,
    target: str | None,
    workloads: Workloads,
    runs_on_sender: bool = False,
) -> bool:
    """True when the rule's target pattern covers the requested target (None = none given).

    `runs_on_sender`: the action runs on the sender when no target is named, so `@self`
    covers that too.
    """
    if pattern == ANY:
        return True
    if target is None:
        return pattern == DEFAULT or (pattern == SELF and runs_on_sender)
    if pattern == ANYVM:
        return True
    if pattern == SELF:
        return target == source
    if pattern.startswith(TAG):
        return pattern[len(TAG) :] in workloads.get(target, ())
    return pattern == target


def covers_target(
    pattern: str,
    default_target: str | None,
    source: str,
    target: str | None,
    workloads: Workloads,
    runs_on_sender: bool = False,
) -> bool:
    """True when a rule (its target pattern and default_target) covers the requested target.

    A rule with `default_target = X` decides an intent that names no target as if it
    named X (where it then runs): `target = "dom0", default_target = "dom0"` covers both.
    """
    if target is None and default_target is not None and pattern not in (ANY, DEFAULT):
        return target_matches(pattern, source, default_target, workloads, runs_on_sender)
    return target_matches(pattern, source, target, workloads, runs_on_sender)
