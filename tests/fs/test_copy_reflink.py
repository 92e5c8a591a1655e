"""Reflink end to end: shared extents on xfs and btrfs, a clean per-file failure where none can be shared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import need_tool

PARTIAL = 23


def zcp(*args: str | os.PathLike) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zcp", *map(os.fspath, args)], capture_output=True, text=True,
                          timeout=60)


def shares_extents(path: Path) -> bool:
    """filefrag -v marks extents that another file also uses as 'shared'."""
    out = subprocess.run([need_tool("filefrag"), "-v", str(path)], capture_output=True, text=True, check=True)
    return "shared" in out.stdout


def _source(folder: Path) -> Path:
    src = folder / "src"
    with open(src, "wb") as f:
        f.write(os.urandom((1 << 20) + 4096))
        os.fsync(f.fileno())  # real extents, not delayed allocation, so filefrag has something to report
    return src


@pytest.mark.parametrize("fs", ["xfs_dir", "btrfs_dir"])
@pytest.mark.parametrize("flags", [["--reflink=always"], []], ids=["always", "default"])
def test_copy_shares_extents(request, fs, flags):
    folder = request.getfixturevalue(fs)
    src = _source(folder)
    done = zcp(*flags, src, folder / "dst")
    assert (done.returncode, done.stderr) == (0, "")
    assert (folder / "dst").read_bytes() == src.read_bytes()
    assert shares_extents(folder / "dst")


def test_reflink_never_makes_a_real_copy(xfs_dir):
    src = _source(xfs_dir)
    done = zcp("--reflink=never", src, xfs_dir / "dst")
    assert (done.returncode, done.stderr) == (0, "")
    assert (xfs_dir / "dst").read_bytes() == src.read_bytes()
    assert not shares_extents(xfs_dir / "dst")


@pytest.mark.parametrize("fs", ["ext4_dir", "tmpfs_dir"])
def test_reflink_always_where_unsupported_fails_cleanly(request, fs):
    folder = request.getfixturevalue(fs)
    src = folder / "src"
    src.write_bytes(b"x" * 5000)
    done = zcp("--reflink=always", src, folder / "dst")
    assert done.returncode == PARTIAL
    [line] = done.stderr.splitlines()
    assert line.startswith("zcp: ") and "reflink" in line and "src" in line, line
    assert os.listdir(folder) == ["src"]  # neither the copy nor a temp file


def test_reflink_always_across_filesystems_fails_cleanly(xfs_dir, btrfs_dir):
    src = _source(xfs_dir)
    done = zcp("--reflink=always", src, btrfs_dir / "dst")
    assert done.returncode == PARTIAL
    [line] = done.stderr.splitlines()
    assert line.startswith("zcp: ") and "reflink" in line, line
    assert os.listdir(btrfs_dir) == []


def _nocow_source(folder: Path) -> Path:
    """A btrfs file with NOCOW set (chattr +C, while empty): it cannot be cloned into a normal file."""
    nocow = folder / "a_nocow"
    nocow.touch()
    subprocess.run([need_tool("chattr"), "+C", str(nocow)], check=True)
    with open(nocow, "ab") as f:
        f.write(os.urandom((1 << 20) + 4096))
        os.fsync(f.fileno())
    return nocow


@pytest.mark.parametrize("flags", [["--reflink=always"], []], ids=["always", "default"])
def test_one_file_that_cannot_be_cloned_does_not_stop_cloning_the_rest(btrfs_dir, flags):
    """FICLONE's EINVAL for a NOCOW file is that file's own: the next file is still cloned (by
    default the NOCOW one is copied instead; with --reflink=always it alone fails)."""
    src = btrfs_dir / "src"
    src.mkdir()
    _nocow_source(src)
    normal = _source(src).rename(src / "b_normal")
    done = zcp("-a", "-j1", *flags, f"{src}/", btrfs_dir / "dst")
    if flags:
        assert done.returncode == PARTIAL
        [line] = done.stderr.splitlines()
        assert "a_nocow" in line and "reflink" in line, line
    else:
        assert (done.returncode, done.stderr) == (0, "")
        assert (btrfs_dir / "dst" / "a_nocow").read_bytes() == (src / "a_nocow").read_bytes()
    assert (btrfs_dir / "dst" / "b_normal").read_bytes() == normal.read_bytes()
    assert shares_extents(btrfs_dir / "dst" / "b_normal")


def test_reflink_never_refuses_a_forced_copy_file_range(xfs_dir):
    """copy_file_range clones by itself within xfs and btrfs, which --reflink=never forbids."""
    src = _source(xfs_dir)
    done = zcp("--reflink=never", "--method=copy_file_range", src, xfs_dir / "dst")
    assert done.returncode == 1
    assert "--reflink=never" in done.stderr and "copy_file_range" in done.stderr
    assert not (xfs_dir / "dst").exists()
