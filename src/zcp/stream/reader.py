"""`zcp - DEST`: receive a tar stream into a folder, or raw bytes into a file (docs/stream-format.md).

Nothing is ever written outside DEST: folders are reached through ConfinedDir (the kernel refuses
symlinks and escapes). A file is written as an unnamed inode (else under a temp name in its folder)
and named only once complete, verified and stamped with its metadata; other leaves are made under a
temp name and renamed into place. A failure removes the temp name.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Literal

from zcp.config import Method
from zcp.errors import SourceChanged, StreamError, UsageError, ZcpError, describe
from zcp.hashing import TrailingDigest, hash_bytes, hash_fd, hex_digest, read_back_digest
from zcp.model import DIR, FILE, SYMLINK, Kind, Landing
from zcp.stream import pax
from zcp.confine import ConfinedDir, Parts, display, split_name
from zcp.exec.atomic import TEMP_SUFFIX, UnnamedUnsupported, link_unnamed, open_unnamed, temp_name
from zcp.exec.metadata import current_umask
from zcp.acl import AclError, acl_xattr
from zcp.xattrs import set_xattrs
from zcp.stream.members import SMALL_BODY, Member, TarReader
from zcp.stream.transfer import body_methods, move, read_exact, write_all
from zcp.syscalls import Progress

Format = Literal["auto", "tar", "raw", "zcp"]

_RW = Method.RW  # a module name: each Method.RW lookup goes through EnumType's slow hook on 3.11
_NEW_FILE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SUID_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_DEVICE_TYPES = {Kind.CHAR: stat.S_IFCHR, Kind.BLOCK: stat.S_IFBLK}
# From this size a body is hashed by a thread trailing the writes, on the other core: starting the
# thread costs about what hashing 0.5 MiB after the last write would.
TRAILING_MIN_SIZE = 2 << 20


@dataclass
class ReceiveStats:
    format: Literal["tar", "raw"] = "tar"
    zcp: bool = False  # the stream came from zcp (global header with ZCP.version)
    entries: int = 0
    files: int = 0
    bytes: int = 0  # body bytes written
    verified: int = 0  # files whose ZCP.xxh3_128 matched
    by_method: Counter[Method] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Options:
    allow_devices: bool
    keep_perms: bool
    preserve_owner: bool
    progress: Progress | None
    on_file: Callable[[str], None] | None
    verify: bool  # hash each file as read back from storage (fdatasync, dropped from the page cache)
    xattrs: bool  # set the extended attributes that files and folders carry
    on_warning: Callable[[str], None]
    umask: int
    owner: tuple[int, int]  # what a file we create belongs to


def receive(
    in_fd: int,
    dest: str,
    *,
    fmt: Format = "auto",
    allow_devices: bool = False,
    keep_perms: bool = False,
    preserve_owner: bool = os.geteuid() == 0,
    progress: Progress | None = None,
    on_file: Callable[[str], None] | None = None,
    verify: bool = False,
    xattrs: bool = False,
    on_warning: Callable[[str], None] = lambda message: None,
) -> ReceiveStats:
    """Read a stream from ``in_fd`` into ``dest`` following the tar-vs-raw rule.

    DEST is a folder when it exists as one or ends with '/' (then it is created): a tar stream is
    unpacked into it. Otherwise DEST names a file: a zcp stream holding one regular file becomes
    that file, any other zcp stream a new folder DEST; any other stream is written raw as that
    file, never unpacked; ``fmt="zcp"`` refuses that last case (from a zcp that failed before
    sending, an empty input must not become an empty file). ``progress`` counts body bytes,
    ``on_file`` sees each file's name as it begins. ``verify``: each file's hash is checked as read
    back from storage, not from memory. ``xattrs``: files and folders get the extended attributes
    they carry (user.* always; the other namespaces, which hold ACLs, labels and capabilities, only
    as root with ``keep_perms``).
    """
    options = _Options(allow_devices, keep_perms, preserve_owner, progress, on_file, verify, xattrs, on_warning,
                       current_umask(), (os.geteuid(), os.getegid()))
    to_folder = dest.endswith("/") or os.path.isdir(dest)
    try:
        if fmt == "raw":
            if to_folder:
                raise UsageError(f"{dest}: raw data needs a file name, not a folder")
            return _receive_raw(in_fd, dest, b"", options)
        if fmt == "tar":
            if not to_folder and os.path.lexists(dest):
                raise UsageError(f"{dest}: not a folder; --format=tar unpacks into a folder")
            return _unpack(TarReader(in_fd), dest, options)
        first = read_exact(in_fd, pax.BLOCK)
        if fmt == "zcp":  # from a zcp at the other end: anything else means it failed
            peeked, is_zcp = _sniff_zcp(in_fd, first)
            if not is_zcp:
                raise StreamError("not a zcp stream" if peeked else "no stream came (it is empty)")
            if to_folder:
                return _unpack(TarReader(in_fd, peeked), dest, options)
            return _receive_single(TarReader(in_fd, peeked), dest, options)
        if to_folder:
            if not (pax.is_tar_header(first) or first == pax.ZERO_BLOCK):  # zeros: an empty archive
                raise StreamError("not a tar stream; give a file name to receive raw bytes")
            return _unpack(TarReader(in_fd, first), dest, options)
        peeked, is_zcp = _sniff_zcp(in_fd, first)
        if is_zcp:
            return _receive_single(TarReader(in_fd, peeked), dest, options)
        return _receive_raw(in_fd, dest, peeked, options)
    except OSError as exc:
        raise _dest_error(exc) from exc


def _sniff_zcp(in_fd: int, first: bytes) -> tuple[bytes, bool]:
    """Whether the stream opens with zcp's global header; returns every byte read to find out."""
    if _SURE_PREFIX <= len(first) < pax.BLOCK and pax.ZCP_GLOBAL.startswith(first):
        raise StreamError("truncated stream: it ends inside its first header")
    if not pax.is_tar_header(first):
        return first, False
    try:
        header = pax.decode_header(first)
    except StreamError:  # looks like a header, but is none: raw bytes
        return first, False
    if header.typeflag != pax.PAX_GLOBAL or not 0 <= header.size <= pax.MAX_META_SIZE:
        return first, False
    peeked = first + read_exact(in_fd, header.size + pax.padding(header.size))
    if len(peeked) < pax.BLOCK + header.size + pax.padding(header.size):
        # The input ended inside this header. Raw bytes unless what came is zcp's version record
        # cut short: a zcp stream whose writer died must not be saved as a file that looks fine.
        body, opening = peeked[pax.BLOCK:], b"%d %s=" % (header.size, pax.KEY_VERSION.encode())
        if body[: len(opening)] == opening[: len(body)]:
            raise StreamError("truncated stream: it ends inside its first header")
        return peeked, False
    try:
        records = pax.decode_records(peeked[pax.BLOCK : pax.BLOCK + header.size])
    except StreamError:
        return peeked, False
    return peeked, pax.KEY_VERSION in records


