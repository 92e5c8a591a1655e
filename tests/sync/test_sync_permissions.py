"""Destination files whose mode shuts their owner out, as a user who is not root meets them.

zcp runs as root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (setpriv drops them from the
bounding set): a file's mode binds it as it binds any owner, while the files stay root's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import need_root, need_tool

MIB = 1 << 20
OLD_NS = 1_500_000_000 * 10**9


def zcp_as_owner(*args: str | os.PathLike) -> subprocess.CompletedProcess[str]:
    need_root()
    setpriv = need_tool("setpriv")
    return subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m", "zcp",
                           *map(os.fspath, args)], capture_output=True, text=True, timeout=120)


def _pair(src_root: Path, dst_root: Path, size: int, mode: int) -> tuple[Path, Path]:
    """src/f and an older, different dst/f of the same size with ``mode``."""
    (src_root / "src").mkdir()
    (dst_root / "dst").mkdir()
    src, dst = src_root / "src" / "f", dst_root / "dst" / "f"
    src.write_bytes(os.urandom(size))
    dst.write_bytes(os.urandom(size))
    os.utime(dst, ns=(OLD_NS, OLD_NS))
    dst.chmod(mode)
    return src, dst


def test_in_place_update_of_a_read_only_file(tmp_path):
    """--inplace opens the file read-write: a 0444 file of ours is made writable for the open, as
    rsync does, and keeps its inode and (without -p) its mode."""
    src, dst = _pair(tmp_path, tmp_path, MIB, 0o444)
    inode = dst.stat().st_ino
    done = zcp_as_owner("-rt", "--inplace", f"{src.parent}/", f"{dst.parent}/")
    assert (done.returncode, done.stderr) == (0, "")
    assert dst.read_bytes() == src.read_bytes()
    assert (dst.stat().st_ino, dst.stat().st_mode & 0o7777) == (inode, 0o444)


def test_an_unreadable_old_copy_is_replaced_whole(tmp_path, xfs_dir):
    """The delta path clones the old copy (a big file onto xfs from another filesystem): when the
    old copy cannot be read, the file is copied whole instead of failing."""
    src, dst = _pair(tmp_path, xfs_dir, 9 * MIB, 0o000)
    done = zcp_as_owner("-a", f"{src.parent}/", f"{dst.parent}/")
    assert (done.returncode, done.stderr) == (0, "")
    assert dst.read_bytes() == src.read_bytes()


def test_checksum_against_an_unreadable_copy_replaces_it_and_still_deletes(tmp_path):
    """-c cannot hash the copy: it counts as different (rsync does the same), and a destination it
    cannot read is no source read error, so --delete goes on."""
    src, dst = _pair(tmp_path, tmp_path, 4096, 0o000)
    (dst.parent / "extra").write_bytes(b"not in the source")
    os.utime(src, ns=(OLD_NS, OLD_NS))  # same size and time: only -c can tell them apart
    done = zcp_as_owner("-a", "-c", "--delete", f"{src.parent}/", f"{dst.parent}/")
    assert (done.returncode, done.stderr) == (0, "")
    assert dst.read_bytes() == src.read_bytes()
    assert sorted(os.listdir(dst.parent)) == ["f"]
