"""What the load and hostile-workload rows share."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def enough_descriptors() -> Iterator[None]:
    """Thousands of sockets open at once: the soft descriptor limit raised for the module."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def users(make_user):  # type: ignore[no-untyped-def]
    """Two workload users: the one that misbehaves and the one that must not notice."""
    return make_user(), make_user()
