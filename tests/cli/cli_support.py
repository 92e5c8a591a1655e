"""Helpers for the CLI tests: run zcp as a real process or in-process, and see what a run wrote.

Imported by name from the test modules (a conftest.py here would shadow tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from zcp.cli.app import main

TEMP_SUFFIX = ".zcp"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def run_zcp(*args: str | os.PathLike, cwd: Path | None = None, timeout: float = 60) -> Result:
    """zcp as a user runs it: a child process, text output (undecodable bytes kept as surrogates)."""
    done = subprocess.run([sys.executable, "-m", "zcp", *map(os.fspath, args)], cwd=cwd, capture_output=True,
                          text=True, errors="surrogateescape", timeout=timeout, stdin=subprocess.DEVNULL)
    return Result(done.returncode, done.stdout, done.stderr)


def call_zcp(capsys: pytest.CaptureFixture[str], *args: str | os.PathLike) -> Result:
    """zcp in this process (no interpreter start-up): its exit code and what it printed."""
    with pytest.raises(SystemExit) as exited:
        main([os.fspath(a) for a in args])
    captured = capsys.readouterr()
    return Result(int(exited.value.code or 0), captured.out, captured.err)


def snapshot(root: Path) -> dict[str, tuple[int, int, int, int, int]]:
    """Every entry below ``root`` with what a write would change (type/mode, size, mtime, ctime, inode)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            found[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return found


def temp_files(root: Path) -> list[str]:
    """zcp's atomic-write temp files (``.name.<token>.zcp``) left anywhere below ``root``."""
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
            if n.startswith(".") and n.endswith(TEMP_SUFFIX)]


def assert_one_error_line(result: Result) -> str:
    """The run failed with exactly one line on stderr, starting ``zcp: ``; returns that line."""
    assert len(result.err_lines) == 1, f"expected one line on stderr, got {result.err!r}"
    line = result.err_lines[0]
    assert line.startswith("zcp: "), line
    return line
