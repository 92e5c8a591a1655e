"""Block-delta updates on real files: which ranges differ, in-place patching, the policy, changing sources."""

from __future__ import annotations

import errno
import os
import time
from contextlib import ExitStack
from dataclasses import replace

import pytest

from zcp.config import Method, Reflink
from zcp.errors import MethodUnavailable, SourceChanged, Unsupported
from zcp.exec import delta
from zcp.exec.delta import (
    BLOCK_SIZE,
    DELTA_MIN_SIZE,
    MAX_BLOCKS,
    Delta,
    block_size_for,
    changed_ranges,
    choose_delta,
    delta_in_place,
    delta_into_temp,
)
from zcp.model import Entry, Kind
from zcp.syscalls import Capabilities

BLOCK = 4096  # small blocks keep these files small
IN_KERNEL = (Method.COPY_FILE_RANGE, Method.SENDFILE, Method.RW)




@pytest.fixture
def fds(tmp_path):
    """open(name, content, flags) -> fd of a new file in tmp_path, closed after the test."""
    with ExitStack() as stack:
        def open_file(name: str, content: bytes, flags: int = os.O_RDONLY) -> int:
            path = tmp_path / name
            path.write_bytes(content)
            fd = os.open(path, flags)
            stack.callback(os.close, fd)
            return fd

        yield open_file


def ranges_between(fds, src: bytes, old: bytes, block: int = BLOCK) -> list[tuple[int, int]]:
    return changed_ranges(fds("compared-src", src), len(src), fds("compared-old", old), len(old), block)


def flipped(data: bytes, *offsets: int) -> bytes:
    out = bytearray(data)
    for offset in offsets:
        out[offset] ^= 0xFF
    return bytes(out)


DATA = os.urandom(16 * BLOCK + 100)  # 16 full blocks and a short one


def test_identical_files_have_no_changed_ranges(fds):
    assert ranges_between(fds, DATA, DATA) == []


@pytest.mark.parametrize(("offset", "expected"), [
    (0, [(0, BLOCK)]),
    (5 * BLOCK + 17, [(5 * BLOCK, BLOCK)]),
    (16 * BLOCK - 1, [(15 * BLOCK, BLOCK)]),
    (len(DATA) - 1, [(16 * BLOCK, 100)]),  # the short last block
], ids=["start", "middle", "last-full-block", "short-tail"])
def test_one_changed_byte_is_one_block(fds, offset, expected):
    assert ranges_between(fds, DATA, flipped(DATA, offset)) == expected


def test_a_change_across_a_block_boundary_is_one_range_of_two_blocks(fds):
    old = flipped(DATA, 3 * BLOCK - 1, 3 * BLOCK)
    assert ranges_between(fds, DATA, old) == [(2 * BLOCK, 2 * BLOCK)]


def test_adjacent_blocks_coalesce_and_separate_ones_do_not(fds):
    old = flipped(DATA, 1 * BLOCK, 2 * BLOCK + 5, 3 * BLOCK + 9, 7 * BLOCK, len(DATA) - 1)
    assert ranges_between(fds, DATA, old) == [(BLOCK, 3 * BLOCK), (7 * BLOCK, BLOCK), (16 * BLOCK, 100)]


def test_a_longer_source_changes_its_tail(fds):
    old = DATA[: 10 * BLOCK + 5]
    assert ranges_between(fds, DATA, old) == [(10 * BLOCK, len(DATA) - 10 * BLOCK)]


def test_a_shorter_source_needs_only_its_partial_last_block(fds):
    assert ranges_between(fds, DATA[: 9 * BLOCK], DATA) == []  # the rest is cut off by the size
    assert ranges_between(fds, DATA[: 9 * BLOCK + 1], DATA) == [(9 * BLOCK, 1)]


def test_an_empty_old_file_changes_everything(fds):
    assert ranges_between(fds, DATA, b"") == [(0, len(DATA))]


