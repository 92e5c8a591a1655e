"""Run a replication folder by folder, in this process or in worker processes that take whole folders.

Per-entry work in Python (lstat, compare, open, name, metadata) is CPU-bound and holds the GIL, so
threads do not scale on small files; forked processes do, when each plans and copies on its own. A
task is a folder (or a piece of one's listing): whoever takes it plans and carries out its entries
depth first until it has done CHUNK of them; the rest of every listing it has open goes back to the
parent in pieces, which it hands out again. The first task runs in the parent, so a small tree never
forks. (-j1 needs none of this: one process plans and copies in walk order.)

The parent keeps the order of one process: a task's events come back in walk order, with a marker
where each returned subfolder's events belong, and are replayed into the sink in walk order, so -v
and -i print what -n prints. Hard-link groups and --delete are planned by the parent after the walk,
and it finishes every folder (metadata) last.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zcp.config import Config
from zcp.exec.atomic import remove_temps_beneath
from zcp.exec.events import NullSink, Sink, Stats
from zcp.exec.executor import Executor
from zcp.model import Action, Folder
from zcp.planner.operands import Transfer
from zcp.planner.plan import Planner

if TYPE_CHECKING:
    from multiprocessing import Process
    from multiprocessing.connection import Connection

CHUNK = 256  # entries a task does before handing back the rest of its listings
SPLIT = 4  # pieces each of those listings is handed back in, for the workers to share
IN_FLIGHT = 2  # tasks queued per worker: one running, one waiting


class _Recorder(NullSink):
    """A task's sink: the events the parent's sink needs, in order. Without ``entries`` (a sink that
    shows no entries), only failures and warnings."""

    def __init__(self, entries: bool) -> None:
        self.entries = entries
        self.events: list[tuple] = []

    def planned(self, action: Action) -> None:
        if self.entries:
            self.events.append(("planned", action))

    def started(self, action: Action, method) -> None:
        if self.entries:
            self.events.append(("started", method))

    def advanced(self, nbytes: int) -> None:
        if self.entries:
            self.events.append(("advanced", nbytes))

    def finished(self, action: Action, method, nbytes: int) -> None:
        if self.entries:
            self.events.append(("finished", method, nbytes))

    def failed(self, where: str, message: str) -> None:
        self.events.append(("failed", where, message))

    def warned(self, message: str) -> None:
        self.events.append(("warned", message))


@dataclass
class _Result:
    """What one task did: events in walk order, ("folder", k) marking where pending[k]'s belong."""

    events: list[tuple]
    pending: list[Folder] = field(default_factory=list)
    folders: list[Action] = field(default_factory=list)  # made or kept, for the parent to finish
    touched: set[str] = field(default_factory=set)
    stats: Stats = field(default_factory=Stats)
    read_errors: int = 0


class _TaskRunner:
    """Plans and carries out folders, with a planner and an executor of its own."""

    def __init__(self, config: Config, is_root: bool, entries: bool):
        self.recorder = _Recorder(entries)
        self.executor = Executor(config, self.recorder, is_root=is_root)
        self.planner = Planner(config, self.executor.note_walk_error, self.recorder.warned, is_root=is_root)

    def run(self, folder: Folder) -> _Result:
        executor, planner = self.executor, self.planner
        events = self.recorder.events = []
        executor.stats, planner.read_errors = Stats(), 0
        pending: list[Folder] = []
        for item in planner.plan_tree(folder, CHUNK, SPLIT):
            kind = type(item)
            if kind is Action:
                executor.handle(item)
            elif kind is Folder:  # the rest of a listing, for whoever is free
                events.append(("folder", len(pending)))
                pending.append(item)
            else:  # a hard-link candidate or a --delete extra: the parent plans them last
                events.append(("later", item))
        touched, executor.touched = executor.touched, set()
        return _Result(events, pending, executor.take_folders(), touched, executor.stats, planner.read_errors)


