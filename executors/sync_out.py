"""`sync-out`: copy files from the workload's overlay upper layer to its host-side destination.

Every path is relative, has no `..`, must match the configured allowlist, and is opened
one component at a time with O_NOFOLLOW relative to its parent, so no symlink is ever
followed, anywhere. A file with more than one hard link is refused (it may be a link to
something outside the tree), as is anything that is not a regular file, a file over the
per-file cap, and a request over the per-request cap. Each file is copied to a temporary
file beside its destination, fsynced and scanned for secrets (detect-secrets); only when
every file of the request is clean are they all renamed into place. The sha256 of each
copy is in the result, and so in the audit trail. All of it runs in a child process
(executors/sync_out_copy.py), like every other executor: never in the daemon.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import os
import secrets
import stat
import sys
from dataclasses import dataclass
from typing import Annotated

import msgspec

from .base import Action, ExecContext, ExecError, IntentBase, ResultBase
from .common import need_target
from .runner import run_argv
from .validate import field_check, has_control

MAX_PATHS = 100
#: The copy's answer: 100 files' paths and hashes fit well within this.
_RESULT_CAP = 1024 * 1024
#: The copy's exit status for a refusal (executors/sync_out_copy.py says why on stderr).
_REFUSED = 3
RelPath = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class Options(msgspec.Struct, forbid_unknown_fields=True):
    """Caps and the allowlist (fnmatch patterns over the relative path; `*` crosses `/`)."""

    max_file_bytes: Annotated[int, msgspec.Meta(ge=1)] = 16 * 1024 * 1024
    max_request_bytes: Annotated[int, msgspec.Meta(ge=1)] = 64 * 1024 * 1024
    allow: list[str] = msgspec.field(default_factory=lambda: ["*"])
    scan_secrets: bool = True


def _check_path(path: str) -> str:
    if path.startswith("/"):
        raise ValueError(f"{path!r} is absolute; paths are relative to the workload's files")
    if "\x00" in path or has_control(path):
        raise ValueError(f"{path!r} contains control characters")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{path!r} has an empty, '.' or '..' component")
    return path


def _check_paths(paths: list[str]) -> list[str]:
    if len(set(paths)) != len(paths):
        raise ValueError("the same path is listed twice")
    return [_check_path(p) for p in paths]


class Params(IntentBase, tag="sync-out", frozen=True):
    """Copy `paths` (relative to the workload's overlay upper layer) to its destination."""

    paths: Annotated[
        list[RelPath],
        msgspec.Meta(min_length=1, max_length=MAX_PATHS, description="Relative paths, no '..'."),
    ]

    def __post_init__(self) -> None:
        field_check("paths", lambda: _check_paths(self.paths))


class Copied(msgspec.Struct, frozen=True):
    """One file that arrived."""

    path: str
    bytes: int
    sha256: str


class Result(ResultBase, tag="sync-out", frozen=True):
    """Every file copied, with its size and sha256."""

    destination: str
    files: list[Copied]


class Refused(Exception):
    """A path that may not be copied, and why."""


@dataclass
class _Staged:
    path: str
    dest_dir: int
    name: str
    tmp: str
    size: int
    sha256: str


def _open_dir(root: str) -> int:
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _walk(root_fd: int, parts: list[str], path: str, created: list[str] | None = None) -> int:
    """Open the directory `parts` below root_fd, never following a symlink.

    With `created`, missing directories are made and their relative paths appended to it.
    """
    fd = os.dup(root_fd)
    try:
        for depth, comp in enumerate(parts, 1):
            try:
                nxt = os.open(
                    comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except FileNotFoundError:
                if created is None:
                    raise Refused(f"{path}: {comp!r} does not exist") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    created.append("/".join(parts[:depth]))
                nxt = os.open(
                    comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Refused(f"{path}: {comp!r} is a symlink or not a directory") from None
                raise
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _secrets_in(dest_dir: int, tmp: str) -> list[str]:
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    found: list[str] = []
    with default_settings():
        collection = SecretsCollection()
        # Scan our own copy, through the directory fd we hold: no path a workload
        # controls is ever opened by name.
        collection.scan_file(f"/proc/self/fd/{dest_dir}/{tmp}")
        for secrets_ in collection.data.values():
            for s in secrets_:
                found.append(f"{s.type} on line {s.line_number}")
    return sorted(set(found))


def _remove_created(dst_root: int, created: list[str]) -> None:
    """Remove the directories a refused request made (deepest first; only if still empty)."""
    for rel in reversed(created):
        parent, _, name = rel.rpartition("/")
        with contextlib.suppress(OSError, Refused):
            fd = _walk(dst_root, parent.split("/") if parent else [], rel)
            try:
                os.rmdir(name, dir_fd=fd)
            finally:
                os.close(fd)


def _stage(
    src_root: int, dst_root: int, path: str, options: Options, budget: int, created: list[str]
) -> _Staged:
    parts = path.split("/")
    src_dir = _walk(src_root, parts[:-1], path)
    try:
        try:
            fd = os.open(
                parts[-1],
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                dir_fd=src_dir,
            )
        except FileNotFoundError:
            raise Refused(f"{path}: does not exist") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(f"{path}: is a symlink") from None
            raise
    finally:
        os.close(src_dir)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{path}: not a regular file")
        if st.st_nlink != 1:
            raise Refused(
                f"{path}: has {st.st_nlink} hard links (it may be a file from outside the workload)"
            )
        limit = min(options.max_file_bytes, budget)
        if st.st_size > limit:
            raise Refused(f"{path}: {st.st_size} bytes is over the cap of {limit}")
        dest_dir = _walk(dst_root, parts[:-1], path, created)
        tmp = f".clawvisor-{secrets.token_hex(6)}-{parts[-1]}"[:255]
        try:
            out = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=dest_dir,
            )
            digest = hashlib.sha256()
            size = 0
            try:
                while chunk := os.read(fd, 1 << 20):
                    size += len(chunk)
                    if size > limit:  # it grew while we copied
                        raise Refused(f"{path}: grew past the cap of {limit} bytes")
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view) :]
                os.fsync(out)
            finally:
                os.close(out)
            staged = _Staged(
                path=path,
                dest_dir=dest_dir,
                name=parts[-1],
                tmp=tmp,
                size=size,
                sha256=digest.hexdigest(),
            )
            if options.scan_secrets:
                found = _secrets_in(dest_dir, tmp)
                if found:
                    raise Refused(f"{path}: looks like it holds secrets ({'; '.join(found)})")
            return staged
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dest_dir)
            os.close(dest_dir)
            raise
    finally:
        os.close(fd)


