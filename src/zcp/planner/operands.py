"""Turn the command line's SRC... DST into transfers, refusing impossible ones before anything is written.

Naming rule (rsync's trailing slash, cp's behaviour otherwise):
- ``SRC/`` (trailing slash) means the folder's contents: they go into DST itself.
- ``SRC`` goes to ``DST/basename(SRC)`` when DST is a folder target: an existing folder, a name
  ending in ``/``, or any DST when there are several sources; otherwise DST is the copy itself.
- A missing DST folder target is created (one level); its parent must exist.
- Through a stream (``-``) or to and from another host (``HOST:PATH``) the receiver cannot know the
  sender's operands: ``SRC`` lands in DST as ``DST/basename(SRC)`` (rsync's rule), and only one
  regular file sent to a name that is not a folder becomes that file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from zcp.errors import UsageError
from zcp.model import Entry, Kind


@dataclass(frozen=True)
class Transfer:
    src: Entry  # the operand, stat'ed (a symlink operand is followed unless links are preserved)
    dst: str  # where that entry lands
    name: str = ""  # what output calls its root, as rsync does: the source's name; "" for SRC/
    # The root is the folder target this run makes before it starts (create_folder): planned as the
    # new folder it is, so that -n, which makes nothing, plans exactly what the run does.
    made_by_run: bool = False


@dataclass(frozen=True)
class Operands:
    transfers: list[Transfer]
    create_folder: str | None  # a missing folder target, made before the first transfer


def resolve(sources: list[str], dest: str, *, recursive: bool, keep_links: bool) -> Operands:
    if not sources:
        raise UsageError("missing destination operand (usage: zcp [OPTIONS] SRC... DST)")
    into_folder = dest.endswith("/") or os.path.isdir(dest) or len(sources) > 1
    if into_folder:
        _check_folder_target(dest)
    else:
        _check_parent(dest)
    transfers = [_transfer(src, dest, into_folder, recursive, keep_links) for src in sources]
    seen: dict[str, str] = {}
    for t in transfers:
        norm = os.path.normpath(t.dst)
        if norm in seen:
            raise UsageError(f"'{seen[norm]}' and '{t.src.path}' would both be written to '{t.dst}'")
        seen[norm] = t.src.path
    needs_folder = into_folder and not os.path.isdir(dest) and any(t.dst != dest for t in transfers)
    if needs_folder:
        transfers = [replace(t, made_by_run=True) if t.dst == dest else t for t in transfers]
    return Operands(transfers, dest if needs_folder else None)


def _transfer(src: str, dest: str, into_folder: bool, recursive: bool, keep_links: bool) -> Transfer:
    entry, name = take_operand(src, recursive=recursive, keep_links=keep_links)
    if name is None:
        dst = dest
    elif into_folder:
        dst = os.path.join(dest, named(src, name))
    else:
        dst = dest
    if entry.kind is Kind.DIR:
        dst = _folder_root(src, dst)
    _refuse_self_copy(entry, dst)
    return Transfer(entry, dst, name or "")


def _folder_root(src: str, dst: str) -> str:
    """Where a source folder lands: a folder there (through a symlink, as cp and rsync follow one)
    or nothing. Anything else is refused, never replaced: the root is what the user named."""
    if not os.path.lexists(dst):
        return dst
    if not os.path.isdir(dst):
        raise UsageError(f"cannot overwrite non-folder '{dst}' with folder '{src}'")
    return os.path.realpath(dst) if os.path.islink(dst.rstrip("/") or "/") else dst


def take_operand(src: str, *, recursive: bool, keep_links: bool) -> tuple[Entry, str | None]:
    """A source operand stat'ed (a symlink followed for ``SRC/`` or without -l), and the name it is
    copied or sent under: None for ``SRC/`` of a folder, whose contents go to the destination itself."""
    contents = src.endswith("/")
    entry = _stat_operand(src, follow=contents or not keep_links)
    if entry.kind is Kind.DIR and not recursive:
        raise UsageError(f"'{src}' is a folder: use -r or -a for folders")
    if contents and entry.kind is Kind.DIR:
        return entry, None
    return entry, os.path.basename(os.path.normpath(src))


def named(src: str, name: str) -> str:
    """``name``, when it can name a copy of ``src`` inside a folder ('.' or '..' cannot)."""
    if name in ("", ".", ".."):
        raise UsageError(f"cannot name a copy of '{src}': give '{src}/' for its contents")
    return name


def _stat_operand(path: str, follow: bool) -> Entry:
    try:
        st = os.stat(path) if follow else os.lstat(path)
        if follow and os.path.islink(path.rstrip("/") or "/"):
            path = os.path.realpath(path)  # the executor never follows symlinks itself
    except OSError as exc:
        raise UsageError(f"cannot read '{path}': {exc.strerror}") from None
    return Entry.from_stat(path, st)


def check_target(dest: str) -> None:
    """A destination named alone (a stream's DEST): a folder target (an existing folder, or a name
    ending in '/') must be one or be creatable; a file target needs its folder."""
    if dest.endswith("/") or os.path.isdir(dest):
        _check_folder_target(dest)
    else:
        _check_parent(dest)


def _check_folder_target(dest: str) -> None:
    if os.path.isdir(dest):
        return
    if os.path.lexists(dest.rstrip("/") or "/"):  # 'file/' does not exist, 'file' does
        raise UsageError(f"target '{dest}' is not a folder")
    _check_parent(dest.rstrip("/") or "/")


def _check_parent(dest: str) -> None:
    # dirname, not normpath: 'link/../x' is x beside link's target, which only the kernel knows.
    parent = os.path.dirname(dest.rstrip("/")) or ("/" if dest.startswith("/") else ".")
    if not os.path.isdir(parent):
        raise UsageError(f"cannot create '{dest}': folder '{parent}' does not exist")


def _refuse_self_copy(src: Entry, dst: str) -> None:
    try:
        st = os.stat(dst)
    except OSError:
        st = None
    if st is not None and (st.st_dev, st.st_ino) == (src.dev, src.ino):
        raise UsageError(f"'{src.path}' and '{dst}' are the same file")
    if src.kind is Kind.DIR and _inside(dst, (src.dev, src.ino)):
        raise UsageError(f"cannot copy folder '{src.path}' into itself, '{dst}'")


def _inside(path: str, folder: tuple[int, int]) -> bool:
    """Whether ``path`` (existing or not) lies in the folder with this (dev, ino): its folders are
    compared by identity, not by name, so a symlink or a bind mount of the source is seen through."""
    probe = os.path.realpath(path)
    while True:
        try:
            st = os.stat(probe)
        except OSError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == folder:
            return True
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
