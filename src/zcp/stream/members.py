"""A tar stream as a sequence of members: header blocks, pax and GNU long-name headers resolved.

The input is read in chunks of up to READ_SIZE into a buffer, and headers are parsed from it: a
stream of small files takes a few reads for many entries. A body up to SMALL_BODY is handed out
from the buffer; of a larger one only what the buffer already holds is, and the caller moves the
rest straight from the fd with a kernel copy. Metadata bodies are bounded by MAX_META_SIZE.
"""

from __future__ import annotations

import binascii
import os
import re
import sys
from functools import lru_cache
from typing import NamedTuple

from zcp.errors import StreamError
from zcp.model import FILE, Kind
from zcp.stream import pax
from zcp.stream.transfer import discard, read_some

_KIND_BY_TYPE = {
    pax.REGULAR: Kind.FILE,
    pax.AREGULAR: Kind.FILE,
    pax.CONTIGUOUS: Kind.FILE,
    pax.SYMLINK: Kind.SYMLINK,
    pax.CHAR: Kind.CHAR,
    pax.BLOCKDEV: Kind.BLOCK,
    pax.DIRECTORY: Kind.DIR,
    pax.FIFO: Kind.FIFO,
}
_META_TYPES = frozenset({pax.PAX_EXTENDED, pax.PAX_GLOBAL, pax.GNU_LONGNAME, pax.GNU_LONGLINK})
# Keys known not to be GNU.sparse.*: a member carrying only these needs no prefix check.
_PLAIN_KEYS = frozenset({"path", "linkpath", "size", "uid", "gid", "mtime", "atime", "hdrcharset", pax.KEY_VERSION, pax.KEY_HASH})
_XATTR_PREFIX = "SCHILY.xattr."  # GNU tar's and star's records of extended attributes
_XATTR_PREFIX_LENGTH = len(_XATTR_PREFIX)
# GNU tar --acls: ACLs as text, each the value of one system xattr once converted (zcp.acl)
_ACL_RECORDS = {"SCHILY.acl.access": "system.posix_acl_access", "SCHILY.acl.default": "system.posix_acl_default"}
_TIME_LIMIT = (1 << 63) * 1_000_000_000  # ns: utimensat takes 64-bit seconds (filesystems clamp)
_ID_LIMIT = 2**32 - 2  # (uid_t)-1 means "leave unchanged" to chown
# Bodies up to this size are taken into memory whole (written with one write, hashed there);
# larger ones go from the fd to the file by a kernel copy.
SMALL_BODY = 64 << 10
# One read asks for this much: many small entries per call, and a bounded copy of a big body's head.
READ_SIZE = 256 << 10
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # as os.fsdecode
# The records zcp writes for an entry with times in pax.TEN_DIGIT_SECONDS (pax.TIMES_RECORDS, then the
# hash): one match stands for decode_records and the checks of each value.
_ZCP_RECORDS = re.compile(rb"30 mtime=(\d{10}\.\d{9})\n30 atime=(\d{10}\.\d{9})\n(?:49 ZCP\.xxh3_128=([0-9a-f]{32})\n)?")
# The 'x' header block before each entry differs from the last ones only by its size, if at all:
# decoded once per distinct block. (A bad block raises, and lru_cache keeps no exceptions.)
_decode_meta_header = lru_cache(maxsize=64)(pax.decode_header)


class Member(NamedTuple):
    """One entry of the stream with every extension applied. Names are str (surrogateescape)."""

    name: str
    kind: Kind  # for a hard link: the kind of what it links to is not known here; FILE
    hardlink: bool
    mode: int
    uid: int
    gid: int
    size: int  # bytes of body that follow the header
    mtime_ns: int
    atime_ns: int | None
    linkname: str  # symlink text or hard link target
    devmajor: int
    devminor: int
    digest: bytes | None  # ZCP.xxh3_128 of the body
    xattrs: tuple[tuple[str, bytes], ...] = ()  # SCHILY.xattr.<name> records: (name, value)
    acls: tuple[tuple[str, str], ...] = ()  # SCHILY.acl.* records (tar --acls): (xattr name, ACL text)


