"""Helpers for the syscall tests: fixtures for real fds, threads at the far end of pipes, and faulty
wrappers of os calls.

Test modules import the fixtures by name. A conftest.py here would shadow tests/conftest.py, whose
``need`` helpers are imported as ``conftest``.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable

import pytest


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


class Drain(threading.Thread):
    """Reads an fd to EOF in the background (the far end of a pipe or socket)."""

    def __init__(self, fd: int, delay: float = 0.0):
        super().__init__(daemon=True)
        self.fd, self.delay = fd, delay
        self._chunks: list[bytes] = []

    def run(self) -> None:
        time.sleep(self.delay)
        while chunk := os.read(self.fd, 1 << 16):
            self._chunks.append(chunk)

    def data(self) -> bytes:
        self.join(10)
        assert not self.is_alive(), "the reader never saw EOF"
        return b"".join(self._chunks)


class Feed(threading.Thread):
    """Writes bytes into an fd in the background, then closes it (the writer end of a pipe)."""

    def __init__(self, fd: int, data: bytes, delay: float = 0.0, close: Callable[[int], None] = os.close):
        super().__init__(daemon=True)
        self.fd, self.payload, self.delay, self._close = fd, data, delay, close

    def run(self) -> None:
        time.sleep(self.delay)
        view = memoryview(self.payload)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                time.sleep(0.001)
        self._close(self.fd)


def _shorten_count(index: int):
    def shorten(args: tuple, limit: int) -> tuple:
        return (*args[:index], min(args[index], limit), *args[index + 1 :])

    return shorten


def _shorten_buffers(args: tuple, limit: int) -> tuple:
    return (args[0], [args[1][0][:limit]], *args[2:])


def _shorten_data(args: tuple, limit: int) -> tuple:
    return (args[0], args[1][:limit], *args[2:])


_SHORTEN = {
    "copy_file_range": _shorten_count(2),
    "splice": _shorten_count(2),
    "sendfile": _shorten_count(3),
    "readv": _shorten_buffers,
    "preadv": _shorten_buffers,
    "write": _shorten_data,
    "pwrite": _shorten_data,
}


class Faulty:
    """Stands in for ``os.<name>``: transfers at most ``limit`` bytes per call, fails at chosen calls.

    ``fail`` maps a 0-based call number to an errno raised instead of calling the kernel;
    ``returns`` maps a call number to a value returned instead. Every call and every EAGAIN the
    kernel itself reported are counted. ``only_fd`` leaves calls on other first fds alone (for
    calls that helper threads make too, like ``write``).
    """

    def __init__(
        self,
        monkeypatch,
        name: str,
        *,
        limit: int | None = None,
        fail: dict[int, int] | None = None,
        returns: dict[int, int] | None = None,
        only_fd: int | None = None,
    ):
        self.name, self.limit, self.only_fd = name, limit, only_fd
        self.fail, self.returns = fail or {}, returns or {}
        self.calls = 0
        self.kernel_eagain = 0
        self._real = getattr(os, name)
        monkeypatch.setattr(os, name, self)

    def __call__(self, *args):
        if self.only_fd is not None and args[0] != self.only_fd:
            return self._real(*args)
        n = self.calls
        self.calls += 1
        if n in self.fail:
            raise OSError(self.fail[n], os.strerror(self.fail[n]))
        if n in self.returns:
            return self.returns[n]
        if self.limit is not None:
            args = _SHORTEN[self.name](args, self.limit)
        try:
            return self._real(*args)
        except BlockingIOError:
            self.kernel_eagain += 1
            raise



class Fds:
    """Opens files, pipes and socketpairs for one test and closes whatever is still open."""

    def __init__(self, base):
        self.base = base
        self._open: set[int] = set()

    def file(self, name: str, data: bytes | None = None, flags: int = os.O_RDWR) -> int:
        path = self.base / name
        if data is not None:
            path.write_bytes(data)
        return self._keep(os.open(path, flags | os.O_CREAT, 0o644))

    def pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        return self._keep(r), self._keep(w)

    def socketpair(self) -> tuple[int, int]:
        a, b = socket.socketpair()
        return self._keep(a.detach()), self._keep(b.detach())

    def close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self._open):
            self.close(fd)

    def _keep(self, fd: int) -> int:
        self._open.add(fd)
        return fd


@pytest.fixture
def fds(tmp_path):
    opened = Fds(tmp_path)
    yield opened
    opened.close_all()
