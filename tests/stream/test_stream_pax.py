"""Header encoding and decoding (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zcp.errors import StreamError
from zcp.stream import pax


@given(st.integers(-(2**87), 2**87 - 1))
def test_numbers_round_trip_in_octal_or_base_256(value):
    field = pax.encode_number(value, 12)
    assert len(field) == 12 and pax.decode_number(field) == value
    assert (field[0] & 0x80 == 0) == (0 <= value < 8**11)


def test_octal_fields_as_other_tars_write_them():
    assert pax.decode_number(b"0000644 \x00") == 0o644
    assert pax.decode_number(b"   755\x00\x00") == 0o755
    assert pax.decode_number(b"\x00" * 8) == 0
    with pytest.raises(StreamError):
        pax.decode_number(b"12z4\x00")


@given(st.lists(st.tuples(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="= \x00"), min_size=1), st.binary())))
def test_pax_records_round_trip(records):
    assert pax.decode_records(pax.encode_records(records)) == dict(records)


@pytest.mark.parametrize("value_size", [0, 1, 2, 3, 4, 5, 6, 92, 93, 94, 95, 96, 993, 994, 995])
def test_record_length_counts_its_own_digits(value_size):
    record = pax.encode_records([("k", b"v" * value_size)])
    length, _ = record.split(b" ", 1)
    assert int(length) == len(record)


@pytest.mark.parametrize(
    "body", [b"5 a=b\n", b"6 a=b\n\n", b"x a=b\n", b"6 ab\n", b"7 =ab\n", b"99 a=b\n", b"6 a=b\nzz"]
)
def test_malformed_records_are_stream_errors(body):
    with pytest.raises(StreamError):
        pax.decode_records(body)


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_500_000_000_123_456_789, -1, -1_500_000_000])
def test_times_keep_every_nanosecond(ns):
    assert pax.parse_ns_time(pax.format_ns_time(ns)) == ns


def test_times_from_other_writers():
    assert pax.parse_ns_time(b"1500000000") == 1_500_000_000 * 10**9
    assert pax.parse_ns_time(b"1.5") == 1_500_000_000
    assert pax.parse_ns_time(b"1.1234567899") == 1_123_456_789  # beyond ns: cut
    for bad in (b"", b"1.2.3", b"abc", b"--1", b"1e9"):
        with pytest.raises(StreamError):
            pax.parse_ns_time(bad)


def test_header_round_trip_and_checksum():
    block = pax.encode_header(
        b"dir/file", pax.REGULAR, mode=0o4755, uid=1000, gid=100, size=12345, mtime=1_500_000_000,
        uname=b"me", gname=b"us",
    )
    assert pax.is_tar_header(block)
    header = pax.decode_header(block)
    assert (header.name, header.mode, header.uid, header.gid, header.size, header.mtime) == (
        b"dir/file", 0o4755, 1000, 100, 12345, 1_500_000_000,
    )
    assert (header.uname, header.gname, header.typeflag) == (b"me", b"us", b"0")
    corrupt = bytearray(block)
    corrupt[10] ^= 1
    assert not pax.is_tar_header(bytes(corrupt))
    with pytest.raises(StreamError, match="checksum"):
        pax.decode_header(bytes(corrupt))


def test_long_names_use_the_prefix_field_when_they_can():
    name = b"p" * 150 + b"/" + b"n" * 100
    assert pax.fits_ustar_name(name)
    assert pax.decode_header(pax.encode_header(name, pax.REGULAR)).name == name
    assert not pax.fits_ustar_name(b"p" * 160 + b"/" + b"n" * 10)
    assert not pax.fits_ustar_name(b"n" * 101)


def test_gnu_magic_ignores_the_prefix_area():
    block = bytearray(pax.encode_header(b"name", pax.REGULAR))
    block[257:265] = pax.GNU_MAGIC
    block[345:350] = b"\x01\x02\x03\x04\x05"  # GNU keeps atime here
    block[148:156] = b"%06o\x00 " % sum(block[:148] + b" " * 8 + block[156:])
    assert pax.decode_header(bytes(block)).name == b"name"


def test_pax_header_blocks_are_padded():
    data = pax.pax_header(b"x", pax.PAX_EXTENDED, [("path", b"a" * 600)])
    assert len(data) % pax.BLOCK == 0
    header = pax.decode_header(data[: pax.BLOCK])
    assert pax.decode_records(data[pax.BLOCK : pax.BLOCK + header.size]) == {"path": b"a" * 600}


@given(st.binary(max_size=2000))
def test_byte_sum_is_the_sum_of_the_bytes(data):
    assert pax.byte_sum(data) == sum(data)


@pytest.mark.parametrize(
    "numbers",
    [
        dict(uid=8**7, gid=2**32 - 2, size=8**11 + 5, mtime=-1, devmajor=8**7, devminor=-3),  # base-256 path
        dict(mode=0o7777, uid=8**7 - 1, gid=0, size=8**11 - 1, mtime=8**11 - 1, devmajor=8**7 - 1, devminor=1),
    ],
)
def test_headers_round_trip_in_and_out_of_the_octal_range(numbers):
    header = pax.decode_header(pax.encode_header(b"f", pax.REGULAR, **numbers))
    assert {key: getattr(header, key) for key in numbers} == numbers


def test_numbers_as_other_tars_write_them_in_a_whole_header():
    """Blank, space-terminated and base-256 fields take the long way and read as before."""
    block = bytearray(pax.encode_header(b"f", pax.REGULAR, mode=0o644, size=10))
    block[100:108] = b"   644 \x00"  # mode: leading blanks, space-terminated
    block[108:116] = b"\x00" * 8  # uid: blank
    block[124:136] = b"\x80" + (10).to_bytes(11, "big")  # size: base-256
    block[148:156] = b"%06o\x00 " % sum(block[:148] + b" " * 8 + block[156:])
    header = pax.decode_header(bytes(block))
    assert (header.mode, header.uid, header.size) == (0o644, 0, 10)
    block[116:124] = b"12z4\x00\x00\x00\x00"  # gid: not octal
    block[148:156] = b"%06o\x00 " % sum(block[:148] + b" " * 8 + block[156:])
    with pytest.raises(StreamError, match="bad octal"):
        pax.decode_header(bytes(block))


@pytest.mark.parametrize("field", [b"-1\x00\x00\x00\x00\x00\x00", b"+7\x00\x00\x00\x00\x00\x00",
                                   b"0o17\x00\x00\x00\x00", b"1_0\x00\x00\x00\x00\x00", b"0000009\x00"])
def test_signs_separators_prefixes_and_non_octal_digits_are_refused(field):
    """int() would take them all ('-1' as mode reads as 07777, setuid and sticky): GNU tar takes none."""
    block = bytearray(pax.encode_header(b"f", pax.REGULAR, mode=0o644))
    block[100:108] = field
    block[148:156] = b"%06o\x00 " % sum(block[:148] + b" " * 8 + block[156:])
    with pytest.raises(StreamError, match="bad octal"):
        pax.decode_header(bytes(block))


_RECORD_BYTES = st.binary(max_size=12).map(lambda b: b.replace(b"\x00", b"0"))


@given(
    st.lists(st.tuples(st.sampled_from([b"path", b"k=", b"a\nb", b"mtime", b""]), _RECORD_BYTES, st.binary(max_size=3)), max_size=4),
    st.integers(0, 3),
)
def test_the_one_pass_record_parser_agrees_with_the_exact_one(parts, nul_padding):
    """Well-formed, slightly wrong and wrongly sized records: same dict or same error both ways."""
    data = b"".join(pax.record(key, value)[: len(pax.record(key, value)) - len(cut)] + cut for key, value, cut in parts)
    data += b"\x00" * nul_padding

    def parsed(parse):
        try:
            return parse(data)
        except StreamError as exc:
            return str(exc)

    assert parsed(pax.decode_records) == parsed(pax._decode_records_exactly)


def test_values_with_newlines_take_the_exact_parser():
    data = pax.record(b"path", b"a\nb") + pax.record(b"mtime", b"1.5")
    assert pax.decode_records(data) == {"path": b"a\nb", "mtime": b"1.5"}


@given(st.integers(0, 20_000))
def test_record_lengths_are_exact_at_every_size(value_size):
    record = pax.record(b"k", b"v" * value_size)
    assert int(record.split(b" ", 1)[0]) == len(record)


def test_odd_times():
    assert pax.parse_ns_time(b"1.") == 1_000_000_000
    assert pax.parse_ns_time(b"-0.5") == -500_000_000
    for bad in (b"-", b"+1", b".5", b"1.-5", "١".encode(), b" 1", b"1" * 21):
        with pytest.raises(StreamError):
            pax.parse_ns_time(bad)


_TEN_DIGIT_NS = st.integers(pax.TEN_DIGIT_SECONDS.start, pax.TEN_DIGIT_SECONDS.stop - 1)


@given(_TEN_DIGIT_NS, _TEN_DIGIT_NS)
def test_the_times_template_writes_what_the_record_encoder_writes(mtime, atime):
    templated = pax.TIMES_RECORDS % (*divmod(mtime, 10**9), *divmod(atime, 10**9))
    assert templated == pax.record(b"mtime", pax.format_ns_time(mtime)) + pax.record(b"atime", pax.format_ns_time(atime))
    assert pax.decode_records(templated) == {"mtime": pax.format_ns_time(mtime), "atime": pax.format_ns_time(atime)}