DRAIN_LIMIT = 16 << 20  # bytes read after the end marker, at most


class TarReader:
    """Members of a tar stream read from ``fd``, after ``peeked``: bytes already read from it."""

    def __init__(self, fd: int, peeked: bytes = b""):
        self.fd = fd
        self._buffer = peeked  # read from fd, not yet used: from _pos on
        self._pos = 0
        self._globals: dict[str, bytes] = {}
        self._plain_globals = True  # no global record sets a value of the entries
        self._global_bytes = 0  # of all global headers so far (bounded like one entry's)
        self._started = False
        self.is_zcp = False

    def next(self) -> Member | None:
        """The next member, or None at the end of the archive. Its body is left unread."""
        extended: dict[str, bytes] = {}
        quick: re.Match[bytes] | None = None  # the entry's only 'x' header, as zcp writes them
        long_name: bytes | None = None
        long_link: bytes | None = None
        meta_bytes = 0  # of this entry's metadata headers: memory stays bounded however many come
        while True:
            block = self._block()
            if block is None:
                if extended or quick or long_name is not None or long_link is not None:
                    raise StreamError("truncated stream: an extended header without its entry")
                return None
            header = _decode_meta_header(block) if block[156:157] in _META_TYPES else pax.decode_header(block)
            first = not self._started
            self._started = True
            if header.typeflag in _META_TYPES:
                body = self._meta_body(header)
                if header.typeflag == pax.PAX_GLOBAL:
                    self._global_bytes += len(body)
                    if self._global_bytes > pax.MAX_META_SIZE:
                        raise StreamError(f"global extended headers of over {pax.MAX_META_SIZE} bytes refused")
                    self._globals.update(pax.decode_records(body))
                    self._plain_globals = self._globals.keys() <= {pax.KEY_VERSION}
                    if first:
                        self._check_zcp()
                    continue
                meta_bytes += len(body)
                if meta_bytes > pax.MAX_META_SIZE:
                    raise StreamError(f"extended headers of over {pax.MAX_META_SIZE} bytes for one entry refused")
                if header.typeflag == pax.PAX_EXTENDED:
                    if not (extended or quick) and (quick := _ZCP_RECORDS.fullmatch(body)):
                        continue
                    if quick:  # a second 'x' header: both the long way, in order
                        extended, quick = pax.decode_records(quick.string), None
                    extended.update(pax.decode_records(body))
                elif header.typeflag == pax.GNU_LONGNAME:
                    long_name = body.split(b"\x00", 1)[0]
                else:
                    long_link = body.split(b"\x00", 1)[0]
                continue
            name = header.name if long_name is None else long_name
            linkname = header.linkname if long_link is None else long_link
            if quick and self._plain_globals:
                mtime, atime, digest = quick.groups()
                return _member(header, name, linkname, header.size, int(mtime.replace(b".", b"")),
                               int(atime.replace(b".", b"")), header.uid, header.gid,
                               None if digest is None else binascii.unhexlify(digest), ())
            if quick:
                extended = pax.decode_records(quick.string)
            return _extended_member(header, {**self._globals, **extended} if self._globals else extended, name, linkname)

    def small_body(self, member: Member) -> bytes:
        """The whole body of ``member`` (at most SMALL_BODY bytes), its padding consumed."""
        length = member.size + -member.size % pax.BLOCK  # with its padding
        start = self._pos
        if start + length <= len(self._buffer):  # _take's usual case, inline: this runs per file
            self._pos = start + length
            return self._buffer[start : start + member.size]
        data = self._take_refilled(length)
        if len(data) != length:
            raise StreamError(f"truncated stream: it ends inside the body of {member.name!r}")
        return data[: member.size]

    def body_head(self, member: Member) -> bytes:
        """What the buffer holds of ``member``'s body: the caller moves the rest from ``fd``, then
        calls end_body."""
        return self._take(min(member.size, len(self._buffer) - self._pos))

    def end_body(self, member: Member) -> None:
        """Read the padding after a body the caller has moved."""
        self._expect(pax.padding(member.size), member)

    def skip_body(self, member: Member) -> None:
        """Read and drop a body nobody wants (links and folders that declare one)."""
        self._expect(member.size + pax.padding(member.size), member)

    def drain(self) -> None:
        """Read what follows the end marker (tar pads to 10 KiB records, or up to 1 MiB with a large
        blocking factor) so the writer never sees EPIPE; a writer that goes on beyond DRAIN_LIMIT is
        no tar writer, and is left to its EPIPE rather than read forever."""
        self._buffer, self._pos = b"", 0
        discard(self.fd, DRAIN_LIMIT)

    def _expect(self, length: int, member: Member) -> None:
        buffered = min(length, len(self._buffer) - self._pos)
        self._pos += buffered
        if buffered < length and discard(self.fd, length - buffered) != length - buffered:
            raise StreamError(f"truncated stream: it ends inside the body of {member.name!r}")

    def _block(self) -> bytes | None:
        """The next header block; None at a proper end of the archive."""
        start = self._pos
        end = start + pax.BLOCK
        if end <= len(self._buffer):  # _take's usual case, inline: this runs twice per entry
            self._pos = end
            block = self._buffer[start:end]
        else:
            block = self._take_refilled(pax.BLOCK)
        if not block:
            # GNU tar accepts an archive cut at a header boundary; zcp writers always end theirs,
            # so from zcp a missing end marker means the writer died.
            if self.is_zcp:
                raise StreamError("truncated stream: no end-of-archive marker")
            return None
        if len(block) < pax.BLOCK:
            raise StreamError("truncated stream: it ends inside a header")
        if block != pax.ZERO_BLOCK:
            return block
        second = self._take(pax.BLOCK)
        if 0 < len(second) < pax.BLOCK:
            raise StreamError("truncated stream: it ends inside the end-of-archive marker")
        if second and second != pax.ZERO_BLOCK:
            raise StreamError("malformed stream: a lone zero block before more entries")
        return None

    def _take(self, length: int) -> bytes:
        """The next ``length`` bytes of the stream, fewer only at EOF."""
        start = self._pos
        end = start + length
        if end <= len(self._buffer):
            self._pos = end
            return self._buffer[start:end]
        return self._take_refilled(length)

    def _take_refilled(self, length: int) -> bytes:
        """_take past the buffer: what it holds, then fresh reads (which become the buffer)."""
        parts = [self._buffer[self._pos :]]
        missing = length - len(parts[0])
        self._buffer, self._pos = b"", 0
        while missing > 0:
            chunk = read_some(self.fd, max(missing, READ_SIZE))
            if not chunk:
                break
            if len(chunk) > missing:
                self._buffer, self._pos = chunk, missing
                chunk = chunk[:missing]  # only what is asked for is copied
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    def _meta_body(self, header: pax.Header) -> bytes:
        if not 0 <= header.size <= pax.MAX_META_SIZE:
            raise StreamError(f"extended header of {header.size} bytes refused (limit {pax.MAX_META_SIZE})")
        length = header.size + pax.padding(header.size)
        data = self._take(length)
        if len(data) != length:
            raise StreamError("truncated stream: it ends inside an extended header")
        return data[: header.size]

    def _check_zcp(self) -> None:
        version = self._globals.get(pax.KEY_VERSION)
        if version is None:
            return
        if version.decode("ascii", "replace") != pax.ZCP_VERSION:
            raise StreamError(f"zcp stream version {version[:20]!r} is not supported (this zcp reads {pax.ZCP_VERSION})")
        self.is_zcp = True


