"""The four copy loops on real fds: exact bytes, offsets, streams, short counts, EAGAIN, faults."""

from __future__ import annotations

import errno
import fcntl
import os
import select

import pytest
from syscalls_support import Drain, Faulty, Feed, fds, random_bytes  # noqa: F401 (fixtures)

from zcp.config import Method
from zcp.errors import UNSUPPORTED_ERRNOS, SourceChanged, Unsupported
from zcp.syscalls import COPIERS, copy_file_range, loops, read_write, splice

pytestmark = pytest.mark.usefixtures("no_hang")  # a loop that never ends fails, not stalls

MiB = 1 << 20
METHODS = list(COPIERS)
# The syscall each loop is driven by (for read_write: its positional read).
SYSCALL = {
    Method.COPY_FILE_RANGE: "copy_file_range",
    Method.SENDFILE: "sendfile",
    Method.SPLICE: "splice",
    Method.RW: "preadv",
}
STREAM_SIZE = MiB + MiB // 2 + 3  # more than a default pipe, the internal pipe and the rw buffer


def position(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_CUR)


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class PollSpy:
    """Counts the poll objects the loops create (one per wait)."""

    def __init__(self, monkeypatch):
        self.count = 0
        real = select.poll

        def make():
            self.count += 1
            return real()

        monkeypatch.setattr(select, "poll", make)


# --- file to file ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size", [0, 1, 4095, 65537, 3 * MiB + 7])
def test_file_to_file_at_offset_zero(fds, tmp_path, method, size):
    data = random_bytes(size, seed=size)
    src, dst = fds.file("src", data, os.O_RDONLY), fds.file("dst")
    moved: list[int] = []
    assert COPIERS[method](src, dst, size, 0, 0, moved.append) == size
    assert sum(moved) == size
    assert (tmp_path / "dst").read_bytes() == data


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size", [0, 1, 4097, 3 * MiB + 7])
def test_positional_copy_leaves_the_source_position_alone(fds, tmp_path, method, size):
    data = random_bytes(size + 100, seed=size)
    src, dst = fds.file("src", data, os.O_RDONLY), fds.file("dst")
    assert COPIERS[method](src, dst, size, 37, 11, None) == size
    expected = b"\0" * 11 + data[37 : 37 + size] if size else b""
    assert (tmp_path / "dst").read_bytes() == expected
    assert position(src) == 0
    if method is not Method.SENDFILE:  # sendfile writes at the output's position, so it seeks it
        assert position(dst) == 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size", [1, 4097, 3 * MiB + 7])
def test_no_offsets_use_and_advance_the_fd_positions(fds, tmp_path, method, size):
    data = random_bytes(size + 5, seed=size)
    src, dst = fds.file("src", data, os.O_RDONLY), fds.file("dst", b"abc")
    os.lseek(src, 5, os.SEEK_SET)
    os.lseek(dst, 3, os.SEEK_SET)
    assert COPIERS[method](src, dst, size, None, None, None) == size
    assert (tmp_path / "dst").read_bytes() == b"abc" + data[5:]
    assert (position(src), position(dst)) == (5 + size, 3 + size)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size", [65537, 3 * MiB + 7])
def test_length_none_copies_until_eof(fds, tmp_path, method, size):
    data = random_bytes(size, seed=size)
    src, dst = fds.file("src", data, os.O_RDONLY), fds.file("dst")
    assert COPIERS[method](src, dst, None, 37, 0, None) == size - 37
    assert (tmp_path / "dst").read_bytes() == data[37:]


# --- pipes and sockets ----------------------------------------------------------------------

KINDS = ("file", "pipe", "socket")
# (method, source kind, destination kind) pairs the kernel serves; every other pair is Unsupported.
WORKS = {
    (Method.SENDFILE, "file", "pipe"),
    (Method.SENDFILE, "file", "socket"),
    *((Method.SPLICE, s, d) for s in KINDS for d in KINDS),
    *((Method.RW, s, d) for s in KINDS for d in KINDS),
}