def test_blocks_across_read_chunks_find_the_same_ranges(fds):
    """Blocks are hashed from reads of READ_CHUNK; the ranges must not depend on where a read ends."""
    src = os.urandom(8 << 20)
    old = flipped(src, 3 << 20, (3 << 20) + BLOCK_SIZE)
    assert ranges_between(fds, src, old, BLOCK_SIZE) == [(3 << 20, 2 * BLOCK_SIZE)]


def test_a_wrong_destination_size_is_a_change_of_the_destination(fds):
    with pytest.raises(SourceChanged, match="destination changed"):
        changed_ranges(fds("src", DATA), len(DATA), fds("old", DATA), len(DATA) + 1, BLOCK)


def test_block_size_grows_only_past_max_blocks():
    assert block_size_for(0) == block_size_for(BLOCK_SIZE * MAX_BLOCKS) == BLOCK_SIZE
    assert block_size_for(BLOCK_SIZE * MAX_BLOCKS + 1) == 2 * BLOCK_SIZE
    assert block_size_for(1 << 40) == (1 << 40) // MAX_BLOCKS


# --- in place ----------------------------------------------------------------------------------


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(delta, "BLOCK_SIZE", BLOCK)


def patch_in_place(fds, src: bytes, old: bytes, methods=IN_KERNEL, caps=None, progress=None):
    src_fd = fds("src", src)
    dst_fd = fds("dst", old, os.O_RDWR)
    devices = (os.fstat(src_fd).st_dev, os.fstat(dst_fd).st_dev)
    return delta_in_place(src_fd, len(src), dst_fd, methods=methods, devices=devices, caps=caps or Capabilities(),
                          progress=progress)


@pytest.mark.parametrize("old", [
    flipped(DATA, 0, 9 * BLOCK + 3, len(DATA) - 1),
    DATA[: 5 * BLOCK + 7],
    DATA + os.urandom(3 * BLOCK),
    b"",
], ids=["changed", "shorter", "longer", "empty"])
def test_in_place_makes_the_destination_equal_the_source(small_blocks, fds, tmp_path, old):
    result = patch_in_place(fds, DATA, old, progress=(reported := []).append)
    assert (tmp_path / "dst").read_bytes() == DATA
    assert result.bytes_written == sum(length for _, length in result.ranges) == sum(reported)
    assert result.ranges == ranges_between(fds, DATA, old)


def test_in_place_writes_only_the_changed_blocks(small_blocks, fds, tmp_path):
    result = patch_in_place(fds, DATA, flipped(DATA, 4 * BLOCK + 1))
    assert (result.ranges, result.bytes_written) == ([(4 * BLOCK, BLOCK)], BLOCK)
    assert (tmp_path / "dst").read_bytes() == DATA


def test_in_place_with_nothing_changed_writes_nothing(fds):
    result = patch_in_place(fds, DATA, DATA)
    assert (result.ranges, result.bytes_written, result.method) == ([], 0, None)


def test_an_unsupported_method_gives_way_to_the_next_and_is_remembered(fds, tmp_path, monkeypatch):
    def refuse(*args):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "copy_file_range", refuse)
    caps = Capabilities()
    result = patch_in_place(fds, DATA, flipped(DATA, 0, 8 * BLOCK), caps=caps)
    assert result.method is Method.SENDFILE
    assert (tmp_path / "dst").read_bytes() == DATA
    devices = os.stat(tmp_path / "src").st_dev, os.stat(tmp_path / "dst").st_dev
    assert caps.is_known_unsupported(Method.COPY_FILE_RANGE, *devices)


def test_no_method_that_can_copy_ranges_fails_the_file(fds, tmp_path):
    old = flipped(DATA, 1)
    with pytest.raises(MethodUnavailable):
        patch_in_place(fds, DATA, old, methods=(Method.REFLINK,))
    assert (tmp_path / "dst").read_bytes() == old


