"""The rich progress display, used only when stderr is a terminal."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from zcp.cli.output import Itemizer, TextSink, display_name, printable
from zcp.config import Method
from zcp.exec.events import Interest
from zcp.model import Action, Op

_BYTE_OPS = (Op.COPY, Op.UPDATE)
PUSH_EVERY = 0.05  # seconds


class ProgressSink(TextSink):
    """Overall bytes and files with rate and ETA, the current file and its method.

    Counts are kept here and handed to rich at most every PUSH_EVERY seconds (it redraws only four
    times a second): updating rich for every entry cost 40 µs each, more than copying a small file.
    """

    interest = Interest.ALL  # every entry moves the bars

    def __init__(self, console: Console, verbose: int, quiet: bool, items: Itemizer | None = None):
        super().__init__(verbose, quiet, console.file, items)
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),  # names may hold [brackets]
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            refresh_per_second=4,  # each redraw costs milliseconds of the CPU the copy needs
        )
        self.bytes_task = self.progress.add_task("copying", total=0)
        self._bytes = [0, 0]  # done, planned
        self._files = [0, 0]
        self._moved = 0  # bytes of the current file already counted by advanced()
        self._current: tuple[Action, Method | None] | None = None
        self._next_push = 0.0

    def __enter__(self) -> "ProgressSink":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sync()
        self.progress.stop()

    def planned(self, action: Action) -> None:
        super().planned(action)
        if action.op in _BYTE_OPS and action.src is not None:
            self._bytes[1] += action.src.size
        self._files[1] += 1
        self._maybe_sync()

    def started(self, action: Action, method: Method | None) -> None:
        self._moved = 0
        self._current = (action, method)
        self._maybe_sync()

    def advanced(self, nbytes: int) -> None:
        self._moved += nbytes
        self._bytes[0] += nbytes
        self._maybe_sync()

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None:
        if action.op in _BYTE_OPS and action.src is not None:
            # count what advanced() did not, and the planned size of a file that came out smaller
            self._bytes[0] += max(nbytes, action.src.size) - self._moved
        self._moved = 0
        self._files[0] += 1
        super().finished(action, method, nbytes)
        self._maybe_sync()

    def sync(self) -> None:
        """Hand the counts and the current file to rich now."""
        (done, total), (files_done, files_total) = self._bytes, self._files
        update: dict = {"completed": done, "total": total}
        if self._current is not None:
            action, method = self._current
            update["description"] = printable(f"{files_done}/{files_total} files  {display_name(action)} [{method}]")
        self.progress.update(self.bytes_task, **update)

    def _maybe_sync(self) -> None:
        now = time.monotonic()
        if now >= self._next_push:
            self._next_push = now + PUSH_EVERY
            self.sync()

    def emit(self, line: str) -> None:
        self.console.print(printable(line), markup=False, highlight=False, soft_wrap=True)
