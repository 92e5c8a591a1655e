"""Worker processes (-j): same result as one process, events replayed in order, a dead worker's
files reported as failures, small runs never fork."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from zcp.config import Config, Preserve
from zcp.exec import parallel
from zcp.exec.events import RecordingSink
from zcp.model import Op
from zcp.replicate import replicate

ARCHIVE = dict(recursive=True, preserve=Preserve.archive())


def make_tree(root: Path, folders: int = 6, files: int = 40) -> dict[str, bytes]:
    expected = {}
    for d in range(folders):
        for f in range(files):
            rel = f"d{d}/f{f:03d}"
            data = os.urandom(f * 37 % 5000)
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            expected[rel] = data
    return expected


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_two_workers_copy_what_one_process_copies(tmp_path):
    expected = make_tree(tmp_path / "src")
    sink = RecordingSink()
    stats = replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), Config(jobs=2, **ARCHIVE), sink)
    assert read_tree(tmp_path / "dst") == expected
    assert stats.files == len(expected) and stats.failed == 0
    finished = [e[1] for e in sink.events if e[0] == "finished" and e[2] is Op.COPY]
    assert sorted(finished) == sorted(expected)  # every file reported once
    for rel in expected:
        src, dst = os.stat(tmp_path / "src" / rel), os.stat(tmp_path / "dst" / rel)
        assert (src.st_mtime_ns, src.st_mode) == (dst.st_mtime_ns, dst.st_mode)


def test_events_of_a_batch_come_back_in_plan_order(tmp_path):
    make_tree(tmp_path / "src", folders=3, files=parallel.BATCH)
    sink = RecordingSink()
    replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), Config(jobs=2, **ARCHIVE), sink)
    files = [e[1] for e in sink.events if e[0] == "finished" and e[2] is Op.COPY]
    for d in range(3):
        mine = [rel for rel in files if rel.startswith(f"d{d}/")]
        assert mine == sorted(mine)


def test_a_small_run_does_not_fork(tmp_path, monkeypatch):
    make_tree(tmp_path / "src", folders=1, files=5)

    def refuse(self):
        raise AssertionError("forked workers for 5 files")

    monkeypatch.setattr(parallel.ParallelExecutor, "_start", refuse)
    stats = replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), Config(jobs=2, **ARCHIVE), RecordingSink())
    assert stats.files == 5


def test_a_dead_worker_fails_its_files_and_the_run_goes_on(tmp_path, monkeypatch):
    expected = make_tree(tmp_path / "src", folders=8, files=parallel.BATCH)
    real_worker = parallel._worker_main

    marker = tmp_path / "one-dies"

    def fragile(conn, config, is_root):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # the first worker to start dies...
            first = True
        except FileExistsError:
            first = False
        if first:  # ...in its first file, after its temp file was made
            from zcp.syscalls import loops

            def die(*args):
                os.kill(os.getpid(), signal.SIGKILL)

            monkeypatch.setattr(loops.os, "copy_file_range", die)
            monkeypatch.setattr(loops.os, "sendfile", die)
        real_worker(conn, config, is_root)

    monkeypatch.setattr(parallel, "_worker_main", fragile)
    sink = RecordingSink()
    stats = replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), Config(jobs=2, **ARCHIVE), sink)
    copied = read_tree(tmp_path / "dst")
    lost = [e for e in sink.events if e[0] == "failed" and "died" in e[2]]
    assert stats.files + stats.failed == len(expected)
    assert len(lost) == stats.failed
    assert all(copied[rel] == expected[rel] for rel in copied)
    assert not [p for p in (tmp_path / "dst").rglob(".*.zcp")]  # the parent cleaned up after it
    assert stats.failed > 0 and stats.files > 0 and stats.exit_code() == 23


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_second_run_copies_nothing(tmp_path, jobs):
    make_tree(tmp_path / "src")
    config = Config(jobs=jobs, **ARCHIVE)
    replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), config, RecordingSink())
    inodes = {p: p.stat().st_ino for p in (tmp_path / "dst").rglob("*")}
    stats = replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), config, RecordingSink())
    assert stats.files == 0 and stats.bytes == 0
    assert {p: p.stat().st_ino for p in (tmp_path / "dst").rglob("*")} == inodes
