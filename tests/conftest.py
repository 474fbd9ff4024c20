"""Fixtures: a real journald, real Linux users, a real daemon process per test module."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import rig

#: Tests under these directories start daemons, create users, namespaces and mounts.
_ROOT_DIRS = ("integration", "reliability", "system")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_root: creates users, namespaces, mounts or runs as other users"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Only the tests that need root ask for it: the pure ones run as anyone."""
    if os.geteuid() == 0:
        return
    where = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts[0]
    if where in _ROOT_DIRS or item.get_closest_marker("needs_root") is not None:
        pytest.skip("needs root (it creates users, namespaces or mounts)")


@pytest.fixture(scope="session")
def journal() -> Iterator[rig.Journald]:
    with rig.journald() as j:
        yield j


@pytest.fixture(scope="module")
def make_user() -> Iterator[Callable[[], rig.User]]:
    made: list[rig.User] = []

    def make(groups: tuple[str, ...] = (), home: str = "/nonexistent") -> rig.User:
        user = rig.create_user(groups=groups, home=home)
        made.append(user)
        return user

    yield make
    for user in made:
        rig.delete_user(user)


@pytest.fixture(scope="module")
def make_daemon() -> Iterator[Callable[..., rig.Daemon]]:
    """Start daemons on generated configs; each is stopped and its files removed after."""
    started: list[rig.Daemon] = []

    def make(
        workloads: dict[str, rig.User | str | None],
        policy: dict[str, str],
        settings: str = "",
        wrapper: list[str] | None = None,
        workload_extra: dict[str, str] | None = None,
        prepare: Callable[[Path], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> rig.Daemon:
        """`prepare(root)` runs after the config is written, before the daemon starts."""
        root = rig.shared_tmpdir("clawvisor-test-")
        rig.write_config(
            root,
            workloads=workloads,
            policy=policy,
            settings=settings,
            workload_extra=workload_extra,
        )
        if prepare is not None:
            prepare(root)
        try:
            daemon = rig.start_daemon(root, wrapper=wrapper, env=env)
        except Exception:
            rig.cleanup_root(root)
            raise
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()
        rig.cleanup_root(daemon.root)


@pytest.fixture(scope="module")
def make_group() -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        name = rig.create_group()
        made.append(name)
        return name

    yield make
    for name in made:
        rig.delete_group(name)


pytest_plugins = ["tests.helpers.reliability"]
