"""write_stream | receive over real fds give an identical tree; each output kind takes its kernel path."""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import pytest
from conftest import give_default_acl, need_root, need_tool
from stream_support import (END, MiB, build_tree, hashed, member, pipe_transfer, receive_bytes, snapshot, temp_leftovers, walk_items,
                            zcp_global)

from zcp import hashing
from zcp.config import Method
from zcp.errors import SourceChanged, ZcpError
from zcp.exec.atomic import UnnamedUnsupported
from zcp.model import Entry
from zcp.stream import members, pax, reader, receive, write_stream, writer
from zcp.stream.reader import TRAILING_MIN_SIZE


def test_pipe_round_trip_gives_an_identical_tree(tmp_path):
    src = build_tree(tmp_path / "src")
    dest = tmp_path / "dest"
    sent, got = pipe_transfer(walk_items(src), f"{dest}/", allow_devices=True)

    assert snapshot(dest) == snapshot(src)
    assert temp_leftovers(dest) == []
    regular = [e for _, e in walk_items(src) if e.kind == "file"]
    distinct = {(e.dev, e.ino) for e in regular}
    assert sent.files == got.files == got.verified == len(distinct)
    assert sent.hardlinks == len(regular) - len(distinct)
    small, big = _body_bytes(src)
    assert sent.by_method == {Method.RW: small, Method.SPLICE: big}  # small bodies travel with their headers
    assert got.bytes == sent.bytes and sum(got.by_method.values()) == got.bytes
    # Of a big body only what one read of the stream caught passes through user space.
    assert got.by_method[Method.SPLICE] >= (src / "big").stat().st_size - members.READ_SIZE
    assert got.zcp and got.format == "tar"


def _body_bytes(root) -> tuple[int, int]:
    """Body bytes of the distinct regular files below ``root``: (small ones, big ones)."""
    sizes = {(e.dev, e.ino): e.size for _, e in walk_items(root) if e.kind == "file"}.values()
    return sum(n for n in sizes if n <= writer.SMALL_BODY), sum(n for n in sizes if n > writer.SMALL_BODY)


def test_rsync_agrees_with_the_copy(tmp_path):
    rsync = need_tool("rsync")
    src = build_tree(tmp_path / "src")
    dest = tmp_path / "dest"
    pipe_transfer(walk_items(src), f"{dest}/", allow_devices=True)
    # -c compares content, -H hard links; the root folder itself was not in the stream.
    diff = subprocess.run([rsync, "-anciH", "--no-t", f"{src}/", f"{dest}/"], capture_output=True, text=True, check=True)
    assert diff.stdout == ""
    times = subprocess.run([rsync, "-anciH", f"{src}/", f"{dest}/"], capture_output=True, text=True, check=True)
    assert [line for line in times.stdout.splitlines() if not line.endswith(" ./")] == []


# Each kind of output with the method its bodies must take.
@pytest.mark.parametrize(
    "output, method", [("socket", Method.SENDFILE), ("file", Method.COPY_FILE_RANGE), ("append", Method.RW)]
)
def test_each_output_kind_uses_its_kernel_path(tmp_path, output, method):
    src = build_tree(tmp_path / "src", fifo=False)
    archive = tmp_path / "archive.tar"
    if output == "socket":
        left, right = socket.socketpair()
        with left, right, open(archive, "wb") as sink:
            thread = threading.Thread(target=lambda: _drain_socket(right, sink))
            thread.start()
            stats = write_stream(left.fileno(), walk_items(src))
            left.shutdown(socket.SHUT_WR)
            thread.join(timeout=60)
    else:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if output == "append" else 0)
        fd = os.open(archive, flags, 0o644)
        try:
            stats = write_stream(fd, walk_items(src))
        finally:
            os.close(fd)
    small, big = _body_bytes(src)
    assert stats.by_method == ({Method.RW: small + big} if method is Method.RW else {Method.RW: small, method: big})

    dest = tmp_path / "dest"
    fd = os.open(archive, os.O_RDONLY)
    try:
        got = receive(fd, f"{dest}/")
    finally:
        os.close(fd)
    assert snapshot(dest) == snapshot(src)
    # A tar file on stdin: small bodies come with the headers read, big ones go file to file.
    assert set(got.by_method) == {Method.RW, Method.COPY_FILE_RANGE} and sum(got.by_method.values()) == got.bytes
    assert got.by_method[Method.COPY_FILE_RANGE] >= (src / "big").stat().st_size - members.READ_SIZE


