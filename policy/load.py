"""Read a policy directory: `*.toml` and `*.policy` in name order, plus `tests/*.toml`.

The whole directory compiles as one policy, its tests must pass, or nothing is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .catalog import Catalog
from .compile import compile_policy
from .drafts import FileDraft
from .errors import PolicyError, PolicyTestError
from .model import Policy, Workloads
from .parse_lines import parse_line_policy
from .parse_toml import parse_toml_policy
from .testing import Normaliser, run_tests

SUFFIXES = (".toml", ".policy")


def policy_files(directory: Path) -> list[Path]:
    """The files that make up the policy, in the order they are read; tests last."""

    def visible(p: Path, suffixes: tuple[str, ...]) -> bool:
        return p.suffix in suffixes and not p.name.startswith(".") and p.is_file()

    files = sorted((p for p in directory.iterdir() if visible(p, SUFFIXES)), key=lambda p: p.name)
    tests_dir = directory / "tests"
    if tests_dir.is_dir():
        files += sorted(
            (p for p in tests_dir.iterdir() if visible(p, (".toml",))), key=lambda p: p.name
        )
    return files


def parse_file(text: str, name: str, *, tests_only: bool = False) -> FileDraft:
    """Parse one file by its suffix."""
    if name.endswith(".policy"):
        return parse_line_policy(text, name)
    return parse_toml_policy(text, name, tests_only=tests_only)


def load_policy_dir(
    directory: Path,
    catalog: Catalog,
    workloads: Workloads,
    *,
    display_root: Path | None = None,
    normalise: Normaliser | None = None,
    check_tests: bool = True,
) -> Policy:
    """Load, compile and test the whole directory, or raise PolicyError (never half)."""
    if not directory.is_dir():
        raise PolicyError(str(directory), 0, 0, "policy directory does not exist")
    drafts: list[FileDraft] = []
    names: list[str] = []
    for path in policy_files(directory):
        name = _display(path, display_root)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(name, 0, 0, f"cannot read: {exc}") from None
        drafts.append(parse_file(text, name, tests_only=path.parent != directory))
        names.append(name)
    return _finish(drafts, names, catalog, workloads, normalise, check_tests)


def load_policy_texts(
    texts: Iterable[tuple[str, str]],
    catalog: Catalog,
    workloads: Workloads,
    *,
    normalise: Normaliser | None = None,
    check_tests: bool = True,
) -> Policy:
    """Compile a policy held in memory as (name, text) pairs, in the given order."""
    pairs = list(texts)
    drafts = [parse_file(text, name) for name, text in pairs]
    return _finish(drafts, [n for n, _ in pairs], catalog, workloads, normalise, check_tests)


def _finish(
    drafts: list[FileDraft],
    names: list[str],
    catalog: Catalog,
    workloads: Workloads,
    normalise: Normaliser | None,
    check_tests: bool,
) -> Policy:
    policy = compile_policy(drafts, catalog, workloads, names)
    if check_tests:
        failures = run_tests(policy, normalise)
        if failures:
            first = failures[0].test
            raise PolicyTestError(
                first.file,
                first.line,
                1,
                f"{len(failures)} policy test(s) failed: " + "; ".join(str(f) for f in failures),
                failures,
            )
    return policy


def _display(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.relative_to(root))
        except ValueError:
            pass
    return f"{path.parent.name}/{path.name}"
