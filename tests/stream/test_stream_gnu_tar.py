"""Interoperability with GNU tar in both directions."""

from __future__ import annotations

import subprocess

import pytest
from conftest import need_tool
from stream_support import build_tree, feed, pipe_transfer, snapshot, stream_of, temp_leftovers, walk_items

from zcp.stream import receive


def test_gnu_tar_extracts_our_stream_identically(tmp_path):
    tar = need_tool("tar")
    src = build_tree(tmp_path / "src")
    dest = tmp_path / "dest"
    dest.mkdir()
    done = subprocess.run(
        [tar, "-x", "--warning=no-unknown-keyword", "-C", str(dest), "-f", "-"],
        input=stream_of(src),
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert snapshot(dest) == snapshot(src)


def test_gnu_tar_lists_our_names_exactly(tmp_path):
    tar = need_tool("tar")
    src = build_tree(tmp_path / "src")
    listed = subprocess.run(
        [tar, "-t", "--quoting-style=literal", "--warning=no-unknown-keyword", "-f", "-"], input=stream_of(src), capture_output=True, check=True
    )
    names = [line.rstrip(b"/") for line in listed.stdout.splitlines()]
    assert sorted(names) == sorted(name.encode("utf-8", "surrogateescape") for name, _ in walk_items(src))


@pytest.mark.parametrize("tar_format", ["gnu", "pax", "ustar", "posix"])
def test_we_receive_gnu_tar_streams(tmp_path, tar_format):
    tar = need_tool("tar")
    src = build_tree(tmp_path / "src")
    if tar_format == "ustar":  # ustar cannot hold names beyond 255 bytes, nor long link targets
        subprocess.run(["rm", "-rf", str(src / "deep"), str(src / "link-long")], check=True)
    archive = subprocess.run(
        [tar, "-c", f"--format={tar_format}", "-C", str(src), "."], capture_output=True, check=True
    ).stdout
    dest = tmp_path / "dest"
    got = feed(archive, lambda fd: receive(fd, f"{dest}/", allow_devices=True))
    unit = 1 if tar_format in ("pax", "posix") else 10**9  # gnu and ustar headers hold whole seconds
    assert snapshot(dest, unit) == snapshot(src, unit)
    assert temp_leftovers(dest) == []
    assert not got.zcp and got.verified == 0
    # "./" names the destination itself: tar carried the root folder's metadata.
    assert dest.stat().st_mtime_ns // 10**9 == src.stat().st_mtime_ns // 10**9


def test_we_receive_gnu_tar_with_explicit_member_list(tmp_path):
    """`tar -c dir/sub/file` has no entries for the folders above the file: they are made."""
    tar = need_tool("tar")
    src = build_tree(tmp_path / "src", fifo=False)
    archive = subprocess.run(
        [tar, "-c", "-C", str(src), "deep/hard-511", "size-1"], capture_output=True, check=True
    ).stdout
    dest = tmp_path / "dest"
    feed(archive, lambda fd: receive(fd, f"{dest}/"))
    assert (dest / "deep" / "hard-511").read_bytes() == (src / "size-511").read_bytes()
    assert (dest / "size-1").read_bytes() == (src / "size-1").read_bytes()


def test_gnu_tar_record_padding_is_drained(tmp_path):
    """tar pads to 10 KiB records after the end marker; the reader consumes them so tar never sees EPIPE."""
    tar = need_tool("tar")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    producer = subprocess.Popen([tar, "-c", "-C", str(src), "f"], stdout=subprocess.PIPE)
    try:
        receive(producer.stdout.fileno(), f"{tmp_path}/dest/")
    finally:
        producer.stdout.close()
    assert producer.wait(timeout=30) == 0
    assert (tmp_path / "dest" / "f").read_bytes() == b"x"


def test_our_stream_survives_tar_reading_it_back_into_a_stream(tmp_path):
    """zcp | tar -x, then tar -c | zcp: the tree still matches (both directions compose)."""
    tar = need_tool("tar")
    src = build_tree(tmp_path / "src")
    middle = tmp_path / "middle"
    middle.mkdir()
    subprocess.run(
        [tar, "-x", "--warning=no-unknown-keyword", "-C", str(middle), "-f", "-"], input=stream_of(src), check=True
    )
    archive = subprocess.run([tar, "-c", "--format=pax", "-C", str(middle), "."], capture_output=True, check=True).stdout
    final = tmp_path / "final"
    feed(archive, lambda fd: receive(fd, f"{final}/", allow_devices=True))
    assert snapshot(final) == snapshot(src)
    pipe_transfer(walk_items(final), f"{tmp_path}/again/", allow_devices=True)
    assert snapshot(tmp_path / "again") == snapshot(src)


def test_an_empty_gnu_tar_archive_unpacks_to_nothing(tmp_path):
    tar = need_tool("tar")
    archive = subprocess.run([tar, "-c", "-T", "/dev/null"], capture_output=True, check=True).stdout
    got = feed(archive, lambda fd: receive(fd, f"{tmp_path}/dest/"))
    assert got.entries == 0 and list((tmp_path / "dest").iterdir()) == []
