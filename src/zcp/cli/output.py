"""Human output on stderr: per-file errors and warnings, -v listing, the plan for -n, the summary."""

from __future__ import annotations

import sys
from typing import TextIO

from zcp.config import Method
from zcp.exec.events import NullSink, Stats
from zcp.model import Action, Op


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def display_name(action: Action) -> str:
    return action.rel or action.dst


class TextSink(NullSink):
    """Plain lines: errors and warnings always (unless quiet hides warnings), files with -v."""

    def __init__(self, verbose: int, quiet: bool, out: TextIO = sys.stderr):
        self.verbose = verbose
        self.quiet = quiet
        self.out = out

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None:
        if self.verbose and (action.op is not Op.SKIP or self.verbose > 1):
            via = f" [{method}]" if method else ""
            self.emit(f"{action.op:<8} {display_name(action)}{via}")

    def failed(self, where: str, message: str) -> None:
        self.emit(f"zcp: {message}" if message.startswith(where) else f"zcp: {where}: {message}")

    def warned(self, message: str) -> None:
        if not self.quiet:
            self.emit(f"zcp: warning: {message}")

    def emit(self, line: str) -> None:
        print(line, file=self.out)


class PlanPrinter(TextSink):
    """-n: one line per action on stdout: what, how (methods in order), where, why."""

    def __init__(self, verbose: int, quiet: bool):
        super().__init__(verbose, quiet, sys.stderr)
        self.stats = Stats()

    def finished(self, action: Action, method: Method | None, nbytes: int) -> None:
        how = ",".join(action.methods) or "-"
        print(f"{action.op:<8} {how:<40} {display_name(action)}  ({action.reason})", flush=False)
        if action.op is Op.SKIP:
            self.stats.skipped += 1
        elif action.src is not None and action.op in (Op.COPY, Op.UPDATE):
            self.stats.files += 1
            self.stats.bytes += action.src.size


def summary_lines(stats: Stats, seconds: float) -> list[str]:
    rate = stats.bytes / seconds if seconds > 0 else 0.0
    lines = [
        f"{stats.files} files, {human_bytes(stats.bytes)} in {seconds:.2f} s ({human_bytes(rate)}/s); "
        f"{stats.dirs} folders, {stats.links} links, {stats.specials} special, {stats.skipped} up to date",
    ]
    if stats.by_method:
        parts = ", ".join(f"{m} {human_bytes(n)}" for m, n in sorted(stats.by_method.items(), key=lambda kv: -kv[1]))
        lines.append(f"bytes by method: {parts}")
    if stats.failed or stats.vanished:
        lines.append(f"{stats.failed} failed, {stats.vanished} vanished")
    return lines
