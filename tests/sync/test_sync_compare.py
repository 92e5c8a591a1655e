"""Quick check and its variants: what a second run rewrites, what it leaves alone, what it only touches up."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sync_support import LATER_S, OLD_S, Link, build, call_zcp, contents, inodes, snapshot, temp_files

from zcp.errors import ExitCode

SPEC = {
    "same.txt": b"unchanged",
    "edit.txt": b"version 1",
    "sub/deep.bin": bytes(range(256)) * 4,
    "sub/more/leaf": b"leaf",
    "empty/": None,
    "link": Link("same.txt"),
}


def _synced(tmp_path: Path, capsys) -> tuple[Path, Path]:
    """A source tree with old mtimes and its first copy."""
    src = build(tmp_path / "src", SPEC)
    for rel, what in SPEC.items():
        if isinstance(what, bytes):
            os.utime(src / rel, ns=(OLD_S * 10**9, OLD_S * 10**9))
    dst = tmp_path / "dst"
    assert call_zcp(capsys, "-a", f"{src}/", dst).code == 0
    return src, dst


def _rewrite_same_size(path: Path, data: bytes, keep_mtime: bool) -> None:
    before = os.stat(path)
    assert len(data) == before.st_size
    path.write_bytes(data)
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_second_run_writes_nothing(tmp_path, capsys):
    src, dst = _synced(tmp_path, capsys)
    before = snapshot(dst)  # ctime and inode included: any write, chmod or rename would show
    result = call_zcp(capsys, "-a", "-i", f"{src}/", dst)
    assert (result.code, result.out, result.err) == (0, "", "")
    assert snapshot(dst) == before


def test_second_run_with_workers_writes_nothing(tmp_path, capsys):
    spec = {f"d{d}/f{f:03d}": f"{d}-{f}".encode() for d in range(3) for f in range(70)}
    src = build(tmp_path / "src", spec)
    dst = tmp_path / "dst"
    assert call_zcp(capsys, "-a", "-j", "2", f"{src}/", dst).code == 0
    before = snapshot(dst)
    result = call_zcp(capsys, "-a", "-j", "2", "-i", f"{src}/", dst)
    assert (result.code, result.out, result.err) == (0, "", "")
    assert snapshot(dst) == before


def test_same_size_new_mtime_is_updated(tmp_path, capsys):
    src, dst = _synced(tmp_path, capsys)
    before = inodes(dst)
    _rewrite_same_size(src / "edit.txt", b"version 2", keep_mtime=False)
    assert call_zcp(capsys, "-a", f"{src}/", dst).code == 0
    assert (dst / "edit.txt").read_bytes() == b"version 2"
    assert os.stat(dst / "edit.txt").st_mtime_ns == os.stat(src / "edit.txt").st_mtime_ns
    after = inodes(dst)
    assert {rel for rel in before if after[rel] != before[rel]} == {"edit.txt"}
    assert temp_files(dst) == []


def test_same_size_same_mtime_is_up_to_date_unless_checksum(tmp_path, capsys):
    src, dst = _synced(tmp_path, capsys)
    _rewrite_same_size(src / "edit.txt", b"version 2", keep_mtime=True)
    before = snapshot(dst)
    assert call_zcp(capsys, "-a", f"{src}/", dst).code == 0
    assert (dst / "edit.txt").read_bytes() == b"version 1"  # the quick check cannot see it
    assert snapshot(dst) == before
    result = call_zcp(capsys, "-a", "-c", "-i", f"{src}/", dst)
    assert result.code == 0
    assert (dst / "edit.txt").read_bytes() == b"version 2"
    assert result.out.splitlines() == [">fc........ edit.txt"]


def test_checksum_fixes_only_the_time_of_identical_content(tmp_path, capsys):
    src, dst = _synced(tmp_path, capsys)
    os.utime(src / "same.txt", ns=(OLD_S * 10**9, (OLD_S + 60) * 10**9))
    before = inodes(dst)
    result = call_zcp(capsys, "-a", "-c", "-i", f"{src}/", dst)
    assert result.code == 0
    assert result.out.splitlines() == [".f..t...... same.txt"]
    assert inodes(dst) == before  # not rewritten
    assert os.stat(dst / "same.txt").st_mtime_ns == (OLD_S + 60) * 10**9


def test_size_only_ignores_mtime_differences(tmp_path, capsys):
    src, dst = _synced(tmp_path, capsys)
    _rewrite_same_size(src / "edit.txt", b"version 2", keep_mtime=False)
    before = inodes(dst)
    assert call_zcp(capsys, "-a", "--size-only", f"{src}/", dst).code == 0
    assert (dst / "edit.txt").read_bytes() == b"version 1"
    assert inodes(dst) == before
    # like rsync --size-only -a: the content is judged up to date, the time is still carried over
    assert os.stat(dst / "edit.txt").st_mtime_ns == os.stat(src / "edit.txt").st_mtime_ns


def test_size_only_still_copies_a_size_change(tmp_path, capsys):
    src, dst = _synced(tmp_path, capsys)
    (src / "edit.txt").write_bytes(b"version 10")
    assert call_zcp(capsys, "-a", "--size-only", f"{src}/", dst).code == 0
    assert (dst / "edit.txt").read_bytes() == b"version 10"


def test_update_keeps_a_newer_destination_file(tmp_path, capsys):
    src, dst = _synced(tmp_path, capsys)
    (dst / "edit.txt").write_bytes(b"edited in the destination")  # mtime now: newer than the source
    (src / "sub" / "deep.bin").write_bytes(b"newer in the source")  # older destination: updated
    result = call_zcp(capsys, "-a", "-u", f"{src}/", dst)
    assert result.code == 0
    assert (dst / "edit.txt").read_bytes() == b"edited in the destination"
    assert (dst / "sub" / "deep.bin").read_bytes() == b"newer in the source"


def test_ignore_existing_never_touches_existing_files(tmp_path, capsys):
    src, dst = _synced(tmp_path, capsys)
    (src / "edit.txt").write_bytes(b"a different size and time")
    os.chmod(src / "same.txt", 0o600)
    (src / "sub" / "added").write_bytes(b"new")
    before = snapshot(dst)
    result = call_zcp(capsys, "-a", "--ignore-existing", f"{src}/", dst)
    assert result.code == 0
    after = snapshot(dst)
    for rel in ("edit.txt", "same.txt", "sub/deep.bin", "sub/more/leaf", "link"):
        assert after[rel] == before[rel], rel
    assert (dst / "sub" / "added").read_bytes() == b"new"


def test_chmod_alone_is_a_metadata_update_in_place(tmp_path, capsys):
    src, dst = _synced(tmp_path, capsys)
    os.chmod(src / "sub" / "deep.bin", 0o600)
    before = inodes(dst)
    result = call_zcp(capsys, "-a", "-i", f"{src}/", dst)
    assert result.code == 0
    assert result.out.splitlines() == [".f...p..... sub/deep.bin"]
    assert inodes(dst) == before
    assert stat.S_IMODE(os.stat(dst / "sub" / "deep.bin").st_mode) == 0o600
    assert contents(dst) == contents(src)


def _xattrs(path: Path) -> dict[str, bytes]:
    return {name: os.getxattr(path, name) for name in os.listxattr(path) if name.startswith("user.")}


def test_xattr_changes_alone_are_carried_by_a_resync(tmp_path, capsys):
    """Setting or removing an xattr moves ctime, not mtime: the quick check alone would miss it.
    Changed, new and removed ones all arrive, on files and folders, in place."""
    src, dst = _synced(tmp_path, capsys)
    deep, sub = src / "sub" / "deep.bin", src / "sub"
    os.setxattr(deep, "user.kept", b"1")
    os.setxattr(deep, "user.gone", b"2")
    os.setxattr(sub, "user.gone", b"3")
    assert call_zcp(capsys, "-a", f"{src}/", dst).code == 0
    os.setxattr(deep, "user.kept", b"changed")
    os.setxattr(deep, "user.new", b"4")
    os.removexattr(deep, "user.gone")
    os.removexattr(sub, "user.gone")
    before = inodes(dst)
    result = call_zcp(capsys, "-a", "-i", f"{src}/", dst)
    assert result.code == 0
    assert result.out.splitlines() == [".f........x sub/deep.bin"]
    assert inodes(dst) == before
    assert _xattrs(dst / "sub" / "deep.bin") == {"user.kept": b"changed", "user.new": b"4"}
    assert _xattrs(dst / "sub") == {}
    assert call_zcp(capsys, "-a", "-i", f"{src}/", dst).out == ""  # and then it is up to date


def test_xattrs_a_copy_was_made_without_are_added_by_a_later_archive_run(tmp_path, capsys):
    """`I forgot -X`: the copy is newer than the source in every way, its xattrs are still missing;
    a source that carries xattrs is always compared."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "f").write_bytes(b"content")
    (src / "plain").write_bytes(b"no xattrs")
    os.setxattr(src / "f", "user.k", b"v1")
    assert call_zcp(capsys, "-rpt", f"{src}/", dst).code == 0
    assert _xattrs(dst / "f") == {}
    result = call_zcp(capsys, "-a", "-i", f"{src}/", dst)
    assert result.code == 0
    assert result.out.splitlines() == [".f........x f"]
    assert _xattrs(dst / "f") == {"user.k": b"v1"}


