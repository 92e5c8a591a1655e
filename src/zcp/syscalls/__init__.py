"""The only place that calls FICLONE, copy_file_range, sendfile, splice and SEEK_DATA/SEEK_HOLE."""

from zcp.config import Method
from zcp.syscalls.caps import Capabilities
from zcp.syscalls.fdkind import FdKind, classify
from zcp.syscalls.loops import (
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
from zcp.syscalls.sparse import copy_file_data, data_segments, punch_hole, split_by_data
from zcp.syscalls.split import copy_file_range_split

# The loop that copies a file's bytes for each method (reflink copies none: it shares extents).
COPIERS: dict[Method, Copier] = {
    Method.COPY_FILE_RANGE: copy_file_range_split,
    Method.SENDFILE: sendfile,
    Method.SPLICE: splice,
    Method.RW: read_write,
}

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
    "punch_hole",
    "split_by_data",
    "grow_pipe",
    "read_write",
    "reflink",
    "reflink_range",
    "sendfile",
    "splice",
    "wait_ready",
]