def make_source(fds, kind: str, data: bytes) -> tuple[int, int | None]:
    """An fd that yields ``data``, and the offset to read it at (None for streams)."""
    if kind == "file":
        return fds.file("src", data, os.O_RDONLY), 0
    read_end, write_end = fds.pipe() if kind == "pipe" else fds.socketpair()
    Feed(write_end, data, close=fds.close).start()
    return read_end, None


class Sink:
    """An fd to copy into, and what arrived there once the copy is over."""

    def __init__(self, fds, tmp_path, kind: str):
        self.kind, self.fds, self.path = kind, fds, tmp_path / "dst"
        if kind == "file":
            self.fd, self.offset = fds.file("dst"), 0
            return
        read_end, self.fd = fds.pipe() if kind == "pipe" else fds.socketpair()
        self.offset = None
        self.drain = Drain(read_end)
        self.drain.start()

    def received(self) -> bytes:
        if self.kind == "file":
            return self.path.read_bytes()
        self.fds.close(self.fd)
        return self.drain.data()


STREAM_CASES = [(m, s, d) for m in METHODS for s in KINDS for d in KINDS if (s, d) != ("file", "file")]


@pytest.mark.parametrize("method,src_kind,dst_kind", STREAM_CASES)
@pytest.mark.parametrize("exact", [True, False], ids=["length", "until-eof"])
def test_streams_copy_exactly_or_are_unsupported_untouched(fds, tmp_path, method, src_kind, dst_kind, exact):
    data = random_bytes(STREAM_SIZE, seed=7)
    src, src_off = make_source(fds, src_kind, data)
    sink = Sink(fds, tmp_path, dst_kind)
    length = len(data) if exact else None
    if (method, src_kind, dst_kind) in WORKS:
        assert COPIERS[method](src, sink.fd, length, src_off, sink.offset) == len(data)
    else:
        with pytest.raises(Unsupported) as raised:
            COPIERS[method](src, sink.fd, length, src_off, sink.offset)
        assert raised.value.method == method
        # Nothing was taken from the source: the fallback still gets every byte.
        assert read_write(src, sink.fd, length, src_off, sink.offset) == len(data)
    assert sink.received() == data


@pytest.mark.parametrize("method", [Method.SPLICE, Method.RW])
def test_a_stream_that_ends_early_is_a_changed_source(fds, method):
    src, _ = make_source(fds, "pipe", b"x" * 1000)
    dst = fds.file("dst")
    with pytest.raises(SourceChanged, match="offset 1000 of 5000"):
        COPIERS[method](src, dst, 5000, None, 0)


# --- short transfers ------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_short_counts_are_continued(fds, tmp_path, monkeypatch, method):
    data = random_bytes(10_001, seed=3)
    src, dst = fds.file("src", data, os.O_RDONLY), fds.file("dst")
    short = Faulty(monkeypatch, SYSCALL[method], limit=1000)
    if method is Method.RW:
        Faulty(monkeypatch, "pwrite", limit=333)  # short writes too
    moved: list[int] = []
    assert COPIERS[method](src, dst, len(data), 0, 0, moved.append) == len(data)
    assert (tmp_path / "dst").read_bytes() == data
    assert short.calls >= 11
    assert max(moved) <= 1000


@pytest.mark.parametrize("method", [Method.COPY_FILE_RANGE, Method.SENDFILE])
def test_calls_are_cut_to_progress_size_only_when_someone_follows_the_progress(fds, tmp_path, monkeypatch, method):
    """One call may copy a GiB; on a slow disk that is seconds without a progress report."""
    monkeypatch.setattr(loops, "PROGRESS_CALL", 4096)
    data = random_bytes(10 * 4096 + 5, seed=7)
    src = fds.file("src", data, os.O_RDONLY)
    calls = Faulty(monkeypatch, SYSCALL[method])
    moved: list[int] = []
    assert COPIERS[method](src, fds.file("followed"), len(data), 0, 0, moved.append) == len(data)
    assert calls.calls == 11 and max(moved) == 4096
    assert COPIERS[method](src, fds.file("unfollowed"), len(data), 0, 0) == len(data)
    assert calls.calls == 12
    assert (tmp_path / "followed").read_bytes() == (tmp_path / "unfollowed").read_bytes() == data


