"""`zcp hash` (xxh3-128 lists in xxhsum -H2's format, and checking them) and `zcp check` (two trees
compared by content, like rclone check).

zcp.cli.app imports this module at every start to know the subcommands, so only typer and
zcp.errors are imported here; the hashing modules are loaded when a subcommand runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Annotated

import typer

from zcp.errors import BrokenPipe, ExitCode, FileError, UsageError, ZcpError, describe

HASH_HELP = """Print the xxh3-128 of files as xxhsum -H2 does, or check such a list.

  zcp hash [OPTIONS] PATH...

  zcp hash -c [OPTIONS] LIST...

One line per file: 32 hex digits, two spaces, the name; xxhsum -H2 -c reads it. A PATH of - is standard input.
With -r, folders give their regular files in name order (symlinks below them are not followed).

With -c, each file a LIST names (relative to the current folder) is hashed again and shown as OK,
FAILED, or FAILED open or read (the reason on standard error). A malformed line is named by its
number and stops its list before any file is hashed.

Exit codes: 0 ok; 1 usage, or with -c a mismatch, an unreadable file or a bad list; 23 some PATHs
could not be hashed. A file named hash is copied with zcp ./hash DST."""

CHECK_HELP = """Compare two trees by content (xxh3-128), without copying.

  zcp check [OPTIONS] SRC DST

One line per difference, in name order: missing: NAME (only in SRC), extra: NAME (only in DST),
differ: NAME (other content or link target), type: NAME (different kinds, such as a file and a
folder), error: NAME: REASON (could not be read); then a count on standard error. Files are
compared by content, symlinks by target (not followed; SRC and DST themselves are), FIFOs, sockets
and devices by kind only; a trailing / changes nothing.

