"""The layout holds: every module is in the README's table, no module of the daemon is
too long to read, and the import rules between the packages hold."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("supervisor", "policy", "executors")
#: supervisor/ modules the daemon runs (everything but install-time provisioning).
INSTALL_TIME = ("supervisor/provision/", "supervisor/install.py", "supervisor/debpkg.py")


def modules() -> list[Path]:
    return sorted(
        p
        for pkg in PACKAGES
        for p in (REPO / pkg).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts
    )


def layout_rows() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    table = text.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        m = re.match(r"^\| (.+?) \| (.+) \|$", line)
        if m and not m.group(1).startswith("---"):
            rows[m.group(1)] = m.group(2)
    return rows


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    rel = path.relative_to(REPO).with_suffix("")
    package = rel.parts[:-1] if path.name != "__init__.py" else rel.parts
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}
    return out


def test_every_module_is_in_the_readmes_layout_table():
    rows = layout_rows()
    missing = []
    for path in modules():
        rel = path.relative_to(REPO).as_posix()
        directory, name = rel.rsplit("/", 1)
        found = any(
            f"`{rel}`" in key
            or (f"`{directory}/`" in key and f"`{name}`" in what)
            or (key.startswith(f"`{directory}/") and f"`{name}`" in key)
            for key, what in rows.items()
        )
        if not found:
            missing.append(rel)
    assert not missing, f"not in the README's Layout table: {missing}"


def test_no_module_of_the_daemon_is_over_500_lines():
    long = {
        p.relative_to(REPO).as_posix(): n
        for p in (REPO / "supervisor").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, long


def test_policy_and_executors_import_nothing_from_supervisor():
    for pkg in ("policy", "executors"):
        for path in (REPO / pkg).rglob("*.py"):
            bad = {m for m in imports_of(path) if m == "supervisor" or m.startswith("supervisor.")}
            assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_nothing_the_daemon_runs_imports_provisioning():
    for path in (REPO / "supervisor").rglob("*.py"):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(INSTALL_TIME) or rel.startswith("supervisor/cli/"):
            continue  # the command line is where `clawvisor provision` lives
        bad = {m for m in imports_of(path) if m.startswith("supervisor.provision")}
        assert not bad, f"{rel} imports {sorted(bad)}"


def test_the_monitors_do_not_import_provisioning():
    for path in (REPO / "supervisor" / "monitors").rglob("*.py"):
        bad = {m for m in imports_of(path) if m.startswith("supervisor.provision")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"
