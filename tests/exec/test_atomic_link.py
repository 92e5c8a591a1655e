"""Naming an unnamed (O_TMPFILE) inode, on real files: by fd where the kernel allows it, through
/proc/self/fd where it does not, and the same errors either way."""

from __future__ import annotations

import errno
import os

import pytest
from conftest import need

from zcp.exec import atomic


@pytest.fixture
def folder(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def unnamed(folder: int, data: bytes) -> int:
    fd = atomic.open_unnamed(".", 0o644, dir_fd=folder)
    os.write(fd, data)
    return fd


def test_linked_by_fd_where_the_kernel_allows_it_and_proc_is_never_looked_up(tmp_path, folder, monkeypatch):
    probe = unnamed(folder, b"probe")
    allowed = atomic._link_by_fd(probe, "probe", folder) == 0
    os.close(probe)
    need(allowed, "linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH or Linux 6.10")
    monkeypatch.setattr(atomic, "_by_fd", None)

    def no_proc(*args, **kwargs):
        raise AssertionError("looked up /proc/self/fd")

    monkeypatch.setattr(os, "link", no_proc)
    fd = unnamed(folder, b"by fd")
    atomic.link_unnamed(fd, "named", dir_fd=folder)
    os.close(fd)
    assert (tmp_path / "named").read_bytes() == b"by fd" and atomic._by_fd is True


def test_refused_by_fd_at_first_the_proc_path_names_it_and_is_used_from_then_on(tmp_path, folder, monkeypatch):
    asked = []

    def refused(fd, name, dir_fd):
        asked.append(name)
        return errno.ENOENT  # what a kernel before 6.10 says to a caller without the capability

    monkeypatch.setattr(atomic, "_by_fd", None)
    monkeypatch.setattr(atomic, "_link_by_fd", refused)
    for name in ("a", "b"):
        fd = unnamed(folder, name.encode())
        atomic.link_unnamed(fd, name, dir_fd=folder)
        os.close(fd)
    assert [(tmp_path / n).read_bytes() for n in "ab"] == [b"a", b"b"]
    assert asked == ["a"] and atomic._by_fd is False


def cross_device(*args, **kwargs):
    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))


@pytest.mark.parametrize("by_fd", [True, False])
def test_a_taken_name_is_file_exists_and_a_refusal_is_unsupported_either_way(tmp_path, folder, monkeypatch, by_fd):
    monkeypatch.setattr(atomic, "_by_fd", None if by_fd else False)
    (tmp_path / "taken").write_bytes(b"old")
    fd = unnamed(folder, b"new")
    try:
        if by_fd:
            monkeypatch.setattr(atomic, "_link_by_fd", lambda fd, name, dir_fd: errno.EEXIST)
        with pytest.raises(FileExistsError):
            atomic.link_unnamed(fd, "taken", dir_fd=folder)
        if by_fd:
            monkeypatch.setattr(atomic, "_by_fd", True)  # once it worked, a refusal is this file's
            monkeypatch.setattr(atomic, "_link_by_fd", lambda fd, name, dir_fd: errno.EXDEV)
        else:
            monkeypatch.setattr(os, "link", cross_device)
        with pytest.raises(atomic.UnnamedUnsupported):
            atomic.link_unnamed(fd, "other", dir_fd=folder)
    finally:
        os.close(fd)
    assert (tmp_path / "taken").read_bytes() == b"old" and not (tmp_path / "other").exists()
