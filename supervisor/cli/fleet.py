"""`clawvisor fleet certs | collector | upload`: the trail of many VMs on one collector."""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
from pathlib import Path

from .common import Subcommands


def _cmd_certs(args: argparse.Namespace) -> int:
    from ..fleet.certs import ensure_ca, issue

    made = []
    try:
        ensure_ca(args.dir)
        if args.collector:
            issue(args.dir, args.collector, server_names=[args.collector, *args.address])
            made.append(f"collector {args.collector}")
        for vm in args.vm:
            issue(args.dir, vm)
            made.append(f"VM {vm}")
    except (subprocess.CalledProcessError, ValueError) as exc:
        why = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        print(f"clawvisor fleet certs: {why}")
        return 1
    print(f"in {args.dir}: CA ca.pem" + "".join(f", {m}" for m in made))
    return 0


def _cmd_collector(args: argparse.Namespace) -> int:
    import shutil

    from ..fleet.journal import STUNNEL, TLS_CREDENTIALS, collector_units, remote_argv, tls_config

    tls = args.certs / "stunnel.conf"
    if not args.run:
        tls.write_text(tls_config(args.listen, args.inner, TLS_CREDENTIALS, args.name))
        # journal-remote's own user writes the VMs' files, and only there.
        args.output.mkdir(parents=True, exist_ok=True)
        shutil.chown(args.output, "systemd-journal-remote", "systemd-journal-remote")
        for name, text in collector_units(args.inner, args.output, args.certs, args.name).items():
            (args.unit_dir / name).write_text(text)
            print(f"wrote {args.unit_dir / name}")
        print("then: systemctl daemon-reload && systemctl enable --now clawvisor-fleet-tls.service")
        return 0
    tls.write_text(tls_config(args.listen, args.inner, args.certs, args.name))
    args.output.mkdir(parents=True, exist_ok=True)
    # Both here, in the foreground; either ending ends the other (by their own pids).
    remote = subprocess.Popen(remote_argv(args.inner, args.output))
    wrapper = subprocess.Popen([STUNNEL, str(tls)])

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while remote.poll() is None and wrapper.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                remote.wait(0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        for proc in (wrapper, remote):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    return remote.returncode or wrapper.returncode or 0


def _cmd_upload(args: argparse.Namespace) -> int:
    from ..fleet.journal import upload_argv

    state = args.state or Path("/var/lib/clawvisor-upload/state")
    argv = upload_argv(args.url, args.certs, args.vm, args.journal_dir, state)
    if not args.follow:  # journal-upload follows a --directory unless told not to
        argv[argv.index("--follow")] = "--follow=no"
    proc = subprocess.Popen(argv)

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(1)

    signal.signal(signal.SIGTERM, stop)
    try:
        # Once, without --follow: done when the directory is, or refused (it would
        # otherwise retry a collector that refuses its certificate for ever).
        code = proc.wait(None if args.follow else args.timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt, SystemExit):
        code = 1
    finally:
        if proc.poll() is None:  # never leave it behind (by its own pid)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0 if code == 0 else 1


def register(sub: Subcommands) -> None:
    """Add this group's subcommands."""
    fl = sub.add_parser("fleet", help="many VMs: certificates, the trail's collector")
    fsub = fl.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    p = fsub.add_parser("certs", help="the fleet's CA, the collector's and each VM's certificates")
    p.add_argument("--dir", type=Path, required=True, help="where they are (mode 0700)")
    p.add_argument("--collector", metavar="NAME", help="the collector's host name")
    p.add_argument("--address", action="append", default=[], help="the collector's addresses")
    p.add_argument("--vm", action="append", default=[], metavar="NAME", help="a VM; repeatable")
    p.set_defaults(func=_cmd_certs)
    p = fsub.add_parser("collector", help="systemd-journal-remote for the fleet (HTTPS only)")
    p.add_argument("--certs", type=Path, required=True)
    p.add_argument("--name", required=True, help="the collector's certificate name")
    p.add_argument(
        "--listen",
        default="0.0.0.0:19532",
        metavar="ADDRESS:PORT",
        help="where the VMs connect (TLS, their fleet certificate required)",
    )
    p.add_argument(
        "--inner",
        default="127.0.0.1:19531",
        metavar="ADDRESS:PORT",
        help="journal-remote's own, plain HTTP on loopback (stunnel's only peer)",
    )
    p.add_argument("--output", type=Path, default=Path("/var/log/journal/remote"))
    p.add_argument("--unit-dir", type=Path, default=Path("/etc/systemd/system"))
    p.add_argument("--run", action="store_true", help="run it here instead of writing a unit")
    p.set_defaults(func=_cmd_collector)
    p = fsub.add_parser("upload", help="ship this VM's trail to the collector now")
    p.add_argument("--url", required=True)
    p.add_argument("--certs", type=Path, required=True)
    p.add_argument("--vm", required=True, help="this VM's certificate name")
    p.add_argument("--journal-dir", type=Path, required=True, help="the trail's journal files")
    p.add_argument("--state", type=Path, help="where the last uploaded cursor is kept")
    p.add_argument("--follow", action="store_true", help="keep uploading new records")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="without --follow: give up after this many seconds",
    )
    p.set_defaults(func=_cmd_upload)
