"""Helpers for the incremental-sync tests: build trees from a spec, read them back, run zcp and rsync.

Imported by name from the test modules (a conftest.py here would shadow tests/conftest.py). The CLI
runners come from tests/cli/cli_support.py, which pytest only puts on sys.path when it collects
tests/cli: appended here so that tests/sync also runs on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parent.parent / "cli"))

from cli_support import Result, call_zcp, run_zcp, snapshot, temp_files  # noqa: E402

from conftest import need_tool  # noqa: E402

__all__ = ["Result", "call_zcp", "run_zcp", "snapshot", "temp_files", "Link", "build", "contents", "inodes",
           "set_all_mtimes", "rsync", "OLD_S", "LATER_S", "scandir_refusing"]

OLD_S = 1_600_000_000  # a fixed past mtime (s): whole seconds apart, so rsync's second-granular check agrees
LATER_S = 1_650_000_000


class Link(str):
    """A symlink's target in a tree spec."""


# rel -> bytes (a file), None (a folder), Link (a symlink); folders on the way are made as needed
Spec = Mapping[str, "bytes | None | Link"]


def build(root: Path, spec: Spec) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, what in spec.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if what is None:
            path.mkdir(exist_ok=True)
        elif isinstance(what, Link):
            path.symlink_to(str(what))
        else:
            path.write_bytes(what)
    return root


def contents(root: Path) -> dict[str, bytes | None | Link]:
    """The tree below ``root`` in the shape of a spec: what a sync must reproduce."""
    found: dict[str, bytes | None | Link] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = Link(os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = None
            else:
                with open(path, "rb") as f:
                    found[rel] = f.read()
    return found


def inodes(root: Path) -> dict[str, int]:
    return {rel: st[4] for rel, st in snapshot(root).items()}


def set_all_mtimes(root: Path, seconds: int) -> None:
    """Every entry below and including ``root`` (symlinks themselves) gets mtime ``seconds``."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(seconds * 10**9, seconds * 10**9), follow_symlinks=False)
    os.utime(root, ns=(seconds * 10**9, seconds * 10**9))


def rsync(*args: str | os.PathLike, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """rsync as the oracle (a missing rsync fails in CI, skips elsewhere)."""
    tool = need_tool("rsync")
    return subprocess.run([tool, *map(os.fspath, args)], capture_output=True, text=True, cwd=cwd,
                          errors="surrogateescape", timeout=60, check=False)


def scandir_refusing(monkeypatch: pytest.MonkeyPatch, refused: Path) -> None:
    """os.scandir raises EACCES for one folder, as chmod 000 would for a user other than root."""
    real = os.scandir
    refused_path = os.path.normpath(refused)

    def scandir(path=".", *args):
        if isinstance(path, (str, bytes, os.PathLike)) and os.path.normpath(os.fsdecode(path)) == refused_path:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path, *args)

    monkeypatch.setattr(os, "scandir", scandir)