def _drain_socket(sock: socket.socket, sink) -> None:
    while chunk := sock.recv(1 << 16):
        sink.write(chunk)


def test_receive_into_existing_folder_replaces_files_and_keeps_others(tmp_path):
    src = build_tree(tmp_path / "src", fifo=False)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "size-1").write_bytes(b"old content, longer than the new one")
    (dest / "unrelated").write_bytes(b"keep me")
    pipe_transfer(walk_items(src), str(dest))  # an existing folder needs no trailing '/'
    assert (dest / "size-1").read_bytes() == (src / "size-1").read_bytes()
    assert (dest / "unrelated").read_bytes() == b"keep me"


@pytest.mark.parametrize("seconds", [9_300_000_000, -9_300_000_000, 2**34 - 1], ids=["2264", "1675", "2514"])
def test_times_far_from_now_cross_a_stream_as_a_local_copy_keeps_them(tmp_path, seconds):
    """Past 2262 a time no longer fits 64-bit nanoseconds, but filesystems keep it (or clamp it):
    the receiver sets what the sender sent, like the local copy, instead of refusing the stream."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    os.utime(src / "f", ns=(seconds * 10**9 + 5, seconds * 10**9 + 7))
    expected = os.stat(src / "f").st_mtime_ns  # what this filesystem made of it
    sent, got = pipe_transfer(walk_items(src), f"{tmp_path}/dest/")
    assert got.files == 1
    assert os.stat(tmp_path / "dest" / "f").st_mtime_ns == expected


def test_setuid_bits_are_stripped_unless_asked(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tool").write_bytes(b"x")
    (src / "tool").chmod(0o6755)
    (src / "shared").mkdir()
    (src / "shared").chmod(0o1777)
    umask = os.umask(0o022)
    try:
        pipe_transfer(walk_items(src), f"{tmp_path}/plain/")
        pipe_transfer(walk_items(src), f"{tmp_path}/kept/", keep_perms=True)
    finally:
        os.umask(umask)
    assert (tmp_path / "plain" / "tool").stat().st_mode & 0o7777 == 0o755
    assert (tmp_path / "plain" / "shared").stat().st_mode & 0o7777 == 0o755  # less the umask, as cp
    assert (tmp_path / "kept" / "tool").stat().st_mode & 0o7777 == 0o6755
    assert (tmp_path / "kept" / "shared").stat().st_mode & 0o7777 == 0o1777


def test_read_only_folder_is_filled_before_its_mode_is_applied(tmp_path):
    src = tmp_path / "src"
    (src / "ro").mkdir(parents=True)
    (src / "ro" / "inside").write_bytes(b"x")
    (src / "ro").chmod(0o555)
    pipe_transfer(walk_items(src), f"{tmp_path}/dest/")
    assert (tmp_path / "dest" / "ro" / "inside").read_bytes() == b"x"
    assert (tmp_path / "dest" / "ro").stat().st_mode & 0o777 == 0o555


def test_owner_is_kept_when_asked(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    os.chown(src / "f", 1234, 5678)
    pipe_transfer(walk_items(src), f"{tmp_path}/kept/", preserve_owner=True)
    pipe_transfer(walk_items(src), f"{tmp_path}/mine/", preserve_owner=False)
    kept = (tmp_path / "kept" / "f").stat()
    assert (kept.st_uid, kept.st_gid) == (1234, 5678)
    mine = (tmp_path / "mine" / "f").stat()
    assert (mine.st_uid, mine.st_gid) == (os.geteuid(), os.getegid())


def test_files_get_their_exact_mode_and_owner_whatever_the_folder_does_to_new_files(tmpfs_dir):
    """Files are created with their mode, so usually need no chown or chmod: with -p they still
    must end exact where the umask cuts bits, a setgid folder gives its group, a default ACL sets
    the mode."""
    need_root()
    src, dest = tmpfs_dir / "src", tmpfs_dir / "dest"
    wanted: dict[str, tuple[int, int, int]] = {}
    for folder in ("plain", "setgid", "acl"):
        (src / folder).mkdir(parents=True)
        for mode in (0o666, 0o644, 0o640, 0o444, 0o700):
            for uid, gid in ((0, 0), (1234, 5678)):
                path = src / folder / f"{mode:o}-{uid}"
                path.write_bytes(b"x")
                path.chmod(mode)
                os.chown(path, uid, gid)
                wanted[f"{folder}/{path.name}"] = (mode, uid, gid)
    for folder in ("plain", "setgid", "acl"):
        (dest / folder).mkdir(parents=True)
    os.chown(dest / "setgid", 0, 4321)
    (dest / "setgid").chmod(0o2755)
    give_default_acl(dest / "acl", other=0)
    old_umask = os.umask(0o002)  # cuts less than the ACL does: only the ACL changes 644
    try:
        pipe_transfer(walk_items(src), f"{dest}/", preserve_owner=True, keep_perms=True)
    finally:
        os.umask(old_umask)
    got = {}
    for rel in wanted:
        st = os.stat(dest / rel)
        got[rel] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    assert got == wanted


@pytest.mark.parametrize("shape", ["tree", "one file", "raw"])
def test_a_receiver_killed_inside_a_body_leaves_nothing(tmp_path, shape):
    """The body lands in an inode with no name until it is complete: even SIGKILL, which no cleanup
    can follow, leaves neither a torn file nor a temp file behind; into a folder, as one file
    named by DEST, and as raw bytes."""
    body = os.urandom(8 * MiB)
    if shape == "tree":
        dest, writing_in, left = f"{tmp_path}/dest/", tmp_path / "dest" / "sub", ["dest", "dest/sub"]
        stream = zcp_global() + member(b"sub/big", body=body, records=[("mtime", b"1700000000.5"), *hashed(body)])
    else:
        dest, writing_in, left = f"{tmp_path}/copy", tmp_path, []
        stream = zcp_global() + member(b"big", body=body, records=hashed(body)) if shape == "one file" else body
    receiver = subprocess.Popen([sys.executable, "-m", "zcp", "-", dest], stdin=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
    try:
        receiver.stdin.write(stream[: len(stream) // 2])
        receiver.stdin.flush()
        deadline = time.monotonic() + 30
        while not _fd_targets(receiver.pid, writing_in):
            assert time.monotonic() < deadline, "the receiver never opened the file it writes"
            time.sleep(0.01)
        receiver.kill()
    finally:
        receiver.wait()
        receiver.stdin.close()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == left


def _fd_targets(pid: int, beneath: Path) -> list[str]:
    """Where the open fds of ``pid`` point, for those beneath ``beneath``."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(f"{beneath}/"):
                targets.append(target)
    return targets


