"""FIFOs, devices and sockets: recreated with -a as root, skipped with a warning otherwise, never read."""

from __future__ import annotations

import os
import socket
import stat
import time

import pytest
from cli_support import run_zcp

from conftest import need_root

NULL_DEVICE = os.makedev(1, 3)  # the numbers of /dev/null
# A FIFO opened for reading with no writer blocks forever: a run this slow has opened it.
QUICK_S = 15


@pytest.fixture
def specials_tree(tmp_path, monkeypatch):
    """src/ with a file, a FIFO without writer, a char device 1:3, and a bound unix socket."""
    need_root()
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_bytes(b"regular")
    os.mkfifo(src / "fifo", 0o640)
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, NULL_DEVICE)
    os.chmod(src / "null", 0o620)  # past the umask
    monkeypatch.chdir(src)  # a relative bind keeps the socket path under the 108-byte limit
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        yield src


def _timed_run(*args: str | os.PathLike) -> tuple[float, object]:
    start = time.monotonic()
    result = run_zcp(*args, timeout=QUICK_S * 2)
    return time.monotonic() - start, result


def test_archive_recreates_fifo_device_and_socket(specials_tree):
    dst = specials_tree.parent / "dst"
    elapsed, result = _timed_run("-a", f"{specials_tree}/", dst)
    assert elapsed < QUICK_S
    assert (result.code, result.err) == (0, ""), result
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    assert stat.S_ISCHR(os.lstat(dst / "null").st_mode) and os.lstat(dst / "null").st_rdev == NULL_DEVICE
    assert stat.S_ISSOCK(os.lstat(dst / "sock").st_mode)
    for name in ("fifo", "null", "sock"):
        src_st, dst_st = os.lstat(specials_tree / name), os.lstat(dst / name)
        assert (dst_st.st_mode, dst_st.st_mtime_ns) == (src_st.st_mode, src_st.st_mtime_ns), name
    assert (dst / "file").read_bytes() == b"regular"


def test_a_resync_carries_new_mode_owner_and_times_of_specials_without_opening_them(specials_tree):
    dst = specials_tree.parent / "dst"
    assert run_zcp("-a", f"{specials_tree}/", dst).code == 0
    inodes = {name: os.lstat(dst / name).st_ino for name in ("fifo", "null", "sock")}
    for name in ("fifo", "null", "sock"):
        os.chmod(specials_tree / name, 0o604)
        os.chown(specials_tree / name, 1234, 5678, follow_symlinks=False)
        os.utime(specials_tree / name, ns=(1_000_000_000_001, 2_000_000_000_002), follow_symlinks=False)
    elapsed, result = _timed_run("-ai", f"{specials_tree}/", dst)
    assert elapsed < QUICK_S  # the FIFO has no writer: opening it would block
    assert result.code == 0, result
    assert sorted(result.out.split()[1::2]) == ["fifo", "null", "sock"], result.out
    for name in ("fifo", "null", "sock"):
        st = os.lstat(dst / name)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == (0o604, 1234, 5678,
                                                                                  2_000_000_000_002), name
        assert st.st_ino == inodes[name], name  # changed in place, not made anew


def test_without_archive_specials_are_skipped_with_a_warning(specials_tree):
    dst = specials_tree.parent / "dst"
    elapsed, result = _timed_run("-r", f"{specials_tree}/", dst)
    assert elapsed < QUICK_S
    assert result.code == 0, result
    warnings = [line for line in result.err_lines if line.startswith("zcp: warning: ")]
    assert len(warnings) == 3 and len(result.err_lines) == 3, result.err
    for name in ("fifo", "null", "sock"):
        assert sum(name in w for w in warnings) == 1, (name, warnings)
    assert sorted(os.listdir(dst)) == ["file"]


def test_fifo_operand_is_skipped_with_a_warning_not_read(specials_tree):
    """`zcp fifo out` on a FIFO with no writer: cp would block forever; zcp warns and finishes."""
    out = specials_tree.parent / "out"
    elapsed, result = _timed_run(specials_tree / "fifo", out)
    assert elapsed < QUICK_S
    assert result.code == 0, result
    assert len(result.err_lines) == 1 and result.err.startswith("zcp: warning: "), result.err
    assert not os.path.lexists(out)


def test_fifo_operand_with_archive_is_recreated(specials_tree):
    out = specials_tree.parent / "out"
    elapsed, result = _timed_run("-a", specials_tree / "fifo", out)
    assert elapsed < QUICK_S
    assert (result.code, result.err) == (0, ""), result
    assert stat.S_ISFIFO(os.lstat(out).st_mode)
