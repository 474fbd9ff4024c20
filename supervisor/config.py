"""The daemon's configuration: clawvisor.toml, workloads.toml, and the embedded default.

Each file is declared as a msgspec Struct, which is its schema, its validator and its
documentation. Workload users are resolved to uids once, here, never per request.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from executors import ACTIONS
from executors.base import Account, ExecutorSettings, WorkloadFiles, WorkloadName, whole
from executors.runner import TemplateError, template_fields

from .fleet.settings import FleetSettings
from .proxy.settings import ProxySettings

DEFAULT_CONFIG_DIR = Path("/etc/clawvisor")
DEFAULT_RUNTIME_DIR = Path("/run/clawvisor")
DEFAULT_STATE_DIR = Path("/var/lib/clawvisor")
DEFAULT_LOG_DIR = Path("/var/log/clawvisor")
EMBEDDED_POLICY_NAME = "<embedded>/policy.toml"
DEMO_WORKLOAD = "demo"

T = TypeVar("T")
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86400)]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file and field."""


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Limits on the two sockets."""

    max_connections_per_uid: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 16
    max_inflight: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 128
    idle_timeout: Seconds = 600.0
    frame_timeout: Seconds = 10.0
    #: On stop and upgrade, how long started executors may take to finish (below the
    #: unit's TimeoutStopSec=30s); what still runs then is interrupted and recorded so.
    drain_timeout: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 20.0
    socket_group: str = "clawvisor-gw"
    #: Members of this group may use control.sock (answer approvals, manage grants).
    control_group: str = "clawvisor-ops"
    #: How executors start processes: `systemd-run` (transient units outside the
    #: daemon's sandbox), `direct`, or `auto` (systemd-run when running as a service).
    launcher: Literal["auto", "direct", "systemd-run"] = "auto"


class ExecutorConfig(msgspec.Struct, kw_only=True):
    """The keys every `[executors.NAME]` table may have; the rest are the action's options.

    `argv` is a template whose `{name}` fields are each filled with one whole argument.
    """

    argv: list[str] | None = None
    timeout: Seconds | None = None
    output_cap: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    env: dict[Annotated[str, msgspec.Meta(pattern=whole(r"[A-Z_][A-Z0-9_]*"))], str] | None = None


_COMMON_KEYS = frozenset(ExecutorConfig.__struct_fields__)


class AuditSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Audit trail settings."""

    params_cap: Annotated[int, msgspec.Meta(ge=256, le=65536)] = 4096
    fallback_file: str = "audit.jsonl"
    #: The journal namespace of the trail (clawvisor.service has LogNamespace= the same):
    #: its own journald, with limits of its own, that no other logs can rotate away.
    #: "" writes to the system journal.
    journal_namespace: Annotated[str, msgspec.Meta(pattern=whole(r"[a-z0-9_-]{0,64}"))] = (
        "clawvisor"
    )
    #: When neither journald nor the fallback file takes records (a full disk): read-only
    #: intents are refused (`refuse`) or served with their records held in memory and
    #: written once the trail is back (`serve`). Mutating intents are always refused.
    readonly_when_unavailable: Literal["refuse", "serve"] = "refuse"
    #: Records held while the trail is unavailable; beyond it they are counted as lost.
    backlog: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 10_000
    #: Refused input (bad lines, refused connections) each uid may have recorded one by
    #: one, per second and in a burst; beyond that one record every `rejected_interval`
    #: seconds counts the rest. A flooding workload costs the trail about
    #: rate + 1/interval records a second, whatever it sends.
    rejected_rate: Annotated[float, msgspec.Meta(gt=0, le=100_000)] = 1.0
    rejected_burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 20
    rejected_interval: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 5.0
    #: Refused intents (denied, rate-limited, refused before asking) each workload may
    #: have recorded one by one, per second and in a burst; beyond that they are counted
    #: in one record every `rejected_interval` (ids first..last). Intents that run or
    #: are asked about are always recorded one by one.
    denied_rate: Annotated[float, msgspec.Meta(gt=0, le=100_000)] = 10.0
    denied_burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 200


class ApprovalSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which approval agents this box runs (`policy check` warns on asks none can answer)."""

    agents: list[Literal["desktop", "telegram", "cli", "web"]] = msgspec.field(
        default_factory=lambda: ["cli", "desktop", "telegram", "web"]
    )
    #: Asks of one workload that may wait at once; more are rate_limited.
    max_pending_per_workload: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    #: The user the Telegram agent runs as: only it may answer as `telegram`.
    telegram_agent_user: str | None = None


class ProvisionSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where `clawvisor provision` puts things, and what the firewall treats as LAN."""

    home_root: AbsPath = "/home"
    unit_dir: AbsPath = "/etc/systemd/system"
    sysctl_file: AbsPath = "/etc/sysctl.d/60-clawvisor.conf"
    #: Resolvers workloads may query (port 53); empty: the nameservers in /etc/resolv.conf.
    dns: list[str] = []
    #: Extra networks treated as LAN (always dropped), beyond RFC 1918, link-local,
    #: CGNAT, ULA, loopback and the subnets this machine's interfaces are on.
    lan: list[str] = []
    metadata: list[str] = msgspec.field(
        default_factory=lambda: ["169.254.169.254", "fd00:ec2::254"]
    )


class MonitorSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The monitors, and the kernel-side limits of the syscall monitor."""

    enabled: bool = True
    bpf: bool = True
    overlay: bool = True
    counters: bool = True
    counters_interval: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 2.0
    #: Events a second one workload uid may produce before it is throttled (an alert).
    #: Below what the daemon decodes on a small VM, so one flooding uid is throttled (and
    #: named in an alert) before the shared ring buffer overflows for everyone.
    rate: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 150_000
    burst: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 300_000
    #: Ring buffer size in 4 KiB pages (a power of two).
    ringbuf_pages: Annotated[int, msgspec.Meta(ge=16, le=65536)] = 4096
    default_triggers: bool = True
    #: Keep every event in LOG_DIR/events/ (supervisor/monitors/eventlog.py), bounded.
    event_log: bool = True
    event_log_max_bytes: Annotated[int, msgspec.Meta(ge=1 << 20)] = 1 << 30
    event_log_max_age: Annotated[float, msgspec.Meta(gt=0)] = 7 * 86400.0


class VerifySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where `clawvisor verify` aims its network probes (ADDRESS:PORT)."""

    lan_probe: str | None = None
    internet_probe: str = "1.1.1.1:443"
    #: The daemon runs verify this often (seconds) and soon after each reload; any FAIL
    #: is a critical alert and `status` shows the last result. 0: never on its own.
    interval: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)] = 3600.0


class DaemonSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The whole of clawvisor.toml; every table is optional."""

    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    executors: dict[str, dict[str, Any]] = {}
    audit: AuditSettings = msgspec.field(default_factory=AuditSettings)
    approvals: ApprovalSettings = msgspec.field(default_factory=ApprovalSettings)
    provision: ProvisionSettings = msgspec.field(default_factory=ProvisionSettings)
    verify: VerifySettings = msgspec.field(default_factory=VerifySettings)
    monitors: MonitorSettings = msgspec.field(default_factory=MonitorSettings)
    proxy: ProxySettings = msgspec.field(default_factory=ProxySettings)
    fleet: FleetSettings = msgspec.field(default_factory=FleetSettings)


AbsPath = Annotated[str, msgspec.Meta(pattern=whole(r"/[^\x00]*"), max_length=4096)]
#: A path overlayfs options can carry unescaped (no `,`, `:`, `\\` or whitespace).
MountPath = Annotated[str, msgspec.Meta(pattern=whole(r"/[^,:\\\s\x00]*"), max_length=1024)]
#: A host name, an IP address or CIDR, each optionally with `:PORT` (IPv6 in brackets).
EgressEntry = Annotated[
    str, msgspec.Meta(min_length=1, max_length=300, pattern=whole(r"[\[\]0-9A-Za-z.:/-]+"))
]
#: `ADDRESS:PORT` (an IPv6 address in brackets).
HostService = Annotated[
    str, msgspec.Meta(pattern=whole(r"(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}"))
]


class Inbound(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A port of the workload's that others may connect to (or send datagrams to)."""

    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    #: Who may: addresses or networks (CIDR); empty: anyone.
    sources: list[Annotated[str, msgspec.Meta(max_length=64)]] = []

    def __post_init__(self) -> None:
        for src in self.sources:
            ipaddress.ip_network(src, strict=False)  # ValueError: not an address or network


class OverlaySpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The workload's view of a host directory: `lower` read-only, writes to its upper layer."""

    lower: MountPath


class WorkloadSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One workload in workloads.toml."""

    user: Annotated[str, msgspec.Meta(pattern=whole(r"[a-z_][a-z0-9_-]{0,30}"))]
    #: A fixed uid for the user (created with it; an existing user must already have it).
    uid: Annotated[int, msgspec.Meta(ge=100, le=2**31 - 2)] | None = None
    tags: list[Annotated[str, msgspec.Meta(pattern=whole(r"[a-zA-Z0-9_-]{1,64}"))]] = []
    #: Egress: `open` (anything but LAN), `none`, only the allowed addresses
    #: (`allowlist`), or only the allowed domain names, through the proxy (`proxy`).
    internet: Literal["open", "none", "allowlist", "proxy"] = "none"
    #: May it query the configured resolvers? Unset: yes for `open` and `allowlist`
    #: (`egress-allow` resolves names as the workload), no for `none`, where DNS would be
    #: the one way out left (a tunnel through the resolver).
    dns: bool | None = None
    #: Always-allowed destinations for `allowlist` (host names are resolved at provision).
    egress_allow: list[EgressEntry] = []
    #: Host addresses the workload may always reach, even on the LAN (a model server...).
    host_services: list[HostService] = []
    #: Ports others may connect to; every other inbound connection is dropped.
    inbound: list[Inbound] = []
    overlay: OverlaySpec | None = None
    #: The gateway's command line, run by clawvisor-workload@NAME.service as the user.
    gateway: list[Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]] | None = None
    #: Where `sync-out` copies the workload's files to, on the host side.
    destination: AbsPath | None = None


def resolves(spec: WorkloadSpec) -> bool:
    """Whether the workload may query the configured resolvers (a proxy workload has no
    need: the proxy resolves)."""
    return spec.dns if spec.dns is not None else spec.internet in ("open", "allowlist")


class WorkloadsFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """workloads.toml: `[workloads.NAME]` tables."""

    workloads: dict[WorkloadName, WorkloadSpec] = {}


@dataclass(frozen=True, slots=True)
class Paths:
    """Where the daemon reads config and keeps its sockets, state and logs."""

    config_dir: Path
    runtime_dir: Path
    state_dir: Path
    log_dir: Path

    @property
    def intents_socket(self) -> Path:
        return self.runtime_dir / "intents.sock"

    @property
    def control_socket(self) -> Path:
        return self.runtime_dir / "control.sock"

    @property
    def policy_dir(self) -> Path:
        return self.config_dir / "policy.d"


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded, resolved configuration."""

    paths: Paths
    settings: DaemonSettings
    executors: Mapping[str, ExecutorSettings]
    workloads: Mapping[str, Account]
    by_uid: Mapping[int, Account]
    embedded: bool
    warnings: tuple[str, ...]
    #: Every configured workload (also those whose user is missing) and its tags.
    tags: Mapping[str, frozenset[str]]
    #: Where each workload's files are (overlay upper layer, sync destination, ops tier).
    files: Mapping[str, WorkloadFiles]

    @property
    def workload_names(self) -> tuple[str, ...]:
        return tuple(self.workloads)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _convert(data: Mapping[str, Any], kind: type[T], path: Path | str) -> T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def resolve_user(workload: str, user: str) -> Account:
    """Look a workload's account up once; raises KeyError if it does not exist."""
    pw = pwd.getpwnam(user)
    groups = tuple(g for g in os.getgrouplist(pw.pw_name, pw.pw_gid) if g != pw.pw_gid)
    return Account(
        workload=workload,
        user=pw.pw_name,
        uid=pw.pw_uid,
        gid=pw.pw_gid,
        groups=groups,
        home=pw.pw_dir,
    )


def build_executor_settings(settings: DaemonSettings, origin: str) -> dict[str, ExecutorSettings]:
    """Merge each action's defaults with clawvisor.toml and check its argv template."""
    unknown = set(settings.executors) - set(ACTIONS)
    if unknown:
        raise ConfigError(f"{origin}: [executors] names unknown actions: {sorted(unknown)}")
    out: dict[str, ExecutorSettings] = {}
    launcher = resolve_launcher(settings.server.launcher)
    for name, action in ACTIONS.items():
        table = settings.executors.get(name, {})
        where = f"{origin}: [executors.{name}]"
        cfg = _convert({k: v for k, v in table.items() if k in _COMMON_KEYS}, ExecutorConfig, where)
        options = _convert(
            {k: v for k, v in table.items() if k not in _COMMON_KEYS}, action.options, where
        )
        if name == "egress-allow":  # where the proxy's lists are: said once, in [proxy]
            options = msgspec.structs.replace(options, proxy_dir=settings.proxy.dir)
        argv = tuple(cfg.argv) if cfg.argv is not None else action.default_argv
        try:
            names = template_fields(argv)
        except TemplateError as exc:
            raise ConfigError(f"{origin}: executors.{name}.argv: {exc}") from None
        extra = names - set(action.template_names)
        if extra:
            raise ConfigError(
                f"{origin}: executors.{name}.argv uses unknown fields "
                f"{sorted(extra)} (this action has {list(action.template_names)})"
            )
        if action.run is not None and action.default_argv and not argv:
            raise ConfigError(f"{origin}: executors.{name}.argv must not be empty")
        env = dict(action.default_env) if cfg.env is None else dict(cfg.env)
        timeout = cfg.timeout if cfg.timeout is not None else action.default_timeout
        out[name] = ExecutorSettings(
            argv=argv,
            timeout=timeout,
            output_cap=cfg.output_cap,
            env=env,
            options=options,
            launcher=launcher,
        )
    return out


