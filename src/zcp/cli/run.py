"""Run a local copy with the right display, and turn its counters into an exit code."""

from __future__ import annotations

import sys
import time

from zcp.cli.output import PlanPrinter, TextSink, summary_lines
from zcp.config import Config
from zcp.errors import run_exit_code
from zcp.replicate import plan_actions, replicate, resolve_operands


def run_copy(sources: list[str], dest: str, config: Config) -> int:
    start = time.monotonic()
    if config.dry_run:
        printer = PlanPrinter(config.verbose, config.quiet)
        failures = []

        def note(path: str, exc: OSError) -> None:
            failures.append(path)
            printer.failed(path, exc.strerror or str(exc))

        for action in plan_actions(resolve_operands(sources, dest, config), config, note):
            printer.finished(action, None, 0)
        return run_exit_code(len(failures), 0)
    show_progress = sys.stderr.isatty() and not config.quiet
    if show_progress:
        from rich.console import Console  # only a terminal pays for importing rich

        from zcp.cli.progress import ProgressSink

        console = Console(stderr=True)
        with ProgressSink(console, config.verbose, config.quiet) as sink:
            stats = replicate(sources, dest, config, sink)
    else:
        sink = TextSink(config.verbose, config.quiet)
        stats = replicate(sources, dest, config, sink)
    if (show_progress or config.verbose) and not config.quiet:
        for line in summary_lines(stats, time.monotonic() - start):
            sink.emit(line)
    return stats.exit_code()
