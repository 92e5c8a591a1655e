"""One local replication run: operands -> transfers -> plan -> executor. No display here."""

from __future__ import annotations

import os
from collections.abc import Iterator

from zcp.config import Config
from zcp.exec.events import Sink, Stats
from zcp.exec.executor import Executor
from zcp.exec.parallel import ParallelExecutor
from zcp.model import Action
from zcp.planner.operands import Operands, resolve
from zcp.planner.plan import Planner


def plan_actions(operands: Operands, planner: Planner) -> Iterator[Action]:
    """The run's actions, streamed; deletions (--delete) come last."""
    for transfer in operands.transfers:
        yield from planner.plan(transfer)
    yield from planner.deletions()


def resolve_operands(sources: list[str], dest: str, config: Config) -> Operands:
    """Operand errors raise here, before anything is written."""
    return resolve(sources, dest, recursive=config.recursive, keep_links=config.preserve.links)


def replicate(sources: list[str], dest: str, config: Config, sink: Sink) -> Stats:
    operands = resolve_operands(sources, dest, config)
    executor = ParallelExecutor(config, sink, config.jobs) if config.jobs > 1 else Executor(config, sink)
    planner = Planner(config, executor.note_walk_error, sink.warned)
    if operands.create_folder:
        os.mkdir(operands.create_folder)
    stats = executor.run(plan_actions(operands, planner))
    stats.delete_limited = planner.delete_limited
    return stats
