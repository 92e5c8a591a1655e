"""Run a replication folder by folder, in this process or in worker processes that take whole folders.

Per-entry work in Python (lstat, compare, open, name, metadata) is CPU-bound and holds the GIL, so
threads do not scale on small files; forked processes do, when each plans and copies on its own. A
task is a folder (or a piece of one's listing): whoever takes it plans and carries out its entries
depth first, until the parent asks it to share (another worker is idle and no task is left) or
REPORT_EVERY has passed; then the rest of every listing it has open goes back to the parent in
pieces, which it hands out again. The parent does the first FIRST_TASK units of work itself (an
entry, or a MiB copied), so a small tree never forks. (-j1 needs none of this: one process plans
and copies in walk order.)

The parent keeps the order of one process: a task's events come back in walk order, with a marker
where each returned subfolder's events belong, and are replayed into the sink in walk order, so -v
and -i print what -n prints. Hard-link groups and --delete are planned by the parent after the walk,
and it finishes every folder (metadata) last.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from zcp.config import Config
from zcp.errors import Interrupted
from zcp.exec.atomic import remove_live_temps, remove_temps_beneath
from zcp.exec.events import Interest, NullSink, Sink, Stats, Tally
from zcp.exec.executor import Executor
from zcp.exec.forked import Channel, Child, readable
from zcp.model import SKIP, Action, Folder, Unchanged
from zcp.planner.operands import Transfer
from zcp.planner.plan import Planner


# Units of work (plan_tree's: an entry, or a MiB copied) the parent does itself before it forks
# workers for the rest: a tree of a few hundred small files never forks, one of big files does.
FIRST_TASK = 256
REPORT_EVERY = 0.5  # seconds: a worker hands back what it has done at least this often (progress)


class _Recorder(NullSink):
    """A task's sink: the events the parent's sink has an interest in, in order; failures and
    warnings always."""

    def __init__(self, interest: Interest) -> None:
        self.interest = interest
        self.events: list[tuple] = []
        self.tally = Tally() if interest is Interest.TOTALS else None
        self._sending = False  # the events of the current action
        self._all, self._changes = interest is Interest.ALL, interest is Interest.CHANGES

    def planned(self, action: Action) -> None:
        if self.tally is not None:
            self.tally.planned(action)
        self._sending = self._all or (self._changes and action.op is not SKIP)
        if self._sending:
            self.events.append(("planned", action))

    def unchanged(self, count: int) -> None:
        if self.tally is not None:
            self.tally.unchanged(count)

    def started(self, action: Action, method) -> None:
        if self.tally is not None:
            self.tally.started(action, method)
        if self._sending:
            self.events.append(("started", method))

    def advanced(self, nbytes: int) -> None:
        if self.tally is not None:
            self.tally.advanced(nbytes)
        if self._sending:
            self.events.append(("advanced", nbytes))

    def finished(self, action: Action, method, nbytes: int) -> None:
        if self.tally is not None:
            self.tally.finished(action, nbytes)
        if self._sending:
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
    tally: Tally | None = None  # Interest.TOTALS: the counts instead of the entries


class _TaskRunner:
    """Plans and carries out folders, with a planner and an executor of its own."""

    def __init__(self, config: Config, is_root: bool, interest: Interest):
        self.recorder = _Recorder(interest)
        self.executor = Executor(config, self.recorder, is_root=is_root)
        self.planner = Planner(config, self.executor.note_walk_error, self.recorder.warned, is_root=is_root,
                               count_unchanged=interest < Interest.ALL)

    def run(self, folder: Folder, stop: Callable[[int], bool], split: int) -> _Result:
        """Plan and carry out the folder until done or until ``stop()``; the rest comes back in pieces."""
        executor, planner, recorder = self.executor, self.planner, self.recorder
        events = recorder.events = []
        if recorder.tally is not None:
            recorder.tally = Tally()
        executor.stats, planner.read_errors = Stats(), 0
        pending: list[Folder] = []
        for item in planner.plan_tree(folder, stop, split):
            kind = type(item)
            if kind is Action:
                executor.handle(item)
            elif kind is Unchanged:
                executor.unchanged(item.count)
            elif kind is Folder:  # the rest of a listing, for whoever is free
                events.append(("folder", len(pending)))
                pending.append(item)
            else:  # a hard-link candidate or a --delete extra: the parent plans them last
                events.append(("later", item))
        touched, executor.touched = executor.touched, set()
        return _Result(events, pending, executor.take_folders(), touched, executor.stats, planner.read_errors,
                       recorder.tally)


def _worker_main(conn: Channel, config: Config, is_root: bool, interest: Interest, split: int,
                 parent: int, prctl: Callable[..., int]) -> None:
    """Take tasks until told to stop (None). A task ends early when the parent writes again (it asks
    for a share of the work for an idle worker) or after REPORT_EVERY seconds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop; files finish whole
    try:
        _end_with(parent, prctl)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        runner = _TaskRunner(config, is_root, interest)
        while (message := conn.recv()) is not None:
            if message == _SHARE:
                continue  # asked for after this task had already ended
            task_id, folder = message
            deadline = time.monotonic() + REPORT_EVERY
            result = runner.run(folder, lambda _: conn.poll() or time.monotonic() > deadline, split)
            conn.send((task_id, result))
    except (EOFError, BrokenPipeError, KeyboardInterrupt, Interrupted):
        remove_live_temps()  # the parent went away or stopped us (SIGTERM)


