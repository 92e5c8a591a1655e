"""Every unsafe or malformed stream is a StreamError, writes nothing outside DEST, leaves no temp file.

Each case runs twice: with openat2 and with the per-component O_NOFOLLOW walk used where openat2
is missing, so both confinement paths are proven.
"""

from __future__ import annotations

import os
import threading
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import need
from stream_support import END, hashed, member, receive_bytes, temp_leftovers, zcp_global

from zcp.errors import StreamError
from zcp import confine
from zcp.stream import pax

B = pax.BLOCK


@dataclass
class Jail:
    """DEST next to a sentinel folder that nothing may touch."""

    base: Path
    dest: Path
    sentinel: Path

    def untouched(self) -> bool:
        return (
            sorted(os.listdir(self.base)) == ["dest", "sentinel"]
            and sorted(os.listdir(self.sentinel)) == ["keep"]
            and (self.sentinel / "keep").read_bytes() == b"precious"
            and temp_leftovers(self.dest) == []
        )


@pytest.fixture(params=["openat2", "nofollow-walk"])
def jail(request, tmp_path, monkeypatch) -> Jail:
    if request.param == "openat2":
        need(confine._probe_openat2(os.open(tmp_path, os.O_RDONLY)), "openat2 (Linux >= 5.6)")
    else:
        monkeypatch.setattr(confine, "_probe_openat2", lambda fd: False)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    return Jail(tmp_path, dest, sentinel)


Case = Callable[[Jail], bytes]


def absolute_name(j: Jail) -> bytes:
    return member(os.fsencode(j.sentinel / "evil"), body=b"x") + END


def dotdot(j: Jail) -> bytes:
    return member(b"../sentinel/evil", body=b"x") + END


def inner_dotdot(j: Jail) -> bytes:
    return member(b"a/../../sentinel/evil", body=b"x") + END


def empty_name(j: Jail) -> bytes:
    return member(b"", body=b"x") + END


def nul_in_pax_path(j: Jail) -> bytes:
    return member(b"a", body=b"x", records=[("path", b"a\x00/../../sentinel/evil")]) + END


def symlink_in_dest(j: Jail) -> bytes:
    os.symlink(j.sentinel, j.dest / "link")
    return member(b"link/evil", body=b"x") + END


def symlink_deep_in_dest(j: Jail) -> bytes:
    (j.dest / "sub").mkdir()
    os.symlink("../../sentinel", j.dest / "sub" / "link")
    return member(b"sub/link/evil", body=b"x") + END


def symlink_in_dest_as_folder_entry(j: Jail) -> bytes:
    os.symlink(j.sentinel, j.dest / "link")
    return member(b"link/", pax.DIRECTORY, mode=0o777) + END


def symlink_in_stream_then_file(j: Jail) -> bytes:
    return member(b"l", pax.SYMLINK, linkname=os.fsencode(j.sentinel)) + member(b"l/evil", body=b"x") + END


def symlink_in_stream_then_folder(j: Jail) -> bytes:
    return member(b"l", pax.SYMLINK, linkname=b"../sentinel") + member(b"l/", pax.DIRECTORY) + END


def hardlink_outside(j: Jail) -> bytes:
    return member(b"h", pax.HARDLINK, linkname=b"../sentinel/keep") + END


def hardlink_absolute(j: Jail) -> bytes:
    return member(b"h", pax.HARDLINK, linkname=os.fsencode(j.sentinel / "keep")) + END


def hardlink_not_received(j: Jail) -> bytes:
    return member(b"h", pax.HARDLINK, linkname=b"later") + member(b"later", body=b"x") + END


def hardlink_to_file_already_in_dest(j: Jail) -> bytes:
    (j.dest / "existing").write_bytes(b"not from the stream")
    return member(b"h", pax.HARDLINK, linkname=b"existing") + END


def fifo(j: Jail) -> bytes:
    return member(b"pipe", pax.FIFO) + END


def char_device(j: Jail) -> bytes:
    return member(b"null", pax.CHAR, devmajor=1, devminor=3) + END


def file_then_folder(j: Jail) -> bytes:
    return member(b"a", body=b"x") + member(b"a/", pax.DIRECTORY) + END


def folder_then_file(j: Jail) -> bytes:
    return member(b"a/", pax.DIRECTORY) + member(b"a", body=b"x") + END


def file_then_file_beneath(j: Jail) -> bytes:
    return member(b"a", body=b"x") + member(b"a/b", body=b"y") + END


def file_naming_dest(j: Jail) -> bytes:
    return member(b"./", body=b"x") + END


