"""`clawvisor policy check | explain | replay | diff`: the operator's tools around the pure policy.

These read files, the journal and the audit fallback; the policy package itself stays
pure. Output is plain text for people; exit codes are for scripts.
"""

from __future__ import annotations

import io
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO

import msgspec

from executors.capabilities import Capability
from policy import (
    Policy,
    PolicyError,
    Rule,
    evaluate,
    explain,
    lint,
    load_policy_dir,
    load_policy_texts,
    run_tests,
    runs_on,
)
from policy.diff import Change, diff_policies, render_text
from policy.diff.values import Undecided

from .actions import POLICY_CATALOG, normalise_params
from .approvals.grants import Grant, GrantStore, intent_key
from .audit import log as audit_log
from .audit.journal import use_namespace
from .capabilities import describe
from .config import Config, ConfigError, Paths, load_config


def _load_config(config_dir: Path, out: TextIO) -> Config | None:
    paths = Paths(
        config_dir=config_dir,
        runtime_dir=Path("/run/clawvisor"),
        state_dir=Path("/var/lib/clawvisor"),
        log_dir=Path("/var/log/clawvisor"),
    )
    try:
        return load_config(paths)
    except ConfigError as exc:
        print(f"error: {exc}", file=out)
        return None


def _load(config: Config, policy_dir: Path | None = None, *, check_tests: bool = True) -> Policy:
    directory = policy_dir or config.paths.policy_dir
    return load_policy_dir(
        directory,
        POLICY_CATALOG,
        config.tags,
        display_root=directory.parent,
        normalise=normalise_params,
        check_tests=check_tests,
    )


# --- check ---------------------------------------------------------------------------


def writable_by_others(path: Path) -> str | None:
    """Why someone other than root could change `path`, or None."""
    try:
        st = path.lstat()
    except OSError as exc:
        return f"cannot stat: {exc.strerror}"
    if st.st_uid != 0:
        return f"owned by uid {st.st_uid}, not root"
    # With an ACL, the group bits of the mode are the ACL mask, so an ACL entry that
    # grants write to anyone shows here as group-write too.
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"mode {stat.S_IMODE(st.st_mode):04o} lets its group, an ACL entry or others write"
    return None


def permission_findings(config_dir: Path) -> list[tuple[str, str]]:
    """The config dir, policy dir and policy files that someone other than root can
    change: (path, why) each."""
    policy_dir = config_dir / "policy.d"
    paths = [config_dir, policy_dir]
    if policy_dir.is_dir():
        for p in sorted(policy_dir.rglob("*")):
            paths.append(p)
    out = []
    for p in paths:
        why = writable_by_others(p)
        if why is not None:
            out.append(
                (
                    str(p),
                    f"writable by someone other than root ({why}); the policy could be "
                    "widened from there",
                )
            )
    return out


class Finding(msgspec.Struct, frozen=True):
    """One error or warning of `policy check`, placed by file:line:col where it has one."""

    where: str
    level: Literal["error", "warning"]
    message: str


class CheckReport(msgspec.Struct, kw_only=True):
    """What `clawvisor policy check --json` prints: the findings and the counts."""

    #: False when the config or the policy does not load (the daemon would deny all).
    loaded: bool
    rules: int = 0
    files: int = 0
    tests: int = 0
    tests_passed: int = 0
    errors: int = 0
    warnings: int = 0
    findings: list[Finding] = []


