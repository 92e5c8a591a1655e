"""`zcp SRC -`: a tree as a POSIX pax stream, big bodies moved from the page cache by the kernel.

Headers, padding and small bodies are gathered and go out with one write() per BATCH bytes; each
big body goes with splice (to a pipe), sendfile (to a socket), copy_file_range (to a regular file)
or read/write (anything else). Every regular file is hashed before its header is sent and the
xxh3-128 travels in its pax header (docs/stream-format.md).
"""

from __future__ import annotations

import binascii
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
from zcp.xattrs import read_xattrs
from zcp.hashing import hash_bytes, hash_fd
from zcp.model import DEVICE_KINDS, DIR, FILE, SYMLINK, Entry, Kind
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
# A digest is always 32 hex digits: the hash record's length is fixed.
_HASH_RECORD = b"%d %s=%%s\n" % (pax.record_length(pax.KEY_HASH.encode(), bytes(32)), pax.KEY_HASH.encode())
# O_NONBLOCK: a FIFO swapped in for a file must not block the open (fstat then tells).
_OPEN_SOURCE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
# Bodies up to this size travel through user space with their headers: one pread and a share of a
# write cost less than the fstat, hash read and splice of the zero-copy path. Larger ones are
# never copied by us.
SMALL_BODY = 64 << 10
# The xattr records an entry may carry: its whole 'x' header must stay within what a receiver takes
# (pax.MAX_META_SIZE), with room left for names and the other records.
_XATTR_ROOM = pax.MAX_META_SIZE - (64 << 10)
# Queued bytes that trigger a write: few calls, and well within a widened pipe.
BATCH = 256 << 10


@dataclass
class StreamStats:
    entries: int = 0
    files: int = 0
    hardlinks: int = 0
    skipped: int = 0  # sockets: tar has no type for them
    bytes: int = 0  # body bytes sent
    vanished: list[str] = field(default_factory=list)  # gone before their header was written
    warnings: list[str] = field(default_factory=list)  # what was sent without something it has
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): unreadable, left out
    by_method: Counter[Method] = field(default_factory=Counter)


def write_stream(out_fd: int, items: Iterable[tuple[str, Entry]], *, progress: Progress | None = None,
                 xattrs: bool = False) -> StreamStats:
    """Write ``items`` (archive name, lstat snapshot) as a zcp pax stream, then the end marker.
    ``xattrs``: files and folders carry their extended attributes (SCHILY.xattr.*, as GNU tar).

    An entry that fails before its header is written (vanished, unreadable, no longer a regular
    file, changed while hashed) is left out and listed in ``vanished`` or ``failed``. A file that
    changes after its header went out raises SourceChanged naming it: the stream is then unusable.
    BrokenPipe when the reader went away.
    """
    sender = _Sender(out_fd, progress, xattrs)
    sender.put(pax.ZCP_GLOBAL)
    stats = sender.stats
    first_names: dict[tuple[int, int], bytes] = {}  # (dev, ino) of multiply linked files
    for name, entry in items:
        kind = entry.kind
        arcname = _archive_name(name, kind)
        link_key = (entry.dev, entry.ino)
        if kind is FILE and entry.nlink > 1 and link_key in first_names:
            sender.put(_entry_headers(arcname, pax.HARDLINK, entry, linkname=first_names[link_key]))
            stats.hardlinks += 1
            written = True
        elif kind is FILE:
            written = sender.send_file(arcname, entry)
            if written and entry.nlink > 1:
                first_names[link_key] = arcname
        elif kind is SYMLINK:
            target = _before_header(os.readlink, entry.path, stats)
            written = target is not None
            if target is not None:
                sender.put(_entry_headers(arcname, pax.SYMLINK, entry, linkname=os.fsencode(target)))
        elif kind is Kind.SOCKET:  # tar has no type for it
            stats.skipped += 1
            continue
        else:
            extra = _before_header(lambda path: sender.xattr_records(path, path), entry.path, stats) if kind is DIR else b""
            written = extra is not None
            if written:
                sender.put(_entry_headers(arcname, _TYPE_BY_KIND[kind], entry, extra=extra))
        stats.entries += written
    sender.put(pax.ZERO_BLOCK * 2)
    sender.flush()
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


def _open_source(path: str) -> int:
    return os.open(path, _OPEN_SOURCE)


