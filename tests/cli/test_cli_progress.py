"""The progress display: drawn on a terminal's stderr (bytes, files, current file and method) and
followed by the summary; absent when stderr is not a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

ZCP = [sys.executable, "-m", "zcp"]


def _tree(root):
    (root / "sub").mkdir(parents=True)
    (root / "big.bin").write_bytes(os.urandom(24 << 20))  # large enough to report progress mid-file
    for i in range(30):
        (root / "sub" / f"f{i}").write_bytes(os.urandom(1000 + i))


def _drain(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO once every writer closed the terminal
            return
        if not chunk:
            return
        into += chunk


def test_a_terminal_gets_a_progress_display_and_a_summary(tmp_path):
    _tree(tmp_path / "src")
    primary, terminal = os.openpty()
    drawn = bytearray()
    pump = threading.Thread(target=_drain, args=(primary, drawn))
    pump.start()
    try:
        done = subprocess.run([*ZCP, "-a", "-j", "1", "src/", "dst/"], cwd=tmp_path, stderr=terminal,
                              stdout=subprocess.PIPE, timeout=60)
    finally:
        os.close(terminal)
        pump.join(timeout=10)
        os.close(primary)
    text = drawn.decode(errors="replace")
    assert done.returncode == 0, text
    assert "copying" in text and "bytes" in text  # the display was drawn (its content: below)
    assert "31 files, 24." in text and "bytes by method: copy_file_range" in text  # the summary
    assert "Traceback" not in text
    assert done.stdout == b""  # stdout is for data only


def test_no_terminal_no_display(tmp_path):
    _tree(tmp_path / "src")
    done = subprocess.run([*ZCP, "-a", "src/", "dst/"], cwd=tmp_path, capture_output=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_the_display_shows_totals_the_current_file_and_its_method():
    import io

    from rich.console import Console

    from zcp.cli.progress import ProgressSink
    from zcp.config import Method
    from zcp.model import Action, Entry, Kind, Op

    def copy_of(rel: str, size: int) -> Action:
        entry = Entry(f"/src/{rel}", Kind.FILE, 0o644, size, 0, 0, 0, 0, 1, 1, 1)
        return Action(Op.COPY, rel, f"/dst/{rel}", entry, methods=(Method.COPY_FILE_RANGE,))

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    sink = ProgressSink(console, verbose=0, quiet=False)
    first, second = copy_of("a.bin", 3 << 20), copy_of("dir/b.bin", 1 << 20)
    sink.planned(first)
    sink.planned(second)
    sink.started(first, Method.COPY_FILE_RANGE)
    sink.advanced(1 << 20)
    sink.sync()  # counts reach rich at most every PUSH_EVERY seconds
    console.print(sink.progress)  # render once, as the live display would
    drawn = out.getvalue()
    assert "0/2 files" in drawn and "a.bin" in drawn and "copy_file_range" in drawn
    assert "1.0/4.0 MiB" in drawn
    sink.finished(first, Method.COPY_FILE_RANGE, 3 << 20)
    sink.sync()
    task = sink.progress.tasks[0]
    assert (task.completed, task.total) == (3 << 20, 4 << 20)


@pytest.mark.parametrize("jobs", [1, 2])
def test_workers_send_their_counts_and_the_bars_reach_the_totals(tmp_path, jobs):
    """With no -i/-v, workers send tallies instead of entries, and a re-sync's up-to-date files come
    as counts instead of actions; the bars still end full and the summary counts every file."""
    import io

    from rich.console import Console

    from zcp.cli.progress import ProgressSink
    from zcp.config import Config, Preserve
    from zcp.exec.events import Interest
    from zcp.exec.parallel import FIRST_TASK
    from zcp.replicate import replicate

    sizes = {}
    for n in range(3 * FIRST_TASK):
        path = tmp_path / "src" / f"d{n // 40}" / f"f{n}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"z" * (n % 5000))
        sizes[path] = n % 5000
    entries = len(sizes) + len({p.parent for p in sizes}) + 1  # files, folders, the root
    config = Config(recursive=True, preserve=Preserve.archive(), jobs=jobs)
    for run in ("copy", "re-sync"):
        sink = ProgressSink(Console(file=io.StringIO(), force_terminal=True), verbose=0, quiet=False)
        assert sink.interest is Interest.TOTALS
        with sink:
            stats = replicate([f"{tmp_path}/src/"], str(tmp_path / "dst"), config, sink)
        tally = sink.tally
        assert (tally.files, tally.files_done) == (entries, entries)
        expected_bytes = sum(sizes.values()) if run == "copy" else 0
        assert (stats.files, stats.skipped) == ((len(sizes), 0) if run == "copy" else (0, len(sizes)))
        assert (tally.bytes, tally.bytes_done) == (expected_bytes,) * 2
        task = sink.progress.tasks[0]
        assert (task.completed, task.total) == (tally.bytes, tally.bytes)


@pytest.mark.parametrize("stdout_is_a_terminal", [False, True])
def test_itemized_lines_reach_a_redirected_stdout_while_the_bars_are_drawn(monkeypatch, stdout_is_a_terminal):
    """`zcp -ai src/ dst > changes.txt` on a terminal: the bars go to stderr, the lines to the file;
    when stdout is the terminal too, rich draws the lines above the bars."""
    import io

    from rich.console import Console

    from zcp.cli.progress import ProgressSink
    from zcp.model import Action, Entry, Kind, Op

    class Stdout(io.StringIO):
        def isatty(self) -> bool:
            return stdout_is_a_terminal

    stdout, terminal = Stdout(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    entry = Entry("/src/a", Kind.FILE, 0o644, 1, 0, 0, 0, 0, 1, 1, 1)
    sink = ProgressSink(Console(file=terminal, force_terminal=True), verbose=0, quiet=False,
                        items=lambda action: f">f+++++++++ {action.rel}")
    with sink:
        sink.planned(Action(Op.COPY, "a", "/dst/a", entry))
    assert (">f+++++++++ a" in stdout.getvalue()) == (not stdout_is_a_terminal)
    assert (">f+++++++++ a" in terminal.getvalue()) == stdout_is_a_terminal


def _on_a_terminal(argv: list[str], cwd, stdin, stdout_on_terminal: bool) -> tuple[int, str]:
    """Run with stderr (and stdout, if asked) on a pseudo-terminal; what the terminal showed."""
    primary, terminal = os.openpty()
    drawn = bytearray()
    pump = threading.Thread(target=_drain, args=(primary, drawn))
    pump.start()
    try:
        done = subprocess.run(argv, cwd=cwd, stdin=stdin, stderr=terminal,
                              stdout=terminal if stdout_on_terminal else subprocess.DEVNULL, timeout=60)
    finally:
        os.close(terminal)
        pump.join(timeout=10)
        os.close(primary)
    return done.returncode, drawn.decode(errors="replace")


@pytest.mark.parametrize("stdout_on_terminal", [False, True])
def test_a_stream_receiver_on_a_terminal_shows_what_it_receives(tmp_path, stdout_on_terminal):
    """`... | zcp - out/` typed at a terminal: the receiver's stdout is that terminal too, and the
    display is drawn all the same (only the stream's own fd on a terminal turns it off)."""
    _tree(tmp_path / "src")
    with open(tmp_path / "saved", "wb") as saved:
        subprocess.run([*ZCP, "-a", "src/", "-"], cwd=tmp_path, stdout=saved, check=True)
    with open(tmp_path / "saved", "rb") as stdin:
        code, text = _on_a_terminal([*ZCP, "-a", "-", "out/"], tmp_path, stdin, stdout_on_terminal)
    assert code == 0, text
    assert "receiving" in text and "received 31 files" in text  # the display, then the summary
    assert "Traceback" not in text
