"""clawvisor's policy language. Pure: data in, decisions out; no I/O beyond reading files."""

from __future__ import annotations

from .catalog import ActionInfo, Catalog
from .errors import PolicyError, PolicyTestError
from .evaluate import evaluate, runs_on
from .explain import Explanation, explain
from .lint import Finding, lint
from .load import load_policy_dir, load_policy_texts
from .model import DEFAULT_RULE, Decision, Policy, Rule, Ruling, Workloads
from .testing import Normaliser, TestFailure, run_tests

__all__ = [
    "DEFAULT_RULE",
    "ActionInfo",
    "Catalog",
    "Decision",
    "Explanation",
    "Finding",
    "Normaliser",
    "Policy",
    "PolicyError",
    "PolicyTestError",
    "Rule",
    "Ruling",
    "TestFailure",
    "Workloads",
    "evaluate",
    "explain",
    "lint",
    "load_policy_dir",
    "load_policy_texts",
    "run_tests",
    "runs_on",
]
