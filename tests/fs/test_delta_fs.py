"""Block-delta updates on real filesystems: a clone on xfs costs only the changed blocks, --inplace on
ext4 writes only them, filesystems that cannot clone leave the temp file to a whole copy."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import need, need_tool
from zcp import hashing
from zcp.config import Method
from zcp.errors import SourceChanged, Unsupported
from zcp.exec.delta import DeltaResult, delta_in_place, delta_into_temp
from zcp.syscalls import Capabilities

MIB = 1 << 20
IN_KERNEL = (Method.COPY_FILE_RANGE, Method.SENDFILE, Method.RW)




def write_pair(src: Path, old: Path, size: int, change_at: int, change_len: int = MIB) -> None:
    """Random ``src``, and ``old`` equal to it but for ``change_len`` bytes at ``change_at`` (durable)."""
    chunk = 8 * MIB
    with open(src, "wb") as s, open(old, "wb") as o:
        for offset in range(0, size, chunk):
            data = os.urandom(min(chunk, size - offset))
            s.write(data)
            o.write(data)
        o.seek(change_at)
        o.write(os.urandom(change_len))
        o.flush()
        os.fsync(o.fileno())


@dataclass
class Opened:
    src: int
    old: int
    out: int  # the temp file (delta_into_temp) or the destination itself (delta_in_place)

    @property
    def devices(self) -> tuple[int, int]:
        return os.fstat(self.src).st_dev, os.fstat(self.out).st_dev


@contextmanager
def opened(src: Path, old: Path, out: Path) -> Iterator[Opened]:
    fds = Opened(os.open(src, os.O_RDONLY), os.open(old, os.O_RDONLY), os.open(out, os.O_RDWR | os.O_CREAT))
    try:
        yield fds
    finally:
        for fd in (fds.src, fds.old, fds.out):
            os.close(fd)


def into_temp(fds: Opened, size: int, progress=None) -> DeltaResult:
    result = delta_into_temp(fds.src, size, fds.old, fds.out, methods=IN_KERNEL, devices=fds.devices,
                             caps=Capabilities(), progress=progress)
    os.fsync(fds.out)
    return result


def used_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def shared_bytes(path: Path) -> int:
    """Bytes of ``path`` in extents that filefrag -v marks 'shared' (also used by another file)."""
    out = subprocess.run([need_tool("filefrag"), "-v", str(path)], capture_output=True, text=True, check=True).stdout
    block = int(re.search(r"blocks of (\d+) bytes", out).group(1))
    extents = re.findall(r"^\s*\d+:\s.*?:\s.*?:\s+(\d+):.*?(\S*shared\S*)?$", out, re.MULTILINE)
    return sum(int(length) for length, flags in extents if flags) * block


def digest(path: Path) -> bytes:
    return hashing.hash_path(str(path))


# --- clone and patch on xfs --------------------------------------------------------------------


def test_delta_on_xfs_shares_the_untouched_blocks_and_writes_the_changed_ones(xfs_dir, tmp_path):
    size = 32 * MIB
    src, old, tmp = tmp_path / "src", xfs_dir / "old", xfs_dir / "tmp"  # source on another filesystem
    write_pair(src, old, size, change_at=16 * MIB)
    old_digest = digest(old)
    used_before = used_bytes(xfs_dir)
    with opened(src, old, tmp) as fds:
        result = into_temp(fds, size)
    assert digest(tmp) == digest(src)
    assert digest(old) == old_digest, "patching the clone changed the old file"
    assert (result.ranges, result.bytes_written) == ([(16 * MIB, MIB)], MIB)
    assert shared_bytes(tmp) == size - MIB
    assert used_bytes(xfs_dir) - used_before <= 2 * MIB  # a whole copy would take 32 MiB


def test_delta_on_xfs_follows_a_source_that_grew_or_shrank(xfs_dir, tmp_path):
    src, old, tmp = tmp_path / "src", xfs_dir / "old", xfs_dir / "tmp"
    write_pair(src, old, 20 * MIB, change_at=0, change_len=1)
    block = 128 * 1024
    # The old file is 20 MiB with its first byte changed: a longer, then a shorter source.
    for size, tail in ((24 * MIB + 5, (20 * MIB, 4 * MIB + 5)), (9 * MIB + 3, (9 * MIB, 3))):
        os.truncate(src, size)
        tmp.unlink(missing_ok=True)
        with opened(src, old, tmp) as fds:
            result = into_temp(fds, size)
        assert digest(tmp) == digest(src)
        assert result.ranges == [(0, block), tail]
        assert result.bytes_written == block + tail[1]


def test_a_source_written_during_a_delta_on_xfs_is_noticed(xfs_dir, tmp_path):
    src, old, tmp = tmp_path / "src", xfs_dir / "old", xfs_dir / "tmp"
    write_pair(src, old, 16 * MIB, change_at=4 * MIB)

    def write_source(_moved: int) -> None:
        with open(src, "r+b") as f:
            f.seek(0, os.SEEK_END)
            f.write(b"late")

    with opened(src, old, tmp) as fds, pytest.raises(SourceChanged):
        into_temp(fds, 16 * MIB, progress=write_source)


@pytest.mark.parametrize("fs", ["ext4_dir", "tmpfs_dir"])
def test_without_a_clone_the_temp_is_left_empty_for_a_whole_copy(request, fs, tmp_path):
    folder = request.getfixturevalue(fs)
    src, old, tmp = tmp_path / "src", folder / "old", folder / "tmp"
    write_pair(src, old, 8 * MIB, change_at=0)
    caps = Capabilities()
    with opened(src, old, tmp) as fds, pytest.raises(Unsupported):
        delta_into_temp(fds.src, 8 * MIB, fds.old, fds.out, methods=IN_KERNEL, devices=fds.devices, caps=caps)
    assert tmp.stat().st_size == 0
    assert caps.is_known_unsupported(Method.REFLINK, old.stat().st_dev, old.stat().st_dev)


def test_in_place_on_ext4_rewrites_the_changed_blocks(ext4_dir, tmp_path):
    src, dst = tmp_path / "src", ext4_dir / "dst"
    write_pair(src, dst, 24 * MIB, change_at=3 * MIB + 100, change_len=10)
    inode = dst.stat().st_ino
    with opened(src, dst, dst) as fds:
        result = delta_in_place(fds.src, 24 * MIB, fds.out, methods=IN_KERNEL, devices=fds.devices,
                                caps=Capabilities())
    assert digest(dst) == digest(src)
    assert (result.ranges, result.bytes_written) == ([(3 * MIB, 128 * 1024)], 128 * 1024)
    assert dst.stat().st_ino == inode


# --- the case: 1 MiB changed in the middle of 512 MiB --------------------------------

BIG = 512 * MIB
CHANGE_AT = BIG // 2 + 12345  # not block-aligned: the change touches 9 blocks of 128 KiB


@pytest.fixture(scope="module")
def big_source(mounts) -> Iterator[Path]:
    """512 MiB of random bytes on a tmpfs of their own (memory, not disk)."""
    point = mounts.tmpfs("600m")
    src = point / "src"
    with open(src, "wb") as f:
        for _ in range(BIG // (8 * MIB)):
            f.write(os.urandom(8 * MIB))
    yield src
    mounts.unmount(point)


def old_version(src: Path, old: Path) -> None:
    """A copy of ``src`` with 1 MiB changed at CHANGE_AT, on stable storage."""
    with open(src, "rb") as s, open(old, "wb") as o:
        os.sendfile(o.fileno(), s.fileno(), 0, BIG)
        os.pwrite(o.fileno(), os.urandom(MIB), CHANGE_AT)
        os.fsync(o.fileno())


def test_one_mib_changed_in_512_mib_on_xfs_costs_about_one_mib(mounts, big_source):
    folder = mounts.loop("xfs", size="2G")
    old, tmp = folder / "old", folder / "tmp"
    old_version(big_source, old)
    used_before = used_bytes(folder)
    with opened(big_source, old, tmp) as fds:
        result = into_temp(fds, BIG)
    growth = used_bytes(folder) - used_before
    assert digest(tmp) == digest(big_source)
    assert MIB <= result.bytes_written <= 2 * MIB
    assert growth <= 4 * MIB
    mounts.unmount(folder)


def test_one_mib_changed_in_512_mib_in_place_on_ext4_writes_about_one_mib(mounts, big_source):
    need(os.path.exists("/proc/self/io"), "needs task I/O accounting (/proc/self/io)")
    folder = mounts.loop("ext4", size="2G")
    dst = folder / "dst"
    old_version(big_source, dst)
    written_before = write_bytes()
    with opened(big_source, dst, dst) as fds:
        result = delta_in_place(fds.src, BIG, fds.out, methods=IN_KERNEL, devices=fds.devices,
                                caps=Capabilities())
        os.fsync(fds.out)
    written = write_bytes() - written_before
    assert digest(dst) == digest(big_source)
    assert MIB <= result.bytes_written <= 2 * MIB
    # Bytes this process sent towards storage (counted when pages are dirtied): a whole copy is 512 MiB.
    assert MIB <= written <= 4 * MIB
    mounts.unmount(folder)


def write_bytes() -> int:
    with open("/proc/self/io") as f:
        return int(re.search(r"^write_bytes: (\d+)$", f.read(), re.MULTILINE).group(1))