# Bytes of zcp's first block that no raw file starts with by chance: its whole name field.
_SURE_PREFIX = 100


def _unpack(reader: TarReader, dest: str, options: _Options, read: Iterable[Member] = (),
            made: bool = False) -> ReceiveStats:
    """Unpack into the folder DEST (created if missing); ``read``: members already taken from ``reader``;
    ``made``: DEST was made for this stream already."""
    if not made and not os.path.isdir(dest):
        os.mkdir(dest)
        made = True
    with ConfinedDir.open(dest) as root:
        unpacker = _Unpacker(reader, root, options, ReceiveStats(), root_made=made)
        unpacker.run(read)
        return unpacker.stats


def _receive_single(reader: TarReader, dest: str, options: _Options) -> ReceiveStats:
    """A zcp stream to a file name: exactly one regular file, verified, becomes DEST.

    Anything else (a tree, several entries, none) is unpacked into DEST made a new folder, as
    `zcp SRC/ DEST` would make it; refused when DEST exists.
    """
    member = reader.next()
    parent, leaf = os.path.split(dest)
    parent_fd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if member is None:  # an empty tree: DEST becomes an empty folder
            _make_folder(parent_fd, leaf, dest)
            reader.drain()
            return ReceiveStats(zcp=True)
        if member.kind is not Kind.FILE or member.hardlink:
            _make_folder(parent_fd, leaf, dest)
            return _unpack(reader, dest, options, [member], made=True)
        stats = ReceiveStats(zcp=True)
        replaced_mode = None if options.keep_perms else _mode_of_file(parent_fd, leaf)
        with _NewFile.beside(parent_fd, leaf, 0o600) as new:
            _FileReceiver(reader, stats, options).fill(new.fd, member, None, replaced_mode)
            following = reader.next()
            if following is not None:
                _make_folder(parent_fd, leaf, dest)
                with ConfinedDir.open(dest) as root:
                    unpacker = _Unpacker(reader, root, options, stats, root_made=True)
                    unpacker.adopt(new, member)
                    unpacker.run([following])
                return stats
            reader.drain()
            new.place(parent_fd, leaf)
    finally:
        os.close(parent_fd)
    stats.entries = 1
    return stats


