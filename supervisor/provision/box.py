"""What provisioning works from: the config, and where each workload's things go."""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass
from pathlib import Path

from ..config import DaemonSettings, Paths, WorkloadSpec, overlay_dir

NOLOGIN = "/usr/sbin/nologin"
#: Present when systemd is the init system (sd_booted(3)): units can be installed then.
SYSTEMD_RUNNING = Path("/run/systemd/system")


@dataclass(frozen=True)
class Box:
    """The desired state: settings and workloads, with the paths derived from them."""

    paths: Paths
    settings: DaemonSettings
    workloads: dict[str, WorkloadSpec]

    @property
    def gw_group(self) -> str:
        return self.settings.server.socket_group

    @property
    def ops_group(self) -> str:
        return self.settings.server.control_group

    def home(self, name: str) -> Path:
        return Path(self.settings.provision.home_root) / name

    def gateway_home(self, name: str) -> Path:
        """The gateway's HOME (its unit's WorkingDirectory too): the workload's own `work/`."""
        return self.home(name) / "work"

    def overlay_root(self, name: str) -> Path:
        return overlay_dir(self.paths, name)

    def merged(self, name: str) -> Path:
        """Where the workload sees its overlay: `shared/` in its home."""
        return self.home(name) / "shared"


def uid_of(user: str) -> int | None:
    """The user's uid, or None if there is no such user (yet)."""
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def gid_of(group: str) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None
