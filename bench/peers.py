"""The decision peers, started by the bench itself and removed after.

- polkit: a private dbus-daemon configured as a system bus, polkitd on it, and one action
  whose defaults allow anyone (`org.clawvisor.bench.status`): the cheapest `allow` polkit
  can give. Asked over D-Bus (CheckAuthorization, the way a privileged service asks) and
  with `pkcheck` (the way a script asks).
- sudo: a sudoers drop-in letting one bench user run /bin/true as root without a
  password, run as `sudo -n /bin/true` (the way sudoers-gated agent set-ups do it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import rig

ACTION_ID = "org.clawvisor.bench.status"
ACTION_FILE = Path("/usr/share/polkit-1/actions") / f"{ACTION_ID}.policy"
ACTION = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE policyconfig PUBLIC "-//freedesktop//DTD PolicyKit Policy Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/PolicyKit/1/policyconfig.dtd">
<policyconfig>
  <action id="{ACTION_ID}">
    <description>clawvisor bench: the cheapest allow</description>
    <message>clawvisor bench</message>
    <defaults>
      <allow_any>yes</allow_any>
      <allow_inactive>yes</allow_inactive>
      <allow_active>yes</allow_active>
    </defaults>
  </action>
</policyconfig>
"""
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""
SUDOERS = Path("/etc/sudoers.d/clawvisor-bench")


def start_time(pid: int) -> int:
    """The process start time polkit identifies a unix-process subject by."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


class Polkit:
    """polkitd on a private system bus; `address` is what clients connect to."""

    def __init__(self, address: str, polkitd: subprocess.Popen[bytes], startup_s: float) -> None:
        self.address = address
        self.polkitd = polkitd
        #: From starting polkitd to its name being on the bus.
        self.startup_s = startup_s

    def env(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}


@contextlib.contextmanager
def polkit() -> Iterator[Polkit]:
    """A private system bus with polkitd and the bench action; all removed after."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    tmp = Path(tempfile.mkdtemp(prefix="clawvisor-bench-polkit-"))
    tmp.chmod(0o755)  # polkitd drops to its own user before it connects
    sock = tmp / "system_bus_socket"
    (tmp / "bus.conf").write_text(BUS_CONFIG.format(path=sock))
    ACTION_FILE.write_text(ACTION)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        bus = subprocess.Popen(
            ["dbus-daemon", "--nofork", f"--config-file={tmp / 'bus.conf'}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(bus)
        _wait(lambda: sock.exists(), "the private system bus")
        address = f"unix:path={sock}"
        t0 = time.perf_counter()
        polkitd = subprocess.Popen(
            ["/usr/lib/polkit-1/polkitd", "--no-debug"],
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(polkitd)
        conn = open_dbus_connection(bus=address)
        dbus = DBusAddress("/org/freedesktop/DBus", "org.freedesktop.DBus", "org.freedesktop.DBus")

        def owned() -> bool:
            msg = new_method_call(dbus, "NameHasOwner", "s", ("org.freedesktop.PolicyKit1",))
            return bool(conn.send_and_get_reply(msg).body[0])

        while not owned():
            if time.perf_counter() - t0 > 20:
                raise RuntimeError("polkitd on the bus did not come up")
            time.sleep(0.002)
        startup = time.perf_counter() - t0
        conn.close()
        yield Polkit(address, polkitd, startup)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        ACTION_FILE.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _wait(pred, what: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.05)


def check_message(subject_pid: int):  # type: ignore[no-untyped-def]
    from jeepney import DBusAddress, new_method_call

    authority = DBusAddress(
        "/org/freedesktop/PolicyKit1/Authority",
        bus_name="org.freedesktop.PolicyKit1",
        interface="org.freedesktop.PolicyKit1.Authority",
    )
    subject = (
        "unix-process",
        {
            "pid": ("u", subject_pid),
            "start-time": ("t", start_time(subject_pid)),
            "uid": ("i", os.getuid()),
        },
    )
    return new_method_call(
        authority, "CheckAuthorization", "(sa{sv})sa{ss}us", (subject, ACTION_ID, {}, 0, "")
    )


async def dbus_client(address: str, count: int, latencies: list[float]) -> None:
    """`count` CheckAuthorization calls in a row on one connection, each timed."""
    from jeepney.io.asyncio import open_dbus_router

    msg = check_message(os.getpid())
    async with open_dbus_router(bus=address) as router:
        for _ in range(count):
            t0 = time.perf_counter()
            reply = await router.send_and_get_reply(msg)
            latencies.append(time.perf_counter() - t0)
            authorized, _challenge, _details = reply.body[0]
            if not authorized:
                raise RuntimeError("polkit did not authorize the bench action")


def pkcheck_once(p: Polkit) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        ["pkcheck", "--action-id", ACTION_ID, "--process", str(os.getpid())],
        env=p.env(),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


@contextlib.contextmanager
def sudo_user() -> Iterator[rig.User]:
    """A user allowed `sudo -n /bin/true` and nothing else; removed after."""
    user = rig.create_user("cvtsudo")
    try:
        SUDOERS.write_text(f"{user.name} ALL=(root) NOPASSWD: /bin/true\n")
        SUDOERS.chmod(0o440)
        check = subprocess.run(["visudo", "-c", "-f", str(SUDOERS)], capture_output=True)
        if check.returncode != 0:
            raise RuntimeError(f"bench sudoers rejected: {check.stdout!r}")
        yield user
    finally:
        SUDOERS.unlink(missing_ok=True)
        rig.delete_user(user)


def sudo_once(user: rig.User) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        ["sudo", "-n", "/bin/true"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **rig.as_user(user),  # type: ignore[arg-type]
    )
    return time.perf_counter() - t0


def run_dbus(address: str, clients: int, per: int) -> tuple[list[float], float]:
    """Latencies and wall time of `clients` concurrent D-Bus askers, `per` calls each."""
    latencies: list[float] = []

    async def go() -> float:
        await dbus_client(address, 50, [])  # warm-up
        t0 = time.perf_counter()
        await asyncio.gather(*(dbus_client(address, per, latencies) for _ in range(clients)))
        return time.perf_counter() - t0

    wall = asyncio.run(go())
    return latencies, wall
