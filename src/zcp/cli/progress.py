"""The rich progress display, used only when stderr is a terminal."""

from __future__ import annotations

import sys
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

from zcp.cli.output import Itemizer, Namer, TextSink, printable, rel_name
from zcp.config import Method
from zcp.exec.events import Interest, Tally
from zcp.model import Action

PUSH_EVERY = 0.05  # seconds


class ProgressSink(TextSink):
    """Overall bytes and files with rate and ETA, the current file and its method.

    Counts are kept in a Tally and handed to rich at most every PUSH_EVERY seconds (it redraws only
    four times a second): updating rich for every entry cost 40 µs each, more than copying a small
    file. Worker processes send only their tallies, unless -i or -v want the entries themselves.
    """

    def __init__(self, console: Console, verbose: int, quiet: bool, items: Itemizer | None = None,
                 names: Namer = rel_name):
        super().__init__(verbose, quiet, console.file, items, names)
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
            # -i lines go to stdout: drawn above the bars when it is this terminal too, but
            # never taken from a file or pipe it was redirected to.
            redirect_stdout=sys.stdout.isatty(),
        )
        self.bytes_task = self.progress.add_task("copying", total=0)
        self.tally = Tally()
        self._next_push = 0.0

    @property
    def interest(self) -> Interest:
        return max(super().interest, Interest.TOTALS)

    def __enter__(self) -> "ProgressSink":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sync()
        self.progress.stop()

    def planned(self, action: Action) -> None:
        super().planned(action)
        self.tally.planned(action)
        self._maybe_sync()

    def unchanged(self, count: int) -> None:
        self.tally.unchanged(count)
        self._maybe_sync()

    def started(self, action: Action, method: Method | None) -> None:
        self.tally.started(action, method)
        self._maybe_sync()

    def advanced(self, nbytes: int) -> None:
        self.tally.advanced(nbytes)
        self._maybe_sync()

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None:
        self.tally.finished(action, nbytes)
        super().finished(action, method, nbytes)
        self._maybe_sync()

    def tallied(self, tally: Tally) -> None:
        self.tally.add(tally)
        self._maybe_sync()

    def sync(self) -> None:
        """Hand the counts and the current file to rich now."""
        tally = self.tally
        update: dict = {"completed": tally.bytes_done, "total": tally.bytes}
        if tally.current is not None:
            name, method = tally.current
            update["description"] = printable(f"{tally.files_done}/{tally.files} files  {name} [{method}]")
        self.progress.update(self.bytes_task, **update)

    def _maybe_sync(self) -> None:
        now = time.monotonic()
        if now >= self._next_push:
            self._next_push = now + PUSH_EVERY
            self.sync()

    def emit(self, line: str) -> None:
        self.console.print(printable(line), markup=False, highlight=False, soft_wrap=True)
