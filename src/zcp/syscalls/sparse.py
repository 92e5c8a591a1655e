"""Holes: find a file's data with SEEK_DATA/SEEK_HOLE and copy only that, at the same offsets."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from zcp.errors import UNSUPPORTED_ERRNOS, SourceChanged, Unsupported
from zcp.syscalls.loops import Copier, Progress, read_write

# Filesystems or fds that cannot answer SEEK_DATA: treat the whole file as data.
_NO_SEEK_DATA = UNSUPPORTED_ERRNOS | {errno.ESPIPE}


def data_segments(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of each data extent below ``size``, in order. Moves the fd's position."""
    if size <= 0:
        return
    try:
        start = os.lseek(fd, 0, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data at all: one big hole
            return
        if exc.errno in _NO_SEEK_DATA:
            yield 0, size
            return
        raise
    while start < size:
        try:
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # the file shrank under us; the caller's size check sees it
                return
            raise
        yield start, end - start
        try:
            start = os.lseek(fd, end, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            raise


_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
_fallocate = None  # (libc's fallocate, ctypes.get_errno), loaded by the first punch_hole()


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free a range of a file, which then reads as zeros (a hole); False where the filesystem
    cannot (the caller writes the zeros instead)."""
    global _fallocate
    if _fallocate is None:
        import ctypes  # only --inplace onto a sparse file pays for it

        fallocate = ctypes.CDLL(None, use_errno=True).fallocate
        fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
        _fallocate = (fallocate, ctypes.get_errno)
    fallocate, get_errno = _fallocate
    if fallocate(fd, _PUNCH_HOLE, offset, length) == 0:
        return True
    err = get_errno()
    if err in UNSUPPORTED_ERRNOS:
        return False
    raise OSError(err, os.strerror(err))


def split_by_data(fd: int, size: int, ranges: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``ranges`` of a ``size``-byte file cut into the parts that hold data and the parts in holes."""
    data, holes = [], []
    segments = list(data_segments(fd, size))
    for start, length in ranges:
        end, at = start + length, start
        for seg_start, seg_length in segments:
            lo, hi = max(start, seg_start), min(end, seg_start + seg_length)
            if lo >= hi:
                continue
            if lo > at:
                holes.append((at, lo - at))
            data.append((lo, hi - lo))
            at = hi
        if at < end:
            holes.append((at, end - at))
    return data, holes


def copy_file_data(
    copier: Copier, src_fd: int, dst_fd: int, size: int, sparse: bool, progress: Progress | None = None
) -> int:
    """Copy a regular file positionally into an empty regular file; return the bytes moved.

    ``sparse``: copy only the data segments, leaving holes as holes, then set the destination's size
    (a trailing hole has no data to write). A size of 0 may hide generated content (procfs, sysfs):
    that is read until EOF with read/write, the only path such files serve.
    """
    if size == 0:
        return read_write(src_fd, dst_fd, None, 0, 0, progress)
    if not sparse:
        return copier(src_fd, dst_fd, size, 0, 0, progress)
    copied = 0
    for offset, length in data_segments(src_fd, size):
        try:
            copied += copier(src_fd, dst_fd, length, offset, offset, progress)
        except Unsupported as exc:
            if copied == 0:
                raise
            raise OSError(exc.errno, f"{exc}: after {copied} bytes were copied") from exc
    if os.fstat(src_fd).st_size < size:
        raise SourceChanged(f"the source shrank below {size} bytes while it was copied")
    os.ftruncate(dst_fd, size)
    return copied
