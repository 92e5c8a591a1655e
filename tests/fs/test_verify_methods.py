"""--verify on real filesystems: every kernel path's copy reads back equal and is counted, a 1 TiB sparse
file verifies without hashing its holes, and a verified tree copy satisfies rsync."""

from __future__ import annotations

import os
import random
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import need, need_tool
from zcp.config import Config, Method, Preserve
from zcp.exec.events import RecordingSink
from zcp.replicate import replicate

MIB = 1 << 20
TIB = 1 << 40
# 20 MiB: large enough that the source is hashed in a thread beside the copy.
SIZES = {"empty": 0, "one": 1, "mib7": MIB + 7, "mib20": 20 * MIB}
MKDATA = Path(__file__).resolve().parents[3] / "shared" / "bench" / "mkdata.py"

FILE_METHODS = [Method.COPY_FILE_RANGE, Method.SENDFILE, Method.SPLICE, Method.RW]
SAME_FS = ["tmpfs_dir", "ext4_dir", "xfs_dir"]


def _cases() -> list:
    cases = [(Method.REFLINK, fs, fs) for fs in ("xfs_dir", "btrfs_dir")]
    cases += [(m, fs, fs) for m in FILE_METHODS for fs in SAME_FS]
    # copy_file_range refuses tmpfs -> xfs (EXDEV since Linux 5.19): no such case.
    cases += [(m, "tmpfs_dir", "xfs_dir") for m in FILE_METHODS if m is not Method.COPY_FILE_RANGE]
    return [pytest.param(m, s, d, id=f"{m}-{s[:-4]}-{d[:-4]}") for m, s, d in cases]




@pytest.mark.parametrize("method, src_fs, dst_fs", _cases())
def test_every_method_verifies(request, method, src_fs, dst_fs):
    src_root = request.getfixturevalue(src_fs)
    dst_root = request.getfixturevalue(dst_fs)
    src, dst = src_root / "src", dst_root / "dst"
    src.mkdir()
    rng = random.Random(5)
    contents = {name: rng.randbytes(size) for name, size in SIZES.items()}
    for name, data in contents.items():
        (src / name).write_bytes(data)
    sink = RecordingSink()
    stats = replicate([f"{src}/"], str(dst), Config(recursive=True, method=method, verify=True), sink)
    assert (stats.failed, stats.files, stats.verified) == (0, len(SIZES), len(SIZES)), sink.events
    assert dict(stats.by_method) == {method: sum(SIZES.values())}
    assert not [e for e in sink.events if e[0] == "warned"]
    assert {name: (dst / name).read_bytes() for name in contents} == contents


def _make_sparse(path: Path) -> list[tuple[int, bytes]]:
    """A 1 TiB file holding 8 KiB of data; returns its (offset, data) blocks."""
    blocks = [(MIB, b"\x01first".ljust(4096, b"\xaa")), (TIB // 2, b"\x02second".ljust(4096, b"\x55"))]
    with open(path, "wb") as f:
        for offset, data in blocks:
            f.seek(offset)
            f.write(data)
        f.truncate(TIB)
    return blocks


@pytest.mark.parametrize("dst_fs", ["tmpfs_dir", "xfs_dir"], ids=["same-fs", "tmpfs-to-xfs"])
def test_one_tib_sparse_file_verifies_fast(request, tmpfs_dir, dst_fs):
    folder = request.getfixturevalue(dst_fs)
    blocks = _make_sparse(tmpfs_dir / "sparse")
    start = time.monotonic()
    stats = replicate([str(tmpfs_dir / "sparse")], str(folder / "copy"), Config(verify=True), RecordingSink())
    elapsed = time.monotonic() - start
    print(f"1 TiB sparse file with --verify, {dst_fs}: {elapsed:.3f} s")
    assert (stats.failed, stats.files, stats.verified, stats.bytes) == (0, 1, 1, 8192)
    assert elapsed < 5
    copy = folder / "copy"
    assert os.stat(copy).st_size == TIB
    assert os.stat(copy).st_blocks * 512 < MIB, "holes were filled"  # xfs may preallocate beyond 8 KiB
    with open(copy, "rb") as f:
        for offset, data in blocks:
            assert os.pread(f.fileno(), len(data), offset) == data


def _regular_files(root: Path) -> int:
    return sum(stat.S_ISREG(os.lstat(os.path.join(d, n)).st_mode) for d, _, names in os.walk(root) for n in names)


@pytest.mark.parametrize("jobs", [1, 2])
def test_verified_tree_copy_satisfies_rsync(tmpfs_dir, jobs):
    rsync = need_tool("rsync")
    need(MKDATA.exists(), f"needs the shared data generator {MKDATA}")
    src, dst = tmpfs_dir / "src", tmpfs_dir / "dst"
    subprocess.run([sys.executable, str(MKDATA), str(src), "800"], check=True, capture_output=True)
    files = _regular_files(src)
    done = subprocess.run([sys.executable, "-m", "zcp", "-a", "--verify", "-v", "-j", str(jobs), f"{src}/", f"{dst}/"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^{files} files verified\b", done.stderr, re.MULTILINE), done.stderr
    check = subprocess.run([rsync, "-anci", "--delete", f"{src}/", f"{dst}/"], capture_output=True, text=True)
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


def test_verified_tree_copy_counts_in_process(tmpfs_dir):
    """The same count through the API, with worker processes adding up their own verified files."""
    need(MKDATA.exists(), f"needs the shared data generator {MKDATA}")
    src, dst = tmpfs_dir / "src", tmpfs_dir / "dst"
    subprocess.run([sys.executable, str(MKDATA), str(src), "800"], check=True, capture_output=True)
    sink = RecordingSink()
    stats = replicate([f"{src}/"], str(dst), Config(recursive=True, preserve=Preserve.archive(), verify=True, jobs=2),
                      sink)
    assert (stats.failed, stats.verified) == (0, _regular_files(src)), sink.events
    assert stats.files == stats.verified