@pytest.mark.parametrize("method,syscall", [(Method.SPLICE, "splice"), (Method.RW, "readv")])
def test_short_counts_from_a_pipe_are_continued(fds, tmp_path, monkeypatch, method, syscall):
    data = random_bytes(50_001, seed=4)
    src, _ = make_source(fds, "pipe", data)
    dst = fds.file("dst")
    Faulty(monkeypatch, syscall, limit=999)
    assert COPIERS[method](src, dst, len(data), None, 0) == len(data)
    assert (tmp_path / "dst").read_bytes() == data


# --- EAGAIN: poll, never spin ---------------------------------------------------------------


@pytest.mark.parametrize("method,syscall", [(Method.SPLICE, "splice"), (Method.RW, "readv")])
def test_empty_nonblocking_source_pipe_is_polled(fds, tmp_path, monkeypatch, method, syscall):
    data = random_bytes(200_000, seed=5)
    read_end, write_end = fds.pipe()
    os.set_blocking(read_end, False)
    Feed(write_end, data, delay=0.3, close=fds.close).start()
    dst = fds.file("dst")
    calls, polls = Faulty(monkeypatch, syscall), PollSpy(monkeypatch)
    assert COPIERS[method](read_end, dst, len(data), None, 0) == len(data)
    assert (tmp_path / "dst").read_bytes() == data
    assert calls.kernel_eagain >= 1  # the source really was empty at first
    assert polls.count >= calls.kernel_eagain
    # Each EAGAIN is followed by a wait that returns only when the pipe is readable.
    assert calls.kernel_eagain <= calls.calls - calls.kernel_eagain + 1


@pytest.mark.parametrize(
    "method,syscall", [(Method.SENDFILE, "sendfile"), (Method.SPLICE, "splice"), (Method.RW, "write")]
)
def test_full_nonblocking_destination_pipe_is_polled(fds, monkeypatch, method, syscall):
    data = random_bytes(256 * 1024, seed=6)
    src = fds.file("src", data, os.O_RDONLY)
    read_end, write_end = fds.pipe()
    os.set_blocking(write_end, False)
    drain = Drain(read_end, delay=0.3)
    drain.start()
    calls = Faulty(monkeypatch, syscall, only_fd=write_end if method is Method.RW else None)
    polls = PollSpy(monkeypatch)
    assert COPIERS[method](src, write_end, len(data), 0, None) == len(data)
    fds.close(write_end)
    assert drain.data() == data
    assert calls.kernel_eagain >= 1  # the pipe really filled up while nobody read
    assert polls.count >= calls.kernel_eagain
    assert calls.kernel_eagain <= calls.calls - calls.kernel_eagain + 1


def test_injected_eagain_is_polled_then_retried(fds, tmp_path, monkeypatch):
    data = random_bytes(5000, seed=8)
    src, dst = fds.file("src", data, os.O_RDONLY), fds.file("dst")
    calls, polls = Faulty(monkeypatch, "copy_file_range", fail={0: errno.EAGAIN}), PollSpy(monkeypatch)
    assert copy_file_range(src, dst, len(data), 0, 0) == len(data)
    assert (tmp_path / "dst").read_bytes() == data
    assert calls.calls == 2
    assert polls.count == 2  # readable source, then writable destination


# --- unsupported vs real errors -------------------------------------------------------------


@pytest.mark.parametrize("err", sorted(UNSUPPORTED_ERRNOS), ids=errno.errorcode.get)
@pytest.mark.parametrize("method", METHODS)
def test_unsupported_errno_on_the_first_call_gives_up_untouched(fds, tmp_path, monkeypatch, method, err):
    src, dst = fds.file("src", random_bytes(10_000), os.O_RDONLY), fds.file("dst")
    Faulty(monkeypatch, SYSCALL[method], fail={0: err})
    with pytest.raises(Unsupported) as raised:
        COPIERS[method](src, dst, 10_000, 0, 0)
    assert (raised.value.method, raised.value.errno) == (method, err)
    assert os.fstat(dst).st_size == 0