def _extended_member(header: pax.Header, records: dict[str, bytes], name: bytes, linkname: bytes) -> Member:
    """The member with any pax records applied (global ones merged in)."""
    xattrs: tuple[tuple[str, bytes], ...] = ()
    other_keys = not records.keys() <= _PLAIN_KEYS  # dropping empty values below adds none
    if other_keys:
        # An empty value is an empty xattr here, not an unset record: taken before those go.
        xattrs = tuple(_xattr(pax.unescape_xattr_name(key[_XATTR_PREFIX_LENGTH:]), value, name)
                       for key, value in records.items() if key.startswith(_XATTR_PREFIX))
    if b"" in records.values():
        records = {key: value for key, value in records.items() if value}  # empty value: unset
    if other_keys:
        for key in records:
            if key.startswith("GNU.sparse."):
                raise StreamError("sparse tar entries are not supported")
    get = records.get
    name = get("path", name)
    linkname = get("linkpath", linkname)
    size = header.size if (value := get("size")) is None else pax.parse_decimal(value, "size", pax.MAX_BODY_SIZE)
    mtime_ns = header.mtime * 1_000_000_000 if (value := get("mtime")) is None else pax.parse_ns_time(value)
    atime_ns = None if (value := get("atime")) is None else pax.parse_ns_time(value)
    uid = header.uid if (value := get("uid")) is None else pax.parse_decimal(value, "uid", _ID_LIMIT)
    gid = header.gid if (value := get("gid")) is None else pax.parse_decimal(value, "gid", _ID_LIMIT)
    digest = None if (value := get(pax.KEY_HASH)) is None else _digest(value, name)
    acls = ()
    if other_keys:
        acls = tuple((xattr, value.decode("utf-8", "surrogateescape")) for key, xattr in _ACL_RECORDS.items()
                     if (value := get(key)) is not None)
    return _member(header, name, linkname, size, mtime_ns, atime_ns, uid, gid, digest, xattrs, acls)


