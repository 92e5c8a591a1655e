"""Pair source entries with what the destination holds and stream the resulting actions."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace

from zcp.config import Compare, Config
from zcp.errors import SourceChanged
from zcp.xattrs import has_xattrs, xattrs_differ
from zcp.model import (COPYING_OPS, DIR, FILE, SYMLINK, Action, Entry, Extra, Folder, Kind, Landing, LinkCandidate,
                       Op, Unchanged)
from zcp.planner.decide import Decider, unchanged_test
from zcp.planner.operands import Transfer
from zcp.planner.walk import OnError, join_rel, list_names


def _lstat(path: str) -> Entry | None:
    try:
        return Entry.from_stat(path, os.lstat(path))
    except FileNotFoundError:
        return None


def _same_content(src: str, dst: str) -> bool:
    """Whether the two files hash alike. When that cannot be known, because either one changed while
    it was hashed or the destination cannot be read or is gone, they count as different: the copy
    that follows reads the source again and reports its own failure. A source that cannot be read
    raises (a read error)."""
    from zcp.hashing import hash_path  # only --checksum pays for it

    try:
        digest = hash_path(src)
    except SourceChanged:
        return False
    try:
        return hash_path(dst) == digest
    except (OSError, SourceChanged):
        return False


class Planner:
    """Streams actions for transfers. Reads the trees (lstat, readlink, hashes), never writes.

    With --delete, destination entries missing from the source are collected while walking and
    planned after everything else (delete-after), and only when every source folder could be read:
    an unreadable source folder must never look like an empty one.
    """

    def __init__(self, config: Config, on_error: OnError, on_warning: Callable[[str], None] = lambda m: None,
                 is_root: bool | None = None, count_unchanged: bool = False):
        """``count_unchanged``: up-to-date files come out as Unchanged counts, not as SKIP actions."""
        self.config = config
        self.excluder = config.filters or None
        root = os.geteuid() == 0 if is_root is None else is_root
        self.decider = Decider(config, root)
        self._is_unchanged = unchanged_test(config, root) if count_unchanged else None
        self._checksum = config.compare is Compare.CHECKSUM
        self._xattrs = config.preserve.xattrs
        self._on_error = on_error
        self._on_warning = on_warning
        self.unchanged = 0  # counted since the last Unchanged went out
        self.read_errors = 0  # entries that could not be read (not those that vanished)
        self._extras: list[Action] = []  # destination entries not in the source
        self._destination_roots: dict[str, tuple[int, int]] = {}  # each transfer's, as (dev, ino)
        self._links: list[LinkCandidate] = []  # files with other hard links, in walk order
        # --max-delete: entries still allowed; planned, so that -n shows exactly what a run deletes
        self._delete_budget = config.max_delete
        self.delete_limited = False

    def on_error(self, path: str, exc: OSError) -> None:
        if not isinstance(exc, FileNotFoundError):  # a vanished entry is no reason to spare others
            self.read_errors += 1
        self._on_error(path, exc)

    def plan(self, transfer: Transfer) -> Iterator[Action | Unchanged]:
        """Every action of one transfer in walk order (-n, -j1); hard-link candidates and --delete
        extras are kept for later()."""
        for item in self.plan_root(transfer):
            if type(item) is Folder:
                for step in self.plan_tree(item):
                    if type(step) in _CARRIED_OUT:
                        yield step
                    else:
                        self.keep(step)
            else:
                yield item

    def plan_root(self, transfer: Transfer) -> Iterator[Action | Folder]:
        """The transfer's root entry, and the root as a Folder when it is one."""
        src, dst_root = transfer.src, transfer.dst
        existing = None if transfer.made_by_run else _lstat(dst_root)
        landing = self._parent_of(dst_root)
        yield self._decide("", src, dst_root, existing, landing)
        if src.kind is Kind.DIR:
            yield _folder("", src, dst_root.rstrip("/") or "/", existing, landing)

    def plan_tree(self, root: Folder, stop: Callable[[int], bool] | None = None,
                  split: int = 1) -> Iterator[Action | Unchanged | Folder | LinkCandidate | Extra]:
        """Everything beneath ``root`` in walk order, folders before their contents: Actions (and
        Unchanged counts), and what must wait for the end of the walk. ``stop(work)`` is asked
        whenever STOP_CHECK more units of work have been planned (an entry is one, a copy one more
        per MiB), with the units so far; once it says so, the rest of each listing still open comes
        out as Folders with those names (in up to ``split`` pieces, so that several processes can
        share it), innermost first, and the walk ends."""
        stack = [_Frame(root, (yield from self._listing(root)))]
        done = 0
        check_at = STOP_CHECK
        while stack:
            frame = stack[-1]
            folder, names, places = frame.folder, frame.names, frame.places
            below = None
            while below is None and frame.position < len(names):
                if stop is not None and done >= check_at:
                    check_at = done + STOP_CHECK
                    if stop(done):
                        yield from self._counted()
                        yield from _rest_of(stack, split)
                        return
                name = names[frame.position]
                frame.position += 1
                done += 1
                for item in self._plan_entry(folder, places, name):
                    kind = type(item)
                    if kind is Folder:
                        below = item
                        continue
                    if kind is Action and item.op in COPYING_OPS:
                        done += item.src.size >> 20
                    yield item
                if self.unchanged >= COUNT_BATCH:  # a big folder of them: the progress moves on
                    yield from self._counted()
            yield from self._counted()
            if below is None:
                stack.pop()
            else:
                stack.append(_Frame(below, (yield from self._listing(below))))

    def _counted(self) -> Iterator[Unchanged]:
        """The up-to-date files counted since the last time, if any."""
        if self.unchanged:
            count, self.unchanged = self.unchanged, 0
            yield Unchanged(count)

    def _listing(self, folder: Folder) -> Generator[Extra, None, list[str]]:
        """Yields the folder's --delete extras; returns the names to plan in it."""
        if folder.names is not None:
            return list(folder.names)
        names = list_names(folder.src, folder.rel, self.excluder, self.on_error)
        # A new folder holds nothing yet, and nothing beneath it is ever looked up through whatever
        # stands there now (a symlink).
        if self.config.delete and not folder.new:
            yield from self._extras_in(folder, set(names))
        return names

    def _plan_entry(self, folder: Folder, places: tuple[str, str, str], name: str) -> tuple:
        """One entry of a folder: its action(s), then for a folder the Folder to descend into; or a
        hard-link candidate; or nothing when it is only counted as unchanged. ``places``: the
        prefixes of the folder's rel, source and destination."""
        rel_prefix, src_prefix, dst_prefix = places
        path = src_prefix + name
        dst = dst_prefix + name
        try:
            st = os.lstat(path)
            if folder.new:
                dst_st = None
            else:
                try:
                    dst_st = os.lstat(dst)
                except FileNotFoundError:
                    dst_st = None
        except OSError as exc:  # vanished since the listing, unreadable, or an unreadable destination
            self.on_error(path, exc)
            return ()
        if (dst_st is not None and self._is_unchanged is not None and self._is_unchanged(st, dst_st)
                and not (self._xattrs and has_xattrs(path))):  # those are compared the long way
            self.unchanged += 1  # most of a re-sync: no Entry, no Action
            return ()
        entry = Entry.from_stat(path, st)
        rel = rel_prefix + name
        landing = folder.landing
        kind = entry.kind
        if folder.new and kind is FILE and entry.nlink == 1:  # most of a first copy: decided at once
            return (self.decider.new_file(rel, entry, dst, landing),)
        existing = None if dst_st is None else Entry.from_stat(dst, dst_st)
        action = None
        try:
            if entry.nlink > 1 and kind is FILE and self.config.preserve.hard_links:
                return (LinkCandidate(rel, entry, dst, existing, landing),)
            action = self._decide(rel, entry, dst, existing, landing)
        except OSError as exc:  # a symlink that vanished
            self.on_error(path, exc)
        items = () if action is None else self._clear_the_way(action)
        if kind is DIR:
            if action is not None and action.op is Op.SKIP:  # a non-folder kept in its place: no descent
                return items
            if self._is_destination_root(folder, entry):
                self._on_warning(f"not copying {path!r}: it is the destination itself, seen through another name")
                return ()
            return (*items, _folder(rel, entry, dst, existing, landing))
        return items

    def _is_destination_root(self, folder: Folder, entry: Entry) -> bool:
        """Whether a source folder is the transfer's destination folder (a bind mount makes one
        tree of both): descending would copy the copy again, without end."""
        root = folder.dst[: len(folder.dst) - len(folder.rel) - 1] if folder.rel else folder.dst
        identity = self._destination_roots.get(root)
        if identity is None:
            try:
                st = os.stat(root)
            except OSError:  # not made yet (-n): nothing is written into it either
                return False
            identity = self._destination_roots[root] = (st.st_dev, st.st_ino)
        return identity == (entry.dev, entry.ino)

    def keep(self, item: LinkCandidate | Extra) -> None:
        """Hold what plan_tree() defers until the walk is over, in walk order."""
        if type(item) is Extra:
            self._extras.append(item.action)
        else:
            self._links.append(item)

    def later(self) -> Iterator[Action]:
        """After the walk: hard-link groups (first member copied, the others linked), then deletions."""
        for c in self._links:
            yield from self._clear_the_way(self._decide(c.rel, c.src, c.dst, c.existing, c.landing))
        self._links = []
        yield from self._deletions()

    def _deletions(self) -> Iterator[Action]:
        """The --delete actions; none at all if any source could not be read."""
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

    def _clear_the_way(self, action: Action) -> tuple[Action, ...]:
        """With --delete, a folder where the source has something else is deleted first."""
        existing = action.existing
        if (self.config.delete and existing is not None and existing.kind is Kind.DIR and action.op in _REPLACING
                and action.src is not None and action.src.kind is not Kind.DIR
                and not (self.excluder and not self.config.delete_excluded
                         and self._holds_protected(action.rel, action.dst))):  # excluded entries stay
            removal = Action(Op.DELETE, action.rel, action.dst, existing=existing,
                             reason=f"a folder where the source has a {action.src.kind}")
            if self._within_delete_budget(removal):
                return removal, replace(action, existing=None)
        return (action,)

    def _extras_in(self, folder: Folder, names: set[str]) -> Iterator[Extra]:
        """The destination entries of a folder that the source lacks (protected ones aside)."""
        try:
            with os.scandir(folder.dst) as it:
                extra = sorted((d.name, d.is_dir(follow_symlinks=False)) for d in it if d.name not in names)
        except OSError as exc:
            self.on_error(folder.dst, exc)
            return
        for name, is_dir in extra:
            yield from self._extra(join_rel(folder.rel, name), os.path.join(folder.dst, name), is_dir)

    def _extra(self, rel: str, path: str, is_dir: bool) -> Iterator[Extra]:
        """One destination entry the source lacks, to delete; excluded entries are protected unless
        --delete-excluded, and a folder holding any keeps them and loses only the rest."""
        if self.excluder and not self.config.delete_excluded:
            if self.excluder.excluded(rel, is_dir):
                return
            if is_dir and self._holds_protected(rel, path):
                for name, child_is_dir in self._children(path):
                    yield from self._extra(join_rel(rel, name), os.path.join(path, name), child_is_dir)
                return
        yield Extra(Action(Op.DELETE, rel, path, existing=_lstat(path), reason="not in the source"))

    def _holds_protected(self, rel: str, path: str) -> bool:
        """Whether anything beneath a destination-only folder is excluded (an unreadable one: yes)."""
        try:
            children = self._children(path)
        except OSError as exc:
            self.on_error(path, exc)
            return True
        return any(self.excluder.excluded(join_rel(rel, name), is_dir)
                   or (is_dir and self._holds_protected(join_rel(rel, name), os.path.join(path, name)))
                   for name, is_dir in children)

    @staticmethod
    def _children(path: str) -> list[tuple[str, bool]]:
        with os.scandir(path) as it:
            return sorted((d.name, d.is_dir(follow_symlinks=False)) for d in it)

    def _decide(self, rel: str, src: Entry, dst: str, existing: Entry | None, folder: Landing) -> Action:
        target = existing_target = same = same_xattrs = None
        if src.kind is SYMLINK:
            target = os.readlink(src.path)
            if existing is not None and existing.kind is SYMLINK:
                existing_target = os.readlink(dst)
        elif src.kind is FILE and existing is not None and existing.kind is FILE and existing.size == src.size:
            if self._checksum:
                same = _same_content(src.path, dst)
            # A source with xattrs is compared with its copy (a copy made without -X lacks them);
            # one without is only when its metadata changed after the copy's (removing its last
            # xattr moved its ctime). So most files of a re-sync cost one listxattr, not two reads.
            if self._xattrs and (src.ctime_ns >= existing.ctime_ns or has_xattrs(src.path)):
                same_xattrs = not xattrs_differ(src.path, dst)
        return self.decider.decide(rel, src, dst, existing, folder, target, existing_target, same, same_xattrs)

    @staticmethod
    def _parent_of(dst_root: str) -> Landing:
        """The folder the destination root lands in."""
        parent = os.path.dirname(dst_root.rstrip("/")) or "."  # not normpath: 'link/..' is the kernel's to resolve
        while not os.path.isdir(parent):  # a folder target that the run creates first
            parent = os.path.dirname(parent.rstrip("/")) or "."
        st = os.stat(parent)
        return Landing.of(parent, st.st_dev, st.st_mode)