def check_report(config_dir: Path) -> CheckReport:
    """Lint the policy under `config_dir` and run its tests."""
    buf = io.StringIO()
    config = _load_config(config_dir, buf)
    if config is None:
        message = buf.getvalue().strip().removeprefix("error: ")
        return CheckReport(
            loaded=False, errors=1, findings=[Finding(str(config_dir), "error", message)]
        )
    try:
        policy = _load(config, check_tests=False)
    except PolicyError as exc:
        return CheckReport(
            loaded=False, errors=1, findings=[Finding(exc.where, "error", exc.message)]
        )
    findings = [
        Finding(f.test.where, "error", f"policy test failed: {f.message}")
        for f in run_tests(policy, normalise_params)
    ]
    errors = len(findings)
    for lint_finding in lint(policy, POLICY_CATALOG, config.settings.approvals.agents):
        findings.append(Finding(lint_finding.where, "warning", lint_finding.message))
    for path, why in permission_findings(config_dir):
        findings.append(Finding(path, "warning", why))
    return CheckReport(
        loaded=True,
        rules=len(policy.rules),
        files=len(policy.files),
        tests=len(policy.tests),
        tests_passed=len(policy.tests) - errors,
        errors=errors,
        warnings=len(findings) - errors,
        findings=findings,
    )


def check(config_dir: Path, out: TextIO = sys.stdout, *, as_json: bool = False) -> int:
    """Lint the policy: errors exit 1, warnings are printed and exit 0."""
    r = check_report(config_dir)
    code = 1 if r.errors else 0
    if as_json:
        print(msgspec.json.encode(r).decode(), file=out)
        return code
    for f in r.findings:
        if not r.loaded and f.where == str(config_dir):
            print(f"error: {f.message}", file=out)
        else:
            print(f"{f.where}: {f.level}: {f.message}", file=out)
    if r.loaded:
        print(
            f"{r.rules} rules in {r.files} files, {r.tests_passed}/{r.tests} tests passed: "
            f"{r.errors} errors, {r.warnings} warnings",
            file=out,
        )
    return code


# --- explain -------------------------------------------------------------------------


def explain_request(
    config_dir: Path,
    source: str,
    action: str,
    target: str | None,
    params: Mapping[str, Any],
    out: TextIO = sys.stdout,
    state_dir: Path | None = None,
) -> int:
    """Print the decision, the rule, and why each earlier rule did not match."""
    config = _load_config(config_dir, out)
    if config is None:
        return 2
    try:
        policy = _load(config)
    except PolicyError as exc:
        print(f"the policy does not load (the daemon would deny everything): {exc}", file=out)
        return 2
    if action not in POLICY_CATALOG:
        print(f"unknown action {action!r}: it would be refused as unknown_action", file=out)
        return 2
    try:
        normal = normalise_params(action, target, params)
    except ValueError as exc:
        print(f"invalid params: {exc} (it would be refused as invalid_params)", file=out)
        return 2
    ex = explain(policy, source, action, target, normal)
    v = ex.ruling
    assert v.decision == evaluate(policy, source, action, target, normal).decision
    print(f"decision: {v.decision} (rule {v.rule_name})", file=out)
    rule = v.rule
    if rule is not None:
        where = runs_on(policy, rule, source, action, target)
        if target is None and where is not None:
            how = "default_target" if where == rule.default_target else "its sender"
            print(f"  no target given: runs on {how} {where!r}", file=out)
        if rule.rate is not None:
            print(f"  rate limit: {rule.rate.text} per source workload", file=out)
        if rule.decision == "ask":
            print(
                f"  asks {', '.join(rule.approvers)}; times out to deny after {rule.timeout:g} s",
                file=out,
            )
            grant = _grant_for(state_dir, source, action, where, rule, normal)
            if grant is not None:
                until = (
                    "always"
                    if grant.expires is None
                    else datetime.fromtimestamp(grant.expires).isoformat(timespec="seconds")
                )
                print(
                    f"  but grant {grant.id} lets this exact intent through without asking "
                    f"(until {until}; approved by {', '.join(grant.approvers)})",
                    file=out,
                )
    for step in ex.steps:
        mark = "->" if step.matched else "  "
        print(
            f"{mark} {step.rule.where}: {step.rule.decision} {step.rule.action}: {step.reason}",
            file=out,
        )
    if not ex.steps:
        print(f"   no rule names {action!r}", file=out)
    if ex.other_actions:
        n = ex.other_actions
        print(f"   ({n} rule{'s' if n != 1 else ''} for other actions not considered)", file=out)
    return 0


