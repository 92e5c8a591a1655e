"""Large trees: memory stays flat because the walk streams into the executor, and a no-op re-sync is cheap.

The 200,000-entry test runs in CI (30-50 s on two shared cores, most of it zcp creating 200,000
files); the streaming test shows the property behind it on a small tree, where it is fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zcp.config import Config, Preserve
from zcp.exec.events import NullSink
from zcp.exec.parallel import FIRST_TASK
from zcp.model import Action
from zcp.replicate import replicate

ENTRIES = 200_000
PER_FOLDER = 100
RSS_LIMIT_KIB = 200 * 1024

# Runs a command and prints, as JSON, its exit code, its output and the peak RSS (KiB) of it and all
# its descendants: the largest ru_maxrss among waited-for children, and zcp waits for its workers.
_MEASURED = ("import json, resource, subprocess, sys\n"
             "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(json.dumps([done.returncode, done.stdout, done.stderr,\n"
             "                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")


def build_flat_tree(root: Path, entries: int, per_folder: int = PER_FOLDER) -> int:
    """``entries`` entries (folders included) as empty files, ``per_folder`` to a folder; returns the count."""
    made = 0
    folder_index = 0
    while made < entries:
        folder = root / f"d{folder_index // per_folder:04d}" / f"e{folder_index % per_folder:02d}"
        made += 1 if folder.parent.exists() else 2
        folder.mkdir(parents=True)
        for n in range(min(per_folder - 1, entries - made)):
            os.close(os.open(folder / f"f{n:02d}", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            made += 1
        folder_index += 1
    return made


def measured_zcp(*args: str | os.PathLike) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr, peak RSS in KiB of zcp and its worker processes)."""
    done = subprocess.run([sys.executable, "-c", _MEASURED, sys.executable, "-m", "zcp", *map(os.fspath, args)],
                          capture_output=True, text=True, timeout=300, check=True)
    code, out, err, rss = json.loads(done.stdout)
    return code, out, err, rss


@pytest.mark.root
def test_200k_entries_copy_in_bounded_memory_and_resync_as_a_no_op(tmpfs_dir):
    src, dst = tmpfs_dir / "src", tmpfs_dir / "dst"
    assert build_flat_tree(src, ENTRIES) == ENTRIES

    start = time.monotonic()
    code, out, err, copy_rss = measured_zcp("-a", "-j", "2", f"{src}/", dst)
    copy_s = time.monotonic() - start
    assert (code, out, err) == (0, "", "")
    assert copy_rss < RSS_LIMIT_KIB, f"peak RSS {copy_rss} KiB copying {ENTRIES} entries"
    assert sum(len(dirs) + len(files) for _, dirs, files in os.walk(dst)) == ENTRIES

    start = time.monotonic()
    code, out, err, resync_rss = measured_zcp("-a", "-j", "2", "-i", f"{src}/", dst)
    resync_s = time.monotonic() - start
    assert (code, out, err) == (0, "", "")  # -i: nothing to itemize
    assert resync_rss < RSS_LIMIT_KIB
    print(f"{ENTRIES} entries: copy {copy_s:.1f} s, peak RSS {copy_rss // 1024} MiB; "
          f"no-op re-sync {resync_s:.1f} s, peak RSS {resync_rss // 1024} MiB")


class _FirstSight(NullSink):
    """How many files the destination held when the sink heard of the first entry; and the counts."""

    def __init__(self, dst: Path) -> None:
        self.dst = dst
        self.files_at_first_event: int | None = None
        self.planned_count = self.finished_count = 0

    def planned(self, action: Action) -> None:
        if self.files_at_first_event is None:
            self.files_at_first_event = sum(len(files) for _, _, files in os.walk(self.dst))
        self.planned_count += 1

    def finished(self, action: Action, method, nbytes: int) -> None:
        self.finished_count += 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_entries_are_reported_while_the_run_is_still_going(tmp_path, jobs):
    src, dst = tmp_path / "src", tmp_path / "dst"
    entries = build_flat_tree(src, 3_000)
    sink = _FirstSight(dst)
    stats = replicate([f"{src}/"], str(dst), Config(recursive=True, preserve=Preserve.archive(), jobs=jobs), sink)
    assert stats.exit_code() == 0
    assert sink.planned_count == sink.finished_count == entries + 1  # and the root
    # -j1 reports each entry before it is done; workers report a task's entries when it comes back
    assert sink.files_at_first_event <= (0 if jobs == 1 else 2 * FIRST_TASK)
