"""The decoders of records about files: opens, renames, links, removals, modes, owners,
times, memfds, cwd changes. Paths are resolved against the process's cwd or dirfd
(lineage.resolve), and what a watched process makes is recorded (provenance)."""

from __future__ import annotations

from typing import Any

import msgspec

from . import events as ev
from .abi import CWD_SLOT, DATA_OFF, OPEN_HEADER, PATH_OFF, PATHLEN
from .lineage import AT_FDCWD, Fd, Lineage, Proc, read_fd, resolve
from .provenance import Provenance

AT_REMOVEDIR = 0x200
O_WRONLY, O_RDWR, O_CREAT, O_TRUNC = 0o1, 0o2, 0o100, 0o1000
O_DIRISH = 0o200000 | 0o10000000  # O_DIRECTORY | O_PATH
O_CLOEXEC = 0o2000000
MFD_CLOEXEC = 1
#: Paths that are never a dropped file (writes to them are not files being made), but
#: for /dev/shm.
NOT_FILES = ("/dev/", "/proc/", "/sys/")
PATH_END = PATH_OFF + PATHLEN
#: Absolute paths whose meaning (normalized, and which prefixes it has) is kept: a
#: handful of paths are most opens (a build's headers, a shell's /dev/null).
PATH_MEMO = 16384


def cstr(raw: bytes, start: int, length: int) -> str:
    end = raw.find(b"\0", start, start + length)
    return raw[start : start + length if end < 0 else end].decode("utf-8", "replace")


