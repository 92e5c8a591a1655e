"""Shared fixtures: real filesystems on loop devices, size-limited tmpfs, strict skips in CI.

A test that needs root, a loop device or a tool calls ``need(...)``: outside CI it skips, in CI
(``ZCP_STRICT=1``, set by .ci/run) it fails, so a missing capability can never pass silently.
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

STRICT = os.environ.get("ZCP_STRICT") == "1"


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if STRICT:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def need_root() -> None:
    need(os.geteuid() == 0, "needs root")


def give_default_acl(folder: Path, other: int) -> None:
    """A default ACL (user rwx, group r-x, other ``other``), in the kernel's xattr form."""
    entries = [(0x01, 7), (0x04, 5), (0x20, other)]  # ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_OTHER
    value = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF) for tag, perm in entries)
    os.setxattr(folder, "system.posix_acl_default", value)


def need_tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"needs {name}")
    return path  # type: ignore[return-value]


_MKFS = {
    "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
}


class Mounts:
    """Mounts made by this test session, unmounted at its end."""

    def __init__(self, base: Path):
        self.base = base
        self.points: list[Path] = []
        self._n = itertools.count()

    def loop(self, fstype: str, size: str = "600M") -> Path:
        need_root()
        need_tool(_MKFS[fstype][0])
        image = self.base / f"{fstype}{next(self._n)}.img"
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        subprocess.run([*_MKFS[fstype], str(image)], check=True, capture_output=True)
        return self._mount(["-o", "loop", str(image)], fstype)

    def tmpfs(self, size: str) -> Path:
        need_root()
        return self._mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs"], "tmpfs")

    def _mount(self, args: list[str], label: str) -> Path:
        point = self.base / f"mnt-{label}-{next(self._n)}"
        point.mkdir()
        done = subprocess.run(["mount", *args, str(point)], capture_output=True, text=True)
        need(done.returncode == 0, f"mount {label} failed: {done.stderr.strip()}")
        self.points.append(point)
        return point

    def unmount(self, point: Path) -> None:
        subprocess.run(["umount", "-l", str(point)], check=False)
        self.points.remove(point)

    def close(self) -> None:
        for point in reversed(self.points):
            subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture(scope="session")
def mounts(tmp_path_factory):
    m = Mounts(tmp_path_factory.mktemp("mounts"))
    yield m
    m.close()


def _fs_fixture(fstype: str):
    @pytest.fixture(scope="session", name=f"_{fstype}_mount")
    def mounted(mounts):
        return mounts.loop(fstype)

    @pytest.fixture(name=f"{fstype}_dir")
    def fresh_dir(request):
        root = request.getfixturevalue(f"_{fstype}_mount")
        d = root / uuid.uuid4().hex[:12]
        d.mkdir()
        yield d
        shutil.rmtree(d, ignore_errors=True)

    return mounted, fresh_dir


_xfs_mount, xfs_dir = _fs_fixture("xfs")
_btrfs_mount, btrfs_dir = _fs_fixture("btrfs")
_ext4_mount, ext4_dir = _fs_fixture("ext4")


@pytest.fixture
def tiny_tmpfs(mounts):
    """A 1 MiB tmpfs, fresh for each test (for ENOSPC)."""
    point = mounts.tmpfs("1m")
    yield point
    mounts.unmount(point)


@pytest.fixture
def tmpfs_dir(mounts):
    """A folder on a roomy tmpfs (tmpfs has no reflink and its own copy_file_range path)."""
    point = mounts.tmpfs("256m")
    yield point
    mounts.unmount(point)


HANG_LIMIT_S = 20


@pytest.fixture
def no_hang():
    """A loop that never ends fails its test instead of stalling the suite."""
    import signal

    def expire(signum, frame):
        raise TimeoutError(f"test still running after {HANG_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(HANG_LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def vanish_when_planned(monkeypatch):
    """``vanish(path)``: that source entry is deleted once its copy is planned, before it runs, in
    whichever process plans it (worker processes are forked with the patch in place)."""
    from zcp.planner.decide import Decider

    victims: set[str] = set()

    def deleting(real):
        def decide(self, rel, src, *args, **kwargs):
            action = real(self, rel, src, *args, **kwargs)
            if src.path in victims:
                victims.discard(src.path)  # decide() may hand a new file on to new_file()
                os.unlink(src.path)
            return action
        return decide

    monkeypatch.setattr(Decider, "decide", deleting(Decider.decide))
    monkeypatch.setattr(Decider, "new_file", deleting(Decider.new_file))
    return lambda path: victims.add(os.fspath(path))
