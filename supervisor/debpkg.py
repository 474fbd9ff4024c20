"""Build the Debian package with dpkg-deb (`make deb`): the build's wheels, the units, the
message catalog, the default configuration and the installer; maintainer scripts that do
what `make install` and `make uninstall` do. Standard library only.

On install and upgrade, postinst runs supervisor/install.py (shipped as
/usr/share/clawvisor/install.py): a new release venv from the shipped wheels, `current`
switched, provisioning, the sockets enabled, and `systemctl try-reload-or-restart`, which
re-executes a running daemon into the new build. prerm stops it on removal only; postrm
removes the release venvs (dpkg does not own them) and, on purge, configuration, state,
logs and the Telegram agent's user.

    python3 supervisor/debpkg.py --wheels build/wheels --out build
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]
SHARE = "usr/share/clawvisor"
DEPENDS = (
    "python3 (>= 3.11), python3-venv, python3-bpfcc, python3-nftables, python3-systemd, "
    "nftables, acl, iproute2, util-linux, passwd, systemd"
)
INSTALL = f"/{SHARE}/install.py"
INSTALL_ARGS = [
    "--packaged",
    "--wheels",
    f"/{SHARE}/wheels",
    "--defaults-from",
    f"/{SHARE}/defaults/etc",
    "--units-from",
    f"/{SHARE}/units",
    "--doc",
    "/usr/share/doc/clawvisor/README.md",
]
PURGED = (
    "/etc/clawvisor",
    "/var/lib/clawvisor",
    "/var/log/clawvisor",
    "/var/lib/clawvisor-telegram",
)

POSTINST = f"""#!/usr/bin/python3
# clawvisor postinst: a release venv from the shipped wheels, provisioning, sockets enabled,
# and a running daemon re-executed into the new build.
import subprocess, sys
if sys.argv[1] == "configure":
    argv = ["/usr/bin/python3", "{INSTALL}", "install", *{INSTALL_ARGS!r}]
    sys.exit(subprocess.run(argv).returncode)
"""

PRERM = f"""#!/usr/bin/python3
# clawvisor prerm: stop and disable on removal; an upgrade keeps it running (postinst
# re-executes it into the new build).
import subprocess, sys
if sys.argv[1] == "remove":
    argv = ["/usr/bin/python3", "{INSTALL}", "remove", *{INSTALL_ARGS!r}]
    sys.exit(subprocess.run(argv).returncode)
"""

POSTRM = f"""#!/usr/bin/python3
# clawvisor postrm: the files dpkg does not own. The installer is gone by now: no imports.
import os, shutil, subprocess, sys
if sys.argv[1] in ("remove", "purge"):
    shutil.rmtree("/opt/clawvisor", ignore_errors=True)
    if os.path.isdir("/run/systemd/system"):
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    subprocess.run(["journalctl", "--update-catalog"], check=False)
if sys.argv[1] == "purge":
    for path in {PURGED!r}:
        shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["userdel", "clawvisor-telegram"], check=False)
"""


def control(version: str) -> str:
    return (
        "Package: clawvisor\n"
        f"Version: {version}\n"
        "Architecture: amd64\n"
        "Section: admin\n"
        "Priority: optional\n"
        "Maintainer: clawvisor developers <clawvisor@localhost>\n"
        f"Depends: {DEPENDS}\n"
        "Recommends: linux-headers-amd64, bpfcc-tools\n"
        # The fleet: journal-upload on each VM ([fleet] collector), stunnel on the collector.
        "Suggests: systemd-journal-remote, stunnel4, squid-openssl\n"
        "Description: supervisor between autonomous AI agents and the machine\n"
        " A privileged daemon that takes typed intents from agent gateways over a Unix\n"
        " socket, checks them against an allow/ask/deny policy, asks a human when told\n"
        " to, runs fixed executors, watches every workload (eBPF, overlay writes,\n"
        " nftables counters) and audits everything to journald.\n"
    )


def stage(root: Path, wheels: Path, version: str) -> None:
    """Lay the package's files out under `root`."""
    share = root / SHARE
    (share / "wheels").mkdir(parents=True)
    for whl in sorted(wheels.glob("*.whl")):
        shutil.copy(whl, share / "wheels" / whl.name)
    shutil.copy(SOURCE / "supervisor" / "install.py", share / "install.py")
    shutil.copytree(SOURCE / "supervisor" / "defaults" / "etc", share / "defaults" / "etc")
    units = SOURCE / "units"
    shutil.copytree(units, share / "units")
    system = root / "lib/systemd/system"
    user = root / "usr/lib/systemd/user"
    catalog = root / "usr/lib/systemd/catalog"
    for d in (system, user, catalog):
        d.mkdir(parents=True)
    for unit in sorted(units.glob("*")):
        if unit.suffix in (".service", ".socket"):
            dest = user if unit.name == "clawvisor-approver-desktop.service" else system
            shutil.copy(unit, dest / unit.name)
    shutil.copy(units / "clawvisor.catalog", catalog / "clawvisor.catalog")
    dropin = root / "usr/lib/systemd/journald@clawvisor.conf.d"
    dropin.mkdir(parents=True)
    shutil.copy(units / "journald@clawvisor.conf", dropin / "50-clawvisor.conf")
    # On PATH for gateways configured as `clawvisor mcp`; dangling until postinst runs.
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/clawvisor").symlink_to("/opt/clawvisor/current/bin/clawvisor")
    doc = root / "usr/share/doc/clawvisor"
    doc.mkdir(parents=True)
    shutil.copy(SOURCE / "README.md", doc / "README.md")
    debian = root / "DEBIAN"
    debian.mkdir()
    (debian / "control").write_text(control(version))
    for name, text in (("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)):
        (debian / name).write_text(text)
        (debian / name).chmod(0o755)
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        elif path.parent != debian:
            path.chmod(0o644)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheels", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--version", help="package version (default: pyproject.toml's)")
    args = p.parse_args(argv)
    version = (
        args.version or tomllib.loads((SOURCE / "pyproject.toml").read_text())["project"]["version"]
    )
    root = args.out / "deb-root"
    if root.exists():
        shutil.rmtree(root)
    stage(root, args.wheels, version)
    args.out.mkdir(parents=True, exist_ok=True)
    deb = args.out / f"clawvisor_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True)
    shutil.rmtree(root)
    print(deb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
