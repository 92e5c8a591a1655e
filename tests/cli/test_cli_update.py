"""Copying onto an existing destination: what is replaced, what is kept, what is never written through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cli_support import assert_one_error_line, call_zcp, temp_files

from conftest import need_root
from zcp.errors import ExitCode


def _src(root: Path) -> Path:
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    (src / "same").write_bytes(b"unchanged")
    (src / "changed").write_bytes(b"version 1")
    (src / "sub" / "deep").write_bytes(b"deep")
    return src


def _inodes(root: Path) -> dict[str, int]:
    return {os.path.relpath(os.path.join(d, n), root): os.lstat(os.path.join(d, n)).st_ino
            for d, dirs, files in os.walk(root) for n in dirs + files}


def test_update_replaces_only_what_changed(tmp_path, capsys):
    src, dst = _src(tmp_path), tmp_path / "dst"
    assert call_zcp(capsys, "-a", f"{src}/", dst).code == 0
    before = _inodes(dst)
    (src / "changed").write_bytes(b"version 2")  # same size: only the mtime tells
    os.utime(src / "changed", ns=(1, 2_000_000_001))
    result = call_zcp(capsys, "-a", f"{src}/", dst)
    assert (result.code, result.err) == (0, "")
    assert (dst / "changed").read_bytes() == b"version 2"
    after = _inodes(dst)
    assert {rel for rel in before if after[rel] != before[rel]} == {"changed"}  # replaced by rename
    assert temp_files(dst) == []


def test_symlink_in_the_destination_is_replaced_not_written_through(tmp_path, capsys):
    src, dst = _src(tmp_path), tmp_path / "dst"
    dst.mkdir()
    (tmp_path / "outside").write_bytes(b"must stay")
    os.symlink(tmp_path / "outside", dst / "same")
    os.symlink(tmp_path, dst / "sub")  # a folder symlink where the source has a folder
    result = call_zcp(capsys, "-a", f"{src}/", dst)
    assert (result.code, result.err) == (0, "")
    assert (tmp_path / "outside").read_bytes() == b"must stay"
    assert not os.path.islink(dst / "same") and (dst / "same").read_bytes() == b"unchanged"
    assert not os.path.islink(dst / "sub") and (dst / "sub" / "deep").read_bytes() == b"deep"
    assert not (tmp_path / "deep").exists()


def test_folder_where_the_source_has_a_file_fails_that_file_only(tmp_path, capsys):
    src, dst = _src(tmp_path), tmp_path / "dst"
    (dst / "changed").mkdir(parents=True)
    (dst / "changed" / "keep").write_bytes(b"not lost")
    result = call_zcp(capsys, "-a", f"{src}/", dst)
    assert result.code == ExitCode.PARTIAL
    assert "changed" in assert_one_error_line(result)
    assert (dst / "changed" / "keep").read_bytes() == b"not lost"
    assert (dst / "same").read_bytes() == b"unchanged" and (dst / "sub" / "deep").read_bytes() == b"deep"


def test_file_where_the_source_has_a_folder_is_replaced(tmp_path, capsys):
    src, dst = _src(tmp_path), tmp_path / "dst"
    dst.mkdir()
    (dst / "sub").write_bytes(b"a file in the way")
    result = call_zcp(capsys, "-a", f"{src}/", dst)
    assert (result.code, result.err) == (0, "")
    assert (dst / "sub" / "deep").read_bytes() == b"deep"


def test_without_p_a_new_file_gets_the_umask_and_an_old_one_keeps_its_mode(tmp_path, capsys):
    (tmp_path / "src").write_bytes(b"x")
    os.chmod(tmp_path / "src", 0o777)
    (tmp_path / "old").write_bytes(b"old")
    os.chmod(tmp_path / "old", 0o640)
    umask = os.umask(0o027)
    try:
        assert call_zcp(capsys, tmp_path / "src", tmp_path / "new").code == 0
        assert call_zcp(capsys, tmp_path / "src", tmp_path / "old").code == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(tmp_path / "old").st_mode) == 0o640
    assert (tmp_path / "old").read_bytes() == b"x"


def test_archive_keeps_the_setuid_bit_and_the_owner(tmp_path, capsys):
    need_root()
    (tmp_path / "tool").write_bytes(b"#!/bin/sh\n")
    os.chown(tmp_path / "tool", 1234, 5678)  # as root; chown clears setuid, so the bits come after
    os.chmod(tmp_path / "tool", 0o4755)
    assert call_zcp(capsys, "-a", tmp_path / "tool", tmp_path / "copy").code == 0
    st = os.lstat(tmp_path / "copy")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4755)


def test_without_perms_a_new_copy_loses_its_set_id_bits(tmp_path, capsys):
    """As cp and rsync: the copy now belongs to whoever ran zcp, who must not gain a setuid program.
    A folder keeps setgid, which only says where new files belong."""
    (tmp_path / "src" / "dir").mkdir(parents=True)
    (tmp_path / "src" / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(tmp_path / "src" / "tool", 0o6755)
    os.chmod(tmp_path / "src" / "dir", 0o2755)
    umask = os.umask(0o022)
    try:
        assert call_zcp(capsys, "-r", f"{tmp_path / 'src'}/", tmp_path / "dst").code == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "dst" / "tool").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "dst" / "dir").st_mode) == 0o2755


def test_without_perms_a_new_folder_keeps_the_setgid_it_inherits(tmp_path, capsys):
    """A shared-group folder stays one all the way down, as with mkdir, cp -r and rsync -r."""
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst").chmod(0o2775)
    assert call_zcp(capsys, "-r", f"{tmp_path / 'src'}/", tmp_path / "dst").code == 0
    assert os.stat(tmp_path / "dst" / "sub").st_mode & stat.S_ISGID


def test_fsync_run_copies_a_tree(tmp_path, capsys):
    src = _src(tmp_path)
    result = call_zcp(capsys, "-a", "--fsync", f"{src}/", tmp_path / "dst")
    assert (result.code, result.err) == (0, "")
    assert (tmp_path / "dst" / "sub" / "deep").read_bytes() == b"deep"
