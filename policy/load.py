"""Read a policy directory: every `*.toml` file in name order, compiled as one policy."""

from __future__ import annotations

from pathlib import Path

from .catalog import Catalog
from .compile import compile_policy
from .errors import PolicyError
from .model import Policy
from .parse_toml import RuleDraft, parse_toml_policy

SUFFIXES = (".toml",)


def policy_files(directory: Path) -> list[Path]:
    """The files that make up the policy, in the order they are read."""
    return sorted(
        (
            p
            for p in directory.iterdir()
            if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )


def load_policy_dir(
    directory: Path, catalog: Catalog, *, display_root: Path | None = None
) -> Policy:
    """Load and compile the whole directory, or raise PolicyError (never half a policy)."""
    if not directory.is_dir():
        raise PolicyError(str(directory), 0, 0, "policy directory does not exist")
    drafts: list[RuleDraft] = []
    names: list[str] = []
    for path in policy_files(directory):
        name = _display(path, display_root)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(name, 0, 0, f"cannot read: {exc}") from None
        drafts.extend(parse_toml_policy(text, name))
        names.append(name)
    return compile_policy(drafts, catalog, names)


def load_policy_text(text: str, name: str, catalog: Catalog) -> Policy:
    """Compile a policy held in memory (the embedded default)."""
    return compile_policy(parse_toml_policy(text, name), catalog, [name])


def _display(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.relative_to(root))
        except ValueError:
            pass
    return f"{path.parent.name}/{path.name}"
