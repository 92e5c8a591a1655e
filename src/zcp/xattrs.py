"""Reading extended attributes, for the planner's comparisons, the copy and the stream sender."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

# Errors that mean "this filesystem cannot hold that attribute" (or will not show it to us).
XATTR_UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES})
# setxattr's refusals of one attribute, not of the file: also a value the kernel finds invalid (a
# malformed security.capability), too large (ERANGE, E2BIG), or no room left in the inode's block.
XATTR_NOT_SET = XATTR_UNSUPPORTED | {errno.EINVAL, errno.ERANGE, errno.E2BIG, errno.ENOSPC}


def read_xattrs(target: int | str) -> dict[str, bytes]:
    """Every extended attribute of an open fd, or of a path (a symlink not followed); none where
    the filesystem has none or will not show them."""
    try:
        if isinstance(target, int):
            return {name: os.getxattr(target, name) for name in os.listxattr(target)}
        return {name: os.getxattr(target, name, follow_symlinks=False)
                for name in os.listxattr(target, follow_symlinks=False)}
    except OSError as exc:
        if exc.errno in XATTR_UNSUPPORTED:
            return {}
        raise


def has_xattrs(path: str) -> bool:
    """Whether a path (not followed) carries any extended attribute: one listxattr, 1.5 µs on tmpfs."""
    try:
        return bool(os.listxattr(path, follow_symlinks=False))
    except OSError as exc:
        if exc.errno in XATTR_UNSUPPORTED:
            return False
        raise


def xattrs_differ(a: str, b: str) -> bool:
    """Whether two paths carry different extended attributes (symlinks not followed)."""
    return read_xattrs(a) != read_xattrs(b)


def set_xattrs(fd: int, attributes: Iterable[tuple[str, bytes]]) -> list[str]:
    """Set each (name, value) on an open file; a warning for each this filesystem or kernel will
    not take (it cannot hold it, or not this value), and the rest are still set."""
    warnings = []
    for name, value in attributes:
        try:
            os.setxattr(fd, name, value)
        except OSError as exc:
            if exc.errno not in XATTR_NOT_SET:
                raise
            warnings.append(f"xattr {name} not kept: {exc.strerror}")
    return warnings
