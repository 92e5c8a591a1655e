"""Include/exclude rules with rsync's matching semantics (see docs/filters.md).

Every rule is translated once into a regular expression over bytes, and all rules are joined into a
single alternation per entry kind (folder or not): the first alternative that matches is the first
matching rule, so one ``fullmatch`` call decides an entry. Matching is on bytes, like rsync's
``wildmatch``: ``?`` is one byte, not one character.

Each expression matches a *subject*: ``/`` + the path relative to the transfer root, plus a trailing
``/`` for folders. The leading ``/`` lets "at the start or after any slash" be written uniformly as
``.*/``; the trailing ``/`` is what rsync appends to a folder's name for ``dir/***`` rules.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zcp.errors import UsageError, ZcpError

_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()

_NEVER = rb"(?!)"
_SLASH = ord("/")
_ALL_BYTES = frozenset(range(1, 256))  # NUL cannot occur in a name

# rsync's [:class:] names, with ASCII (C locale) meanings.
_CTYPE_CLASSES: dict[bytes, frozenset[int]] = {
    name: frozenset(c for c in range(128) if test(c))
    for name, test in {
        b"alnum": lambda c: bytes([c]).isalnum(),
        b"alpha": lambda c: bytes([c]).isalpha(),
        b"blank": lambda c: c in b" \t",
        b"cntrl": lambda c: c < 32 or c == 127,
        b"digit": lambda c: bytes([c]).isdigit(),
        b"graph": lambda c: 33 <= c <= 126,
        b"lower": lambda c: bytes([c]).islower(),
        b"print": lambda c: 32 <= c <= 126,
        b"punct": lambda c: 33 <= c <= 126 and not bytes([c]).isalnum(),
        b"space": lambda c: c in b" \t\n\r\x0b\x0c",
        b"upper": lambda c: bytes([c]).isupper(),
        b"xdigit": lambda c: c in b"0123456789abcdefABCDEF",
    }.items()
}


@dataclass(frozen=True)
class Rule:
    """One --include/--exclude rule, compiled.

    ``file_regex`` / ``dir_regex`` match the subject of a non-folder / folder (see the module
    docstring); None means the rule can never match that kind of entry.
    """

    include: bool
    pattern: str
    dir_only: bool
    file_regex: bytes | None
    dir_regex: bytes | None

    @classmethod
    def parse(cls, include: bool, pattern: str) -> "Rule":
        raw = os.fsencode(pattern)
        dir_only = len(raw) > 1 and raw.endswith(b"/")
        if dir_only:
            raw = raw[:-1]
        regex = _rule_regex(raw)
        if regex is None:
            file_regex = dir_regex = None
        else:
            file_regex = None if dir_only else regex
            # rsync appends "/" to a folder's name only for "***"-suffixed rules; for the others
            # the subject's trailing "/" must be left over after the rule's own match.
            dir_regex = regex if raw.endswith(b"***") else b"(?:" + regex + b")/"
        return cls(include, pattern, dir_only, file_regex, dir_regex)


def _is_wild(raw: bytes) -> bool:
    return any(c in raw for c in b"*?[")


def _rule_regex(raw: bytes) -> bytes | None:
    """The subject regex of a pattern (trailing "/" already removed), or None if it never matches.

    Mirrors rsync's exclude.c rule_matches(): which part of the path a pattern is matched against
    depends on its leading "/", its slashes and its "**".
    """
    anchored = raw.startswith(b"/")
    body = raw[1:] if anchored else raw
    if _is_wild(raw):
        translated = _translate_wildcards(body)
        if translated is None:
            return None
        regex, matchable_slashes = translated
    else:  # rsync compares such a pattern literally: even a backslash is itself
        regex, matchable_slashes = re.escape(body), body.count(b"/")
    wild2 = b"**" in raw
    if anchored:
        return b"/" + regex
    if wild2 and raw.startswith(b"**"):
        return regex  # rsync matches it against "/" + path: exactly our subject
    if not wild2 and b"/" not in raw:
        # The final name. The atomic group takes the last "/" that has a name after it (a
        # folder's subject ends in "/") and never backtracks to earlier ones, which could not
        # match anyway: nothing in such a pattern matches a "/".
        return b"(?>.*/(?=.))" + regex
    if not wild2 and matchable_slashes != raw.count(b"/"):
        # rsync matches the last (slashes + 1) path elements; a "/" inside a [...] class counts
        # as a slash there but can never match one, so such a rule never matches anything.
        return None
    # With a "/": the end of the path on component boundaries ("a/b" matches "a/b" and "x/a/b");
    # with an inner "**": anywhere from the start or after any slash. Both are this.
    return b".*/" + regex


def _translate_wildcards(pat: bytes) -> tuple[bytes, int] | None:
    """rsync's wildmatch syntax as a regex, and how many "/" it can match (None: never matches)."""
    out: list[bytes] = []
    slashes = 0
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if c == ord("*"):
            stars = i
            while i < n and pat[i] == ord("*"):
                i += 1
            out.append(rb".*" if i - stars > 1 else rb"[^/]*")
            continue
        if c == ord("?"):
            out.append(rb"[^/]")
        elif c == ord("["):
            parsed = _parse_class(pat, i + 1)
            if parsed is None:
                return None
            members, i = parsed
            out.append(_byte_class(members - {_SLASH}))
        else:
            if c == ord("\\"):
                i += 1
                if i == n:  # a trailing backslash never matches in rsync
                    return None
                c = pat[i]
            out.append(re.escape(bytes([c])))
            slashes += c == _SLASH
        i += 1
    return b"".join(out), slashes


