"""The one way an executor starts a process: argv only, least privilege, bounded.

No shell is involved anywhere: the argv list goes to execve as is. The child gets a
clean environment, the target user's uid/gid/groups, umask 077, stdin from /dev/null,
its own process group (killed whole on timeout), resource limits (applied by util-linux
`prlimit` in front of the command, because `preexec_fn` is unsafe in a threaded
process), and its stdout/stderr are capped.

Under systemd (launcher `systemd-run`) the child runs as a transient service instead,
outside the daemon's sandbox: clawvisor.service may not open network sockets at all
(RestrictAddressFamilies, IPAddressDeny) and sees the system read-only, while a
resolver, an opener or apt-get need the network or a writable system. The same limits,
environment, user and umask are set as unit properties; a timeout kills the unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .base import Account

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TRUNCATION_MARK = b"\n[clawvisor: output truncated]\n"
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z_][a-z0-9_]*)\}|[{}]")
_ESCAPES = {"{{": "{", "}}": "}"}
#: Grace given to pipe readers after the main process exits: a forked child (a browser
#: started by an opener) may keep the pipes open and must not hold the request.
_DRAIN_GRACE = 0.2


class TemplateError(ValueError):
    """An argv template is malformed or names a placeholder that does not exist."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits for a started process."""

    nproc: int = 512
    fsize: int = 256 * 1024 * 1024
    nofile: int = 1024


