"""Pure decisions: what to do with one source entry given what the destination holds."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from stat import S_ISREG

from zcp.config import Compare, Config
from zcp.model import (ATTRS, COPY, DIR, FILE, SKIP, SPECIAL_KINDS, SYMLINK, UPDATE, Action, Entry, Landing, Op,
                       metadata_differences)
from zcp.planner.choose import choose_methods


@dataclass
class Decider:
    """Decides per entry; remembers hard-link groups seen so far in the run."""

    config: Config
    is_root: bool
    # (dev, ino) of a source link group -> (its first destination, that file's (dev, ino) if kept as is)
    first_link: dict[tuple[int, int], tuple[str, tuple[int, int] | None]] = field(default_factory=dict)

    def decide(self, rel: str, src: Entry, dst: str, existing: Entry | None, folder: Landing,
               target: str | None = None, existing_target: str | None = None,
               same_content: bool | None = None, same_xattrs: bool | None = None) -> Action:
        """``folder``: what the destination folder the entry lands in does to new entries.
        ``target``/``existing_target``: link texts, read by the caller for symlinks.
        ``same_content``: for --checksum, whether two same-size files hash alike (read by the caller).
        ``same_xattrs``: for -X, whether two files carry the same xattrs; None: not looked at.
        """
        kind = src.kind
        if existing is not None and self.config.ignore_existing and (kind is not DIR or existing.kind is not DIR):
            if kind is DIR:  # the planner does not descend: nothing of the folder has a place
                return Action(SKIP, rel, dst, src, existing=existing, reason=f"a {existing.kind} is in the way",
                              failure=f"a {existing.kind} is in its place in the destination and "
                                      "--ignore-existing keeps it: the folder is not copied")
            return Action(SKIP, rel, dst, src, existing=existing, reason="exists (--ignore-existing)")
        if kind is DIR:
            return Action(Op.MKDIR, rel, dst, src, existing=existing,
                          reason="exists" if existing and existing.kind is DIR else "new folder")
        if kind is SYMLINK:
            if existing is not None and existing.kind is SYMLINK and existing_target == target:
                return self._attrs(rel, src, dst, existing)
            return Action(Op.SYMLINK, rel, dst, src, existing=existing, target=target, reason=f"-> {target}")
        if kind in SPECIAL_KINDS:
            return self._special(rel, src, dst, existing)
        if self.config.preserve.hard_links and src.nlink > 1:
            return self._linked_file(rel, src, dst, existing, folder, same_content, same_xattrs)
        return self._file(rel, src, dst, existing, folder, same_content, same_xattrs)

    def _file(self, rel: str, src: Entry, dst: str, existing: Entry | None, folder: Landing,
              same_content: bool | None = None, same_xattrs: bool | None = None) -> Action:
        config = self.config
        if existing is not None and existing.kind is not DIR:
            if config.update and existing.kind is FILE and existing.mtime_ns > src.mtime_ns:
                return Action(SKIP, rel, dst, src, existing=existing, reason="newer in the destination (--update)")
            if existing.kind is FILE and self._up_to_date(src, existing, same_content):
                return self._attrs(rel, src, dst, existing, same_xattrs)
        if existing is None:
            return self.new_file(rel, src, dst, folder)
        methods, why = choose_methods(config.method, config.reflink, src.dev == folder.dev)
        return Action(UPDATE, rel, dst, src, methods, why, existing=existing, landing=folder)

    def new_file(self, rel: str, src: Entry, dst: str, folder: Landing) -> Action:
        """A regular file where the destination has nothing: copied, by the cheapest kernel path."""
        methods, why = choose_methods(self.config.method, self.config.reflink, src.dev == folder.dev)
        return Action(COPY, rel, dst, src, methods, why, landing=folder)

    def _linked_file(self, rel: str, src: Entry, dst: str, existing: Entry | None, folder: Landing,
                     same_content: bool | None, same_xattrs: bool | None) -> Action:
        """Hard-link groups: the first member is copied, the others are linked to it."""
        key = (src.dev, src.ino)
        first = self.first_link.get(key)
        if first is None:
            action = self._file(rel, src, dst, existing, folder, same_content, same_xattrs)
            if action.op is SKIP and not (existing is not None and existing.kind is FILE
                                          and self._up_to_date(src, existing, same_content)):
                return action  # kept as it is (-u, --ignore-existing): not the group's copy; the next member is
            kept = existing if action.op in (SKIP, ATTRS) else None
            self.first_link[key] = (dst, (kept.dev, kept.ino) if kept else None)
            return action
        first_dst, first_id = first
        if existing is not None and first_id is not None and (existing.dev, existing.ino) == first_id:
            return Action(SKIP, rel, dst, src, existing=existing, reason=f"hard link to {first_dst}")
        # With the kernel paths of a copy: should the first member fail, this one is copied instead.
        methods, _ = choose_methods(self.config.method, self.config.reflink, src.dev == folder.dev)
        return Action(Op.HARDLINK, rel, dst, src, methods, existing=existing, link_to=first_dst,
                      reason=f"hard link to {first_dst}", landing=folder)

    def _up_to_date(self, src: Entry, dst: Entry, same_content: bool | None) -> bool:
        if src.size != dst.size:
            return False
        compare = self.config.compare
        if compare is Compare.QUICK:
            return src.mtime_ns == dst.mtime_ns
        return compare is Compare.SIZE_ONLY or bool(same_content)

    def _attrs(self, rel: str, src: Entry, dst: str, existing: Entry, same_xattrs: bool | None = None) -> Action:
        """Content is up to date: SKIP, or ATTRS when preserved metadata differs."""
        differ = metadata_differences(src, existing, self.config.preserve, self.is_root)
        if same_xattrs is False:
            differ.append("xattrs")
        if differ:
            return Action(ATTRS, rel, dst, src, existing=existing, reason=", ".join(differ) + " differ",
                          xattrs=same_xattrs is False)
        return Action(SKIP, rel, dst, src, existing=existing, reason="up to date")

    def _special(self, rel: str, src: Entry, dst: str, existing: Entry | None) -> Action:
        if not (self.config.preserve.specials and self.is_root):
            return Action(SKIP, rel, dst, src, existing=existing, reason=f"{src.kind} not copied",
                          warning=f"skipping {src.kind} {rel!r} (recreated only with -D or -a, as root)")
        if existing is not None and existing.kind is src.kind and existing.rdev == src.rdev:
            return self._attrs(rel, src, dst, existing)
        return Action(Op.SPECIAL, rel, dst, src, existing=existing, reason=f"new {src.kind}")


def unchanged_test(config: Config, is_root: bool) -> Callable[[os.stat_result, os.stat_result], bool] | None:
    """For a quick-check run, a test on two lstat results that says what ``Decider.decide`` would
    say without building anything: a plain source file (one link, or links not kept) whose
    destination is a file of the same size, mtime and preserved attributes is skipped as up to date.
    With -X, only if the source's metadata (xattrs included) last changed before the destination's:
    otherwise the planner compares their xattrs. None where other rules decide (--checksum,
    --size-only, --ignore-existing)."""
    if config.compare is not Compare.QUICK or config.ignore_existing:
        return None
    preserve = config.preserve
    same_mode, same_owner, links_apart = preserve.mode, preserve.owner and is_root, preserve.hard_links
    xattrs = preserve.xattrs

    def unchanged(src: os.stat_result, dst: os.stat_result) -> bool:
        return (src.st_size == dst.st_size and src.st_mtime_ns == dst.st_mtime_ns and S_ISREG(src.st_mode)
                and (src.st_mode == dst.st_mode if same_mode else S_ISREG(dst.st_mode))
                and (src.st_nlink == 1 or not links_apart)
                and (not same_owner or (src.st_uid == dst.st_uid and src.st_gid == dst.st_gid))
                and (not xattrs or src.st_ctime_ns < dst.st_ctime_ns))

    return unchanged
