"""Atomic replace: write ``.name.<token>.zcp`` beside the target, then rename it into place.

The target is always either its old self or the complete new file; a failure removes the temp file.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Callable
from typing import TypeVar

TEMP_SUFFIX = ".zcp"
_counter = itertools.count()
_T = TypeVar("_T")
# Leave room for the dot, the token and the suffix inside NAME_MAX (255 bytes).
_NAME_BYTES = 200


_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def temp_name(target: str) -> str:
    head, sep, name = target.rpartition("/")
    if len(name) > _NAME_BYTES // 4:  # only long names can overflow NAME_MAX once encoded
        name = os.fsdecode(os.fsencode(name)[:_NAME_BYTES])
    return f"{head}{sep}.{name}.{_pid:x}-{next(_counter):x}{TEMP_SUFFIX}"


def remove_temps_of(target: str, pid: int) -> None:
    """Remove what a killed process ``pid`` left beside ``target`` (it had no chance to)."""
    head, sep, name = target.rpartition("/")
    if len(name) > _NAME_BYTES // 4:
        name = os.fsdecode(os.fsencode(name)[:_NAME_BYTES])
    for path in glob.glob(f"{glob.escape(head + sep)}.{glob.escape(name)}.{pid:x}-*{TEMP_SUFFIX}",
                          include_hidden=True):
        remove_quietly(path)


def create_temp(target: str, mode: int = 0o600) -> tuple[str, int]:
    """A new, empty temp file beside ``target`` created with ``mode`` (less the umask): (path, fd).

    Read-write: --verify reads the written bytes back through the same fd.
    """
    while True:
        path = temp_name(target)
        try:
            return path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            continue


def make_beside(target: str, make: Callable[[str], _T]) -> _T:
    """Create something (symlink, hard link, node) under a temp name and rename it over ``target``."""
    while True:
        path = temp_name(target)
        try:
            result = make(path)
            break
        except FileExistsError:
            continue
    try:
        os.rename(path, target)
    except BaseException:
        remove_quietly(path)
        raise
    return result


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
