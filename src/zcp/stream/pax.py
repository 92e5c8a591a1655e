"""POSIX pax / ustar header encoding and decoding. Pure: bytes in, values out, no I/O.

The writer emits: a global 'g' header with ``ZCP.version=1``, then per entry an 'x' header (exact
values: ns mtime, long or non-UTF-8 names, large numbers, the xxh3-128 of the body) followed by the
ustar header. The reader also accepts what GNU tar writes: GNU magic, 'L'/'K' long names and
base-256 numbers. See docs/stream-format.md.
"""

from __future__ import annotations

import re
import struct
import zlib
from functools import lru_cache
from typing import NamedTuple

from zcp.errors import StreamError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
# Extended headers and GNU long names are read into memory: cap them so memory stays bounded
# whatever a size field claims.
MAX_META_SIZE = 1 << 20
MAX_BODY_SIZE = (1 << 63) - 1  # off_t

# Times from 2001 to 2286 have ten-digit seconds, so their records have a fixed length (30): the
# writer formats both with one template, the reader takes them (and the hash) with one match.
TEN_DIGIT_SECONDS = range(10**18, 10**19)  # in ns
TIMES_RECORDS = b"30 mtime=%d.%09d\n30 atime=%d.%09d\n"
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

# The ustar fields in block order (name, mode, uid, gid, size, mtime, checksum, typeflag, linkname,
# magic + version, uname, gname, devmajor, devminor, prefix): one struct call packs or unpacks a
# header, which a receiver does twice per file. 's' pads with NULs and cuts, as the format wants.
_USTAR = struct.Struct("100s24s12s12s8x1s100s8s32s32s16s155s12x")
_CHECKSUM = slice(148, 156)
_MAGICS = (POSIX_MAGIC, GNU_MAGIC)
# The same layout for writing, with the runs of numbers (mode..mtime, devmajor + devminor) as one
# field each: most headers then take two % formats instead of seven encode_number calls.
_USTAR_OUT = struct.Struct("100s48s8s1s100s8s32s32s16s155s12x")
_OCTAL_NUMBERS = b"%07o\x00%07o\x00%07o\x00%011o\x00%011o\x00"
_OCTAL_DEVICES = b"%07o\x00%07o\x00"
_NO_DEVICE = _OCTAL_DEVICES % (0, 0)
OCTAL8_LIMIT, OCTAL12_LIMIT = 8**7, 8**11  # what an 8- and a 12-byte octal field hold
_BLANK_CHECKSUM = b" " * 8  # what the checksum field counts as while summing
_BLANK_SUM = sum(_BLANK_CHECKSUM)


class Header(NamedTuple):
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
    """Octal (NUL- or space-terminated, blank is 0) or GNU base-256."""
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
        # int() alone would also take a sign, '_' separators and a '0o' prefix: GNU tar does not.
        if not digits.isdigit():
            raise ValueError
        return int(digits, 8)
    except ValueError:
        raise StreamError(f"bad octal number {digits!r} in a tar header") from None


def format_ns_time(ns: int) -> bytes:
    """Pax time with ns precision; the sign covers the whole value (-1.5 s is "-1.500000000")."""
    if ns >= 0:
        return b"%d.%09d" % divmod(ns, 1_000_000_000)
    return b"-%d.%09d" % divmod(-ns, 1_000_000_000)


def parse_ns_time(value: bytes) -> int:
    """'<sec>[.<fraction>]' with an optional '-' over the whole; digits beyond ns are cut."""
    if 10 < len(value) <= 30 and value[-10] == 0x2E:  # '.' and 9 digits, as zcp writes: one int()
        digits = value[:-10] + value[-9:]
        if digits.isdigit():
            return int(digits)
    negative = value.startswith(b"-")
    whole, _, frac = (value[1:] if negative else value).partition(b".")
    # bytes.isdigit() is ASCII-only: no other digits slip through.
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(whole) > 20:
        raise StreamError(f"bad pax time {value.decode('ascii', 'replace')!r}")
    ns = int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, b"0"))
    return -ns if negative else ns


def escape_xattr_name(name: bytes) -> bytes:
    """An xattr name as a SCHILY.xattr key, as GNU tar writes it: '=' ends a key, so '=' is %3D and
    '%' is %25."""
    return name.replace(b"%", b"%25").replace(b"=", b"%3D")