# --- a changing source -------------------------------------------------------------------------


def test_a_source_of_another_size_than_expected_is_refused(fds):
    src_fd, dst_fd = fds("src", DATA), fds("dst", DATA, os.O_RDWR)
    with pytest.raises(SourceChanged):
        delta_in_place(src_fd, len(DATA) - 1, dst_fd, methods=IN_KERNEL, devices=(0, 0), caps=Capabilities())


@pytest.mark.parametrize("change", ["rewrite", "append", "truncate"])
def test_a_source_written_during_the_delta_is_noticed(small_blocks, fds, tmp_path, change):
    """Progress runs after the first changed range is copied: the source changes before the second."""
    src = tmp_path / "src"

    def change_source(_moved: int) -> None:
        time.sleep(0.02)  # past the timestamp granularity of kernels without fine-grained timestamps
        with open(src, "r+b") as f:
            if change == "rewrite":
                f.write(b"other")
            elif change == "append":
                f.seek(0, os.SEEK_END)
                f.write(b"more")
            else:
                f.truncate(BLOCK)

    with pytest.raises(SourceChanged):
        patch_in_place(fds, DATA, flipped(DATA, 0, 10 * BLOCK), progress=change_source)


# --- into a temp file, where nothing can clone -------------------------------------------------


def test_delta_into_temp_without_a_clone_leaves_the_temp_empty(fds, monkeypatch):
    clones = []

    def refuse_clone(src_fd: int, dst_fd: int) -> None:
        clones.append(dst_fd)
        raise Unsupported(Method.REFLINK, errno.EOPNOTSUPP)

    monkeypatch.setattr(delta, "reflink", refuse_clone)
    src_fd, old_fd = fds("src", DATA), fds("old", flipped(DATA, 0))
    tmp_fd = fds("tmp", b"", os.O_RDWR)
    dst_dev = os.fstat(old_fd).st_dev
    caps = Capabilities()
    for _ in range(2):  # the second time it is known and not tried
        with pytest.raises(Unsupported):
            delta_into_temp(src_fd, len(DATA), old_fd, tmp_fd, methods=IN_KERNEL, devices=(0, dst_dev), caps=caps)
        assert os.fstat(tmp_fd).st_size == 0
    assert caps.is_known_unsupported(Method.REFLINK, dst_dev, dst_dev)
    assert clones == [tmp_fd]


# --- the policy --------------------------------------------------------------------------------

