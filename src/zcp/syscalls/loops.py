"""The copy primitives: one exact loop per kernel path, which retries short transfers and EINTR,
polls on EAGAIN, and gives up on a method only while it has written nothing.

Every loop copies exactly ``length`` bytes (``None``: until EOF) and returns the count. An offset of
``None`` uses and advances the fd's own position (pipes, sockets, O_APPEND files); an int means
positional I/O. A loop raises ``Unsupported`` only while the destination is untouched and nothing was
taken irreversibly from the source, so the caller may try the next method; after that every failure
is a real ``OSError``. A source that ends before ``length`` raises ``SourceChanged``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat
import struct
from collections.abc import Callable
from typing import NoReturn

from zcp.config import Method
from zcp.errors import UNSUPPORTED_ERRNOS, SourceChanged, Unsupported
from zcp.syscalls.buffers import page_aligned

Progress = Callable[[int], None]
# copier(src_fd, dst_fd, length, src_off, dst_off, progress) -> bytes moved
Copier = Callable[[int, int, int | None, int | None, int | None, Progress | None], int]
# writer(bytes of the chunk already sent, destination offset or None) -> bytes written
_Writer = Callable[[int, int | None], int]

# One call moves at most this much: glibc 2.41/2.42 mishandle larger counts.
MAX_CALL = 1 << 30
# ... and this much when someone follows the progress: a slow disk takes seconds per GiB, and a
# progress display that moves once per GiB looks stuck.
PROGRESS_CALL = 64 << 20
PIPE_SIZE = 1 << 20  # pipes we splice through, where the kernel lets us grow them
RW_BUFFER = 1 << 20

# <linux/fs.h>: _IOW(0x94, 9, int) and _IOW(0x94, 13, struct file_clone_range)
FICLONE = 0x40049409
FICLONERANGE = 0x4020940D
_FILE_CLONE_RANGE = struct.Struct("=qQQQ")  # src_fd, src_offset, src_length, dest_offset


def reflink(src_fd: int, dst_fd: int) -> None:
    """Make ``dst_fd`` share all of ``src_fd``'s extents (copy-on-write); nothing is copied."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as exc:
        _fail(Method.REFLINK, exc, committed=False)


def reflink_range(src_fd: int, dst_fd: int, offset: int, length: int) -> None:
    """Share ``length`` bytes at ``offset`` (same offset on both sides; length 0 means to EOF).

    The kernel wants block-aligned ranges except for a range that ends at the source's EOF.
    """
    arg = _FILE_CLONE_RANGE.pack(src_fd, offset, length, offset)
    try:
        fcntl.ioctl(dst_fd, FICLONERANGE, arg)
    except OSError as exc:
        _fail(Method.REFLINK, exc, committed=False)


def copy_file_range(
    src_fd: int,
    dst_fd: int,
    length: int | None,
    src_off: int | None,
    dst_off: int | None,
    progress: Progress | None = None,
) -> int:
    """In-kernel file-to-file copy (server-side copy on NFS/SMB, reflink on some filesystems)."""
    return _run(Method.COPY_FILE_RANGE, os.copy_file_range, src_fd, dst_fd, length, src_off, dst_off, progress,
                zero_first_is_unsupported=True)


def sendfile(
    src_fd: int,
    dst_fd: int,
    length: int | None,
    src_off: int | None,
    dst_off: int | None,
    progress: Progress | None = None,
) -> int:
    """Page cache to a file, pipe or socket. The source must be a regular file."""
    if not stat.S_ISREG(os.fstat(src_fd).st_mode):
        raise Unsupported(Method.SENDFILE, errno.EINVAL, "the source is not a regular file")
    if dst_off is not None:
        # sendfile writes at the output's position; seeking a pipe or socket fails with ESPIPE.
        os.lseek(dst_fd, dst_off, os.SEEK_SET)
    return _run(Method.SENDFILE, _sendfile_at, src_fd, dst_fd, length, src_off, dst_off, progress)


def splice(
    src_fd: int,
    dst_fd: int,
    length: int | None,
    src_off: int | None,
    dst_off: int | None,
    progress: Progress | None = None,
) -> int:
    """Move pages through a pipe: directly if either side is one, else through an internal pipe."""
    if _is_pipe(src_fd) or _is_pipe(dst_fd):
        return _run(Method.SPLICE, os.splice, src_fd, dst_fd, length, src_off, dst_off, progress)
    return _splice_through_pipe(src_fd, dst_fd, length, src_off, dst_off, progress)


def read_write(
    src_fd: int,
    dst_fd: int,
    length: int | None,
    src_off: int | None,
    dst_off: int | None,
    progress: Progress | None = None,
) -> int:
    """Plain read/write through one reused buffer: works on anything, the last fallback."""
    if length == 0:
        return 0
    buffer = page_aligned(RW_BUFFER if length is None else min(RW_BUFFER, length))

    def take(count: int, pos: int | None) -> int:
        chunk = [buffer[:count]]
        return os.readv(src_fd, chunk) if pos is None else os.preadv(src_fd, chunk, pos)

    return _relay(Method.RW, take, lambda got: _buffer_writer(dst_fd, buffer[:got]),
                  src_fd, dst_fd, length, src_off, dst_off, progress, len(buffer))


def _sendfile_at(src_fd: int, dst_fd: int, count: int, src_pos: int | None, _dst_pos: int | None) -> int:
    return os.sendfile(dst_fd, src_fd, src_pos, count)  # at the output's own position