Exit codes: 0 the trees are equal; 1 they differ (as with diff), or usage; 11 SRC or DST does not
exist or cannot be resolved; 23 some entries (a root folder's listing included) could not be read.
A file named check is copied with zcp ./check DST."""

_CONTEXT = {"help_option_names": ["-h", "--help"]}
hash_app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
check_app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@hash_app.command(help=HASH_HELP, context_settings=_CONTEXT)
def hash_command(
    paths: Annotated[list[str], typer.Argument(metavar="PATH", show_default=False, help="Files to hash, - for standard input; with -c, lists.")],
    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Hash the regular files below folders.")] = False,
    check: Annotated[bool, typer.Option("-c", "--check", help="Read checksum lists and check the files they name.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="With -c, print only failures.")] = False,
) -> int:
    if check and recursive:
        raise UsageError("-r does not go with -c: a list names each file")
    if quiet and not check:
        raise UsageError("--quiet only goes with -c")
    with _Stdout() as out:
        return _check_lists(paths, quiet, out) if check else _hash_paths(paths, recursive, out)


@check_app.command(help=CHECK_HELP, context_settings=_CONTEXT)
def check_command(
    src: Annotated[str, typer.Argument(metavar="SRC", show_default=False, help="The tree (or file) to compare.")],
    dst: Annotated[str, typer.Argument(metavar="DST", show_default=False, help="The tree (or file) to compare it with.")],
    json_lines: Annotated[bool, typer.Option("--json", help="Print one JSON object per difference instead (NDJSON).")] = False,
) -> int:
    import json

    from zcp.cli.output import count_of, human_bytes, printable
    from zcp.treecheck import compare_trees, to_json

    hashed = 0

    def count(nbytes: int) -> None:
        nonlocal hashed
        hashed += nbytes

    differences = errors = 0
    with _Stdout() as out:
        try:
            # compare_trees reports every failure below the roots as a Difference: an OSError
            # out of it means a root could not be resolved or read.
            for diff in compare_trees(src, dst, count):
                differences += 1
                if diff.kind == "error":
                    errors += 1
                if json_lines:
                    out.write(json.dumps(to_json(diff)).encode() + b"\n")
                else:
                    reason = f": {diff.detail}" if diff.kind == "error" else ""
                    out.write(os.fsencode(printable(f"{diff.kind}: {diff.rel}{reason}")) + b"\n")
        except OSError as exc:
            raise ZcpError(describe(exc)) from None
    print(f"{count_of(differences, 'difference')}, {human_bytes(hashed)} hashed", file=sys.stderr)
    if errors:
        return ExitCode.PARTIAL
    return ExitCode.USAGE if differences else ExitCode.OK  # 1: differ, as diff(1) says it


def _hash_paths(paths: list[str], recursive: bool, out: _Stdout) -> int:
    from zcp.hashing import hash_fd, hash_path
    from zcp.hashlist import format_line

    failed = 0

    def fail(message: str) -> None:
        nonlocal failed
        failed += 1
        _note(message)

    for operand in paths:
        walk = recursive and operand != "-" and os.path.isdir(operand)
        names = _regular_files(operand, fail) if walk else [operand]
        for name in names:
            try:
                # Operands are followed like xxhsum does; symlinks met by -r never get here.
                digest = hash_fd(sys.stdin.fileno()) if name == "-" else hash_path(name, follow_symlinks=True)
            except IsADirectoryError as exc:
                fail(f"{describe(exc)} (-r hashes the files below it)")
                continue
            except (OSError, FileError) as exc:
                fail(describe(exc))
                continue
            out.write(os.fsencode(format_line(digest, name)))
    return ExitCode.PARTIAL if failed else ExitCode.OK


def _regular_files(top: str, fail: Callable[[str], None]) -> Iterator[str]:
    """Paths of the regular files below folder ``top``, depth first in byte order of names."""
    stack: list[tuple[str, bool]] = [(top, True)]  # (path, is a folder); popped in name order
    while stack:
        path, is_dir = stack.pop()
        if not is_dir:
            yield path
            continue
        try:
            with os.scandir(path) as entries:
                found = [(e.name, e.path, e.is_dir(follow_symlinks=False)) for e in entries
                         if e.is_dir(follow_symlinks=False) or e.is_file(follow_symlinks=False)]
        except OSError as exc:
            fail(describe(exc))
            continue
        found.sort(key=lambda item: os.fsencode(item[0]), reverse=True)
        stack.extend((child, child_is_dir) for _, child, child_is_dir in found)


def _check_lists(lists: list[str], quiet: bool, out: _Stdout) -> int:
    from zcp.cli.output import count_of, printable
    from zcp.hashlist import MalformedLine, check_list, parse_lines

    bad_lists = unreadable = mismatched = 0
    for list_name in lists:
        shown = "standard input" if list_name == "-" else list_name
        try:
            entries = list(parse_lines(os.fsdecode(_read_all(list_name))))
        except (OSError, MalformedLine) as exc:
            _note(describe(exc) if isinstance(exc, OSError) else f"{shown}: {exc}")
            bad_lists += 1
            continue
        if not entries:
            _note(f"{shown}: no checksum lines")
            bad_lists += 1
        for entry in entries:
            [result] = check_list([entry])  # one at a time, so that each line shows when it is known
            name = printable(result.name)
            if result.status == "OK":
                if not quiet:
                    out.write(f"{name}: OK\n".encode())
            elif result.status == "FAILED":
                mismatched += 1
                out.write(f"{name}: FAILED\n".encode())
            else:  # MISSING or ERROR: the reason goes to stderr, as sha256sum -c does
                unreadable += 1
                _note(result.detail)
                out.write(f"{name}: FAILED open or read\n".encode())
    if unreadable:
        _note(f"WARNING: {count_of(unreadable, 'listed file')} could not be read")
    if mismatched:
        _note(f"WARNING: {count_of(mismatched, 'computed checksum')} did NOT match")
    # 1, as sha256sum -c and xxhsum -c exit when a check fails
    return ExitCode.USAGE if bad_lists or unreadable or mismatched else ExitCode.OK


def _read_all(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def _note(message: str) -> None:
    """One line on stderr, made safe for a terminal."""
    from zcp.cli.output import printable

    print(f"zcp: {printable(message)}", file=sys.stderr)


class _Stdout:
    """Standard output as bytes, since names may not be UTF-8. Lines reach a terminal at once; a
    reader that goes away ends the run with BrokenPipe."""

    def __init__(self) -> None:
        self.stream = sys.stdout.buffer
        self.eager = sys.stdout.isatty()

    def __enter__(self) -> _Stdout:
        sys.stdout.flush()  # anything printed as text goes first
        return self

    def write(self, lines: bytes) -> None:
        try:
            self.stream.write(lines)
            if self.eager:
                self.stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        from zcp.cli.output import detach_stdout

        detach_stdout()
        raise BrokenPipe("the reader of standard output went away")