def _xattr(key: str, value: bytes, name: bytes) -> tuple[str, bytes]:
    """One SCHILY.xattr record's name, checked: setxattr takes no empty name, NUL or over 255 bytes."""
    if not key or "\x00" in key or len(os.fsencode(key)) > 255:
        raise StreamError(f"bad xattr name {key[:40]!r} for {os.fsdecode(name)!r}")
    return key, value


def _member(header: pax.Header, name: bytes, linkname: bytes, size: int, mtime_ns: int, atime_ns: int | None,
            uid: int, gid: int, digest: bytes | None, xattrs: tuple[tuple[str, bytes], ...],
            acls: tuple[tuple[str, str], ...] = ()) -> Member:
    """The member from its header and final values, checked."""
    typeflag = header.typeflag
    hardlink = typeflag == pax.HARDLINK
    if typeflag == pax.AREGULAR and name.endswith(b"/"):
        typeflag = pax.DIRECTORY  # pre-POSIX tars marked folders by the trailing slash
    kind = FILE if hardlink else _KIND_BY_TYPE.get(typeflag)
    if kind is None:
        raise StreamError(f"unsupported tar entry type {typeflag!r} for {os.fsdecode(name)!r}")
    if not 0 <= size <= pax.MAX_BODY_SIZE:
        raise StreamError(f"absurd size {size} for {os.fsdecode(name)!r}")
    if not (-_TIME_LIMIT <= mtime_ns < _TIME_LIMIT and -_TIME_LIMIT <= (atime_ns or 0) < _TIME_LIMIT):
        raise StreamError(f"absurd time for {os.fsdecode(name)!r}")
    if not (0 <= uid <= _ID_LIMIT and 0 <= gid <= _ID_LIMIT):
        raise StreamError(f"absurd owner {uid}:{gid} for {os.fsdecode(name)!r}")
    # Positional, through tuple's own constructor: a NamedTuple's __new__ is a Python function.
    return tuple.__new__(Member, (
        name.decode(_FS_ENCODING, _FS_ERRORS), kind, hardlink, header.mode & 0o7777, uid, gid, size, mtime_ns,
        atime_ns, linkname.decode(_FS_ENCODING, _FS_ERRORS) if linkname else "", header.devmajor, header.devminor,
        digest, xattrs, acls))


def _digest(value: bytes, name: bytes) -> bytes:
    try:
        digest = bytes.fromhex(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        digest = b""
    if len(digest) != 16:
        raise StreamError(f"bad {pax.KEY_HASH} record for {os.fsdecode(name)!r}")
    return digest
