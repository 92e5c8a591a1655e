"""POSIX pax / ustar header encoding and decoding. Pure: bytes in, values out, no I/O.

The writer emits: a global 'g' header with ``ZCP.version=1``, then per entry an 'x' header (exact
values: ns mtime, long or non-UTF-8 names, large numbers, the xxh3-128 of the body) followed by the
ustar header. The reader also accepts what GNU tar writes: GNU magic, 'L'/'K' long names and
base-256 numbers. See docs/stream-format.md.
"""

from __future__ import annotations

import struct

from dataclasses import dataclass

from zcp.errors import StreamError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
# Extended headers and GNU long names are read into memory: cap them so memory stays bounded
# whatever a size field claims.
MAX_META_SIZE = 1 << 20
MAX_BODY_SIZE = (1 << 63) - 1  # off_t

ZCP_VERSION = "1"
KEY_VERSION = "ZCP.version"
KEY_HASH = "ZCP.xxh3_128"

POSIX_MAGIC = b"ustar\x0000"
GNU_MAGIC = b"ustar  \x00"

# Type flags
REGULAR = b"0"
AREGULAR = b"\x00"  # pre-POSIX regular file
HARDLINK = b"1"
SYMLINK = b"2"
CHAR = b"3"
BLOCKDEV = b"4"
DIRECTORY = b"5"
FIFO = b"6"
CONTIGUOUS = b"7"  # a regular file everywhere that matters
PAX_EXTENDED = b"x"
PAX_GLOBAL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"

# (offset, width) of each ustar field
_NAME = (0, 100)
_MODE = (100, 8)
_UID = (108, 8)
_GID = (116, 8)
_SIZE = (124, 12)
_MTIME = (136, 12)
_CHKSUM = (148, 8)
_TYPE = (156, 1)
_LINKNAME = (157, 100)
_MAGIC = (257, 8)  # magic (6) + version (2)
_UNAME = (265, 32)
_GNAME = (297, 32)
_DEVMAJOR = (329, 8)
_DEVMINOR = (337, 8)
_PREFIX = (345, 155)


@dataclass(frozen=True, slots=True)
class Header:
    """One decoded 512-byte header block, before pax records are applied."""

    name: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    typeflag: bytes
    linkname: bytes
    uname: bytes
    gname: bytes
    devmajor: int
    devminor: int


# ---------------------------------------------------------------- numbers


def encode_number(value: int, width: int) -> bytes:
    """Octal, NUL-terminated, when it fits; GNU base-256 otherwise (what GNU tar reads and writes)."""
    if 0 <= value < 8 ** (width - 1):
        return b"%0*o\x00" % (width - 1, value)
    if -(256 ** (width - 1)) // 2 <= value < 256 ** (width - 1) // 2:
        return bytes([0x80 if value >= 0 else 0xFF]) + (value % 256 ** (width - 1)).to_bytes(width - 1, "big")
    raise ValueError(f"{value} does not fit in a {width}-byte tar field")


def decode_number(field: bytes) -> int:
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            value -= 256 ** (len(field) - 1)
        elif field[0] != 0x80:
            raise StreamError("bad base-256 number in a tar header")
        return value
    digits = field.split(b"\x00", 1)[0].strip(b" ")
    if not digits:
        return 0
    try:
        return int(digits, 8)
    except ValueError:
        raise StreamError(f"bad octal number {digits!r} in a tar header") from None


def format_ns_time(ns: int) -> bytes:
    """Pax time with ns precision; the sign covers the whole value (-1.5 s is "-1.500000000")."""
    sign = b"-" if ns < 0 else b""
    sec, frac = divmod(abs(ns), 1_000_000_000)
    return b"%s%d.%09d" % (sign, sec, frac)


def parse_ns_time(value: bytes) -> int:
    text = value.decode("ascii", "replace")
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.removeprefix("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(whole) > 20:
        raise StreamError(f"bad pax time {text!r}")
    return sign * (int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, "0") or 0))


def parse_decimal(value: bytes, key: str, limit: int) -> int:
    if not value.isdigit() or len(value) > 20:
        raise StreamError(f"bad pax {key} value {value[:40]!r}")
    number = int(value)
    if number > limit:
        raise StreamError(f"pax {key} value {number} is too large")
    return number


# ---------------------------------------------------------------- header blocks


def checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].split(b"\x00", 1)[0].strip(b" ") or b"x", 8)
    except ValueError:
        return False
    blanked = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(blanked)
    if stored == unsigned:
        return True
    return stored == unsigned - 256 * sum(1 for b in blanked if b >= 0x80)  # old tars summed signed chars


def is_tar_header(block: bytes) -> bool:
    """A full block with ustar (POSIX or GNU) magic and a good checksum."""
    return len(block) == BLOCK and block[257:265] in (POSIX_MAGIC, GNU_MAGIC) and checksum_ok(block)


