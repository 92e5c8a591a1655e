"""A tar stream as a sequence of members: header blocks, pax and GNU long-name headers resolved.

Reads exactly one block per header and exactly the declared size of each metadata body (bounded by
MAX_META_SIZE), so a file body is never read here: the caller moves it with a kernel copy and then
calls ``end_body``. Where a header block is known to come next (after a metadata body, after a
body's padding), it is read in the same call: two reads per zcp entry instead of four, never a
byte past a header.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import NamedTuple

from zcp.errors import StreamError
from zcp.model import Kind
from zcp.stream import pax
from zcp.stream.transfer import discard, read_exact

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
_TIME_LIMIT = 1 << 63  # ns, what utimensat takes
_ID_LIMIT = 2**32 - 2  # (uid_t)-1 means "leave unchanged" to chown
# Bodies this small are dropped with the next header in one read; larger ones in bounded chunks.
_SKIP_IN_ONE_READ = 1 << 16
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # as os.fsdecode
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


class TarReader:
    """Members of a tar stream read from ``fd``, after ``peeked``: bytes already read from it.

    ``peeked`` must hold whole headers (with their extended bodies), so that it is used up before
    the first file body, which the caller moves straight from ``fd``.
    """

    def __init__(self, fd: int, peeked: bytes = b""):
        self.fd = fd
        self._peeked = peeked
        self._globals: dict[str, bytes] = {}
        self._started = False
        self.is_zcp = False

    def next(self) -> Member | None:
        """The next member, or None at the end of the archive. Its body is left unread."""
        extended: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            block = self._block()
            if block is None:
                if extended or long_name is not None or long_link is not None:
                    raise StreamError("truncated stream: an extended header without its entry")
                return None
            header = _decode_meta_header(block) if block[156:157] in _META_TYPES else pax.decode_header(block)
            first = not self._started
            self._started = True
            if header.typeflag in _META_TYPES:
                body = self._meta_body(header)
                if header.typeflag == pax.PAX_GLOBAL:
                    self._globals.update(pax.decode_records(body))
                    if first:
                        self._check_zcp()
                elif header.typeflag == pax.PAX_EXTENDED:
                    extended.update(pax.decode_records(body))
                elif header.typeflag == pax.GNU_LONGNAME:
                    long_name = body.split(b"\x00", 1)[0]
                else:
                    long_link = body.split(b"\x00", 1)[0]
                continue
            if self._peeked:
                raise AssertionError("peeked bytes must end at a header boundary")
            return self._member(header, {**self._globals, **extended}, long_name, long_link)

    def end_body(self, member: Member) -> None:
        """Read the padding after a body the caller has moved (and the next header's block)."""
        self._expect(pax.padding(member.size), member)

    def skip_body(self, member: Member) -> None:
        """Read and drop a body nobody wants (links and folders that declare one)."""
        self._expect(member.size + pax.padding(member.size), member)

    def drain(self) -> None:
        """Read what follows the end marker (tar pads to 10 KiB records) so the writer never sees EPIPE."""
        self._peeked = b""
        discard(self.fd, None)

    def _expect(self, length: int, member: Member) -> None:
        if length <= _SKIP_IN_ONE_READ:
            got = len(self._read(length, ahead=pax.BLOCK))
        else:
            got = discard(self.fd, length)
        if got != length:
            raise StreamError(f"truncated stream: it ends inside the body of {member.name!r}")

    def _block(self) -> bytes | None:
        """The next header block; None at a proper end of the archive."""
        block = self._read(pax.BLOCK)
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
        second = self._read(pax.BLOCK)
        if second and second != pax.ZERO_BLOCK:
            raise StreamError("malformed stream: a lone zero block before more entries")
        return None

    def _read(self, length: int, ahead: int = 0) -> bytes:
        """``length`` bytes, fewer only at EOF. With ``ahead``, up to that many more are read in
        the same call and kept for the next _read: only ever the header block that comes next."""
        if self._peeked:
            head, self._peeked = self._peeked[:length], self._peeked[length:]
            return head if len(head) == length else head + read_exact(self.fd, length - len(head))
        data = read_exact(self.fd, length + ahead)
        if len(data) <= length:
            return data
        self._peeked = data[length:]
        return data[:length]

    def _meta_body(self, header: pax.Header) -> bytes:
        if not 0 <= header.size <= pax.MAX_META_SIZE:
            raise StreamError(f"extended header of {header.size} bytes refused (limit {pax.MAX_META_SIZE})")
        length = header.size + pax.padding(header.size)
        data = self._read(length, ahead=pax.BLOCK)  # a metadata header always precedes another header
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

    def _member(
        self, header: pax.Header, records: dict[str, bytes], long_name: bytes | None, long_link: bytes | None
    ) -> Member:
        if b"" in records.values():
            records = {key: value for key, value in records.items() if value}  # empty value: unset
        if not records.keys() <= _PLAIN_KEYS:
            for key in records:
                if key.startswith("GNU.sparse."):
                    raise StreamError("sparse tar entries are not supported")
        get = records.get
        name = get("path", long_name if long_name is not None else header.name)
        linkname = get("linkpath", long_link if long_link is not None else header.linkname)
        typeflag = header.typeflag
        hardlink = typeflag == pax.HARDLINK
        if typeflag == pax.AREGULAR and name.endswith(b"/"):
            typeflag = pax.DIRECTORY  # pre-POSIX tars marked folders by the trailing slash
        if not hardlink and typeflag not in _KIND_BY_TYPE:
            raise StreamError(f"unsupported tar entry type {typeflag!r} for {os.fsdecode(name)!r}")
        size = header.size if (value := get("size")) is None else pax.parse_decimal(value, "size", pax.MAX_BODY_SIZE)
        if not 0 <= size <= pax.MAX_BODY_SIZE:
            raise StreamError(f"absurd size {size} for {os.fsdecode(name)!r}")
        mtime_ns = header.mtime * 1_000_000_000 if (value := get("mtime")) is None else pax.parse_ns_time(value)
        atime_ns = None if (value := get("atime")) is None else pax.parse_ns_time(value)
        if not (-_TIME_LIMIT <= mtime_ns < _TIME_LIMIT and -_TIME_LIMIT <= (atime_ns or 0) < _TIME_LIMIT):
            raise StreamError(f"absurd time for {os.fsdecode(name)!r}")
        uid = header.uid if (value := get("uid")) is None else pax.parse_decimal(value, "uid", _ID_LIMIT)
        gid = header.gid if (value := get("gid")) is None else pax.parse_decimal(value, "gid", _ID_LIMIT)
        if not (0 <= uid <= _ID_LIMIT and 0 <= gid <= _ID_LIMIT):
            raise StreamError(f"absurd owner {uid}:{gid} for {os.fsdecode(name)!r}")
        return Member(
            name=name.decode(_FS_ENCODING, _FS_ERRORS),
            kind=Kind.FILE if hardlink else _KIND_BY_TYPE[typeflag],
            hardlink=hardlink,
            mode=header.mode & 0o7777,
            uid=uid,
            gid=gid,
            size=size,
            mtime_ns=mtime_ns,
            atime_ns=atime_ns,
            linkname=linkname.decode(_FS_ENCODING, _FS_ERRORS),
            devmajor=header.devmajor,
            devminor=header.devminor,
            digest=_digest(get(pax.KEY_HASH), name),
        )


def _digest(value: bytes | None, name: bytes) -> bytes | None:
    if value is None:
        return None
    try:
        digest = bytes.fromhex(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        digest = b""
    if len(digest) != 16:
        raise StreamError(f"bad {pax.KEY_HASH} record for {os.fsdecode(name)!r}")
    return digest
