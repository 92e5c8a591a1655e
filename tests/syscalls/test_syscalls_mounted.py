"""Real filesystems: FICLONE / FICLONERANGE share extents where supported (else Unsupported), and a
full filesystem is a real error for every loop."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from conftest import need_tool
from syscalls_support import random_bytes  # noqa: F401 (fixture)

from zcp.config import Method
from zcp.errors import Unsupported
from zcp.syscalls import COPIERS, reflink, reflink_range

pytestmark = pytest.mark.usefixtures("no_hang")  # a loop that never ends fails, not stalls

SIZE = 256 * 1024


def written(path, data: bytes) -> int:
    """``path`` holding ``data`` on disk, opened read-only."""
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    return fd


def shared_extents(path) -> bool:
    filefrag = need_tool("filefrag")
    report = subprocess.run([filefrag, "-v", str(path)], capture_output=True, text=True, check=True)
    return "shared" in report.stdout


@pytest.mark.parametrize("fs", ["xfs_dir", "btrfs_dir"])
def test_reflink_shares_the_extents(request, fs):
    root = request.getfixturevalue(fs)
    data = random_bytes(SIZE, seed=1)
    src = written(root / "src", data)
    dst = os.open(root / "dst", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        reflink(src, dst)
    finally:
        os.close(src)
        os.close(dst)
    assert (root / "dst").read_bytes() == data
    assert shared_extents(root / "dst")


@pytest.mark.parametrize("fs", ["xfs_dir", "btrfs_dir"])
def test_reflink_range_shares_one_aligned_range(request, fs):
    root = request.getfixturevalue(fs)
    data = random_bytes(SIZE, seed=2)
    src = written(root / "src", data)
    dst = os.open(root / "dst", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(dst, SIZE)
        reflink_range(src, dst, 64 * 1024, 64 * 1024)
    finally:
        os.close(src)
        os.close(dst)
    copy = (root / "dst").read_bytes()
    assert copy[64 * 1024 : 128 * 1024] == data[64 * 1024 : 128 * 1024]
    assert copy[: 64 * 1024] == bytes(64 * 1024)
    assert copy[128 * 1024 :] == bytes(128 * 1024)
    assert shared_extents(root / "dst")


@pytest.mark.parametrize("fs", ["ext4_dir", "tmpfs_dir"])
def test_reflink_is_unsupported_without_shared_extents(request, fs):
    root = request.getfixturevalue(fs)
    src = written(root / "src", random_bytes(SIZE, seed=3))
    dst = os.open(root / "dst", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(Unsupported) as whole:
            reflink(src, dst)
        with pytest.raises(Unsupported):
            reflink_range(src, dst, 0, 4096)
    finally:
        os.close(src)
        os.close(dst)
    assert whole.value.method is Method.REFLINK
    assert (root / "dst").stat().st_size == 0


def test_reflink_across_filesystems_is_unsupported(xfs_dir, btrfs_dir):
    src = written(xfs_dir / "src", random_bytes(SIZE, seed=4))
    dst = os.open(btrfs_dir / "dst", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(Unsupported):
            reflink(src, dst)
    finally:
        os.close(src)
        os.close(dst)


def test_reflink_onto_a_directory_is_a_real_error(xfs_dir):
    src = written(xfs_dir / "src", random_bytes(SIZE, seed=5))
    folder = os.open(xfs_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as raised:
            reflink(src, folder)
    finally:
        os.close(src)
        os.close(folder)
    assert raised.value.errno == errno.EISDIR


@pytest.mark.parametrize("method", list(COPIERS))
def test_a_full_filesystem_is_a_real_error(tiny_tmpfs, method):
    data = random_bytes(700 * 1024, seed=6)  # the source and most of its copy do not fit in 1 MiB
    src = written(tiny_tmpfs / "src", data)
    dst = os.open(tiny_tmpfs / "dst", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as raised:
            COPIERS[method](src, dst, len(data), 0, 0)
    finally:
        os.close(src)
        os.close(dst)
    assert raised.value.errno == errno.ENOSPC
