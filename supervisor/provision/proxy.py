"""The egress proxy's part of provisioning: its user, directories, port certificate, and
the inputs its configuration is rendered from (supervisor/proxy/). Only when a workload
has `internet = "proxy"`; the unit is in units.py, its firewall chain in firewall.py."""

from __future__ import annotations

import grp
import os
import shutil
import signal
import subprocess
import time
from functools import partial
from pathlib import Path

import msgspec

from ..persist import write_atomic
from ..proxy.allowlist import static_allows
from ..proxy.control import ProxyInputs, inputs_path, load_inputs, refresh, squid_pid
from ..proxy.ports import assign
from ..proxy.squid_conf import ProxyLayout
from .box import SYSTEMD_RUNNING, Box, uid_of
from .networks import resolvers
from .plan import Plan, ProvisionError, run

PROXY_UNIT = "clawvisor-proxy.service"


def proxy_workloads(box: Box) -> list[str]:
    """The workloads that go out through the proxy."""
    return sorted(n for n, s in box.workloads.items() if s.internet == "proxy")


def layout(box: Box) -> ProxyLayout:
    return ProxyLayout(Path(box.settings.proxy.dir))


def proxy_ports(box: Box) -> dict[str, int]:
    """Each proxy workload's port: the ones given before kept, new ones the lowest free."""
    have = load_inputs(layout(box))
    kept = have.ports if have is not None else {}
    try:
        return assign(kept, proxy_workloads(box), box.settings.proxy.base_port)
    except ValueError as exc:
        raise ProvisionError(str(exc)) from None


def wanted_inputs(box: Box) -> ProxyInputs:
    names = proxy_workloads(box)
    static = {}
    for name in names:
        try:
            static[name] = static_allows(box.workloads[name], box.settings.proxy.default_ports)
        except ValueError as exc:
            raise ProvisionError(f"workload {name}: {exc}") from None
    refused = [*box.settings.provision.lan, *box.settings.provision.metadata]
    return ProxyInputs(
        ports=proxy_ports(box),
        static=static,
        resolvers=resolvers(box),
        refused=refused,
        default_ports=list(box.settings.proxy.default_ports),
    )


def _own(path: Path, uid: int, gid: int, mode: int) -> None:
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def _apply(box: Box, inputs: ProxyInputs) -> None:
    lay = layout(box)
    user = box.settings.proxy.user
    uid = uid_of(user)
    if uid is None:
        raise ProvisionError(f"the proxy's user {user} does not exist")
    gid = grp.getgrnam(user).gr_gid
    # root:proxy 0750: the proxy reads its lists; no workload reads another's.
    for path, owner, mode in ((lay.dir, 0, 0o750), (lay.lists, 0, 0o755), (lay.var, uid, 0o750)):
        path.mkdir(parents=True, exist_ok=True)
        _own(path, owner, gid, mode)
    if not lay.cert.exists():
        # Squid wants a certificate on an ssl-bump port even when it only peeks and
        # splices; this one signs nothing.
        tmp = lay.dir / ".port.pem.tmp"
        run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                "-subj", "/CN=clawvisor-proxy (never used to intercept)",
                "-keyout", str(tmp), "-out", str(tmp.with_suffix(".crt")),
            ]
        )  # fmt: skip
        with tmp.open("ab") as f:
            f.write(tmp.with_suffix(".crt").read_bytes())
        tmp.with_suffix(".crt").unlink()
        _own(tmp, 0, gid, 0o640)
        tmp.rename(lay.cert)
    write_atomic(inputs_path(lay), msgspec.json.encode(inputs), 0o644)
    refresh(lay)


def _teardown(box: Box) -> None:
    lay = layout(box)
    if SYSTEMD_RUNNING.is_dir():
        stop = ["systemctl", "disable", "--now", PROXY_UNIT]
        subprocess.run(stop, capture_output=True, check=False)  # not there: nothing to stop
    pid = squid_pid(lay)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while squid_pid(lay) == pid and time.monotonic() < deadline:
            time.sleep(0.1)
    unit = Path(box.settings.provision.unit_dir) / PROXY_UNIT
    if unit.exists():
        unit.unlink()
        if SYSTEMD_RUNNING.is_dir():
            run(["systemctl", "daemon-reload"])
    shutil.rmtree(lay.dir, ignore_errors=True)
    if uid_of(box.settings.proxy.user) is not None:
        run(["userdel", box.settings.proxy.user])


def plan_proxy(box: Box, plan: Plan) -> None:
    """Plan the proxy's files when a workload goes out through it; with none left, plan
    taking the proxy down (its unit, its files, its user)."""
    if not proxy_workloads(box):
        lay = layout(box)
        if load_inputs(lay) is not None:
            plan.add("proxy", f"take the egress proxy down (no workload uses it): {lay.dir}",
                     partial(_teardown, box))  # fmt: skip
        return
    if shutil.which(box.settings.proxy.squid) is None:
        raise ProvisionError(
            f"{box.settings.proxy.squid} is missing: install squid-openssl (Squid with "
            'ssl_bump) for the workloads with internet = "proxy"'
        )
    if SYSTEMD_RUNNING.is_dir():
        debian = ["systemctl", "is-enabled", "squid.service"]
        state = subprocess.run(debian, capture_output=True, text=True, check=False).stdout
        if state.strip() == "enabled":
            # Installing squid-openssl enables Debian's own Squid, listening on :3128
            # for the LAN with the stock configuration: not a way out anyone asked for.
            stop = ["systemctl", "disable", "--now", "squid.service"]
            plan.add("proxy", "stop and disable Debian's own squid.service (port 3128)",
                     partial(run, stop))  # fmt: skip
    inputs = wanted_inputs(box)
    lay = layout(box)
    have = load_inputs(lay)
    if have == inputs and lay.cert.exists():
        return
    what = ", ".join(f"{n}:{p}" for n, p in sorted(inputs.ports.items()))
    plan.add("proxy", f"write the proxy's configuration in {lay.dir} (ports {what})",
             partial(_apply, box, inputs))  # fmt: skip