class FileDecoders:
    """Mixed into decode.Decode (which has the table)."""

    home_root: str
    read_prefixes: tuple[str, ...]
    names: frozenset[str]
    lineage: Lineage
    provenance: Provenance
    views: dict[int, Any]
    current: Any
    boot_offset: float
    _comms: dict[bytes, str]
    #: raw absolute path -> (normalized, a file that can be made, a wanted read, in homes)
    _paths: dict[bytes, tuple[str, bool, bool, bool]]

    def _comm_text(self, raw: bytes) -> str:
        """The comm as text, kept: a handful of names cover nearly every record."""
        if len(self._comms) >= 4096:  # bounded: a workload may rename itself at will
            self._comms.clear()
        text = self._comms[raw] = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        return text

    @staticmethod
    def _path(raw: bytes) -> str:
        return cstr(raw, PATH_OFF, PATHLEN)

    @staticmethod
    def _path2(raw: bytes) -> str:
        return cstr(raw, DATA_OFF, PATHLEN)

    def _fd_path(self, p: Proc, fd: int) -> tuple[str, bool]:
        f = p.fds.get(fd)
        if f is not None and f.kind in ("dir", "file"):
            return f.name, True
        if f is not None and f.kind == "memfd":
            return f"/memfd:{f.name}", True
        found = read_fd(p.pid, fd)
        return (found, True) if found else (f"<fd {fd}>", False)

    def _target(self, p: Proc, dirfd: int, path: str, by_fd: bool) -> tuple[str, bool]:
        """The file a path-or-fd syscall acted on."""
        if by_fd or not path:
            return self._fd_path(p, dirfd)
        return resolve(p, dirfd, path)

    def _wanted_read(self, path: str) -> bool:
        return path.startswith(self.read_prefixes)

    def _other_home(self, workload: str | None, path: str) -> str | None:
        if not path.startswith(self.home_root):
            return None
        owner = path[len(self.home_root) :].split("/", 1)[0]
        if owner in self.names and owner != workload:
            return owner
        return None

    def _made(self, path: str, base: dict[str, Any], how: str) -> None:
        if path.startswith("/") and (
            not path.startswith(NOT_FILES) or path.startswith("/dev/shm/")
        ):
            self.provenance.made(path, base["pid"], base["comm"], how)

    def _cwd(self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int) -> Any:
        """A first-seen process's cwd as the kernel walked it (leaf first): bookkeeping."""
        if int(n[1]):
            names = [cstr(raw, PATH_OFF + i * CWD_SLOT, CWD_SLOT) for i in range(int(n[0]))]
            p.cwd = "/" + "/".join(reversed(names))
        return None

    # --- files ---------------------------------------------------------------------------

    def _open(self, raw: bytes) -> ev.Open | None:
        """The hottest decoder (most records are opens): its own narrow header, no shared
        dict of common fields, and what an absolute path means kept per path."""
        pid, uid, idx, ts_ns, res, flags, dirfd, comm_raw = OPEN_HEADER.unpack_from(raw)
        view = self.current = self.views.get(idx)
        workload = view.name if view else None
        ts = self.boot_offset + ts_ns / 1e9
        comm = self._comms.get(comm_raw) or self._comm_text(comm_raw)
        p = self.lineage.proc(pid, uid, ts)
        end = raw.find(b"\0", PATH_OFF, PATH_END)
        name = raw[PATH_OFF : PATH_END if end < 0 else end]
        seen = self._paths.get(name)
        if seen is not None:
            path, filelike, wanted, home = seen
            resolved = True
        else:
            path, resolved = resolve(p, dirfd, name.decode("utf-8", "replace"))
            filelike = not path.startswith(NOT_FILES) or path.startswith("/dev/shm/")
            wanted = path.startswith(self.read_prefixes)
            home = path.startswith(self.home_root)
            if name[:1] == b"/":  # absolute: means the same whoever opens it
                if len(self._paths) >= PATH_MEMO:
                    self._paths.clear()
                self._paths[name] = (path, filelike, wanted, home)
        write = bool(flags & (O_WRONLY | O_RDWR))
        create = bool(flags & (O_CREAT | O_TRUNC))
        if res >= 0:
            if flags & O_DIRISH:
                p.fds[res] = Fd("dir", path, cloexec=bool(flags & O_CLOEXEC))
            if (write or create) and filelike:
                self.provenance.made(path, pid, comm, "write")
        if not (write or create or wanted):
            return None  # sent for the fd table or to be resolved; not an event
        event = ev.Open(
            path=path,
            flags=flags,
            write=write,
            create=create,
            ts=ts,
            workload=workload,
            uid=uid,
            pid=pid,
            ppid=p.ppid,
            comm=comm,
            result=res,
        )
        other_home = self._other_home(workload, path) if home else None
        if res >= 0 and resolved and other_home is None and not flags & O_TRUNC:
            return event  # the usual open: every other field at its default, not passed
        return msgspec.structs.replace(
            event,
            truncate=bool(flags & O_TRUNC),
            other_home=other_home,
            resolved=resolved,
            error=ev.error_name(res) if res < 0 else None,
        )

    def _rename(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        old, _ = resolve(p, int(n[0]), self._path(raw))
        new, _ = resolve(p, int(n[1]), self._path2(raw))
        if res == 0:
            self.provenance.moved(old, new, base["pid"], base["comm"])
        return ev.Rename(old=old, new=new, **base)

    def _link(self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int) -> Any:
        target, _ = resolve(p, int(n[0]), self._path(raw))
        path, _ = resolve(p, int(n[1]), self._path2(raw))
        if res == 0:
            self._made(path, base, "link")
        return ev.Link(target=target, path=path, **base)

    def _symlink(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        path, _ = resolve(p, int(n[1]), self._path2(raw))
        return ev.Symlink(target=self._path(raw), path=path, **base)

    def _unlink(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        path, _ = resolve(p, int(n[0]), self._path(raw))
        if res == 0:
            self.provenance.removed(path)
        return ev.Unlink(path=path, dir=bool(int(n[1]) & AT_REMOVEDIR), **base)

    def _mknod(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        path, _ = resolve(p, int(n[0]), self._path(raw))
        return ev.Mknod(path=path, mode=int(n[1]), dev=int(n[2]), **base)

    def _chmod(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        path, _ = self._target(p, int(n[0]), self._path(raw), by_fd=int(n[2]) == 1)
        mode = int(n[1])
        maker = self.provenance.maker(path)
        # Made means written, renamed or linked into place: a path known only from an
        # earlier chmod (a directory chmodded 0700 twice) is not a file the workload made.
        made = maker is not None and maker.how != "chmod"
        if res == 0 and mode & 0o111 and maker is None:
            # Only a path nobody is known to have made: the writer of a downloaded file
            # stays its maker (what `downloaded-and-executed` names), chmod +x or not.
            self._made(path, base, "chmod")
        return ev.Chmod(
            path=path,
            mode=mode,
            setid=bool(mode & 0o6000),
            exec=bool(mode & 0o111),
            dropped=made,
            **base,
        )

    def _chown(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        path, _ = self._target(p, int(n[0]), self._path(raw), by_fd=int(n[3]) == 1)
        return ev.Chown(path=path, owner=int(n[1]), group=int(n[2]), **base)

    def _utimes(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        path, _ = self._target(p, int(n[0]), self._path(raw), by_fd=False)
        explicit = int(n[5]) == 0
        return ev.Utimes(
            path=path, explicit=explicit, mtime=int(n[3]) if explicit else None, **base
        )

    def _memfd(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        name = self._path(raw)
        if res >= 0:
            p.fds[res] = Fd("memfd", name, cloexec=bool(int(n[0]) & MFD_CLOEXEC))
        return ev.Memfd(name=name, flags=int(n[0]), **base)

    def _chdir(
        self, raw: bytes, base: dict[str, Any], p: Proc, n: tuple[int, ...], res: int
    ) -> Any:
        if res == 0:
            if int(n[1]) == 1:
                path, known = self._fd_path(p, int(n[0]))
            else:
                path, known = resolve(p, AT_FDCWD, self._path(raw))
            p.cwd = path if known else None
        return None
