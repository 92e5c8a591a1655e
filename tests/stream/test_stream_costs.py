"""Per-entry cost of the stream: small entries share reads and writes, big bodies stay with the
kernel, and the cheaper paths read and write exactly what the plain ones did (padding kept)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_support import END, build_tree, collect, hashed, member, receive_bytes, snapshot, walk_items, zcp_global

from zcp.errors import StreamError
from zcp.model import Entry
from zcp.stream import members, pax, receive, write_stream, writer
from zcp.stream.members import TarReader

SIZES = [0, 1, 100, 511, 512, 513, 1024, 70_000, 0, 3]


def small_tree(root: Path) -> Path:
    """Folders with files of awkward sizes, a symlink and an empty folder."""
    for folder in ("a", "a/b", "c", "empty"):
        (root / folder).mkdir(parents=True)
    for i, size in enumerate(SIZES):
        folder = ("a", "a/b", "c")[i % 3]
        (root / folder / f"f{i}").write_bytes(os.urandom(size))
    os.symlink("f0", root / "a" / "link")
    return root


class CountingReads:
    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls = 0
        self.bytes = 0
        real = members.read_some

        def counted(fd: int, length: int) -> bytes:
            data = real(fd, length)
            self.calls += 1
            self.bytes += len(data)
            return data

        monkeypatch.setattr(members, "read_some", counted)


def test_reader_takes_few_reads_for_many_entries_and_leaves_a_big_body_to_the_kernel(tmp_path, monkeypatch):
    src = small_tree(tmp_path / "src")
    big = os.urandom(4 * members.READ_SIZE)
    (src / "c" / "big").write_bytes(big)
    items = walk_items(src)
    archive = tmp_path / "stream.tar"
    archive.write_bytes(collect(lambda fd: write_stream(fd, items)))
    reads = CountingReads(monkeypatch)

    fd = os.open(archive, os.O_RDONLY)
    try:
        reader = TarReader(fd)
        seen = 0
        while (got := reader.next()) is not None:
            content = (src / got.name).read_bytes() if got.kind == "file" and not got.hardlink else b""
            if got.size <= members.SMALL_BODY:
                assert reader.small_body(got) == content
            else:
                head = reader.body_head(got)
                # The rest of the body starts exactly where the reader stopped.
                position = os.lseek(fd, 0, os.SEEK_CUR)
                assert head + os.pread(fd, got.size - len(head), position) == content
                os.lseek(fd, got.size - len(head), os.SEEK_CUR)
                reader.end_body(got)
            seen += 1
    finally:
        os.close(fd)

    assert seen == len(items)
    assert reads.calls <= 4  # the stream is about 1 MiB: a read for the start, the rest after the big body
    assert reads.bytes <= archive.stat().st_size - len(big) + members.READ_SIZE


def test_writer_gathers_small_entries_into_one_write_and_sends_big_bodies_apart(tmp_path, monkeypatch):
    src = small_tree(tmp_path / "src")
    items = walk_items(src)
    writes: list[bytes] = []
    real = writer.write_all

    def counted(fd: int, data: bytes) -> None:
        writes.append(bytes(data))
        real(fd, data)

    monkeypatch.setattr(writer, "write_all", counted)
    data = collect(lambda fd: write_stream(fd, items))

    big = [size for size in SIZES if size > writer.SMALL_BODY]
    assert len(big) == 1
    # Everything up to the big body's headers, then (after its kernel copy) the rest with the end marker.
    assert len(writes) == 2
    assert sum(map(len, writes)) == len(data) - big[0]
    assert len(writes[0]) % pax.BLOCK == 0  # the big body starts on a block boundary
    assert writes[-1].endswith(END) and len(data) % pax.BLOCK == 0
    receive_bytes(data, f"{tmp_path / 'dest'}/")
    assert snapshot(tmp_path / "dest") == snapshot(src)


def test_writer_writes_once_a_batch_is_gathered(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    count = 3 * writer.BATCH // writer.SMALL_BODY
    for i in range(count):
        (src / f"f{i:03d}").write_bytes(os.urandom(writer.SMALL_BODY))
    sizes: list[int] = []
    real = writer.write_all
    monkeypatch.setattr(writer, "write_all", lambda fd, data: (sizes.append(len(data)), real(fd, data)))
    data = collect(lambda fd: write_stream(fd, walk_items(src)))

    assert 3 <= len(sizes) <= 4
    assert all(size >= writer.BATCH for size in sizes[:-1]) and sum(sizes) == len(data)
    receive_bytes(data, f"{tmp_path / 'dest'}/")
    assert snapshot(tmp_path / "dest") == snapshot(src)


def test_padding_held_back_survives_entries_left_out(tmp_path):
    """The padding of a body goes out with the next header written, even past vanished entries."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "first").write_bytes(b"x" * 100)
    (src / "gone").write_bytes(b"y" * 7)
    (src / "last").write_bytes(b"z" * 3)
    items = walk_items(src)
    (src / "gone").unlink()

    data = collect(lambda fd: write_stream(fd, items))
    receive_bytes(data, f"{tmp_path / 'dest'}/")

    assert sorted(os.listdir(tmp_path / "dest")) == ["first", "last"]
    assert (tmp_path / "dest" / "first").read_bytes() == b"x" * 100
    assert (tmp_path / "dest" / "last").read_bytes() == b"z" * 3