_SHARE = "share"  # parent to a busy worker: hand back the rest of your task now
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_PR_SET_PDEATHSIG = 1


def _end_with(parent: int, prctl: Callable[..., int]) -> None:
    """SIGTERM this worker when the parent dies, however it dies (even SIGKILL): a worker's siblings
    hold the parent's ends of its pipe too, so it would never see end-of-file and would wait forever."""
    prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before we asked
        raise Interrupted(signal.SIGTERM)


@dataclass
class _Worker:
    process: Child
    task: tuple[int, Folder] | None = None  # sent, result not yet read
    asked: bool = False  # to share its task

    @property
    def conn(self) -> Channel:
        return self.process.channel


class TreeRun:
    """One run over every transfer with ``jobs`` processes; the parent's executor finishes it."""

    def __init__(self, config: Config, sink: Sink, jobs: int, is_root: bool | None = None):
        self.config = config
        self.sink = sink
        self.jobs = jobs
        self.executor = Executor(config, sink, is_root=is_root)
        self.planner = Planner(config, self.executor.note_walk_error, sink.warned, is_root=is_root)
        self._is_root = self.executor.meta.is_root
        self._interest = sink.interest
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
            if aborted:  # Ctrl-C, SIGTERM: workers stop too, each removing its temp files
                remove_live_temps()
            self._stop(aborted)
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
        if result.tally is not None:
            self.sink.tallied(result.tally)
        self._results[task_id] = (result, self._queue(result.pending))

    def _advance(self) -> None:
        """Get at least one more task done: here (the first one, or when no worker is left) or by the workers."""
        if not self._forked and self._local is not None:
            self._fork()
        if not self._workers:
            self._run_here()
            return
        self._dispatch()
        self._collect()

    def _dispatch(self) -> None:
        """Give idle workers tasks; when none is left, ask the busy ones to share theirs."""
        for worker in [w for w in self._workers if w.task is None]:
            if not self._tasks:
                for busy in self._workers:
                    if busy.task is not None and not busy.asked:
                        busy.asked = self._send(busy, _SHARE)
                break
            if self._send(worker, self._tasks[-1]):
                worker.task = self._tasks.pop()
        for worker in [w for w in self._workers if w.task is None and not w.process.is_alive()]:
            self._lost(worker)

    def _run_here(self) -> None:
        task_id, folder = self._tasks.pop()
        if self._local is None:
            self._local = _TaskRunner(self.config, self._is_root, self._interest)
        first = not self._forked

        def stop(work: int) -> bool:  # the first task stops after FIRST_TASK units: workers take the rest
            return first and work >= FIRST_TASK

        self._arrived(task_id, self._local.run(folder, stop, self.jobs))

    @staticmethod
    def _send(worker: _Worker, message) -> bool:
        try:
            worker.conn.send(message)
            return True
        except OSError:  # it died since its last answer; found out below
            return False

    def _fork(self) -> None:
        self._forked = True
        import ctypes  # libc's prctl, found once here, where each worker would need it first thing

        prctl = ctypes.CDLL(None, use_errno=True).prctl

        # A stop signal between a fork and the bookkeeping would leave a worker that _stop() does not
        # know: signals wait until it is known (each worker unblocks them for itself).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            for _ in range(self.jobs):
                child = Child.start(_worker_main, self.config, self._is_root, self._interest, self.jobs,
                                    os.getpid(), prctl)
                self._workers.append(_Worker(child))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _collect(self) -> None:
        """Read the results that are ready (at least one, if any worker is busy)."""
        busy = {w.conn: w for w in self._workers if w.task is not None}
        if not busy:
            return
        for conn in readable(list(busy)):
            worker = busy[conn]
            try:
                task_id, result = conn.recv()
            except (EOFError, OSError):
                self._lost(worker)
                continue
            worker.task, worker.asked = None, False
            self._arrived(task_id, result)
            self._dispatch()  # before the parent replays what came back: no worker waits for that

    def _lost(self, worker: _Worker) -> None:
        """A worker died: its folder fails (it may be half done, and run again it might kill the next
        worker too); the others go on with the rest."""
        self._workers.remove(worker)
        worker.conn.close()
        worker.process.join()
        if worker.task is None:
            return
        task_id, folder = worker.task
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
