"""Pair source entries with what the destination holds and stream the resulting actions."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import replace

from zcp.config import Compare, Config
from zcp.model import Action, Entry, Kind, Op
from zcp.planner.decide import Decider
from zcp.planner.operands import Transfer
from zcp.planner.walk import OnError, join_rel, walk_tree


def _lstat(path: str) -> Entry | None:
    try:
        return Entry.from_stat(path, os.lstat(path))
    except FileNotFoundError:
        return None


def _same_content(a: str, b: str) -> bool:
    from zcp.hashing import hash_path  # only --checksum pays for it

    return hash_path(a) == hash_path(b)


class Planner:
    """Streams actions for transfers. Reads the trees (lstat, readlink, hashes), never writes.

    With --delete, destination entries missing from the source are collected while walking and
    planned after everything else (delete-after), and only when every source folder could be read:
    an unreadable source folder must never look like an empty one.
    """

    def __init__(self, config: Config, on_error: OnError, on_warning: Callable[[str], None] = lambda m: None,
                 is_root: bool | None = None, lstat: Callable[[str], Entry | None] = _lstat,
                 same_content: Callable[[str, str], bool] = _same_content):
        self.config = config
        self.excluder = config.filters or None
        self.decider = Decider(config, os.geteuid() == 0 if is_root is None else is_root)
        self._lstat = lstat
        self._same_content = same_content
        self._on_error = on_error
        self._on_warning = on_warning
        self.read_errors = 0  # entries that could not be read (not those that vanished)
        self._extras: list[Action] = []  # destination entries not in the source
        # --max-delete: entries still allowed; planned, so that -n shows exactly what a run deletes
        self._delete_budget = config.max_delete
        self.delete_limited = False

    def on_error(self, path: str, exc: OSError) -> None:
        if not isinstance(exc, FileNotFoundError):  # a vanished entry is no reason to spare others
            self.read_errors += 1
        self._on_error(path, exc)

    def plan(self, transfer: Transfer) -> Iterator[Action]:
        src, dst_root = transfer.src, transfer.dst
        root_existing = self._lstat(dst_root)
        parent = self._parent_of(dst_root)
        yield self._decide("", src, dst_root, root_existing, parent)
        if src.kind is not Kind.DIR:
            return
        # Folders that are not folders in the destination yet: their children need no lstat, and
        # nothing beneath them is ever looked up through whatever stands there now (a symlink).
        new_dirs: set[str] = set()
        # (device, setgid) of each destination folder: where its entries land, and whether they
        # inherit its group (a new folder inherits setgid from its parent)
        dirs_at = {"": _folder_of(root_existing, parent)}
        if root_existing is None or root_existing.kind is not Kind.DIR:
            new_dirs.add("")
        on_listing = self._note_extras(dst_root, new_dirs) if self.config.delete else None
        prefix = dst_root.rstrip("/") + "/"
        for rel, entry in walk_tree(src, self.excluder, self.on_error, on_listing):
            parent = rel.rpartition("/")[0]
            dst = prefix + rel
            existing = None
            try:
                if parent not in new_dirs:
                    existing = self._lstat(dst)
                action = self._decide(rel, entry, dst, existing, dirs_at[parent])
            except OSError as exc:  # an unreadable destination entry, a symlink that vanished
                self.on_error(entry.path, exc)
                action = None
            if entry.kind is Kind.DIR:
                is_dir = existing is not None and existing.kind is Kind.DIR
                if not is_dir:
                    new_dirs.add(rel)
                dirs_at[rel] = _folder_of(existing, dirs_at[parent])
            if action is None:
                continue
            if action.existing is not None and action.existing.kind is Kind.DIR and self.config.delete:
                yield from self._clear_the_way(action)
            else:
                yield action

    def deletions(self) -> Iterator[Action]:
        """The --delete actions, after the transfers; none at all if any source could not be read."""
        if not self._extras:
            return
        if self.read_errors:
            self._on_warning(f"not deleting {len(self._extras)} entries: some source entries could not be read")
            return
        for action in self._extras:
            if not self._within_delete_budget(action):
                return
            yield action

    def _within_delete_budget(self, action: Action) -> bool:
        """Count what deleting this entry removes (a folder: all of it) against --max-delete."""
        if self._delete_budget is None:
            return True
        removes = 1 + (_count_beneath(action.dst) if action.existing and action.existing.kind is Kind.DIR else 0)
        if removes > self._delete_budget:
            self.delete_limited = True
            self._on_warning(f"--max-delete={self.config.max_delete} reached: not deleting {action.rel} "
                             "and what follows")
            return False
        self._delete_budget -= removes
        return True

    def _clear_the_way(self, action: Action) -> Iterator[Action]:
        """With --delete, a folder where the source has something else is deleted first."""
        existing = action.existing
        if action.op in _REPLACING and action.src is not None and action.src.kind is not Kind.DIR:
            removal = Action(Op.DELETE, action.rel, action.dst, existing=existing,
                             reason=f"a folder where the source has a {action.src.kind}")
            if self._within_delete_budget(removal):
                yield removal
                action = replace(action, existing=None)
        yield action

    def _note_extras(self, dst_root: str, new_dirs: set[str]) -> Callable[[str, list[str]], None]:
        """A walk hook: for each source folder listed, find destination names it lacks."""

        def on_listing(rel: str, names: list[str]) -> None:
            if rel in new_dirs:
                return  # nothing there yet, or not a real folder (never listed through a symlink)
            dst_dir = os.path.join(dst_root, rel) if rel else dst_root
            try:
                with os.scandir(dst_dir) as it:
                    extra = sorted((d.name, d.is_dir(follow_symlinks=False)) for d in it if d.name not in names)
            except OSError as exc:
                self.on_error(dst_dir, exc)
                return
            for name, is_dir in extra:
                child = join_rel(rel, name)
                if self.excluder and not self.config.delete_excluded and self.excluder.excluded(child, is_dir):
                    continue  # excluded entries are protected unless --delete-excluded
                path = os.path.join(dst_dir, name)
                self._extras.append(Action(Op.DELETE, child, path, existing=self._lstat(path),
                                           reason="not in the source"))

        return on_listing

    def _decide(self, rel: str, src: Entry, dst: str, existing: Entry | None, folder: tuple[int, bool]) -> Action:
        target = existing_target = same = None
        if src.kind is Kind.SYMLINK:
            target = os.readlink(src.path)
            if existing is not None and existing.kind is Kind.SYMLINK:
                existing_target = os.readlink(dst)
        elif (self.config.compare is Compare.CHECKSUM and src.kind is Kind.FILE and existing is not None
              and existing.kind is Kind.FILE and existing.size == src.size):
            same = self._same_content(src.path, dst)
        return self.decider.decide(rel, src, dst, existing, folder, target, existing_target, same)

    @staticmethod
    def _parent_of(dst_root: str) -> tuple[int, bool]:
        """(device, setgid) of the folder the destination root lands in."""
        parent = os.path.dirname(os.path.normpath(dst_root)) or "."
        while not os.path.isdir(parent):  # a folder target that the run creates first
            parent = os.path.dirname(parent) or "."
        st = os.stat(parent)
        return st.st_dev, bool(st.st_mode & stat.S_ISGID)


_REPLACING = frozenset({Op.COPY, Op.UPDATE, Op.SYMLINK, Op.HARDLINK, Op.SPECIAL})


def _count_beneath(path: str) -> int:
    """Entries inside a destination folder, not following symlinks (what deleting it removes)."""
    count = 0
    for _, dirs, files in os.walk(path):
        count += len(dirs) + len(files)
    return count


def _folder_of(existing: Entry | None, parent: tuple[int, bool]) -> tuple[int, bool]:
    """(device, setgid) of a destination folder: its own if it is one already, else inherited."""
    if existing is not None and existing.kind is Kind.DIR:
        return existing.dev, bool(existing.mode & stat.S_ISGID)
    return parent
