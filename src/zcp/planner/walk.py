"""Walk a source tree with scandir + lstat: pre-order, sorted, streaming, never writes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from zcp.config import Excluder
from zcp.model import Entry, Kind

OnError = Callable[[str, OSError], None]


def join_rel(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def list_dir(path: str, rel: str, excluder: Excluder | None, on_error: OnError) -> list[tuple[str, Entry]]:
    """The children of one folder as (rel, Entry), sorted by name; unreadable entries go to on_error."""
    try:
        with os.scandir(path) as it:
            found = sorted(it, key=lambda d: d.name)
    except OSError as exc:
        on_error(path, exc)
        return []
    children = []
    for d in found:
        child_rel = join_rel(rel, d.name)
        try:
            entry = Entry.from_stat(d.path, d.stat(follow_symlinks=False))
        except OSError as exc:  # vanished since scandir, or unreadable
            on_error(d.path, exc)
            continue
        if excluder and excluder.excluded(child_rel, entry.kind is Kind.DIR):
            continue
        children.append((child_rel, entry))
    return children


OnListing = Callable[[str, set[str]], None]


def walk_tree(root: Entry, excluder: Excluder | None, on_error: OnError,
              on_listing: OnListing | None = None) -> Iterator[tuple[str, Entry]]:
    """Everything below ``root`` (not root itself), folders before their contents, depth first.

    Streams: only the folders on the current path are held in memory with their listings.
    ``on_listing(rel, names)`` sees each folder's kept child names before its children are yielded.
    """

    def listing(path: str, rel: str) -> Iterator[tuple[str, Entry]]:
        children = list_dir(path, rel, excluder, on_error)
        if on_listing is not None:
            on_listing(rel, {child_rel.rpartition("/")[2] for child_rel, _ in children})
        return iter(children)

    stack = [listing(root.path, "")]
    while stack:
        for rel, entry in stack[-1]:
            yield rel, entry
            if entry.kind is Kind.DIR:
                stack.append(listing(entry.path, rel))
                break
        else:
            stack.pop()
