"""clawvisor's policy language. Pure: data in, decisions out; no I/O beyond reading files."""

from __future__ import annotations

from .catalog import ActionInfo, Catalog
from .errors import PolicyError
from .evaluate import evaluate
from .load import load_policy_dir, load_policy_text
from .model import DEFAULT_RULE, Decision, Policy, Rule, Verdict

__all__ = [
    "DEFAULT_RULE",
    "ActionInfo",
    "Catalog",
    "Decision",
    "Policy",
    "PolicyError",
    "Rule",
    "Verdict",
    "evaluate",
    "load_policy_dir",
    "load_policy_text",
]
