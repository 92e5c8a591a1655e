"""Worker processes (-j): same result and events as one process, both workers used, small runs never
fork, a dead worker's folder reported as failed while the run goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


def make_deep_tree(root: Path) -> dict[str, bytes]:
    """Folders within folders, files before and after them: chunks end in the middle of folders."""
    expected = {}
    for top in range(3):
        for sub in range(4):
            for f in range(60):
                rel = f"t{top}/{'a' if f % 2 else 'z'}{f:02d}" if sub == 0 else f"t{top}/m{sub}/f{f:02d}"
                expected[rel] = os.urandom(f % 7)
    for rel, data in expected.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return expected


def test_events_are_replayed_in_the_order_of_one_process(tmp_path):
    expected = make_deep_tree(tmp_path / "src")
    assert len(expected) > 2 * parallel.FIRST_TASK
    orders = []
    for jobs in (1, 2):
        sink = RecordingSink()
        replicate([f"{tmp_path}/src/"], str(tmp_path / f"dst{jobs}"), Config(jobs=jobs, **ARCHIVE), sink)
        orders.append([e[1:3] for e in sink.events])
        assert read_tree(tmp_path / f"dst{jobs}") == expected
    assert orders[0] == orders[1]


@pytest.mark.parametrize("shape", ["deep", "one flat folder"])
def test_workers_share_the_tree_and_a_small_run_does_not_fork(tmp_path, monkeypatch, shape):
    if shape == "deep":
        make_deep_tree(tmp_path / "big")
    else:
        make_tree(tmp_path / "big", folders=1, files=4 * parallel.FIRST_TASK)
    make_tree(tmp_path / "small", folders=1, files=5)
    real_run = parallel._TaskRunner.run

    def run(self, folder, *args):
        (tmp_path / "pids").mkdir(exist_ok=True)
        (tmp_path / "pids" / str(os.getpid())).touch()
        return real_run(self, folder, *args)

    monkeypatch.setattr(parallel._TaskRunner, "run", run)
    stats = replicate([f"{tmp_path}/small/"], str(tmp_path / "dst-small"), Config(jobs=2, **ARCHIVE), RecordingSink())
    assert stats.files == 5
    assert [p.name for p in (tmp_path / "pids").iterdir()] == [str(os.getpid())]
    replicate([f"{tmp_path}/big/"], str(tmp_path / "dst-big"), Config(jobs=2, **ARCHIVE), RecordingSink())
    pids = {p.name for p in (tmp_path / "pids").iterdir()} - {str(os.getpid())}
    assert len(pids) == 2  # both workers took a share


def test_a_few_big_files_are_shared_by_the_workers(tmp_path, monkeypatch):
    """A copied MiB counts as work like an entry does: six files of 8 MiB fork the workers once the
    parent has done FIRST_TASK units, where six small files would never fork."""
    monkeypatch.setattr(parallel, "FIRST_TASK", 16)
    expected = {f"f{n}": os.urandom(8 << 20) for n in range(6)}
    for rel, data in expected.items():
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / rel).write_bytes(data)
    real_run = parallel._TaskRunner.run

    def run(self, folder, *args):
        result = real_run(self, folder, *args)
        result.events.append(("warned", f"pid {os.getpid()}"))  # the parent replays it
        return result

    monkeypatch.setattr(parallel._TaskRunner, "run", run)
    sink = RecordingSink()
    replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), Config(jobs=2, **ARCHIVE), sink)
    assert read_tree(tmp_path / "dst") == expected
    pids = {e[1] for e in sink.events if e[0] == "warned"} - {f"pid {os.getpid()}"}
    assert len(pids) == 2  # both workers copied some


def test_a_dead_worker_fails_its_folder_and_the_run_goes_on(tmp_path, monkeypatch):
    expected = make_deep_tree(tmp_path / "src")
    real_worker = parallel._worker_main
    marker = tmp_path / "one-dies"

    def fragile(conn, *args):
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
        real_worker(conn, *args)

    monkeypatch.setattr(parallel, "_worker_main", fragile)
    sink = RecordingSink()
    config = Config(jobs=2, **ARCHIVE)
    stats = replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), config, sink)
    copied = read_tree(tmp_path / "dst")
    (lost,) = [e for e in sink.events if e[0] == "failed"]
    assert "copy process died" in lost[2] and lost[1].startswith(str(tmp_path / "src"))
    assert stats.failed == 1 and stats.exit_code() == 23
    assert 0 < len(copied) < len(expected)  # the other worker went on with the rest
    assert all(copied[rel] == expected[rel] for rel in copied)
    assert not [p for p in (tmp_path / "dst").rglob(".*.zcp")]  # the parent cleaned up after it
    monkeypatch.undo()
    again = replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), config, RecordingSink())
    assert again.exit_code() == 0 and read_tree(tmp_path / "dst") == expected


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_second_run_copies_nothing(tmp_path, jobs):
    make_tree(tmp_path / "src")
    config = Config(jobs=jobs, **ARCHIVE)
    replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), config, RecordingSink())
    inodes = {p: p.stat().st_ino for p in (tmp_path / "dst").rglob("*")}
    stats = replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), config, RecordingSink())
    assert stats.files == 0 and stats.bytes == 0
    assert {p: p.stat().st_ino for p in (tmp_path / "dst").rglob("*")} == inodes


def _start_big_copy(tmp_path: Path, jobs: str) -> tuple[subprocess.Popen, Path, Path]:
    """A running -a copy of 4,000 files of 16 KiB, half of them replacing older ones, once 400 are
    written. It runs in a session of its own, so that its workers can be looked for."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    for d in range(40):
        for f in range(100):
            path = src / f"d{d:02d}" / f"f{f:02d}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes([d, f]) * (8 << 10))
            if f % 2:  # replaced files are written under temp names beside them
                (dst / path.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
                (dst / path.relative_to(src)).write_bytes(b"old")
    run = subprocess.Popen([sys.executable, "-m", "zcp", "-a", "-j", jobs, f"{src}/", str(dst)],
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while sum(1 for p in dst.rglob("f*") if p.stat().st_size > 3) < 400 and run.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return run, src, dst


def _left_in_session(session: int) -> list[str]:
    return subprocess.run(["pgrep", "-s", str(session)], capture_output=True, text=True).stdout.split()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sigterm_stops_the_workers_and_leaves_no_temp_file(tmp_path, jobs):
    """Mid-run, SIGTERM: exit 20, every worker gone, no temp file, every file there is whole."""
    run, src, dst = _start_big_copy(tmp_path, jobs)
    os.kill(run.pid, signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 20, err
    assert "interrupted" in err
    assert _left_in_session(run.pid) == []  # the workers are gone too
    assert not [p for p in dst.rglob(".*.zcp")]
    for path in dst.rglob("f*"):
        content = path.read_bytes()
        assert content in (b"old", (src / path.relative_to(dst)).read_bytes())


def test_workers_end_when_the_parent_is_killed(tmp_path):
    """SIGKILL leaves the parent no chance to stop its workers: they notice and end on their own."""
    run, _, dst = _start_big_copy(tmp_path, "2")
    os.kill(run.pid, signal.SIGKILL)
    run.communicate(timeout=60)  # its stderr closes only when the workers, which share it, are gone
    deadline = time.monotonic() + 30
    while _left_in_session(run.pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