def resolve_launcher(choice: str) -> Literal["direct", "systemd-run"]:
    """`auto`: systemd-run when this process is a systemd service, else direct."""
    if choice == "systemd-run":
        return "systemd-run"
    if choice == "direct":
        return "direct"
    under_systemd = bool(os.environ.get("INVOCATION_ID")) and Path("/run/systemd/system").is_dir()
    return "systemd-run" if under_systemd else "direct"


def _resolve_workloads(
    specs: Mapping[str, WorkloadSpec], origin: str
) -> tuple[dict[str, Account], dict[int, Account], list[str]]:
    workloads: dict[str, Account] = {}
    by_uid: dict[int, Account] = {}
    warnings: list[str] = []
    for name, spec in specs.items():
        try:
            account = resolve_user(name, spec.user)
        except KeyError:
            warnings.append(
                f"{origin}: workload {name!r}: user {spec.user!r} does not exist; "
                "it can neither send intents nor be a target"
            )
            continue
        if account.uid in by_uid:
            raise ConfigError(
                f"{origin}: workloads {by_uid[account.uid].workload!r} and "
                f"{name!r} share uid {account.uid}; identity would be ambiguous"
            )
        workloads[name] = account
        by_uid[account.uid] = account
    return workloads, by_uid, warnings


def load_settings_and_specs(paths: Paths) -> tuple[DaemonSettings, WorkloadsFile]:
    """clawvisor.toml and workloads.toml, checked against their schemas."""
    settings_path = paths.config_dir / "clawvisor.toml"
    workloads_path = paths.config_dir / "workloads.toml"
    settings = _convert(_read_toml(settings_path), DaemonSettings, settings_path)
    specs = _convert(_read_toml(workloads_path), WorkloadsFile, workloads_path)
    return settings, specs


def load_config(paths: Paths) -> Config:
    """Load clawvisor.toml and workloads.toml from the config directory."""
    settings_path = paths.config_dir / "clawvisor.toml"
    workloads_path = paths.config_dir / "workloads.toml"
    settings, specs = load_settings_and_specs(paths)
    executors = build_executor_settings(settings, str(settings_path))
    workloads, by_uid, warnings = _resolve_workloads(specs.workloads, str(workloads_path))
    return Config(
        paths=paths,
        settings=settings,
        executors=MappingProxyType(executors),
        workloads=MappingProxyType(workloads),
        by_uid=MappingProxyType(by_uid),
        embedded=False,
        warnings=tuple(warnings),
        tags=MappingProxyType({n: frozenset(s.tags) for n, s in specs.workloads.items()}),
        files=MappingProxyType(
            {n: workload_files(paths, n, specs.workloads[n], w) for n, w in workloads.items()}
        ),
    )


def overlay_dir(paths: Paths, workload: str) -> Path:
    """Where a workload's overlay upper and work directories live."""
    return paths.state_dir / "overlay" / workload


def workload_files(paths: Paths, name: str, spec: WorkloadSpec, account: Account) -> WorkloadFiles:
    """A workload's file locations, as executors see them."""
    upper = str(overlay_dir(paths, name) / "upper") if spec.overlay is not None else None
    return WorkloadFiles(
        upper=upper, destination=spec.destination, ops=str(Path(account.home) / "ops")
    )


def demo_uid() -> int:
    """The uid of whoever started the daemon through sudo, else root."""
    raw = os.environ.get("SUDO_UID", "")
    return int(raw) if raw.isdigit() else 0


def embedded_config(paths: Paths) -> Config:
    """The built-in demo config: the invoking user is the workload `demo`."""
    settings = DaemonSettings()
    pw = pwd.getpwuid(demo_uid())
    account = resolve_user(DEMO_WORKLOAD, pw.pw_name)
    return Config(
        paths=paths,
        settings=settings,
        executors=MappingProxyType(build_executor_settings(settings, "<embedded>")),
        workloads=MappingProxyType({DEMO_WORKLOAD: account}),
        by_uid=MappingProxyType({account.uid: account}),
        embedded=True,
        warnings=(),
        tags=MappingProxyType({DEMO_WORKLOAD: frozenset()}),
        files=MappingProxyType(
            {
                DEMO_WORKLOAD: WorkloadFiles(
                    upper=None, destination=None, ops=str(Path(account.home) / "ops")
                )
            }
        ),
    )


def embedded_policy_text() -> str:
    """The text of the embedded demo policy."""
    return resources.files("supervisor").joinpath("defaults/policy.toml").read_text("utf-8")


def group_gid(name: str) -> int | None:
    """The gid of a group, or None when it does not exist."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
