"""Forked worker processes and the pipes between them and the parent: what a tree run needs of
multiprocessing, without importing it (4.5 ms, and 2 ms more to start each process through it, on
the critical path of every tree that forks: a no-op re-sync takes 0.15 s in all).

A message is a pickle behind its 8-byte length. A child never returns into the parent's code: it
ends with os._exit whatever its target does.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import sys
import traceback
from collections.abc import Callable

_LENGTH = struct.Struct("=Q")


class Channel:
    """One side of a parent-child pair of pipes: reads one, writes the other."""

    __slots__ = ("read_fd", "write_fd", "_poller")

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._poller: select.poll | None = None

    def send(self, message: object) -> None:
        """The whole message, or OSError (BrokenPipeError once the other side is gone)."""
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        view = memoryview(_LENGTH.pack(len(data)) + data)
        while view:
            view = view[os.write(self.write_fd, view):]

    def recv(self) -> object:
        """The next message; EOFError when the other side has closed its end (or died)."""
        (length,) = _LENGTH.unpack(self._read(_LENGTH.size))
        return pickle.loads(self._read(length))

    def poll(self) -> bool:
        """Whether a message (or end-of-file) is waiting, without blocking."""
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.read_fd, select.POLLIN)
        return bool(self._poller.poll(0))

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self.write_fd = -1

    def _read(self, size: int) -> bytearray:
        data = bytearray(size)
        view, got = memoryview(data), 0
        while got < size:
            n = os.readv(self.read_fd, [view[got:]])
            if n == 0:
                raise EOFError("the other process closed its end")
            got += n
        return data


class Child:
    """A forked process running ``target(channel, *args)``, and the parent's channel to it."""

    def __init__(self, pid: int, channel: Channel):
        self.pid = pid
        self.channel = channel
        self.exitcode: int | None = None  # as multiprocessing's: -N when killed by signal N

    @classmethod
    def start(cls, target: Callable[..., None], *args: object) -> "Child":
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # or the child would hold a copy of what is buffered
            stream.flush()
        pid = os.fork()
        if pid == 0:  # the child: never back into the caller's frames
            code = 1
            try:
                os.close(parent_writes)
                os.close(parent_reads)
                target(Channel(child_reads, child_writes), *args)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        os.close(child_reads)
        os.close(child_writes)
        return cls(pid, Channel(parent_reads, parent_writes))

    def is_alive(self) -> bool:
        if self.exitcode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)
        return self.exitcode is None

    def join(self) -> int:
        if self.exitcode is None:
            _, status = os.waitpid(self.pid, 0)
            self.exitcode = os.waitstatus_to_exitcode(status)
        return self.exitcode


def readable(channels: list[Channel]) -> list[Channel]:
    """Block until at least one channel has a message or end-of-file; those channels."""
    poller = select.poll()
    by_fd = {}
    for channel in channels:
        poller.register(channel.read_fd, select.POLLIN)
        by_fd[channel.read_fd] = channel
    return [by_fd[fd] for fd, _ in poller.poll()]
