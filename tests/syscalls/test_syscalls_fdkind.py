"""classify() on real fds of every kind."""

from __future__ import annotations

import os

import pytest
from syscalls_support import fds  # noqa: F401 (fixtures)

from zcp.syscalls import FdKind, classify

pytestmark = pytest.mark.usefixtures("no_hang")  # a loop that never ends fails, not stalls


def test_regular_file_with_and_without_append(fds):
    assert classify(fds.file("plain")) == (FdKind.FILE, False)
    assert classify(fds.file("log", flags=os.O_WRONLY | os.O_APPEND)) == (FdKind.FILE, True)


def test_pipe_and_socket_ends(fds):
    read_end, write_end = fds.pipe()
    assert classify(read_end) == classify(write_end) == (FdKind.PIPE, False)
    one, other = fds.socketpair()
    assert classify(one) == (FdKind.SOCKET, False)


def test_named_fifo_is_a_pipe(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    fd = os.open(tmp_path / "fifo", os.O_RDWR)  # O_RDWR: opening a FIFO does not wait for a peer
    try:
        assert classify(fd) == (FdKind.PIPE, False)
    finally:
        os.close(fd)


def test_terminal_character_device_and_directory(tmp_path):
    primary, terminal = os.openpty()
    null = os.open(os.devnull, os.O_WRONLY | os.O_APPEND)
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert classify(terminal) == (FdKind.TTY, False)
        assert classify(null) == (FdKind.CHAR, True)
        assert classify(folder) == (FdKind.DIR, False)
    finally:
        for fd in (primary, terminal, null, folder):
            os.close(fd)


def test_closed_fd_is_an_error(fds):
    fd = fds.file("gone")
    fds.close(fd)
    with pytest.raises(OSError):
        classify(fd)
