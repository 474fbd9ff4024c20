"""The README's table of configuration keys is the config Structs': every key they accept
is there, with the default they have."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import msgspec

from supervisor.config import DaemonSettings, WorkloadSpec

README = Path(__file__).resolve().parents[2] / "README.md"


def _render(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | list | dict):
        return json.dumps(value)
    return str(value)


def _fields(struct: type) -> Iterator[tuple[str, object, object]]:
    for f in msgspec.inspect.type_info(struct).fields:  # type: ignore[attr-defined]
        if f.default is not msgspec.NODEFAULT:
            default = f.default
        elif f.default_factory is not msgspec.NODEFAULT:
            default = f.default_factory()
        else:
            default = None
        yield f.name, f.type, default


def accepted_keys() -> Iterator[tuple[str, str]]:
    """(`[table] key`, its default as the README writes it) for every key that loads."""
    for table, kind, _ in _fields(DaemonSettings):
        if isinstance(kind, msgspec.inspect.StructType):
            for key, _, default in _fields(kind.cls):
                yield f"[{table}] {key}", _render(default)
    for key, _, default in _fields(WorkloadSpec):
        yield f"[workloads.NAME] {key}", "required" if key == "user" else _render(default)


def readme_rows() -> dict[str, str]:
    section = README.read_text().split("### Every key", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`["):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def test_every_config_key_is_in_the_readme_with_its_default():
    rows = readme_rows()
    wrong = {k: (rows.get(k), d) for k, d in accepted_keys() if rows.get(k) != d}
    assert not wrong, f"README's Every key table vs the config Structs: {wrong}"


def test_the_readme_lists_no_key_that_does_not_load():
    accepted = dict(accepted_keys())
    assert set(readme_rows()) <= set(accepted)


def test_every_table_of_clawvisor_toml_is_covered():
    tables = {k.split("]")[0][1:] for k, _ in accepted_keys()}
    assert tables >= {"server", "audit", "approvals", "provision", "verify", "monitors"}
