"""Values passed from the planner to the executor (Landing.of alone reads a folder's default ACL).

They are values: nothing changes them once made. They are not frozen dataclasses only because
those cost six times more to make (a setattr per field), and one or two are made per entry.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from enum import StrEnum
from operator import attrgetter
from typing import NamedTuple

from zcp.config import Method, Preserve


class Kind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    FIFO = "fifo"
    CHAR = "char"
    BLOCK = "block"
    SOCKET = "socket"

    @classmethod
    def of(cls, mode: int) -> "Kind":
        return _KIND_BY_FMT[stat.S_IFMT(mode)]


_KIND_BY_FMT = {
    stat.S_IFREG: Kind.FILE,
    stat.S_IFDIR: Kind.DIR,
    stat.S_IFLNK: Kind.SYMLINK,
    stat.S_IFIFO: Kind.FIFO,
    stat.S_IFCHR: Kind.CHAR,
    stat.S_IFBLK: Kind.BLOCK,
    stat.S_IFSOCK: Kind.SOCKET,
}

SPECIAL_KINDS = frozenset({Kind.FIFO, Kind.CHAR, Kind.BLOCK, Kind.SOCKET})
DEVICE_KINDS = frozenset({Kind.CHAR, Kind.BLOCK})


@dataclass(slots=True)
class Entry:
    """An lstat snapshot of one path: ``path`` is the path it was taken of; names are str (surrogateescape)."""

    path: str
    kind: Kind
    mode: int  # permission bits only (S_IMODE)
    size: int
    mtime_ns: int
    atime_ns: int
    uid: int
    gid: int
    dev: int
    ino: int
    nlink: int
    rdev: int = 0
    blocks: int = 0
    ctime_ns: int = 0  # when its metadata last changed (xattrs included)

    @classmethod
    def from_stat(cls, path: str, st: os.stat_result) -> "Entry":
        mode = st.st_mode
        kind = _KIND_BY_FMT[mode & 0o170000]
        # positional: this runs once per file of the tree
        return cls(path, kind, mode & 0o7777, st.st_size, st.st_mtime_ns, st.st_atime_ns, st.st_uid,
                   st.st_gid, st.st_dev, st.st_ino, st.st_nlink,
                   st.st_rdev if kind in DEVICE_KINDS else 0,  # meaningless for other kinds
                   st.st_blocks, st.st_ctime_ns)

    def __reduce__(self):
        # Sent between worker processes: positional, 4x cheaper than the dataclass state protocol.
        return Entry, _ENTRY_FIELDS(self)

    @property
    def is_sparse(self) -> bool:
        """Fewer blocks allocated than the size needs: worth walking SEEK_DATA/SEEK_HOLE."""
        return self.blocks * 512 < self.size and self.kind is FILE


class Op(StrEnum):
    """What the executor does for one destination path."""

    MKDIR = "mkdir"  # create a folder (or fix the metadata of an existing one)
    COPY = "copy"  # new regular file
    UPDATE = "update"  # replace an existing file whose content differs
    SYMLINK = "symlink"
    HARDLINK = "hardlink"  # link to a file already placed in this run
    SPECIAL = "special"  # mknod / mkfifo
    ATTRS = "attrs"  # content up to date; owner, mode or times to fix
    SKIP = "skip"  # up to date, or not copyable (reason says why)
    DELETE = "delete"  # not in the source (--delete)


COPYING_OPS = frozenset({Op.COPY, Op.UPDATE})  # the ops that move a file's bytes

# The members the per-entry paths compare with, as module names: on Python 3.11 every ``Kind.FILE``
# lookup goes through EnumType.__getattr__'s slow attribute hook (3.12 dropped it), and those
# lookups cost about 6% of the CPU of a tree copy.
FILE, DIR, SYMLINK = Kind.FILE, Kind.DIR, Kind.SYMLINK
COPY, UPDATE, SKIP, ATTRS = Op.COPY, Op.UPDATE, Op.SKIP, Op.ATTRS


class Landing(NamedTuple):
    """What a destination folder does to the entries created in it."""

    dev: int  # its device
    setgid: bool  # they take its group
    default_acl: bool  # a new file's mode comes from its default ACL, not from the umask

    @classmethod
    def of(cls, folder: str | int, dev: int, mode: int) -> "Landing":
        """What an existing folder (a path or an open fd; its device and mode given) does."""
        try:
            # a path is never followed; an fd is the folder itself (and cannot take follow_symlinks=False)
            os.getxattr(folder, "system.posix_acl_default", follow_symlinks=isinstance(folder, int))
            default_acl = True
        except OSError:  # ENODATA: none; EOPNOTSUPP: no ACLs on this filesystem
            default_acl = False
        return cls(dev, bool(mode & stat.S_ISGID), default_acl)


@dataclass(slots=True)
class Action:
    """One step of a plan: an op on ``dst`` from ``src``, with the kernel paths to try and why."""

    op: Op
    rel: str  # path relative to the transfer root, for display and filters
    dst: str
    src: Entry | None = None
    methods: tuple[Method, ...] = ()
    reason: str = ""
    link_to: str | None = None  # HARDLINK: destination path already written
    target: str | None = None  # SYMLINK: link text
    existing: Entry | None = None  # lstat of the destination before the run
    landing: Landing | None = None  # COPY/UPDATE: the folder the file lands in
    warning: str = ""  # SKIP of something the user asked for (a FIFO without root, ...)
    failure: str = ""  # SKIP of something that cannot be done: the run fails it (exit 23)
    xattrs: bool = False  # ATTRS: the extended attributes differ too

    def __reduce__(self):
        return Action, _ACTION_FIELDS(self)


_ENTRY_FIELDS = attrgetter(*Entry.__slots__)
_ACTION_FIELDS = attrgetter(*Action.__slots__)


@dataclass(slots=True)
class Folder:
    """A source folder whose entries are still to be planned, and the destination folder they land in."""

    rel: str
    src: str
    dst: str
    new: bool  # not a folder in the destination before the run: its entries need no lstat
    landing: Landing
    names: tuple[str, ...] | None = None  # only these entries, already listed (the rest of a listing)


class LinkCandidate(NamedTuple):
    """A file with other hard links (-H): decided after the walk, when every member has been seen."""

    rel: str
    src: Entry
    dst: str
    existing: Entry | None
    landing: Landing


class Unchanged(NamedTuple):
    """Files found up to date that the planner counted instead of planning one by one: nobody
    looks at them (no -n, -vv); only the counters and the progress totals take them."""

    count: int


class Extra(NamedTuple):
    """A destination entry absent from the source: deleted after everything else (--delete)."""

    action: Action


def metadata_differences(src: Entry, dst: Entry, preserve: Preserve, is_root: bool) -> list[str]:
    """Which preserved attributes of ``dst`` differ from ``src`` (names as in itemized output)."""
    differ = []
    if preserve.mode and src.mode != dst.mode:
        differ.append("perms")
    if preserve.times and src.mtime_ns != dst.mtime_ns:
        differ.append("time")
    if preserve.owner and is_root:
        if src.uid != dst.uid:
            differ.append("owner")
        if src.gid != dst.gid:
            differ.append("group")
    return differ
