"""Compare two trees by content without copying (``zcp check``, like ``rclone check`` or ``diff -r``).

Entries are lstat'ed, never followed (only the two roots are). Regular files compare by size, then
by xxh3-128; symlinks by link text; folders by presence (then by their contents); other kinds by
kind only. A subtree present on one side only is reported once, at its top. Names are visited in
byte order, so the output is the same on every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from zcp.errors import FileError, describe
from zcp.hashing import Progress, hash_path
from zcp.model import Kind

DiffKind = Literal["missing", "extra", "differ", "type", "error"]


@dataclass(frozen=True)
class Difference:
    """``rel`` is the path below both roots ("." for the roots themselves).

    missing: in the source only; extra: in the destination only; differ: same kind, different
    content or link text; type: different kinds; error: could not be compared (detail says why).
    """

    rel: str
    kind: DiffKind
    detail: str


def compare_trees(src: str, dst: str, progress: Progress | None = None) -> Iterator[Difference]:
    """Differences between the trees (or files) at ``src`` and ``dst``; nothing when they agree.

    A missing root raises FileNotFoundError when iteration starts; ``progress`` receives the
    bytes hashed (both sides), as they are.
    """
    src, dst = os.path.realpath(src, strict=True), os.path.realpath(dst, strict=True)
    # Depth-first with an explicit stack (no recursion limit on deep trees). A folder's entries are
    # pushed in reverse, so they come out in byte order: a pair still to compare, or a difference
    # found already (an entry on one side only).
    stack: list[_Pair | Difference] = [_Pair(".", src, dst, os.lstat(src), os.lstat(dst))]
    while stack:
        pair = stack.pop()
        if isinstance(pair, Difference):
            yield pair
            continue
        src_kind, dst_kind = Kind.of(pair.src_st.st_mode), Kind.of(pair.dst_st.st_mode)
        if src_kind is not dst_kind:
            yield Difference(pair.rel, "type", f"{src_kind} in source, {dst_kind} in destination")
        elif src_kind is Kind.DIR:
            try:
                stack.extend(reversed(_entries(pair)))
            except OSError as exc:
                yield Difference(pair.rel, "error", describe(exc))
        elif src_kind is Kind.SYMLINK:
            yield from _compare_links(pair)
        elif src_kind is Kind.FILE:
            yield from _compare_files(pair, progress)


def to_json(diff: Difference) -> dict[str, str]:
    """A JSON-ready dict. A name that is not UTF-8 keeps its surrogate escapes (json writes \\udcXX)."""
    return asdict(diff)


@dataclass(frozen=True, slots=True)
class _Pair:
    """A path found below both roots, with its lstat on each side."""

    rel: str
    src: str
    dst: str
    src_st: os.stat_result
    dst_st: os.stat_result


def _entries(folder: _Pair) -> list[_Pair | Difference]:
    src_entries, dst_entries = _list_dir(folder.src), _list_dir(folder.dst)
    found: list[_Pair | Difference] = []
    for name in sorted(src_entries.keys() | dst_entries.keys(), key=os.fsencode):
        rel = name if folder.rel == "." else f"{folder.rel}/{name}"
        if name not in dst_entries:
            kind = Kind.of(src_entries[name].st_mode)
            found.append(Difference(rel, "missing", f"{kind} not in destination"))
        elif name not in src_entries:
            kind = Kind.of(dst_entries[name].st_mode)
            found.append(Difference(rel, "extra", f"{kind} not in source"))
        else:
            src, dst = os.path.join(folder.src, name), os.path.join(folder.dst, name)
            found.append(_Pair(rel, src, dst, src_entries[name], dst_entries[name]))
    return found


def _list_dir(path: str) -> dict[str, os.stat_result]:
    found: dict[str, os.stat_result] = {}
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                found[entry.name] = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since it was listed: it is not there
    return found


def _compare_links(pair: _Pair) -> Iterator[Difference]:
    try:
        src_target, dst_target = os.readlink(pair.src), os.readlink(pair.dst)
    except OSError as exc:
        yield Difference(pair.rel, "error", describe(exc))
        return
    if src_target != dst_target:
        detail = f"link to {src_target!r} in source, to {dst_target!r} in destination"
        yield Difference(pair.rel, "differ", detail)


def _compare_files(pair: _Pair, progress: Progress | None) -> Iterator[Difference]:
    src_size, dst_size = pair.src_st.st_size, pair.dst_st.st_size
    if src_size != dst_size:
        yield Difference(pair.rel, "differ", f"{src_size} bytes in source, {dst_size} in destination")
        return
    try:
        src_digest, dst_digest = hash_path(pair.src, progress), hash_path(pair.dst, progress)
    except (OSError, FileError) as exc:
        yield Difference(pair.rel, "error", describe(exc))
        return
    if src_digest != dst_digest:
        yield Difference(pair.rel, "differ", "same size, different content")
