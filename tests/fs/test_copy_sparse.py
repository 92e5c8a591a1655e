"""Sparse files: a 1 TiB file holding 8 KiB of data copies in a blink, holes stay holes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zcp.config import Config, Method, Preserve
from zcp.exec.events import RecordingSink
from zcp.replicate import replicate

TIB = 1 << 40
# (offset, 4 KiB of data): one block near the start, one in the middle; the end is a hole.
BLOCKS = [(1 << 20, b"\x01first block".ljust(4096, b"\xaa")), (TIB // 2, b"\x02second block".ljust(4096, b"\x55"))]
HOLE_PROBES = [0, (1 << 20) + 4096, 1 << 30, TIB - 4096]


def make_sparse(path: Path) -> os.stat_result:
    with open(path, "wb") as f:
        for offset, data in BLOCKS:
            f.seek(offset)
            f.write(data)
        f.truncate(TIB)
    return os.stat(path)


def check_copy(src: Path, dst: Path) -> None:
    src_st, dst_st = os.stat(src), os.stat(dst)
    assert dst_st.st_size == TIB
    assert dst_st.st_blocks <= src_st.st_blocks, "holes were filled"
    with open(dst, "rb") as f:
        for offset, data in BLOCKS:
            f.seek(offset)
            assert f.read(len(data)) == data, offset
        for offset in HOLE_PROBES:
            f.seek(offset)
            assert f.read(4096) == bytes(4096), offset


@pytest.mark.parametrize("dst_fs", ["tmpfs_dir", "ext4_dir"], ids=["same-fs", "tmpfs-to-ext4"])
def test_one_tib_sparse_file_copies_fast(request, tmpfs_dir, dst_fs):
    folder = request.getfixturevalue(dst_fs)
    assert os.statvfs(folder).f_bsize >= 4096  # ext4 with 1 KiB blocks caps files at 16 GiB
    src = tmpfs_dir / "sparse"
    make_sparse(src)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "zcp", str(src), str(folder / "copy")], capture_output=True,
                          text=True, timeout=60)
    elapsed = time.monotonic() - start
    print(f"1 TiB sparse file (8 KiB of data), {dst_fs}: {elapsed:.2f} s including interpreter start")
    assert (done.returncode, done.stderr) == (0, "")
    assert elapsed < 5
    check_copy(src, folder / "copy")


@pytest.mark.parametrize("method", [Method.COPY_FILE_RANGE, Method.SENDFILE, Method.SPLICE, Method.RW])
def test_every_method_keeps_holes(tmpfs_dir, method):
    src = tmpfs_dir / "sparse"
    make_sparse(src)
    start = time.monotonic()
    stats = replicate([str(src)], str(tmpfs_dir / "copy"), Config(method=method), RecordingSink())
    print(f"{method}: {time.monotonic() - start:.3f} s")
    assert (stats.failed, dict(stats.by_method)) == (0, {method: 8192})
    check_copy(src, tmpfs_dir / "copy")


def test_archive_keeps_holes_of_a_file_in_a_tree(tmpfs_dir):
    (tmpfs_dir / "src").mkdir()
    make_sparse(tmpfs_dir / "src" / "sparse")
    stats = replicate([f"{tmpfs_dir}/src/"], str(tmpfs_dir / "dst"),
                      Config(recursive=True, preserve=Preserve.archive()), RecordingSink())
    assert (stats.failed, stats.files, stats.bytes) == (0, 1, 8192)
    check_copy(tmpfs_dir / "src" / "sparse", tmpfs_dir / "dst" / "sparse")