def test_a_stream_cut_inside_the_padding_fails_before_the_file_is_placed(tmp_path):
    whole = zcp_global() + member(b"f", body=b"abc", records=hashed(b"abc")) + END
    cut = whole[: whole.index(b"abc\x00") + 3 + 100]  # headers, body, part of the padding
    dest = tmp_path / "dest"
    with pytest.raises(StreamError, match="ends inside the body of 'f'"):
        receive_bytes(cut, f"{dest}/")
    assert os.listdir(dest) == []


def test_a_plain_tar_cut_right_after_a_padding_ends_cleanly(tmp_path):
    """GNU tar accepts an archive without end marker; the read ahead of the next header meets EOF."""
    data = member(b"f", body=b"abc") + member(b"g", body=b"")
    stats = receive_bytes(data, f"{tmp_path / 'dest'}/")
    assert stats.files == 2
    assert (tmp_path / "dest" / "f").read_bytes() == b"abc"


def test_a_corrupt_extended_header_is_refused_after_a_good_one_with_the_same_size(tmp_path):
    """'x' header blocks are decoded once per distinct block: a corrupt one is still checked."""
    records = [("mtime", b"1.000000000")]
    good = pax.pax_header(b"././@PaxHeader", pax.PAX_EXTENDED, records)
    bad = bytearray(good)
    bad[0] ^= 1  # same size field, broken checksum
    stream = member(b"f", body=b"1", records=records) + bytes(bad) + member(b"g", body=b"2")[: pax.BLOCK] + END
    with pytest.raises(StreamError, match="bad tar header"):
        receive_bytes(stream, f"{tmp_path / 'dest'}/")


def test_names_are_checked_under_each_folder_even_when_folders_interleave(tmp_path):
    """A name's folders are checked again whenever the folder changes from the previous entry."""
    stream = (
        member(b"x/f1", body=b"1")
        + member(b"y/f2", body=b"2")
        + member(b"x/f3", body=b"3")
        + member(b"y/f2/g", body=b"4")  # beneath a file
        + END
    )
    with pytest.raises(StreamError, match="is a file in this stream"):
        receive_bytes(stream, f"{tmp_path / 'dest'}/")


