"""Per-file trouble through the whole command: the run goes on, each problem is one line, and the exit
code says what happened (23 some files failed, 24 some vanished)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from cli_support import call_zcp

from zcp.errors import ExitCode


def _tree(root: Path) -> Path:
    src = root / "src"
    src.mkdir()
    for name in ("a", "b", "c"):
        (src / name).write_bytes(name.encode() * 100)
    return src


def test_unreadable_file_exits_23_and_the_rest_is_copied(tmp_path, monkeypatch, capsys):
    src, dst = _tree(tmp_path), tmp_path / "dst"
    real_open = os.open
    denied = str(src / "b")

    def open_denying_b(path, *args, **kwargs):
        if os.fspath(path) == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_denying_b)
    result = call_zcp(capsys, "-r", f"{src}/", dst)
    assert result.code == ExitCode.PARTIAL
    [line] = result.err_lines
    assert line.startswith("zcp: ") and denied in line and os.strerror(errno.EACCES) in line
    assert sorted(os.listdir(dst)) == ["a", "c"]


def test_file_vanishing_after_planning_exits_24_and_the_rest_is_copied(tmp_path, vanish_when_planned, capsys):
    src, dst = _tree(tmp_path), tmp_path / "dst"
    vanish_when_planned(src / "b")
    result = call_zcp(capsys, "-r", f"{src}/", dst)
    assert result.code == ExitCode.VANISHED
    [line] = result.err_lines
    assert line.startswith("zcp: ") and "b" in line and "vanished" in line, line
    assert sorted(os.listdir(dst)) == ["a", "c"]


def test_failure_outranks_vanishing(tmp_path, vanish_when_planned, capsys):
    """One file failed and one vanished: 23, like rsync."""
    src, dst = _tree(tmp_path), tmp_path / "dst"
    (dst / "c" / "full").mkdir(parents=True)  # a full folder where the source has a file: that file fails
    vanish_when_planned(src / "b")
    result = call_zcp(capsys, "-r", f"{src}/", dst)
    assert result.code == ExitCode.PARTIAL
    assert len(result.err_lines) == 2 and all(line.startswith("zcp: ") for line in result.err_lines)


def test_a_whole_run_step_failing_is_one_line_exit_11(tmp_path, monkeypatch, capsys):
    """An OSError no finer handler takes (here: making the missing folder target) is not a traceback."""
    (tmp_path / "f").write_bytes(b"x")

    def refused(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(os, "mkdir", refused)
    result = call_zcp(capsys, tmp_path / "f", f"{tmp_path}/out/")
    assert result.code == ExitCode.FILE_IO
    assert result.err.splitlines() == [f"zcp: {tmp_path}/out/: Permission denied"]
