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

    A missing root raises FileNotFoundError; ``progress`` receives the bytes hashed, as they are.
    """
    src, dst = os.path.realpath(src, strict=True), os.path.realpath(dst, strict=True)
    yield from _compare(".", src, dst, os.lstat(src), os.lstat(dst), progress)


def to_json(diff: Difference) -> dict[str, str]:
    """A JSON-ready dict. A name that is not UTF-8 keeps its surrogate escapes (json writes \\udcXX)."""
    return asdict(diff)


def _compare(
    rel: str, src: str, dst: str, src_st: os.stat_result, dst_st: os.stat_result, progress: Progress | None
) -> Iterator[Difference]:
    src_kind, dst_kind = Kind.of(src_st.st_mode), Kind.of(dst_st.st_mode)
    if src_kind is not dst_kind:
        yield Difference(rel, "type", f"{src_kind} in source, {dst_kind} in destination")
    elif src_kind is Kind.DIR:
        yield from _compare_dirs(rel, src, dst, progress)
    elif src_kind is Kind.SYMLINK:
        yield from _compare_links(rel, src, dst)
    elif src_kind is Kind.FILE:
        yield from _compare_files(rel, src, dst, src_st.st_size, dst_st.st_size, progress)


def _compare_dirs(rel: str, src: str, dst: str, progress: Progress | None) -> Iterator[Difference]:
    try:
        src_entries, dst_entries = _list_dir(src), _list_dir(dst)
    except OSError as exc:
        yield Difference(rel, "error", describe(exc))
        return
    for name in sorted(src_entries.keys() | dst_entries.keys(), key=os.fsencode):
        child = name if rel == "." else f"{rel}/{name}"
        src_st, dst_st = src_entries.get(name), dst_entries.get(name)
        if dst_st is None:
            yield Difference(child, "missing", f"{Kind.of(src_st.st_mode)} not in destination")
        elif src_st is None:
            yield Difference(child, "extra", f"{Kind.of(dst_st.st_mode)} not in source")
        else:
            yield from _compare(child, os.path.join(src, name), os.path.join(dst, name), src_st, dst_st, progress)


def _list_dir(path: str) -> dict[str, os.stat_result]:
    found = {}
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                found[entry.name] = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since it was listed: it is not there
    return found


def _compare_links(rel: str, src: str, dst: str) -> Iterator[Difference]:
    try:
        src_target, dst_target = os.readlink(src), os.readlink(dst)
    except OSError as exc:
        yield Difference(rel, "error", describe(exc))
        return
    if src_target != dst_target:
        yield Difference(rel, "differ", f"link to {src_target!r} in source, to {dst_target!r} in destination")


def _compare_files(
    rel: str, src: str, dst: str, src_size: int, dst_size: int, progress: Progress | None
) -> Iterator[Difference]:
    if src_size != dst_size:
        yield Difference(rel, "differ", f"{src_size} bytes in source, {dst_size} in destination")
        return
    try:
        src_digest, dst_digest = hash_path(src, progress), hash_path(dst, progress)
    except (OSError, FileError) as exc:
        yield Difference(rel, "error", describe(exc))
        return
    if src_digest != dst_digest:
        yield Difference(rel, "differ", "same size, different content")