def test_a_symlink_with_a_new_time_gets_it(tmp_path, capsys):
    src, dst = _synced(tmp_path, capsys)
    os.utime(src / "link", ns=(OLD_S * 10**9, OLD_S * 10**9), follow_symlinks=False)
    result = call_zcp(capsys, "-a", "-i", f"{src}/", dst)
    assert result.code == 0
    assert os.lstat(dst / "link").st_mtime_ns == OLD_S * 10**9  # as rsync -a does (".L..t...... link")
    assert result.out.splitlines() == [".L..t...... link"]


def test_ignore_existing_keeps_an_existing_folder_where_the_source_has_a_file(tmp_path, capsys):
    src = build(tmp_path / "src", {"taken": b"file", "empty-taken": b"file", "free": b"new"})
    dst = build(tmp_path / "dst", {"taken/inner/keep.txt": b"keep", "empty-taken/": None})
    before = snapshot(dst)
    result = call_zcp(capsys, "-a", "--ignore-existing", "--delete", f"{src}/", dst)
    assert result.code == 0  # like rsync: the name exists, so it is left alone, whatever its kind
    after = snapshot(dst)
    assert {rel: after.get(rel) for rel in before} == before
    assert (dst / "free").read_bytes() == b"new"


def test_ignore_existing_never_replaces_a_file_with_a_folder(tmp_path, capsys):
    """The name exists: it is left alone, whatever the source has there (rsync then fails what
    would go inside it)."""
    (tmp_path / "src" / "d").mkdir(parents=True)
    (tmp_path / "src" / "d" / "q").write_bytes(b"q")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "d").write_bytes(b"precious")
    result = call_zcp(capsys, "-a", "--ignore-existing", f"{tmp_path / 'src'}/", tmp_path / "dst")
    assert result.code == ExitCode.PARTIAL
    assert (tmp_path / "dst" / "d").read_bytes() == b"precious"