def _worker_main(conn: "Connection", config: Config, is_root: bool, entries: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop; files finish whole
    runner = _TaskRunner(config, is_root, entries)
    try:
        while (task := conn.recv()) is not None:
            task_id, folder = task
            conn.send((task_id, runner.run(folder)))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the parent went away or stopped us, or SIGTERM: the current file cleaned up after itself


@dataclass
class _Worker:
    process: "Process"
    conn: "Connection"
    tasks: deque = field(default_factory=deque)  # (id, folder) sent, results not yet read


class TreeRun:
    """One run over every transfer with ``jobs`` processes; the parent's executor finishes it."""

    def __init__(self, config: Config, sink: Sink, jobs: int, is_root: bool | None = None):
        self.config = config
        self.sink = sink
        self.jobs = jobs
        self.executor = Executor(config, sink, is_root=is_root)
        self.planner = Planner(config, self.executor.note_walk_error, sink.warned, is_root=is_root)
        self._is_root = self.executor.meta.is_root
        self._entries = getattr(sink, "wants_entries", True)
        self._local: _TaskRunner | None = None
        self._workers: list[_Worker] = []
        self._forked = False
        self._ids = itertools.count()
        self._tasks: list[tuple[int, Folder]] = []  # a stack: the next in walk order on top
        self._results: dict[int, tuple[_Result, list[int]]] = {}  # arrived, not yet replayed
        self._order: list[list] = []  # replay frames: [events, ids of their pending folders, position]
        self._current: Action | None = None  # the action replayed events refer to

    def run(self, transfers: Iterable[Transfer]) -> Stats:
        aborted = True
        try:
            for transfer in transfers:
                for item in self.planner.plan_root(transfer):
                    if type(item) is Folder:
                        self._tree(item)
                    else:
                        self.executor.handle(item)
            for action in self.planner.later():
                self.executor.handle(action)
            aborted = False
        finally:
            self._stop(aborted)  # Ctrl-C: workers stop too, each cleaning up its current file
        return self.executor.finish()

    def _tree(self, root: Folder) -> None:
        """Everything beneath one folder, replayed in walk order as the tasks come back."""
        self._order = [[(("folder", 0),), self._queue([root]), 0]]
        while not self._replay():
            self._advance()

    def _queue(self, folders: list[Folder]) -> list[int]:
        ids = [next(self._ids) for _ in folders]
        self._tasks.extend(reversed(list(zip(ids, folders))))
        return ids

    def _replay(self) -> bool:
        """Replay what has arrived, in walk order; False when the next events are still being made."""
        order = self._order
        while order:
            frame = order[-1]
            events, ids, position = frame
            while position < len(events):
                event = events[position]
                if event[0] == "folder":
                    arrived = self._results.pop(ids[event[1]], None)
                    if arrived is None:
                        frame[2] = position
                        return False
                    frame[2] = position + 1
                    result, result_ids = arrived
                    self.executor.folders.extend(result.folders)  # parents before their contents
                    order.append([result.events, result_ids, 0])
                    break
                self._apply(event)
                position += 1
            else:
                order.pop()
        return True

    def _apply(self, event: tuple) -> None:
        kind = event[0]
        if kind == "planned":
            self._current = event[1]
            self.sink.planned(event[1])
        elif kind == "finished":
            self.sink.finished(self._current, event[1], event[2])
        elif kind == "failed":
            self.sink.failed(event[1], event[2])
        elif kind == "warned":
            self.sink.warned(event[1])
        elif kind == "later":
            self.planner.keep(event[1])
        elif kind == "started":
            self.sink.started(self._current, event[1])
        else:
            self.sink.advanced(event[1])

    def _arrived(self, task_id: int, result: _Result) -> None:
        self.executor.stats.merge(result.stats)
        self.executor.touched |= result.touched
        self.planner.read_errors += result.read_errors
        self._results[task_id] = (result, self._queue(result.pending))

    def _advance(self) -> None:
        """Get at least one more task done: here (the first one, or when no worker is left) or by the workers."""
        if not self._forked and self._local is not None:
            self._fork()
        if not self._workers:
            task_id, folder = self._tasks.pop()
            if self._local is None:
                self._local = _TaskRunner(self.config, self._is_root, self._entries)
            self._arrived(task_id, self._local.run(folder))
            return
        while self._tasks:  # the least busy worker first: each gets one before any gets two
            worker = min(self._workers, key=lambda w: len(w.tasks))
            if len(worker.tasks) >= IN_FLIGHT:
                break
            try:
                worker.conn.send(self._tasks[-1])
            except OSError:  # it died since its last answer
                break
            worker.tasks.append(self._tasks.pop())
        for worker in [w for w in self._workers if not w.tasks and not w.process.is_alive()]:
            self._lost(worker)
        self._collect()

    def _fork(self) -> None:
        self._forked = True
        import multiprocessing  # only runs with more than one task pay for it

        context = multiprocessing.get_context("fork")
        for _ in range(self.jobs):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_worker_main, args=(child_end, self.config, self._is_root,
                                                                  self._entries), daemon=True)
            process.start()
            child_end.close()
            self._workers.append(_Worker(process, parent_end))

    def _collect(self) -> None:
        """Read the results that are ready (at least one, if any worker is busy)."""
        from multiprocessing.connection import wait

        busy = {w.conn: w for w in self._workers if w.tasks}
        if not busy:
            return
        for conn in wait(list(busy)):
            worker = busy[conn]
            try:
                task_id, result = conn.recv()
            except (EOFError, OSError):
                self._lost(worker)
                continue
            worker.tasks.popleft()
            self._arrived(task_id, result)

    def _lost(self, worker: _Worker) -> None:
        """A worker died: its current folder fails (it may be half done, and run again it might kill
        the next worker too); the folders queued behind it go to the others."""
        self._workers.remove(worker)
        worker.conn.close()
        worker.process.join()
        if not worker.tasks:
            return
        (task_id, folder), *queued = worker.tasks
        self._tasks.extend(reversed(queued))
        remove_temps_beneath(folder.dst, worker.process.pid)
        stats = Stats(failed=1)
        message = f"copy process died (exit {worker.process.exitcode}); entries beneath it may be missing"
        self._arrived(task_id, _Result([("failed", folder.src, message)], stats=stats))

    def _stop(self, aborted: bool) -> None:
        for worker in self._workers:
            try:
                if aborted:
                    os.kill(worker.process.pid, signal.SIGTERM)
                else:
                    worker.conn.send(None)
            except OSError:
                pass
            worker.conn.close()
        for worker in self._workers:
            worker.process.join()
        self._workers = []
