"""Atomic placement: the target is always either its old self (or absent) or the complete new file.

A file is written as an unnamed inode (O_TMPFILE) and named only when complete: linked at the
target's name, or, to replace a file, linked beside it and renamed over it. If the process dies
while writing, even by SIGKILL, the kernel frees the inode and nothing is left behind. On a
filesystem without O_TMPFILE it is written as ``.name.<token>.zcp`` beside the target and renamed
over it; a failure removes that temp file.
"""

from __future__ import annotations

import errno
import fnmatch
import itertools
import os
from collections.abc import Callable
from typing import NoReturn, TypeVar

TEMP_SUFFIX = ".zcp"
_counter = itertools.count()
_T = TypeVar("_T")
# Leave room for the dot, the token and the suffix inside NAME_MAX (255 bytes).
_NAME_BYTES = 200


_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def temp_name(target: str) -> str:
    head, sep, name = target.rpartition("/")
    if len(name) > _NAME_BYTES // 4:  # only long names can overflow NAME_MAX once encoded
        name = os.fsdecode(os.fsencode(name)[:_NAME_BYTES])
    return f"{head}{sep}.{name}.{_pid:x}-{next(_counter):x}{TEMP_SUFFIX}"


def remove_temps_beneath(folder: str, pid: int) -> None:
    """Remove the temp files a killed process ``pid`` left in ``folder`` and beneath it (it had no
    chance to); symlinked folders are not followed."""
    pattern = f".*.{pid:x}-*{TEMP_SUFFIX}"
    for where, _, names in os.walk(folder):
        for name in fnmatch.filter(names, pattern):
            remove_quietly(os.path.join(where, name))


# Temp names that may exist now. A signal can interrupt between creating one and noting who must
# remove it; remove_live_temps() then removes it all the same.
_live: set[str] = set()


def remove_live_temps() -> None:
    """After an interruption: remove every temp file this process may have left."""
    for path in _live:
        remove_quietly(path)
    _live.clear()


def create_temp(target: str, mode: int = 0o600) -> tuple[str, int]:
    """A new, empty temp file beside ``target`` created with ``mode`` (less the umask): (path, fd).

    Read-write: --verify reads the written bytes back through the same fd.
    """
    while True:
        path = temp_name(target)
        _live.add(path)
        try:
            return path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except OSError as exc:
            _live.discard(path)
            if not isinstance(exc, FileExistsError):
                raise


# linkat() needs a directory fd to take AT_SYMLINK_FOLLOW through os.link; "/" is the same in every
# process, unlike /proc/self, so this survives fork.
_ROOT_FD = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
# O_TMPFILE is refused by filesystems that lack it (EOPNOTSUPP), or by old kernels (EISDIR, EINVAL).
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
# linkat() of an unnamed inode, by fd or through /proc/self/fd/N, refused (an LSM, a restricted
# /proc, a filesystem that cannot).
_CANNOT_NAME = frozenset({errno.ENOENT, errno.EPERM, errno.EACCES, errno.EXDEV, errno.EOPNOTSUPP, errno.ELOOP})
# linkat with AT_EMPTY_PATH names the inode from its fd, without looking up a /proc path (1.5 µs of
# 9.5 per file created and named on tmpfs). The kernel allows it with CAP_DAC_READ_SEARCH, and from
# Linux 6.10 for a file opened with the caller's credentials; elsewhere it says ENOENT (or EPERM).
_AT_EMPTY_PATH, _AT_FDCWD = 0x1000, -100
_BY_FD_REFUSED = frozenset({errno.ENOENT, errno.EPERM, errno.EINVAL})
_by_fd: bool | None = None  # whether linkat by fd works here; None: not tried yet
_linkat: tuple[Callable[..., int], Callable[[], int]] | None = None  # libc's linkat, ctypes.get_errno