def _run(
    method: Method,
    move: Callable[[int, int, int, int | None, int | None], int],
    src_fd: int,
    dst_fd: int,
    length: int | None,
    src_off: int | None,
    dst_off: int | None,
    progress: Progress | None,
    *,
    zero_first_is_unsupported: bool = False,
) -> int:
    """Drive a syscall that moves bytes from source to destination in one step (nothing in hand):
    ``move(src_fd, dst_fd, count, src_pos, dst_pos)``, called as is (no closure: once per file)."""
    done = 0
    most = MAX_CALL if progress is None else PROGRESS_CALL
    while length is None or done < length:
        count = most if length is None else min(most, length - done)
        try:  # once per file for most files: the offsets are worked out here, not in calls
            moved = move(src_fd, dst_fd, count, None if src_off is None else src_off + done,
                         None if dst_off is None else dst_off + done)
        except BlockingIOError:
            wait_ready(src_fd, select.POLLIN)
            wait_ready(dst_fd, select.POLLOUT)
            continue
        except OSError as exc:
            _fail(method, exc, committed=done > 0)
        if moved == 0:
            if done == 0 and zero_first_is_unsupported:
                # procfs/sysfs report size 0 or the filesystem pair cannot do it: not an empty source.
                raise Unsupported(method, errno.ENODATA, "copied 0 bytes at the start")
            if length is None:
                break
            raise _ended_early(method, src_off, done, length)
        done += moved
        if progress is not None:
            progress(moved)
    return done


def _splice_through_pipe(
    src_fd: int,
    dst_fd: int,
    length: int | None,
    src_off: int | None,
    dst_off: int | None,
    progress: Progress | None,
) -> int:
    """Source -> internal pipe -> destination, draining the pipe after every fill."""
    pipe_r, pipe_w = os.pipe()
    try:
        return _relay(Method.SPLICE, lambda count, pos: os.splice(src_fd, pipe_w, count, pos),
                      lambda got: _pipe_drainer(pipe_r, dst_fd, got),
                      src_fd, dst_fd, length, src_off, dst_off, progress, grow_pipe(pipe_w))
    finally:
        os.close(pipe_r)
        os.close(pipe_w)


def _relay(
    method: Method,
    take: Callable[[int, int | None], int],
    writer_for: Callable[[int], Callable[[int, int | None], int]],
    src_fd: int,
    dst_fd: int,
    length: int | None,
    src_off: int | None,
    dst_off: int | None,
    progress: Progress | None,
    capacity: int,
) -> int:
    """Two-step copies: ``take(count, pos)`` moves up to ``capacity`` bytes from the source into our
    hands (a buffer, a pipe), then ``writer_for(got)`` delivers exactly those bytes."""
    done = 0
    while length is None or done < length:
        count = capacity if length is None else min(capacity, length - done)
        try:
            got = take(count, _at(src_off, done))
        except BlockingIOError:
            wait_ready(src_fd, select.POLLIN)
            continue
        except OSError as exc:
            _fail(method, exc, committed=done > 0)
        if got == 0:
            if length is None:
                break
            raise _ended_early(method, src_off, done, length)
        retractable = done == 0 and src_off is not None
        _deliver(method, writer_for(got), dst_fd, got, _at(dst_off, done), progress, retractable=retractable)
        done += got
    return done


def _deliver(
    method: Method,
    write: _Writer,
    dst_fd: int,
    count: int,
    dst_pos: int | None,
    progress: Progress | None,
    *,
    retractable: bool,
) -> None:
    """Write ``count`` bytes already taken from the source; ``write(sent, pos)`` writes the rest.

    ``retractable``: nothing was written before and the source was read positionally, so giving up
    as unsupported loses nothing. Otherwise a failure names the bytes it leaves unwritten.
    """
    sent = 0
    while sent < count:
        try:
            wrote = write(sent, _at(dst_pos, sent))
        except BlockingIOError:
            wait_ready(dst_fd, select.POLLOUT)
            continue
        except OSError as exc:
            if retractable and sent == 0:
                _fail(method, exc, committed=False)
            unwritten = count - sent
            message = f"{method}: {exc.strerror}; {unwritten} bytes read from the source were not written"
            raise OSError(exc.errno, message) from exc
        sent += wrote
        _report(progress, wrote)


def _buffer_writer(dst_fd: int, data: memoryview) -> _Writer:
    def write(sent: int, pos: int | None) -> int:
        return os.write(dst_fd, data[sent:]) if pos is None else os.pwrite(dst_fd, data[sent:], pos)

    return write


def _pipe_drainer(pipe_r: int, dst_fd: int, count: int) -> _Writer:
    def write(sent: int, pos: int | None) -> int:
        return os.splice(pipe_r, dst_fd, count - sent, None, pos)

    return write


def _fail(method: Method, exc: OSError, *, committed: bool) -> NoReturn:
    if not committed and exc.errno in UNSUPPORTED_ERRNOS:
        raise Unsupported(method, exc.errno) from exc
    raise exc


def _ended_early(method: Method, src_off: int | None, done: int, length: int) -> SourceChanged:
    start = src_off or 0
    return SourceChanged(f"{method}: the source ended early at offset {start + done} of {start + length}")


def wait_ready(fd: int, events: int) -> None:
    """Block until a non-blocking fd is ready (EAGAIN): poll, never spin."""
    poller = select.poll()
    poller.register(fd, events)
    poller.poll()


def grow_pipe(fd: int) -> int:
    """Grow a pipe to PIPE_SIZE (fewer syscalls) unless it is that big already; its capacity after.
    A refusal (the per-user limit) keeps what it has."""
    size = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    if size >= PIPE_SIZE:
        return size
    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        return size


def _is_pipe(fd: int) -> bool:
    return stat.S_ISFIFO(os.fstat(fd).st_mode)


def _at(offset: int | None, advance: int) -> int | None:
    return None if offset is None else offset + advance


def _report(progress: Progress | None, moved: int) -> None:
    if progress is not None:
        progress(moved)
