"""Fault injection through a whole run: the kernel refusing a path, I/O errors, a full disk, sources that
shrink, vanish or turn into something else between plan and copy."""

from __future__ import annotations

import errno
import os
import random
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from exec_support import HookSink, Injected, fail_call, temp_files  # noqa: F401 (fixture)

from zcp.cli.output import summary_lines
from zcp.config import Config, Method, Preserve
from zcp.errors import UNSUPPORTED_ERRNOS, ExitCode
from zcp.exec.events import RecordingSink
from zcp.replicate import replicate

pytestmark = pytest.mark.usefixtures("no_hang")  # a loop that never ends fails, not stalls

MIB = 1 << 20
SOURCE_CHANGED = re.compile(r"changed|ended early|shrank")


def _write(path: Path, size: int, seed: int = 0) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


@pytest.fixture
def pair(tmpfs_dir) -> tuple[Path, Path]:
    """(source folder, destination folder) where copy_file_range is the first path that works: one
    filesystem (the kernel refuses it across filesystems) that shares no extents (so no reflink)."""
    src = tmpfs_dir / "src"
    src.mkdir()
    return src, tmpfs_dir / "dst"


def _copy_tree(src: Path, dst: Path, sink: RecordingSink | None = None, **config):
    return replicate([f"{src}/"], str(dst), Config(recursive=True, **config), sink or RecordingSink())


@pytest.mark.parametrize("err", sorted(UNSUPPORTED_ERRNOS), ids=lambda e: errno.errorcode[e])
def test_unsupported_errno_at_first_fast_path_falls_back(monkeypatch, pair, err):
    src, dst = pair
    data = _write(src / "big", 3 * MIB + 5)
    Injected(monkeypatch, "copy_file_range", fail_call(1, err))
    sink = RecordingSink()
    stats = _copy_tree(src, dst, sink)
    assert stats.failed == 0, sink.events
    assert (dst / "big").read_bytes() == data
    assert dict(stats.by_method) == {Method.SENDFILE: len(data)}
    assert "bytes by method: sendfile 3.0 MiB" in summary_lines(stats, 1.0)


def test_refused_path_is_not_retried_for_the_next_files(monkeypatch, pair):
    src, dst = pair
    contents = {f"f{i}": _write(src / f"f{i}", 1000 + i, seed=i) for i in range(3)}
    copy_file_range = Injected(monkeypatch, "copy_file_range", fail_call(1, errno.EXDEV))
    stats = _copy_tree(src, dst)
    assert stats.failed == 0
    assert {name: (dst / name).read_bytes() for name in contents} == contents
    assert copy_file_range.calls == 1


def _partial_then(err: int, first_chunk: int = 256 << 10):
    """copy_file_range that moves ``first_chunk`` bytes on its first call, then fails with ``err``."""

    def behaviour(n, real, args):
        if n == 1:
            src_fd, dst_fd, count, *rest = args
            return real(src_fd, dst_fd, min(count, first_chunk), *rest)
        raise OSError(err, os.strerror(err))

    return behaviour


@pytest.mark.parametrize("err", [errno.EIO, errno.EINVAL], ids=["EIO", "EINVAL"])
def test_error_after_some_bytes_fails_the_file_without_fallback(monkeypatch, pair, err):
    """Once bytes were written every error is real, even one that would mean "unsupported" at the start."""
    src, dst = pair
    _write(src / "big", 3 * MIB)
    dst.mkdir()
    (dst / "big").write_bytes(b"the old destination")
    os.utime(dst / "big", ns=(1_000_000_000, 1_000_000_000))
    old = os.stat(dst / "big")
    Injected(monkeypatch, "copy_file_range", _partial_then(err))
    fallbacks = [Injected(monkeypatch, name) for name in ("sendfile", "splice", "preadv")]
    sink = HookSink()
    stats = _copy_tree(src, dst, sink)
    assert (stats.failed, stats.files, stats.exit_code()) == (1, 0, ExitCode.PARTIAL)
    assert [f.calls for f in fallbacks] == [0, 0, 0]
    [(where, message)] = sink.failures()
    assert where.endswith("big") and os.strerror(err) in message
    assert temp_files(dst) == []
    assert (dst / "big").read_bytes() == b"the old destination"
    now = os.stat(dst / "big")
    assert (now.st_ino, now.st_mtime_ns) == (old.st_ino, old.st_mtime_ns)


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.ENOMEM],
                         ids=lambda e: errno.errorcode[e])
