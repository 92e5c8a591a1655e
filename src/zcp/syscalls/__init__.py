"""The only place that calls FICLONE, copy_file_range, sendfile, splice and SEEK_DATA/SEEK_HOLE."""

from zcp.syscalls.caps import Capabilities
from zcp.syscalls.fdkind import FdKind, classify
from zcp.syscalls.loops import (
    COPIERS,
    Copier,
    Progress,
    copy_file_range,
    grow_pipe,
    read_write,
    reflink,
    reflink_range,
    sendfile,
    splice,
    wait_ready,
)
from zcp.syscalls.sparse import copy_file_data, data_segments

__all__ = [
    "COPIERS",
    "Capabilities",
    "Copier",
    "FdKind",
    "Progress",
    "classify",
    "copy_file_data",
    "copy_file_range",
    "data_segments",
    "grow_pipe",
    "read_write",
    "reflink",
    "reflink_range",
    "sendfile",
    "splice",
    "wait_ready",
]