def _make_folder(parent_fd: int, leaf: str, dest: str) -> None:
    """DEST as the new folder a tree is unpacked into; it must not exist: a file there stays (a
    usage error, as for a local copy of a folder onto a file)."""
    try:
        os.mkdir(leaf, 0o777, dir_fd=parent_fd)
    except FileExistsError:
        raise UsageError(f"{dest}: the stream holds a tree, and a tree never replaces a file (the file stays)") from None


def _receive_raw(in_fd: int, dest: str, peeked: bytes, options: _Options) -> ReceiveStats:
    """Bytes as they come: what was peeked first, then the rest of the stream by a kernel copy."""
    stats = ReceiveStats(format="raw", entries=1, files=1)
    parent, leaf = os.path.split(dest)
    parent_fd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with _NewFile.beside(parent_fd, leaf, 0o666) as new:
            write_all(new.fd, peeked)
            rest = move(in_fd, new.fd, None, None, len(peeked), body_methods(in_fd, new.fd), stats.by_method,
                        options.progress)
            stats.bytes = len(peeked) + rest
            replaced_mode = _mode_of_file(parent_fd, leaf)
            if replaced_mode is not None:  # replacing a file keeps its permissions, like `cat >`
                os.fchmod(new.fd, replaced_mode)
            new.place(parent_fd, leaf)
    finally:
        os.close(parent_fd)
    return stats


class _NewFile:
    """A file being received for ``leaf`` of a folder: an unnamed inode (a receiver killed even by
    SIGKILL then leaves nothing), or where none can be named there a temp name beside it. place()
    puts it at its name; leaving the block closes it, and removes a temp name not placed."""

    __slots__ = ("fd", "parent_fd", "temp")

    def __init__(self, parent_fd: int, leaf: str, mode: int, unnamed: bool):
        """``unnamed``: whether one can be named here (_can_name_unnamed); UnnamedUnsupported if the
        filesystem refuses one all the same."""
        self.parent_fd = parent_fd
        self.temp: str | None = None
        if unnamed:
            self.fd = open_unnamed(".", mode, dir_fd=parent_fd)
        else:
            self.temp = temp_name(leaf)
            self.fd = os.open(self.temp, _NEW_FILE, mode, dir_fd=parent_fd)

    @classmethod
    def beside(cls, parent_fd: int, leaf: str, mode: int) -> _NewFile:
        """The one file of a run (single file, raw bytes): unnamed if the folder allows it."""
        if _can_name_unnamed(parent_fd):
            with suppress(UnnamedUnsupported):
                return cls(parent_fd, leaf, mode, True)
        return cls(parent_fd, leaf, mode, False)

    def place(self, folder_fd: int, leaf: str) -> None:
        if self.temp is None:
            _link_into_place(self.fd, folder_fd, leaf)
        else:
            os.rename(self.temp, leaf, src_dir_fd=self.parent_fd, dst_dir_fd=folder_fd)
            self.temp = None

    def __enter__(self) -> _NewFile:
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)
        if self.temp is not None:
            _remove_temp(self.parent_fd, self.temp)


