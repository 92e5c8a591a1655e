"""Copy regular files in worker processes.

Per-file work in Python (opening, naming, metadata) is CPU-bound and holds the GIL, so threads do
not scale on small files; forked processes do. The parent walks, plans, makes folders, symlinks and
specials itself (cheap, and ordered), and hands batches of file copies to workers as compact tuples
(pickling the Action dataclasses costs more than copying a small file). Workers report events back
in order; the parent replays them into its sink and sums the counters. Folders and hard links are
finished by the parent once every worker is done.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from operator import attrgetter

from zcp.config import Config
from zcp.exec.atomic import remove_temps_of
from zcp.exec.events import NullSink, Sink, Stats
from zcp.exec.executor import Executor
from zcp.model import Action, Entry

if TYPE_CHECKING:
    from multiprocessing import Process
    from multiprocessing.connection import Connection

BATCH = 64  # files per message: amortises the pipe round trip, keeps workers evenly fed
IN_FLIGHT = 2  # batches queued per worker: one running, one waiting

_ENTRY_FIELDS = attrgetter(*Entry.__slots__)
_COUNTERS = ("files", "bytes", "dirs", "links", "specials", "skipped", "failed", "vanished", "verified")


def _job(action: Action) -> tuple:
    existing = _ENTRY_FIELDS(action.existing) if action.existing is not None else None
    return (action.op, action.rel, action.dst, _ENTRY_FIELDS(action.src), action.methods, action.dst_dev,
            action.in_setgid, existing)


def _action(job: tuple) -> Action:
    op, rel, dst, src, methods, dst_dev, in_setgid, existing = job
    return Action(op, rel, dst, Entry(*src), methods=methods, dst_dev=dst_dev, in_setgid=in_setgid,
                  existing=Entry(*existing) if existing is not None else None)


class _Recorder(NullSink):
    """A worker's sink: events in order, with the index of the job they belong to."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.index = 0

    def finished(self, action: Action, method, nbytes: int) -> None:
        self.events.append(("finished", self.index, method, nbytes))

    def failed(self, where: str, message: str) -> None:
        self.events.append(("failed", where, message))

    def warned(self, message: str) -> None:
        self.events.append(("warned", message))


def _worker_main(conn: "Connection", config: Config, is_root: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop; files finish whole
    recorder = _Recorder()
    executor = Executor(config, recorder, is_root=is_root)
    try:
        while (jobs := conn.recv()) is not None:
            recorder.events = []
            executor.stats = Stats()
            for recorder.index, job in enumerate(jobs):
                executor.execute(_action(job))
            stats = executor.stats
            conn.send((recorder.events, [getattr(stats, c) for c in _COUNTERS], dict(stats.by_method)))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the parent went away or stopped us, or SIGTERM: the current file cleaned up after itself


@dataclass
class _Worker:
    process: "Process"
    conn: "Connection"
    pending: deque = field(default_factory=deque)  # batches sent, results not yet read


class ParallelExecutor(Executor):
    def __init__(self, config: Config, sink: Sink | None = None, jobs: int = 2, is_root: bool | None = None):
        super().__init__(config, sink, is_root=is_root)
        self.jobs = jobs
        self._batch: list[Action] = []
        self._workers: list[_Worker] = []
        self._started = False

    def run(self, actions: Iterable[Action]) -> Stats:
        try:
            return super().run(actions)
        finally:
            self._stop()  # also on Ctrl-C: workers finish their current files, leaving no temp files

    def submit_copy(self, action: Action) -> None:
        self._batch.append(action)
        if len(self._batch) >= BATCH:
            self._send()

    def drain(self) -> None:
        try:
            if self._batch:
                self._send()
            while any(w.pending for w in self._workers):
                self._collect()
        finally:
            self._stop()

    def _send(self) -> None:
        """Hand the current batch to the least busy worker; forks them at the first full batch."""
        batch, self._batch = self._batch, []
        if not self._started and len(batch) >= BATCH:
            self._start()
        jobs = [_job(a) for a in batch] if self._workers else []
        while self._workers:
            idle = [w for w in self._workers if len(w.pending) < IN_FLIGHT]
            if not idle:
                self._collect()
                continue
            worker = min(idle, key=lambda w: len(w.pending))
            try:
                worker.conn.send(jobs)
            except OSError:  # it died since its last answer: its queued batches are lost, not this one
                self._lost(worker)
                continue
            worker.pending.append(batch)
            return
        for action in batch:  # a small run, or every worker died: copy here
            self.execute(action)

    def _start(self) -> None:
        self._started = True
        import multiprocessing  # only runs with enough files to share pay for it

        context = multiprocessing.get_context("fork")
        for _ in range(self.jobs):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_worker_main, args=(child_end, self.config, self.meta.is_root),
                                      daemon=True)
            process.start()
            child_end.close()
            self._workers.append(_Worker(process, parent_end))

    def _collect(self) -> None:
        """Read at least one batch's results and replay them."""
        from multiprocessing.connection import wait

        busy = {w.conn: w for w in self._workers if w.pending}
        for conn in wait(list(busy)):
            worker = busy[conn]
            try:
                events, counters, by_method = conn.recv()
            except (EOFError, OSError):
                self._lost(worker)
                continue
            batch = worker.pending.popleft()
            for name, value in zip(_COUNTERS, counters):
                setattr(self.stats, name, getattr(self.stats, name) + value)
            self.stats.by_method.update(by_method)
            for event in events:
                if event[0] == "finished":
                    self.sink.finished(batch[event[1]], event[2], event[3])
                elif event[0] == "failed":
                    self.sink.failed(event[1], event[2])
                else:
                    self.sink.warned(event[1])

    def _lost(self, worker: _Worker) -> None:
        """A worker died: the files it had are failures (it may have half-done them); others carry on."""
        self._workers.remove(worker)
        worker.conn.close()
        worker.process.join()
        for lost in worker.pending:
            for action in lost:
                remove_temps_of(action.dst, worker.process.pid)
                self.stats.failed += 1
                self.sink.failed(action.src.path, "copy process died")
        worker.pending.clear()

    def _stop(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
            worker.conn.close()
        for worker in self._workers:
            worker.process.join()
        self._workers = []