def test_update_keeps_a_newer_first_link_and_writes_the_others_from_the_source(tmp_path, capsys):
    """-u keeps a newer destination file; its other names must not be linked to that file's
    content, which is not the source's: the next member becomes the group's copy (as rsync)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "a").write_bytes(b"content")
    os.utime(src / "a", ns=(OLD_S * 10**9 + 5, OLD_S * 10**9 + 5))
    os.link(src / "a", src / "b")
    (dst / "a").write_bytes(b"newer-local")
    os.utime(dst / "a", ns=(LATER_S * 10**9, LATER_S * 10**9))
    (dst / "b").write_bytes(b"stale")
    os.utime(dst / "b", ns=(OLD_S * 10**9, OLD_S * 10**9))
    assert call_zcp(capsys, "-a", "-u", f"{src}/", dst).code == 0
    assert (dst / "a").read_bytes() == b"newer-local"
    assert (dst / "b").read_bytes() == b"content"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_when_a_hard_link_groups_first_copy_fails_the_next_member_takes_its_place(tmp_path, capsys, jobs):
    """A full folder stands where the first name goes (no --delete): that name fails, the second is
    copied, and the third is linked to the second, as rsync does; before, all three were missing."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "a").write_bytes(b"content")
    os.link(src / "a", src / "b")
    os.link(src / "a", src / "c")
    (dst / "a" / "sub").mkdir(parents=True)
    (dst / "a" / "sub" / "x").write_bytes(b"x")
    result = call_zcp(capsys, "-a", "-j", jobs, f"{src}/", dst)
    assert result.code == ExitCode.PARTIAL
    assert (dst / "b").read_bytes() == (dst / "c").read_bytes() == b"content"
    assert os.stat(dst / "b").st_ino == os.stat(dst / "c").st_ino
    assert (dst / "a" / "sub" / "x").read_bytes() == b"x"


@pytest.mark.parametrize("changing", ["source", "destination"])
def test_checksum_of_a_file_that_changes_while_hashed_copies_it(tmp_path, capsys, monkeypatch, changing):
    """-c cannot tell whether they are the same: the file is copied (the copy reads the source
    again), never a crash, and --delete stays on."""
    import zcp.hashing
    from zcp.errors import SourceChanged

    src, dst = _synced(tmp_path, capsys)
    _rewrite_same_size(src / "edit.txt", b"version 2", keep_mtime=True)
    (dst / "extra").write_bytes(b"not in the source")
    hash_path = zcp.hashing.hash_path
    moving = str((src if changing == "source" else dst) / "edit.txt")

    def hash_moving(path, *args, **kwargs):
        if path == moving:
            raise SourceChanged(f"{path}: changed while it was hashed")
        return hash_path(path, *args, **kwargs)

    monkeypatch.setattr(zcp.hashing, "hash_path", hash_moving)
    result = call_zcp(capsys, "-a", "-c", "-i", "--delete", f"{src}/", dst)
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [".d..t...... ./", ">fc........ edit.txt", "*deleting   extra"]
    assert (dst / "edit.txt").read_bytes() == b"version 2"


def test_ignore_existing_with_a_file_where_the_source_has_a_folder_plans_what_it_does(tmp_path, capsys):
    """-n -i lists what the run does: the folder fails (a file is in its place), nothing inside it
    is planned, and both exit 23."""
    src = build(tmp_path / "src", {"d/z": b"z", "free": b"new"})
    dst = build(tmp_path / "dst", {"d": b"precious"})
    planned = call_zcp(capsys, "-a", "-i", "-n", "--ignore-existing", f"{src}/", dst)
    done = call_zcp(capsys, "-a", "-i", "--ignore-existing", f"{src}/", dst)
    assert planned.out == done.out and ">f+++++++++ free" in done.out and "d/z" not in done.out
    assert planned.code == done.code == ExitCode.PARTIAL
    assert planned.err_lines == done.err_lines == [
        f"zcp: {src}/d: a file is in its place in the destination and --ignore-existing keeps it: the folder is not copied"]
    assert (dst / "d").read_bytes() == b"precious"
