"""Walk a source tree with scandir + lstat: pre-order, sorted, streaming, never writes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from operator import attrgetter
from zcp.config import Excluder
from zcp.model import DIR, Entry

OnError = Callable[[str, OSError], None]
_NAME = attrgetter("name")


def join_rel(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def list_names(path: str, rel: str, excluder: Excluder | None, on_error: OnError) -> list[str]:
    """The names in one folder that the filters keep, sorted; an unreadable folder goes to on_error.
    Filters see the kind from the listing (d_type): nothing is stat'ed here."""
    try:
        with os.scandir(path) as it:
            if not excluder:
                return sorted([d.name for d in it])
            found = sorted(it, key=_NAME)
    except OSError as exc:
        on_error(path, exc)
        return []
    return [d.name for d in found if not excluder.excluded(join_rel(rel, d.name), d.is_dir(follow_symlinks=False))]


def list_dir(path: str, rel: str, excluder: Excluder | None, on_error: OnError) -> list[tuple[str, Entry]]:
    """The children of one folder as (rel, Entry), sorted by name; unreadable entries go to on_error."""
    children = []
    # Prefixes made once per folder: os.path.join per entry costs more than the lstat's Python side.
    place = path if path.endswith("/") else path + "/"
    rel_place = rel + "/" if rel else ""
    for name in list_names(path, rel, excluder, on_error):
        child = place + name
        try:
            children.append((rel_place + name, Entry.from_stat(child, os.lstat(child))))
        except OSError as exc:  # vanished since the listing, or unreadable
            on_error(child, exc)
    return children


def walk_tree(root: Entry, excluder: Excluder | None, on_error: OnError) -> Iterator[tuple[str, Entry]]:
    """Everything below ``root`` (not root itself), folders before their contents, depth first.

    Streams: only the folders on the current path are held in memory with their listings.
    """
    stack = [iter(list_dir(root.path, "", excluder, on_error))]
    while stack:
        for rel, entry in stack[-1]:
            yield rel, entry
            if entry.kind is DIR:
                stack.append(iter(list_dir(entry.path, rel, excluder, on_error)))
                break
        else:
            stack.pop()
