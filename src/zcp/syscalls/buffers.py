"""Read buffers that the kernel copies into at full speed."""

from __future__ import annotations

import mmap

# Below glibc's default mmap threshold a buffer comes from the heap anyway, and a mapping's two
# syscalls would cost more than the small read it serves.
_MAP_FROM = 128 << 10


def page_aligned(size: int) -> memoryview:
    """A writable buffer of ``size`` bytes; from ``_MAP_FROM`` up it starts on a page boundary.

    Measured on the benchmark VM: preadv of 1 GiB of page cache into a 1 MiB ``bytearray`` took
    0.57-0.82 s when malloc had placed it 16 bytes past a page boundary (in its own mapping),
    against 0.22 s into an anonymous mapping, every time. The view keeps the mapping alive.
    """
    if size < _MAP_FROM:
        return memoryview(bytearray(size))
    return memoryview(mmap.mmap(-1, size))
