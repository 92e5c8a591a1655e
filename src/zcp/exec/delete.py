"""Delete destination entries (--delete) without ever following a symlink out of the destination.

The parent folder is reached from the transfer root with confined opens (no symlink followed),
and a folder's contents are removed through its own fd, so nothing planted in the destination
can redirect the removal elsewhere.
"""

from __future__ import annotations

import os
import stat

from zcp.errors import FileError, StreamError
from zcp.confine import ConfinedDir

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def delete_beneath(root: str, rel: str) -> int:
    """Remove ``root/rel`` (a whole tree for a folder); returns the number of entries removed."""
    *parents, name = rel.split("/")
    try:
        with ConfinedDir.open(root) as confined:
            parent_fd = confined.open_folder(tuple(parents))
    except StreamError as exc:
        raise FileError(f"{rel}: not deleted: {exc}") from None
    except FileNotFoundError:  # its folder is gone already, and the entry with it
        return 0
    try:
        return _remove(parent_fd, name)
    finally:
        os.close(parent_fd)


def _remove(parent_fd: int, name: str) -> int:
    """Remove one entry (a folder with all it holds); what is already gone was removed by someone
    else, and counts for nothing rather than as a failure."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            return 1
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        return 0
    removed = 0
    try:
        for child in sorted(os.listdir(fd)):
            removed += _remove(fd, child)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except FileNotFoundError:
        return removed
    return removed + 1
