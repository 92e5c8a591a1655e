"""The tar-vs-raw rule: what arrives as a file, what is unpacked, and what is refused."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import need_tool
from stream_support import collect, feed, receive_bytes, stream_of, zcp_global

from zcp.config import Method
from zcp.errors import StreamError, UsageError
from zcp.model import Entry
from zcp.stream import receive, write_raw, write_stream
from zcp.stream import pax


def one_file_stream(path) -> bytes:
    entry = Entry.from_stat(str(path), os.lstat(path))
    return collect(lambda fd: write_stream(fd, [(path.name, entry)]))


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_write_raw_sends_the_bytes_alone(tmp_path):
    data = os.urandom(300_000)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        sent = collect(lambda out: write_raw(out, fd, None))
    finally:
        os.close(fd)
    assert sent == data


def test_write_raw_from_a_pipe_to_a_file(tmp_path):
    data = os.urandom(70_000)
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert feed(data, lambda fd: write_raw(out, fd, None)) == len(data)
    finally:
        os.close(out)
    assert (tmp_path / "out").read_bytes() == data


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 200_000])
def test_bytes_that_are_not_tar_arrive_raw_as_the_named_file(tmp_path, size):
    data = os.urandom(size)
    got = receive_bytes(data, str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == data
    assert got.format == "raw" and got.bytes == size
    assert listing(tmp_path) == ["out.bin"]


def test_a_tar_file_streamed_to_a_file_name_is_never_unpacked(tmp_path):
    tar = need_tool("tar")
    src = tmp_path / "src"
    src.mkdir()
    (src / "inside").write_bytes(b"x" * 5000)
    archive = subprocess.run([tar, "-c", "-C", str(src), "inside"], capture_output=True, check=True).stdout
    got = receive_bytes(archive, str(tmp_path / "copy.tar"))
    assert (tmp_path / "copy.tar").read_bytes() == archive
    assert got.format == "raw"
    assert listing(tmp_path) == ["copy.tar", "src"]


def test_a_foreign_pax_stream_with_a_global_header_is_raw_to_a_file_name(tmp_path):
    """A 'g' header without ZCP.version is not ours: the peeked header and its body go out first."""
    data = pax.pax_header(b"g", pax.PAX_GLOBAL, [("comment", b"made elsewhere")])
    data += pax.encode_header(b"f", pax.REGULAR, size=3) + b"abc" + bytes(509) + pax.ZERO_BLOCK * 2
    receive_bytes(data, str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == data


@pytest.mark.parametrize("cut", [512, 513, 520, 530, 1023])
def test_a_zcp_stream_cut_inside_its_first_header_is_truncated_not_raw(tmp_path, cut):
    """What is left of zcp's version record says whose stream it was: its writer died, and the cut
    stream must not land as a file that looks complete."""
    src = tmp_path / "original"
    src.write_bytes(b"x" * 5000)
    with pytest.raises(StreamError, match="truncated stream"):
        receive_bytes(one_file_stream(src)[:cut], str(tmp_path / "target"))
    assert listing(tmp_path) == ["original"]


def test_a_foreign_global_header_cut_short_is_still_raw(tmp_path):
    data = pax.pax_header(b"g", pax.PAX_GLOBAL, [("comment", b"made elsewhere")])[:520]
    receive_bytes(data, str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == data


def test_an_empty_zcp_stream_to_a_new_name_is_an_empty_folder(tmp_path):
    """What `zcp src/ dst` makes of an empty tree (the table in docs/stream-format.md)."""
    stats = receive_bytes(zcp_global() + pax.ZERO_BLOCK * 2, str(tmp_path / "out"))
    assert stats.zcp and stats.files == 0
    assert (tmp_path / "out").is_dir() and os.listdir(tmp_path / "out") == []


def test_a_zcp_stream_of_one_file_becomes_that_file(tmp_path):
    src = tmp_path / "original"
    src.write_bytes(os.urandom(100_000))
    src.chmod(0o640)
    os.utime(src, ns=(1, 1_234_567_890_123_456_789))
    got = receive_bytes(one_file_stream(src), str(tmp_path / "renamed"))
    copy = tmp_path / "renamed"
    assert copy.read_bytes() == src.read_bytes()
    assert (copy.stat().st_mode & 0o777, copy.stat().st_mtime_ns) == (0o640, 1_234_567_890_123_456_789)
    assert got.zcp and got.format == "tar" and got.verified == 1
    assert listing(tmp_path) == ["original", "renamed"]


def test_a_corrupt_single_file_stream_leaves_the_old_file(tmp_path):
    src = tmp_path / "original"
    src.write_bytes(b"new content " * 100)
    stream = bytearray(one_file_stream(src))
    stream[stream.index(b"new content")] ^= 1
    (tmp_path / "target").write_bytes(b"old")
    with pytest.raises(StreamError, match="hash mismatch"):
        receive_bytes(bytes(stream), str(tmp_path / "target"))
    assert (tmp_path / "target").read_bytes() == b"old"
    assert listing(tmp_path) == ["original", "target"]


def test_a_zcp_tree_to_a_new_name_becomes_that_folder(tmp_path):
    """Like `zcp src/ dst` locally: the missing name is created as the folder."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"x")
    receive_bytes(stream_of(src), str(tmp_path / "target"))
    assert (tmp_path / "target" / "sub" / "f").read_bytes() == b"x"


