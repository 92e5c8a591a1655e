"""The checksum list of ``zcp hash``: the GNU-style lines of ``xxhsum -H2``, read like ``xxhsum -c``.

A line is ``<32 hex digits>  <name>\\n``. A name holding a backslash, newline or carriage return
is escaped the way xxhsum 0.8.2+ and GNU coreutils do it: the line starts with a backslash and
those characters become ``\\\\``, ``\\n`` and ``\\r`` (xxhsum 0.8.1 printed such names raw, which
breaks on newlines; its raw backslash lines still parse here, as a line without the leading
backslash is taken literally). The BSD form ``XXH128 (<name>) = <hex>`` (``xxhsum --tag``) and its
``XXH128_LE`` variant are read too. Lines starting with ``#`` are comments.

Names are str as os.fsdecode makes them: undecodable bytes are surrogate escapes. Callers read and
write list files as bytes with os.fsdecode / os.fsencode; lines end with ``\\n`` only, so a name
may hold any other character.
"""

from __future__ import annotations

import errno
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from zcp import hashing
from zcp.errors import FileError, describe

_HEX128 = re.compile(r"[0-9A-Fa-f]{32}")
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r"}
_MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})

Status = Literal["OK", "FAILED", "MISSING", "ERROR"]


class MalformedLine(ValueError):
    def __init__(self, lineno: int, reason: str):
        self.lineno = lineno
        super().__init__(f"line {lineno}: {reason}")


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str = ""


def format_line(digest: bytes, name: str) -> str:
    """One list line, with its ending newline, exactly as ``xxhsum -H2`` (0.8.2+) prints it."""
    if len(digest) != hashing.DIGEST_SIZE:
        raise ValueError(f"an xxh3-128 digest has {hashing.DIGEST_SIZE} bytes, not {len(digest)}")
    hex_digest = hashing.hex_digest(digest)
    if any(char in name for char in _ESCAPES):
        escaped = "".join(_ESCAPES.get(char, char) for char in name)
        return f"\\{hex_digest}  {escaped}\n"
    return f"{hex_digest}  {name}\n"


def parse_lines(text: str) -> Iterator[tuple[bytes, str]]:
    """(digest, name) for each checksum line; MalformedLine (a ValueError) names the first bad line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the ending newline of the last line
    for lineno, line in enumerate(lines, start=1):
        if line.startswith("#"):
            continue
        yield _parse_line(lineno, line)


def _parse_line(lineno: int, line: str) -> tuple[bytes, str]:
    escaped = line.startswith("\\")
    if escaped:
        line = line[1:]
    first_space = line.find(" ")
    if first_space < 0 or first_space + 1 == len(line):
        raise MalformedLine(lineno, "not a checksum line")
    if line[first_space + 1] == "(":
        hex_digest, name, little_endian = _split_bsd(lineno, line, first_space)
    else:
        hex_digest, name, little_endian = line[:first_space], line[first_space + 2 :], False
    if not _HEX128.fullmatch(hex_digest):
        raise MalformedLine(lineno, "not an XXH128 checksum (32 hex digits)")
    if escaped:
        name = _unescape(lineno, name)
    if not name:
        raise MalformedLine(lineno, "no file name")
    if "\0" in name:
        raise MalformedLine(lineno, "NUL in the file name")
    digest = bytes.fromhex(hex_digest)
    return (digest[::-1] if little_endian else digest), name


def _split_bsd(lineno: int, line: str, first_space: int) -> tuple[str, str, bool]:
    """``ALGO (name) = hex`` -> (hex, name, little endian)."""
    last_space = line.rfind(" ")
    if last_space - first_space < 5 or line[last_space - 3 : last_space] != ") =":
        raise MalformedLine(lineno, "not a checksum line")
    algorithm = line[:first_space]
    if algorithm not in ("XXH128", "XXH128_LE"):
        raise MalformedLine(lineno, f"{algorithm} is not XXH128")
    return line[last_space + 1 :], line[first_space + 2 : last_space - 3], algorithm == "XXH128_LE"


def _unescape(lineno: int, name: str) -> str:
    parts: list[str] = []
    chars = iter(name)
    for char in chars:
        if char == "\\":
            char = _UNESCAPES.get(next(chars, ""), "")
            if not char:
                raise MalformedLine(lineno, "bad backslash escape in the file name")
        parts.append(char)
    return "".join(parts)


_hash_listed = functools.partial(hashing.hash_path, follow_symlinks=True)  # as xxhsum -c opens names


def check_list(
    lines: Iterable[tuple[bytes, str]], hash_path: Callable[[str], bytes] = _hash_listed
) -> list[CheckResult]:
    """Hash each listed file (names relative to the current folder) and compare with its digest."""
    results: list[CheckResult] = []
    for expected, name in lines:
        try:
            actual = hash_path(name)
        except OSError as exc:
            status: Status = "MISSING" if exc.errno in _MISSING_ERRNOS else "ERROR"
            results.append(CheckResult(name, status, describe(exc)))
            continue
        except FileError as exc:
            results.append(CheckResult(name, "ERROR", describe(exc)))
            continue
        if actual == expected:
            results.append(CheckResult(name, "OK"))
        else:
            detail = f"expected {hashing.hex_digest(expected)}, got {hashing.hex_digest(actual)}"
            results.append(CheckResult(name, "FAILED", detail))
    return results