class _FileReceiver:
    """Writes one regular file's body from the stream to a new file and checks it."""

    def __init__(self, reader: TarReader, stats: ReceiveStats, options: _Options):
        self.reader = reader
        self.stats = stats
        self.options = options
        self._methods: tuple[Method, ...] = ()

    def fill(self, fd: int, member: Member, landing: Landing | None, replaced_mode: int | None = None) -> None:
        """The body into the new, empty file open as ``fd``, verified, with its metadata.

        ``landing``: what the folder does to new files, when the file was created there with its
        mode (less the umask); usually no chown or chmod is then needed. ``replaced_mode``: without
        -p, the mode of the file it replaces, which it keeps (as cp and rsync keep it).
        """
        options = self.options
        if options.on_file is not None:
            options.on_file(member.name)
        if member.digest is None and self.reader.is_zcp:  # zcp hashes every file: a lost record is damage
            raise StreamError(f"no {pax.KEY_HASH} record for {member.name!r} in a zcp stream")
        size = member.size
        verify = options.verify  # then hashed as read back from storage, not as written
        digest = None
        if size <= SMALL_BODY:  # taken whole from the stream's buffer: one write, hashed in memory
            body = self.reader.small_body(member)
            write_all(fd, body)
            self.stats.by_method[_RW] += size
            if options.progress is not None:
                options.progress(size)
            if member.digest is not None and not verify:
                digest = hash_bytes(body)
        elif member.digest is not None and member.size >= TRAILING_MIN_SIZE and not verify:
            with TrailingDigest(fd) as trailing:
                self._write_big(fd, member, trailing.written)
                digest = self._checked(lambda: trailing.digest(member.size), member)
        else:
            self._write_big(fd, member)
        if member.digest is not None and digest is None:
            read_back = read_back_digest if verify else hash_fd
            digest = self._checked(lambda: read_back(fd, size), member)
        if member.digest is not None:
            if digest != member.digest:
                raise StreamError(
                    f"hash mismatch for {member.name!r}: stream says {hex_digest(member.digest)}, got {hex_digest(digest)}"
                )
            self.stats.verified += 1
        apply_fd_metadata(fd, member, options, landing, replaced_mode)
        self.stats.files += 1
        self.stats.bytes += size

    def _write_big(self, fd: int, member: Member, landed: Progress | None = None) -> None:
        """What the buffer holds of the body, then the rest by a kernel copy; ``landed`` hears of
        every byte written, as the progress display does."""
        progress = self.options.progress
        if landed is not None:
            progress = landed if progress is None else _both(progress, landed)
        head = self.reader.body_head(member)
        write_all(fd, head)
        self.stats.by_method[_RW] += len(head)
        if progress is not None:
            progress(len(head))
        self._methods = self._methods or body_methods(self.reader.fd, fd)
        try:
            move(self.reader.fd, fd, member.size - len(head), None, len(head), self._methods, self.stats.by_method,
                 progress)
        except SourceChanged:
            raise StreamError(f"truncated stream: it ends inside the body of {member.name!r}") from None
        self.reader.end_body(member)

    @staticmethod
    def _checked(read_back: Callable[[], bytes], member: Member) -> bytes:
        """The digest of what was written, read back from the file (page cache), so that the body
        itself still moves from the stream to the file inside the kernel."""
        try:
            return read_back()
        except SourceChanged:
            raise StreamError(f"{member.name!r} changed while it was received") from None