@pytest.mark.parametrize("refused", ["open_unnamed", "link_unnamed"])
def test_without_unnamed_inodes_files_land_through_named_temps(tmp_path, monkeypatch, refused):
    """A filesystem without O_TMPFILE, or a kernel that will not link one (no /proc): named temp files."""
    def refuse(*args, **kwargs):
        raise UnnamedUnsupported(errno.EOPNOTSUPP)

    monkeypatch.setattr(reader, refused, refuse)
    src = build_tree(tmp_path / "src", fifo=False)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "size-1").write_bytes(b"replaced")
    pipe_transfer(walk_items(src), f"{dest}/")
    assert snapshot(dest) == snapshot(src)
    assert temp_leftovers(dest) == []


def test_a_file_that_grew_while_sent_is_source_changed(tmp_path):
    path = tmp_path / "growing"
    size = writer.SMALL_BODY + 1000  # a big body: its header goes out before the body is read
    path.write_bytes(b"a" * size)
    entry = Entry.from_stat(str(path), os.lstat(path))

    def items():
        yield "growing", entry

    class Appending:
        """Appends to the file after its hash is taken, as its header goes out."""

        def __init__(self):
            self.fd = os.open(tmp_path / "sink", os.O_WRONLY | os.O_CREAT, 0o644)
            self.real_write = os.write

        def write(self, fd, data):
            if fd == self.fd and b"ZCP.xxh3_128" in bytes(data) and path.stat().st_size == size:
                with open(path, "ab") as f:
                    f.write(b"more")
            return self.real_write(fd, data)

    appending = Appending()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "write", appending.write)
        with pytest.raises(SourceChanged, match="growing"):
            write_stream(appending.fd, items())
    os.close(appending.fd)


def test_a_file_that_shrank_while_sent_is_source_changed(tmp_path):
    path = tmp_path / "shrinking"
    path.write_bytes(b"a" * 100_000)
    entry = Entry.from_stat(str(path), os.lstat(path))
    out = os.open(tmp_path / "sink", os.O_WRONLY | os.O_CREAT, 0o644)
    real_write = os.write

    def truncating_write(fd, data):
        if fd == out and b"ZCP.xxh3_128" in bytes(data):
            os.truncate(path, 10)
        return real_write(fd, data)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "write", truncating_write)
            with pytest.raises(SourceChanged, match="shrinking"):
                write_stream(out, [("shrinking", entry)])
    finally:
        os.close(out)


