"""What a run prints: per-file errors on stderr, -v listing and summary, -n plans; /proc files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import call_zcp, run_zcp, snapshot

from zcp.cli.app import main
from zcp.errors import ExitCode


def test_each_in_process_run_prints_to_the_current_stderr(tmp_path, monkeypatch):
    """main() may run many times in one process (tests, embedding): every run's messages must reach
    the sys.stderr of that moment, not a stream captured when the module was first imported."""
    (tmp_path / "a").write_bytes(b"a")
    for n in range(2):
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        with pytest.raises(SystemExit):
            main(["-v", str(tmp_path / "a"), str(tmp_path / f"copy{n}")])
        assert "1 file, " in err.getvalue()


def test_verbose_lists_each_file_with_its_method_and_a_summary(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "one").write_bytes(b"1" * 100)
    (tmp_path / "src" / "two").write_bytes(b"2" * 200)
    result = run_zcp("-v", "--method=rw", "-r", tmp_path / "src", tmp_path / "dst")
    assert result.code == 0 and result.out == ""
    listed = [line for line in result.err_lines if line.startswith("copy")]
    assert len(listed) == 2 and all(line.endswith("[rw]") for line in listed), result.err
    assert any("2 files" in line and "300 B" in line for line in result.err_lines), result.err
    assert any(line.startswith("bytes by method: rw") for line in result.err_lines), result.err


def _plan_tree(root: Path) -> list[str]:
    """A source tree; returns the relative names of its entries."""
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "sub" / "deep").write_bytes(b"deep")
    (root / "src" / "a").write_bytes(b"a" * 10)
    (root / "src" / "b").write_bytes(b"b" * 20)
    os.symlink("a", root / "src" / "link")
    return ["a", "b", "link", "sub", "sub/deep"]


def _plan_lines(out: str) -> dict[str, str]:
    """-n output: the entry each line names -> the line (names contain no spaces here)."""
    lines = out.splitlines()
    by_name = {line.split()[2]: line for line in lines}
    assert len(by_name) == len(lines), f"an entry is listed twice: {out!r}"
    return by_name


def test_dry_run_prints_one_line_per_entry_and_writes_nothing(tmp_path, capsys):
    names = _plan_tree(tmp_path)
    before = snapshot(tmp_path)
    result = call_zcp(capsys, "-n", "-a", f"{tmp_path}/src/", tmp_path / "dst")
    assert result.code == 0, result
    assert snapshot(tmp_path) == before
    lines = _plan_lines(result.out)
    assert set(lines) == {".", *names}  # the root: named as rsync names it
    for name in ("a", "b", "sub/deep"):
        op, methods = lines[name].split()[:2]
        assert op == "copy"
        assert "copy_file_range" in methods.split(","), lines[name]
        assert lines[name].endswith(")") and "(" in lines[name], "the reason is missing"
    assert lines["link"].split()[0] == "symlink" and "-> a" in lines["link"]
    assert lines["sub"].split()[0] == "mkdir"


def test_dry_run_against_a_synced_copy_shows_skips_and_the_one_update(tmp_path, capsys):
    _plan_tree(tmp_path)
    assert call_zcp(capsys, "-a", f"{tmp_path}/src/", tmp_path / "dst").code == 0
    (tmp_path / "src" / "b").write_bytes(b"changed, and longer")
    before = snapshot(tmp_path)
    result = call_zcp(capsys, "-n", "-a", f"{tmp_path}/src/", tmp_path / "dst")
    assert result.code == 0
    assert snapshot(tmp_path) == before
    lines = _plan_lines(result.out)
    assert lines["b"].split()[0] == "update"
    assert lines["a"].split()[0] == "skip" and lines["a"].endswith(")")
    assert lines["link"].split()[0] == "skip"


def test_dry_run_names_a_forced_method_and_why(tmp_path, capsys):
    (tmp_path / "f").write_bytes(b"f")
    result = call_zcp(capsys, "-n", "--method=splice", tmp_path / "f", tmp_path / "g")
    assert result.code == 0 and not (tmp_path / "g").exists()
    [line] = result.out.splitlines()
    assert line.split()[:2] == ["copy", "splice"] and "--method=splice" in line


def test_proc_file_of_size_zero_is_copied_in_full(tmp_path):
    result = run_zcp("/proc/self/status", tmp_path / "status")
    assert (result.code, result.err) == (0, "")
    text = (tmp_path / "status").read_text()
    assert text.startswith("Name:") and "\nPid:" in text


def test_proc_file_matches_what_a_reader_sees(tmp_path, capsys):
    assert call_zcp(capsys, "/proc/version", tmp_path / "version").code == 0
    assert (tmp_path / "version").read_bytes() == Path("/proc/version").read_bytes()


ODD_NAMES = ["new\nline", "carriage\rreturn", "esc\x1b[2Jape", os.fsdecode(b"\xff\xfe")]
OPS = ("mkdir", "copy")


@pytest.mark.parametrize("flag", ["-n", "-v"])
def test_odd_names_are_listed_one_line_each_without_control_characters(tmp_path, flag):
    """A name holding a newline, a carriage return or an escape sequence is one line of the listing, and
    cannot move the cursor or forge lines on a terminal: it is printed escaped, as rsync and ls do."""
    (tmp_path / "src").mkdir()
    for name in ODD_NAMES:
        (tmp_path / "src" / name).write_bytes(b"x")
    done = subprocess.run([sys.executable, "-m", "zcp", flag, "-r", f"{tmp_path}/src/", str(tmp_path / "dst")],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done
    lines = (done.stdout if flag == "-n" else done.stderr).split(b"\n")[:-1]
    listed = [line for line in lines if line.startswith(tuple(op.encode() for op in OPS))]
    assert len(listed) == 1 + len(ODD_NAMES), lines
    if flag == "-n":
        assert listed == lines, "every line of a plan names an action"
    assert not [line for line in lines if any(byte < 0x20 and byte != 0x09 for byte in line)], lines


@pytest.mark.parametrize("args", [["-n"], ["-i"], ["-n", "-i"]], ids=["plan", "itemize", "plan-itemize"])
def test_a_reader_of_the_listing_that_goes_away_ends_the_run_quietly_with_141(tmp_path, args):
    """`zcp -ai src/ dst | head -1`: as a process killed by SIGPIPE, not a usage error (exit 1)."""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(3000):  # more lines than a pipe holds
        (src / f"file-{n:05d}-{'x' * 40}").write_bytes(b"")
    child = subprocess.Popen([sys.executable, "-m", "zcp", "-a", "-j1", *args, f"{src}/", tmp_path / "dst"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.readline()
    child.stdout.close()
    assert child.wait(timeout=60) == ExitCode.BROKEN_PIPE
    assert child.stderr.read() == b""
