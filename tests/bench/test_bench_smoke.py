"""A seconds-long run of ``python -m bench --quick`` on tiny data, so the harness cannot rot unnoticed.

It checks that the tables come out and that every peer produced a checked result; it never looks at timings.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import need_tool

REPO = Path(__file__).resolve().parents[2]
# One workload per code path: single command, folder-making tar pipes, a seeded re-sync, pipes into a
# file, the sparse check, the xfs mount and the private sshd (when root), and the strace profiles.
WORKLOADS = ("file", "reflink", "tree", "resync-1pct", "pipe-file", "ssh-tree", "sparse", "efficiency")
NUMBER = re.compile(r"^\d+\.\d{3}$")


def markdown_rows(text: str, header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_quick_run_prints_checked_tables(tmp_path):
    for tool in ("rsync", "pv", "tar", "strace"):
        need_tool(tool)
    markdown = tmp_path / "bench.md"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--runs", "1", "--warmup", "0", "--dir", str(scratch),
         "--only", *WORKLOADS, "--markdown", str(markdown)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr

    for title in ("zcp against its peers", "CPU and throughput per zcp --method", "Syscalls per method"):
        assert title in done.stdout
    assert list(scratch.iterdir()) == [], "the scratch data was not cleaned up"

    rows = markdown_rows(markdown.read_text(), "| workload | tool |")
    tools = {row[1] for row in rows}
    assert {"cp", "dd bs=1M", "cp -a", "rsync -a", "tar \\| tar", "cat \\| cat", "cp --sparse=auto"} <= tools
    if os.geteuid() == 0:
        assert {"tar \\| ssh tar", "rsync -a -e ssh"} <= tools
    for workload, tool, median, *_ in rows:
        if tool:
            assert NUMBER.match(median), (tool, median)  # every tool ran and its output was checked
        else:
            assert workload in ("reflink", "ssh-tree") and median.startswith("n/a ("), median  # only without root

    methods = [row[0] for row in markdown_rows(markdown.read_text(), "| method | fs |")]
    assert {"copy_file_range", "sendfile", "splice", "rw"} <= set(methods)


def test_zero_copy_verdicts_say_more_or_less_cpu_as_measured(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from bench.measure import Outcome, Sample, Tool
    from bench.report import MethodResult, zero_copy_verdicts

    def result(label: str, cpu: float) -> MethodResult:
        return MethodResult(Outcome(Tool(label, ["true"]), [Sample(wall=1.0, cpu=cpu)]), "tmpfs")

    lines = zero_copy_verdicts([result("rw", 1.0), result("splice", 0.6), result("sendfile", 1.2)])
    assert lines[0].startswith("splice: 40% less CPU per byte than rw (meets")
    assert lines[1].startswith("sendfile: 20% more CPU per byte than rw (does not meet")
