"""Read a policy directory: `*.toml` and `*.policy` in name order, plus `tests/*.toml`.

The whole directory compiles as one policy, its tests must pass, or nothing is loaded.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from .catalog import Catalog
from .compile import compile_policy
from .drafts import FileDraft
from .errors import PolicyError, PolicyTestError
from .model import Policy, Workloads
from .parse_lines import parse_line_policy
from .parse_toml import parse_toml_policy
from .testing import Normaliser, run_tests

SUFFIXES = (".toml", ".policy")


def _names(dir_fd: int, suffixes: tuple[str, ...]) -> list[str]:
    with os.scandir(dir_fd) as entries:
        return sorted(
            e.name
            for e in entries
            if os.path.splitext(e.name)[1] in suffixes
            and not e.name.startswith(".")
            and e.is_file()
        )


@contextlib.contextmanager
def _opened(name: str | Path, dir_fd: int | None = None) -> Iterator[int]:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def _read(name: str, dir_fd: int) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{name} is not a regular file")
        return f.read().decode("utf-8")


def read_policy_dir(directory: Path) -> list[tuple[Path, str | OSError | UnicodeError]]:
    """Each policy file's path and text (or why it could not be read), in load order.

    Everything comes through one open descriptor of the directory, so a directory swapped
    for another mid-read (a deploy renaming a new policy.d into place) yields one
    directory's files or the other's, never a mix.
    """
    found: list[tuple[Path, str | OSError | UnicodeError]] = []

    def take(base: Path, dir_fd: int, suffixes: tuple[str, ...]) -> None:
        for name in _names(dir_fd, suffixes):
            try:
                found.append((base / name, _read(name, dir_fd)))
            except (OSError, UnicodeError) as exc:
                found.append((base / name, exc))

    with _opened(directory) as fd:
        take(directory, fd, SUFFIXES)
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            _opened("tests", fd) as tests_fd,
        ):
            take(directory / "tests", tests_fd, (".toml",))
        if os.fstat(fd).st_nlink == 0:
            # Deleted while it was read (a deploy removing the old tree it renamed away):
            # what was read may be any part of it.
            raise OSError(f"{directory} was removed while it was read")
    return found


def policy_files(directory: Path) -> list[Path]:
    """The files that make up the policy, in the order they are read; tests last."""
    return [path for path, _ in read_policy_dir(directory)]


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
    try:
        files = read_policy_dir(directory)
    except (FileNotFoundError, NotADirectoryError):
        raise PolicyError(str(directory), 0, 0, "policy directory does not exist") from None
    except OSError as exc:
        raise PolicyError(str(directory), 0, 0, f"cannot read: {exc}") from None
    if not any(path.parent == directory for path, _ in files):
        # Also what a directory emptied mid-read looks like: never taken for a policy.
        raise PolicyError(
            str(directory),
            0,
            0,
            "no policy files (*.toml, *.policy) in the policy directory; to deny "
            "everything, write a rule that does",
        )
    drafts: list[FileDraft] = []
    sources: list[tuple[str, str]] = []
    for path, text in files:
        name = _display(path, display_root)
        if not isinstance(text, str):
            raise PolicyError(name, 0, 0, f"cannot read: {text}")
        drafts.append(parse_file(text, name, tests_only=path.parent != directory))
        sources.append((name, text))
    return _finish(drafts, sources, catalog, workloads, normalise, check_tests)


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
    return _finish(drafts, pairs, catalog, workloads, normalise, check_tests)


def _finish(
    drafts: list[FileDraft],
    sources: list[tuple[str, str]],
    catalog: Catalog,
    workloads: Workloads,
    normalise: Normaliser | None,
    check_tests: bool,
) -> Policy:
    policy = compile_policy(drafts, catalog, workloads, [n for n, _ in sources])
    policy = msgspec.structs.replace(policy, sources=tuple(sources))
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