def _grant_for(
    state_dir: Path | None,
    source: str,
    action: str,
    where: str | None,
    rule: Rule,
    params: Mapping[str, Any],
) -> Grant | None:
    """The live grant the daemon would find for this request (the pipeline's key)."""
    if state_dir is None:
        return None
    store = GrantStore(state_dir / "grants.json")
    try:
        store.load()
    except (OSError, msgspec.DecodeError):
        return None
    return store.match(intent_key(source, action, where, params, rule.identity))


# --- replay --------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """One decision as the audit trail recorded it."""

    ts: float
    seq: int
    intent_id: str
    workload: str
    action: str
    target: str | None
    decision: str
    rule: str
    params: str


#: The first decision record of an intent (an ask's later "approved" record is not one).
_INITIAL_OUTCOMES = (None, "", "policy_denied", "pending", "rate_limited", "ok", "granted")


def _from_fields(f: Mapping[str, Any], ts: float) -> Recorded | None:
    """A decision from an audit record's fields (the fallback's lowercase names)."""
    if f.get("kind") != "decision" or f.get("outcome") not in _INITIAL_OUTCOMES:
        return None  # not a decision, or the later record of an ask's outcome
    needed = ("intent_id", "workload", "action", "decision", "rule", "params")
    if any(f.get(k) is None for k in needed):
        return None
    target = f.get("target")
    return Recorded(
        ts=ts,
        seq=int(f.get("seq") or 0),
        intent_id=str(f["intent_id"]),
        workload=str(f["workload"]),
        action=str(f["action"]),
        target=str(target) if target is not None else None,
        decision=str(f["decision"]),
        rule=str(f["rule"]),
        params=str(f["params"]),
    )


def replay(
    policy_dir: Path,
    config_dir: Path,
    since: float,
    log_dir: Path,
    *,
    use_journal: bool = True,
    out: TextIO = sys.stdout,
) -> int:
    """Re-decide recorded intents under the policy in `policy_dir`; list what changes."""
    config = _load_config(config_dir, out)
    if config is None:
        return 2
    try:
        policy = _load(config, policy_dir, check_tests=False)
    except PolicyError as exc:
        print(f"the new policy does not load: {exc}", file=out)
        return 2
    if run_tests(policy, normalise_params):
        print("note: the new policy's own tests fail; a reload would refuse it", file=out)
    use_namespace(config.settings.audit.journal_namespace)
    trail = audit_log.records(
        log_dir / config.settings.audit.fallback_file, since=since, journal=use_journal
    )
    records = [r for f in trail if (r := _from_fields(f, float(f["ts"]))) is not None]
    changed = skipped = 0
    for r in records:
        if r.params.endswith("...(truncated)") or r.action not in POLICY_CATALOG:
            skipped += 1
            continue
        try:
            params = normalise_params(r.action, r.target, msgspec.json.decode(r.params))
        except (ValueError, msgspec.DecodeError):
            skipped += 1
            continue
        v = evaluate(policy, r.workload, r.action, r.target, params)
        if v.decision != r.decision:
            changed += 1
            when = datetime.fromtimestamp(r.ts).isoformat(timespec="seconds")
            print(
                f"{when} {r.workload} {r.action} -> {r.target or '@default'} "
                f"[{r.intent_id}]: {r.decision} ({r.rule}) -> {v.decision} "
                f"({v.rule_name})  params {r.params}",
                file=out,
            )
    print(
        f"{len(records)} recorded decisions, {changed} would change, {skipped} could not "
        "be replayed (truncated or invalid params)",
        file=out,
    )
    return 0


# --- capabilities ----------------------------------------------------------------------


def capabilities_offline(config_dir: Path, workload: str) -> list[Capability] | str:
    """What `workload` could do under the policy files in `config_dir`, or why not known."""
    out = io.StringIO()
    config = _load_config(config_dir, out)
    if config is None:
        return out.getvalue().strip()
    if workload not in config.workload_names:
        return f"no workload {workload!r} in {config_dir}/workloads.toml"
    try:
        policy = _load(config)
    except PolicyError as exc:
        return f"the policy does not load (the daemon would deny everything): {exc}"
    return describe(policy, workload)