def _parse_class(pat: bytes, i: int) -> tuple[frozenset[int], int] | None:
    """The bytes a "[...]" starting at ``pat[i]`` (just past "[") matches, and the index of its "]".

    A line-by-line port of the class branch of rsync's dowild(), quirks included: a "]" first is a
    member, "-" first or last is literal, "[:name:]" classes, "\\" escapes, "!" or "^" negates.
    None when the class is unterminated or names an unknown class (rsync then never matches).
    """

    def at(k: int) -> int:
        return pat[k] if k < len(pat) else 0

    members: set[int] = set()
    p_ch = at(i)
    negated = p_ch in (ord("!"), ord("^"))
    if negated:
        i += 1
        p_ch = at(i)
    prev_ch = 0
    while True:
        if not p_ch:
            return None
        if p_ch == ord("\\"):
            i += 1
            p_ch = at(i)
            if not p_ch:
                return None
            members.add(p_ch)
        elif p_ch == ord("-") and prev_ch and at(i + 1) and at(i + 1) != ord("]"):
            i += 1
            p_ch = at(i)
            if p_ch == ord("\\"):
                i += 1
                p_ch = at(i)
                if not p_ch:
                    return None
            members.update(range(prev_ch, p_ch + 1))
            p_ch = 0  # a range's end cannot start another range
        elif p_ch == ord("[") and at(i + 1) == ord(":"):
            start = end = i + 2
            while at(end) and at(end) != ord("]"):
                end += 1
            if not at(end):
                return None
            if end - start - 1 < 0 or pat[end - 1] != ord(":"):
                members.add(p_ch)  # no ":]": a plain "[", scanning resumes at the ":"
            else:
                named = _CTYPE_CLASSES.get(pat[start : end - 1])
                if named is None:
                    return None
                members |= named
                i = end
                p_ch = 0
        else:
            members.add(p_ch)
        prev_ch = p_ch
        i += 1
        p_ch = at(i)
        if p_ch == ord("]"):
            break
    chosen = _ALL_BYTES - members if negated else frozenset(members)
    return chosen, i


def _byte_class(members: frozenset[int]) -> bytes:
    if not members:
        return _NEVER
    ordered = sorted(members)
    ranges: list[bytes] = []
    start = ordered[0]
    for byte, following in zip(ordered, [*ordered[1:], -1]):
        if following != byte + 1:
            ranges.append(b"\\x%02x-\\x%02x" % (start, byte))
            start = following
    return b"[" + b"".join(ranges) + b"]"


_Matcher = Callable[[bytes], "re.Match[bytes] | None"]


def _combine(alternatives: list[tuple[bytes, bool]]) -> tuple[_Matcher, tuple[bool, ...]]:
    """One regex whose k-th group is the k-th alternative, and the exclude verdict per group."""
    if not alternatives:
        return re.compile(_NEVER).fullmatch, (False,)
    joined = b"|".join(b"(" + regex + b")" for regex, _ in alternatives)
    excluded_by_group = (False, *(not include for _, include in alternatives))
    return re.compile(joined, re.DOTALL).fullmatch, excluded_by_group


class Filters:
    """An ordered rule list: the first rule matching an entry decides; no match includes it."""

    def __init__(self, rules: Sequence[Rule]):
        self.rules = tuple(rules)
        self._match_file, self._file_verdicts = _combine(
            [(r.file_regex, r.include) for r in self.rules if r.file_regex is not None]
        )
        self._match_dir, self._dir_verdicts = _combine(
            [(r.dir_regex, r.include) for r in self.rules if r.dir_regex is not None]
        )

    @classmethod
    def build(cls, rules: Sequence[tuple[bool, str]]) -> "Filters":
        """Rules in command-line order: (True, pattern) for --include, (False, pattern) for --exclude.

        Like rsync: a "+ " or "- " prefix overrides the kind, "!" clears the rules so far, and an
        empty pattern is ignored.
        """
        parsed: list[Rule] = []
        for include, text in rules:
            if not text:
                continue
            if text == "!":
                parsed.clear()
                continue
            pattern = text
            if text[:2] in ("+ ", "- "):
                include, pattern = text[0] == "+", text[2:]
                if not pattern:
                    raise UsageError(f"unexpected end of filter rule: {text!r}")
            parsed.append(Rule.parse(include, pattern))
        return cls(parsed)

    @staticmethod
    def read_rules_file(path: str, include: bool) -> list[tuple[bool, str]]:
        """The patterns of an --include-from / --exclude-from file, one a line.

        Lines end at "\\n" or "\\r" (so CRLF files work); empty lines and lines starting with ";"
        or "#" are skipped; nothing is stripped, as in rsync.
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            kind = "include" if include else "exclude"
            raise ZcpError(f"cannot read {kind} file {path}: {exc.strerror}") from exc
        return [
            (include, os.fsdecode(line))
            for line in re.split(rb"[\r\n]", data)
            if line and line[:1] not in (b";", b"#")
        ]

    def as_options(self) -> list[str]:
        """The rules as command-line options that build these Filters again (for a remote zcp):
        the "+ "/"- " prefix says the kind, whatever the pattern looks like."""
        return [f"--include=+ {r.pattern}" if r.include else f"--exclude=- {r.pattern}" for r in self.rules]

    def excluded(self, rel: str, is_dir: bool) -> bool:
        """Whether the entry at ``rel`` ("/"-separated, relative to the transfer root) is excluded."""
        if is_dir:
            found = self._match_dir(f"/{rel}/".encode(_FS_ENCODING, _FS_ERRORS))
            return found is not None and self._dir_verdicts[found.lastindex]
        found = self._match_file(f"/{rel}".encode(_FS_ENCODING, _FS_ERRORS))
        return found is not None and self._file_verdicts[found.lastindex]

    def __bool__(self) -> bool:
        return bool(self.rules)
