"""Run a local copy with the right display, and turn its counters into an exit code."""

from __future__ import annotations

import os
import sys
import time

from zcp.cli.output import PlanPrinter, TextSink, summary_lines
from zcp.config import Config
from zcp.errors import describe
from zcp.exec.events import Stats
from zcp.planner.itemize import itemize
from zcp.planner.plan import Planner
from zcp.replicate import plan_actions, replicate, resolve_operands


def run_copy(sources: list[str], dest: str, config: Config) -> int:
    start = time.monotonic()
    items = _itemizer(config)
    if config.dry_run:
        return _dry_run(sources, dest, config, items)
    show_progress = sys.stderr.isatty() and not config.quiet
    if show_progress:
        from rich.console import Console  # only a terminal pays for importing rich

        from zcp.cli.progress import ProgressSink

        with ProgressSink(Console(stderr=True), config.verbose, config.quiet, items) as sink:
            stats = replicate(sources, dest, config, sink)
    else:
        sink = TextSink(config.verbose, config.quiet, items=items)
        stats = replicate(sources, dest, config, sink)
    if (show_progress or config.verbose) and not config.quiet:
        for line in summary_lines(stats, time.monotonic() - start):
            sink.emit(line)
    return stats.exit_code()


def _dry_run(sources: list[str], dest: str, config: Config, items) -> int:
    """Plan exactly as a real run would and print it: the plan, or with -i the itemized changes."""
    printer = PlanPrinter(config.verbose, config.quiet, items=items)
    stats = Stats()

    def note(path: str, exc: OSError) -> None:  # counted as a real run would count it
        stats.note_unreadable(exc)
        printer.failed(path, describe(exc))

    planner = Planner(config, note, printer.warned)
    for action in plan_actions(resolve_operands(sources, dest, config), planner):
        printer.planned(action)
    stats.delete_limited = planner.delete_limited
    return stats.exit_code()


def _itemizer(config: Config):
    if not config.itemize:
        return None
    is_root = os.geteuid() == 0
    return lambda action: itemize(action, config, is_root)