def test_files_gone_or_unreadable_before_their_header_are_left_out(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "gone", "z"):
        (src / name).write_bytes(name.encode())
    os.symlink("a", src / "link-gone")
    items = walk_items(src)
    (src / "gone").unlink()
    (src / "link-gone").unlink()
    (src / "z").unlink()
    os.mkfifo(src / "z")  # swapped for a FIFO: the open must not block, the file is refused
    sent, got = pipe_transfer(items, f"{tmp_path}/dest/")
    assert sorted(os.listdir(tmp_path / "dest")) == ["a"]
    assert sent.vanished == [str(src / "gone"), str(src / "link-gone")]
    assert sent.failed == [(str(src / "z"), "no longer a regular file")]
    assert sent.entries == 1 and got.entries == 1


def test_a_small_file_changed_after_the_walk_is_sent_as_it_is_now(tmp_path):
    """The walk's lstat no longer matches: the file is sent from a fresh fstat, not left out."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"old")
    items = walk_items(src)
    (src / "f").write_bytes(b"new and longer")
    os.utime(src / "f", ns=(1_000_000_000_123, 2_000_000_000_456))
    sent, got = pipe_transfer(items, f"{tmp_path}/dest/")
    assert (sent.files, sent.failed, got.verified) == (1, [], 1)
    assert (tmp_path / "dest" / "f").read_bytes() == b"new and longer"
    assert (tmp_path / "dest" / "f").stat().st_mtime_ns == 2_000_000_000_456


def test_a_small_file_changed_while_read_is_read_again(tmp_path, monkeypatch):
    """A write between the body's read and the fstat after it: the bracket fails, the general path
    sends the file as it is then, with a digest that matches what is sent."""
    path = tmp_path / "f"
    path.write_bytes(b"first")
    entry = Entry.from_stat(str(path), os.lstat(path))
    real_pread = os.pread
    preads: list[int] = []

    def pread_then_rewrite(fd, length, offset):
        data = real_pread(fd, length, offset)
        if not preads:
            path.write_bytes(b"second!")
        preads.append(length)
        return data

    monkeypatch.setattr(os, "pread", pread_then_rewrite)
    sent, got = pipe_transfer([("f", entry)], f"{tmp_path}/dest/")
    assert len(preads) == 2  # the first read was dropped
    assert (sent.files, sent.failed, got.verified) == (1, [], 1)
    assert (tmp_path / "dest" / "f").read_bytes() == b"second!"


def test_a_big_body_is_verified_while_it_lands_and_gets_its_metadata(tmp_path, monkeypatch):
    """Past the trailing threshold the receiver hashes the body by reading it back while it lands
    (the sender hashed its file first); owner, mode and times land through the fd it wrote."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(TRAILING_MIN_SIZE + 5))
    (src / "big").chmod(0o640)
    os.chown(src / "big", 1234, 5678)
    os.utime(src / "big", ns=(1_000_000_000_123, 2_000_000_000_456))
    trailing: list[int] = []
    real_digest = hashing.TrailingDigest.digest
    monkeypatch.setattr(hashing.TrailingDigest, "digest", lambda self, size: (trailing.append(size), real_digest(self, size))[1])

    sent, got = pipe_transfer(walk_items(src), f"{tmp_path}/dest/", preserve_owner=True)
    assert got.verified == 1
    assert trailing == [TRAILING_MIN_SIZE + 5]  # the receiver's
    st = (tmp_path / "dest" / "big").stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_mtime_ns) == (0o640, 1234, 5678, 2_000_000_000_456)
    assert (tmp_path / "dest" / "big").read_bytes() == (src / "big").read_bytes()


@pytest.mark.parametrize("entry, kind", [(member(b"x", body=b"1"), "file"),
                                         (member(b"x", pax.SYMLINK, linkname=b"t"), "symlink")], ids=["file", "symlink"])
def test_an_entry_meeting_a_folder_is_named_in_the_error_not_its_temp(tmp_path, entry, kind):
    (tmp_path / "dest" / "x" / "y").mkdir(parents=True)
    with pytest.raises(ZcpError) as caught:
        receive_bytes(entry + END, f"{tmp_path}/dest/")
    assert str(caught.value) == f"a folder is in the way of {kind} 'x'"
    assert caught.value.exit_code == 11
    assert temp_leftovers(tmp_path) == []
    assert (tmp_path / "dest" / "x" / "y").is_dir()


