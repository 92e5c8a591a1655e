"""copy_file_range in two halves on two threads, on real files: exact bytes, the same failure rules
as one thread, and never a helper still writing after the call returns."""

from __future__ import annotations

import errno
import os
import threading

import pytest
from syscalls_support import fds, random_bytes  # noqa: F401 (fixtures)

from zcp.errors import SourceChanged, Unsupported
from zcp.syscalls import loops, split

pytestmark = pytest.mark.usefixtures("no_hang")

MiB = 1 << 20
spinning = split._spinning.__wrapped__  # the sysfs reading itself, uncached
SIZE = 9 * MiB + 4321  # split at 1 MiB pieces: a first MiB, then two halves, the helper's in pieces


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    monkeypatch.setattr(split, "SPLIT_MIN", 4 * MiB)
    monkeypatch.setattr(split, "HELPER_CALL", MiB)
    monkeypatch.setattr(split, "_two_cpus", lambda: True)  # split even on one CPU, to test it
    monkeypatch.setattr(split, "_spinning", lambda dev: False)  # a VM's disk may say it spins


class Calls:
    """Wraps os.copy_file_range: which thread copied which range; fails where asked."""

    def __init__(self, monkeypatch, fail_in: str | None = None, err: int = errno.EIO, after: int = 0):
        self.ranges: list[tuple[str, int, int]] = []
        self._real, self._fail_in, self._err, self._after = os.copy_file_range, fail_in, err, after
        self._lock = threading.Lock()
        monkeypatch.setattr(os, "copy_file_range", self)

    def __call__(self, src, dst, count, src_off, dst_off):
        thread = threading.current_thread().name
        with self._lock:
            mine = [r for r in self.ranges if r[0] == thread]
            self.ranges.append((thread, src_off, count))
        if thread == self._fail_in and len(mine) >= self._after:
            raise OSError(self._err, os.strerror(self._err))
        return self._real(src, dst, count, src_off, dst_off)

    def threads(self) -> set[str]:
        return {r[0] for r in self.ranges}


def helpers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "zcp-copy-half"]


@pytest.mark.parametrize("src_off,dst_off", [(0, 0), (37, 11)])
def test_two_threads_copy_the_exact_bytes(fds, tmp_path, monkeypatch, src_off, dst_off):
    data = random_bytes(SIZE + src_off)
    src, dst = fds.file("src", data, os.O_RDONLY), fds.file("dst")
    calls, moved = Calls(monkeypatch), []
    assert split.copy_file_range_split(src, dst, SIZE, src_off, dst_off, moved.append) == SIZE
    assert (tmp_path / "dst").read_bytes() == b"\0" * dst_off + data[src_off:]
    assert calls.threads() == {"MainThread", "zcp-copy-half"}
    assert sum(moved) == SIZE
    assert not helpers_alive()


def test_small_ranges_stream_and_spinning_disks_stay_on_one_thread(fds, tmp_path, monkeypatch):
    data = random_bytes(SIZE)
    src = fds.file("src", data, os.O_RDONLY)
    calls = Calls(monkeypatch)
    split.copy_file_range_split(src, fds.file("small"), 3 * MiB, 0, 0)
    split.copy_file_range_split(src, fds.file("stream"), SIZE, None, None)
    monkeypatch.setattr(split, "_spinning", lambda dev: True)
    split.copy_file_range_split(src, fds.file("spinning"), SIZE, 0, 0)
    assert calls.threads() == {"MainThread"}
    assert (tmp_path / "spinning").read_bytes() == data


def test_a_source_shorter_than_its_size_is_a_changed_source(fds, monkeypatch):
    src, dst = fds.file("src", random_bytes(SIZE - 2 * MiB), os.O_RDONLY), fds.file("dst")
    with pytest.raises(SourceChanged, match="ended early"):
        split.copy_file_range_split(src, dst, SIZE, 0, 0)
    assert not helpers_alive()


def test_unsupported_in_the_helper_is_a_real_error_once_the_first_mib_is_written(fds, monkeypatch):
    src, dst = fds.file("src", random_bytes(SIZE), os.O_RDONLY), fds.file("dst")
    Calls(monkeypatch, fail_in="zcp-copy-half", err=errno.EXDEV)
    with pytest.raises(OSError) as raised:
        split.copy_file_range_split(src, dst, SIZE, 0, 0)
    assert not isinstance(raised.value, Unsupported) and raised.value.errno == errno.EXDEV
    assert not helpers_alive()


def test_unsupported_at_the_start_leaves_the_destination_untouched(fds, monkeypatch):
    src, dst = fds.file("src", random_bytes(SIZE), os.O_RDONLY), fds.file("dst")
    Calls(monkeypatch, fail_in="MainThread", err=errno.EXDEV)
    with pytest.raises(Unsupported):
        split.copy_file_range_split(src, dst, SIZE, 0, 0)
    assert os.fstat(dst).st_size == 0 and not helpers_alive()


@pytest.mark.parametrize("failure", ["error", "interrupt"])
def test_the_helper_has_stopped_before_a_failed_call_returns(fds, monkeypatch, failure):
    """Once the call returns the caller closes the fds, and a closed fd number is soon another
    file's: the helper must be gone by then, whatever ended the caller's half."""
    src, dst = fds.file("src", random_bytes(SIZE), os.O_RDONLY), fds.file("dst")
    calls = Calls(monkeypatch, fail_in="MainThread" if failure == "error" else None, after=1)

    def interrupt(moved: int) -> None:
        if moved != MiB:  # the first MiB went through: the helper is running now
            raise KeyboardInterrupt

    expected = OSError if failure == "error" else KeyboardInterrupt
    with pytest.raises(expected):
        split.copy_file_range_split(src, dst, SIZE, 0, 0, interrupt if failure == "interrupt" else None)
    assert not helpers_alive()
    assert len([r for r in calls.ranges if r[0] == "MainThread"]) == 2  # the first MiB, its half


def test_spinning_is_what_sysfs_says_of_the_device_or_of_the_disk_of_a_partition(tmp_path, monkeypatch):
    for device, disk, rotational in (("8:0", None, "1"), ("8:1", "8:0", None), ("259:0", None, "0")):
        folder = tmp_path / device
        if disk:  # a partition: sysfs has it beneath its disk, and queue/ only on the disk
            folder = tmp_path / disk / "part"
            folder.mkdir(parents=True)
            (tmp_path / device).symlink_to(folder)
        else:
            (folder / "queue").mkdir(parents=True)
            (folder / "queue" / "rotational").write_text(f"{rotational}\n")
    monkeypatch.setattr(split, "SYSFS_DEVICES", str(tmp_path))
    assert spinning(os.makedev(8, 0)) and spinning(os.makedev(8, 1))
    assert not spinning(os.makedev(259, 0))
    assert not spinning(os.makedev(0, 42))  # no block device at all: tmpfs, NFS, overlay


def test_progress_hears_of_both_halves_while_the_copy_runs(fds, monkeypatch):
    """The main thread's calls are cut to progress size; as each returns, it reports the helper's
    bytes too, so the total moves on before the end."""
    monkeypatch.setattr(loops, "PROGRESS_CALL", MiB)
    src, dst = fds.file("src", random_bytes(SIZE), os.O_RDONLY), fds.file("dst")
    moved: list[int] = []
    assert split.copy_file_range_split(src, dst, SIZE, 0, 0, moved.append) == SIZE
    assert sum(moved) == SIZE and min(moved) >= 0
    assert len(moved) >= 5  # the first MiB, four MiB of the main half, what the helper has left
