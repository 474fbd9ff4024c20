"""Install, upgrade and remove clawvisor on a host: `make install`, `make uninstall` and the
Debian package's maintainer scripts all run this file with the system Python (standard
library only: no venv exists yet when it runs).

Layout: every build gets its own venv under PREFIX/releases/VERSION-HASH, built offline
from the wheels of that build; PREFIX/current points at the one in force and is switched
with one rename. A running daemon keeps its files until `systemctl reload` re-executes it
into the new build (the previous release is kept for that). Configuration in
/etc/clawvisor is written only when absent; state and logs are never touched except by
`remove --purge`.

    python3 supervisor/install.py install --wheels build/wheels [--packaged]
    python3 supervisor/install.py remove [--purge] [--packaged]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]
# Its own (as provision/box.py has one): this file runs as a script, before the package
# it installs is importable.
SYSTEMD_RUNNING = Path("/run/systemd/system")
SOCKETS = ("clawvisor-intents.socket", "clawvisor-control.socket")
SERVICE = "clawvisor.service"
USER_UNITS = ("clawvisor-approver-desktop.service",)
#: The trail's journal limits, shipped in units/ and installed as a journald drop-in.
JOURNALD_CONF = "journald@clawvisor.conf"
TELEGRAM_USER = "clawvisor-telegram"
OPS_GROUP = "clawvisor-ops"
KEEP_RELEASES = 2


class Layout:
    """Where everything goes; the defaults are `make install`'s, the Debian package's differ."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.prefix = Path(args.prefix)
        self.unit_dir = Path(args.unit_dir)
        self.user_unit_dir = Path(args.user_unit_dir)
        self.catalog_dir = Path(args.catalog_dir)
        #: journald reads drop-ins for the namespace from <lib>/systemd/journald@NS.conf.d.
        self.journald_dropin = (
            Path(args.catalog_dir).parent / "journald@clawvisor.conf.d" / "50-clawvisor.conf"
        )
        self.config_dir = Path(args.config_dir)
        self.state_dirs = [Path(p) for p in args.state_dir]
        self.units_from = Path(args.units_from)
        self.defaults_from = Path(args.defaults_from)
        self.doc = Path(args.doc)
        self.packaged = args.packaged
        #: On PATH for gateways configured as `clawvisor mcp` (dpkg ships its own link).
        self.bin_link = Path(args.bin_link)

    @property
    def releases(self) -> Path:
        return self.prefix / "releases"

    @property
    def current(self) -> Path:
        return self.prefix / "current"


def say(text: str) -> None:
    print(f"clawvisor install: {text}", flush=True)


def run(*argv: str, check: bool = True) -> int:
    """One command, argv only; its output goes to ours."""
    return subprocess.run(list(argv), check=check).returncode


def systemd_up() -> bool:
    return SYSTEMD_RUNNING.is_dir()


# --- the release ------------------------------------------------------------------------------


def build_id(wheels: Path) -> str:
    """VERSION-HASH of the clawvisor wheel in `wheels`: a rebuilt wheel is a new release."""
    found = sorted(wheels.glob("clawvisor-*.whl"))
    if len(found) != 1:
        raise SystemExit(f"clawvisor install: want one clawvisor wheel in {wheels}, found {found}")
    version = found[0].name.split("-")[1]
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()[:10]
    return f"{version}-{digest}"