# The ustar fields in block order, unpacked in one call (a receiver parses two headers per file).
_USTAR = struct.Struct("100s8s8s8s12s12s8s1s100s8s32s32s8s8s155s12x")


def _text(field: bytes) -> bytes:
    return field.split(b"\x00", 1)[0]


def decode_header(block: bytes) -> Header:
    if not is_tar_header(block):
        raise StreamError("bad tar header (wrong magic or checksum)")
    (name, mode, uid, gid, size, mtime, _checksum, typeflag, linkname, magic, uname, gname,
     devmajor, devminor, prefix) = _USTAR.unpack(block)
    name = _text(name)
    # GNU headers keep atime/ctime where POSIX has the prefix.
    if magic == POSIX_MAGIC and _text(prefix):
        name = _text(prefix) + b"/" + name
    return Header(
        name=name,
        mode=decode_number(mode),
        uid=decode_number(uid),
        gid=decode_number(gid),
        size=decode_number(size),
        mtime=decode_number(mtime),
        typeflag=typeflag,
        linkname=_text(linkname),
        uname=_text(uname),
        gname=_text(gname),
        devmajor=decode_number(devmajor),
        devminor=decode_number(devminor),
    )


def encode_header(
    name: bytes,
    typeflag: bytes,
    *,
    mode: int = 0,
    uid: int = 0,
    gid: int = 0,
    size: int = 0,
    mtime: int = 0,
    linkname: bytes = b"",
    uname: bytes = b"",
    gname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    """One POSIX ustar block. Values that do not fit are the caller's to carry in pax records;
    here a long name is split at a '/' into prefix + name when possible, else cut."""
    prefix, name = _split_name(name)
    block = bytearray(BLOCK)

    def put(spec: tuple[int, int], value: bytes) -> None:
        start, width = spec
        block[start : start + width] = value[:width].ljust(width, b"\x00")

    put(_NAME, name)
    put(_MODE, encode_number(mode, 8))
    put(_UID, encode_number(uid, 8))
    put(_GID, encode_number(gid, 8))
    put(_SIZE, encode_number(size, 12))
    put(_MTIME, encode_number(mtime, 12))
    put(_TYPE, typeflag)
    put(_LINKNAME, linkname)
    put(_MAGIC, POSIX_MAGIC)
    put(_UNAME, uname if len(uname) <= 32 else b"")
    put(_GNAME, gname if len(gname) <= 32 else b"")
    put(_DEVMAJOR, encode_number(devmajor, 8))
    put(_DEVMINOR, encode_number(devminor, 8))
    put(_PREFIX, prefix)
    block[148:156] = b"%06o\x00 " % sum(block[:148] + b" " * 8 + block[156:])
    return bytes(block)


def fits_ustar_name(name: bytes) -> bool:
    prefix, rest = _split_name(name)
    return (prefix + b"/" + rest if prefix else rest) == name


def _split_name(name: bytes) -> tuple[bytes, bytes]:
    if len(name) <= 100:
        return b"", name
    # The rightmost '/' that leaves at most 155 bytes before it; if the rest is still too long,
    # no cut further left can help.
    cut = name.rfind(b"/", 0, 156)
    if cut > 0 and 0 < len(name) - cut - 1 <= 100:
        return name[:cut], name[cut + 1 :]
    return b"", name[:100]


def padding(size: int) -> int:
    """Zero bytes after a body of ``size`` bytes, up to the next block boundary."""
    return -size % BLOCK


# ---------------------------------------------------------------- pax records


def encode_records(records: list[tuple[str, bytes]]) -> bytes:
    """'<len> <key>=<value>\\n' where <len> counts the whole record, its own digits included."""
    out = bytearray()
    for key, value in records:
        payload = b" %s=%s\n" % (key.encode("utf-8"), value)
        length = len(payload) + 1
        while len(str(length)) + len(payload) != length:
            length = len(str(length)) + len(payload)
        out += str(length).encode("ascii") + payload
    return bytes(out)


def decode_records(data: bytes) -> dict[str, bytes]:
    """Parse a pax header body. A later record overrides an earlier one; an empty value is kept
    (it means "unset the global value" to the caller)."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # trailing NUL padding some writers leave
            if data[pos:].strip(b"\x00"):
                raise StreamError("malformed pax record (data after NUL padding)")
            break
        space = data.find(b" ", pos, pos + 21)
        length_digits = data[pos:space]
        if space < 0 or not length_digits.isdigit():
            raise StreamError("malformed pax record length")
        length = int(length_digits)
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise StreamError("malformed pax record (length does not match)")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key:
            raise StreamError("malformed pax record (no key=value)")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


def pax_header(name: bytes, typeflag: bytes, records: list[tuple[str, bytes]]) -> bytes:
    """An 'x' or 'g' header block followed by its records and padding."""
    body = encode_records(records)
    return encode_header(name, typeflag, mode=0o644, size=len(body)) + body + bytes(padding(len(body)))


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