Launcher = Literal["direct", "systemd-run"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a finished (or killed) process left behind."""

    argv: tuple[str, ...]
    exit_status: int
    stdout: bytes
    stderr: bytes
    truncated: bool
    timed_out: bool
    duration: float


def template_fields(template: Sequence[str]) -> set[str]:
    """The placeholder names used in an argv template; raises TemplateError if malformed."""
    names: set[str] = set()
    for element in template:
        for m in _PLACEHOLDER.finditer(element):
            if m.group(0) in _ESCAPES:
                continue
            if m.group(1) is None:
                raise TemplateError(f"stray brace in argv element {element!r}")
            names.add(m.group(1))
    return names


def render_argv(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Fill `{name}` placeholders element by element; each element stays one argv item."""

    def sub(m: re.Match[str]) -> str:
        escaped = _ESCAPES.get(m.group(0))
        if escaped is not None:
            return escaped
        name = m.group(1)
        if name is None:
            raise TemplateError(f"stray brace in argv template {list(template)!r}")
        if name not in values:
            raise TemplateError(f"argv template names unknown placeholder {{{name}}}")
        return values[name]

    if not template:
        raise TemplateError("empty argv template")
    return [_PLACEHOLDER.sub(sub, element) for element in template]


def clean_env(user: Account | None) -> dict[str, str]:
    """The whole environment a child gets: nothing inherited from the daemon."""
    if user is None:
        return {
            "PATH": SAFE_PATH,
            "HOME": "/root",
            "USER": "root",
            "LOGNAME": "root",
            "LANG": "C.UTF-8",
        }
    return {
        "PATH": SAFE_PATH,
        "HOME": user.home,
        "USER": user.user,
        "LOGNAME": user.user,
        "LANG": "C.UTF-8",
    }


def _as_transient_unit(
    argv: list[str],
    unit: str,
    *,
    user: Account | None,
    env: Mapping[str, str],
    cwd: str,
    limits: Limits,
    timeout: float,
) -> list[str]:
    """systemd-run in front of argv: the same user, environment and limits, as a unit."""
    run = shutil.which("systemd-run", path=SAFE_PATH)
    if run is None:
        raise FileNotFoundError("systemd-run is required by the systemd-run launcher")
    out = [
        run,
        "--quiet",
        "--collect",
        "--wait",
        "--pipe",
        "--service-type=exec",
        f"--unit={unit}",
        f"--working-directory={cwd}",
        "--property=UMask=0077",
        f"--property=LimitNPROC={limits.nproc}",
        f"--property=LimitFSIZE={limits.fsize}",
        f"--property=LimitNOFILE={limits.nofile}",
        # A backstop: our own timeout stops the unit first.
        f"--property=RuntimeMaxSec={max(1, int(timeout) + 5)}",
    ]
    if user is not None:
        out += [f"--uid={user.uid}", f"--gid={user.gid}", "--property=NoNewPrivileges=yes"]
        if user.groups:
            out.append(f"--property=SupplementaryGroups={' '.join(map(str, user.groups))}")
    out += [f"--setenv={k}={v}" for k, v in env.items()]
    return [*out, "--", *argv]


async def stop_unit(unit: str) -> None:
    """SIGKILL every process of a transient unit (systemctl kill), ignoring failures."""
    systemctl = shutil.which("systemctl", path=SAFE_PATH) or "systemctl"
    with contextlib.suppress(OSError):
        proc = await asyncio.create_subprocess_exec(
            systemctl,
            "kill",
            "--signal=SIGKILL",
            unit,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()


def _with_limits(argv: list[str], limits: Limits) -> list[str]:
    prlimit = shutil.which("prlimit", path=SAFE_PATH)
    if prlimit is None:
        raise FileNotFoundError("prlimit (util-linux) is required to start executors")
    return [
        prlimit,
        f"--nproc={limits.nproc}",
        f"--fsize={limits.fsize}",
        f"--nofile={limits.nofile}",
        "--",
        *argv,
    ]


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    buf = bytearray()
    truncated = False
    while chunk := await stream.read(65536):
        room = cap - len(buf)
        if room > 0:
            buf += chunk[:room]
        if len(chunk) > room:
            truncated = True
    return bytes(buf), truncated


async def run_argv(
    argv: Sequence[str],
    *,
    user: Account | None,
    timeout: float,
    output_cap: int = 64 * 1024,
    limits: Limits = Limits(),
    extra_env: Mapping[str, str] | None = None,
    launcher: Launcher = "direct",
) -> Outcome:
    """Run argv as `user` (root when None) and wait for it, within `timeout` seconds.

    `extra_env` comes from clawvisor.toml (trusted), never from a request.

    Raises FileNotFoundError / PermissionError when the command cannot be started.
    """
    argv = list(argv)
    cwd = _workdir(user)
    env = {**clean_env(user), **(extra_env or {})}
    kwargs: dict[str, object] = {}
    unit: str | None = None
    if launcher == "systemd-run":
        unit = f"clawvisor-exec-{secrets.token_hex(6)}.service"
        command = _as_transient_unit(
            argv, unit, user=user, env=env, cwd=cwd, limits=limits, timeout=timeout
        )
    else:
        command = _with_limits(argv, limits)
        if user is not None:
            kwargs = {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        close_fds=True,
        umask=0o077,
        process_group=0,
        **kwargs,  # type: ignore[arg-type]
    )
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        asyncio.ensure_future(_read_capped(proc.stdout, output_cap)),
        asyncio.ensure_future(_read_capped(proc.stderr, output_cap)),
    ]
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        timed_out = True
        if unit is not None:
            await stop_unit(unit)
        _kill_group(proc.pid)
        await proc.wait()
    except asyncio.CancelledError:
        if unit is not None:
            await stop_unit(unit)
        _kill_group(proc.pid)
        raise
    finally:
        done, pending = await asyncio.wait(readers, timeout=_DRAIN_GRACE)
        for task in pending:
            task.cancel()
    out, out_trunc = readers[0].result() if readers[0] in done else (b"", False)
    err, err_trunc = readers[1].result() if readers[1] in done else (b"", False)
    if out_trunc:
        out += TRUNCATION_MARK
    if err_trunc:
        err += TRUNCATION_MARK
    returncode = proc.returncode if proc.returncode is not None else -1
    return Outcome(
        argv=tuple(argv),
        exit_status=returncode,
        stdout=out,
        stderr=err,
        truncated=out_trunc or err_trunc,
        timed_out=timed_out,
        duration=time.monotonic() - started,
    )


def _workdir(user: Account | None) -> str:
    """The user's home when it exists (a stat, no real I/O), else /."""
    if user is not None and os.path.isdir(user.home):
        return user.home
    return "/"


def _kill_group(pgid: int) -> None:
    # The child leads its own process group (process_group=0), so its pgid is its pid:
    # this kills exactly what we started and its descendants, never anything by name.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