def truncated_header(j: Jail) -> bytes:
    return zcp_global() + member(b"f", body=b"x")[:300]


def truncated_body(j: Jail) -> bytes:
    return zcp_global() + pax.pax_header(b"././@PaxHeader", pax.PAX_EXTENDED, [(pax.KEY_HASH, b"00" * 16)]) + \
        pax.encode_header(b"f", pax.REGULAR, size=5000) + os.urandom(3000)


def big_truncated_body(j: Jail) -> bytes:
    records = [(pax.KEY_HASH, b"00" * 16)]
    return zcp_global() + pax.pax_header(b"././@PaxHeader", pax.PAX_EXTENDED, records) + \
        pax.encode_header(b"f", pax.REGULAR, size=4 << 20) + os.urandom(3 << 20)


def truncated_padding(j: Jail) -> bytes:
    return pax.encode_header(b"f", pax.REGULAR, size=100) + bytes(100)


def no_end_marker_in_zcp_stream(j: Jail) -> bytes:
    return zcp_global() + member(b"f", body=b"x", records=hashed(b"x"))


def absurd_pax_size(j: Jail) -> bytes:
    return member(b"f", body=b"x", records=[("size", b"9" * 30)]) + END


def absurd_extended_header_size(j: Jail) -> bytes:
    return pax.encode_header(b"x", pax.PAX_EXTENDED, size=1 << 40) + bytes(B)


def absurd_long_name_size(j: Jail) -> bytes:
    return pax.encode_header(b"././@LongLink", pax.GNU_LONGNAME, size=1 << 33) + bytes(B)


def time_beyond_time_t(j: Jail) -> bytes:
    return member(b"f", body=b"x", records=[("mtime", b"%d" % (1 << 63))]) + END


def cut_end_marker(j: Jail) -> bytes:
    return member(b"f", body=b"x") + END[:-100]


def zcp_file_without_hash(j: Jail) -> bytes:
    """A bit flipped in the key turns the record into an unknown one: the body must not go unchecked."""
    return zcp_global() + member(b"f", body=b"tampered", records=[("ZCP.xxh3_129", b"00" * 16)]) + END


def bad_checksum(j: Jail) -> bytes:
    second = bytearray(member(b"g", body=b"x"))
    second[0] = ord("h")
    return member(b"f", body=b"x") + bytes(second) + END


def hash_mismatch(j: Jail) -> bytes:
    return zcp_global() + member(b"f", body=b"tampered", records=[(pax.KEY_HASH, b"00" * 16)]) + END


def big_hash_mismatch(j: Jail) -> bytes:
    """A body big enough to be hashed by the thread that trails the writes."""
    body = os.urandom(3 << 20)
    return zcp_global() + member(b"f", body=body, records=[(pax.KEY_HASH, b"00" * 16)]) + END


def mid_hash_mismatch(j: Jail) -> bytes:
    """Above the in-memory size, below the trailing thread's."""
    body = os.urandom(1 << 20)
    return zcp_global() + member(b"f", body=body, records=[(pax.KEY_HASH, b"00" * 16)]) + END


def bad_hash_record(j: Jail) -> bytes:
    return member(b"f", body=b"x", records=[(pax.KEY_HASH, b"not hex")]) + END


def malformed_pax_record(j: Jail) -> bytes:
    body = b"99 path=f\n"
    return pax.encode_header(b"x", pax.PAX_EXTENDED, size=len(body)) + body + bytes(B - len(body)) + member(b"f") + END


def lone_zero_block(j: Jail) -> bytes:
    return member(b"f", body=b"x") + pax.ZERO_BLOCK + member(b"g", body=b"y") + END


