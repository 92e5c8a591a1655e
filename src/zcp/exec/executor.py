"""Run a plan: one action at a time, each file atomically, one file's failure never stops the run."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable

from zcp.config import Config, Method
from zcp.errors import (FileError, Interrupted, SourceChanged, SourceVanished, Unsupported, VerifyMismatch, ZcpError,
                        describe)
from zcp.exec.atomic import Pending, UnnamedUnsupported, fsync_dir, make_beside, remove_live_temps
from zcp.exec.events import NullSink, Sink, Stats
from zcp.exec.filecopy import copy_bytes
from zcp.exec.metadata import MetadataPolicy, current_umask
from zcp.xattrs import xattrs_differ
from zcp.model import (COPYING_OPS, DIR, SKIP, SPECIAL_KINDS, Action, Entry, Kind, Op, Unchanged,
                       metadata_differences)
from zcp.syscalls import Capabilities

# Below this size a file's bytes are counted when it is done, not chunk by chunk.
_PROGRESS_MIN = 8 << 20
_SRC_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # never block on a FIFO swapped in
_NODE_TYPES = {Kind.FIFO: stat.S_IFIFO, Kind.CHAR: stat.S_IFCHR, Kind.BLOCK: stat.S_IFBLK, Kind.SOCKET: stat.S_IFSOCK}


class Executor:
    def __init__(self, config: Config, sink: Sink | None = None, caps: Capabilities | None = None,
                 is_root: bool | None = None):
        self.config = config
        self.sink = sink or NullSink()
        self.caps = caps or Capabilities()
        self.stats = Stats()
        root = os.geteuid() == 0 if is_root is None else is_root
        self.meta = MetadataPolicy(config.preserve, root, current_umask())
        # Folders get their metadata once everything in them is written (times; modes like 0555).
        self.folders: list[Action] = []
        # Folders whose entries this run adds, replaces or removes: their mtime must be set again.
        self.touched: set[str] = set()
        self._no_tmpfile: set[int] = set()  # destination devices that refuse O_TMPFILE
        # Copies that failed, and for a hard-link group whose first copy failed, the member copied
        # in its place, which the group's other names then link to (as rsync does). Groups are
        # planned after the walk, so their copies and links all run in this process.
        self._failed_copies: set[str] = set()
        self._relinked: dict[str, str] = {}

    def run(self, actions: Iterable[Action | Unchanged]) -> Stats:
        try:
            for action in actions:
                if type(action) is Unchanged:
                    self.unchanged(action.count)
                else:
                    self.handle(action)
        except BaseException:  # Ctrl-C, SIGTERM
            remove_live_temps()
            raise
        return self.finish()

    def handle(self, action: Action) -> None:
        """Carry out one action now (a folder's metadata waits for finish())."""
        self.sink.planned(action)
        op = action.op
        if op is SKIP:  # most of a re-sync: kept apart from the error handling below
            self._skip(action)
            return
        if op not in _IN_PLACE_OPS or (op is Op.MKDIR and not _is_dir(action.existing)):
            self.touched.add(_parent(action.dst))
        try:
            _HANDLERS[op](self, action)
        except (OSError, FileError) as exc:
            if op is Op.MKDIR and not action.rel and isinstance(exc, OSError):
                # a folder root that cannot be made: nothing of the transfer has a place (rsync: 11)
                raise ZcpError(f"cannot make the destination folder: {describe(exc)}") from None
            self._failed(action, exc)

    def unchanged(self, count: int) -> None:
        """Files the planner found up to date and only counted."""
        self.stats.skipped += count
        self.sink.unchanged(count)

    def take_folders(self) -> list[Action]:
        """The folders made or kept so far, in walk order, handed to whoever finishes them."""
        folders, self.folders = self.folders, []
        return folders

    def finish(self) -> Stats:
        """Folder metadata, contents before their folder (walk order reversed), then --fsync of folders."""
        for action in reversed(self.folders):
            self._finish_dir(action)
        if self.config.fsync:
            for path in sorted(self.touched, reverse=True):
                fsync_dir(path)
        return self.stats

    def note_walk_error(self, path: str, exc: OSError) -> None:
        """The planner could not read something: it is reported and the run will not exit 0."""
        self.stats.note_unreadable(exc)
        self.sink.failed(path, describe(exc))

    def _failed(self, action: Action, exc: OSError | FileError) -> None:
        """One action failed: reported, and the run goes on."""
        if isinstance(exc.__context__, (Interrupted, KeyboardInterrupt)):
            # a clean-up failed on the way out of an interruption: the interruption wins
            raise exc.__context__ from None
        if isinstance(exc, FileNotFoundError) and action.src is not None and exc.filename == action.src.path:
            exc = SourceVanished(f"{action.rel or action.dst}: vanished before it was read")
        self._fail(action, exc)

    def _fail(self, action: Action, exc: Exception) -> None:
        if action.op in COPYING_OPS or action.op is Op.HARDLINK:
            self._failed_copies.add(action.dst)
        if isinstance(exc, FileError) and exc.vanished:
            self.stats.vanished += 1
        else:
            self.stats.failed += 1
        where = action.src.path if action.src is not None and not _destination_error(exc) else action.dst
        message = str(exc) if isinstance(exc, FileError) else describe(exc)
        self.sink.failed(where, message)

    # --- actions -------------------------------------------------------------------------------

    def _skip(self, action: Action) -> None:
        if action.failure:
            self._fail(action, FileError(action.failure))
            return
        self.stats.skipped += 1
        if action.warning:
            self.sink.warned(action.warning)
        self.sink.finished(action, None, 0)

    def _copy(self, action: Action) -> None:
        src = action.src
        assert src is not None
        if action.existing is not None and action.existing.kind is DIR:
            self._remove_folder_in_the_way(action)
        src_fd = os.open(src.path, _SRC_FLAGS)
        try:
            st = os.fstat(src_fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceChanged(f"{src.path}: no longer a regular file")
            if st.st_size != src.size or st.st_mtime_ns != src.mtime_ns:
                src = Entry.from_stat(src.path, st)  # changed since the walk: copy what is there now
            self._write_file(action, src, src_fd, st)
        finally:
            os.close(src_fd)

    def _write_file(self, action: Action, src: Entry, src_fd: int, before: os.stat_result) -> None:
        """A pending file, bytes, (verify), metadata, (fsync), into place. With --verify a mismatch
        is written once more from scratch before the file is given up as failed."""
        patch = False  # clone the old file into the temp, then rewrite its changed blocks
        if action.existing is not None:  # only an existing destination has blocks worth keeping
            config = self.config
            from zcp.exec.delta import Delta, choose_delta  # hashing and delta: only for existing files

            delta = choose_delta(src, action.existing, action.methods, config.reflink, config.inplace,
                                 config.preserve.sparse)
            if delta is Delta.IN_PLACE:
                self._update_in_place(action, src, src_fd)
                return
            patch = delta is Delta.IN_TEMP
        mode = self.meta.creation_mode(src, action.existing)
        for attempt in range(2 if self.config.verify else 1):
            pending = self._pending(action, mode)
            try:
                written = self._fill(action, src, src_fd, pending.fd, mode, before, patch)
                if written is not None:
                    pending.commit()
                pending.close()
            except UnnamedUnsupported:  # it could not be named: this device gets named temp files
                pending.discard()
                self._no_tmpfile.add(action.landing.dev)
                return self._write_file(action, src, src_fd, before)
            except BaseException:
                pending.discard()
                raise
            if written is not None:
                self._placed(action, *written)
                return
            pending.discard()
            if attempt == 0:
                self.sink.warned(f"{action.rel or action.dst}: read-back differs from the source; copying again")
        raise VerifyMismatch(f"{action.dst}: the copy read back from storage differs from the source")

    def _pending(self, action: Action, mode: int) -> Pending:
        """Unnamed (O_TMPFILE) where the filesystem allows, else a named temp file. A replacement is
        unnamed too until complete: only then is it linked beside the old file and renamed over it,
        so a process killed while writing leaves no temp file."""
        unnamed = action.landing.dev not in self._no_tmpfile
        try:
            return Pending.create(action.dst, mode, unnamed)
        except UnnamedUnsupported:
            self._no_tmpfile.add(action.landing.dev)
            return Pending.create(action.dst, mode, False)

    def _fill(self, action: Action, src: Entry, src_fd: int, dst_fd: int, mode: int, before: os.stat_result,
              try_delta: bool = False):
        """Move the bytes and apply metadata; (method, bytes, warnings), or None when --verify failed."""
        sparse = self.config.preserve.sparse and src.is_sparse
        progress = self.sink.advanced if src.size >= _PROGRESS_MIN else None
        self.sink.started(action, action.methods[0] if action.methods else None)
        verify = self.config.verify
        if verify:
            from zcp.exec.verify import SourceDigest, read_back, source_ranges  # only --verify pays for it

            ranges = source_ranges(src_fd, src.size, sparse)
            src_digest = SourceDigest(src_fd, src.size, ranges)
        try:
            patched = self._delta_into(action, src, src_fd, dst_fd, progress) if try_delta else None
            method, moved = patched or copy_bytes(action.methods, src_fd, dst_fd, src.size, sparse,
                                                  (src.dev, action.landing.dev), self.caps, progress)
        finally:
            if verify:
                src_digest.wait()  # never leave it reading an fd the caller is about to close
        if verify:
            try:
                expected = src_digest.value()
            except SourceChanged as exc:
                raise SourceChanged(f"{src.path}: changed during the copy ({exc})") from None
            if _changed(before, os.fstat(src_fd)):
                raise SourceChanged(f"{src.path}: changed during the copy")
            if read_back(dst_fd, src.size, ranges) != expected:
                return None
            self.stats.verified += 1
        # a default ACL, not the umask, cut the mode it was created with: set it in any case
        created_mode = None if action.landing.default_acl else mode
        warnings = self.meta.apply_fd(dst_fd, src, action.existing, src_fd, created_mode, action.landing.setgid)
        if self.config.fsync:
            os.fsync(dst_fd)
        return method, moved, warnings

    def _delta_into(self, action: Action, src: Entry, src_fd: int, tmp_fd: int,
                    progress) -> tuple[Method, int] | None:
        """Clone the old destination into the temp and rewrite its changed blocks; None: no clone here."""
        try:
            old_fd = os.open(action.dst, _SRC_FLAGS)
        except (FileNotFoundError, PermissionError):  # gone, or not ours to read: a whole copy
            return None
        try:
            if not stat.S_ISREG(os.fstat(old_fd).st_mode):
                return None  # replaced since the walk; FICLONE's refusal must not mark the device
            from zcp.exec.delta import delta_into_temp

            result = delta_into_temp(src_fd, src.size, old_fd, tmp_fd, methods=action.methods,
                                     devices=(src.dev, action.landing.dev), caps=self.caps, progress=progress)
        except Unsupported:
            return None  # this filesystem cannot clone: the temp is still empty for a whole copy
        finally:
            os.close(old_fd)
        return result.method or Method.REFLINK, result.bytes_written  # nothing differed: all cloned

    def _update_in_place(self, action: Action, src: Entry, src_fd: int) -> None:
        """--inplace: rewrite the changed blocks of the existing file itself (not atomic), then metadata."""
        dst_fd = _open_for_update(action.dst)
        try:
            if not stat.S_ISREG(os.fstat(dst_fd).st_mode):
                raise FileError(f"{action.dst}: no longer a regular file")
            progress = self.sink.advanced if src.size >= _PROGRESS_MIN else None
            self.sink.started(action, action.methods[0])
            from zcp.exec.delta import delta_in_place
            from zcp.exec.verify import digest, read_back

            result = delta_in_place(src_fd, src.size, dst_fd, methods=action.methods,
                                    devices=(src.dev, action.landing.dev), caps=self.caps, progress=progress,
                                    sparse=self.config.preserve.sparse and src.is_sparse)
            if self.config.verify:
                if read_back(dst_fd, src.size, None) != digest(src_fd, src.size, None):
                    raise VerifyMismatch(f"{action.dst}: the file read back from storage differs from the source")
                self.stats.verified += 1
            warnings = self.meta.apply_fd(dst_fd, src, action.existing, src_fd)
            if self.config.fsync:
                os.fsync(dst_fd)
        finally:
            os.close(dst_fd)
        self._placed(action, result.method, result.bytes_written, warnings)

    def _placed(self, action: Action, method: Method | None, moved: int, warnings: list[str]) -> None:
        """A file is complete in its place: counted and reported (``method`` None: nothing differed)."""
        self._warn_all(warnings)
        self.stats.files += 1
        if method is not None:
            self.stats.add_bytes(method, moved)
        self.sink.finished(action, method, moved)

    def _attrs(self, action: Action) -> None:
        src = action.src
        assert src is not None
        if src.kind is Kind.SYMLINK:
            self.meta.apply_link(action.dst, src)
        elif src.kind in SPECIAL_KINDS:
            self.meta.apply_special(action.dst, src, action.existing)
        else:
            fd = os.open(action.dst, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the plan: not ours to change
                    raise FileError(f"{action.dst}: no longer a regular file")
                self._warn_all(self.meta.apply_fd(fd, src, action.existing))
            finally:
                os.close(fd)
        self.stats.attrs += 1
        self.sink.finished(action, None, 0)

    def _delete(self, action: Action) -> None:
        from zcp.exec.delete import delete_beneath  # only --delete pays for it

        root = action.dst[: len(action.dst) - len(action.rel) - 1]  # the transfer's root
        self.stats.deleted += delete_beneath(root, action.rel)
        self.sink.finished(action, None, 0)

    @staticmethod
    def _remove_folder_in_the_way(action: Action) -> None:
        """A folder stands where the source has something else: like rsync, an empty one goes
        (the planner deletes a full one first with --delete)."""
        try:
            os.rmdir(action.dst)
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise
            raise FileError(f"{action.dst}: a folder that is not empty is in the way of a {action.src.kind} (--delete "
                            "replaces it, unless it holds excluded entries or is the destination's root)") from None

    def _mkdir(self, action: Action) -> None:
        existing = action.existing
        if existing is not None and existing.kind is not Kind.DIR:
            os.unlink(action.dst)  # a file or symlink where the source has a folder
            existing = None
        if existing is None:
            try:
                os.mkdir(action.dst, 0o700)  # writable by us until its contents are in; mode comes last
            except FileExistsError:  # made since the plan (a folder target, by this very run): ours
                if not stat.S_ISDIR(os.lstat(action.dst).st_mode):
                    raise
        self.stats.dirs += 1
        self.folders.append(action)
        self.sink.finished(action, None, 0)

    def _symlink(self, action: Action) -> None:
        assert action.src is not None and action.target is not None
        self._place(action, lambda path: os.symlink(action.target, path))
        self.meta.apply_link(action.dst, action.src)
        self.stats.links += 1
        self.sink.finished(action, None, 0)

    def _hardlink(self, action: Action) -> None:
        assert action.link_to is not None
        link_to = self._relinked.get(action.link_to, action.link_to)
        if link_to in self._failed_copies:  # the group's first copy failed: this member takes its place
            self._copy(action)
            self._relinked[action.link_to] = action.dst
            return
        self._place(action, lambda path: os.link(link_to, path, follow_symlinks=False))
        self.stats.links += 1
        self.sink.finished(action, None, 0)

    def _special(self, action: Action) -> None:
        src = action.src
        assert src is not None
        self._place(action, lambda path: os.mknod(path, 0o600 | _NODE_TYPES[src.kind], src.rdev))
        self.meta.apply_special(action.dst, src, action.existing)
        self.stats.specials += 1
        self.sink.finished(action, None, 0)

    # --- helpers -------------------------------------------------------------------------------

    def _place(self, action: Action, make) -> None:
        """Create a non-file entry: directly when the name is free, else beside it and renamed over."""
        existing = action.existing
        if existing is not None and existing.kind is Kind.DIR:
            self._remove_folder_in_the_way(action)
            existing = None
        if existing is None:
            make(action.dst)
        else:
            make_beside(action.dst, make)

    def _finish_dir(self, action: Action) -> None:
        existing = action.existing
        try:  # the source folder is read again here (xattrs): it may have vanished since the walk
            if (_is_dir(existing) and action.dst.rstrip("/") not in self.touched
                    and not metadata_differences(action.src, existing, self.config.preserve, self.meta.is_root)
                    and not (self.config.preserve.xattrs and xattrs_differ(action.src.path, action.dst))):
                return  # up to date and untouched: leave its ctime alone
            fd = os.open(action.dst, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                self._warn_all(self.meta.apply_fd(fd, action.src, action.existing))
            finally:
                os.close(fd)
        except OSError as exc:
            self._failed(action, exc)

    def _warn_all(self, warnings: list[str]) -> None:
        for w in warnings:
            self.sink.warned(w)


_IN_PLACE_OPS = frozenset({Op.SKIP, Op.ATTRS, Op.MKDIR})  # leave the parent folder's entries alone


def _destination_error(exc: Exception) -> bool:
    """Errors that only the destination side raises: the message names the file being written."""
    return isinstance(exc, OSError) and exc.errno in _DESTINATION_ERRNOS


_DESTINATION_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns) != (after.st_size, after.st_mtime_ns,
                                                                       after.st_ctime_ns)


def _is_dir(entry: Entry | None) -> bool:
    return entry is not None and entry.kind is Kind.DIR


def _parent(path: str) -> str:
    return path.rstrip("/").rpartition("/")[0] or "."
_HANDLERS = {
    Op.SKIP: Executor._skip,
    Op.COPY: Executor._copy,
    Op.UPDATE: Executor._copy,
    Op.MKDIR: Executor._mkdir,
    Op.SYMLINK: Executor._symlink,
    Op.HARDLINK: Executor._hardlink,
    Op.SPECIAL: Executor._special,
    Op.ATTRS: Executor._attrs,
    Op.DELETE: Executor._delete,
}


_UPDATE_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _open_for_update(path: str) -> int:
    """The existing file open read-write for --inplace. A read-only file of ours is made writable
    just long enough to open it, as rsync does (the fd keeps its write access; the mode is put back).
    It is held by an O_PATH fd meanwhile, so a symlink swapped in is never followed."""
    try:
        return os.open(path, _UPDATE_FLAGS)
    except PermissionError as exc:
        refused = exc
    held = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(held)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & stat.S_IWUSR:
            raise refused
        node = f"/proc/self/fd/{held}"  # the same inode, whatever the name now points to
        os.chmod(node, stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
        try:
            return os.open(node, _UPDATE_FLAGS & ~os.O_NOFOLLOW)
        finally:
            os.chmod(node, stat.S_IMODE(st.st_mode))
    finally:
        os.close(held)
