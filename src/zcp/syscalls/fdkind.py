"""What an fd is, so a stream endpoint can pick the kernel path that serves it."""

from __future__ import annotations

import fcntl
import os
import stat
from enum import StrEnum


class FdKind(StrEnum):
    FILE = "file"
    PIPE = "pipe"  # anonymous pipe or FIFO
    SOCKET = "socket"
    TTY = "tty"
    CHAR = "char"  # a character device that is not a terminal (/dev/null, /dev/zero, ...)
    DIR = "dir"
    OTHER = "other"  # block devices and anything else


def classify(fd: int) -> tuple[FdKind, bool]:
    """The fd's kind and whether it is in append mode (writes go to the end, offsets are refused)."""
    mode = os.fstat(fd).st_mode
    append = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
    if stat.S_ISREG(mode):
        kind = FdKind.FILE
    elif stat.S_ISFIFO(mode):
        kind = FdKind.PIPE
    elif stat.S_ISSOCK(mode):
        kind = FdKind.SOCKET
    elif stat.S_ISCHR(mode):
        kind = FdKind.TTY if os.isatty(fd) else FdKind.CHAR
    elif stat.S_ISDIR(mode):
        kind = FdKind.DIR
    else:
        kind = FdKind.OTHER
    return kind, append