def unescape_xattr_name(key: str) -> str:
    return _XATTR_ESCAPE.sub(lambda m: "=" if m.group(1).upper() == "3D" else "%", key)


_XATTR_ESCAPE = re.compile(r"%(3[Dd]|25)")


def parse_decimal(value: bytes, key: str, limit: int) -> int:
    if not value.isdigit() or len(value) > 20:
        raise StreamError(f"bad pax {key} value {value[:40]!r}")
    number = int(value)
    if number > limit:
        raise StreamError(f"pax {key} value {number} is too large")
    return number


# ---------------------------------------------------------------- header blocks


def byte_sum(data: bytes) -> int:
    """sum(data), five times faster on a header block: adler32's low half is 1 + the byte sum
    modulo 65521, exact for pieces of 256 bytes (at most 65280)."""
    if len(data) == BLOCK:
        return (zlib.adler32(data[:256]) & 0xFFFF) + (zlib.adler32(data[256:]) & 0xFFFF) - 2
    return sum((zlib.adler32(data[start : start + 256]) & 0xFFFF) - 1 for start in range(0, len(data), 256))


def checksum_ok(block: bytes) -> bool:
    field = block[_CHECKSUM]
    digits = field.split(b"\x00", 1)[0].strip(b" ")
    if not digits or digits.translate(None, b"01234567"):  # int() would also take a sign, '_', '0o'
        return False
    stored = int(digits, 8)
    unsigned = byte_sum(block) - sum(field) + _BLANK_SUM
    if stored == unsigned:
        return True
    blanked = block[:148] + _BLANK_CHECKSUM + block[156:]
    return stored == unsigned - 256 * sum(1 for b in blanked if b >= 0x80)  # old tars summed signed chars


def is_tar_header(block: bytes) -> bool:
    """A full block with ustar (POSIX or GNU) magic and a good checksum."""
    return len(block) == BLOCK and block[257:265] in _MAGICS and checksum_ok(block)


def decode_header(block: bytes) -> Header:
    """One header block, checked (magic, checksum) and decoded. This runs for every member: the
    runs of numbers that repeat from file to file (mode, owner; device) are decoded once each."""
    if not is_tar_header(block):
        raise StreamError("bad tar header (wrong magic or checksum)")
    name, owner, size, mtime, typeflag, linkname, magic, uname, gname, devices, prefix = _USTAR.unpack(block)
    name = name.partition(b"\x00")[0]
    # GNU headers keep atime/ctime where POSIX has the prefix.
    if magic == POSIX_MAGIC and prefix[0]:
        name = prefix.partition(b"\x00")[0] + b"/" + name
    mode, uid, gid = _octal_run(owner)
    devmajor, devminor = _octal_run(devices)
    # Positional, through tuple's own constructor: a NamedTuple's __new__ is a Python function.
    return tuple.__new__(Header, (name, mode, uid, gid, _octal(size), _octal(mtime), typeflag,
                                  linkname.partition(b"\x00")[0], uname.partition(b"\x00")[0],
                                  gname.partition(b"\x00")[0], devmajor, devminor))


def _octal(field: bytes) -> int:
    digits = field.rstrip(b"\x00")
    if digits.isdigit():  # plain octal with trailing NULs, as POSIX writers put it (ASCII digits only)
        try:
            return int(digits, 8)
        except ValueError:  # an 8 or a 9
            pass
    return decode_number(field)


@lru_cache(maxsize=1024)
def _octal_run(run: bytes) -> tuple[int, ...]:
    """Consecutive 8-byte numbers (mode, uid, gid; devmajor, devminor). A bad one raises, and
    lru_cache keeps no exceptions."""
    return tuple(_octal(run[start : start + 8]) for start in range(0, len(run), 8))


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
    return ustar_block(name, typeflag, mode, uid, gid, size, mtime, linkname, uname, gname, devmajor, devminor)