def test_fatal_errno_at_the_first_call_is_not_a_reason_to_fall_back(monkeypatch, pair, err):
    src, dst = pair
    _write(src / "big", MIB)
    Injected(monkeypatch, "copy_file_range", fail_call(1, err))
    sendfile = Injected(monkeypatch, "sendfile")
    stats = _copy_tree(src, dst)
    assert (stats.failed, stats.files, sendfile.calls) == (1, 0, 0)
    assert os.listdir(dst) == []


def test_full_filesystem_names_the_file_and_leaves_nothing(tmp_path, tiny_tmpfs):
    _write(tmp_path / "big.bin", 4 * MIB)
    done = subprocess.run([sys.executable, "-m", "zcp", str(tmp_path / "big.bin"), str(tiny_tmpfs / "big.bin")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == ExitCode.PARTIAL
    [line] = done.stderr.splitlines()
    assert line == f"zcp: {tiny_tmpfs / 'big.bin'}: {os.strerror(errno.ENOSPC)}"  # the file being written
    assert os.listdir(tiny_tmpfs) == []


def _truncating(path: Path, keep: int, chunk: int, fd_at: int, count_at: int, shorten):
    """A copy call that, the first time it reads ``path``, moves ``chunk`` bytes, then truncates ``path``
    to ``keep`` bytes."""
    ino = os.stat(path).st_ino
    done = False

    def behaviour(n, real, args):
        nonlocal done
        if done or os.fstat(args[fd_at]).st_ino != ino:
            return real(*args)
        done = True
        moved = real(*shorten(list(args), count_at, chunk))
        os.truncate(path, keep)
        return moved

    return behaviour


def _limit_count(args: list, index: int, chunk: int) -> list:
    args[index] = min(args[index], chunk)
    return args


def _limit_buffer(args: list, index: int, chunk: int) -> list:
    args[index] = [memoryview(args[index][0])[:chunk]]
    return args


# method -> (os function that reads the source, its source fd argument, the argument that bounds the
# amount, how to bound it)
FIRST_CALL = {
    Method.COPY_FILE_RANGE: ("copy_file_range", 0, 2, _limit_count),
    Method.SENDFILE: ("sendfile", 1, 3, _limit_count),
    Method.SPLICE: ("splice", 0, 2, _limit_count),
    Method.RW: ("preadv", 0, 1, _limit_buffer),
}


@pytest.mark.parametrize("method", FIRST_CALL)
def test_source_truncated_mid_copy_is_reported_as_changed(monkeypatch, pair, method):
    src, dst = pair
    _write(src / "shrinks", 2 * MIB)
    _write(src / "other", 1000, seed=1)
    name, fd_at, count_at, shorten = FIRST_CALL[method]
    Injected(monkeypatch, name, _truncating(src / "shrinks", 100 << 10, 64 << 10, fd_at, count_at, shorten))
    sink = HookSink()
    stats = _copy_tree(src, dst, sink, method=method)
    assert (stats.failed, stats.files) == (1, 1), sink.events
    [(where, message)] = sink.failures()
    assert where.endswith("shrinks") and SOURCE_CHANGED.search(message), message
    assert sorted(os.listdir(dst)) == ["other"]


def test_unreadable_source_fails_alone_and_the_run_goes_on(monkeypatch, pair):
    src, dst = pair
    for name in ("a", "b", "c"):
        _write(src / name, 100, seed=ord(name))
    denied = str(src / "b")

    def behaviour(n, real, args):
        if args[0] == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
        return real(*args)

    Injected(monkeypatch, "open", behaviour)
    sink = HookSink()
    stats = _copy_tree(src, dst, sink)
    assert (stats.failed, stats.files, stats.exit_code()) == (1, 2, ExitCode.PARTIAL)
    [(where, message)] = sink.failures()
    assert where == denied and os.strerror(errno.EACCES) in message
    assert sorted(os.listdir(dst)) == ["a", "c"]


def _on_planned(rel: str, change):
    """A hook that runs ``change()`` once, when the action for ``rel`` joins the plan."""

    def hook(action):
        if action.rel == rel:
            change()

    return hook


def test_file_vanishing_between_plan_and_copy_exits_24_and_the_rest_completes(pair):
    src, dst = pair
    for name in ("a", "b", "c"):
        _write(src / name, 100, seed=ord(name))
    sink = HookSink(_on_planned("b", lambda: os.unlink(src / "b")))
    stats = _copy_tree(src, dst, sink)
    assert (stats.vanished, stats.failed, stats.files, stats.exit_code()) == (1, 0, 2, ExitCode.VANISHED)
    assert sorted(os.listdir(dst)) == ["a", "c"]


@pytest.mark.parametrize("xattrs", [False, True], ids=["plain", "xattrs"])
def test_folder_vanishing_after_it_was_planned_exits_24(pair, xattrs):
    """With -X the folder's xattrs are read from the source when it is finished: gone, that is a
    vanished source too, not a failure."""
    src, dst = pair
    (src / "gone").mkdir()
    _write(src / "gone" / "inside", 10)
    _write(src / "kept", 10)

    def remove_folder():
        os.unlink(src / "gone" / "inside")
        os.rmdir(src / "gone")

    stats = _copy_tree(src, dst, HookSink(_on_planned("gone", remove_folder)),
                       preserve=Preserve(xattrs=xattrs))
    assert (stats.failed, stats.files, stats.exit_code()) == (0, 1, ExitCode.VANISHED)
    assert (dst / "kept").exists() and not (dst / "gone" / "inside").exists()


def test_fifo_swapped_in_after_planning_is_not_read(pair):
    """A FIFO with no writer where a file was planned: opening it for reading must not block."""
    src, dst = pair
    _write(src / "swapped", 100)

    def swap():
        os.unlink(src / "swapped")
        os.mkfifo(src / "swapped")

    sink = HookSink(_on_planned("swapped", swap))
    stats = _copy_tree(src, dst, sink)
    assert (stats.failed, stats.files) == (1, 0)
    [(where, message)] = sink.failures()
    assert where.endswith("swapped")
    assert not os.path.lexists(dst / "swapped")


def test_symlink_swapped_in_after_planning_is_not_followed(tmp_path, pair):
    src, dst = pair
    (tmp_path / "secret").write_bytes(b"not for the copy")
    _write(src / "swapped", 100)

    def swap():
        os.unlink(src / "swapped")
        os.symlink(tmp_path / "secret", src / "swapped")

    stats = _copy_tree(src, dst, HookSink(_on_planned("swapped", swap)))
    assert (stats.failed, stats.files) == (1, 0)
    assert not os.path.lexists(dst / "swapped")


def test_interrupt_mid_copy_removes_the_temp_file_and_keeps_the_old_file(monkeypatch, pair):
    src, dst = pair
    _write(src / "big", 2 * MIB)
    dst.mkdir()
    (dst / "big").write_bytes(b"old")

    def behaviour(n, real, args):
        if n == 1:
            src_fd, dst_fd, count, *rest = args
            return real(src_fd, dst_fd, min(count, 64 << 10), *rest)
        raise KeyboardInterrupt

    Injected(monkeypatch, "copy_file_range", behaviour)
    with pytest.raises(KeyboardInterrupt):
        _copy_tree(src, dst)
    assert os.listdir(dst) == ["big"]
    assert (dst / "big").read_bytes() == b"old"


def test_archive_run_with_a_fault_still_sets_folder_metadata(monkeypatch, pair):
    """A failed file must not leave its folder without the source's mode and times."""
    src, dst = pair
    (src / "sub").mkdir()
    _write(src / "sub" / "bad", MIB)
    os.chmod(src / "sub", 0o750)
    os.utime(src / "sub", ns=(1_500_000_000_000_000_001, 1_500_000_000_000_000_003))
    Injected(monkeypatch, "copy_file_range", fail_call(1, errno.EIO))
    stats = _copy_tree(src, dst, preserve=Preserve.archive())
    assert stats.failed == 1
    st = os.lstat(dst / "sub")
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o750, 1_500_000_000_000_000_003)


def test_a_refused_link_of_an_unnamed_file_falls_back_to_a_named_temp(tmp_path, monkeypatch):
    """O_TMPFILE needs linkat(), by fd or of /proc/self/fd/N; where both are refused the file is
    written again, under a temp name, and the device is not asked again."""
    from zcp.config import Config, Preserve
    from zcp.exec import atomic
    from zcp.exec.events import RecordingSink
    from zcp.replicate import replicate

    monkeypatch.setattr(atomic, "_by_fd", None)
    monkeypatch.setattr(atomic, "_link_by_fd", lambda fd, name, dir_fd: errno.EPERM)

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(os.urandom(5000 + i))
    real_link = os.link
    refused = []

    def link(source, target, *args, **kwargs):
        if str(source).startswith("/proc/self/fd/"):
            refused.append(target)
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    stats = replicate([f"{src}/"], str(tmp_path / "dst"), Config(recursive=True, preserve=Preserve.archive(), jobs=1),
                      RecordingSink())
    assert stats.files == 3 and stats.failed == 0
    assert len(refused) == 1  # asked once, then named temp files for that device
    for i in range(3):
        assert (tmp_path / "dst" / f"f{i}").read_bytes() == (src / f"f{i}").read_bytes()
    assert temp_files(tmp_path / "dst") == []


def test_an_interruption_while_the_temp_file_is_closed_stops_the_run(monkeypatch, pair):
    """The signal lands as the temp file's fd is being closed: the run stops (it is not one file's
    'Bad file descriptor' from closing it twice), the old file stays and no temp file is left."""
    from zcp.errors import Interrupted
    from zcp.exec import atomic

    src, dst = pair
    _write(src / "f", MIB)
    dst.mkdir()
    (dst / "f").write_bytes(b"old")
    pending_fds = []
    real_create, real_close = atomic.Pending.create.__func__, os.close

    def create(cls, *args):
        pending = real_create(cls, *args)
        pending_fds.append(pending.fd)
        return pending

    def close(fd):
        real_close(fd)
        if fd in pending_fds:
            pending_fds.remove(fd)
            raise Interrupted(15)  # as the handler would, right after the close

    monkeypatch.setattr(atomic.Pending, "create", classmethod(create))
    monkeypatch.setattr(os, "close", close)
    with pytest.raises(Interrupted):
        _copy_tree(src, dst)
    monkeypatch.undo()
    assert os.listdir(dst) == ["f"]
    assert (dst / "f").read_bytes() in (b"old", (src / "f").read_bytes())


def test_a_replacement_is_written_without_a_name_until_it_is_complete(pair):
    """While the new content is written nothing but the old file stands in the folder, so a process
    killed even by SIGKILL at that moment leaves no temp file; afterwards the new file is in place."""
    src, dst = pair
    _write(src / "f", 3 * MIB, seed=1)
    dst.mkdir()
    _write(dst / "f", 2 * MIB, seed=2)
    seen_while_writing: list[list[str]] = []

    class Watching(RecordingSink):
        def started(self, action, method):
            seen_while_writing.append(sorted(os.listdir(dst)))
            super().started(action, method)

    stats = _copy_tree(src, dst, Watching())
    assert stats.files == 1
    assert seen_while_writing == [["f"]]
    assert (dst / "f").read_bytes() == (src / "f").read_bytes()


def test_metadata_is_never_applied_to_a_folder_that_took_a_files_place(pair):
    """ATTRS planned for a file: if a folder stands there when it runs, it is not given the file's mode."""
    src, dst = pair
    _write(src / "f", 10)
    assert _copy_tree(src, dst, preserve=Preserve.archive()).files == 1
    os.chmod(src / "f", 0o600)

    def swap():
        os.unlink(dst / "f")
        os.mkdir(dst / "f", 0o755)

    stats = _copy_tree(src, dst, HookSink(_on_planned("f", swap)), preserve=Preserve.archive())
    assert (stats.failed, stats.attrs) == (1, 0)
    assert stat.S_IMODE(os.stat(dst / "f").st_mode) == 0o755
