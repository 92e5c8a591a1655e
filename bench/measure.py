"""Time subprocess pipelines: wall clock and user+sys CPU from wait4, interleaved rounds, strace profiles."""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Check = Callable[[Path | None], str | None]  # None when the tool's output is right, else what is wrong


class RunFailed(Exception):
    """A run exited non-zero, timed out, could not start, or produced a wrong result."""


@dataclass(frozen=True)
class Command:
    """A pipeline of argv stages; the last stage's stdout goes to ``stdout`` (a file) or nowhere."""

    stages: tuple[tuple[str, ...], ...]
    stdout: Path | None = None


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float  # user + sys seconds of every stage, including the children each stage reaped


@dataclass(frozen=True)
class Tool:
    """One contender in a workload. ``dst`` is removed before every run and after the last one."""

    label: str
    command: Command
    dst: Path | None = None
    prepare: Callable[[], None] | None = None  # runs after ``dst`` is removed, outside the timed region
    subject: bool = False  # the zcp row that ratios are taken from


@dataclass
class Outcome:
    tool: Tool
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def low(self) -> float:
        return min(s.wall for s in self.samples)

    @property
    def high(self) -> float:
        return max(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)


def run(command: Command, timeout: float) -> Sample:
    """Run a pipeline once; raise RunFailed unless every stage exits 0 within ``timeout`` seconds."""
    stderrs = [tempfile.TemporaryFile() for _ in command.stages]
    sink = open(command.stdout, "wb") if command.stdout else subprocess.DEVNULL
    procs: list[subprocess.Popen] = []
    try:
        start = time.perf_counter()
        _spawn(command.stages, sink, stderrs, procs)
        cpu, timed_out = _reap(procs, timeout)
        wall = time.perf_counter() - start
        if timed_out:
            raise RunFailed(f"{_name(command.stages[-1])}: timed out after {timeout:.0f} s")
        failed = [(argv, p, err) for argv, p, err in zip(command.stages, procs, stderrs) if p.returncode]
        if failed:
            raise RunFailed(_failure_message(failed))
        return Sample(wall, cpu)
    finally:
        _kill_and_reap(procs)
        if command.stdout:
            sink.close()
        for err in stderrs:
            err.close()


def _spawn(stages, sink, stderrs, procs: list[subprocess.Popen]) -> None:
    stdin = subprocess.DEVNULL
    for i, argv in enumerate(stages):
        last = i == len(stages) - 1
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=sink if last else subprocess.PIPE, stderr=stderrs[i])
        except OSError as exc:
            raise RunFailed(f"{_name(argv)}: {exc.strerror or exc}") from exc
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()  # the next stage holds it now; our copy would hide EOF / SIGPIPE
        procs.append(proc)
        stdin = proc.stdout


def _reap(procs: list[subprocess.Popen], timeout: float) -> tuple[float, bool]:
    """Wait for every stage, summing its rusage; SIGKILL all that are left after ``timeout``.

    A stage is first waited for without being reaped (WNOWAIT), so the killer can never hit a pid the
    kernel has already handed to someone else.
    """
    lock = threading.Lock()
    unreaped = {p.pid for p in procs}
    timed_out = threading.Event()

    def kill_rest() -> None:
        with lock:
            timed_out.set()
            for pid in unreaped:
                os.kill(pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill_rest)
    timer.start()
    cpu = 0.0
    try:
        for proc in procs:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            with lock:
                unreaped.discard(proc.pid)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
    finally:
        timer.cancel()
    return cpu, timed_out.is_set()


