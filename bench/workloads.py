"""The workloads: for each, zcp and its peers as commands, and a check that each produced a right copy."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.data import Dataset, Unavailable, human, same_samples, signature, spread
from bench.measure import Check, Command, Tool
from tools.local_sshd import HOST

SHUTIL_COPYFILE = "import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])"
SHUTIL_COPYTREE = "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], symlinks=True)"
ZCP_METHODS = ("reflink", "copy_file_range", "sendfile", "splice", "rw")
FAST_RUNS_FACTOR = 4  # startup workloads take milliseconds: more runs for a steadier median


@dataclass(frozen=True)
class Workload:
    title: str
    tools: tuple[Tool, ...]
    check: Check
    runs_factor: int = 1


@dataclass(frozen=True)
class Context:
    data: Dataset
    zcp: str  # the zcp executable

    @property
    def scratch(self) -> Path:
        return self.data.ws.root


def one(*argv: str | Path) -> Command:
    return pipe(argv)


def pipe(*stages: tuple[str | Path, ...], into: Path | None = None) -> Command:
    return Command(tuple(tuple(str(a) for a in stage) for stage in stages), into)


def slash(path: Path) -> str:
    """rsync-style "the contents of" spelling."""
    return f"{path}/"


def tar_pipe(folder: Path, member: str, dst: Path) -> Tool:
    """``tar -C folder -cf - member | tar -C dst -xf -``, with ``dst`` made before the timed run."""
    command = pipe(("tar", "-C", folder, "-cf", "-", member), ("tar", "-C", dst, "-xf", "-"))
    return Tool("tar | tar", command, dst, dst.mkdir)


def copy_of(tree: Path, dst: Path) -> Callable[[], None]:
    return lambda: subprocess.run(["cp", "-a", str(tree), str(dst)], check=True)


def sync_fs(path: Path) -> Callable[[], None]:
    # Flush the loop-mounted fs between runs, so one run's writeback does not land in the next.
    return lambda: subprocess.run(["sync", "-f", str(path)], check=True)


def _guarded(check: Callable[[Path], str | None]) -> Check:
    def guarded(dst: Path | None) -> str | None:
        if dst is None:
            return None
        try:
            return check(dst)
        except OSError as exc:
            return f"{exc.filename}: {exc.strerror}"

    return guarded


def file_check(src: Path, offsets: tuple[int, ...]) -> Check:
    """The copy is ``dst`` itself, or ``dst/<name>`` when the tool made a folder (tar, stream receivers)."""
    return _guarded(lambda dst: same_samples(src, dst / src.name if dst.is_dir() else dst, offsets))


def tree_check(src: Path, changed: tuple[str, ...] = ()) -> Check:
    expected = signature(src)

    def check(dst: Path) -> str | None:
        got = signature(dst)
        if got != expected:
            return f"{got}, expected {expected}"
        for rel in changed:
            if (src / rel).read_bytes() != (dst / rel).read_bytes():
                return f"{rel} was not updated"
        return None

    return _guarded(check)


def sparse_check(src: Path, offsets: tuple[int, ...]) -> Check:
    allowed = 4 * src.stat().st_blocks * 512 + (1 << 20)

    def check(dst: Path) -> str | None:
        allocated = dst.stat().st_blocks * 512
        if allocated > allowed:
            return f"{human(allocated)} allocated: holes were filled"
        return same_samples(src, dst, offsets)

    return _guarded(check)


def no_output(_: Path | None) -> str | None:
    return None


# --- workloads ----------------------------------------------------------------------------------


def file_copy(ctx: Context) -> Workload:
    big, dst, zcp = ctx.data.big, ctx.scratch / "out.bin", ctx.zcp
    return Workload(
        f"one {human(big.stat().st_size)} file",
        (
            Tool("zcp", one(zcp, big, dst), dst, subject=True),
            Tool("cp", one("cp", big, dst), dst),
            Tool("cp --reflink=never", one("cp", "--reflink=never", big, dst), dst),
            Tool("dd bs=1M", one("dd", f"if={big}", f"of={dst}", "bs=1M", "status=none"), dst),
            Tool("shutil.copyfile", one(sys.executable, "-c", SHUTIL_COPYFILE, big, dst), dst),
        ),
        file_check(big, spread(big.stat().st_size)),
    )


def reflink_copy(ctx: Context) -> Workload:
    big = ctx.data.big_on_xfs
    dst = big.parent / "out.bin"
    flush = sync_fs(big.parent)
    return Workload(
        f"reflink copy of {human(big.stat().st_size)} on xfs",
        (
            Tool("zcp", one(ctx.zcp, big, dst), dst, flush, subject=True),
            Tool("cp --reflink=always", one("cp", "--reflink=always", big, dst), dst, flush),
        ),
        file_check(big, spread(big.stat().st_size)),
    )


def _tree_title(ctx: Context, what: str) -> str:
    return f"{what} ({ctx.data.sizes.files} files, {human(ctx.data.tree_bytes)})"


def tree_copy(ctx: Context) -> Workload:
    tree, dst, zcp = ctx.data.tree, ctx.scratch / "tree-out", ctx.zcp
    return Workload(
        _tree_title(ctx, "tree copy"),
        (
            Tool("zcp -a", one(zcp, "-a", slash(tree), slash(dst)), dst, subject=True),
            Tool("cp -a", one("cp", "-a", tree, dst), dst),
            Tool("rsync -a", one("rsync", "-a", slash(tree), slash(dst)), dst),
            tar_pipe(tree, ".", dst),
            Tool("shutil.copytree", one(sys.executable, "-c", SHUTIL_COPYTREE, tree, dst), dst),
        ),
        tree_check(tree),
    )


def resync_noop(ctx: Context) -> Workload:
    tree, dst = ctx.data.tree, ctx.scratch / "tree-out"
    ready = copy_of(tree, dst)
    return Workload(
        _tree_title(ctx, "no-op re-sync"),
        (
            Tool("zcp -a", one(ctx.zcp, "-a", slash(tree), slash(dst)), dst, ready, subject=True),
            Tool("rsync -a", one("rsync", "-a", slash(tree), slash(dst)), dst, ready),
        ),
        tree_check(tree),
    )


def resync_changed(ctx: Context) -> Workload:
    changed, rels = ctx.data.changed
    dst = ctx.scratch / "tree-out"
    ready = copy_of(ctx.data.tree, dst)  # the destination holds the tree as it was before the change
    return Workload(
        _tree_title(ctx, f"re-sync, {len(rels)} files changed"),
        (
            Tool("zcp -a", one(ctx.zcp, "-a", slash(changed), slash(dst)), dst, ready, subject=True),
            Tool("rsync -a", one("rsync", "-a", slash(changed), slash(dst)), dst, ready),
        ),
        tree_check(changed, rels),
    )


def pipe_file(ctx: Context) -> Workload:
    big, dst, zcp = ctx.data.big, ctx.scratch / "pipe-out", ctx.zcp
    return Workload(
        f"pipe, one {human(big.stat().st_size)} file",
        (
            Tool("zcp F - | zcp - D", pipe((zcp, big, "-"), (zcp, "-", dst)), dst, subject=True),
            Tool("cat | cat", pipe(("cat", big), ("cat",), into=dst), dst),
            Tool("pv -q | pv -q", pipe(("pv", "-q", big), ("pv", "-q"), into=dst), dst),
            tar_pipe(big.parent, big.name, dst),
        ),
        file_check(big, spread(big.stat().st_size)),
    )


def pipe_tree(ctx: Context) -> Workload:
    tree, dst, zcp = ctx.data.tree, ctx.scratch / "pipe-out", ctx.zcp
    return Workload(
        _tree_title(ctx, "pipe, tree"),
        (
            # -a on both ends: tar, run as root, also carries modes, times and owners
            Tool("zcp -a T/ - | zcp -a - D/", pipe((zcp, "-a", slash(tree), "-"), (zcp, "-a", "-", slash(dst))),
                 dst, subject=True),
            tar_pipe(tree, ".", dst),
        ),
        tree_check(tree),
    )


def _over_ssh(ctx: Context, command: str) -> tuple[str, ...]:
    """``command`` run on the other end of the private sshd (this machine, through ssh)."""
    return (*shlex.split(ctx.data.ws.sshd.rsh), HOST, command)


def _zcp_to(ctx: Context, *args: str | Path) -> Command:
    """zcp with a HOST:PATH operand, reaching the private sshd and the same zcp there."""
    return one(ctx.zcp, "-e", ctx.data.ws.sshd.rsh, "--remote-zcp", ctx.zcp, *args)


def ssh_file(ctx: Context) -> Workload:
    big, dst = ctx.data.big, ctx.scratch / "ssh-out"
    return Workload(
        f"over ssh to 127.0.0.1, one {human(big.stat().st_size)} file",
        (
            Tool("zcp F host:D", _zcp_to(ctx, big, f"{HOST}:{dst}"), dst, subject=True),
            Tool("cat | ssh cat", pipe(("cat", big), _over_ssh(ctx, f"cat > {shlex.quote(str(dst))}")), dst),
            Tool("rsync -e ssh", one("rsync", "-e", ctx.data.ws.sshd.rsh, big, f"{HOST}:{dst}"), dst),
        ),
        file_check(big, spread(big.stat().st_size)),
    )


def ssh_tree(ctx: Context) -> Workload:
    tree, dst = ctx.data.tree, ctx.scratch / "ssh-out"
    untar = f"tar -C {shlex.quote(str(dst))} -xf -"
    return Workload(
        _tree_title(ctx, "tree over ssh to 127.0.0.1"),
        (
            Tool("zcp -a T/ host:D/", _zcp_to(ctx, "-a", slash(tree), f"{HOST}:{slash(dst)}"), dst, subject=True),
            Tool("tar | ssh tar", pipe(("tar", "-C", tree, "-cf", "-", "."), _over_ssh(ctx, untar)), dst, dst.mkdir),
            Tool("rsync -a -e ssh", one("rsync", "-a", "-e", ctx.data.ws.sshd.rsh, slash(tree), f"{HOST}:{slash(dst)}"),
                 dst),
        ),
        tree_check(tree),
    )


def verify_file(ctx: Context) -> Workload:
    big, dst, zcp = ctx.data.big, ctx.scratch / "out.bin", ctx.zcp
    return Workload(
        f"--verify overhead, one {human(big.stat().st_size)} file",
        (
            Tool("zcp --verify", one(zcp, "--verify", big, dst), dst, subject=True),
            Tool("zcp", one(zcp, big, dst), dst),
        ),
        file_check(big, spread(big.stat().st_size)),
    )


def verify_tree(ctx: Context) -> Workload:
    tree, dst, zcp = ctx.data.tree, ctx.scratch / "tree-out", ctx.zcp
    return Workload(
        _tree_title(ctx, "--verify overhead, tree"),
        (
            Tool("zcp -a --verify", one(zcp, "-a", "--verify", slash(tree), slash(dst)), dst, subject=True),
            Tool("zcp -a", one(zcp, "-a", slash(tree), slash(dst)), dst),
        ),
        tree_check(tree),
    )


def sparse_copy(ctx: Context) -> Workload:
    sparse, dst = ctx.data.sparse, ctx.scratch / "sparse-out.bin"
    offsets = ctx.data.sparse_data_offsets + spread(sparse.stat().st_size)
    data = len(ctx.data.sparse_data_offsets) * (1 << 20)
    return Workload(
        f"sparse {human(sparse.stat().st_size)} file ({human(data)} of data)",
        (
            Tool("zcp", one(ctx.zcp, sparse, dst), dst, subject=True),
            Tool("cp --sparse=auto", one("cp", "--sparse=auto", sparse, dst), dst),
        ),
        sparse_check(sparse, offsets),
    )


def startup_version(ctx: Context) -> Workload:
    return Workload(
        "startup: --version",
        (
            Tool("zcp --version", one(ctx.zcp, "--version"), subject=True),
            Tool("cp --version", one("cp", "--version")),
        ),
        no_output,
        runs_factor=FAST_RUNS_FACTOR,
    )


def startup_small(ctx: Context) -> Workload:
    small, dst = ctx.data.small, ctx.scratch / "small-out.bin"
    return Workload(
        f"startup: one {human(small.stat().st_size)} file",
        (Tool("zcp", one(ctx.zcp, small, dst), dst, subject=True), Tool("cp", one("cp", small, dst), dst)),
        file_check(small, (0,)),
        runs_factor=FAST_RUNS_FACTOR,
    )


WORKLOADS: dict[str, Callable[[Context], Workload]] = {
    "file": file_copy,
    "reflink": reflink_copy,
    "tree": tree_copy,
    "resync-noop": resync_noop,
    "resync-1pct": resync_changed,
    "pipe-file": pipe_file,
    "pipe-tree": pipe_tree,
    "ssh-file": ssh_file,
    "ssh-tree": ssh_tree,
    "verify-file": verify_file,
    "verify-tree": verify_tree,
    "sparse": sparse_copy,
    "startup-version": startup_version,
    "startup-4k": startup_small,
}


def method_tools(ctx: Context) -> tuple[list[Tool], dict[str, str]]:
    """One zcp run per ``--method`` on the big file (reflink on xfs, the rest on the scratch fs).

    Returns the tools and, per method that cannot run here, the reason.
    """
    tools: list[Tool] = []
    skipped: dict[str, str] = {}
    for method in ZCP_METHODS:
        if method == "reflink":
            try:
                src = ctx.data.big_on_xfs
            except Unavailable as exc:
                skipped[method] = str(exc)
                continue
        else:
            src = ctx.data.big
        dst = src.parent / "method-out.bin"
        tools.append(Tool(method, one(ctx.zcp, f"--method={method}", src, dst), dst, sync_fs(src.parent)))
    return tools, skipped


def method_check(ctx: Context) -> Check:
    big = ctx.data.big
    return file_check(big, spread(big.stat().st_size))