_CARRIED_OUT = frozenset({Action, Unchanged})  # what plan() passes on; the rest waits for later()
COUNT_BATCH = 256  # unchanged files counted before they are passed on, at the latest
STOP_CHECK = 32  # units of work between two questions to plan_tree's stop(): a big file asks at once
_REPLACING = frozenset({Op.COPY, Op.UPDATE, Op.SYMLINK, Op.HARDLINK, Op.SPECIAL})


class _Frame:
    """A folder being planned: its names, how far along, and the prefixes of its entries' paths."""

    __slots__ = ("folder", "names", "position", "places")

    def __init__(self, folder: Folder, names: list[str]):
        self.folder = folder
        self.names = names
        self.position = 0
        self.places = (_prefix(folder.rel) if folder.rel else "", _prefix(folder.src), _prefix(folder.dst))


def _rest_of(stack: list[_Frame], split: int) -> Iterator[Folder]:
    """What is left of each open listing, innermost first, in up to ``split`` pieces each."""
    for frame in reversed(stack):
        rest = frame.names[frame.position:]
        size = -(-len(rest) // split) or 1
        for start in range(0, len(rest), size):
            yield replace(frame.folder, names=tuple(rest[start:start + size]))


def _prefix(path: str) -> str:
    return path if path.endswith("/") else path + "/"


def _count_beneath(path: str) -> int:
    """Entries inside a destination folder, not following symlinks (what deleting it removes)."""
    count = 0
    for _, dirs, files in os.walk(path):
        count += len(dirs) + len(files)
    return count


def _folder(rel: str, src: Entry, dst: str, existing: Entry | None, parent: Landing) -> Folder:
    """A folder to descend into; its landing is its own if it is a folder already, else that of the
    folder it is made in (a new folder inherits setgid and the default ACL)."""
    if existing is not None and existing.kind is Kind.DIR:
        return Folder(rel, src.path, dst, False, Landing.of(dst, existing.dev, existing.mode))
    return Folder(rel, src.path, dst, True, parent)