def copy_out(upper: str, destination: str, paths: list[str], options: Options) -> list[Copied]:
    """Copy all the paths or none of them; Refused names the first path refused and why."""
    for path in paths:
        if not any(fnmatch.fnmatchcase(path, pat) for pat in options.allow):
            raise Refused(f"{path}: not in the sync-out allowlist")
    src_root = _open_dir(upper)
    dst_root = _open_dir(destination)
    staged: list[_Staged] = []
    created: list[str] = []
    try:
        budget = options.max_request_bytes
        for path in paths:
            s = _stage(src_root, dst_root, path, options, budget, created)
            staged.append(s)
            budget -= s.size
        for s in staged:
            os.rename(s.tmp, s.name, src_dir_fd=s.dest_dir, dst_dir_fd=s.dest_dir)
            os.fsync(s.dest_dir)
        return [Copied(path=s.path, bytes=s.size, sha256=s.sha256) for s in staged]
    except BaseException:
        for s in staged:
            with contextlib.suppress(OSError):
                os.unlink(s.tmp, dir_fd=s.dest_dir)
        # All or nothing includes the directories made for the files.
        _remove_created(dst_root, created)
        raise
    finally:
        for s in staged:
            os.close(s.dest_dir)
        os.close(src_root)
        os.close(dst_root)


async def run(params: Params, ctx: ExecContext) -> Result:
    """Copy the files in a child process (executors/sync_out_copy.py), under the
    executor's timeout, output cap and limits: the daemon reads none of them itself."""
    target = need_target(ctx, "sync-out")
    files = ctx.files
    if files is None or files.upper is None:
        raise ExecError(f"workload {target.workload} has no overlay to copy from")
    if files.destination is None:
        raise ExecError(f"workload {target.workload} has no sync-out destination")
    options: Options = ctx.settings.options
    argv = [
        sys.executable,
        "-I",
        "-m",
        "executors.sync_out_copy",
        files.upper,
        files.destination,
        msgspec.json.encode(options).decode(),
        # It stops itself first, cleanly: a kill at the timeout could leave staged files.
        repr(max(0.5, ctx.settings.timeout - 1.0)),
        "--",
        *params.paths,
    ]
    try:
        # As root: reading the workload's layer and writing the host-side destination
        # takes both, which no workload may have (it could then bypass the checks).
        outcome = await run_argv(
            argv,
            user=None,
            timeout=ctx.settings.timeout,
            output_cap=max(ctx.settings.output_cap, _RESULT_CAP),
            extra_env=ctx.settings.env,
            launcher=ctx.settings.launcher,
        )
    except OSError as exc:
        raise ExecError(f"cannot start the copy: {exc.strerror or exc}") from None
    stderr = outcome.stderr.decode("utf-8", "replace").strip()
    if outcome.timed_out:
        raise ExecError(f"the copy timed out after {ctx.settings.timeout:g} s; nothing was copied")
    if outcome.exit_status == _REFUSED:
        raise ExecError(f"refused: {stderr}")
    if outcome.exit_status != 0 or outcome.truncated:
        raise ExecError(
            f"copy failed: {stderr or f'exit status {outcome.exit_status}'}",
            exit_status=outcome.exit_status,
            stderr=stderr,
        )
    copied = msgspec.json.decode(outcome.stdout, type=list[Copied])
    return Result(destination=files.destination, files=copied)


ACTION = Action(
    name="sync-out",
    params=Params,
    result=Result,
    summary="Copy files from the workload's overlay upper layer to its host-side destination.",
    mutating=True,
    needs_target=True,
    options=Options,
    audit_result=True,
    run=run,
)
