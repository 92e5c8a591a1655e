"""Pure choice of the kernel paths to try for one regular file, cheapest first, with the reason."""

from __future__ import annotations

from functools import lru_cache

from zcp.config import Method, Reflink

_IN_KERNEL = (Method.COPY_FILE_RANGE, Method.SENDFILE, Method.RW)


@lru_cache(maxsize=64)
def choose_methods(method: Method, reflink: Reflink, same_fs: bool) -> tuple[tuple[Method, ...], str]:
    if method is not Method.AUTO:
        return (method,), f"forced by --method={method}"
    if reflink is Reflink.ALWAYS:
        return (Method.REFLINK,), "--reflink=always"
    if not same_fs:
        return _IN_KERNEL, "different filesystems: in-kernel copy (extents cannot be shared)"
    if reflink is Reflink.NEVER:
        # copy_file_range clones extents by itself on xfs/btrfs, which --reflink=never forbids.
        return (Method.SENDFILE, Method.RW), "--reflink=never: real copy through the page cache"
    return (Method.REFLINK, *_IN_KERNEL), "same filesystem: share extents, else in-kernel copy"
