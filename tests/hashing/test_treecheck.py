"""treecheck: real trees copied with cp -a, then changed one way at a time."""

from __future__ import annotations

import errno
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import need_tool
from zcp import treecheck
from zcp.treecheck import Difference, compare_trees, to_json

ODD = os.fsdecode(b"odd \\ name\n\xff")


def build_tree(root: Path) -> None:
    (root / "empty dir").mkdir(parents=True)
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "deep.txt").write_bytes(b"deep" * 1000)
    (root / "a" / "same-size.bin").write_bytes(bytes(range(256)) * 40)
    (root / "a" / "grows.txt").write_bytes(b"short")
    (root / "empty").write_bytes(b"")
    (root / ODD).write_bytes(b"odd content")
    (root / "gone.txt").write_bytes(b"bye")
    (root / "becomes-dir").write_bytes(b"file")
    os.symlink("a/b", root / "link")
    os.symlink("nowhere", root / "dangling")
    os.mkfifo(root / "fifo")


@pytest.fixture
def trees(tmp_path):
    cp = need_tool("cp")
    src, dst = tmp_path / "src", tmp_path / "dst"
    build_tree(src)
    subprocess.run([cp, "-a", "--", str(src), str(dst)], check=True)
    return src, dst


def diffs(src: Path, dst: Path) -> list[tuple[str, str]]:
    return [(d.rel, d.kind) for d in compare_trees(str(src), str(dst))]


def test_identical_trees_have_no_differences(trees):
    assert diffs(*trees) == []


def test_every_kind_of_difference_in_byte_order(trees):
    src, dst = trees
    data = bytearray((dst / "a" / "same-size.bin").read_bytes())
    data[5000] ^= 1
    (dst / "a" / "same-size.bin").write_bytes(data)  # one byte, same size
    (dst / "a" / "grows.txt").write_bytes(b"longer")
    (dst / "gone.txt").unlink()
    (dst / "new").mkdir()
    (dst / "new" / "inside.txt").write_bytes(b"x")
    (dst / "becomes-dir").unlink()
    (dst / "becomes-dir").mkdir()
    (dst / "link").unlink()
    os.symlink("a/b/c", dst / "link")
    (dst / "fifo").unlink()
    (dst / "fifo").write_bytes(b"")
    (dst / ODD).write_bytes(b"odd CONTENT")
    (dst / "a" / "b" / "c" / "deep.txt").unlink()
    os.symlink("../../same-size.bin", dst / "a" / "b" / "c" / "deep.txt")

    found = list(compare_trees(str(src), str(dst)))
    assert [(d.rel, d.kind) for d in found] == [
        ("a/b/c/deep.txt", "type"),
        ("a/grows.txt", "differ"),
        ("a/same-size.bin", "differ"),
        ("becomes-dir", "type"),
        ("fifo", "type"),
        ("gone.txt", "missing"),
        ("link", "differ"),
        ("new", "extra"),  # once, not again for new/inside.txt
        (ODD, "differ"),
    ]
    details = {d.rel: d.detail for d in found}
    assert details["a/b/c/deep.txt"] == "file in source, symlink in destination"
    assert details["a/grows.txt"] == "5 bytes in source, 6 in destination"
    assert details["a/same-size.bin"] == "same size, different content"
    assert details["gone.txt"] == "file not in destination"
    assert details["new"] == "dir not in source"
    assert details["link"] == "link to 'a/b' in source, to 'a/b/c' in destination"


def test_missing_side_is_reported_at_the_top_only(trees):
    src, dst = trees
    subprocess.run(["rm", "-rf", "--", str(dst / "a")], check=True)
    assert diffs(src, dst) == [("a", "missing")]
    assert diffs(dst, src) == [("a", "extra")]


def test_roots_may_be_files_or_symlinks_to_folders(trees, tmp_path):
    src, dst = trees
    os.symlink(src, tmp_path / "src-link")
    assert diffs(tmp_path / "src-link", dst) == []
    assert diffs(src / "a" / "same-size.bin", dst / "a" / "same-size.bin") == []
    assert diffs(src / "a" / "same-size.bin", dst / "a" / "grows.txt") == [(".", "differ")]
    assert diffs(src / "a", dst / "empty") == [(".", "type")]
    with pytest.raises(FileNotFoundError):
        diffs(src, tmp_path / "no such folder")


def test_progress_counts_the_bytes_hashed(trees):
    src, dst = trees
    seen: list[int] = []
    assert list(compare_trees(str(src), str(dst), seen.append)) == []
    hashed = sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    assert sum(seen) == 2 * hashed


def test_unreadable_entries_become_errors_and_the_walk_goes_on(trees, monkeypatch):
    src, dst = trees
    real_hash, real_scandir = treecheck.hash_path, os.scandir

    def failing_hash(path, progress=None):
        if path.endswith("deep.txt"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return real_hash(path, progress)

    def failing_scandir(path):
        if path.endswith("empty dir"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_scandir(path)

    monkeypatch.setattr(treecheck, "hash_path", failing_hash)
    monkeypatch.setattr(treecheck.os, "scandir", failing_scandir)
    (dst / "a" / "grows.txt").write_bytes(b"longer")
    found = list(compare_trees(str(src), str(dst)))
    assert [(d.rel, d.kind) for d in found] == [
        ("a/b/c/deep.txt", "error"),
        ("a/grows.txt", "differ"),
        ("empty dir", "error"),
    ]
    assert "Input/output error" in found[0].detail
    assert "Permission denied" in found[2].detail


def test_to_json():
    diff = Difference(ODD, "differ", "same size, different content")
    assert to_json(diff) == {"rel": ODD, "kind": "differ", "detail": "same size, different content"}
    assert json.loads(json.dumps(to_json(diff)))["rel"] == ODD


def test_trees_deeper_than_the_recursion_limit(tmp_path):
    """Deeper than the recursion limit, which is lowered so that the tree stays small enough for
    pytest's own (recursive) cleanup of tmp_path."""
    depth = 300
    chain = "/".join(["d"] * depth)
    for root in ("src", "dst"):
        subprocess.run(["mkdir", "-p", "--", str(tmp_path / root / chain)], check=True)  # os.makedirs recurses
        (tmp_path / root / chain / "leaf").write_bytes(root.encode())
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + depth // 2)
    try:
        found = diffs(tmp_path / "src", tmp_path / "dst")
    finally:
        sys.setrecursionlimit(limit)
    assert found == [(f"{chain}/leaf", "differ")]
