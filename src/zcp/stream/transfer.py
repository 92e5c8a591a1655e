"""Moving stream bytes: reads and writes of headers, and bodies through the cheapest kernel path."""

from __future__ import annotations

import os
import select
from collections import Counter

from zcp.config import Method
from zcp.errors import BrokenPipe, Unsupported
from zcp.syscalls import COPIERS, FdKind, Progress, classify, wait_ready


def body_methods(src_fd: int, dst_fd: int) -> tuple[Method, ...]:
    """Kernel paths that can move bytes from ``src_fd`` to ``dst_fd``, cheapest first."""
    return method_chain(classify(src_fd)[0], *classify(dst_fd))


def method_chain(src: FdKind, dst: FdKind, dst_append: bool) -> tuple[Method, ...]:
    """Kernel paths from an fd of kind ``src`` to one of kind ``dst``, cheapest first.

    Each later one is tried only when the earlier ones report Unsupported (nothing moved).
    """
    if dst_append:  # copy_file_range, sendfile and positional splice all refuse O_APPEND
        return (Method.RW,)
    chain: list[Method] = []
    if src is FdKind.FILE and dst is FdKind.FILE:
        chain += [Method.COPY_FILE_RANGE, Method.SENDFILE]
    if FdKind.PIPE in (src, dst) and {src, dst} <= {FdKind.PIPE, FdKind.FILE, FdKind.SOCKET}:
        chain.append(Method.SPLICE)
    if src is FdKind.FILE and dst in (FdKind.PIPE, FdKind.SOCKET):
        chain.append(Method.SENDFILE)
    chain.append(Method.RW)
    return tuple(chain)


def move(
    src_fd: int,
    dst_fd: int,
    length: int | None,
    src_off: int | None,
    dst_off: int | None,
    methods: tuple[Method, ...],
    used: Counter[Method],
    progress: Progress | None = None,
) -> int:
    """Move ``length`` bytes (None: to EOF) with the first method that serves; count them in ``used``."""
    for method in methods:
        try:
            moved = COPIERS[method](src_fd, dst_fd, length, src_off, dst_off, progress)
        except Unsupported:
            if method is methods[-1]:
                raise
            continue
        except BrokenPipeError:
            raise BrokenPipe("the reader of the stream went away (broken pipe)") from None
        used[method] += moved
        return moved
    raise AssertionError("body_methods always ends with Method.RW")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (headers, padding, small bodies): loop on short writes, poll on EAGAIN."""
    rest: bytes | memoryview = data
    while rest:
        try:
            written = os.write(fd, rest)
        except BlockingIOError:
            wait_ready(fd, select.POLLOUT)
            continue
        except BrokenPipeError:
            raise BrokenPipe("the reader of the stream went away (broken pipe)") from None
        if written == len(rest):  # the usual case: one call, no view
            return
        rest = memoryview(rest)[written:]


def read_some(fd: int, length: int) -> bytes:
    """One read of up to ``length`` bytes (empty only at EOF); waits on EAGAIN."""
    while True:
        try:
            return os.read(fd, length)
        except BlockingIOError:
            wait_ready(fd, select.POLLIN)


def read_exact(fd: int, length: int) -> bytes:
    """Read exactly ``length`` bytes, fewer only at EOF. Never reads past them."""
    chunks: list[bytes] = []
    got = 0
    while got < length:
        chunk = read_some(fd, length - got)
        if not chunk:
            break
        if len(chunk) == length:  # the usual case: all of it in one read, no copy
            return chunk
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def discard(fd: int, length: int | None) -> int:
    """Read and drop ``length`` bytes (None: until EOF) in bounded chunks; return how many."""
    done = 0
    while length is None or done < length:
        want = 1 << 16 if length is None else min(1 << 16, length - done)
        chunk = read_exact(fd, want)
        done += len(chunk)
        if len(chunk) < want:
            break
    return done