def _kill_and_reap(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


def _name(argv: Sequence[str]) -> str:
    return os.path.basename(argv[0])


def _failure_message(failed) -> str:
    # An upstream stage killed by SIGPIPE is a symptom; the stage that says why is the cause.
    for argv, proc, err in reversed(failed):
        err.seek(0)
        lines = [line.strip() for line in err.read().decode(errors="replace").splitlines() if line.strip()]
        if lines:
            said = lines[-1]
            return said if said.startswith(f"{_name(argv)}:") else f"{_name(argv)}: {said}"
    argv, proc, _ = failed[-1]
    return f"{_name(argv)}: exit status {proc.returncode}"


def remove(path: Path | None) -> None:
    if path is None:
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run_tool(tool: Tool, check: Check, timeout: float) -> Sample:
    """One measured run: clean destination and prepare (untimed), run (timed), check the result (untimed)."""
    remove(tool.dst)
    if tool.prepare:
        tool.prepare()
    sample = run(tool.command, timeout)
    problem = check(tool.dst)
    if problem:
        raise RunFailed(f"{_name(tool.command.stages[-1])}: wrong result: {problem}")
    return sample


def measure(tools: Sequence[Tool], check: Check, runs: int, warmup: int, timeout: float) -> list[Outcome]:
    """Run all tools in rounds, one run each per round, first tool rotating, so drift hits all alike.

    The warm-up rounds are not recorded; a tool that fails once is dropped and keeps its error.
    """
    outcomes = [Outcome(tool) for tool in tools]
    try:
        for rnd in range(warmup + runs):
            live = [o for o in outcomes if o.error is None]
            shift = rnd % len(live) if live else 0
            for outcome in live[shift:] + live[:shift]:
                try:
                    sample = run_tool(outcome.tool, check, timeout)
                except RunFailed as exc:
                    outcome.error = str(exc)
                    outcome.samples.clear()
                    continue
                if rnd >= warmup:
                    outcome.samples.append(sample)
    finally:
        for tool in tools:
            remove(tool.dst)
    return outcomes


# --- strace -------------------------------------------------------------------------------------

READS = frozenset({"read", "pread64", "readv", "preadv", "preadv2"})
WRITES = frozenset({"write", "pwrite64", "writev", "pwritev", "pwritev2"})
ZERO_COPY = ("copy_file_range", "sendfile", "splice")
_SENDFILE_ALIASES = {"sendfile64": "sendfile"}
_CALL = re.compile(r"^(?:\d+\s+)?(?:<\.\.\. (\w+) resumed>|(\w+)\()")
_RETURN = re.compile(r"\)\s+=\s+(-?\d+)(?:\s|$)")
_CLONE = re.compile(r"\bioctl\(\d+, (?:BTRFS_IOC_CLONE or )?FICLONE(?:RANGE)?\b")


@dataclass(frozen=True)
class SyscallProfile:
    """What ``strace -f -C`` saw: the summary table plus the bytes each data syscall returned."""

    calls: dict[str, int]
    seconds: dict[str, float]
    moved: dict[str, int]  # "read/write" (bytes written), copy_file_range, sendfile, splice
    clones: int  # successful FICLONE / FICLONERANGE ioctls

    def count(self, names: frozenset[str] | tuple[str, ...]) -> int:
        return sum(self.calls.get(n, 0) for n in names)

    def top(self, n: int = 4) -> list[tuple[str, int]]:
        ranked = sorted(self.seconds, key=self.seconds.__getitem__, reverse=True)
        return [(name, self.calls[name]) for name in ranked[:n]]

    @property
    def path(self) -> str:
        """The kernel path that moved the file's bytes: the family that returned most bytes, or FICLONE."""
        family, nbytes = max(self.moved.items(), key=lambda kv: kv[1], default=("", 0))
        if self.clones and nbytes < (1 << 20):
            return "FICLONE"
        return family if nbytes else "none"


def strace_profile(command: Command, out: Path, timeout: float) -> SyscallProfile:
    """Run a one-stage command under ``strace -f -C`` and parse its trace and summary."""
    (argv,) = command.stages
    traced = Command((("strace", "-f", "-C", "-qq", "-s", "0", "-o", str(out), *argv),), command.stdout)
    try:
        run(traced, timeout)
        return parse_strace(out.read_text(errors="replace"))
    finally:
        out.unlink(missing_ok=True)


def parse_strace(text: str) -> SyscallProfile:
    trace, _, summary = text.partition("% time")
    moved: Counter[str] = Counter()
    clones = 0
    for line in trace.splitlines():
        call = _CALL.match(line)
        ret = _RETURN.search(line)
        if not call or not ret or int(ret.group(1)) < 0:
            continue
        name = call.group(1) or call.group(2)
        name = _SENDFILE_ALIASES.get(name, name)
        if name in WRITES:
            moved["read/write"] += int(ret.group(1))
        elif name in ZERO_COPY:
            moved[name] += int(ret.group(1))
        elif name == "ioctl" and _CLONE.search(line):
            clones += 1
    calls: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for line in summary.splitlines():
        cols = line.split()
        if len(cols) < 5 or not cols[3].isdigit() or cols[-1] == "total":
            continue
        name = _SENDFILE_ALIASES.get(cols[-1], cols[-1])
        calls[name] = calls.get(name, 0) + int(cols[3])
        seconds[name] = seconds.get(name, 0.0) + float(cols[1])
    return SyscallProfile(calls, seconds, dict(moved), clones)
