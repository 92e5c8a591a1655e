"""Helpers for the stream tests: sample trees, tree snapshots, pipes with a thread at each end and
hand-made (also malicious) tar streams.

Test modules import these by name (a conftest.py here would shadow tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import xxhash

from zcp.errors import BrokenPipe
from zcp.model import Entry
from zcp.stream import ReceiveStats, StreamStats, receive, write_stream
from zcp.stream import pax

MiB = 1 << 20
NON_UTF8 = os.fsdecode(b"caf\xe9-latin1")  # a name that is not UTF-8 (surrogateescape str)


def build_tree(root: Path, *, fifo: bool = True) -> Path:
    """A small tree with every kind of entry and the awkward names and sizes."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "empty").write_bytes(b"")
    for size in (1, 511, 512, 513, 100_000):
        (root / f"size-{size}").write_bytes(os.urandom(size))
    (root / "big").write_bytes(os.urandom(MiB + 3))
    (root / "exec").write_bytes(b"#!/bin/sh\n")
    (root / "exec").chmod(0o755)
    (root / "private").write_bytes(b"secret")
    (root / "private").chmod(0o600)
    deep = root / "deep" / ("d" * 120) / ("e" * 150)
    deep.mkdir(parents=True)
    (deep / ("f" * 200)).write_bytes(b"long path")
    (root / "empty-dir" / "nested-empty").mkdir(parents=True)
    (root / "ünïcødé ✓").write_bytes(b"unicode")
    Path(os.fsencode(root / NON_UTF8).decode("utf-8", "surrogateescape")).write_bytes(b"latin1")
    os.symlink("size-1", root / "link-rel")
    os.symlink("/nonexistent/target", root / "link-abs")
    os.symlink("l" * 150, root / "link-long")
    os.link(root / "size-511", root / "deep" / "hard-511")
    os.link(root / "size-511", root / "hard-511-again")
    if fifo:
        os.mkfifo(root / "fifo")
    for i, path in enumerate(sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True)):
        os.utime(path, ns=(1_600_000_000_123_456_789 + i, 1_500_000_000_987_654_321 + i * 1_000_001), follow_symlinks=False)
    return root


def walk_items(root: Path, rel: str = "") -> list[tuple[str, Entry]]:
    """(archive name, lstat snapshot) for everything below root, sorted, depth first: a folder's
    content right after it, the order GNU tar needs to restore folder times."""
    items: list[tuple[str, Entry]] = []
    for name in sorted(os.listdir(os.path.join(root, rel))):
        name = os.path.join(rel, name)
        path = os.path.join(root, name)
        entry = Entry.from_stat(path, os.lstat(path))
        items.append((name, entry))
        if entry.kind == "dir":
            items += walk_items(root, name)
    return items


def snapshot(root: Path, time_unit_ns: int = 1) -> dict[str, tuple]:
    """What an identical copy must share: type, permissions, size, mtime (in ``time_unit_ns``),
    content, link structure."""
    by_inode: dict[tuple[int, int], list[str]] = {}
    result: dict[str, tuple] = {}
    for rel, entry in walk_items(root):
        st = os.lstat(entry.path)
        if stat.S_ISREG(st.st_mode):
            content = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
            by_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(entry.path)
        else:
            content = ""
        result[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), content, st.st_mtime_ns // time_unit_ns)
    for names in by_inode.values():
        for name in names:
            result[name] += (tuple(names),)
    return result


def temp_leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*.zcp")]


def pipe_transfer(
    items: Iterable[tuple[str, Entry]], dest: str, **receive_options
) -> tuple[StreamStats | BaseException | None, ReceiveStats]:
    """write_stream | receive through a real pipe, one thread at each end."""
    read_end, write_end = os.pipe()
    sent: list[StreamStats | BaseException] = []

    def send() -> None:
        try:
            sent.append(write_stream(write_end, items))
        except BrokenPipe as exc:  # the receiver refused the stream and went away
            sent.append(exc)
        finally:
            os.close(write_end)

    thread = threading.Thread(target=send)
    thread.start()
    try:
        return_value = receive(read_end, dest, **receive_options)
    finally:
        os.close(read_end)
        thread.join(timeout=60)
    assert not thread.is_alive()
    return (sent[0] if sent else None), return_value


def feed(data: bytes, consume: Callable[[int], object]) -> object:
    """Run ``consume(read_fd)`` while a thread writes ``data`` into the pipe and closes it."""
    read_end, write_end = os.pipe()

    def send() -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view) :]
        except BrokenPipeError:
            pass  # the consumer stopped reading: that is what some tests expect
        finally:
            os.close(write_end)

    thread = threading.Thread(target=send)
    thread.start()
    try:
        return consume(read_end)
    finally:
        os.close(read_end)
        thread.join(timeout=60)


def receive_bytes(data: bytes, dest: str, **options) -> ReceiveStats:
    return feed(data, lambda fd: receive(fd, dest, **options))  # type: ignore[return-value]


def collect(produce: Callable[[int], object]) -> bytes:
    """Everything ``produce(write_fd)`` writes into a pipe (read by a thread)."""
    read_end, write_end = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)

    thread = threading.Thread(target=drain)
    thread.start()
    try:
        produce(write_end)
    finally:
        os.close(write_end)
        thread.join(timeout=60)
        os.close(read_end)
    return b"".join(chunks)


def stream_of(root: Path) -> bytes:
    return collect(lambda fd: write_stream(fd, walk_items(root)))


# ---------------------------------------------------------------- hand-made streams


def zcp_global() -> bytes:
    return pax.pax_header(b"././@PaxGlobalHeader", pax.PAX_GLOBAL, [(pax.KEY_VERSION, b"1")])


def hashed(body: bytes) -> list[tuple[str, bytes]]:
    """The hash record zcp sends with every file (a zcp stream refuses a file without one)."""
    return [(pax.KEY_HASH, xxhash.xxh3_128_hexdigest(body).encode())]


def member(
    name: bytes,
    typeflag: bytes = pax.REGULAR,
    body: bytes = b"",
    *,
    records: list[tuple[str, bytes]] | None = None,
    size: int | None = None,
    linkname: bytes = b"",
    mode: int = 0o644,
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    """One entry (with an 'x' header when ``records``), its body and padding."""
    out = pax.pax_header(b"././@PaxHeader", pax.PAX_EXTENDED, records) if records else b""
    out += pax.encode_header(
        name,
        typeflag,
        mode=mode,
        size=len(body) if size is None else size,
        mtime=1_500_000_000,
        linkname=linkname,
        devmajor=devmajor,
        devminor=devminor,
    )
    return out + body + bytes(pax.padding(len(body)))


END = pax.ZERO_BLOCK * 2
