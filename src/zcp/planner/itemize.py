"""rsync-style itemized changes (-i): one line per entry that changes, from the plan alone.

``YXcstpoguax name``: Y is what happens (> file written, c created locally, h hard link, . only
attributes, *deleting), X the kind (f file, d folder, L symlink, D device, S FIFO/socket), then one
letter per attribute that changes (c content, s size, t time, p perms, o owner, g group, x xattrs), '+' for
all of them on a new entry. Unchanged entries print nothing.
"""

from __future__ import annotations

from zcp.config import Compare, Config
from zcp.model import COPYING_OPS, Action, Entry, Kind, Op, metadata_differences

_KIND_LETTER = {
    Kind.FILE: "f", Kind.DIR: "d", Kind.SYMLINK: "L", Kind.CHAR: "D", Kind.BLOCK: "D",
    Kind.FIFO: "S", Kind.SOCKET: "S",
}
_CHANGE_LETTERS = {"content": "c", "size": "s", "time": "t", "perms": "p", "owner": "o", "group": "g", "xattrs": "x"}
_SLOTS = ("content", "size", "time", "perms", "owner", "group", "u", "a", "xattrs")


def itemize(action: Action, config: Config, is_root: bool, name: str) -> str | None:
    """The line for ``action``, whose entry output calls ``name`` (cli.output.ShownNames)."""
    entry = action.src if action.src is not None else action.existing
    if entry is not None and entry.kind is Kind.DIR:
        name += "/"
    if action.op is Op.DELETE:
        return f"*deleting   {name}"
    src = action.src
    if src is None or action.op is Op.SKIP:
        return None
    kind = _KIND_LETTER[src.kind]
    existing = action.existing
    what = {Op.COPY: ">", Op.UPDATE: ">", Op.HARDLINK: "h", Op.ATTRS: "."}.get(action.op, "c")
    if existing is None or existing.kind is not src.kind:
        return f"{what}{kind}{'+' * len(_SLOTS)} {name}"
    changed = set(metadata_differences(src, existing, config.preserve, is_root))
    changed |= _content_changes(action, src, existing, config.compare)
    if action.xattrs:
        changed.add("xattrs")
    if action.op is Op.MKDIR and not changed:
        return None
    if action.op is Op.MKDIR:
        what = "."
    flags = "".join(_CHANGE_LETTERS[slot] if slot in changed else "." for slot in _SLOTS)
    return f"{what}{kind}{flags} {name}"


def _content_changes(action: Action, src: Entry, existing: Entry, compare: Compare) -> set[str]:
    if action.op in COPYING_OPS:
        changes = {"time"} if src.mtime_ns != existing.mtime_ns else set()
        if src.size != existing.size:
            changes.add("size")
        # as rsync: 'c' whenever -c is on (a size change included); otherwise size and time told us
        if compare is Compare.CHECKSUM:
            changes.add("content")
        return changes
    if action.op is Op.SYMLINK:
        return {"content"}  # the link text differs
    return set()

