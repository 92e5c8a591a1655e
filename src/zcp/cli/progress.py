"""The rich progress display, used only when stderr is a terminal."""

from __future__ import annotations

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


class ProgressSink(TextSink):
    """Overall bytes and files with rate and ETA, the current file and its method."""

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
        )
        self.bytes_task = self.progress.add_task("copying", total=0)
        self.files_task = self.progress.add_task("", total=0, visible=False)
        self._moved = 0  # bytes of the current file already counted by advanced()

    def __enter__(self) -> "ProgressSink":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def planned(self, action: Action) -> None:
        super().planned(action)
        if action.op in _BYTE_OPS and action.src is not None:
            self.progress.update(self.bytes_task, total=self.progress.tasks[0].total + action.src.size)
        self.progress.update(self.files_task, total=self.progress.tasks[1].total + 1)

    def started(self, action: Action, method: Method | None) -> None:
        done, total = self.progress.tasks[1].completed, self.progress.tasks[1].total
        self._moved = 0
        self.progress.update(self.bytes_task, description=printable(f"{done}/{total} files  {display_name(action)} [{method}]"))

    def advanced(self, nbytes: int) -> None:
        self._moved += nbytes
        self.progress.advance(self.bytes_task, nbytes)

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None:
        if action.op in _BYTE_OPS and action.src is not None:
            # count what advanced() did not, and the planned size of a file that came out smaller
            self.progress.advance(self.bytes_task, max(nbytes, action.src.size) - self._moved)
        self._moved = 0
        self.progress.advance(self.files_task, 1)
        super().finished(action, method, nbytes)

    def emit(self, line: str) -> None:
        self.console.print(printable(line), markup=False, highlight=False, soft_wrap=True)
