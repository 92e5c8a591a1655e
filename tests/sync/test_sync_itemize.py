"""-i: the dry run lists exactly what the real run then does, in rsync's format, and rsync agrees on the list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sync_support import LATER_S, OLD_S, Link, build, contents, rsync, run_zcp, set_all_mtimes, snapshot

from zcp.exec.parallel import FIRST_TASK

BASE = {
    "same.txt": b"unchanged",
    "edit.txt": b"version 1",
    "grow.txt": b"short",
    "mode.txt": b"mode",
    "sub/keep.txt": b"keep",
    "old-link": Link("same.txt"),
    "retarget": Link("same.txt"),
    **{f"bulk/d{n // 50}/f{n:03d}": b"bulk" for n in range(FIRST_TASK + 6)},  # up to date: planned, never itemized
}
EXTRAS = {"gone.txt": b"gone", "gone-dir/x/y.txt": b"y", "gone-link": Link("nowhere")}
LATER = (LATER_S * 10**9, LATER_S * 10**9)


def _change(src: Path) -> None:
    """New files, folders and links, same-size and size changes, mode changes (file and folder)."""
    build(src, {"new.txt": b"new", "new-dir/inner.txt": b"inner", "new-link": Link("new.txt"),
                # enough new files in enough folders for -j 2 to hand folders to worker processes
                **{f"many/d{n // 50}/m{n:03d}": b"m" for n in range(FIRST_TASK + 6)}})
    (src / "edit.txt").write_bytes(b"version 2")
    (src / "grow.txt").write_bytes(b"much longer now")
    os.chmod(src / "mode.txt", 0o600)
    os.chmod(src / "sub", 0o700)
    (src / "retarget").unlink()
    (src / "retarget").symlink_to("edit.txt")
    for rel in ("edit.txt", "grow.txt", "new.txt", "new-dir/inner.txt", "new-dir", "many", "."):
        os.utime(src / rel, ns=LATER)
    for n in range(FIRST_TASK + 6):
        os.utime(src / f"many/d{n // 50}/m{n:03d}", ns=LATER)


def _synced_then_changed(tmp_path: Path, copies: int = 1) -> tuple[Path, list[Path]]:
    """A source, ``copies`` destinations that were in sync with it plus extra entries, then changes."""
    src = build(tmp_path / "src", BASE)
    set_all_mtimes(src, OLD_S)
    dsts = []
    for n in range(copies):
        dst = tmp_path / f"dst{n}"
        done = rsync("-a", f"{src}/", f"{dst}/")
        assert done.returncode == 0, done.stderr
        build(dst, EXTRAS)
        os.utime(dst, ns=(OLD_S * 10**9, OLD_S * 10**9))
        dsts.append(dst)
    _change(src)
    return src, dsts


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_dry_run_lists_exactly_what_the_run_does(tmp_path, jobs):
    src, (dst,) = _synced_then_changed(tmp_path)
    before = snapshot(dst)
    planned = run_zcp("-a", "-n", "-i", "--delete", "-j", jobs, f"{src}/", dst)
    assert (planned.code, planned.err) == (0, "")
    assert snapshot(dst) == before  # -n wrote nothing
    done = run_zcp("-a", "-i", "--delete", "-j", jobs, f"{src}/", dst)
    assert (done.code, done.err) == (0, "")
    assert done.out.splitlines() == planned.out.splitlines()
    assert len(planned.out.splitlines()) > FIRST_TASK
    assert contents(dst) == contents(src)
    again = run_zcp("-a", "-i", "--delete", "-j", jobs, f"{src}/", dst)
    assert (again.code, again.out, again.err) == (0, "", "")


@pytest.mark.parametrize("operands", [("s1/", "s2"), ("s2", "s1/")], ids=["contents-first", "contents-last"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_dry_run_into_a_folder_the_run_makes_lists_what_the_run_does(tmp_path, operands, jobs):
    """The run makes a missing folder target before it starts; -n makes nothing. Both plan the
    root that lands there as the new folder it is."""
    build(tmp_path / "s1", {"a": b"a", "sub/c": b"c"})
    build(tmp_path / "s2", {"b": b"b"})
    planned = run_zcp("-a", "-n", "-i", "-j", jobs, *operands, "new/", cwd=tmp_path)
    assert (planned.code, planned.err) == (0, "") and not (tmp_path / "new").exists()
    done = run_zcp("-a", "-i", "-j", jobs, *operands, "new/", cwd=tmp_path)
    assert (done.code, done.err) == (0, "")
    assert done.out.splitlines() == planned.out.splitlines()
    assert "cd+++++++++ ./" in done.out.splitlines()


def test_lines_look_like_rsync(tmp_path):
    src, (dst,) = _synced_then_changed(tmp_path)
    lines = run_zcp("-a", "-n", "-i", "--delete", f"{src}/", dst).out.splitlines()
    for expected in [
        ">f+++++++++ new.txt",
        ">f.st...... grow.txt",
        ".f...p..... mode.txt",
        ".d...p..... sub/",
        "cd+++++++++ new-dir/",
        ">f+++++++++ new-dir/inner.txt",
        "cL+++++++++ new-link",
        "*deleting   gone.txt",
        "*deleting   gone-dir/",
        "*deleting   gone-link",
    ]:
        assert expected in lines
    assert not any("same.txt" in line or "bulk/" in line or "keep.txt" in line for line in lines)


def _by_name(lines: list[str], deleted_trees_whole: bool) -> dict[str, str]:
    """Itemized lines by name. rsync appends " -> target" to links and lists each entry of a deleted
    folder; zcp does neither. Those two differences of form are taken out, nothing else."""
    found = {}
    for line in lines:
        flags, _, name = line.partition(" ")
        name = name.lstrip(" ")
        if flags[1:2] == "L":
            name = name.partition(" -> ")[0]
        found[name] = flags
    if deleted_trees_whole:
        folders = [n for n, flags in found.items() if flags == "*deleting" and n.endswith("/")]
        found = {n: f for n, f in found.items()
                 if not any(n != folder and n.startswith(folder) for folder in folders)}
    return found


def _itemized_by_both(tmp_path: Path, *options: str) -> tuple[dict[str, str], dict[str, str]]:
    src, (ours, theirs) = _synced_then_changed(tmp_path, copies=2)
    done = rsync("-ai", "--delete", *options, f"{src}/", f"{theirs}/")
    assert done.returncode == 0, done.stderr
    result = run_zcp("-a", "-i", "--delete", *options, f"{src}/", ours)
    assert result.code == 0, result.err
    assert contents(ours) == contents(theirs)
    return _by_name(result.out.splitlines(), False), _by_name(done.stdout.splitlines(), True)


def test_rsync_itemizes_the_same_names(tmp_path):
    ours, theirs = _itemized_by_both(tmp_path)
    assert set(ours) == set(theirs)


@pytest.mark.parametrize("options", [(), ("-c",)], ids=["quick", "checksum"])
def test_rsync_itemizes_the_same_changes(tmp_path, options):
    ours, theirs = _itemized_by_both(tmp_path, *options)
    assert ours == theirs


@pytest.mark.parametrize("operands", [("s1", "s2"), ("s1/", "s2"), ("s1/", "s2/sub"), ("s1/a",), ("s1/a", "s2/b"), ("s1",), ("s1/",)])
def test_entries_are_named_from_where_their_transfer_starts_as_rsync_names_them(tmp_path, operands):
    """With several sources every line says which tree it belongs to (s1/a, s2/b); SRC/ starts
    inside the folder (./, a); a single file is named as the source is, whatever its copy is called."""
    for tree, names in (("s1", ("a", "sub/c")), ("s2", ("b", "sub/d"))):
        build(tmp_path / tree, {name: name.encode() for name in names})
        set_all_mtimes(tmp_path / tree, OLD_S)
    for copy in ("ours", "theirs"):
        (tmp_path / copy).mkdir()
        set_all_mtimes(tmp_path / copy, LATER_S)  # times apart by far more than a clock tick
    into = "copy" if len(operands) == 1 and not operands[0].endswith("/") and "/" in operands[0] else ""
    ours = run_zcp("-a", "-i", *operands, f"ours/{into}", cwd=tmp_path)
    theirs = rsync("-ai", *operands, f"theirs/{into}", cwd=tmp_path)
    assert ours.code == 0 and theirs.returncode == 0, (ours, theirs.stderr)
    ours_lines, theirs_lines = _by_name(ours.out.splitlines(), False), _by_name(theirs.stdout.splitlines(), False)
    if operands == ("s1/", "s2/sub"):  # both land in sub/: rsync merges the lists, zcp makes sub/ once, then updates it
        assert set(ours_lines) == set(theirs_lines)
    else:
        assert ours_lines == theirs_lines