def test_the_full_sample_tree_round_trips_through_a_file(tmp_path):
    """The sample tree of the other tests, written to a file (copy_file_range) and read back."""
    src = build_tree(tmp_path / "src", fifo=False)
    archive = tmp_path / "stream.tar"
    fd = os.open(archive, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        write_stream(fd, walk_items(src))
    finally:
        os.close(fd)
    fd = os.open(archive, os.O_RDONLY)
    try:
        stats = receive(fd, f"{tmp_path / 'dest'}/")
    finally:
        os.close(fd)
    assert snapshot(tmp_path / "dest") == snapshot(src)
    assert stats.verified == stats.files


def test_file_headers_carry_the_metadata_of_the_fd_sent_from(tmp_path):
    """The writer builds a file's headers from the fstat of the fd it sends from."""
    path = tmp_path / "f"
    path.write_bytes(b"data")
    os.utime(path, ns=(1_234_567_890_123_456_789, 1_500_000_000_987_654_321))
    entry = Entry.from_stat(str(path), os.lstat(path))
    data = collect(lambda fd: write_stream(fd, [("f", entry)]))
    reader_input = tmp_path / "stream.tar"
    reader_input.write_bytes(data)
    fd = os.open(reader_input, os.O_RDONLY)
    try:
        got = TarReader(fd).next()
    finally:
        os.close(fd)
    assert got is not None
    assert (got.name, got.size, got.mode) == ("f", 4, entry.mode)
    assert (got.mtime_ns, got.atime_ns) == (1_500_000_000_987_654_321, 1_234_567_890_123_456_789)


def _members_of(stream: bytes) -> list[members.Member]:
    read_end, write_end = os.pipe()
    os.write(write_end, stream)  # small enough for the pipe
    os.close(write_end)
    try:
        reader = TarReader(read_end)
        found = []
        while (got := reader.next()) is not None:
            reader.skip_body(got)
            found.append(got)
        return found
    finally:
        os.close(read_end)


_NS = st.integers(0, 2**63 - 1) | st.integers(10**18, 2**63 - 1)  # the second: ten-digit seconds


@settings(max_examples=300, deadline=None)
@given(
    mtime=_NS,
    atime=_NS,
    digest=st.none() | st.binary(min_size=16, max_size=16),
    typeflag=st.sampled_from([pax.REGULAR, pax.DIRECTORY, pax.SYMLINK, pax.AREGULAR]),
    global_records=st.sampled_from([[], [("uid", b"77")], [("mtime", b"5.5")]]),
    second=st.sampled_from([None, ("uid", b"42"), ("atime", b"1.25"), ("path", b"other")]),
)
def test_records_as_zcp_writes_them_read_as_the_general_parser_reads_them(
    mtime, atime, digest, typeflag, global_records, second
):
    """The one-match reading of zcp's own records gives the very member the record-by-record
    parser gives, with global records and further 'x' headers taken in order."""
    records = [("mtime", pax.format_ns_time(mtime)), ("atime", pax.format_ns_time(atime))]
    if digest is not None:
        records.append((pax.KEY_HASH, digest.hex().encode()))
    stream = pax.pax_header(b"g", pax.PAX_GLOBAL, [(pax.KEY_VERSION, b"1"), *global_records])
    stream += pax.pax_header(b"x", pax.PAX_EXTENDED, records)
    if second is not None:
        stream += pax.pax_header(b"x", pax.PAX_EXTENDED, [second])
    stream += member(b"name", typeflag, linkname=b"target" if typeflag == pax.SYMLINK else b"") + END

    quick = _members_of(stream)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(members, "_ZCP_RECORDS", re.compile(rb"(?!)"))  # matches nothing
        assert quick == _members_of(stream)
    # Times from 2001 on (ten-digit seconds) take the one-match way.
    assert bool(members._ZCP_RECORDS.fullmatch(pax.encode_records(records))) == (min(mtime, atime) >= 10**18)


def test_the_receiver_keeps_little_per_entry(tmpfs_dir):
    """Every name is remembered (a name seen as a file cannot come back as a folder): as one string,
    about 0.1 KiB an entry. 100,000 empty files in folders of 1,000, through a real process; the
    baseline is an empty archive."""
    import json
    import subprocess
    import sys

    entries = 100_000
    (tmpfs_dir / "empty.tar").write_bytes(END)
    with open(tmpfs_dir / "many.tar", "wb") as out:
        for n in range(entries):
            if n % 1000 == 0:
                out.write(pax.encode_header(b"d%03d/" % (n // 1000), pax.DIRECTORY, mode=0o755))
            out.write(pax.encode_header(b"d%03d/file-number-%05d.txt" % (n // 1000, n), pax.REGULAR, mode=0o644))
        out.write(END)
    measured = ("import json, resource, subprocess, sys\n"
                "with open(sys.argv[1], 'rb') as stream:\n"
                "    done = subprocess.run(sys.argv[2:], stdin=stream, capture_output=True)\n"
                "print(json.dumps([done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    peaks = {}
    for name in ("empty", "many"):
        done = subprocess.run([sys.executable, "-c", measured, tmpfs_dir / f"{name}.tar", sys.executable, "-m", "zcp",
                               "-", f"{tmpfs_dir}/{name}/"], capture_output=True, text=True, check=True)
        code, peaks[name] = json.loads(done.stdout)
        assert code == 0
    assert len(os.listdir(tmpfs_dir / "many")) == entries // 1000
    per_entry = (peaks["many"] - peaks["empty"]) * 1024 / entries
    assert per_entry < 200, f"{per_entry:.0f} bytes an entry"
