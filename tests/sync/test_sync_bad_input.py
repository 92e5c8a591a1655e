"""A destination that disagrees with the source on kinds, symlinks planted in the destination, sources
that vanish or cannot be read during a sync."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sync_support import Link, build, call_zcp, contents, scandir_refusing, snapshot

from zcp.config import Config, Preserve
from zcp.errors import ExitCode
from zcp.exec.events import RecordingSink
from zcp.exec.parallel import FIRST_TASK
from zcp.replicate import replicate

SOURCE = {"file.txt": b"file", "folder/inner.txt": b"inner", "other.txt": b"other"}


def test_a_file_where_the_source_has_a_folder_is_replaced(tmp_path, capsys):
    src = build(tmp_path / "src", SOURCE)
    dst = build(tmp_path / "dst", {"folder": b"a file in the way", "other.txt": b"old"})
    result = call_zcp(capsys, "-a", f"{src}/", dst)
    assert (result.code, result.err) == (0, "")
    assert contents(dst) == contents(src)


def test_a_symlink_where_the_source_has_a_folder_is_replaced_not_followed(tmp_path, capsys):
    outside = build(tmp_path / "outside", {"inner.txt": b"outside", "deeper/x": b"x"})
    before = snapshot(outside)
    src = build(tmp_path / "src", {**SOURCE, "folder/deeper/x": b"from the source"})
    dst = build(tmp_path / "dst", {"folder": Link(str(outside))})
    result = call_zcp(capsys, "-a", f"{src}/", dst)
    assert (result.code, result.err) == (0, "")
    assert snapshot(outside) == before
    assert (outside / "inner.txt").read_bytes() == b"outside"
    assert contents(dst) == contents(src)


@pytest.mark.parametrize("quick", [[], ["-c"], ["--size-only"], ["-u"]], ids=["quick", "checksum", "size-only", "update"])
def test_a_symlink_where_the_source_has_a_file_is_replaced_not_written_through(tmp_path, capsys, quick):
    outside = build(tmp_path / "outside", {"target.txt": b"four"})  # same size as the source file
    src = build(tmp_path / "src", SOURCE)
    (src / "file.txt").write_bytes(b"FILE")
    dst = build(tmp_path / "dst", {"file.txt": Link(str(outside / "target.txt"))})
    for newer in (outside / "target.txt", dst / "file.txt"):  # the link and its target, for -u
        os.utime(newer, ns=(4 * 10**18, 4 * 10**18), follow_symlinks=False)
    result = call_zcp(capsys, "-a", *quick, f"{src}/", dst)
    assert result.code == 0
    assert (outside / "target.txt").read_bytes() == b"four"
    # a different kind is always replaced, whatever the times (rsync's -u documents it)
    assert not (dst / "file.txt").is_symlink()
    assert (dst / "file.txt").read_bytes() == b"FILE"


def test_a_non_empty_folder_where_the_source_has_a_file_is_kept_and_reported(tmp_path, capsys):
    src = build(tmp_path / "src", SOURCE)
    dst = build(tmp_path / "dst", {"file.txt/precious": b"precious"})
    result = call_zcp(capsys, "-a", f"{src}/", dst)
    assert result.code == ExitCode.PARTIAL  # as rsync: "cannot delete non-empty directory"
    assert "file.txt" in result.err
    assert (dst / "file.txt" / "precious").read_bytes() == b"precious"
    assert (dst / "other.txt").read_bytes() == b"other"  # the rest is copied
    assert (dst / "folder" / "inner.txt").read_bytes() == b"inner"


def test_an_empty_folder_where_the_source_has_a_file_is_replaced(tmp_path, capsys):
    src = build(tmp_path / "src", SOURCE)
    dst = build(tmp_path / "dst", {"file.txt": None})
    result = call_zcp(capsys, "-a", f"{src}/", dst)
    assert (result.code, result.err) == (0, "")  # rsync -a replaces an empty folder
    assert contents(dst) == contents(src)


@pytest.mark.parametrize("in_the_way", [{"file.txt/precious": b"p"}, {"other.txt/a/b": b"b", "folder/x/y": b"y"}])
def test_delete_replaces_a_non_empty_folder_where_the_source_has_a_file(tmp_path, capsys, in_the_way):
    src = build(tmp_path / "src", SOURCE)
    dst = build(tmp_path / "dst", in_the_way)
    result = call_zcp(capsys, "-a", "--delete", f"{src}/", dst)
    assert (result.code, result.err) == (0, "")  # rsync --delete makes the destination a mirror
    assert contents(dst) == contents(src)


def test_a_folder_where_the_source_has_a_symlink_is_kept_and_reported(tmp_path, capsys):
    src = build(tmp_path / "src", {**SOURCE, "link": Link("file.txt")})
    dst = build(tmp_path / "dst", {"link/precious": b"precious"})
    result = call_zcp(capsys, "-a", f"{src}/", dst)
    assert result.code == ExitCode.PARTIAL
    assert (dst / "link" / "precious").read_bytes() == b"precious"
    assert (dst / "file.txt").read_bytes() == b"file"


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_source_file_vanishing_during_the_run_exits_24(tmp_path, vanish_when_planned, jobs):
    spec = {f"d{n // 100}/f{n:03d}": b"data" for n in range(2 * FIRST_TASK)}
    src = build(tmp_path / "src", spec)
    victim = src / "d3" / "f303"
    vanish_when_planned(victim)
    sink = RecordingSink()
    stats = replicate([f"{src}/"], str(tmp_path / "dst"), Config(recursive=True, preserve=Preserve.archive(),
                                                                  jobs=jobs), sink)
    assert stats.exit_code() == ExitCode.VANISHED
    assert (stats.vanished, stats.failed) == (1, 0)
    assert contents(tmp_path / "dst") == contents(src)  # everything else arrived
    (failure,) = [event for event in sink.events if event[0] == "failed"]
    assert failure[1] == str(victim) and "vanished" in failure[2]


def test_a_vanished_file_with_delete_still_exits_24(tmp_path, vanish_when_planned):
    src = build(tmp_path / "src", SOURCE)
    dst = build(tmp_path / "dst", {"stale.txt": b"stale"})
    victim = src / "other.txt"
    vanish_when_planned(victim)
    stats = replicate([f"{src}/"], str(dst), Config(recursive=True, preserve=Preserve.archive(), jobs=1,
                                                    delete=True), RecordingSink())
    assert stats.exit_code() == ExitCode.VANISHED
    assert not (dst / "stale.txt").exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_permission_denied_folder_fails_alone_and_turns_delete_off(tmp_path, capsys, monkeypatch, jobs):
    spec = {f"bulk{n // 100}/f{n:03d}": b"bulk" for n in range(2 * FIRST_TASK)}
    src = build(tmp_path / "src", {**SOURCE, **spec, "secret/deep/s.txt": b"s"})
    dst = build(tmp_path / "dst", {"stale.txt": b"stale", "secret/deep/old.txt": b"old"})
    scandir_refusing(monkeypatch, src / "secret" / "deep")
    result = call_zcp(capsys, "-a", "-j", jobs, "--delete", f"{src}/", dst)
    monkeypatch.undo()
    assert result.code == ExitCode.PARTIAL
    assert str(src / "secret" / "deep") in result.err and "not deleting" in result.err
    copied = contents(dst)
    assert copied["stale.txt"] == b"stale" and copied["secret/deep/old.txt"] == b"old"
    assert all(copied[rel] == what for rel, what in contents(src).items() if not rel.startswith("secret/deep/"))


def _folders_in_the_way(tmp_path: Path) -> tuple[Path, Path, dict]:
    """Enough source files in enough folders for two worker tasks; the destination has a non-empty
    folder where one file of each of two tasks goes (2 entries each). Returns src, dst and the
    destination entries in the way."""
    src = build(tmp_path / "src", {f"d{n // 100}/f{n:03d}": b"file" for n in range(2 * FIRST_TASK)})
    in_the_way = {"d0/f005/x": b"x", "d4/f405/x": b"x"}
    dst = build(tmp_path / "dst", in_the_way)
    return src, dst, contents(dst)


def test_replaced_folders_are_counted_as_deleted_with_workers(tmp_path):
    src, dst, in_the_way = _folders_in_the_way(tmp_path)
    stats = replicate([f"{src}/"], str(dst), Config(recursive=True, preserve=Preserve.archive(), jobs=2,
                                                    delete=True), RecordingSink())
    assert stats.exit_code() == 0
    assert contents(dst) == contents(src)
    assert stats.deleted == len([rel for rel in in_the_way if "/f" in rel])  # the folders and what they held


@pytest.mark.parametrize("jobs", [1, 2])
def test_max_delete_bounds_replaced_folders_across_workers(tmp_path, jobs):
    src, dst, in_the_way = _folders_in_the_way(tmp_path)
    stats = replicate([f"{src}/"], str(dst), Config(recursive=True, preserve=Preserve.archive(), jobs=jobs,
                                                    delete=True, max_delete=2), RecordingSink())
    after = contents(dst)
    removed = {rel for rel, what in in_the_way.items() if after.get(rel, b"gone") != what}
    assert len(removed) <= 2
    assert stats.exit_code() != 0


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize(("source", "target"), [("src/", "ro/x/"), ("src", "ro/x/"), ("src/", "ro/x"), ("src", "ro/x")])
def test_a_destination_folder_that_cannot_be_made_stops_the_run_with_11(mounts, tmp_path, capsys, monkeypatch, jobs,
                                                                       source, target):
    """One line and exit 11 however DEST is spelled, not a failure per entry beneath it (as rsync)."""
    import subprocess

    read_only = mounts.tmpfs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(read_only)], check=True)
    build(tmp_path / "src", {"f": b"f", "sub/g": b"g"})
    os.symlink(read_only, tmp_path / "ro")
    monkeypatch.chdir(tmp_path)
    result = call_zcp(capsys, "-a", "-j", jobs, source, target)
    assert result.code == ExitCode.FILE_IO
    assert len(result.err_lines) == 1 and "Read-only file system" in result.err_lines[0], result.err
    assert os.listdir(read_only) == []
