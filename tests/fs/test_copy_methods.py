"""Every --method on every filesystem pair it can serve gives identical bytes; where it cannot, the file
fails with a clear message instead of silently taking another path."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from zcp.config import Config, Method
from zcp.exec.events import RecordingSink
from zcp.replicate import replicate

SIZES = {"empty": 0, "one": 1, "mib7": (1 << 20) + 7}

SAME_FS = [("tmpfs_dir", "tmpfs_dir"), ("ext4_dir", "ext4_dir"), ("xfs_dir", "xfs_dir"), ("btrfs_dir", "btrfs_dir")]
ACROSS_FS = [("tmpfs_dir", "xfs_dir"), ("xfs_dir", "ext4_dir"), ("ext4_dir", "tmpfs_dir")]
PAGE_CACHE_METHODS = [Method.SENDFILE, Method.SPLICE, Method.RW]


def _cases() -> list:
    cases = [(Method.REFLINK, pair) for pair in SAME_FS if pair[0] in ("xfs_dir", "btrfs_dir")]
    cases += [(Method.COPY_FILE_RANGE, pair) for pair in SAME_FS]
    cases += [(m, pair) for m in PAGE_CACHE_METHODS for pair in SAME_FS + ACROSS_FS]
    return [pytest.param(m, src_fs, dst_fs, id=f"{m}-{src_fs[:-4]}-{dst_fs[:-4]}") for m, (src_fs, dst_fs) in cases]


def _folders(request, src_fs: str, dst_fs: str) -> tuple[Path, Path]:
    src_root = request.getfixturevalue(src_fs)
    dst_root = src_root if dst_fs == src_fs else request.getfixturevalue(dst_fs)
    (src_root / "src").mkdir()
    return src_root / "src", dst_root / "dst"


def _fill(src: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    rng = random.Random(7)
    contents = {name: rng.randbytes(size) for name, size in sizes.items()}
    for name, data in contents.items():
        (src / name).write_bytes(data)
    return contents


@pytest.mark.parametrize("method, src_fs, dst_fs", _cases())
def test_forced_method_copies_identical_bytes(request, method, src_fs, dst_fs):
    src, dst = _folders(request, src_fs, dst_fs)
    contents = _fill(src, SIZES)
    sink = RecordingSink()
    stats = replicate([f"{src}/"], str(dst), Config(recursive=True, method=method), sink)
    assert stats.failed == 0, sink.events
    assert {name: (dst / name).read_bytes() for name in contents} == contents
    assert dict(stats.by_method) == {method: sum(SIZES.values())}


# Pairs a forced method cannot serve. copy_file_range across filesystems: EXDEV since Linux 5.19.
CANNOT_SERVE = [
    (Method.REFLINK, "tmpfs_dir", "tmpfs_dir"),
    (Method.REFLINK, "ext4_dir", "ext4_dir"),
    (Method.REFLINK, "xfs_dir", "btrfs_dir"),
    (Method.COPY_FILE_RANGE, "tmpfs_dir", "xfs_dir"),
]


@pytest.mark.parametrize("method, src_fs, dst_fs", CANNOT_SERVE, ids=lambda v: str(v).removesuffix("_dir"))
def test_forced_method_that_cannot_serve_fails_without_fallback(request, method, src_fs, dst_fs):
    src, dst = _folders(request, src_fs, dst_fs)
    _fill(src, {"one": 1, "mib7": (1 << 20) + 7})
    sink = RecordingSink()
    stats = replicate([f"{src}/"], str(dst), Config(recursive=True, method=method), sink)
    assert (stats.failed, stats.files, dict(stats.by_method)) == (2, 0, {})
    failures = [e for e in sink.events if e[0] == "failed"]
    assert len(failures) == 2
    for _, where, message in failures:
        assert os.path.basename(where) in ("one", "mib7") and str(method) in message, message
    assert os.listdir(dst) == []  # no copy, no temp file


def test_forced_reflink_on_tmpfs_is_one_clear_line(tmpfs_dir):
    (tmpfs_dir / "src").write_bytes(b"data")
    done = subprocess.run([sys.executable, "-m", "zcp", "--method=reflink", str(tmpfs_dir / "src"),
                           str(tmpfs_dir / "dst")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 23
    [line] = done.stderr.splitlines()
    assert line.startswith("zcp: ") and "src" in line and "reflink" in line, line
    assert os.listdir(tmpfs_dir) == ["src"]
