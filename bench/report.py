"""Turn measured outcomes into tables: aligned text for the terminal, markdown for docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field

from bench.data import GiB, human
from bench.measure import ZERO_COPY, Outcome, READS, WRITES, SyscallProfile

MAX_ERROR = 90
CLAIM_CPU_SAVING = 0.30  # published: 30–50% less CPU per byte than read/write
CLAIM_SPEEDUP = 1.8  # published: ~2x the throughput of read/write


@dataclass
class WorkloadResult:
    title: str
    outcomes: list[Outcome] = field(default_factory=list)
    unavailable: str | None = None


@dataclass
class MethodResult:
    outcome: Outcome
    fs: str
    profile: SyscallProfile | None = None
    profile_error: str | None = None


@dataclass
class Report:
    facts: list[tuple[str, str]]
    settings: list[str]
    workloads: list[WorkloadResult]
    methods: list[MethodResult]
    method_notes: list[str]
    bytes_per_method_run: int


def machine_facts(zcp: str, scratch_fs: str) -> list[tuple[str, str]]:
    def first_line(*argv: str) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError as exc:
            return f"not available ({exc.strerror})"
        lines = (done.stdout or done.stderr).strip().splitlines()
        return lines[0] if done.returncode == 0 and lines else f"not available ({_last(done.stderr)})"

    return [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} cores"),
        ("memory", _mem_total()),
        ("kernel", platform.release()),
        ("scratch filesystem", scratch_fs),
        ("python", platform.python_version()),
        ("zcp", first_line(zcp, "--version")),
        ("cp", first_line("cp", "--version")),
        ("rsync", first_line("rsync", "--version")),
        ("tar", first_line("tar", "--version")),
        ("pv", first_line("pv", "--version")),
        ("strace", first_line("strace", "-V")),
    ]


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total() -> str:
    with open("/proc/meminfo") as f:
        kib = int(f.readline().split()[1])
    return f"{kib / (1 << 20):.1f} GiB"


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def _na(error: str | None) -> str:
    text = error or "no runs"
    return f"n/a ({text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + '…'})"


def _s(seconds: float) -> str:
    return f"{seconds:.3f}"


# --- rows ---------------------------------------------------------------------------------------

MAIN_HEADERS = ("workload", "tool", "median s", "min–max s", "CPU s", "zcp/peer")


def main_rows(results: list[WorkloadResult]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for result in results:
        if result.unavailable:
            rows.append((result.title, "", _na(result.unavailable), "", "", ""))
            continue
        subject = next(o for o in result.outcomes if o.tool.subject)
        for i, outcome in enumerate(result.outcomes):
            title = result.title if i == 0 else ""
            if not outcome.ok:
                rows.append((title, outcome.tool.label, _na(outcome.error), "", "", ""))
                continue
            if outcome is subject:
                ratio = "—"
            elif subject.ok:
                ratio = f"{subject.median / outcome.median:.2f}×"
            else:
                ratio = "n/a"
            span = f"{_s(outcome.low)}–{_s(outcome.high)}"
            rows.append((title, outcome.tool.label, _s(outcome.median), span, _s(outcome.cpu), ratio))
    return rows


EFFICIENCY_HEADERS = ("method", "fs", "median s", "min–max s", "CPU s", "CPU s/GiB", "GiB/s", "CPU vs rw",
                      "speed vs rw")


def _rw(methods: list[MethodResult]) -> Outcome | None:
    return next((m.outcome for m in methods if m.outcome.tool.label == "rw" and m.outcome.ok), None)


def efficiency_rows(methods: list[MethodResult], nbytes: int) -> list[tuple[str, ...]]:
    gib = nbytes / GiB
    rw = _rw(methods)
    rows: list[tuple[str, ...]] = []
    for m in methods:
        o = m.outcome
        if not o.ok:
            rows.append((o.tool.label, m.fs, _na(o.error), "", "", "", "", "", ""))
            continue
        cpu_vs = f"{o.cpu / rw.cpu - 1:+.0%}" if rw else "n/a"
        speed_vs = f"{rw.median / o.median:.2f}×" if rw else "n/a"
        rows.append((o.tool.label, m.fs, _s(o.median), f"{_s(o.low)}–{_s(o.high)}", _s(o.cpu),
                     f"{o.cpu / gib:.3f}", f"{gib / o.median:.2f}", cpu_vs, speed_vs))
    return rows


SYSCALL_HEADERS = ("method", "bytes moved by", "read", "write", "copy_file_range", "sendfile", "splice",
                   "FICLONE", "top syscalls by time (calls)")


def syscall_rows(methods: list[MethodResult]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for m in methods:
        p = m.profile
        if p is None:
            rows.append((m.outcome.tool.label, _na(m.profile_error or m.outcome.error), *[""] * 7))
            continue
        moved = p.moved.get(p.path, 0)
        path = p.path if p.path in ("FICLONE", "none") else f"{p.path} ({moved / GiB:.2f} GiB)"
        top = ", ".join(f"{name} {calls}" for name, calls in p.top())
        rows.append((m.outcome.tool.label, path, str(p.count(READS)), str(p.count(WRITES)),
                     *(str(p.calls.get(name, 0)) for name in ZERO_COPY), str(p.clones), top))
    return rows


def zero_copy_verdicts(methods: list[MethodResult]) -> list[str]:
    rw = _rw(methods)
    if rw is None:
        return ["rw vs zero-copy: not measured (zcp --method=rw did not run)."]
    lines = []
    for m in methods:
        o = m.outcome
        if o.tool.label not in ZERO_COPY:
            continue
        if not o.ok:
            lines.append(f"{o.tool.label}: not measured.")
            continue
        saving = 1 - o.cpu / rw.cpu
        speedup = rw.median / o.median
        cpu_claim = "meets" if saving >= CLAIM_CPU_SAVING else "does not meet"
        speed_claim = "meets" if speedup >= CLAIM_SPEEDUP else "does not meet"
        cpu = f"{saving:.0%} less" if saving >= 0 else f"{-saving:.0%} more"
        lines.append(
            f"{o.tool.label}: {cpu} CPU per byte than rw ({cpu_claim} the 30–50% claim), "
            f"{speedup:.2f}× its throughput ({speed_claim} the ~2× claim)."
        )
    return lines


# --- rendering ----------------------------------------------------------------------------------


def text_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]
    numeric = [i >= 2 for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if num and not c.startswith("n/a") else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def markdown_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = tuple("---" if i < 2 else "---:" for i in range(len(headers)))
    return "\n".join([line(headers), line(align), *map(line, rows)])


def render(report: Report, markdown: bool = False) -> str:
    table = markdown_table if markdown else text_table
    heading = (lambda s: f"### {s}") if markdown else (lambda s: f"{s}\n{'=' * len(s)}")
    bullet = "- " if markdown else "  "
    parts = [
        heading("Machine"),
        "\n".join(f"{bullet}{k}: {v}" for k, v in report.facts),
        heading("Method"),
        "\n".join(f"{bullet}{s}" for s in report.settings),
        heading("zcp against its peers (zcp/peer < 1: zcp is faster)"),
        table(MAIN_HEADERS, main_rows(report.workloads)),
    ]
    if report.methods or report.method_notes:
        nbytes = report.bytes_per_method_run
        parts += [
            heading(f"CPU and throughput per zcp --method (one {human(nbytes)} file)"),
            table(EFFICIENCY_HEADERS, efficiency_rows(report.methods, nbytes)),
            heading("Syscalls per method (strace -f -C: bytes returned per syscall, call counts)"),
            table(SYSCALL_HEADERS, syscall_rows(report.methods)),
            heading("read/write against zero-copy"),
            "\n".join(f"{bullet}{s}" for s in [*zero_copy_verdicts(report.methods), *report.method_notes]),
        ]
    return "\n\n".join(parts) + "\n"