class _Unpacker:
    """Each member of a tar stream created beneath DEST; folder metadata applied at the end."""

    def __init__(self, reader: TarReader, root: ConfinedDir, options: _Options, stats: ReceiveStats,
                 root_made: bool = False):
        """``root_made``: DEST was made for this stream (else, without -p, it keeps its mode)."""
        self.reader = reader
        self.root = root
        self.root_made = root_made
        self.options = options
        self.stats = stats
        self.files = _FileReceiver(reader, self.stats, options)
        # What each name is in this stream, keyed by the name joined with '/' (one string an entry
        # costs half the memory of a tuple of its components). A name is recorded just before it is
        # made, and a failure ends the run: the non-folders here are exactly those received, the
        # only valid hard link targets.
        self.seen: dict[str, Kind] = {"": Kind.DIR}
        # Metadata to apply once their content is in; and whether the folder was there before.
        self.folders: dict[Parts, tuple[Member, bool]] = {}
        self._last_parent: Parts = ()  # folders above the last claimed name, all known to be folders
        self._landing: tuple[Parts, Landing] | None = None  # of the last folder a file went to
        self._unnamed: bool | None = None  # files are written as unnamed inodes; None: not tried yet

    def run(self, read: Iterable[Member] = ()) -> None:
        """Every member: those in ``read`` (already taken from the reader), then the rest."""
        try:
            for member in itertools.chain(read, iter(self.reader.next, None)):
                self.stats.entries += 1
                self._entry(member)
        except BaseException:
            # What was made is finished all the same (modes, times), not left 0700, as tar does.
            with suppress(OSError, ZcpError):
                self._finish_folders()
            raise
        self.stats.zcp = self.reader.is_zcp
        self._finish_folders()
        self.reader.drain()

    def _entry(self, member: Member) -> None:
        parts = split_name(member.name)
        try:
            self._place(parts, member)
        except IsADirectoryError as exc:  # named after the entry, not the temp name that met the folder
            raise IsADirectoryError(exc.errno, f"a folder is in the way of {member.kind} {display(parts)!r}") from None
        except OSError as exc:  # a refusal met in the entry's folder ('.') or on a temp name: the entry's
            if exc.filename is None or exc.filename == "." or str(exc.filename).endswith(TEMP_SUFFIX):
                raise OSError(exc.errno, exc.strerror, display(parts)) from None
            raise

    def _place(self, parts: Parts, member: Member) -> None:
        if member.hardlink:
            self._hardlink(parts, member)
        elif member.kind is DIR:
            self._claim(parts, DIR)
            self._folder(parts, member)
        else:
            if not parts:
                raise StreamError("refusing an entry that names the destination folder itself")
            again = self._claim(parts, member.kind)
            if member.kind is FILE:
                self._file(parts, member, again)
            elif member.kind is SYMLINK:
                self._symlink(parts, member)
            else:
                self._special(parts, member)

    def adopt(self, new: _NewFile, member: Member) -> None:
        """A file received (complete, verified) before DEST became a folder: put in its place."""
        parts = split_name(member.name)
        if not parts:
            raise StreamError("refusing an entry that names the destination folder itself")
        self.stats.entries += 1
        self._claim(parts, Kind.FILE)
        new.place(self.root.folder(parts[:-1], create=True), parts[-1])

    def _claim(self, parts: Parts, kind: Kind) -> bool:
        """Record what ``parts`` is; one name cannot be two types in one stream. Whether the stream
        named it before (explicitly, or as a folder above an earlier entry)."""
        parent = parts[:-1]
        if parent != self._last_parent:  # a recorded kind never changes: checked once per folder run
            for depth in range(1, len(parts)):
                above = self.seen.setdefault("/".join(parts[:depth]), DIR)
                if above is not DIR:
                    raise StreamError(f"{display(parts[:depth])!r} is a {above} in this stream, not a folder for {display(parts)!r}")
            self._last_parent = parent
        key = "/".join(parts)
        earlier = self.seen.get(key)
        if earlier is None:
            self.seen[key] = kind
            return False
        if earlier is not kind:
            raise StreamError(f"{display(parts)!r} appears twice in the stream, as a {earlier} and as a {kind}")
        return True

    def _file(self, parts: Parts, member: Member, again: bool = False) -> None:
        """A new inode with no name (O_TMPFILE) takes the body and is linked into place once complete
        and verified: a process killed even by SIGKILL leaves nothing. Where the filesystem cannot,
        a temp name in the folder, renamed into place. ``again``: the stream named it before, so a
        file there is no file DEST held (whose mode it would keep without -p)."""
        where, leaf = parts[:-1], parts[-1]
        parent = self.root.folder(where, create=True)
        if self._landing is None or self._landing[0] != where:
            st = os.fstat(parent)
            self._landing = (where, Landing.of(parent, st.st_dev, st.st_mode))
        if self._unnamed is None:
            self._unnamed = _can_name_unnamed(parent)
        replaced_mode = None if self.options.keep_perms or again else _mode_of_file(parent, leaf)
        mode = member.mode & 0o777
        try:
            new = _NewFile(parent, leaf, mode, self._unnamed)
        except UnnamedUnsupported:  # this filesystem cannot: named temp files from now on
            self._unnamed = False
            new = _NewFile(parent, leaf, mode, False)
        with new:
            self.files.fill(new.fd, member, self._landing[1], replaced_mode)
            new.place(parent, leaf)

    def _folder(self, parts: Parts, member: Member) -> None:
        self.reader.skip_body(member)
        existed = not self.root_made
        if parts:
            parent = self.root.folder(parts[:-1], create=True)
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=parent)  # opened up in _finish_folders
                existed = False
            except FileExistsError:  # there before the stream, unless made for an entry inside it
                existed = not self.root.made(parts)
            self.root.folder(parts, create=False)  # refuses a symlink or a non-folder already there
        if parts in self.folders:  # named again: whether it was there before the stream stays as found
            existed = self.folders[parts][1]
        self.folders[parts] = (member, existed)

    def _symlink(self, parts: Parts, member: Member) -> None:
        self.reader.skip_body(member)
        if not member.linkname or "\x00" in member.linkname:
            raise StreamError(f"bad symlink target for {member.name!r}")
        parent = self.root.folder(parts[:-1], create=True)
        with _Temporary(parent, parts[-1]) as tmp:
            os.symlink(member.linkname, tmp, dir_fd=parent)
            self._stamp(parent, tmp, member, follow=False)
            os.rename(tmp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)

    def _special(self, parts: Parts, member: Member) -> None:
        self.reader.skip_body(member)
        if not self.options.allow_devices:
            raise StreamError(f"refusing {member.kind} entry {member.name!r}: FIFOs and devices are received "
                              "only with -D or -a, as root")
        if member.kind is Kind.FIFO:
            device, node_type = 0, stat.S_IFIFO
        elif member.kind in _DEVICE_TYPES and os.geteuid() == 0:
            if not (0 <= member.devmajor < 1 << 12 and 0 <= member.devminor < 1 << 20):
                raise StreamError(f"bad device number for {member.name!r}")
            device, node_type = os.makedev(member.devmajor, member.devminor), _DEVICE_TYPES[member.kind]
        else:
            raise StreamError(f"refusing {member.kind} entry {member.name!r}: device files need root")
        parent = self.root.folder(parts[:-1], create=True)
        with _Temporary(parent, parts[-1]) as tmp:
            os.mknod(tmp, node_type | 0o600, device, dir_fd=parent)
            self._stamp(parent, tmp, member, follow=True)
            os.rename(tmp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)

    def _hardlink(self, parts: Parts, member: Member) -> None:
        self.reader.skip_body(member)
        target = split_name(member.linkname)
        target_kind = self.seen.get("/".join(target))
        if target_kind in (None, DIR):
            raise StreamError(f"refusing hard link {member.name!r} to {member.linkname!r}: not received before it")
        self._claim(parts, target_kind)
        if target == parts:
            return
        target_parent = self.root.open_folder(target[:-1])
        try:
            parent = self.root.folder(parts[:-1], create=True)
            with _Temporary(parent, parts[-1]) as tmp:
                os.link(target[-1], tmp, src_dir_fd=target_parent, dst_dir_fd=parent, follow_symlinks=False)
                os.rename(tmp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)
                # rename() does nothing when both names are already links to one inode.
                with suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=parent)
        finally:
            os.close(target_parent)

    def _stamp(self, parent: int, name: str, member: Member, *, follow: bool) -> None:
        """Metadata of a node that cannot be opened for it (symlink, FIFO, device): by name, in our temp."""
        if self.options.preserve_owner:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        if follow:  # chmod on a symlink is meaningless (and unsupported on Linux)
            os.chmod(name, _mode(member, self.options), dir_fd=parent)
        os.utime(name, ns=_times(member), dir_fd=parent, follow_symlinks=False)

    def _finish_folders(self) -> None:
        # Deepest first, so that setting a folder's mtime is not undone by work inside it.
        failure: OSError | None = None
        for parts in sorted(self.folders, key=len, reverse=True):
            member, existed = self.folders[parts]
            try:
                fd = self.root.open_folder(parts)
                try:
                    apply_fd_metadata(fd, member, self.options, existed=existed)
                finally:
                    os.close(fd)
            except OSError as exc:  # every other folder is still finished; the first failure is told
                failure = failure or OSError(exc.errno, exc.strerror, display(parts))
        if failure is not None:
            raise failure


