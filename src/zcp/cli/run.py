"""Run a local copy with the right display, and turn its counters into an exit code."""

from __future__ import annotations

import os
import sys
import time

from zcp.cli.output import Itemizer, PlanPrinter, ShownNames, TextSink, summary_lines
from zcp.config import Config
from zcp.errors import describe
from zcp.exec.events import Stats
from zcp.planner.itemize import itemize
from zcp.planner.plan import Planner
from zcp.planner.operands import Operands
from zcp.replicate import plan_actions, replicate_operands, resolve_operands


def run_copy(sources: list[str], dest: str, config: Config) -> int:
    start = time.monotonic()
    operands = resolve_operands(sources, dest, config)
    names = ShownNames(operands.transfers)
    items = _itemizer(config, names)
    if config.dry_run:
        return _dry_run(operands, config, items, names)
    show_progress = sys.stderr.isatty() and not config.quiet
    if show_progress:
        from rich.console import Console  # only a terminal pays for importing rich

        from zcp.cli.progress import ProgressSink

        with ProgressSink(Console(stderr=True), config.verbose, config.quiet, items, names) as sink:
            stats = replicate_operands(operands, config, sink)
    else:
        sink = TextSink(config.verbose, config.quiet, items=items, names=names)
        stats = replicate_operands(operands, config, sink)
    if (show_progress or config.verbose) and not config.quiet:
        for line in summary_lines(stats, time.monotonic() - start):
            sink.emit(line)
    return stats.exit_code()


def _dry_run(operands: Operands, config: Config, items: Itemizer | None, names: ShownNames) -> int:
    """Plan exactly as a real run would and print it: the plan, or with -i the itemized changes."""
    printer = PlanPrinter(config.verbose, config.quiet, items=items, names=names)
    stats = Stats()

    def note(path: str, exc: OSError) -> None:  # counted as a real run would count it
        stats.note_unreadable(exc)
        printer.failed(path, describe(exc))

    planner = Planner(config, note, printer.warned)
    for action in plan_actions(operands, planner):
        printer.planned(action)
        if action.failure:  # as the run would fail it
            stats.failed += 1
            printer.failed(action.src.path, action.failure)
    stats.delete_limited = planner.delete_limited
    return stats.exit_code()


def _itemizer(config: Config, names: ShownNames) -> Itemizer | None:
    if not config.itemize:
        return None
    is_root = os.geteuid() == 0
    return lambda action: itemize(action, config, is_root, names(action))