# --- diff ----------------------------------------------------------------------------


def _decoder_note(change: Change, action: str, target: str | None) -> str | None:
    """Why the daemon's decoder would refuse a witness, or None when it takes it as is."""
    try:
        normal = normalise_params(action, target, change.params)
    except ValueError as exc:
        return str(exc)
    if normal != {**normal, **change.params}:
        return "the decoder would normalise it first"
    return None


def show_diff(
    old: Policy, new: Policy, old_name: str, new_name: str, *, json: bool, out: TextIO
) -> int:
    """Print what `new` decides differently from `old`; 0 nothing newly allowed, 1 some, 2 error."""
    try:
        result = diff_policies(old, new, POLICY_CATALOG)
    except (Undecided, AssertionError) as exc:
        print(f"error: policy diff could not decide: {exc}", file=out)
        return 2
    notes = {
        (i, k): note
        for i, cell in enumerate(result.cells)
        for k, change in enumerate(cell.changes)
        if (note := _decoder_note(change, cell.action, cell.target)) is not None
    }
    if json:
        data = msgspec.to_builtins(result)
        for (i, k), note in notes.items():
            data["cells"][i]["changes"][k]["decoder"] = note
        data["old"], data["new"] = old_name, new_name
        out.write(msgspec.json.encode(data).decode() + "\n")
    else:
        text = render_text(result, old_name, new_name)
        if notes:
            text += (
                f"note: the decoder refuses or rewrites {len(notes)} witness(es): "
                + "; ".join(
                    f"{result.cells[i].source} {result.cells[i].action}: {n}"
                    for (i, _), n in notes.items()
                )
                + "\n"
            )
        out.write(text)
    return 1 if result.newly_allowed else 0


def diff(
    config_dir: Path, new_policy_dir: Path, *, json: bool = False, out: TextIO = sys.stdout
) -> int:
    """`clawvisor policy diff [--config-dir D] [--json] NEW_POLICY_DIR`: the policy in
    D/policy.d against NEW_POLICY_DIR, cell by cell; exit 0 when nothing is newly
    allowed, 1 when something is, 2 on error."""
    config = _load_config(config_dir, out)
    if config is None:
        return 2
    loaded: list[Policy] = []
    for directory, what in ((config.paths.policy_dir, "the current"), (new_policy_dir, "the new")):
        try:
            loaded.append(_load(config, directory, check_tests=False))
        except PolicyError as exc:
            print(f"error: {what} policy does not load: {exc}", file=out)
            return 2
    old, new = loaded
    if new_policy_dir != config.paths.policy_dir and run_tests(new, normalise_params):
        print("note: the new policy's own tests fail; a reload would refuse it", file=out)
    return show_diff(
        old, new, str(config.paths.policy_dir), str(new_policy_dir), json=json, out=out
    )


def reload_diff(
    config_dir: Path,
    in_force: Sequence[tuple[str, str]],
    *,
    workloads: Mapping[str, frozenset[str]] | None = None,
    out: TextIO = sys.stdout,
    confirm: Callable[[str], str] | None = None,
) -> bool:
    """`clawvisor reload --diff`: show what the policy on disk decides differently from
    the one in force (its files' names and texts, and the `workloads` it was compiled for,
    from the daemon), then, when `confirm` is given (a terminal's `input`), ask. True when
    the reload should go ahead."""
    config = _load_config(config_dir, out)
    if config is None:
        return False
    running = config.tags if workloads is None else workloads
    try:
        old = load_policy_texts(in_force, POLICY_CATALOG, running, check_tests=False)
        new = _load(config)
    except PolicyError as exc:
        print(f"error: {exc}", file=out)
        return False
    rc = show_diff(old, new, "in force", str(config.paths.policy_dir), json=False, out=out)
    if rc == 2:
        return False
    if confirm is None:
        return True
    answer = confirm("reload this policy? [y/N] ")
    return answer.strip().lower() in ("y", "yes")
