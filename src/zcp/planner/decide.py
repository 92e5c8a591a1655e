"""Pure decisions: what to do with one source entry given what the destination holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from zcp.config import Config
from zcp.model import SPECIAL_KINDS, Action, Entry, Kind, Op
from zcp.planner.choose import choose_methods


@dataclass
class Decider:
    """Decides per entry; remembers hard-link groups seen so far in the run."""

    config: Config
    is_root: bool
    # (dev, ino) of a source link group -> (its first destination, that file's (dev, ino) if kept as is)
    first_link: dict[tuple[int, int], tuple[str, tuple[int, int] | None]] = field(default_factory=dict)

    def decide(self, rel: str, src: Entry, dst: str, existing: Entry | None, dst_dev: int,
               target: str | None = None, existing_target: str | None = None) -> Action:
        """``target``/``existing_target``: link texts, read by the caller for symlinks."""
        kind = src.kind
        if kind is Kind.DIR:
            return Action(Op.MKDIR, rel, dst, src, existing=existing,
                          reason="exists" if existing and existing.kind is Kind.DIR else "new folder")
        if kind is Kind.SYMLINK:
            if existing is not None and existing.kind is Kind.SYMLINK and existing_target == target:
                return Action(Op.SKIP, rel, dst, src, existing=existing, reason="same symlink")
            return Action(Op.SYMLINK, rel, dst, src, existing=existing, target=target, reason=f"-> {target}")
        if kind in SPECIAL_KINDS:
            return self._special(rel, src, dst, existing)
        if self.config.preserve.hard_links and src.nlink > 1:
            return self._linked_file(rel, src, dst, existing, dst_dev)
        return self._file(rel, src, dst, existing, dst_dev)

    def _file(self, rel: str, src: Entry, dst: str, existing: Entry | None, dst_dev: int) -> Action:
        if existing is not None and existing.kind is Kind.FILE and self._up_to_date(src, existing):
            return Action(Op.SKIP, rel, dst, src, existing=existing, reason="same size and mtime")
        methods, why = choose_methods(self.config.method, self.config.reflink, src.dev == dst_dev)
        op = Op.COPY if existing is None else Op.UPDATE
        return Action(op, rel, dst, src, methods=methods, reason=why, existing=existing, dst_dev=dst_dev)

    def _linked_file(self, rel: str, src: Entry, dst: str, existing: Entry | None, dst_dev: int) -> Action:
        """Hard-link groups: the first member is copied, the others are linked to it."""
        key = (src.dev, src.ino)
        first = self.first_link.get(key)
        if first is None:
            action = self._file(rel, src, dst, existing, dst_dev)
            kept = existing if action.op is Op.SKIP else None
            self.first_link[key] = (dst, (kept.dev, kept.ino) if kept else None)
            return action
        first_dst, first_id = first
        if existing is not None and first_id is not None and (existing.dev, existing.ino) == first_id:
            return Action(Op.SKIP, rel, dst, src, existing=existing, reason=f"hard link to {first_dst}")
        return Action(Op.HARDLINK, rel, dst, src, existing=existing, link_to=first_dst,
                      reason=f"hard link to {first_dst}")

    @staticmethod
    def _up_to_date(src: Entry, dst: Entry) -> bool:
        return src.size == dst.size and src.mtime_ns == dst.mtime_ns

    def _special(self, rel: str, src: Entry, dst: str, existing: Entry | None) -> Action:
        if not (self.config.preserve.specials and self.is_root):
            return Action(Op.SKIP, rel, dst, src, existing=existing, reason=f"{src.kind} not copied",
                          warning=f"skipping {src.kind} {rel!r} (recreated only with -a as root)")
        if existing is not None and existing.kind is src.kind and existing.rdev == src.rdev:
            return Action(Op.SKIP, rel, dst, src, existing=existing, reason=f"{src.kind} exists")
        return Action(Op.SPECIAL, rel, dst, src, existing=existing, reason=f"new {src.kind}")