@pytest.mark.parametrize("method,syscall,call", [(Method.SPLICE, "splice", 1), (Method.RW, "pwrite", 0)])
def test_unsupported_on_the_first_write_gives_up_when_the_source_was_read_positionally(
    fds, monkeypatch, method, syscall, call
):
    src, dst = fds.file("src", random_bytes(10_000), os.O_RDONLY), fds.file("dst")
    Faulty(monkeypatch, syscall, fail={call: errno.EINVAL})
    with pytest.raises(Unsupported):
        COPIERS[method](src, dst, 10_000, 0, 0)
    assert os.fstat(dst).st_size == 0


@pytest.mark.parametrize("method,syscall,call", [(Method.SPLICE, "splice", 1), (Method.RW, "write", 0)])
def test_bytes_taken_from_a_stream_are_never_dropped_as_unsupported(fds, monkeypatch, method, syscall, call):
    src, _ = make_source(fds, "socket", random_bytes(10_000))  # neither side a pipe: splice relays
    dst = fds.file("dst")
    Faulty(monkeypatch, syscall, fail={call: errno.EINVAL}, only_fd=dst if method is Method.RW else None)
    with pytest.raises(OSError, match="10000 bytes read from the source were not written") as raised:
        COPIERS[method](src, dst, 10_000, None, None)
    assert not isinstance(raised.value, Unsupported)
    assert raised.value.errno == errno.EINVAL
    read_write(src, fds.file("rest"), None, None, 0)  # let the feeder finish


@pytest.mark.parametrize("err", sorted(UNSUPPORTED_ERRNOS | {errno.EIO}), ids=errno.errorcode.get)
@pytest.mark.parametrize("method", METHODS)
def test_any_error_after_bytes_were_written_is_real(fds, tmp_path, monkeypatch, method, err):
    data = random_bytes(20_000)
    src, dst = fds.file("src", data, os.O_RDONLY), fds.file("dst")
    second_read = 2 if method is Method.SPLICE else 1  # splice alternates fill and drain calls
    Faulty(monkeypatch, SYSCALL[method], limit=4096, fail={second_read: err})
    with pytest.raises(OSError) as raised:
        COPIERS[method](src, dst, len(data), 0, 0)
    assert not isinstance(raised.value, Unsupported)
    assert raised.value.errno == err
    assert (tmp_path / "dst").read_bytes() == data[:4096]


FATAL_ERRNOS = [errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.ENOMEM]


@pytest.mark.parametrize("err", FATAL_ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("method", METHODS)
def test_fatal_errnos_are_never_unsupported(fds, monkeypatch, method, err):
    src, dst = fds.file("src", random_bytes(10_000), os.O_RDONLY), fds.file("dst")
    Faulty(monkeypatch, SYSCALL[method], fail={0: err})
    with pytest.raises(OSError) as raised:
        COPIERS[method](src, dst, 10_000, 0, 0)
    assert not isinstance(raised.value, Unsupported)
    assert raised.value.errno == err


def test_splice_through_its_pipe_reports_stranded_bytes(fds, monkeypatch):
    src, dst = fds.file("src", random_bytes(20_000), os.O_RDONLY), fds.file("dst")
    Faulty(monkeypatch, "splice", limit=4096, fail={3: errno.ENOSPC})  # fill, drain, fill, drain
    with pytest.raises(OSError, match="4096 bytes read from the source were not written") as raised:
        splice(src, dst, 20_000, 0, 0)
    assert raised.value.errno == errno.ENOSPC
    assert os.fstat(dst).st_size == 4096


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "failing"])
def test_splice_closes_its_internal_pipe(fds, monkeypatch, fail):
    src, dst = fds.file("src", random_bytes(20_000), os.O_RDONLY), fds.file("dst")
    before = open_fd_count()
    if fail:
        Faulty(monkeypatch, "splice", fail={1: errno.EIO})
        with pytest.raises(OSError):
            splice(src, dst, 20_000, 0, 0)
    else:
        splice(src, dst, 20_000, 0, 0)
    assert open_fd_count() == before


