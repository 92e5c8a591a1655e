"""Malformed streams (mutations and truncations of a valid one, random headers) never write outside
DEST, never leave a temp file, and fail only with StreamError."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_support import END, member, receive_bytes, stream_of, temp_leftovers, zcp_global

from zcp.errors import StreamError
from zcp.stream import pax

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def valid_stream(tmp_path_factory) -> bytes:
    src = tmp_path_factory.mktemp("fuzz-src")
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a").write_bytes(b"alpha" * 30)
    (src / "sub" / "b").write_bytes(os.urandom(700))
    (src / "sub" / "deeper" / "c").write_bytes(b"")
    os.link(src / "a", src / "sub" / "hard-a")
    os.symlink("../a", src / "sub" / "link-a")
    return stream_of(src)


def check_confined(stream: bytes) -> None:
    """Receive ``stream`` into a fresh DEST beside a sentinel; only StreamError may come out."""
    base = Path(tempfile.mkdtemp(prefix="zcp-fuzz-"))
    try:
        sentinel = base / "sentinel"
        sentinel.mkdir()
        (sentinel / "keep").write_bytes(b"precious")
        dest = base / "dest"
        dest.mkdir()
        try:
            receive_bytes(stream, str(dest))
        except StreamError:
            pass
        assert sorted(os.listdir(base)) == ["dest", "sentinel"]
        assert os.listdir(sentinel) == ["keep"] and (sentinel / "keep").read_bytes() == b"precious"
        assert temp_leftovers(dest) == []
    finally:
        shutil.rmtree(base)


@FUZZ
@given(data=st.data())
def test_mutated_streams_stay_confined(valid_stream, data):
    stream = bytearray(valid_stream)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(stream) - 1))
        stream[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(stream)))
    check_confined(bytes(stream[: cut if data.draw(st.booleans()) else len(stream)]))


@FUZZ
@given(cut=st.integers(0, 10_000))
def test_truncated_streams_are_stream_errors(valid_stream, cut):
    cut = min(cut, len(valid_stream) - 2 * pax.BLOCK - 1)
    check_confined(valid_stream[:cut])


names = st.one_of(
    st.sampled_from([b"a", b"b", b"sub/", b"sub/a", b"./sub/b", b"l", b"l/x"]),  # valid: reach later entries
    st.binary(max_size=120),
    st.lists(st.sampled_from([b"a", b"b", b"..", b".", b"", b"sub", b"/", b"\x00", b"\xff"]), max_size=5).map(b"/".join),
)
records = st.lists(
    st.tuples(
        st.sampled_from(["path", "linkpath", "size", "mtime", "atime", "uid", "gid", "hdrcharset", pax.KEY_HASH, "x"]),
        st.one_of(st.binary(max_size=40), st.integers(-(10**30), 10**30).map(lambda n: str(n).encode())),
    ),
    max_size=4,
)
entries = st.builds(
    member,
    names,
    st.sampled_from([b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"\x00", b"x", b"g", b"L", b"K", b"S", b"Z"]),
    st.binary(max_size=1200),
    records=st.one_of(st.none(), records),
    size=st.one_of(st.none(), st.integers(0, 8**11 - 1), st.integers(0, 2**80)),
    linkname=names,
    mode=st.integers(0, 0o7777),
    devmajor=st.integers(0, 8**7 - 1),
    devminor=st.integers(0, 8**7 - 1),
)


@FUZZ
@given(zcp=st.booleans(), members=st.lists(entries, max_size=6), end=st.booleans())
def test_random_headers_stay_confined(zcp, members, end):
    check_confined((zcp_global() if zcp else b"") + b"".join(members) + (END if end else b""))