class _Sender:
    """Entries onto ``out_fd``: headers, padding and small bodies gathered into few writes, one
    kernel copy per big body."""

    def __init__(self, out_fd: int, progress: Progress | None, xattrs: bool = False):
        self.out_fd = out_fd
        self.xattrs = xattrs
        self.methods = method_chain(FdKind.FILE, *classify(out_fd))
        self.progress = progress
        self.stats = StreamStats()
        self._pending: list[bytes] = []
        self._pending_size = 0

    def put(self, *chunks: bytes) -> None:
        """Queue ``chunks``; written once BATCH bytes are gathered, before a big body, or by flush()."""
        self._pending += chunks
        self._pending_size += sum(map(len, chunks))
        if self._pending_size >= BATCH:
            self.flush()

    def xattr_records(self, target: int | str, path: str) -> bytes:
        """The SCHILY.xattr records of an open file or a folder's path, when asked for; none, with a
        warning, where they would make a header larger than a receiver takes."""
        if not self.xattrs:
            return b""
        records = b"".join(pax.record(b"SCHILY.xattr." + pax.escape_xattr_name(os.fsencode(name)), value)
                           for name, value in sorted(read_xattrs(target).items()))
        if len(records) > _XATTR_ROOM:
            self.stats.warnings.append(f"{path}: xattrs not sent: {len(records)} bytes of them, more than "
                                       f"the {_XATTR_ROOM} a header may hold")
            return b""
        return records

    def flush(self) -> None:
        """Write everything queued, in one call."""
        if self._pending:
            write_all(self.out_fd, b"".join(self._pending))
            self._pending.clear()
            self._pending_size = 0

    def send_file(self, arcname: bytes, entry: Entry) -> bool:
        """Header, body and padding of one regular file; False if it was left out."""
        fd = _before_header(_open_source, entry.path, self.stats)
        if fd is None:
            return False
        try:
            if entry.size <= SMALL_BODY and self._send_small(fd, arcname, entry):
                return True
            return self._send_big(fd, arcname, entry.path)
        finally:
            os.close(fd)

    def _send_small(self, fd: int, arcname: bytes, entry: Entry) -> bool:
        """The body read in one pread and queued with its headers: the walk's lstat before the read
        and one fstat after it bracket the read. False (nothing queued) if they disagree, or the
        fd cannot be read so: the general path then decides with a fresh fstat."""
        try:
            body = os.pread(fd, entry.size + 1, 0)
        except OSError:  # no longer a regular file (a folder, a FIFO): the general path says so
            return False
        after = os.fstat(fd)
        if (len(body), after.st_size, after.st_mtime_ns, after.st_ino, after.st_dev) != (
            entry.size, entry.size, entry.mtime_ns, entry.ino, entry.dev
        ) or not stat.S_ISREG(after.st_mode):
            return False
        self.stats.by_method[Method.RW] += len(body)
        if self.progress:
            self.progress(len(body))
        headers = _headers(arcname, pax.REGULAR, stat.S_IMODE(after.st_mode), after.st_uid, after.st_gid, len(body),
                           entry.mtime_ns, entry.atime_ns, digest=hash_bytes(body), extra=self.xattr_records(fd, entry.path))
        self.put(headers, body, pax.ZERO_BLOCK[: pax.padding(len(body))])
        self._count(len(body))
        return True

    def _send_big(self, fd: int, arcname: bytes, path: str) -> bool:
        """Hashed, headers written, then the body by a kernel copy; fstat before and after."""
        stats = self.stats
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            stats.failed.append((path, "no longer a regular file"))
            return False
        size = before.st_size
        # Hash first: the reader checks the body against it, and the body then goes out of the
        # page cache this read has just filled.
        try:
            digest = hash_fd(fd, size)
        except SourceChanged as exc:
            stats.failed.append((path, str(exc)))
            return False
        self.put(_headers(arcname, pax.REGULAR, stat.S_IMODE(before.st_mode), before.st_uid, before.st_gid, size,
                          before.st_mtime_ns, before.st_atime_ns, digest=digest, extra=self.xattr_records(fd, path)))
        self.flush()
        try:
            move(fd, self.out_fd, size, 0, None, self.methods, stats.by_method, self.progress)
        except SourceChanged as exc:
            raise SourceChanged(f"{path}: {exc}") from None
        self.put(pax.ZERO_BLOCK[: pax.padding(size)])
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns) != (size, before.st_mtime_ns):
            raise SourceChanged(f"{path}: changed while it was sent")
        self._count(size)
        return True

    def _count(self, size: int) -> None:
        self.stats.files += 1
        self.stats.bytes += size


