"""Copy one regular file's bytes into an open destination fd, trying kernel paths in plan order."""

from __future__ import annotations

from zcp.config import Method
from zcp.errors import MethodUnavailable, Unsupported
from zcp.syscalls import COPIERS, Capabilities, Progress, copy_file_data, reflink


def copy_bytes(methods: tuple[Method, ...], src_fd: int, dst_fd: int, size: int, sparse: bool,
               devices: tuple[int, int], caps: Capabilities, progress: Progress | None) -> tuple[Method, int]:
    """Run the first method that works; returns (method used, bytes moved).

    A method is left for the next only when it wrote nothing (Unsupported); when the refusal holds
    for the whole filesystem, the device pair remembers it so later files skip the attempt. Any
    other failure is the file's failure.
    """
    usable = caps.usable(methods, *devices)
    refusals = []
    for method in usable:
        copier = COPIERS.get(method)
        try:
            if copier is None:  # reflink: the extents are shared, nothing is copied
                reflink(src_fd, dst_fd)
                if progress:
                    progress(size)
                return method, size
            return method, copy_file_data(copier, src_fd, dst_fd, size, sparse, progress)
        except Unsupported as exc:
            caps.refused(method, exc, *devices)
            refusals.append(str(exc))
    known = [f"{m}: unsupported here" for m in methods if m not in usable]
    raise MethodUnavailable("no kernel path could copy it (" + "; ".join(known + refusals) + ")")
