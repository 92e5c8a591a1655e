"""--verify: prove a written file equals its source by reading the destination back from storage.

The source digest is taken from the open source fd while the kernel copies (a second thread for
large files: xxhash and the copy syscalls both release the GIL), the destination digest after
fdatasync + POSIX_FADV_DONTNEED (hashing.read_back_digest), so a bad write or a filesystem bug that
returns other bytes (OpenZFS's SEEK_DATA race copied zeros) is caught. Sparse files are compared
range by range over the source's data, and the destination must hold only zeros elsewhere: hashing
the holes of a 1 TiB file would take minutes.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable

import xxhash

from zcp import hashing
from zcp.errors import SourceChanged
from zcp.syscalls import data_segments

# Below this, hashing the source after the copy costs less than starting a thread.
_THREAD_MIN = 8 << 20
_CHUNK = 1 << 20
_RANGE_HEADER = struct.Struct("<QQ")

Ranges = list[tuple[int, int]]


def source_ranges(src_fd: int, size: int, sparse: bool) -> Ranges | None:
    """The data ranges to compare for a sparse file; None: compare the whole content."""
    return list(data_segments(src_fd, size)) if sparse else None


def digest(fd: int, size: int, ranges: Ranges | None) -> bytes:
    if ranges is None:
        return hashing.hash_fd(fd, size)
    hasher = xxhash.xxh3_128()
    for offset, length in ranges:
        hasher.update(_RANGE_HEADER.pack(offset, length))
        for start, data in _read_range(fd, offset, length):
            hasher.update(data)
    return hasher.digest()


def read_back(dst_fd: int, size: int, ranges: Ranges | None) -> bytes:
    """The destination's digest as storage returns it; holes outside ``ranges`` must read as zeros."""
    if ranges is None:
        return hashing.read_back_digest(dst_fd, size)
    os.fdatasync(dst_fd)
    os.posix_fadvise(dst_fd, 0, 0, os.POSIX_FADV_DONTNEED)
    if not _zero_outside(dst_fd, size, ranges):
        return b""  # differs from any real digest
    return digest(dst_fd, size, ranges)


class SourceDigest:
    """The source's digest, computed beside the copy when the file is large enough to pay for it."""

    def __init__(self, src_fd: int, size: int, ranges: Ranges | None):
        self._compute: Callable[[], bytes] = lambda: digest(src_fd, size, ranges)
        self._result: bytes | None = None
        self._error: BaseException | None = None
        self._thread = None
        if size >= _THREAD_MIN:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._compute()
        except BaseException as exc:  # handed to the caller of value()
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def value(self) -> bytes:
        if self._thread is None:
            return self._compute()
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _read_range(fd: int, offset: int, length: int):
    end = offset + length
    while offset < end:
        data = os.pread(fd, min(_CHUNK, end - offset), offset)
        if not data:
            raise SourceChanged(f"ended at offset {offset}, expected data up to {end}")
        yield offset, data
        offset += len(data)


def _zero_outside(fd: int, size: int, ranges: Ranges) -> bool:
    """Whatever data the destination holds outside the source's data ranges is all zeros."""
    for start, length in data_segments(fd, size):
        for gap_start, gap_end in _gaps(start, start + length, ranges):
            for _, data in _read_range(fd, gap_start, gap_end - gap_start):
                if data.count(0) != len(data):
                    return False
    return True


def _gaps(start: int, end: int, ranges: Ranges):
    """Parts of [start, end) not covered by the sorted, disjoint ``ranges``."""
    at = start
    for r_start, r_len in ranges:
        r_end = r_start + r_len
        if r_end <= at:
            continue
        if r_start >= end:
            break
        if r_start > at:
            yield at, r_start
        at = max(at, r_end)
    if at < end:
        yield at, end