def gnu_sparse(j: Jail) -> bytes:
    return member(b"f", body=b"x", records=[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")]) + END


def unknown_type(j: Jail) -> bytes:
    return member(b"f", b"S", body=b"x") + END


def newer_zcp_version(j: Jail) -> bytes:
    return pax.pax_header(b"g", pax.PAX_GLOBAL, [(pax.KEY_VERSION, b"2")]) + member(b"f", body=b"x") + END


def symlink_to_empty_target(j: Jail) -> bytes:
    return member(b"l", pax.SYMLINK, records=[("linkpath", b"x\x00y")]) + END


CASES: list[tuple[Case, str]] = [
    (absolute_name, "absolute name"),
    (dotdot, r"'\.\.' component"),
    (inner_dotdot, r"'\.\.' component"),
    (empty_name, "empty name"),
    (nul_in_pax_path, "NUL byte"),
    (symlink_in_dest, "through a symlink"),
    (symlink_deep_in_dest, "through a symlink"),
    (symlink_in_dest_as_folder_entry, "through a symlink"),
    (symlink_in_stream_then_file, "is a symlink in this stream"),
    (symlink_in_stream_then_folder, "appears twice"),
    (hardlink_outside, r"'\.\.' component"),
    (hardlink_absolute, "absolute name"),
    (hardlink_not_received, "not received before it"),
    (hardlink_to_file_already_in_dest, "not received before it"),
    (fifo, "FIFOs and devices are received only with -D or -a, as root"),
    (char_device, "FIFOs and devices are received only with -D or -a, as root"),
    (file_then_folder, "appears twice"),
    (folder_then_file, "appears twice"),
    (file_then_file_beneath, "is a file in this stream"),
    (file_naming_dest, "destination folder itself"),
    (truncated_header, "truncated stream: it ends inside a header"),
    (truncated_body, "truncated stream: it ends inside the body of 'f'"),
    (big_truncated_body, "truncated stream: it ends inside the body of 'f'"),
    (truncated_padding, "truncated stream: it ends inside the body of 'f'"),
    (no_end_marker_in_zcp_stream, "no end-of-archive marker"),
    (absurd_pax_size, "bad pax size"),
    (absurd_extended_header_size, "extended header of 1099511627776 bytes refused"),
    (absurd_long_name_size, "extended header of 8589934592 bytes refused"),
    (time_beyond_time_t, "absurd time"),
    (cut_end_marker, "ends inside the end-of-archive marker"),
    (zcp_file_without_hash, "no ZCP.xxh3_128 record for 'f' in a zcp stream"),
    (bad_checksum, "bad tar header"),
    (hash_mismatch, "hash mismatch for 'f'"),
    (mid_hash_mismatch, "hash mismatch for 'f'"),
    (big_hash_mismatch, "hash mismatch for 'f'"),
    (bad_hash_record, "bad ZCP.xxh3_128 record"),
    (malformed_pax_record, "malformed pax record"),
    (lone_zero_block, "lone zero block"),
    (gnu_sparse, "sparse tar entries are not supported"),
    (unknown_type, "unsupported tar entry type"),
    (newer_zcp_version, "zcp stream version"),
    (symlink_to_empty_target, "bad symlink target"),
]


@pytest.mark.parametrize("case, message", CASES, ids=[case.__name__ for case, _ in CASES])
def test_unsafe_stream_is_refused(jail, case, message):
    stream = case(jail)
    with pytest.raises(StreamError, match=message):
        receive_bytes(stream, str(jail.dest))
    assert jail.untouched()


@pytest.mark.parametrize("case", [truncated_body, big_truncated_body, big_hash_mismatch])
def test_no_partial_file_or_hashing_thread_is_left_by_a_bad_body(jail, case):
    with pytest.raises(StreamError):
        receive_bytes(case(jail), str(jail.dest))
    assert os.listdir(jail.dest) == []
    assert [t for t in threading.enumerate() if t.name == "zcp-trailing-hash"] == []


def test_devices_are_created_only_when_allowed(jail):
    stream = member(b"pipe", pax.FIFO) + member(b"sub/pipe2", pax.FIFO) + END
    got = receive_bytes(stream, str(jail.dest), allow_devices=True)
    assert got.entries == 2
    assert (jail.dest / "pipe").is_fifo() and (jail.dest / "sub" / "pipe2").is_fifo()
    assert jail.untouched()


def test_symlinks_pointing_outside_are_created_but_never_followed(jail):
    receive_bytes(member(b"out", pax.SYMLINK, linkname=os.fsencode(jail.sentinel / "keep")) + END, str(jail.dest))
    assert os.readlink(jail.dest / "out") == str(jail.sentinel / "keep")
    # A later stream's file of that name replaces the link itself, never writes to its target.
    receive_bytes(member(b"out", body=b"replaced") + END, str(jail.dest))
    assert (jail.dest / "out").read_bytes() == b"replaced" and not (jail.dest / "out").is_symlink()
    assert jail.untouched()


@pytest.mark.parametrize(
    "stream",
    [
        member(b"f", body=b"x" * 1000, records=[("size", str(1 << 60).encode())]),
        pax.encode_header(b"x", pax.PAX_EXTENDED, size=pax.MAX_META_SIZE) + b"1",  # the largest accepted
    ],
    ids=["huge-body", "largest-extended-header"],
)
def test_memory_stays_bounded_whatever_the_size_fields_say(jail, stream):
    tracemalloc.start()
    try:
        with pytest.raises(StreamError, match="truncated"):
            receive_bytes(stream, str(jail.dest))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * pax.MAX_META_SIZE
    assert jail.untouched()