def _both(first: Progress, second: Progress) -> Progress:
    def both(count: int) -> None:
        first(count)
        second(count)

    return both


def apply_fd_metadata(fd: int, member: Member, options: _Options, landing: Landing | None = None,
                      replaced_mode: int | None = None, existed: bool = False) -> None:
    """Owner, mode and times. ``landing``: the folder a file was just created in with its mode (less
    the umask); a chown or chmod that would change nothing is then left out.

    Without -p (``keep_perms``) the mode is cp's: a file keeps the mode of the one it replaces
    (``replaced_mode``), a folder that ``existed`` keeps its own, a new one has the stream's bits
    less the umask (a new folder also keeps the setgid it inherited from its parent)."""
    if options.preserve_owner and (landing is None or landing.setgid or (member.uid, member.gid) != options.owner):
        os.fchown(fd, member.uid, member.gid)
    if (member.xattrs or member.acls) and options.xattrs:
        privileged = options.preserve_owner and options.keep_perms  # root, and asked for set-id bits too
        kept = [(name, value) for name, value in member.xattrs if privileged or name.startswith("user.")]
        if privileged:
            kept += _acl_xattrs(member, options)
        for warning in set_xattrs(fd, kept):
            options.on_warning(f"{member.name}: {warning}")
    # After chown, which clears set-id bits (only those: a mode without them needs no new chmod).
    if options.keep_perms:
        if landing is None or landing.default_acl or member.mode & (_SUID_BITS | options.umask):
            os.fchmod(fd, member.mode)
    elif replaced_mode is not None:
        os.fchmod(fd, replaced_mode)
    elif landing is None and not existed:  # a folder this stream made (a new file has its mode)
        os.fchmod(fd, _mode(member, options) | (os.fstat(fd).st_mode & stat.S_ISGID))
    os.utime(fd, ns=_times(member))


