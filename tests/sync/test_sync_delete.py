"""--delete: what goes, what never goes (through symlinks, excluded entries, after a read error), --max-delete."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sync_support import Link, build, call_zcp, contents, scandir_refusing, snapshot

from zcp.config import Config, Preserve
from zcp.errors import ExitCode
from zcp.exec.events import RecordingSink
from zcp.model import Op
from zcp.replicate import replicate

SOURCE = {"keep.txt": b"keep", "sub/inner.txt": b"inner", "sub/link": Link("inner.txt")}
EXTRAS = {
    "gone.txt": b"gone",
    "sub/gone-too.txt": b"gone",
    "tree/a/b/c.txt": b"deep",
    "tree/top.txt": b"top",
    "stale-link": Link("keep.txt"),
    "sub/dangling": Link("nowhere"),
}


def _trees(tmp_path: Path, extras=EXTRAS) -> tuple[Path, Path]:
    src = build(tmp_path / "src", SOURCE)
    dst = build(tmp_path / "dst", {**SOURCE, **extras})
    return src, dst


def test_delete_removes_files_trees_and_symlinks(tmp_path, capsys):
    src, dst = _trees(tmp_path)
    result = call_zcp(capsys, "-a", "--delete", f"{src}/", dst)
    assert (result.code, result.err) == (0, "")
    assert contents(dst) == contents(src)


def test_delete_with_dry_run_deletes_nothing(tmp_path, capsys):
    src, dst = _trees(tmp_path)
    before = snapshot(dst)
    result = call_zcp(capsys, "-a", "-n", "--delete", f"{src}/", dst)
    assert result.code == 0
    assert snapshot(dst) == before
    # "delete   <methods>   <name>  (<reason>)"
    planned = {line.split(None, 2)[2].rpartition("  (")[0] for line in result.out.splitlines()
               if line.startswith("delete")}
    assert planned == {"gone.txt", "sub/gone-too.txt", "tree", "stale-link", "sub/dangling"}


def test_a_symlink_to_an_outside_folder_is_removed_as_a_link(tmp_path, capsys):
    outside = build(tmp_path / "outside", {"precious.txt": b"precious", "nested/more.txt": b"more"})
    outside_file = build(tmp_path / "lone", {"file.txt": b"lone"}) / "file.txt"
    src, dst = _trees(tmp_path, {"escape": Link(str(outside)), "sub/escape-file": Link(str(outside_file)),
                                 "sub/escape-rel": Link("../../outside")})
    before = snapshot(outside)
    result = call_zcp(capsys, "-a", "--delete", f"{src}/", dst)
    assert (result.code, result.err) == (0, "")
    assert contents(dst) == contents(src)
    assert snapshot(outside) == before
    assert outside_file.read_bytes() == b"lone"


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_max_delete_stops_after_n_entries_and_exits_25(tmp_path, capsys, limit):
    extras = {f"gone{n}": b"x" for n in range(5)}
    src, dst = _trees(tmp_path, extras)
    result = call_zcp(capsys, "-a", "--max-delete", str(limit), f"{src}/", dst)
    assert result.code == ExitCode.MAX_DELETE
    assert "--max-delete" in result.err
    left = set(contents(dst)) - set(contents(src))
    assert len(left) == 5 - limit and left <= set(extras)


def test_max_delete_counts_the_entries_of_a_tree(tmp_path, capsys):
    src, dst = _trees(tmp_path, {"tree/a/b/c.txt": b"deep", "tree/top.txt": b"top"})  # 5 entries
    assert call_zcp(capsys, "-a", "--max-delete", "4", f"{src}/", dst).code == ExitCode.MAX_DELETE
    assert call_zcp(capsys, "-a", "--max-delete", "5", f"{src}/", dst).code == ExitCode.OK
    assert contents(dst) == contents(src)


def test_a_tree_larger_than_the_limit_is_kept_whole_and_counted_true(tmp_path):
    """--max-delete is applied when planning, a folder with all it holds: never half a tree."""
    src, dst = _trees(tmp_path, {"tree/a/b/c.txt": b"deep", "tree/top.txt": b"top"})
    before = contents(dst)
    config = Config(recursive=True, preserve=Preserve.archive(), jobs=1, delete=True, max_delete=2)
    stats = replicate([f"{src}/"], str(dst), config, RecordingSink())
    assert stats.delete_limited and stats.exit_code() == ExitCode.MAX_DELETE
    assert contents(dst) == before and stats.deleted == 0


def test_deleted_count_is_every_entry_of_a_deleted_tree(tmp_path):
    src, dst = _trees(tmp_path, {"tree/a/b/c.txt": b"deep", "tree/top.txt": b"top"})
    config = Config(recursive=True, preserve=Preserve.archive(), jobs=1, delete=True, max_delete=5)
    stats = replicate([f"{src}/"], str(dst), config, RecordingSink())
    assert not (dst / "tree").exists()
    assert (stats.deleted, stats.delete_limited) == (5, False)  # tree, a, b, c.txt, top.txt


def _delete_with_a_folder_unreadable(capsys, monkeypatch, src: Path, dst: Path, unreadable: Path) -> None:
    """zcp -a --delete while listing ``unreadable`` is refused: exit 23, deletion off, nothing deleted."""
    before = set(contents(dst))
    scandir_refusing(monkeypatch, unreadable)
    result = call_zcp(capsys, "-a", "-j", "1", "--delete", f"{src}/", dst)
    monkeypatch.undo()
    assert result.code == ExitCode.PARTIAL
    assert "Permission denied" in result.err and "not deleting" in result.err
    assert before <= set(contents(dst))  # nothing deleted


def test_an_unreadable_source_folder_turns_deletion_off(tmp_path, capsys, monkeypatch):
    src, dst = _trees(tmp_path)
    build(src, {"locked/secret.txt": b"s", "later/new.txt": b"new"})
    build(dst, {"locked/old.txt": b"old"})  # would look extra if the locked folder read as empty
    _delete_with_a_folder_unreadable(capsys, monkeypatch, src, dst, src / "locked")
    assert (dst / "later" / "new.txt").read_bytes() == b"new"  # the rest copied
    assert (dst / "keep.txt").read_bytes() == b"keep"


def test_an_unreadable_destination_folder_turns_deletion_off(tmp_path, capsys, monkeypatch):
    src, dst = _trees(tmp_path)
    _delete_with_a_folder_unreadable(capsys, monkeypatch, src, dst, dst / "sub")


def test_excluded_entries_are_protected_unless_delete_excluded(tmp_path, capsys):
    src, dst = _trees(tmp_path, {"cache.o": b"obj", "sub/x.o": b"obj", "build/out/a": b"a", "gone.txt": b"g"})
    build(src, {"main.o": b"src obj", "build/kept-in-source": b"b"})
    rules = ["--exclude", "*.o", "--exclude", "build/"]
    assert call_zcp(capsys, "-a", "--delete", *rules, f"{src}/", dst).code == 0
    left = contents(dst)
    assert {"cache.o", "sub/x.o", "build/out/a"} <= set(left) and "gone.txt" not in left
    assert "main.o" not in left and "build/kept-in-source" not in left  # excluded: not copied either
    assert call_zcp(capsys, "-a", "--delete-excluded", *rules, f"{src}/", dst).code == 0
    assert contents(dst) == {rel: what for rel, what in contents(src).items()
                             if not rel.endswith(".o") and not rel.startswith("build")}


def test_excluded_entries_inside_a_destination_only_folder_are_protected_too(tmp_path, capsys):
    """As rsync: the folder the source lacks keeps its excluded entries (and so stays), the rest of
    it goes; a destination-only folder with nothing excluded inside goes whole."""
    src, dst = _trees(tmp_path, {"old/keep.o": b"obj", "old/junk": b"j", "old/sub/a": b"a",
                                 "old/deep/er/b.o": b"obj", "gone/x/y": b"y"})
    result = call_zcp(capsys, "-a", "-i", "--delete", "--exclude", "*.o", f"{src}/", dst)
    assert result.code == 0, result
    left = contents(dst)
    assert {"old/keep.o", "old/deep/er/b.o"} <= set(left)
    assert not any(rel.startswith(("old/junk", "old/sub", "gone")) for rel in left), left
    deleted = {line.removeprefix("*deleting").strip() for line in result.out.splitlines() if line.startswith("*deleting")}
    assert deleted == {"gone/", "old/junk", "old/sub/"}
    assert call_zcp(capsys, "-a", "--delete-excluded", "--exclude", "*.o", f"{src}/", dst).code == 0
    assert not any(rel.startswith("old") for rel in contents(dst))


def test_itemized_deletions_are_the_ones_made(tmp_path, capsys):
    src, dst = _trees(tmp_path, {f"gone{n}": b"x" for n in range(4)})
    before = set(contents(dst))
    result = call_zcp(capsys, "-a", "-i", "--max-delete", "1", f"{src}/", dst)
    assert result.code == ExitCode.MAX_DELETE
    removed = before - set(contents(dst))
    itemized = {line.removeprefix("*deleting").strip() for line in result.out.splitlines()
                if line.startswith("*deleting")}
    assert itemized == removed


def test_deletions_come_after_the_transfers(tmp_path):
    src, dst = _trees(tmp_path)
    sink = RecordingSink()
    replicate([f"{src}/"], str(dst), Config(recursive=True, preserve=Preserve.archive(), jobs=1, delete=True), sink)
    ops = [event[2] for event in sink.events if event[0] == "finished"]
    first_delete = ops.index(Op.DELETE)
    assert Op.DELETE not in ops[:first_delete] and set(ops[first_delete:]) == {Op.DELETE}


def test_delete_leaves_the_destination_folders_times_as_the_source_has_them(tmp_path, capsys):
    src, dst = _trees(tmp_path)
    os.utime(src / "sub", ns=(10**18, 10**18))
    assert call_zcp(capsys, "-a", "--delete", f"{src}/", dst).code == 0
    assert os.stat(dst / "sub").st_mtime_ns == 10**18  # set again after its entries were deleted


def test_an_entry_already_gone_when_its_deletion_runs_is_not_a_failure(tmp_path):
    """Planned for deletion, removed by someone else before its turn: nothing left to do (rsync
    says nothing either), not exit 23."""
    src, dst = _trees(tmp_path, {"gone": b"x", "tree/a": b"a", "tree/b": b"b"})

    class RemovingFirst(RecordingSink):
        def planned(self, action):
            if action.op is Op.DELETE and action.rel == "gone":
                os.unlink(dst / "gone")
                os.unlink(dst / "tree" / "a")
            super().planned(action)

    stats = replicate([f"{src}/"], str(dst), Config(recursive=True, delete=True, jobs=1), RemovingFirst())
    assert (stats.failed, stats.exit_code()) == (0, ExitCode.OK)
    assert not (dst / "tree").exists()


def test_a_folder_holding_excluded_entries_is_not_deleted_to_make_way_for_a_file(tmp_path, capsys):
    """--delete replaces a folder where the source has a file, unless the filters protect something
    in it: then, as rsync, the file fails (exit 23) and the excluded entries stay."""
    src, dst = _trees(tmp_path, {"n/keep.o": b"keep"})
    (src / "n").write_bytes(b"file")
    result = call_zcp(capsys, "-a", "--delete", "--exclude", "*.o", f"{src}/", dst)
    assert result.code == ExitCode.PARTIAL
    assert (dst / "n" / "keep.o").read_bytes() == b"keep"
