"""What the executor reports: counters it keeps, and events it sends to a sink (display lives elsewhere)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Protocol

from zcp.config import Method
from zcp.errors import run_exit_code
from zcp.model import COPYING_OPS, Action


@dataclass
class Stats:
    files: int = 0  # regular files written
    bytes: int = 0  # bytes of file content written
    dirs: int = 0
    links: int = 0  # symlinks and hard links made
    specials: int = 0
    skipped: int = 0
    attrs: int = 0  # up-to-date files whose metadata was fixed
    verified: int = 0  # files read back from storage and found equal to their source
    deleted: int = 0
    failed: int = 0
    vanished: int = 0
    delete_limited: bool = False
    by_method: Counter = field(default_factory=Counter)  # Method -> bytes

    def exit_code(self) -> int:
        return run_exit_code(self.failed, self.vanished, self.delete_limited)

    def note_unreadable(self, exc: OSError) -> None:
        """Something could not be read: a vanished entry counts apart (exit 24, not 23)."""
        if isinstance(exc, FileNotFoundError):
            self.vanished += 1
        else:
            self.failed += 1

    def add_bytes(self, method: Method, n: int) -> None:
        self.by_method[method] += n
        self.bytes += n

    def merge(self, other: "Stats") -> None:
        """Add the counters of another process's part of the run."""
        for f in _COUNTERS:
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.by_method.update(other.by_method)
        self.delete_limited |= other.delete_limited


_COUNTERS = tuple(f.name for f in fields(Stats) if f.type == "int")


class Interest(IntEnum):
    """Which entries a sink does something with: worker processes send it no others."""

    NONE = 0  # failures and warnings only
    TOTALS = 1  # only how many files and bytes were planned and done (a Tally per task)
    CHANGES = 2  # entries that change something (not SKIP)
    ALL = 3


@dataclass
class Tally:
    """Files and bytes planned and done, and the file being copied: what a progress display shows."""

    files: int = 0
    bytes: int = 0
    files_done: int = 0
    bytes_done: int = 0
    current: tuple[str, Method | None] | None = None  # its name and method
    moved: int = 0  # bytes of the current file already counted by advanced()

    def planned(self, action: Action) -> None:
        if action.op in COPYING_OPS and action.src is not None:
            self.bytes += action.src.size
        self.files += 1

    def unchanged(self, count: int) -> None:
        self.files += count
        self.files_done += count

    def started(self, action: Action, method: Method | None) -> None:
        self.moved = 0
        self.current = (action.rel or action.dst, method)

    def advanced(self, nbytes: int) -> None:
        self.moved += nbytes
        self.bytes_done += nbytes

    def finished(self, action: Action, nbytes: int) -> None:
        if action.op in COPYING_OPS and action.src is not None:
            # count what advanced() did not, and the planned size of a file that came out smaller
            self.bytes_done += max(nbytes, action.src.size) - self.moved
        self.moved = 0
        self.files_done += 1

    def add(self, other: "Tally") -> None:
        self.files += other.files
        self.bytes += other.bytes
        self.files_done += other.files_done
        self.bytes_done += other.bytes_done
        self.current = other.current or self.current


class Sink(Protocol):
    interest: Interest

    def planned(self, action: Action) -> None:
        """An action joined the plan: totals grow."""

    def unchanged(self, count: int) -> None:
        """Files up to date, only counted (a sink whose interest is below ALL sees no SKIP for them)."""

    def started(self, action: Action, method: Method | None) -> None: ...

    def advanced(self, nbytes: int) -> None:
        """Bytes of the current file moved (large files only; small ones count when done)."""

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None: ...

    def tallied(self, tally: Tally) -> None:
        """Entries carried out by a worker process, as counts (Interest.TOTALS)."""

    def failed(self, where: str, message: str) -> None: ...

    def warned(self, message: str) -> None: ...


class NullSink:
    interest = Interest.ALL

    def planned(self, action: Action) -> None:
        pass

    def unchanged(self, count: int) -> None:
        pass

    def started(self, action: Action, method: Method | None) -> None:
        pass

    def advanced(self, nbytes: int) -> None:
        pass

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None:
        pass

    def tallied(self, tally: Tally) -> None:
        pass

    def failed(self, where: str, message: str) -> None:
        pass

    def warned(self, message: str) -> None:
        pass


class RecordingSink(NullSink):
    """Keeps every event, for tests."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None:
        self.events.append(("finished", action.rel, action.op, method, nbytes))

    def failed(self, where: str, message: str) -> None:
        self.events.append(("failed", where, message))

    def warned(self, message: str) -> None:
        self.events.append(("warned", message))
