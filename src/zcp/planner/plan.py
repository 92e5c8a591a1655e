"""Pair source entries with what the destination holds and stream the resulting actions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from zcp.config import Config
from zcp.model import Action, Entry, Kind
from zcp.planner.decide import Decider
from zcp.planner.operands import Transfer
from zcp.planner.walk import Excluder, OnError, walk_tree


def _lstat(path: str) -> Entry | None:
    try:
        return Entry.from_stat(path, os.lstat(path))
    except FileNotFoundError:
        return None


class Planner:
    """Streams actions for transfers. Reads the trees (lstat, readlink), never writes."""

    def __init__(self, config: Config, excluder: Excluder | None, on_error: OnError,
                 is_root: bool | None = None, lstat: Callable[[str], Entry | None] = _lstat):
        self.config = config
        self.excluder = excluder
        self.on_error = on_error
        self.decider = Decider(config, os.geteuid() == 0 if is_root is None else is_root)
        self._lstat = lstat

    def plan(self, transfer: Transfer) -> Iterator[Action]:
        src, dst_root = transfer.src, transfer.dst
        root_existing = self._lstat(dst_root)
        dst_dev = self._dev_of(dst_root, root_existing)
        yield self._decide("", src, dst_root, root_existing, dst_dev)
        if src.kind is not Kind.DIR:
            return
        # Folders that do not exist yet in the destination: their children need no lstat.
        new_dirs: set[str] = set() if root_existing else {""}
        dirs_dev = {"": dst_dev}
        for rel, entry in walk_tree(src, self.excluder, self.on_error):
            parent = rel.rpartition("/")[0]
            dst = os.path.join(dst_root, rel)
            try:
                existing = None if parent in new_dirs else self._lstat(dst)
                action = self._decide(rel, entry, dst, existing, dirs_dev[parent])
            except OSError as exc:  # an unreadable destination entry, a symlink that vanished
                self.on_error(entry.path, exc)
                if entry.kind is Kind.DIR:
                    new_dirs.add(rel)  # keep the walk's bookkeeping; its children fail alike
                    dirs_dev[rel] = dirs_dev[parent]
                continue
            if entry.kind is Kind.DIR:
                if existing is None or existing.kind is not Kind.DIR:
                    new_dirs.add(rel)
                dirs_dev[rel] = existing.dev if existing and existing.kind is Kind.DIR else dirs_dev[parent]
            yield action

    def _decide(self, rel: str, src: Entry, dst: str, existing: Entry | None, dst_dev: int) -> Action:
        target = existing_target = None
        if src.kind is Kind.SYMLINK:
            target = os.readlink(src.path)
            if existing is not None and existing.kind is Kind.SYMLINK:
                existing_target = os.readlink(dst)
        return self.decider.decide(rel, src, dst, existing, dst_dev, target, existing_target)

    def _dev_of(self, dst_root: str, existing: Entry | None) -> int:
        """The device new files will land on: the destination itself if a folder, else its parent."""
        if existing is not None and existing.kind is Kind.DIR:
            return existing.dev
        parent = os.path.dirname(os.path.normpath(dst_root)) or "."
        while not os.path.isdir(parent):  # a folder target that the run creates first
            parent = os.path.dirname(parent) or "."
        return os.stat(parent).st_dev