class Pending:
    """A file being written for ``target``: ``fd`` is open read-write; commit() or discard()."""

    __slots__ = ("target", "fd", "temp")

    def __init__(self, target: str, fd: int, temp: str | None):
        self.target = target
        self.fd = fd
        self.temp = temp  # None: an unnamed O_TMPFILE inode

    @classmethod
    def create(cls, target: str, mode: int, unnamed: bool) -> "Pending":
        """``unnamed``: try O_TMPFILE. Raises UnnamedUnsupported when the filesystem cannot, so the
        caller can stop asking."""
        if unnamed:
            return cls(target, open_unnamed(target.rpartition("/")[0] or ".", mode), None)
        path, fd = create_temp(target, mode)
        return cls(target, fd, path)

    def commit(self) -> None:
        """Put the complete file in place (the fd stays open; close() it after). An unnamed one may
        raise UnnamedUnsupported (linkat refused here): the caller then writes it again, named."""
        if self.temp is None:
            try:
                link_unnamed(self.fd, self.target)
            except FileExistsError:  # a file to replace: beside it, then over it, atomically
                make_beside(self.target, lambda path: link_unnamed(self.fd, path))
            return
        os.rename(self.temp, self.target)
        _live.discard(self.temp)
        self.temp = None

    def close(self) -> None:
        # forgotten before it is closed: a signal in between must not make a later close() hit
        # the same number, maybe another file's by then
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def discard(self) -> None:
        """Close and forget a file that will not be placed (an unnamed one simply vanishes)."""
        self.close()
        if self.temp is not None:
            remove_quietly(self.temp)
            _live.discard(self.temp)


class UnnamedUnsupported(Exception):
    def __init__(self, err: int):
        self.errno = err


def open_unnamed(folder: str, mode: int, dir_fd: int | None = None) -> int:
    """A new unnamed inode (O_TMPFILE) in ``folder``, open read-write; UnnamedUnsupported where
    the filesystem or kernel cannot make one. (Naming it needs linkat by fd or /proc: where neither
    works, link_unnamed says so, and the caller writes a named temp file instead.)"""
    try:
        return os.open(folder, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in _NO_TMPFILE:
            raise
        raise UnnamedUnsupported(exc.errno) from exc


def link_unnamed(fd: int, name: str, dir_fd: int | None = None) -> None:
    """Give the unnamed inode open as ``fd`` the name ``name``: FileExistsError if it is taken,
    UnnamedUnsupported if linkat is refused here (a restricted /proc, an LSM)."""
    global _by_fd
    if _by_fd is not False:
        err = _link_by_fd(fd, name, dir_fd)
        if not err:
            _by_fd = True
            return
        if _by_fd is None and err in _BY_FD_REFUSED:
            _by_fd = False  # not for us on this kernel: the /proc path from now on
        else:
            _raise_link_error(OSError(err, os.strerror(err), name))
    try:
        os.link(f"/proc/self/fd/{fd}", name, src_dir_fd=_ROOT_FD, dst_dir_fd=dir_fd, follow_symlinks=True)
    except OSError as exc:
        _raise_link_error(exc)


def _raise_link_error(exc: OSError) -> NoReturn:
    if exc.errno == errno.EEXIST:
        raise FileExistsError(exc.errno, exc.strerror, exc.filename)
    if exc.errno in _CANNOT_NAME:
        raise UnnamedUnsupported(exc.errno) from exc
    raise exc


def _link_by_fd(fd: int, name: str, dir_fd: int | None) -> int:
    """linkat(fd, "", dir_fd, name, AT_EMPTY_PATH) through libc (os.link cannot pass an empty
    path): 0, or the errno."""
    global _linkat
    if _linkat is None:
        import ctypes  # only runs that name unnamed files pay for it

        libc = ctypes.CDLL(None, use_errno=True)
        _linkat = (libc.linkat, ctypes.get_errno)
    linkat, get_errno = _linkat
    if linkat(fd, b"", _AT_FDCWD if dir_fd is None else dir_fd, os.fsencode(name), _AT_EMPTY_PATH) == 0:
        return 0
    return get_errno()


def make_beside(target: str, make: Callable[[str], _T]) -> _T:
    """Create something (symlink, hard link, node) under a temp name and rename it over ``target``."""
    while True:
        path = temp_name(target)
        _live.add(path)
        try:
            result = make(path)
            break
        except FileExistsError:
            _live.discard(path)
    try:
        os.rename(path, target)
    except BaseException:
        remove_quietly(path)
        raise
    finally:
        _live.discard(path)
    return result


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