# --- the source changes under us ------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_source_truncated_mid_copy_is_a_changed_source(fds, tmp_path, monkeypatch, method):
    src = fds.file("src", random_bytes(256 * 1024), os.O_RDONLY)
    dst = fds.file("dst")
    Faulty(monkeypatch, SYSCALL[method], limit=64 * 1024)

    def shrink(_moved: int) -> None:
        os.truncate(tmp_path / "src", 100 * 1024)

    with pytest.raises(SourceChanged, match=f"offset {100 * 1024} of {256 * 1024}"):
        COPIERS[method](src, dst, 256 * 1024, 0, 0, shrink)


def test_copy_file_range_copying_nothing_at_first_is_unsupported(fds, monkeypatch):
    src, dst = fds.file("src", random_bytes(5000), os.O_RDONLY), fds.file("dst")
    Faulty(monkeypatch, "copy_file_range", returns={0: 0})
    with pytest.raises(Unsupported) as raised:
        copy_file_range(src, dst, 5000, 0, 0)
    assert raised.value.method is Method.COPY_FILE_RANGE


def test_copy_file_range_copying_nothing_later_is_a_changed_source(fds, monkeypatch):
    src, dst = fds.file("src", random_bytes(5000), os.O_RDONLY), fds.file("dst")
    Faulty(monkeypatch, "copy_file_range", limit=1000, returns={2: 0})
    with pytest.raises(SourceChanged, match="offset 2000 of 5000"):
        copy_file_range(src, dst, 5000, 0, 0)


# --- pseudo files and append mode -----------------------------------------------------------


def test_procfs_file_of_size_zero_is_copied_in_full_by_read_write(fds, tmp_path):
    src = os.open("/proc/self/status", os.O_RDONLY)
    try:
        assert os.fstat(src).st_size == 0
        dst = fds.file("dst")
        copied = read_write(src, dst, None, None, None)
    finally:
        os.close(src)
    text = (tmp_path / "dst").read_text()
    assert copied == len(text.encode()) > 0
    keys = [line.split(":")[0] for line in text.splitlines()]
    with open("/proc/self/status") as fresh:
        assert keys == [line.split(":")[0] for line in fresh.read().splitlines()]


def test_procfs_file_is_unsupported_by_copy_file_range(fds, tmp_path):
    src = os.open("/proc/self/cmdline", os.O_RDONLY)
    try:
        dst = fds.file("dst")
        with pytest.raises(Unsupported):
            copy_file_range(src, dst, None, 0, 0)
        assert os.fstat(dst).st_size == 0
        assert read_write(src, dst, None, 0, 0) > 0
    finally:
        os.close(src)
    with open("/proc/self/cmdline", "rb") as fresh:
        assert (tmp_path / "dst").read_bytes() == fresh.read()


@pytest.mark.parametrize("src_kind", ["file", "pipe"])
@pytest.mark.parametrize("method,err", [(Method.COPY_FILE_RANGE, errno.EBADF), (Method.SPLICE, errno.EINVAL)])
def test_append_mode_destination(fds, tmp_path, method, err, src_kind):
    data = random_bytes(100_000, seed=9)
    src, src_off = make_source(fds, src_kind, data)
    dst = fds.file("dst", b"head", os.O_WRONLY | os.O_APPEND)
    if (method, src_kind) == (Method.COPY_FILE_RANGE, "pipe"):
        err = errno.EINVAL  # not a regular file: refused before the append flag is looked at
    with pytest.raises(Unsupported) as raised:
        COPIERS[method](src, dst, len(data), src_off, None)
    assert raised.value.errno == err
    assert (tmp_path / "dst").read_bytes() == b"head"
    assert read_write(src, dst, len(data), src_off, None) == len(data)
    assert (tmp_path / "dst").read_bytes() == b"head" + data


def test_grow_pipe_grows_a_small_pipe_and_never_shrinks_a_big_one(monkeypatch):
    read_end, write_end = os.pipe()
    try:
        assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) < loops.PIPE_SIZE
        assert loops.grow_pipe(write_end) == loops.PIPE_SIZE == fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ)
        monkeypatch.setattr(loops, "PIPE_SIZE", loops.PIPE_SIZE // 8)  # now it is bigger than asked for
        assert loops.grow_pipe(write_end) == 8 * loops.PIPE_SIZE == fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(read_end)
        os.close(write_end)
