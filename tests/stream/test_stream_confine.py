"""ConfinedDir: the kernel keeps every folder beneath DEST, with openat2 and without it."""

from __future__ import annotations

import errno
import os

import pytest
from conftest import need

from zcp.errors import StreamError
from zcp import confine
from zcp.confine import ConfinedDir, split_name


@pytest.fixture(params=[True, False], ids=["openat2", "nofollow-walk"])
def root(request, tmp_path):
    if request.param:
        need(confine._probe_openat2(os.open(tmp_path, os.O_RDONLY)), "openat2 (Linux >= 5.6)")
    (tmp_path / "dest" / "real").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink("../outside", tmp_path / "dest" / "link")
    os.symlink("/proc/self/root", tmp_path / "dest" / "magic")
    (tmp_path / "dest" / "file").write_bytes(b"")
    with ConfinedDir.open(str(tmp_path / "dest"), use_openat2=request.param) as confined:
        assert confined.uses_openat2 == request.param
        yield confined


def folder_of(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_folders_are_opened_and_made_beneath_dest(root, tmp_path):
    assert folder_of(root.folder(("real",), create=False)) == str(tmp_path / "dest" / "real")
    assert folder_of(root.folder(("new", "deeper"), create=True)) == str(tmp_path / "dest" / "new" / "deeper")
    with pytest.raises(FileNotFoundError):
        root.folder(("absent",), create=False)


@pytest.mark.parametrize("parts", [("link",), ("link", "x"), ("magic", "tmp"), ("real", "..", "link")])
def test_symlinks_are_never_followed(root, tmp_path, parts):
    with pytest.raises(StreamError, match="symlink"):
        root.folder(parts, create=True)
    assert os.listdir(tmp_path / "outside") == []


def test_a_file_is_not_a_folder(root):
    with pytest.raises(StreamError, match="not a folder"):
        root.folder(("file", "x"), create=True)


def test_openat2_itself_refuses_escapes(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        need(confine._probe_openat2(fd), "openat2 (Linux >= 5.6)")
        for path, err in (("..", errno.EXDEV), ("/", errno.EXDEV)):
            with pytest.raises(OSError) as caught:
                confine.openat2(fd, path, os.O_RDONLY | os.O_DIRECTORY, confine.RESOLVE_BENEATH)
            assert caught.value.errno == err
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "name, parts",
    [("a/b", ("a", "b")), ("./a//b/", ("a", "b")), (".", ()), ("./", ()), ("a/./b", ("a", "b")), ("a/b/", ("a", "b")),
     ("x/./", ("x",)), ("a.b/.c", ("a.b", ".c")), ("...", ("...",))],
)
def test_names_split_into_components(name, parts):
    assert split_name(name) == parts


@pytest.mark.parametrize("name", ["", "/etc/passwd", "..", "a/../b", "a/..", "a\x00b", "./../a", "a/b/../../.."])
def test_unsafe_names_are_refused(name):
    with pytest.raises(StreamError):
        split_name(name)
