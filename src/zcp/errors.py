"""Exceptions and the one table that maps them to exit codes.

Domain code raises; only the CLI turns an exception (or a run's outcome) into an exit code.
Numbering follows rsync where a meaning exists there.
"""

from __future__ import annotations

import errno
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 1  # bad options or arguments; also `zcp check`: trees differ; `zcp hash -c`: a sum differs
    FILE_IO = 11  # a whole-run failure to read or write (e.g. destination unusable)
    STREAM = 12  # malformed, truncated, unsafe or corrupted stream / protocol data
    REMOTE_SHELL = 14  # the remote shell (ssh) failed, or zcp could not be started on the other host
    INTERRUPTED = 20  # SIGINT / SIGTERM / SIGHUP
    PARTIAL = 23  # some files failed, the rest were transferred
    VANISHED = 24  # some source files vanished during the run, the rest were transferred
    MAX_DELETE = 25  # --max-delete stopped deletions
    BROKEN_PIPE = 141  # the reader of stdout went away (like a shell's 128 + SIGPIPE)


class ZcpError(Exception):
    """An error that ends the whole run with a one-line message."""

    exit_code: ExitCode = ExitCode.FILE_IO


class UsageError(ZcpError):
    exit_code = ExitCode.USAGE


class StreamError(ZcpError):
    """A stream (stdin tar / raw) or remote peer sent something malformed or unsafe."""

    exit_code = ExitCode.STREAM


class RemoteShellError(ZcpError):
    """The remote shell could not connect, or could not start zcp on the other host."""

    exit_code = ExitCode.REMOTE_SHELL


class BrokenPipe(ZcpError):
    exit_code = ExitCode.BROKEN_PIPE


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP: unwinds like Ctrl-C (each file being written removes its temp
    file), but is not KeyboardInterrupt, which the CLI library would turn into its own exit code."""


class FileError(Exception):
    """One file failed; the run goes on and ends with PARTIAL (or VANISHED)."""

    vanished = False


class SourceChanged(FileError):
    """The source changed while it was read (EOF before the expected length, size/mtime moved)."""


class SourceVanished(FileError):
    vanished = True


class VerifyMismatch(FileError):
    """The destination read back from storage does not hash like the source."""


class Unsupported(Exception):
    """A kernel path cannot serve this pair of fds; nothing was written, so the next may be tried."""

    def __init__(self, method: str, err: int, detail: str = ""):
        self.method = method
        self.errno = err
        super().__init__(f"{method}: {detail or errno.errorcode.get(err, err)}")

    @property
    def device_wide(self) -> bool:
        """Whether every file between the same two devices would be refused too (worth remembering)."""
        return self.errno in _DEVICE_WIDE_ERRNOS


# Refusals that hold for every file between two devices: the filesystem or kernel cannot (0: known
# already; ENODATA: a 0-byte first copy_file_range, as from procfs). The other UNSUPPORTED_ERRNOS can
# be one file's own: EINVAL from cloning a NOCOW file on btrfs, EPERM from an immutable one.
_DEVICE_WIDE_ERRNOS = frozenset({0, errno.ENOSYS, errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTTY, errno.ENODATA})


class MethodUnavailable(FileError):
    """A forced --method (or --reflink=always) cannot serve a file."""


# Errors that mean "this kernel path does not apply here", when nothing has been written yet.
UNSUPPORTED_ERRNOS = frozenset(
    {
        errno.ENOSYS,
        errno.EXDEV,
        errno.EOPNOTSUPP,
        errno.EINVAL,
        errno.ENOTTY,
        errno.EBADF,
        errno.ETXTBSY,
        errno.EPERM,
        errno.EACCES,
    }
)


def run_exit_code(failed: int, vanished: int, delete_limited: bool = False) -> ExitCode:
    """The exit code of a run that went to the end, from its per-file failure counts."""
    if failed:
        return ExitCode.PARTIAL
    if delete_limited:
        return ExitCode.MAX_DELETE
    if vanished:
        return ExitCode.VANISHED
    return ExitCode.OK


def remote_exit_code(remote: int, local: int | None) -> int:
    """A copy to or from another host: the remote zcp's exit code when it failed (it said why on
    stderr), else this side's. Its 141 only means that this side stopped reading, for a reason of
    its own."""
    if remote not in (ExitCode.OK, ExitCode.BROKEN_PIPE) or local is None:
        return remote
    return local


def describe(exc: BaseException) -> str:
    """One line for a user: strerror and the file name, no traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename
        return f"{name}: {exc.strerror}" if name is not None else exc.strerror
    return str(exc) or type(exc).__name__
