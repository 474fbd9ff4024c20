"""The daemon's live state: config and policy in force, swapped whole, never edited."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from importlib import metadata

from executors.base import MonitorInfo, VerifyState
from executors.capabilities import Capability
from policy import Policy

from .capabilities import describe
from .config import Config


def daemon_version() -> str:
    """The installed distribution's version."""
    try:
        return metadata.version("clawvisor")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class DaemonState:
    """What the dispatcher reads per request; attributes are replaced atomically."""

    def __init__(
        self, config: Config, policy: Policy, grant_count: Callable[[], int] = lambda: 0
    ) -> None:
        self.config = config
        self.policy = policy
        self._grant_count = grant_count
        #: Each monitor's state; set by the daemon when monitors run.
        self.monitor_status: Callable[[], list[MonitorInfo]] = list
        #: The last standing `verify` (supervisor/standing_verify.py), once one ran.
        self.verify: VerifyState | None = None
        self._started = time.monotonic()
        self._version = daemon_version()
        # Rebuilt only when the policy object is swapped: no work per request.
        self._capabilities: dict[str, tuple[Policy, list[Capability]]] = {}

    @property
    def version(self) -> str:
        return self._version

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._started

    @property
    def workload_names(self) -> Sequence[str]:
        return self.config.workload_names

    @property
    def policy_files(self) -> Sequence[str]:
        return self.policy.files

    @property
    def policy_rules(self) -> int:
        return len(self.policy.rules)

    @property
    def policy_error(self) -> str | None:
        return self.policy.error

    @property
    def grants(self) -> int:
        return self._grant_count()

    @property
    def monitors(self) -> Sequence[MonitorInfo]:
        return self.monitor_status()

    def capabilities(self, source: str) -> Sequence[Capability]:
        policy = self.policy
        cached = self._capabilities.get(source)
        if cached is None or cached[0] is not policy:
            cached = (policy, describe(policy, source))
            self._capabilities[source] = cached
        return cached[1]
