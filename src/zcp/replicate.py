"""One local replication run: operands -> transfers -> plan -> executor. No display here."""

from __future__ import annotations

import os
from collections.abc import Iterator

from zcp.config import Config
from zcp.exec.events import Interest, Sink, Stats
from zcp.exec.executor import Executor
from zcp.exec.parallel import TreeRun
from zcp.model import Action, Unchanged
from zcp.planner.operands import Operands, resolve
from zcp.planner.plan import Planner


def plan_actions(operands: Operands, planner: Planner) -> Iterator[Action | Unchanged]:
    """The run's actions in the order a run carries them out: the walk, then hard-link groups and
    deletions (--delete)."""
    for transfer in operands.transfers:
        yield from planner.plan(transfer)
    yield from planner.later()


def resolve_operands(sources: list[str], dest: str, config: Config) -> Operands:
    """Operand errors raise here, before anything is written."""
    return resolve(sources, dest, recursive=config.recursive, keep_links=config.preserve.links)


def replicate(sources: list[str], dest: str, config: Config, sink: Sink) -> Stats:
    return replicate_operands(resolve_operands(sources, dest, config), config, sink)


def replicate_operands(operands: Operands, config: Config, sink: Sink) -> Stats:
    # --max-delete is a budget spent in walk order while planning: one process plans it all.
    jobs = 1 if config.max_delete is not None else config.jobs
    if operands.create_folder:
        os.mkdir(operands.create_folder)
    if jobs > 1:
        run = TreeRun(config, sink, jobs)
        stats, planner = run.run(operands.transfers), run.planner
    else:
        executor = Executor(config, sink)
        planner = Planner(config, executor.note_walk_error, sink.warned, count_unchanged=sink.interest < Interest.ALL)
        stats = executor.run(plan_actions(operands, planner))
    stats.delete_limited = planner.delete_limited
    return stats
