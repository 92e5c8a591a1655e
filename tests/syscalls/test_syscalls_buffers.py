"""Read buffers: big ones start on a page boundary, every one is writable and of the asked size."""

import ctypes
import mmap
import os

import pytest

from zcp.syscalls.buffers import page_aligned


def address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


@pytest.mark.parametrize("size", [1, 4096, 128 << 10, (1 << 20) + 1])
def test_buffer_has_the_asked_size_and_takes_a_read(tmp_path, size):
    path = tmp_path / "data"
    data = os.urandom(size)
    path.write_bytes(data)
    view = page_aligned(size)
    assert len(view) == size
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.preadv(fd, [view], 0) == size
    finally:
        os.close(fd)
    assert view.tobytes() == data


@pytest.mark.parametrize("size", [128 << 10, 1 << 20, 4 << 20])
def test_big_buffers_start_on_a_page_boundary(size):
    assert address(page_aligned(size)) % mmap.PAGESIZE == 0
