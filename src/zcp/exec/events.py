"""What the executor reports: counters it keeps, and events it sends to a sink (display lives elsewhere)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Protocol

from zcp.config import Method
from zcp.errors import run_exit_code
from zcp.model import Action


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
    CHANGES = 1  # entries that change something (not SKIP)
    ALL = 2


class Sink(Protocol):
    interest: Interest

    def planned(self, action: Action) -> None:
        """An action joined the plan: totals grow."""

    def started(self, action: Action, method: Method | None) -> None: ...

    def advanced(self, nbytes: int) -> None:
        """Bytes of the current file moved (large files only; small ones count when done)."""

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None: ...

    def failed(self, where: str, message: str) -> None: ...

    def warned(self, message: str) -> None: ...


class NullSink:
    interest = Interest.ALL

    def planned(self, action: Action) -> None:
        pass

    def started(self, action: Action, method: Method | None) -> None:
        pass

    def advanced(self, nbytes: int) -> None:
        pass

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None:
        pass

    def failed(self, where: str, message: str) -> None:
        pass

    def warned(self, message: str) -> None:
        pass


class RecordingSink(NullSink):
    """Keeps every event: for tests and for JSON output."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None:
        self.events.append(("finished", action.rel, action.op, method, nbytes))

    def failed(self, where: str, message: str) -> None:
        self.events.append(("failed", where, message))

    def warned(self, message: str) -> None:
        self.events.append(("warned", message))