def test_a_zcp_tree_to_an_existing_file_is_refused_and_the_file_kept(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"x")
    (tmp_path / "target").write_bytes(b"keep")
    with pytest.raises(UsageError, match="a tree never replaces a file"):
        receive_bytes(stream_of(src), str(tmp_path / "target"))
    assert (tmp_path / "target").read_bytes() == b"keep"
    assert listing(tmp_path) == ["src", "target"]


def test_a_zcp_stream_of_two_files_to_a_new_name_unpacks_without_temp_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    (src / "b").write_bytes(b"b")
    receive_bytes(stream_of(src), str(tmp_path / "target"))
    assert sorted(os.listdir(tmp_path / "target")) == ["a", "b"]
    assert not [p for p in (tmp_path / "target").iterdir() if p.name.endswith(".zcp")]


@pytest.mark.parametrize("existing", [True, False])
def test_bytes_that_are_not_tar_are_refused_by_a_folder(tmp_path, existing):
    dest = tmp_path / "dest"
    if existing:
        dest.mkdir()
    with pytest.raises(StreamError, match="not a tar stream; give a file name"):
        receive_bytes(b"just some text\n", str(dest) + ("" if existing else "/"))
    assert listing(tmp_path) == (["dest"] if existing else [])


def test_an_empty_stream_is_an_empty_file_but_not_a_folder(tmp_path):
    receive_bytes(b"", str(tmp_path / "empty"))
    assert (tmp_path / "empty").read_bytes() == b""
    with pytest.raises(StreamError):
        receive_bytes(b"", f"{tmp_path}/folder/")


def test_format_raw_forces_raw_and_needs_a_file_name(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    stream = stream_of(src)
    got = receive_bytes(stream, str(tmp_path / "as-is"), fmt="raw")
    assert (tmp_path / "as-is").read_bytes() == stream
    assert got.by_method == {Method.SPLICE: len(stream)}
    with pytest.raises(UsageError):
        receive_bytes(stream, str(src), fmt="raw")


def test_format_tar_forces_unpacking_into_a_new_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    receive_bytes(stream_of(src), str(tmp_path / "made"), fmt="tar")
    assert (tmp_path / "made" / "f").read_bytes() == b"x"


def test_raw_replacement_keeps_the_permissions_of_the_replaced_file(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"old")
    target.chmod(0o604)
    receive_bytes(b"new", str(target))
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o604


def test_raw_from_a_regular_file_on_stdin_uses_copy_file_range(tmp_path):
    data = os.urandom(50_000)
    (tmp_path / "in").write_bytes(data)
    fd = os.open(tmp_path / "in", os.O_RDONLY)
    try:
        got = receive(fd, str(tmp_path / "out"))
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == data
    assert got.by_method == {Method.COPY_FILE_RANGE: len(data) - pax.BLOCK}  # the peeked block was written


def test_writer_refuses_names_that_are_not_relative(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    entry = Entry.from_stat(str(tmp_path / "f"), os.lstat(tmp_path / "f"))
    for name in ("/abs", "a/../b", ""):
        with pytest.raises(ValueError):
            collect(lambda fd: write_stream(fd, [(name, entry)]))