def _mode(member: Member, options: _Options) -> int:
    """The mode a new entry gets: the stream's, or without -p its permission bits less the umask."""
    return member.mode if options.keep_perms else member.mode & 0o777 & ~options.umask


def _acl_xattrs(member: Member, options: _Options) -> list[tuple[str, bytes]]:
    """The member's tar --acls records as system xattrs; one that cannot be converted here (a user
    this host does not know) is a warning, as with GNU tar. An ACL the stream also carries as an
    xattr is taken from there."""
    carried = {name for name, _ in member.xattrs}
    converted = []
    for name, text in member.acls:
        if name in carried:
            continue
        try:
            converted.append((name, acl_xattr(text)))
        except AclError as exc:
            options.on_warning(f"{member.name}: ACL not set: {exc}")
    return converted


def _mode_of_file(parent_fd: int, leaf: str) -> int | None:
    """The permission bits of the regular file named ``leaf`` there, if there is one."""
    try:
        st = os.stat(leaf, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


def _times(member: Member) -> tuple[int, int]:
    atime = member.atime_ns if member.atime_ns is not None else time.time_ns()
    return atime, member.mtime_ns


class _Temporary:
    """A fresh `.name.<token>.zcp` next to ``leaf`` (exec.atomic's naming), removed if the block fails.

    A class rather than a @contextmanager generator: it runs for every entry received.
    """

    __slots__ = ("parent_fd", "name")

    def __init__(self, parent_fd: int, leaf: str):
        self.parent_fd = parent_fd
        self.name = temp_name(leaf)

    def __enter__(self) -> str:
        return self.name

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            _remove_temp(self.parent_fd, self.name)


def _can_name_unnamed(folder_fd: int) -> bool:
    """Whether an unnamed inode can be made and linked here: asked once per run, before any body is
    written into one (a body read from the stream cannot be read again)."""
    try:
        fd = open_unnamed(".", 0o600, dir_fd=folder_fd)
    except UnnamedUnsupported:
        return False
    try:
        probe = temp_name("probe")
        link_unnamed(fd, probe, dir_fd=folder_fd)
        os.unlink(probe, dir_fd=folder_fd)
        return True
    except (UnnamedUnsupported, FileExistsError):
        return False
    finally:
        os.close(fd)


def _link_into_place(fd: int, parent_fd: int, leaf: str) -> None:
    """Name the complete unnamed inode ``leaf``; an entry already there is replaced atomically."""
    try:
        try:
            link_unnamed(fd, leaf, dir_fd=parent_fd)
        except FileExistsError:
            tmp = temp_name(leaf)
            link_unnamed(fd, tmp, dir_fd=parent_fd)
            try:
                os.rename(tmp, leaf, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            except BaseException:
                _remove_temp(parent_fd, tmp)
                raise
    except UnnamedUnsupported as exc:  # refused after the probe allowed it: this file fails
        raise OSError(exc.errno, f"cannot link a received file into place: {os.strerror(exc.errno)}", leaf) from None


def _remove_temp(parent_fd: int, name: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=parent_fd)


def _dest_error(exc: OSError) -> ZcpError:
    if exc.errno == errno.ENAMETOOLONG:  # the stream names something this filesystem cannot hold
        return StreamError(describe(exc))
    return ZcpError(describe(exc))
