"""SEEK_DATA/SEEK_HOLE segments and the sparse-aware whole-file copy."""

from __future__ import annotations

import errno
import os
import time

import pytest
from syscalls_support import Faulty, fds, random_bytes  # noqa: F401 (fixtures)

from zcp.config import Method
from zcp.errors import SourceChanged, Unsupported
from zcp.syscalls import COPIERS, copy_file_data, copy_file_range, data_segments, read_write

pytestmark = pytest.mark.usefixtures("no_hang")  # a loop that never ends fails, not stalls

TiB = 1 << 40
FAR = 512 << 30  # a block-aligned offset deep inside the 1 TiB file


def sparse_file(path) -> tuple[bytes, bytes]:
    """A 1 TiB file holding 4 KiB of data at 0 and at FAR, holes elsewhere."""
    head, far = random_bytes(4096, seed=1), random_bytes(4096, seed=2)
    with open(path, "wb") as f:
        f.truncate(TiB)
        f.write(head)
        f.seek(FAR)
        f.write(far)
    return head, far


def read_at(path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


@pytest.mark.parametrize("fs", ["tmp_path", "xfs_dir", "tmpfs_dir"])
def test_data_segments_list_exactly_the_data(request, fds, fs):
    path = request.getfixturevalue(fs) / "sparse"
    sparse_file(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert list(data_segments(fd, TiB)) == [(0, 4096), (FAR, 4096)]
        assert list(data_segments(fd, FAR + 100)) == [(0, 4096), (FAR, 100)]  # clipped to the size given
    finally:
        os.close(fd)


def test_data_segments_of_a_hole_only_file_and_of_nothing(fds):
    hole = fds.file("hole")
    os.ftruncate(hole, 1 << 20)
    assert list(data_segments(hole, 1 << 20)) == []
    assert list(data_segments(hole, 0)) == []


def test_hole_only_file_copies_no_bytes_but_keeps_its_size(fds, tmp_path):
    src, dst = fds.file("src"), fds.file("dst")
    os.ftruncate(src, 1 << 30)
    assert copy_file_data(copy_file_range, src, dst, 1 << 30, sparse=True) == 0
    copy = (tmp_path / "dst").stat()
    assert (copy.st_size, copy.st_blocks) == (1 << 30, 0)


def test_data_segments_without_seek_data_is_one_segment(fds, monkeypatch):
    fd = fds.file("plain", b"x" * 10_000)
    real_lseek = os.lseek

    def no_seek_data(fd: int, offset: int, how: int) -> int:
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_lseek(fd, offset, how)

    monkeypatch.setattr(os, "lseek", no_seek_data)
    assert list(data_segments(fd, 10_000)) == [(0, 10_000)]


@pytest.mark.parametrize("method", list(COPIERS))
def test_sparse_copy_of_a_1_tib_file_copies_only_the_data(tmp_path, method):
    head, far = sparse_file(tmp_path / "src")
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT, 0o644)
    moved: list[int] = []
    try:
        started = time.monotonic()
        assert copy_file_data(COPIERS[method], src, dst, TiB, sparse=True, progress=moved.append) == 8192
        elapsed = time.monotonic() - started
    finally:
        os.close(src)
        os.close(dst)
    assert elapsed < 1.0
    assert sum(moved) == 8192
    copy, original = (tmp_path / "dst").stat(), (tmp_path / "src").stat()
    assert copy.st_size == TiB
    assert copy.st_blocks <= original.st_blocks
    assert read_at(tmp_path / "dst", 0, 8192) == head + bytes(4096)
    assert read_at(tmp_path / "dst", FAR - 4096, 12288) == bytes(4096) + far + bytes(4096)


@pytest.mark.parametrize("sparse", [True, False])
def test_whole_file_copy_is_exact(fds, tmp_path, sparse):
    data = random_bytes(3 * (1 << 20) + 5)
    src, dst = fds.file("src", data, os.O_RDONLY), fds.file("dst")
    assert copy_file_data(copy_file_range, src, dst, len(data), sparse) == len(data)
    assert (tmp_path / "dst").read_bytes() == data


def test_sparse_copy_ends_at_the_source_size(fds, tmp_path):
    data = random_bytes(5000) + bytes(1 << 20)  # a trailing hole once written sparsely
    src, dst = fds.file("src", flags=os.O_RDWR), fds.file("dst")
    os.pwrite(src, data[:5000], 0)
    os.ftruncate(src, len(data))
    copied = copy_file_data(copy_file_range, src, dst, len(data), sparse=True)
    assert copied < 64 * 1024  # whole filesystem blocks of data, not the hole
    assert (tmp_path / "dst").read_bytes() == data


def test_size_zero_pseudo_file_is_copied_until_eof(fds, tmp_path):
    src = os.open("/proc/self/cmdline", os.O_RDONLY)
    try:
        dst = fds.file("dst")
        copied = copy_file_data(copy_file_range, src, dst, 0, sparse=True)
    finally:
        os.close(src)
    with open("/proc/self/cmdline", "rb") as fresh:
        expected = fresh.read()
    assert copied == len(expected) > 0
    assert (tmp_path / "dst").read_bytes() == expected


def test_empty_file_copies_nothing(fds, tmp_path):
    src, dst = fds.file("src", b"", os.O_RDONLY), fds.file("dst")
    assert copy_file_data(copy_file_range, src, dst, 0, sparse=True) == 0
    assert (tmp_path / "dst").stat().st_size == 0


def test_unsupported_on_the_first_segment_propagates_untouched(fds, tmp_path, monkeypatch):
    sparse_file(tmp_path / "src")
    src, dst = fds.file("src", flags=os.O_RDONLY), fds.file("dst")
    Faulty(monkeypatch, "copy_file_range", fail={0: errno.EXDEV})
    with pytest.raises(Unsupported) as raised:
        copy_file_data(copy_file_range, src, dst, TiB, sparse=True)
    assert raised.value.method is Method.COPY_FILE_RANGE
    assert os.fstat(dst).st_size == 0


def test_unsupported_on_a_later_segment_is_a_real_error(fds, tmp_path, monkeypatch):
    sparse_file(tmp_path / "src")
    src, dst = fds.file("src", flags=os.O_RDONLY), fds.file("dst")
    Faulty(monkeypatch, "copy_file_range", fail={1: errno.EXDEV})
    with pytest.raises(OSError, match="after 4096 bytes") as raised:
        copy_file_data(copy_file_range, src, dst, TiB, sparse=True)
    assert raised.value.errno == errno.EXDEV


def test_source_truncated_during_a_sparse_copy_is_a_changed_source(fds, tmp_path):
    sparse_file(tmp_path / "src")
    src, dst = fds.file("src", flags=os.O_RDONLY), fds.file("dst")

    def cut_after_the_head(_moved: int) -> None:
        os.truncate(tmp_path / "src", 8192)  # the far data is gone before it is looked for

    with pytest.raises(SourceChanged):
        copy_file_data(read_write, src, dst, TiB, sparse=True, progress=cut_after_the_head)
