"""--verify against faults: a destination that reads back wrong is copied once more and then fails the
file (exit 23, old destination untouched, no temp file); a source that moves during the copy is reported
as changed, not as corruption; holes that read back as garbage are caught."""

from __future__ import annotations

import errno
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from exec_support import HookSink, temp_files  # noqa: F401 (fixture)

import zcp.exec.executor as executor_module
from zcp import hashing
from zcp.cli.app import main
from zcp.config import Config
from zcp.errors import ExitCode
from zcp.exec import verify
from zcp.replicate import replicate


MIB = 1 << 20
GIB = 1 << 30
SIZES = {"one-byte": 1, "mib7": MIB + 7, "threaded": 20 * MIB}  # 20 MiB: the source is hashed in a thread
SPARSE_SIZE = 1 << 40
SPARSE_DATA = [(MIB, b"\x01" * 4096), (SPARSE_SIZE // 2, b"\x02" * 4096)]
HOLE_OFFSET = GIB  # a hole in the sparse source
OLD_CONTENT = b"the old destination"


def _write(path: Path, size: int, seed: int = 0) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def _make_sparse(path: Path) -> None:
    with open(path, "wb") as f:
        for offset, data in SPARSE_DATA:
            f.seek(offset)
            f.write(data)
        f.truncate(SPARSE_SIZE)


def _flip_byte(fd: int, offset: int) -> None:
    [byte] = os.pread(fd, 1, offset)
    os.pwrite(fd, bytes([byte ^ 0xFF]), offset)


def _garbage_in_hole(fd: int) -> None:
    os.pwrite(fd, b"garbage", HOLE_OFFSET)


def _flip_sparse_data(fd: int) -> None:
    _flip_byte(fd, SPARSE_DATA[1][0] + 100)


class ReadBackTamperer:
    """Wraps a read-back function: ``tamper(dst_fd)`` runs before the first ``times`` read-backs (all if None)."""

    def __init__(self, real: Callable, tamper: Callable[[int], None], times: int | None):
        self.real = real
        self.tamper = tamper
        self.times = times
        self.calls = 0

    def __call__(self, fd: int, *args):
        self.calls += 1
        if self.times is None or self.calls <= self.times:
            self.tamper(fd)
        return self.real(fd, *args)


def _tamper_plain(monkeypatch, size: int, times: int | None) -> ReadBackTamperer:
    """Flip the middle byte of a whole-file (non-sparse) destination before it is read back."""
    tamperer = ReadBackTamperer(hashing.read_back_digest, lambda fd: _flip_byte(fd, size // 2), times)
    monkeypatch.setattr(hashing, "read_back_digest", tamperer)
    return tamperer


def _tamper_sparse(monkeypatch, tamper: Callable[[int], None], times: int | None) -> ReadBackTamperer:
    # The executor imports read_back from verify when --verify asks for it: replaced there.
    tamperer = ReadBackTamperer(verify.read_back, tamper, times)
    monkeypatch.setattr(verify, "read_back", tamperer)
    return tamperer


# a loop that never ends fails, not stalls
pytestmark = pytest.mark.usefixtures("no_hang")


@pytest.fixture
def folders(tmpfs_dir) -> tuple[Path, Path]:
    src, dst = tmpfs_dir / "src", tmpfs_dir / "dst"
    src.mkdir()
    dst.mkdir()
    return src, dst


def _verify_copy(src: Path, dst: Path, sink: HookSink | None = None):
    return replicate([str(src)], str(dst), Config(verify=True), sink or HookSink())


def _old_destination(path: Path) -> os.stat_result:
    path.write_bytes(OLD_CONTENT)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    return os.stat(path)


def _assert_untouched(path: Path, old: os.stat_result) -> None:
    assert path.read_bytes() == OLD_CONTENT
    now = os.stat(path)
    assert (now.st_ino, now.st_mtime_ns) == (old.st_ino, old.st_mtime_ns)


# --- a destination that reads back wrong ---------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("replacing", [False, True], ids=["new", "replacing"])
def test_destination_corrupt_on_every_read_back_fails_the_file(monkeypatch, folders, size, replacing):
    src, dst = folders
    _write(src / "f", size)
    old = _old_destination(dst / "f") if replacing else None
    tamperer = _tamper_plain(monkeypatch, size, times=None)
    sink = HookSink()
    stats = _verify_copy(src / "f", dst / "f", sink)
    assert (stats.failed, stats.files, stats.verified, stats.exit_code()) == (1, 0, 0, ExitCode.PARTIAL)
    assert tamperer.calls == 2  # copied once more before giving up
    [(where, message)] = sink.failures()
    assert str(dst / "f") in message and "differs" in message, (where, message)
    assert temp_files(dst) == []
    if old is None:
        assert os.listdir(dst) == []
    else:
        _assert_untouched(dst / "f", old)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_destination_corrupt_once_is_copied_again(monkeypatch, folders, size):
    src, dst = folders
    data = _write(src / "f", size)
    tamperer = _tamper_plain(monkeypatch, size, times=1)
    sink = HookSink()
    stats = _verify_copy(src / "f", dst / "f", sink)
    assert (stats.failed, stats.files, stats.verified, stats.exit_code()) == (0, 1, 1, ExitCode.OK), sink.events
    assert tamperer.calls == 2
    warnings = [e[1] for e in sink.events if e[0] == "warned"]
    assert len(warnings) == 1 and "read-back differs" in warnings[0] and str(dst / "f") in warnings[0]
    assert (dst / "f").read_bytes() == data
    assert temp_files(dst) == []


def test_cli_exits_23_naming_the_corrupt_file(monkeypatch, capsys, folders):
    src, dst = folders
    _write(src / "good", 1000, seed=1)
    bad_size = len(_write(src / "bad", 3000, seed=2))
    real = hashing.read_back_digest

    def corrupt_bad(fd: int, size: int, progress=None) -> bytes:
        if size == bad_size:  # the destination may be an unnamed (O_TMPFILE) inode: tell it by size
            _flip_byte(fd, 0)
        return real(fd, size, progress)

    monkeypatch.setattr(hashing, "read_back_digest", corrupt_bad)
    with pytest.raises(SystemExit) as exited:
        main(["-r", "--verify", "-j", "1", f"{src}/", f"{dst}/"])
    err = capsys.readouterr().err
    assert exited.value.code == ExitCode.PARTIAL
    errors = [line for line in err.splitlines() if "warning" not in line]
    assert len(errors) == 1 and str(dst / "bad") in errors[0], err
    assert sorted(os.listdir(dst)) == ["good"]
    assert (dst / "good").read_bytes() == (src / "good").read_bytes()


# --- sparse files: ranges over the source's data, zeros elsewhere --------------------------------------


@pytest.mark.parametrize("tamper", [_garbage_in_hole, _flip_sparse_data], ids=["garbage-in-hole", "flipped-data"])
def test_sparse_destination_corrupt_on_every_read_back_fails(monkeypatch, folders, tamper):
    src, dst = folders
    _make_sparse(src / "sparse")
    tamperer = _tamper_sparse(monkeypatch, tamper, times=None)
    sink = HookSink()
    stats = _verify_copy(src / "sparse", dst / "sparse", sink)
    assert (stats.failed, stats.verified, stats.exit_code()) == (1, 0, ExitCode.PARTIAL), sink.events
    assert tamperer.calls == 2
    [(_, message)] = sink.failures()
    assert str(dst / "sparse") in message
    assert os.listdir(dst) == []


def test_sparse_destination_with_garbage_once_is_copied_again(monkeypatch, folders):
    src, dst = folders
    _make_sparse(src / "sparse")
    tamperer = _tamper_sparse(monkeypatch, _garbage_in_hole, times=1)
    sink = HookSink()
    stats = _verify_copy(src / "sparse", dst / "sparse", sink)
    assert (stats.failed, stats.files, stats.verified) == (0, 1, 1), sink.events
    assert tamperer.calls == 2
    with open(dst / "sparse", "rb") as f:
        assert os.pread(f.fileno(), 4096, HOLE_OFFSET) == bytes(4096)
        for offset, data in SPARSE_DATA:
            assert os.pread(f.fileno(), len(data), offset) == data
    assert os.stat(dst / "sparse").st_blocks <= os.stat(src / "sparse").st_blocks


def test_sparse_zero_check_rejects_data_outside_the_source_ranges(tmp_path):
    """verify.read_back on its own: the same bytes in the ranges, but one extra byte in a hole."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    _make_sparse(src)
    _make_sparse(dst)
    with open(src, "rb") as s, open(dst, "r+b") as d:
        ranges = verify.source_ranges(s.fileno(), SPARSE_SIZE, sparse=True)
        expected = verify.digest(s.fileno(), SPARSE_SIZE, ranges)
        assert verify.read_back(d.fileno(), SPARSE_SIZE, ranges) == expected
        os.pwrite(d.fileno(), b"\x01", HOLE_OFFSET + 7)
        assert verify.read_back(d.fileno(), SPARSE_SIZE, ranges) != expected
        os.pwrite(d.fileno(), b"\x00", HOLE_OFFSET + 7)  # allocated zeros are as good as a hole
        assert verify.read_back(d.fileno(), SPARSE_SIZE, ranges) == expected


# --- a source that moves during the copy ------------------------------------------------------------------


def _touch(path: Path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _rewrite_in_place(path: Path) -> None:
    with open(path, "r+b") as f:
        _flip_byte(f.fileno(), 0)


def _append(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b"more")


def _change_source_during_copy(monkeypatch, change: Callable[[Path], None], path: Path) -> None:
    """The source changes after the executor opened it and started its digest, before the bytes move."""
    real = executor_module.copy_bytes

    def copy_bytes(*args, **kwargs):
        change(path)
        return real(*args, **kwargs)

    monkeypatch.setattr(executor_module, "copy_bytes", copy_bytes)


CHANGES = {"touched": _touch, "rewritten": _rewrite_in_place, "appended": _append}


# A small source is hashed after the copy and sees every change. The digest thread of a large one races
# the change: it may see it (growth, a short read) or not (then fstat does); either way
# the report must be the same.
@pytest.mark.parametrize("size", [1000, 20 * MIB], ids=["small", "threaded"])
@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_source_changed_during_the_copy_is_not_called_corruption(monkeypatch, folders, change, size):
    src, dst = folders
    _write(src / "f", size)
    old = _old_destination(dst / "f")
    _change_source_during_copy(monkeypatch, change, src / "f")
    sink = HookSink()
    stats = _verify_copy(src / "f", dst / "f", sink)
    assert (stats.failed, stats.files, stats.exit_code()) == (1, 0, ExitCode.PARTIAL), sink.events
    [(where, message)] = sink.failures()
    assert "changed during the copy" in message and "differs" not in message, message
    assert where == str(src / "f") or str(src / "f") in message
    assert not [e for e in sink.events if e[0] == "warned"]  # not retried as a bad read-back
    assert temp_files(dst) == []
    _assert_untouched(dst / "f", old)


def test_source_rewritten_by_another_thread_during_the_copy(monkeypatch, folders):
    """A writer running beside the copy (not called from it): the run reports the source as changed."""
    src, dst = folders
    _write(src / "f", 20 * MIB)
    real = executor_module.copy_bytes
    writer_done = threading.Event()

    def copy_bytes(*args, **kwargs):
        def rewrite() -> None:
            _rewrite_in_place(src / "f")
            writer_done.set()

        threading.Thread(target=rewrite).start()
        result = real(*args, **kwargs)
        assert writer_done.wait(10)  # the change is in before the copy is judged
        return result

    monkeypatch.setattr(executor_module, "copy_bytes", copy_bytes)
    sink = HookSink()
    stats = _verify_copy(src / "f", dst / "f", sink)
    assert (stats.failed, stats.files) == (1, 0), sink.events
    [(_, message)] = sink.failures()
    assert "changed during the copy" in message, message
    assert os.listdir(dst) == []


def test_digest_thread_does_not_outlive_the_source_fd(monkeypatch, folders):
    """When the copy of a large file fails, the source digest thread must be done with the source fd
    before the executor closes it (or a reused fd number would be hashed)."""
    src, dst = folders
    _write(src / "f", 20 * MIB)
    source_inode = os.stat(src / "f").st_ino
    copy_failed, digest_done = threading.Event(), threading.Event()
    seen: list[object] = []
    real_digest = verify.digest

    def slow_digest(fd: int, size: int, ranges):
        copy_failed.wait(10)
        threading.Event().wait(0.2)  # the time a busy hash takes
        try:
            seen.append(os.fstat(fd).st_ino)
            return real_digest(fd, size, ranges)
        except OSError as exc:
            seen.append(errno.errorcode.get(exc.errno, exc.errno))
            raise
        finally:
            digest_done.set()

    def failing_copy(*args, **kwargs):
        copy_failed.set()
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(verify, "digest", slow_digest)
    monkeypatch.setattr(executor_module, "copy_bytes", failing_copy)
    stats = _verify_copy(src / "f", dst / "f")
    assert digest_done.wait(10)
    assert stats.failed == 1
    assert seen == [source_inode], f"the digest thread read fd state {seen} after the copy gave up"