def ustar_block(name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
                linkname: bytes, uname: bytes, gname: bytes, devmajor: int, devminor: int) -> bytes:
    """encode_header with every value positional, for the writer: it runs for every entry sent."""
    prefix, name = _split_name(name) if len(name) > 100 else (b"", name)
    if (0 <= mode < OCTAL8_LIMIT and 0 <= uid < OCTAL8_LIMIT and 0 <= gid < OCTAL8_LIMIT
            and 0 <= size < OCTAL12_LIMIT and 0 <= mtime < OCTAL12_LIMIT):
        numbers = _OCTAL_NUMBERS % (mode, uid, gid, size, mtime)
    else:
        numbers = b"".join(encode_number(value, width) for value, width in ((mode, 8), (uid, 8), (gid, 8), (size, 12), (mtime, 12)))
    if not (devmajor or devminor):  # anything but a device
        devices = _NO_DEVICE
    elif 0 <= devmajor < OCTAL8_LIMIT and 0 <= devminor < OCTAL8_LIMIT:
        devices = _OCTAL_DEVICES % (devmajor, devminor)
    else:
        devices = encode_number(devmajor, 8) + encode_number(devminor, 8)
    block = _USTAR_OUT.pack(
        name,
        numbers,
        _BLANK_CHECKSUM,
        typeflag,
        linkname,
        POSIX_MAGIC,
        uname if len(uname) <= 32 else b"",
        gname if len(gname) <= 32 else b"",
        devices,
        prefix,
    )
    return block[:148] + b"%06o\x00 " % byte_sum(block) + block[156:]


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


def record(key: bytes, value: bytes) -> bytes:
    """'<len> <key>=<value>\\n' where <len> counts the whole record, its own digits included."""
    return b"%d %s=%s\n" % (_record_length(len(key) + len(value)), key, value)


def record_length(key: bytes, value: bytes) -> int:
    """The <len> of record(key, value)."""
    return _record_length(len(key) + len(value))


@lru_cache(maxsize=1024)
def _record_length(key_and_value: int) -> int:
    rest = key_and_value + 3  # ' ', '=' and '\n'
    digits = len(str(rest))
    length = rest + digits
    if len(str(length)) != digits:  # the digits themselves pushed it past a power of ten
        length += 1
    return length


def encode_records(records: list[tuple[str, bytes]]) -> bytes:
    return b"".join(record(key.encode("utf-8"), value) for key, value in records)


# The keys of a zcp stream, decoded once.
_KNOWN_KEYS = {key.encode(): key for key in ("path", "linkpath", "size", "uid", "gid", "mtime", "atime", KEY_HASH, KEY_VERSION)}
# One record as writers emit it: no newline in key or value, at most 20 length digits.
_PLAIN_RECORD = re.compile(rb"(\d{1,20}) ([^=\n]+)=([^\n]*)\n")


def decode_records(data: bytes) -> dict[str, bytes]:
    """Parse a pax header body. A later record overrides an earlier one; an empty value is kept
    (it means "unset the global value" to the caller)."""
    # One regex pass for plain records; it stands only if every record's length is right and the
    # records tile the whole body, i.e. exactly when the exact parser below reads the same.
    records: dict[str, bytes] = {}
    covered = 0
    for length, key, value in _PLAIN_RECORD.findall(data):
        declared = int(length)
        if declared != len(length) + len(key) + len(value) + 3:
            return _decode_records_exactly(data)
        covered += declared
        records[_KNOWN_KEYS.get(key) or key.decode("utf-8", "surrogateescape")] = value
    return records if covered == len(data) else _decode_records_exactly(data)


def _decode_records_exactly(data: bytes) -> dict[str, bytes]:
    """Record by record: values with newlines, NUL padding, and the errors."""
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
    return meta_header(name, typeflag, encode_records(records))


def meta_header(name: bytes, typeflag: bytes, body: bytes) -> bytes:
    """A metadata header block ('x', 'g', 'L', 'K') followed by ``body`` and its padding."""
    return _meta_block(name, typeflag, len(body)) + body + ZERO_BLOCK[: padding(len(body))]


@lru_cache(maxsize=256)
def _meta_block(name: bytes, typeflag: bytes, size: int) -> bytes:
    # Only the size changes from entry to entry, within a few hundred values.
    return encode_header(name, typeflag, mode=0o644, size=size)


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# What every zcp stream opens with: its global header, the format's version (docs/stream-format.md).
ZCP_GLOBAL = pax_header(b"././@PaxGlobalHeader", PAX_GLOBAL, [(KEY_VERSION, ZCP_VERSION.encode())])
