"""What a run prints: errors, warnings, the -v listing and the summary on stderr; the plan of -n and
the -i lines on stdout."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TextIO

from zcp.config import Method
from zcp.errors import BrokenPipe
from zcp.exec.events import Interest, NullSink, Stats
from zcp.model import Action, Op
from zcp.planner.operands import Transfer


def detach_stdout() -> None:
    """The reader of stdout went away: point fd 1 at /dev/null, so that the interpreter's final
    flush cannot fail on the dead pipe (the recipe of the Python docs for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def print_out(line: str) -> None:
    """A line of data on stdout (-n, -i); a reader gone away (`| head`) ends the run with BrokenPipe."""
    try:
        print(printable(line))
    except BrokenPipeError:
        detach_stdout()
        raise BrokenPipe("the reader of standard output went away") from None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def printable(text: str) -> str:
    """A name fit for one terminal line: control characters and undecodable bytes as rsync's \\#ooo."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid UTF-8 (surrogateescape)
            out.append(f"\\#{code - 0xDC00:03o}")
        elif not ch.isprintable():
            out.append("".join(f"\\#{b:03o}" for b in ch.encode("utf-8", "surrogatepass")))
        else:
            out.append(ch)
    return "".join(out)


class ShownNames:
    """What -v, -n and -i call an entry, as rsync does: its path from where its transfer starts,
    so ``zcp a b dir/`` shows ``a/x`` and ``b/y``, and ``zcp src/ dst`` shows ``x``, ``./``."""

    def __init__(self, transfers: list[Transfer]):
        self._roots = [(os.path.normpath(t.dst), t.name) for t in transfers]

    def __call__(self, action: Action) -> str:
        name = self._roots[0][1] if len(self._roots) == 1 else self._name_of(action)
        return (f"{name}/{action.rel}" if name and action.rel else name or action.rel) or "."

    def _name_of(self, action: Action) -> str:
        # The transfer whose root and the action's rel make its dst: `zcp a/ b/s dir` puts b's
        # root inside a's, and a's s/y and b's y both land in dir/s.
        dst = os.path.normpath(action.dst)
        for root, name in self._roots:
            if dst == (os.path.join(root, action.rel) if action.rel else root):
                return name
        return ""


def rel_name(action: Action) -> str:
    return action.rel or action.dst


Itemizer = Callable[[Action], "str | None"]
Namer = Callable[[Action], str]


class TextSink(NullSink):
    """Plain lines: errors and warnings always (unless quiet hides warnings), files with -v,
    and with -i the itemized changes on stdout as they are planned (so -n -i lists the same)."""

    def __init__(self, verbose: int, quiet: bool, out: TextIO | None = None, items: Itemizer | None = None,
                 names: Namer = rel_name):
        self.verbose = verbose
        self.quiet = quiet
        self.out = out
        self.items = items
        self.names = names

    @property
    def interest(self) -> Interest:
        """-i and -v show what changes, -vv everything."""
        if self.verbose > 1:
            return Interest.ALL
        return Interest.CHANGES if self.verbose or self.items else Interest.NONE

    def planned(self, action: Action) -> None:
        if self.items is not None:
            line = self.items(action)
            if line is not None:
                print_out(line)

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None:
        if not self.verbose or self.items is not None:
            return
        changed = action.op is not Op.SKIP and not (action.op is Op.MKDIR and action.reason == "exists")
        if changed or self.verbose > 1:
            via = f" [{method}]" if method else ""
            self.emit(f"{action.op:<8} {self.names(action)}{via}")

    def failed(self, where: str, message: str) -> None:
        self.emit(f"zcp: {message}" if message.startswith(where) else f"zcp: {where}: {message}")

    def warned(self, message: str) -> None:
        if not self.quiet:
            self.emit(f"zcp: warning: {message}")

    def emit(self, line: str) -> None:
        print(printable(line), file=self.out or sys.stderr)


class PlanPrinter(TextSink):
    """-n: one line per action on stdout: what, how (methods in order), where, why; with -i the
    itemized changes instead, exactly as a real run prints them."""

    def planned(self, action: Action) -> None:
        if self.items is not None:
            super().planned(action)
            return
        # A hard link carries a copy's methods only for when its group's first copy fails.
        how = ",".join(action.methods) if action.methods and action.op is not Op.HARDLINK else "-"
        print_out(f"{action.op:<8} {how:<40} {self.names(action)}  ({action.reason})")


def count_of(n: int, one: str, many: str = "") -> str:
    """'1 file', '2 files' (``many`` where adding an s is wrong)."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def bytes_by_method(by_method: dict[Method, int]) -> str:
    """'copy_file_range 1.0 GiB, rw 2.0 KiB': most bytes first."""
    return ", ".join(f"{method} {human_bytes(n)}" for method, n in sorted(by_method.items(), key=lambda kv: -kv[1]))


def summary_lines(stats: Stats, seconds: float) -> list[str]:
    rate = stats.bytes / seconds if seconds > 0 else 0.0
    lines = [
        f"{count_of(stats.files, 'file')}, {human_bytes(stats.bytes)} in {seconds:.2f} s ({human_bytes(rate)}/s); "
        f"{count_of(stats.dirs, 'folder')}, {count_of(stats.links, 'link')}, {stats.specials} special, "
        f"{stats.skipped} up to date",
    ]
    if stats.verified:
        lines.append(f"{count_of(stats.verified, 'file')} verified (xxh3-128, read back from storage)")
    if stats.attrs or stats.deleted:
        lines.append(f"{stats.attrs} with metadata fixed, {stats.deleted} deleted")
    if stats.by_method:
        lines.append(f"bytes by method: {bytes_by_method(stats.by_method)}")
    if stats.failed or stats.vanished:
        lines.append(f"{stats.failed} failed, {stats.vanished} vanished")
    return lines