def make_release(layout: Layout, wheels: Path) -> Path:
    """The venv of this build (created offline from `wheels`, unless already complete)."""
    release = layout.releases / build_id(wheels)
    marker = release / ".complete"
    if marker.exists():
        say(f"release {release.name} is already installed")
        return release
    if release.exists():
        shutil.rmtree(release)  # a half-made one from an interrupted run
    layout.releases.mkdir(parents=True, exist_ok=True)
    say(f"creating {release}")
    run(sys.executable, "-m", "venv", "--system-site-packages", str(release))
    run(
        str(release / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-index",
        "--find-links",
        str(wheels),
        "clawvisor",
    )
    doc = release / "share" / "doc" / "clawvisor"
    doc.mkdir(parents=True, exist_ok=True)
    if layout.doc.is_file():
        shutil.copy(layout.doc, doc / "README.md")
    marker.write_text(release.name + "\n")
    return release


def switch_current(layout: Layout, release: Path) -> str | None:
    """Point `current` at `release` in one rename; the release it pointed at before."""
    before = os.readlink(layout.current) if layout.current.is_symlink() else None
    tmp = layout.prefix / "current.new"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(Path("releases") / release.name)
    tmp.replace(layout.current)
    say(f"current -> {release.name}")
    return before


def prune(layout: Layout, keep: list[str]) -> None:
    """Remove releases but the newest few and the ones in `keep`."""
    releases = sorted(
        (p for p in layout.releases.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime
    )
    for old in releases[:-KEEP_RELEASES]:
        if old.name not in keep:
            say(f"removing old release {old.name}")
            shutil.rmtree(old)


# --- files beside the release -------------------------------------------------------------------


def link_bin(layout: Layout) -> None:
    """Put `clawvisor` on PATH: a link to the build in force, left alone if it is not ours."""
    target = layout.current / "bin" / "clawvisor"
    link = layout.bin_link
    if link.exists() and not link.is_symlink():
        say(f"{link} exists and is not a link: left alone, use {target}")
        return
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)
    say(f"{link} -> {target}")


def unlink_bin(layout: Layout) -> None:
    """Remove the PATH link only when it points into this prefix."""
    link = layout.bin_link
    if link.is_symlink() and os.readlink(link).startswith(str(layout.prefix) + "/"):
        link.unlink()


def install_units(layout: Layout) -> None:
    """Unit files, the user unit and the message catalog (the Debian package ships its own)."""
    if layout.packaged:
        return
    layout.unit_dir.mkdir(parents=True, exist_ok=True)
    layout.user_unit_dir.mkdir(parents=True, exist_ok=True)
    layout.catalog_dir.mkdir(parents=True, exist_ok=True)
    for unit in sorted(layout.units_from.glob("*")):
        if unit.suffix not in (".service", ".socket"):
            continue
        target = layout.user_unit_dir if unit.name in USER_UNITS else layout.unit_dir
        shutil.copy(unit, target / unit.name)
        os.chmod(target / unit.name, 0o644)
    shutil.copy(layout.units_from / "clawvisor.catalog", layout.catalog_dir / "clawvisor.catalog")
    layout.journald_dropin.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(layout.units_from / JOURNALD_CONF, layout.journald_dropin)
    os.chmod(layout.journald_dropin, 0o644)
    say(
        f"units in {layout.unit_dir}, catalog in {layout.catalog_dir}, the trail's journal "
        f"limits in {layout.journald_dropin}"
    )


def install_defaults(layout: Layout) -> None:
    """The default configuration, only where nothing is there yet.

    A policy directory that has any file is the administrator's: no default rule is
    added to it (it would change what their policy allows).
    """
    for src in sorted(layout.defaults_from.rglob("*")):
        if not src.is_file():
            continue
        dst = layout.config_dir / src.relative_to(layout.defaults_from)
        if dst.exists():
            continue
        if src.parent != layout.defaults_from and dst.parent.is_dir() and any(dst.parent.iterdir()):
            continue
        dst.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copy(src, dst)
        os.chmod(dst, 0o644)
        say(f"wrote default {dst}")


def ensure_telegram_user() -> None:
    """The Telegram agent's own system user, in the operators' group."""
    try:
        import pwd

        pwd.getpwnam(TELEGRAM_USER)
        return
    except KeyError:
        pass
    run(
        "useradd",
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--user-group",
        "--groups",
        OPS_GROUP,
        TELEGRAM_USER,
    )
    say(f"created user {TELEGRAM_USER}")


# --- commands ----------------------------------------------------------------------------------


def install(layout: Layout, wheels: Path) -> int:
    release = make_release(layout, wheels)
    before = switch_current(layout, release)
    prune(layout, keep=[release.name, Path(before).name if before else ""])
    install_units(layout)
    install_defaults(layout)
    if not layout.packaged:
        link_bin(layout)
    if shutil.which("journalctl"):
        run("journalctl", "--update-catalog", check=False)
    clawvisor = str(layout.current / "bin" / "clawvisor")
    if not systemd_up():
        say("systemd is not running: units installed, nothing started")
        say(f"provision with `{clawvisor} provision`, run with `{clawvisor} serve`")
        return 0
    run("systemctl", "daemon-reload")
    # Provisioning creates the sockets' groups; sockets cannot start without them.
    run(clawvisor, "provision")
    ensure_telegram_user()
    run("systemctl", "enable", "--now", *SOCKETS)
    # An upgrade: a running daemon re-executes into the new build on reload.
    run("systemctl", "try-reload-or-restart", SERVICE)
    say(f"installed {release.name}")
    return 0


def remove(layout: Layout, purge: bool) -> int:
    if systemd_up():
        run("systemctl", "disable", "--now", SERVICE, *SOCKETS, check=False)
        run(
            "systemctl",
            "stop",
            "clawvisor-approver-telegram.service",
            "clawvisor-approver-web@*.service",
            "clawvisor-workload@*.service",
            check=False,
        )
    if not layout.packaged:
        for unit in sorted(layout.units_from.glob("*")):
            for d in (layout.unit_dir, layout.user_unit_dir):
                (d / unit.name).unlink(missing_ok=True)
        (layout.catalog_dir / "clawvisor.catalog").unlink(missing_ok=True)
        layout.journald_dropin.unlink(missing_ok=True)
        unlink_bin(layout)
        with contextlib.suppress(OSError):
            layout.journald_dropin.parent.rmdir()
    if layout.prefix.exists():
        shutil.rmtree(layout.prefix)
        say(f"removed {layout.prefix}")
    if shutil.which("journalctl"):
        run("journalctl", "--update-catalog", check=False)
    if systemd_up():
        run("systemctl", "daemon-reload", check=False)
    if purge:
        for d in (layout.config_dir, *layout.state_dirs):
            if d.exists():
                shutil.rmtree(d)
                say(f"purged {d}")
        run("userdel", TELEGRAM_USER, check=False)
    say(
        "workloads stay provisioned (users, homes, firewall table: they fail closed); "
        "remove them first with `clawvisor deprovision NAME` if that is wanted"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["install", "remove"])
    p.add_argument("--wheels", type=Path, help="the build's wheels (install)")
    p.add_argument("--purge", action="store_true", help="also configuration, state and logs")
    p.add_argument("--packaged", action="store_true", help="dpkg owns units and catalog")
    p.add_argument("--prefix", default="/opt/clawvisor")
    p.add_argument("--unit-dir", default="/usr/local/lib/systemd/system")
    p.add_argument("--user-unit-dir", default="/usr/local/lib/systemd/user")
    p.add_argument("--catalog-dir", default="/usr/local/lib/systemd/catalog")
    p.add_argument("--config-dir", default="/etc/clawvisor")
    p.add_argument("--bin-link", default="/usr/bin/clawvisor", help="clawvisor on PATH")
    p.add_argument(
        "--state-dir",
        action="append",
        default=["/var/lib/clawvisor", "/var/log/clawvisor", "/var/lib/clawvisor-telegram"],
    )
    p.add_argument("--units-from", default=str(SOURCE / "units"))
    p.add_argument("--defaults-from", default=str(SOURCE / "supervisor" / "defaults" / "etc"))
    p.add_argument("--doc", default=str(SOURCE / "README.md"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("clawvisor install: run as root")
    layout = Layout(args)
    if args.command == "install":
        if args.wheels is None:
            raise SystemExit("clawvisor install: --wheels DIR is required")
        return install(layout, args.wheels)
    return remove(layout, args.purge)


if __name__ == "__main__":
    sys.exit(main())
