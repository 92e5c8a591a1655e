"""Carry metadata over, after the data, explicitly: owner, mode, xattrs, times.

Order matters: chown clears setuid/setgid bits, so mode comes after it; times come last because
setting xattrs or mode does not touch mtime but writing data does.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from zcp.config import Preserve
from zcp.model import DIR, Entry, Kind
from zcp.xattrs import XATTR_NOT_SET, read_xattrs, set_xattrs

_PRUNED_NAMESPACES = ("user.", "trusted.")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass(frozen=True)
class MetadataPolicy:
    preserve: Preserve
    is_root: bool
    umask: int
    owner: tuple[int, int] = (os.geteuid(), os.getegid())  # what a file we create belongs to
    chowns: bool = field(init=False)  # owners are kept: -a (or -o) as root

    def __post_init__(self) -> None:
        object.__setattr__(self, "chowns", self.preserve.owner and self.is_root)

    def mode_for(self, src: Entry, existing: Entry | None) -> int:
        """cp's rule without -p: a new file gets the source mode less the umask and less its set-id
        bits (they would now name our user); an old one keeps its mode. Folders keep setgid, which
        says where new files belong rather than who runs them."""
        if self.preserve.mode:
            return src.mode
        if existing is not None and existing.kind is src.kind:
            return existing.mode
        return src.mode & ~self.umask & (0o7777 if src.kind is DIR else 0o1777)

    def creation_mode(self, src: Entry, existing: Entry | None) -> int:
        """The mode to create a file with, so that usually no chmod is needed afterwards."""
        return self.mode_for(src, existing) & 0o777

    def apply_fd(self, fd: int, src: Entry, existing: Entry | None, src_fd: int | None = None,
                 created_mode: int | None = None, in_setgid: bool = True) -> list[str]:
        """Apply metadata to an open file or folder; returns warnings (xattrs the target cannot hold).

        ``created_mode``: the mode a file was just created with (the umask still applied to it); it
        then belongs to us, or to its folder's group when ``in_setgid``, and needs no chown if the
        source has that owner too.
        """
        chown = self.chowns and (created_mode is None or in_setgid or (src.uid, src.gid) != self.owner)
        if chown:
            os.fchown(fd, src.uid, src.gid)
        preserve = self.preserve
        mode = self.mode_for(src, existing)
        if existing is None and src.kind is DIR and not preserve.mode:
            mode |= os.fstat(fd).st_mode & stat.S_ISGID  # a new folder keeps the setgid it inherited
        # The umask may have cut bits at creation, which cannot set set-id bits either; chown
        # clears those bits only, so a mode without them needs no chmod after it.
        if created_mode is None or mode != created_mode & ~self.umask:
            os.fchmod(fd, mode)
        warnings = (copy_xattrs(src_fd if src_fd is not None else src.path, fd, existing is not None)
                    if preserve.xattrs else [])
        if preserve.times:
            os.utime(fd, ns=(src.atime_ns, src.mtime_ns))
        return warnings

    def apply_link(self, path: str, src: Entry) -> None:
        """Symlinks: owner and times of the link itself (no mode on Linux, never follow it)."""
        if self.chowns:
            os.lchown(path, src.uid, src.gid)
        if self.preserve.times:
            os.utime(path, ns=(src.atime_ns, src.mtime_ns), follow_symlinks=False)

    def apply_special(self, path: str, src: Entry, existing: Entry | None) -> None:
        """FIFOs and devices: opening one for real could block or start a device, so it is held by
        an O_PATH fd (which never follows a symlink swapped in) and changed through /proc."""
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if Kind.of(os.fstat(fd).st_mode) is not src.kind:
                raise OSError(errno.ESTALE, f"no longer a {src.kind}", path)
            node = f"/proc/self/fd/{fd}"
            if self.chowns:
                os.chown(node, src.uid, src.gid)
            os.chmod(node, self.mode_for(src, existing))
            if self.preserve.times:
                os.utime(node, ns=(src.atime_ns, src.mtime_ns))
        finally:
            os.close(fd)


def copy_xattrs(src: int | str, dst_fd: int, prune: bool = False) -> list[str]:
    """Copy every extended attribute; returns warnings for those the destination refused.
    ``prune``: the destination existed before, and loses the user.* and trusted.* attributes the
    source no longer has (system.* and security.* belong to the destination's own ACLs and labels)."""
    attributes = read_xattrs(src)
    warnings = []
    if prune:
        for name in set(read_xattrs(dst_fd)).difference(attributes):
            if name.startswith(_PRUNED_NAMESPACES):
                try:
                    os.removexattr(dst_fd, name)
                except OSError as exc:
                    if exc.errno not in XATTR_NOT_SET:
                        raise
                    warnings.append(f"xattr {name} not removed: {exc.strerror}")
    return warnings + set_xattrs(dst_fd, attributes.items())
