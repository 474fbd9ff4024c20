"""`[fleet]` in clawvisor.toml: where this VM ships its trail, and with which certificate."""

from __future__ import annotations

from typing import Annotated

import msgspec

#: An https URL (journal-upload adds `/upload`); nothing a unit file would expand.
CollectorUrl = Annotated[
    str, msgspec.Meta(pattern=r"^https://[A-Za-z0-9.\[\]:-]+(:\d{1,5})?/?$", max_length=300)
]


class FleetSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Shipping the trail to the fleet's collector (systemd-journal-upload, client cert)."""

    #: The collector, e.g. "https://collector.example:19532"; unset: the trail stays here.
    collector: CollectorUrl | None = None
    #: Where `clawvisor fleet certs` output was put on this VM: ca.pem, NAME.pem, NAME.key
    #: (root's, 0600; the upload unit is handed copies as systemd credentials).
    certs: Annotated[str, msgspec.Meta(pattern=r"^/[A-Za-z0-9._/-]*$")] = "/etc/clawvisor/fleet"
    #: This VM's certificate name; unset: the host name.
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")] | None = None