def _archive_name(name: str, kind: Kind) -> bytes:
    # Checked as str, where '/', '.' and NUL are what they are encoded: ``bytes in bytes`` first tries
    # the needle as an int and builds (then drops) a TypeError, twice the cost of this whole check.
    if not name or name.startswith("/") or (".." in name and ".." in name.split("/")) or "\x00" in name:
        raise ValueError(f"not a relative archive name: {name!r}")
    raw = os.fsencode(name)
    return raw.rstrip(b"/") + b"/" if kind is DIR else raw


def _entry_headers(arcname: bytes, typeflag: bytes, entry: Entry, *, linkname: bytes = b"", extra: bytes = b"") -> bytes:
    """Headers of an entry without a body, from its lstat snapshot."""
    device = (os.major(entry.rdev), os.minor(entry.rdev)) if entry.kind in DEVICE_KINDS else (0, 0)
    return _headers(arcname, typeflag, entry.mode, entry.uid, entry.gid, 0, entry.mtime_ns, entry.atime_ns,
                    linkname=linkname, device=device, extra=extra)


def _headers(
    arcname: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime_ns: int,
    atime_ns: int,
    *,
    linkname: bytes = b"",
    digest: bytes | None = None,
    device: tuple[int, int] = (0, 0),
    extra: bytes = b"",
) -> bytes:
    """The 'x' header with exact values (and ``extra`` records), then the ustar header with what fits."""
    records: list[bytes] = []
    if not (len(arcname) <= 100 and len(linkname) <= 100 and arcname.isascii() and linkname.isascii()):
        records += _name_records(arcname, linkname)
    if size >= pax.OCTAL12_LIMIT or uid >= pax.OCTAL8_LIMIT or gid >= pax.OCTAL8_LIMIT:
        for key, value, limit in ((b"size", size, pax.OCTAL12_LIMIT), (b"uid", uid, pax.OCTAL8_LIMIT),
                                  (b"gid", gid, pax.OCTAL8_LIMIT)):
            if value >= limit:
                records.append(pax.record(key, b"%d" % value))
    if mtime_ns in pax.TEN_DIGIT_SECONDS and atime_ns in pax.TEN_DIGIT_SECONDS:
        records.append(pax.TIMES_RECORDS % (*divmod(mtime_ns, 1_000_000_000), *divmod(atime_ns, 1_000_000_000)))
    else:
        mtime, atime = pax.format_ns_time(mtime_ns), pax.format_ns_time(atime_ns)
        records.append(pax.record(b"mtime", mtime) + pax.record(b"atime", atime))
    if digest is not None:
        records.append(_HASH_RECORD % binascii.hexlify(digest))  # hex_digest() as bytes
    if extra:
        records.append(extra)
    header = pax.ustar_block(
        arcname,
        typeflag,
        mode,
        uid if uid < pax.OCTAL8_LIMIT else 0,
        gid if gid < pax.OCTAL8_LIMIT else 0,
        size if size < pax.OCTAL12_LIMIT else 0,
        max(0, min(mtime_ns // 1_000_000_000, pax.OCTAL12_LIMIT - 1)),
        linkname,
        _user(uid),
        _group(gid),
        *device,
    )
    return pax.meta_header(b"././@PaxHeader", pax.PAX_EXTENDED, b"".join(records)) + header


def _name_records(arcname: bytes, linkname: bytes) -> list[bytes]:
    """The records a name or link target needs when ustar cannot carry it: too long, or not ASCII."""
    records: list[bytes] = []
    ascii_name = arcname.isascii()
    # ASCII is UTF-8: the decoding check only runs for other names.
    binary = not (ascii_name and linkname.isascii()) and not (pax.is_utf8(arcname) and pax.is_utf8(linkname))
    if binary:
        records.append(pax.record(b"hdrcharset", b"BINARY"))  # must come before the values it describes
    if binary or not ascii_name or (len(arcname) > 100 and not pax.fits_ustar_name(arcname)):
        records.append(pax.record(b"path", arcname))
    if len(linkname) > 100 or not linkname.isascii():
        records.append(pax.record(b"linkpath", linkname))
    return records


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
