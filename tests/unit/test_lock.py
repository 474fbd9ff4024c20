"""The locks say what pyproject.toml asks for: every dependency pinned, hashed, agreeing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def pins(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for each requirement in a pip-tools lock."""
    out: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        m = _PIN.match(line)
        if m:
            current = canonicalize_name(m.group(1))
            out[current] = (m.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, n = out[current]
            out[current] = (version, n + 1)
    return out


def requirements() -> tuple[list[Requirement], list[Requirement]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    extras = [Requirement(r) for group in project["optional-dependencies"].values() for r in group]
    return runtime, extras


def test_every_dependency_of_pyproject_is_pinned_in_the_lock_within_its_specifier():
    locked = pins(REPO / "requirements.lock")
    runtime, extras = requirements()
    for req in [*runtime, *extras]:
        name = canonicalize_name(req.name)
        assert name in locked, f"{req} is not in requirements.lock: run `make lock`"
        version = locked[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {req}: run `make lock`"
        )


def test_the_runtime_lock_pins_the_runtime_dependencies_at_the_same_versions():
    dev, shipped = pins(REPO / "requirements.lock"), pins(REPO / "runtime.lock")
    runtime, _ = requirements()
    for req in runtime:
        name = canonicalize_name(req.name)
        assert name in shipped, f"{req} is not in runtime.lock: run `make lock`"
    for name, (version, _) in shipped.items():
        assert dev.get(name, (None,))[0] == version, f"{name}: the two locks disagree"


def test_every_pin_carries_a_hash():
    for lock in ("requirements.lock", "runtime.lock"):
        for name, (version, hashes) in pins(REPO / lock).items():
            assert hashes > 0, f"{lock}: {name}=={version} has no --hash"


def test_the_locks_name_no_local_index_or_mirror():
    for lock in ("requirements.lock", "runtime.lock"):
        text = (REPO / lock).read_text()
        body = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
        assert "--find-links" not in body and "--index-url" not in body
        assert "file://" not in text
