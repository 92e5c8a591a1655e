"""python -m bench: zcp against cp, rsync, tar, pv and shutil, side by side, in one command."""

from __future__ import annotations

import argparse
import compileall
import contextlib
import shutil
import sys
from pathlib import Path

from bench.data import FULL, QUICK, Dataset, Sizes, Unavailable, Workspace, find_mkdata, fstype, human
from bench.measure import Check, RunFailed, SyscallProfile, Tool, measure, remove, strace_profile
from bench.report import MethodResult, Report, WorkloadResult, machine_facts, render
from bench.workloads import FAST_RUNS_FACTOR, WORKLOADS, Context, method_check, method_tools

EFFICIENCY = "efficiency"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [*WORKLOADS, EFFICIENCY]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny data (500 files, 16 MiB) for a smoke run")
    parser.add_argument("--dir", type=Path, help="make the data in a fresh folder inside DIR "
                        "(default: a fresh tmpfs mount when root, else a folder under /dev/shm)")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per tool (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded rounds before the runs (default 1)")
    parser.add_argument("--only", nargs="+", choices=names, metavar="WORKLOAD",
                        help=f"run only these: {', '.join(names)}")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the tables as markdown")
    parser.add_argument("--zcp", help="the zcp executable (default: next to this python, else on PATH)")
    parser.add_argument("--mkdata", help="the tree generator (default: $ZCP_BENCH_MKDATA, else "
                        "../shared/bench/mkdata.py beside the repo)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a run is killed")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    return args


def find_zcp(explicit: str | None) -> str:
    beside = Path(sys.executable).parent / "zcp"
    if explicit:
        return str(Path(explicit).absolute()) if "/" in explicit else explicit
    return str(beside) if beside.exists() else shutil.which("zcp") or "zcp"


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run_workloads(ctx: Context, keys: list[str], args: argparse.Namespace) -> list[WorkloadResult]:
    results = []
    for key in keys:
        try:
            workload = WORKLOADS[key](ctx)
        except Unavailable as exc:
            results.append(WorkloadResult(key, unavailable=str(exc)))
            continue
        log(f"{workload.title}: {', '.join(t.label for t in workload.tools)}")
        outcomes = measure(workload.tools, workload.check, args.runs * workload.runs_factor, args.warmup,
                           args.timeout)
        results.append(WorkloadResult(workload.title, outcomes))
    return results


def run_methods(ctx: Context, args: argparse.Namespace) -> tuple[list[MethodResult], list[str]]:
    """Time each zcp --method, then run each once more under strace to see which syscalls moved the bytes."""
    tools, skipped = method_tools(ctx)
    log(f"zcp --method: {', '.join(t.label for t in tools)}")
    check = method_check(ctx)
    results = []
    for outcome in measure(tools, check, args.runs, args.warmup, args.timeout):
        result = MethodResult(outcome, fstype(outcome.tool.dst.parent))
        if outcome.ok:
            result.profile, result.profile_error = traced_run(outcome.tool, check, ctx.scratch / "strace.txt",
                                                              args.timeout)
        results.append(result)
    notes = [f"{method}: not measured ({reason})" for method, reason in skipped.items()]
    return results, notes


def traced_run(tool: Tool, check: Check, out: Path, timeout: float) -> tuple[SyscallProfile | None, str | None]:
    """A syscall profile of one more (untimed) run, or why there is none."""
    remove(tool.dst)
    try:
        profile = strace_profile(tool.command, out, timeout)
        problem = check(tool.dst)
    except RunFailed as exc:
        return None, str(exc)
    finally:
        remove(tool.dst)
    return (None, problem) if problem else (profile, None)


def settings(args: argparse.Namespace, sizes: Sizes, scratch_fs: str) -> list[str]:
    return [
        f"data: {sizes.files}-file tree from mkdata.py (seed 1), a {human(sizes.big)} random file, "
        f"a {human(sizes.sparse)} sparse file, a 4 KiB file; all on {scratch_fs} (reflink workloads: a "
        "loop-mounted xfs with reflink=1 whose image lives there too)",
        "page cache: hot. Caches are never dropped; every tool reads data that is in memory (on tmpfs it "
        "lives there)",
        f"runs: {args.warmup} warm-up round(s), then {args.runs} measured runs per tool "
        f"({args.runs * FAST_RUNS_FACTOR} for startup); tools interleaved, one run each per round, "
        "the first tool rotating from round to round",
        "the destination is removed (and re-seeded for re-syncs) before every run, outside the timed region; "
        "every run's output is checked (sizes, sampled bytes, tree counts) and a wrong result makes the row n/a",
        "median s / min–max s: wall clock of the whole pipeline; CPU s: median user+sys of every stage "
        "(os.wait4), including the children a stage reaps",
        "zcp/peer: the zcp row's median over the peer's median (for --verify: with over without)",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    keys = args.only or [*WORKLOADS, EFFICIENCY]
    zcp = find_zcp(args.zcp)
    mkdata = find_mkdata(args.mkdata)
    # As an installed package would be: compiled once, not at every start (PYTHONDONTWRITEBYTECODE
    # or an editable install would otherwise charge every zcp run for compiling its modules).
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "src", quiet=1)
    markdown = args.markdown.absolute() if args.markdown else None
    # Tools run inside the scratch folder, so a relative path one of them writes (say a zcp that takes
    # "-" for a file name) lands there and not in the caller's tree.
    with Workspace(sizes, args.dir) as ws, contextlib.chdir(ws.root):
        ctx = Context(Dataset(ws, mkdata, log), zcp)
        log(f"scratch: {ws.root} ({ws.fstype}); zcp: {zcp}")
        results = run_workloads(ctx, [k for k in keys if k != EFFICIENCY], args)
        methods, notes = run_methods(ctx, args) if EFFICIENCY in keys else ([], [])
        report = Report(machine_facts(zcp, ws.fstype), settings(args, sizes, ws.fstype), results, methods, notes,
                        sizes.big)
    print(render(report))
    if markdown:
        markdown.write_text(render(report, markdown=True))
        log(f"markdown written to {markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