BIG = DELTA_MIN_SIZE
SRC = Entry("src", Kind.FILE, 0o644, BIG, 0, 0, 0, 0, 1, 1, 1, blocks=BIG // 512)
OLD = replace(SRC, path="dst", dev=2)


def test_a_large_existing_file_on_another_filesystem_gets_a_delta_in_a_temp():
    assert choose_delta(SRC, OLD, IN_KERNEL, Reflink.AUTO, inplace=False, sparse=True) is Delta.IN_TEMP


@pytest.mark.parametrize(("src", "existing", "methods", "reflink_mode", "sparse"), [
    (SRC, None, IN_KERNEL, Reflink.AUTO, True),
    (SRC, replace(OLD, kind=Kind.SYMLINK), IN_KERNEL, Reflink.AUTO, True),
    (replace(SRC, size=BIG - 1, blocks=0), OLD, IN_KERNEL, Reflink.AUTO, False),
    (SRC, replace(OLD, size=BIG - 1), IN_KERNEL, Reflink.AUTO, True),
    (SRC, OLD, IN_KERNEL, Reflink.NEVER, True),
    (SRC, OLD, (Method.REFLINK, *IN_KERNEL), Reflink.AUTO, True),
    (SRC, OLD, (Method.REFLINK,), Reflink.ALWAYS, True),
    (replace(SRC, blocks=8), OLD, IN_KERNEL, Reflink.AUTO, True),
], ids=["no-destination", "not-a-file", "small-source", "small-destination", "reflink-never",
        "same-filesystem", "reflink-always", "sparse-source"])
def test_whole_copy_where_a_delta_does_not_pay_or_cannot_clone(src, existing, methods, reflink_mode, sparse):
    assert choose_delta(src, existing, methods, reflink_mode, inplace=False, sparse=sparse) is None


def test_a_sparse_source_may_get_a_delta_when_holes_are_not_kept():
    assert choose_delta(replace(SRC, blocks=8), OLD, IN_KERNEL, Reflink.AUTO, inplace=False,
                        sparse=False) is Delta.IN_TEMP


@pytest.mark.parametrize("methods", [IN_KERNEL, (Method.REFLINK, *IN_KERNEL), (Method.SENDFILE, Method.RW)])
def test_inplace_patches_any_existing_file_in_place(methods):
    small = replace(SRC, size=10)
    assert choose_delta(small, replace(OLD, size=3), methods, Reflink.NEVER, inplace=True,
                        sparse=True) is Delta.IN_PLACE


def test_inplace_needs_a_method_that_copies_ranges():
    assert choose_delta(SRC, OLD, (Method.REFLINK,), Reflink.ALWAYS, inplace=True, sparse=True) is None


def _sparse_file(path, layout) -> bytes:
    """A file of data and holes: layout is [(offset, bytes)] over a size set by the last item."""
    with open(path, "wb") as f:
        for offset, data in layout:
            f.seek(offset)
            f.write(data)
    return path.read_bytes()


@pytest.mark.parametrize("case", ["grown", "holes-in-old-data"])
def test_in_place_keeps_the_source_holes_as_holes(tmpfs_dir, case):
    """--inplace onto an existing file: the source's holes become holes (punched, or left by growing
    the file), never written zeros; the content is equal all the same."""
    mib = 1 << 20
    if case == "grown":
        old = b"hi"
        layout = [(0, b"hi"), (64 * mib, b"end")]
    else:
        old = os.urandom(8 * mib)
        layout = [(0, old[:mib]), (7 * mib, old[7 * mib:])]
    src_path, dst_path = tmpfs_dir / "src", tmpfs_dir / "dst"
    expected = _sparse_file(src_path, layout)
    dst_path.write_bytes(old)
    src_fd = os.open(src_path, os.O_RDONLY)
    dst_fd = os.open(dst_path, os.O_RDWR)
    try:
        devices = (os.fstat(src_fd).st_dev, os.fstat(dst_fd).st_dev)
        delta_in_place(src_fd, len(expected), dst_fd, methods=IN_KERNEL, devices=devices, caps=Capabilities(),
                       sparse=True)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    assert dst_path.read_bytes() == expected
    assert os.stat(dst_path).st_blocks * 512 <= os.stat(src_path).st_blocks * 512 + 2 * BLOCK_SIZE


def test_a_failed_in_place_update_never_has_the_source_size(mounts, tmp_path):
    """ENOSPC part way: the file must not have the source's size yet, or a later --size-only run
    would take the torn file for up to date."""
    mib = 1 << 20
    small = mounts.tmpfs("4m")
    src_path, dst_path = tmp_path / "src", small / "dst"
    expected = _sparse_file(src_path, [(0, os.urandom(6 * mib)), (30 * mib - 3, b"end")])
    dst_path.write_bytes(os.urandom(mib))
    src_fd = os.open(src_path, os.O_RDONLY)
    dst_fd = os.open(dst_path, os.O_RDWR)
    try:
        devices = (os.fstat(src_fd).st_dev, os.fstat(dst_fd).st_dev)
        with pytest.raises(OSError) as failed:
            delta_in_place(src_fd, len(expected), dst_fd, methods=IN_KERNEL, devices=devices, caps=Capabilities(),
                           sparse=True)
        assert failed.value.errno == errno.ENOSPC
        assert os.fstat(dst_fd).st_size < len(expected)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
        mounts.unmount(small)