def test_verify_hashes_every_received_file_as_read_back_from_storage(tmp_path, monkeypatch):
    """--verify on the receiver: each body's hash is checked after fdatasync and a drop from the
    page cache, in memory, trailing or not, instead of from what was just written."""
    src = tmp_path / "src"
    src.mkdir()
    sizes = {"small": 10, "mid": 100_000, "big": TRAILING_MIN_SIZE + 1}
    for name, size in sizes.items():
        (src / name).write_bytes(os.urandom(size))
    read_back: list[int] = []
    real = reader.read_back_digest
    monkeypatch.setattr(reader, "read_back_digest", lambda fd, size: (read_back.append(size), real(fd, size))[1])
    sent, got = pipe_transfer(walk_items(src), f"{tmp_path}/dest/", verify=True)
    assert got.verified == 3
    assert sorted(read_back) == sorted(sizes.values())
    for name in sizes:
        assert (tmp_path / "dest" / name).read_bytes() == (src / name).read_bytes()


def test_without_perms_the_umask_and_existing_modes_rule_as_in_a_local_copy(tmp_path):
    """`zcp - dst` without -p does what `zcp src/ dst` does: new entries get the stream's bits less
    the umask, a replaced file and every folder that was there keep their modes, DEST included, and
    a new folder keeps the setgid it inherits."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "old-folder").mkdir(parents=True)
    (src / "new-folder").mkdir()
    for name in ("new", "replaced"):
        (src / name).write_bytes(b"x")
        (src / name).chmod(0o666)
    for folder in (src, src / "old-folder", src / "new-folder"):
        folder.chmod(0o777)
    (dest / "old-folder").mkdir(parents=True)
    (dest / "replaced").write_bytes(b"old")
    (dest / "replaced").chmod(0o600)
    dest.chmod(0o2750)
    (dest / "old-folder").chmod(0o700)
    umask = os.umask(0o077)
    try:
        pipe_transfer(walk_items(src), f"{dest}/")
    finally:
        os.umask(umask)
    modes = {p: stat.S_IMODE(os.stat(dest / p).st_mode) for p in ("", "old-folder", "new-folder", "new", "replaced")}
    assert modes == {"": 0o2750, "old-folder": 0o700, "new-folder": 0o2700, "new": 0o600, "replaced": 0o600}
    assert (dest / "replaced").read_bytes() == b"x"


def test_a_failed_receive_still_finishes_the_folders_it_made(tmp_path):
    """A stream refused half way leaves what it made with its modes and times, not 0700."""
    stream = (member(b"a/", pax.DIRECTORY, mode=0o755, records=[("mtime", b"1000000000.5")])
              + member(b"a/x", body=b"x") + member(b"c", body=b"c"))
    (tmp_path / "dest" / "c").mkdir(parents=True)  # a folder in the way of file c: the stream stops there
    with pytest.raises(ZcpError, match="a folder is in the way"):
        receive_bytes(stream + END, f"{tmp_path}/dest/", keep_perms=True)
    st = os.stat(tmp_path / "dest" / "a")
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o755, 1_000_000_000_500_000_000)


def test_a_refusal_in_a_read_only_folder_names_the_entry(tmp_path, monkeypatch):
    """Not '.': the folder the kernel refused to write in is where the entry goes (what a user
    other than root meets in a 0555 folder)."""
    def refused(folder, mode, dir_fd=None):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), folder)

    monkeypatch.setattr(reader, "open_unnamed", refused)
    monkeypatch.setattr(reader, "_can_name_unnamed", lambda fd: True)
    with pytest.raises(ZcpError) as caught:
        receive_bytes(member(b"ro/x", body=b"x") + END, f"{tmp_path}/dest/")
    assert str(caught.value) == f"ro/x: {os.strerror(errno.EACCES)}"


def test_a_folder_named_twice_in_a_stream_is_still_one_the_stream_made(tmp_path):
    """Its second entry finds it made by the first: without -p it still gets the stream's mode
    less the umask, not the 'keep what was there' of a folder DEST held before."""
    entry = member(b"a/", pax.DIRECTORY, mode=0o750)
    umask = os.umask(0o022)
    try:
        receive_bytes(entry + member(b"a/x", body=b"x") + entry + END, f"{tmp_path}/dest/")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "dest" / "a").st_mode) == 0o750
