"""`zcp SRC -`: a tree as a POSIX pax stream, bodies moved from the page cache by the kernel.

Headers and padding go out with write(); each body goes with splice (to a pipe), sendfile (to a
socket), copy_file_range (to a regular file) or read/write (anything else). Every regular file is
hashed before its body is sent and the xxh3-128 travels in its pax header (docs/stream-format.md).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeVar

from zcp.config import Method
from zcp.errors import SourceChanged, describe
from zcp.hashing import hash_fd, hex_digest
from zcp.model import Entry, Kind
from zcp.stream import pax
from zcp.stream.transfer import body_methods, method_chain, move, write_all
from zcp.syscalls import FdKind, Progress, classify

_TYPE_BY_KIND = {
    Kind.DIR: pax.DIRECTORY,
    Kind.SYMLINK: pax.SYMLINK,
    Kind.FIFO: pax.FIFO,
    Kind.CHAR: pax.CHAR,
    Kind.BLOCK: pax.BLOCKDEV,
}
T = TypeVar("T")
# O_NONBLOCK: a FIFO swapped in for a file must not block the open (fstat then tells).
_OPEN_SOURCE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


@dataclass
class StreamStats:
    entries: int = 0
    files: int = 0
    hardlinks: int = 0
    skipped: int = 0  # sockets: tar has no type for them
    bytes: int = 0  # body bytes sent
    vanished: list[str] = field(default_factory=list)  # gone before their header was written
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): unreadable, left out
    by_method: Counter[Method] = field(default_factory=Counter)


def write_stream(out_fd: int, items: Iterable[tuple[str, Entry]], *, progress: Progress | None = None) -> StreamStats:
    """Write ``items`` (archive name, lstat snapshot) as a zcp pax stream, then the end marker.

    An entry that fails before its header is written (vanished, unreadable, no longer a regular
    file, changed while hashed) is left out and listed in ``vanished`` or ``failed``. A file that
    changes after its header went out raises SourceChanged naming it: the stream is then unusable.
    BrokenPipe when the reader went away.
    """
    stats = StreamStats()
    write_all(out_fd, pax.pax_header(b"././@PaxGlobalHeader", pax.PAX_GLOBAL, [(pax.KEY_VERSION, pax.ZCP_VERSION.encode())]))
    first_names: dict[tuple[int, int], bytes] = {}  # (dev, ino) of multiply linked files
    methods = method_chain(FdKind.FILE, *classify(out_fd))
    for name, entry in items:
        arcname = _archive_name(name, entry.kind)
        link_key = (entry.dev, entry.ino)
        if entry.kind is Kind.SOCKET:
            stats.skipped += 1
            continue
        if entry.kind is Kind.FILE and entry.nlink > 1 and link_key in first_names:
            write_all(out_fd, _headers(arcname, pax.HARDLINK, entry, linkname=first_names[link_key]))
            stats.hardlinks += 1
            written = True
        elif entry.kind is Kind.FILE:
            written = _send_file(out_fd, arcname, entry, methods, stats, progress)
            if written and entry.nlink > 1:
                first_names[link_key] = arcname
        elif entry.kind is Kind.SYMLINK:
            target = _before_header(os.readlink, entry.path, stats)
            written = target is not None
            if target is not None:
                write_all(out_fd, _headers(arcname, pax.SYMLINK, entry, linkname=os.fsencode(target)))
        else:
            write_all(out_fd, _headers(arcname, _TYPE_BY_KIND[entry.kind], entry))
            written = True
        stats.entries += written
    write_all(out_fd, pax.ZERO_BLOCK * 2)
    return stats


def write_raw(out_fd: int, src_fd: int, size: int | None, progress: Progress | None = None) -> int:
    """`--format raw`: one file's bytes alone (``size`` None: until EOF) from ``src_fd``'s position."""
    used: Counter[Method] = Counter()
    return move(src_fd, out_fd, size, None, None, body_methods(src_fd, out_fd), used, progress)


def _before_header(read: Callable[[str], T], path: str, stats: StreamStats) -> T | None:
    """``read(path)``, or None with the failure recorded: nothing of this entry is in the stream yet."""
    try:
        return read(path)
    except FileNotFoundError:
        stats.vanished.append(path)
    except OSError as exc:
        stats.failed.append((path, describe(exc)))
    return None


def _send_file(
    out_fd: int, arcname: bytes, entry: Entry, methods: tuple[Method, ...], stats: StreamStats, progress: Progress | None
) -> bool:
    """Header, body and padding of one regular file; False if it could not be opened (left out)."""
    fd = _before_header(lambda path: os.open(path, _OPEN_SOURCE), entry.path, stats)
    if fd is None:
        return False
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            stats.failed.append((entry.path, "no longer a regular file"))
            return False
        # Hash first: the reader checks the body against it, and the body then goes out of the
        # page cache this read has just filled.
        try:
            digest = hash_fd(fd, before.st_size)
        except SourceChanged as exc:
            stats.failed.append((entry.path, str(exc)))
            return False
        current = Entry.from_stat(entry.path, before)
        write_all(out_fd, _headers(arcname, pax.REGULAR, current, digest=digest))
        try:
            move(fd, out_fd, current.size, 0, None, methods, stats.by_method, progress)
        except SourceChanged as exc:
            raise SourceChanged(f"{entry.path}: {exc}") from None
        write_all(out_fd, bytes(pax.padding(current.size)))
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise SourceChanged(f"{entry.path}: changed while it was sent")
    finally:
        os.close(fd)
    stats.files += 1
    stats.bytes += current.size
    return True


def _archive_name(name: str, kind: Kind) -> bytes:
    raw = os.fsencode(name)
    parts = raw.split(b"/")
    if not raw or raw.startswith(b"/") or b".." in parts or b"\x00" in raw:
        raise ValueError(f"not a relative archive name: {name!r}")
    return raw.rstrip(b"/") + b"/" if kind is Kind.DIR else raw


def _headers(
    arcname: bytes, typeflag: bytes, entry: Entry, *, linkname: bytes = b"", digest: bytes | None = None
) -> bytes:
    """The 'x' header with exact values, then the ustar header with what fits."""
    size = entry.size if typeflag == pax.REGULAR else 0
    records: list[tuple[str, bytes]] = []
    binary = not (pax.is_utf8(arcname) and pax.is_utf8(linkname))
    if binary:
        records.append(("hdrcharset", b"BINARY"))  # must come before the values it describes
    if binary or not arcname.isascii() or not pax.fits_ustar_name(arcname):
        records.append(("path", arcname))
    if len(linkname) > 100 or not linkname.isascii():
        records.append(("linkpath", linkname))
    for key, value, width in (("size", size, 12), ("uid", entry.uid, 8), ("gid", entry.gid, 8)):
        if value >= 8 ** (width - 1):
            records.append((key, str(value).encode()))
    records.append(("mtime", pax.format_ns_time(entry.mtime_ns)))
    records.append(("atime", pax.format_ns_time(entry.atime_ns)))
    if digest is not None:
        records.append((pax.KEY_HASH, hex_digest(digest).encode()))
    major, minor = (os.major(entry.rdev), os.minor(entry.rdev)) if entry.kind in (Kind.CHAR, Kind.BLOCK) else (0, 0)
    header = pax.encode_header(
        arcname,
        typeflag,
        mode=entry.mode,
        uid=entry.uid if entry.uid < 8**7 else 0,
        gid=entry.gid if entry.gid < 8**7 else 0,
        size=size if size < 8**11 else 0,
        mtime=max(0, min(entry.mtime_ns // 1_000_000_000, 8**11 - 1)),
        linkname=linkname,
        uname=_user(entry.uid),
        gname=_group(entry.gid),
        devmajor=major,
        devminor=minor,
    )
    return pax.pax_header(b"././@PaxHeader", pax.PAX_EXTENDED, records) + header


@lru_cache(maxsize=1024)
def _user(uid: int) -> bytes:
    try:
        return pwd.getpwuid(uid).pw_name.encode()
    except KeyError:
        return b""


@lru_cache(maxsize=1024)
def _group(gid: int) -> bytes:
    try:
        return grp.getgrgid(gid).gr_name.encode()
    except KeyError:
        return b""
