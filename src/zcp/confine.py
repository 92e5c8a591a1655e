"""Kernel-enforced confinement beneath a destination folder (stream receiver, --delete).

Names from a stream are untrusted. They are checked as strings (no absolute names, no '..', no
NUL, not empty), but what keeps writes inside DEST is the kernel: every folder is opened with
openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) relative to DEST's fd, so
no symlink (in DEST beforehand or created by the stream) is ever followed. Where openat2 is missing
(ENOSYS, Linux < 5.6) each component is opened with O_NOFOLLOW from its parent's fd, which no symlink
can redirect either. Leaves are then created with *at calls relative to the parent's fd.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Callable

from zcp.errors import StreamError

SYS_OPENAT2 = 437  # the same number on every architecture (added after the syscall table unification)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

Parts = tuple[str, ...]


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dir_fd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """The openat2 syscall; raises OSError (ENOSYS where the kernel lacks it)."""
    how = _OpenHow(flags, mode, resolve)
    fd = _libc.syscall(
        ctypes.c_long(SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def split_name(name: str) -> Parts:
    """Components of an archive name, or StreamError if it could point anywhere but beneath DEST.

    '.' components and a trailing '/' are dropped (GNU tar writes "./a"); () is DEST itself.
    """
    if not name:
        raise StreamError("refusing an entry with an empty name")
    if "\x00" in name:
        raise StreamError(f"refusing an entry whose name holds a NUL byte: {name!r}")
    if name.startswith("/"):
        raise StreamError(f"refusing an absolute name: {name!r}")
    parts = name.split("/")
    if "" in parts or "." in parts:
        parts = [part for part in parts if part not in ("", ".")]
    if ".." in parts:
        raise StreamError(f"refusing a name with a '..' component: {name!r}")
    return tuple(parts)


def display(parts: Parts) -> str:
    return "/".join(parts) or "."


class ConfinedDir:
    """DEST opened once; every folder beneath it reached without following any symlink."""

    def __init__(self, root_fd: int, *, use_openat2: bool | None = None):
        self.root_fd = root_fd
        self._use_openat2 = _probe_openat2(root_fd) if use_openat2 is None else use_openat2
        self._open_one: Callable[[int, str], int] = self._openat2_one if self._use_openat2 else _nofollow_one
        self._cached: tuple[Parts, int] | None = None  # the last folder opened: entries come grouped
        self._made: set[Parts] = set()  # folders folder(create=True) made on the way to an entry

    @classmethod
    def open(cls, dest: str, *, use_openat2: bool | None = None) -> "ConfinedDir":
        """Open the existing folder ``dest`` (a symlink given by the user is fine: it is DEST)."""
        fd = os.open(dest, _DIR_FLAGS)
        try:
            return cls(fd, use_openat2=use_openat2)
        except BaseException:  # the probe failed: the fd is nobody's yet
            os.close(fd)
            raise

    @property
    def uses_openat2(self) -> bool:
        """Which confinement this instance enforces (openat2, or the O_NOFOLLOW walk)."""
        return self._use_openat2

    def close(self) -> None:
        self._forget()
        os.close(self.root_fd)

    def __enter__(self) -> "ConfinedDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def folder(self, parts: Parts, *, create: bool) -> int:
        """A borrowed fd of the folder at ``parts`` (valid until the next call or close()).

        With ``create``, missing folders are made (mode 0o777 & ~umask, like tar). A symlink, an
        escape or a non-folder on the way is a StreamError.
        """
        if self._cached and self._cached[0] == parts:
            return self._cached[1]
        fd = self._resolve(parts, create)
        self._forget()
        self._cached = (parts, fd)
        return fd

    def made(self, parts: Parts) -> bool:
        """Whether folder(create=True) made the folder at ``parts`` (it was not there before)."""
        return parts in self._made

    def open_folder(self, parts: Parts) -> int:
        """A new fd (the caller closes it) of an existing folder at ``parts``."""
        return os.dup(self.folder(parts, create=False))

    def _resolve(self, parts: Parts, create: bool) -> int:
        if not parts:
            return os.dup(self.root_fd)
        if self._use_openat2:
            try:
                return self._openat2_path(self.root_fd, "/".join(parts), parts)
            except FileNotFoundError:
                if not create:
                    raise
        # Component by component, so that each missing folder can be made.
        fd = os.dup(self.root_fd)
        try:
            for depth, part in enumerate(parts, 1):
                try:
                    child = self._checked_open(fd, part, parts[:depth])
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, 0o777, dir_fd=fd)
                        self._made.add(parts[:depth])
                    except FileExistsError:
                        pass  # made meanwhile; the open below checks what it is
                    child = self._checked_open(fd, part, parts[:depth])
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _checked_open(self, dir_fd: int, part: str, where: Parts) -> int:
        try:
            return self._open_one(dir_fd, part)
        except OSError as exc:
            raise _unsafe(exc, where) from None

    def _openat2_path(self, dir_fd: int, path: str, where: Parts) -> int:
        try:
            return openat2(dir_fd, path, _DIR_FLAGS, _RESOLVE)
        except OSError as exc:
            raise _unsafe(exc, where) from None

    @staticmethod
    def _openat2_one(dir_fd: int, part: str) -> int:
        return openat2(dir_fd, part, _DIR_FLAGS, _RESOLVE)

    def _forget(self) -> None:
        cached, self._cached = self._cached, None  # forgotten first: a signal cannot make it closed twice
        if cached:
            os.close(cached[1])


def _nofollow_one(dir_fd: int, part: str) -> int:
    try:
        return os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except NotADirectoryError:
        # O_NOFOLLOW | O_DIRECTORY on a symlink says ENOTDIR; name the real reason.
        if stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), part) from None
        raise


def _unsafe(exc: OSError, where: Parts) -> OSError | StreamError:
    """Translate what the kernel refused into a StreamError; other errors stay OSErrors."""
    if exc.errno == errno.ELOOP:
        return StreamError(f"refusing to write through a symlink at {display(where)!r}")
    if exc.errno == errno.EXDEV:
        return StreamError(f"refusing a path that leaves the destination: {display(where)!r}")
    if exc.errno == errno.ENOTDIR:
        return StreamError(f"refusing to write beneath {display(where)!r}: not a folder")
    if exc.errno == errno.ENOENT:
        return FileNotFoundError(exc.errno, exc.strerror, display(where))
    return exc


def _probe_openat2(root_fd: int) -> bool:
    try:
        os.close(openat2(root_fd, ".", _DIR_FLAGS, _RESOLVE))
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):  # EPERM: a seccomp filter that denies it
            return False
        raise
    return True
