"""Benchmark data and where it lives: a scratch workspace (tmpfs), an xfs loop mount, the files to copy."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tools.local_sshd import LocalSshd, SshdUnavailable

REPO_ROOT = Path(__file__).resolve().parent.parent
MKDATA_ENV = "ZCP_BENCH_MKDATA"
# The repo and shared/ sit side by side on every machine, CI included.
DEFAULT_MKDATA = REPO_ROOT.parent / "shared" / "bench" / "mkdata.py"
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40


class Unavailable(Exception):
    """A workload cannot run here (no root for a loop mount, no mkfs.xfs, ...)."""


@dataclass(frozen=True)
class Sizes:
    files: int  # in the tree from mkdata.py
    big: int  # the single random file
    sparse: int  # apparent size of the sparse file
    tmpfs: str  # cap for the scratch tmpfs (only pages written use memory)
    xfs_image: str


FULL = Sizes(files=20_000, big=GiB, sparse=TiB, tmpfs="8g", xfs_image="4g")
QUICK = Sizes(files=500, big=16 * MiB, sparse=GiB, tmpfs="1g", xfs_image="600m")
SMALL_FILE = 4096
SPARSE_CHUNK = MiB
CHANGED_EVERY = 100  # 1% of the tree's files change for the re-sync workload


def human(n: int) -> str:
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def find_mkdata(explicit: str | None = None) -> Path:
    path = Path(explicit or os.environ.get(MKDATA_ENV) or DEFAULT_MKDATA).absolute()
    if not path.is_file():
        raise SystemExit(f"bench: tree generator not found at {path}; pass --mkdata or set {MKDATA_ENV}")
    return path


def _sh(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.DEVNULL)


def fstype(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True).stdout.strip()


class Workspace:
    """A scratch folder removed on exit: a fresh tmpfs mount when root, else a folder under /dev/shm.

    With ``parent`` the folder is made inside it instead (no mount). The xfs loop mount is made on
    first use, its image inside the scratch folder, and unmounted before the folder goes.
    """

    def __init__(self, sizes: Sizes, parent: Path | None = None):
        self.sizes = sizes
        self._parent = parent
        self._stack = ExitStack()
        self.root = Path()

    def __enter__(self) -> "Workspace":
        self._stack.__enter__()
        try:
            self.root = self._make_root()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)

    def _make_root(self) -> Path:
        if self._parent is None and os.geteuid() == 0:
            point = Path(tempfile.mkdtemp(prefix="zcp-bench-"))
            self._stack.callback(point.rmdir)
            _sh("mount", "-t", "tmpfs", "-o", f"size={self.sizes.tmpfs}", "zcp-bench", point)
            self._stack.callback(_sh, "umount", point)
            return point
        parent = self._parent or Path("/dev/shm")
        root = Path(tempfile.mkdtemp(prefix="zcp-bench-", dir=parent))
        self._stack.callback(_sh, "rm", "-rf", "--one-file-system", root)
        return root

    @property
    def fstype(self) -> str:
        return fstype(self.root)

    @cached_property
    def xfs(self) -> Path:
        """An xfs (reflink=1) loop mount, for the reflink workload."""
        if os.geteuid() != 0:
            raise Unavailable("needs root for an xfs loop mount")
        image = self.root / "xfs.img"
        point = self.root / "xfs"
        point.mkdir()
        try:
            _sh("truncate", "-s", self.sizes.xfs_image, image)
            _sh("mkfs.xfs", "-q", "-f", "-m", "reflink=1", image)
            _sh("mount", "-o", "loop", image, point)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise Unavailable(f"xfs loop mount failed: {exc}") from exc
        self._stack.callback(_sh, "umount", point)
        return point

    @cached_property
    def sshd(self) -> LocalSshd:
        """A private sshd on 127.0.0.1, for the workloads over ssh; stopped before the folder goes."""
        try:
            return self._stack.enter_context(LocalSshd(self.root / "sshd"))
        except SshdUnavailable as exc:
            raise Unavailable(str(exc)) from exc


class Dataset:
    """The source files, each made on first use so ``--only`` builds only what it needs."""

    def __init__(self, ws: Workspace, mkdata: Path, log=lambda _: None):
        self.ws = ws
        self.sizes = ws.sizes
        self._mkdata = mkdata
        self._log = log

    @cached_property
    def tree(self) -> Path:
        root = self.ws.root / "tree"
        self._log(f"making a {self.sizes.files}-file tree with {self._mkdata}")
        _sh(sys.executable, self._mkdata, root, str(self.sizes.files), "1")
        return root

    @cached_property
    def changed(self) -> tuple[Path, tuple[str, ...]]:
        """A copy of the tree with 1% of its files modified and touched, and their relative paths."""
        root = self.ws.root / "tree-changed"
        _sh("cp", "-a", self.tree, root)
        return root, mutate(root, CHANGED_EVERY)

    @cached_property
    def tree_bytes(self) -> int:
        return signature(self.tree).bytes

    @cached_property
    def big(self) -> Path:
        path = self.ws.root / "big.bin"
        self._log(f"writing a {human(self.sizes.big)} random file")
        with open(path, "wb") as f:
            for left in range(self.sizes.big, 0, -64 * MiB):
                f.write(os.urandom(min(left, 64 * MiB)))
        return path

    @cached_property
    def big_on_xfs(self) -> Path:
        path = self.ws.xfs / "big.bin"
        _sh("cp", "--reflink=never", self.big, path)
        _sh("sync", "-f", path)
        return path

    @cached_property
    def sparse(self) -> Path:
        """A file of ``sizes.sparse`` bytes holding a little random data at the start, middle and end."""
        path = self.ws.root / "sparse.bin"
        with open(path, "wb") as f:
            f.truncate(self.sizes.sparse)
            for offset in self.sparse_data_offsets:
                f.seek(offset)
                f.write(os.urandom(SPARSE_CHUNK))
        return path

    @property
    def sparse_data_offsets(self) -> tuple[int, ...]:
        size = self.sizes.sparse
        return (0, size // 3 // MiB * MiB, 2 * size // 3 // MiB * MiB, size - SPARSE_CHUNK)

    @cached_property
    def small(self) -> Path:
        path = self.ws.root / "small.bin"
        path.write_bytes(os.urandom(SMALL_FILE))
        return path


def mutate(root: Path, every: int) -> tuple[str, ...]:
    """Modify and re-time every ``every``-th regular file (sorted order), so a re-sync has work to do.

    Deterministic: the same tree gives the same changed files and contents.
    """
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    chosen = tuple(files[::every])
    rng = random.Random(every)
    for rel in chosen:
        path = root / rel
        st = path.stat()
        with open(path, "r+b") as f:
            f.seek(st.st_size // 2)
            old = f.read(64)
            f.seek(st.st_size // 2)
            f.write(bytes(b ^ 0xFF for b in old) if old else rng.randbytes(64))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3600 * 10**9))
    return chosen


@dataclass(frozen=True)
class Signature:
    files: int
    dirs: int
    symlinks: int
    bytes: int


def signature(root: Path) -> Signature:
    """Counts and total size of what a tree holds, to check a copy without reading every byte."""
    files = dirs = links = size = 0
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    links += 1
                elif entry.is_dir():
                    dirs += 1
                    pending.append(Path(entry.path))
                else:
                    files += 1
                    size += entry.stat().st_size
    return Signature(files, dirs, links, size)


def same_samples(a: Path, b: Path, offsets: tuple[int, ...], length: int = 4096) -> str | None:
    """Compare size and the bytes at ``offsets`` (plus the last block); None when they agree."""
    size_a, size_b = a.stat().st_size, b.stat().st_size
    if size_a != size_b:
        return f"size {size_b}, expected {size_a}"
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for offset in (*offsets, max(size_a - length, 0)):
            if os.pread(fa.fileno(), length, offset) != os.pread(fb.fileno(), length, offset):
                return f"content differs at offset {offset}"
    return None


def spread(size: int, n: int = 16) -> tuple[int, ...]:
    """``n`` evenly spread offsets in a file of ``size`` bytes."""
    return tuple(size * i // n for i in range(n))
