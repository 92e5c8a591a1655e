"""hashing: digests against xxhash and xxhsum, procfs and pipes, files changing under us."""

from __future__ import annotations

import errno
import os
import subprocess
import threading

import pytest
import xxhash

from conftest import need, need_root, need_tool
from zcp import hashing
from zcp.errors import SourceChanged

CHUNK = 64 << 10
SIZES = [0, 1, 4095, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7]


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(hashing, "READ_CHUNK", CHUNK)
    monkeypatch.setattr(hashing, "UNKNOWN_SIZE_CHUNK", 4096)


def write_file(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def open_ro(path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


@pytest.mark.parametrize("size", SIZES)
def test_digest_matches_xxhash(tmp_path, size, small_chunks):
    data = os.urandom(size)
    fd = open_ro(write_file(tmp_path / "f", data))
    try:
        os.lseek(fd, 3, os.SEEK_SET)
        seen: list[int] = []
        assert hashing.hash_fd(fd, size, seen.append) == xxhash.xxh3_128_digest(data)
        assert hashing.hash_fd(fd) == xxhash.xxh3_128_digest(data)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 3
        assert sum(seen) == size
    finally:
        os.close(fd)


def test_hex_digest_is_what_xxhsum_prints(tmp_path):
    xxhsum = need_tool("xxhsum")
    for size in (0, 1, 200, 100_000):
        path = write_file(tmp_path / f"f{size}", os.urandom(size))
        printed = subprocess.run([xxhsum, "-H2", path], capture_output=True, text=True, check=True).stdout
        assert printed.split()[0] == hashing.hex_digest(hashing.hash_path(path))
    assert hashing.hex_digest(xxhash.xxh3_128_digest(b"abc")) == "06b05ab6733a618578af5f94892f3950"


@pytest.mark.parametrize("name", ["version", "self/cmdline"])
def test_procfs_file_of_size_zero_is_read_until_eof(name):
    path = f"/proc/{name}"
    need(os.path.exists(path), f"needs {path}")
    assert os.stat(path).st_size == 0
    with open(path, "rb") as f:
        content = f.read()
    assert content
    assert hashing.hash_path(path) == xxhash.xxh3_128_digest(content)


def test_sysfs_file_shorter_than_its_size_is_read_until_eof():
    path = "/sys/kernel/mm/transparent_hugepage/enabled"
    need(os.path.exists(path), f"needs {path}")
    with open(path, "rb") as f:
        content = f.read()
    assert 0 < len(content) < os.stat(path).st_size
    assert hashing.hash_path(path) == xxhash.xxh3_128_digest(content)


def test_a_file_that_keeps_growing_ends_in_source_changed(tmp_path, small_chunks):
    path = write_file(tmp_path / "log", os.urandom(2 * CHUNK))

    def append(_done: int) -> None:
        with open(path, "ab") as f:
            f.write(os.urandom(CHUNK))

    fd = open_ro(path)
    try:
        with pytest.raises(SourceChanged, match="grew"):
            hashing.hash_fd(fd, None, append)
    finally:
        os.close(fd)


def test_pipe_is_read_until_eof(small_chunks):
    data = os.urandom(3 * 4096 + 5)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
        os.close(write_end)
        assert hashing.hash_fd(read_end, len(data)) == xxhash.xxh3_128_digest(data)
    finally:
        os.close(read_end)


def test_truncation_during_hashing(tmp_path, small_chunks):
    truncate = need_tool("truncate")
    size = 4 * CHUNK
    path = write_file(tmp_path / "f", os.urandom(size))
    fd = open_ro(path)

    def shrink(_done: int) -> None:
        subprocess.run([truncate, "-s", str(CHUNK + 10), path], check=True)

    try:
        with pytest.raises(SourceChanged, match="shrank"):
            hashing.hash_fd(fd, size, shrink)
    finally:
        os.close(fd)


def test_growth_is_noticed(tmp_path, small_chunks):
    path = write_file(tmp_path / "f", os.urandom(2 * CHUNK))
    with open(path, "ab") as f:
        f.write(b"more")
    fd = open_ro(path)
    try:
        with pytest.raises(SourceChanged):
            hashing.hash_fd(fd, 2 * CHUNK)
    finally:
        os.close(fd)


def test_hash_path_notices_a_rewrite_between_reads(tmp_path, small_chunks):
    path = write_file(tmp_path / "f", os.urandom(3 * CHUNK))

    def rewrite(_done: int) -> None:
        with open(path, "r+b") as f:
            f.write(b"x")
        os.utime(path, ns=(0, 0))

    with pytest.raises(SourceChanged, match="changed while it was hashed"):
        hashing.hash_path(path, rewrite)


def test_hash_path_does_not_follow_symlinks_unless_asked(tmp_path):
    data = b"target"
    write_file(tmp_path / "target", data)
    os.symlink("target", tmp_path / "link")
    with pytest.raises(OSError):
        hashing.hash_path(str(tmp_path / "link"))
    assert hashing.hash_path(str(tmp_path / "link"), follow_symlinks=True) == xxhash.xxh3_128_digest(data)


def test_hash_path_refuses_folders_and_fifos_without_blocking(tmp_path):
    with pytest.raises(IsADirectoryError):
        hashing.hash_path(str(tmp_path))
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        hashing.hash_path(str(tmp_path / "fifo"))


@pytest.mark.parametrize("block_size", [4096, 3000, CHUNK])
@pytest.mark.parametrize("size", [0, 1, 4096, 3 * CHUNK, 3 * CHUNK + 17])
def test_block_hashes(tmp_path, small_chunks, block_size, size):
    data = os.urandom(size)
    fd = open_ro(write_file(tmp_path / "f", data))
    try:
        got = hashing.block_hashes(fd, size, block_size)
    finally:
        os.close(fd)
    expected = [xxhash.xxh3_128_digest(data[i : i + block_size]) for i in range(0, size, block_size)]
    assert got == expected


def test_block_hashes_reject_a_file_of_another_size(tmp_path, small_chunks):
    fd = open_ro(write_file(tmp_path / "f", os.urandom(2 * CHUNK)))
    try:
        with pytest.raises(SourceChanged):
            hashing.block_hashes(fd, 2 * CHUNK + 1, 4096)
        with pytest.raises(ValueError):
            hashing.block_hashes(fd, 2 * CHUNK, 0)
    finally:
        os.close(fd)


def test_read_back_digest_rereads_from_storage(ext4_dir, small_chunks):
    """After the first chunk is hashed, most of the file is not in the page cache any more."""
    fincore = need_tool("fincore")
    size = 64 * CHUNK
    data = os.urandom(size)
    path = str(ext4_dir / "f")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    resident: list[int] = []

    def measure_once(_done: int) -> None:
        if not resident:
            out = subprocess.run([fincore, "-b", "-n", "-o", "RES", path], capture_output=True, text=True)
            resident.append(int(out.stdout.split()[0]))

    try:
        os.write(fd, data)
        assert hashing.read_back_digest(fd, size, measure_once) == xxhash.xxh3_128_digest(data)
    finally:
        os.close(fd)
    assert resident[0] < size // 2


def test_read_back_digest_on_tmpfs_still_hashes_the_content(tmpfs_dir):
    need_root()
    data = os.urandom(100_000)
    fd = os.open(tmpfs_dir / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        assert hashing.read_back_digest(fd, len(data)) == xxhash.xxh3_128_digest(data)
    finally:
        os.close(fd)


def test_two_threads_hashing_one_fd_agree(tmp_path):
    """--verify hashes the source beside a block delta that hashes it too: one fd, two threads."""
    data = os.urandom(3 * hashing.READ_CHUNK + 5)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        results, errors = [], []

        def run():
            try:
                for _ in range(20):
                    results.append(hashing.hash_fd(fd, len(data)))
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.close(fd)
    assert errors == []
    assert set(results) == {xxhash.xxh3_128(data).digest()}


@pytest.mark.parametrize("size", [0, 1, hashing.TRAILING_CHUNK - 1, hashing.TRAILING_CHUNK, 3 * hashing.TRAILING_CHUNK + 5])
def test_trailing_digest_of_a_file_written_in_pieces(tmp_path, size):
    data = os.urandom(size)
    fd = os.open(tmp_path / "growing", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with hashing.TrailingDigest(fd) as trailing:
            done = 0
            for piece in (1, 4095, 70_000, 1 << 20, 2 << 20):
                piece = data[done:done + piece]
                os.write(fd, piece)
                trailing.written(len(piece))
                done += len(piece)
            os.write(fd, data[done:])
            trailing.written(size - done)
            assert trailing.digest(size) == xxhash.xxh3_128_digest(data)
    finally:
        os.close(fd)


def test_trailing_digest_of_fewer_bytes_than_announced_is_source_changed(tmp_path):
    fd = os.open(tmp_path / "short", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * 100)
        with hashing.TrailingDigest(fd) as trailing:
            trailing.written(200)
            with pytest.raises(SourceChanged, match="read back 100 bytes, expected 200"):
                trailing.digest(200)
    finally:
        os.close(fd)


def test_leaving_a_trailing_digest_early_stops_its_thread(tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(RuntimeError), hashing.TrailingDigest(fd) as trailing:
            os.write(fd, bytes(3 << 20))
            trailing.written(3 << 20)
            raise RuntimeError("the writer failed")
        assert [t for t in threading.enumerate() if t.name == "zcp-trailing-hash"] == []
    finally:
        os.close(fd)


def test_a_read_error_in_the_trailing_thread_reaches_the_writer(tmp_path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)  # write-only: preadv fails EBADF
    try:
        with hashing.TrailingDigest(fd) as trailing:
            os.write(fd, bytes(3 << 20))
            trailing.written(3 << 20)
            with pytest.raises(OSError) as caught:
                trailing.digest(3 << 20)
            assert caught.value.errno == errno.EBADF
    finally:
        os.close(fd)
