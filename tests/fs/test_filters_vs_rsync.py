"""Oracle test: for each filter set, the entries our Filters keep (walking with pruning, as the
planner does) are exactly the entries ``rsync -a --dry-run`` would transfer."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import need_tool
from zcp.planner.filters import Filters

INC, EXC = True, False

# Files (and, ending in "/", empty folders) of the source tree; names chosen to hit every rule form.
TREE_FILES = [
    "top.txt",
    "a/b",
    "a/b.c",
    "a/sub/top.txt",
    "a/sub/deep/x.txt",
    "a/bx/c.txt",
    "x/a/b",
    "xa/b",
    "build/out.o",
    "build/keep.c",
    "src/build",
    "src/main.c",
    "src/main.o",
    "src/lib/util.c",
    "src/lib/util.h",
    "src/lib/deep/x.txt",
    "keep/inner/k.txt",
    "keep/k2.txt",
    "keeper/k.txt",
    "dir/inner/f.txt",
    "dir/other.txt",
    ".hidden/file",
    ".dotfile",
    "a b/c d.txt",
    "new\nline",
    "tab\there",
    "[br]",
    "b",
    "star*",
    "q?",
    "back\\slash",
    "x\udcff",  # a byte that is not UTF-8
    "xé",
    "é/e.log",
    "logs/app.log",
    "logs/2024/app.log",
    "logs/2024/12/app.log",
    "-dash",
    "1digit",
    "Upper.TXT",
    "]x",
    "empty/",
]
SYMLINKS = {"link": "src", "file-link": "top.txt"}

CASES = {
    "suffix": [(EXC, "*.o")],
    "dir-only": [(EXC, "build/")],
    "no-trailing-slash-matches-both": [(EXC, "build")],
    "anchored": [(EXC, "/top.txt")],
    "basename-any-depth": [(EXC, "top.txt")],
    "infix-slash-component-boundary": [(EXC, "a/b")],
    "infix-slash-wildcard": [(EXC, "a/*.c")],
    "infix-slash-dir-only": [(EXC, "a/b*/")],
    "anchored-wildcard-dirs": [(EXC, "/*/")],
    "anchored-deep": [(EXC, "/src/lib")],
    "double-star-prefix": [(EXC, "**/deep/*.txt")],
    "double-star-bare-prefix": [(EXC, "**.log")],
    "double-star-infix": [(EXC, "logs/**.log")],
    "double-star-infix-slash": [(EXC, "logs/**/app.log")],
    "double-star-anchored": [(EXC, "/**/x.txt")],
    "double-star-trailing": [(EXC, "src/**")],
    "triple-star": [(INC, "keep/***"), (EXC, "*")],
    "triple-star-anchored": [(INC, "/src/***"), (EXC, "*")],
    "only-c-files": [(INC, "*/"), (INC, "*.c"), (EXC, "*")],
    "include-inside-excluded-folder": [(EXC, "dir"), (INC, "dir/inner/***")],
    "include-before-exclude": [(INC, "dir/inner/***"), (EXC, "dir/*")],
    "exclude-all-but-one-file": [(INC, "src/main.c"), (EXC, "*")],
    "question-mark": [(EXC, "?.txt"), (EXC, "q?"), (EXC, "?")],
    "question-mark-is-one-byte": [(EXC, "x?")],
    "two-bytes": [(EXC, "x??")],
    "non-utf8-name": [(EXC, "x\udcff")],
    "class": [(EXC, "[ab]*")],
    "class-negated-range": [(EXC, "[!a-m]*")],
    "class-caret": [(EXC, "[^a-s]*")],
    "class-named": [(EXC, "[[:digit:][:upper:]]*")],
    "class-bracket-first": [(EXC, "[]x]*")],
    "class-dash-last": [(EXC, "[x-]*")],
    "class-with-slash-never-matches": [(EXC, "a[/]b"), (EXC, "a/[!/]")],
    "escaped-wildcards": [(EXC, "star\\*"), (EXC, "\\[br\\]"), (EXC, "q\\?")],
    "bracket-literal-via-class": [(EXC, "[[]br]")],
    "literal-backslash": [(EXC, "back\\slash")],
    "trailing-backslash-never-matches": [(EXC, "b*\\")],
    "space-and-newline": [(EXC, "c d.txt"), (EXC, "new\nline"), (EXC, "tab\t*")],
    "dotfiles": [(EXC, ".*")],
    "all-folders": [(EXC, "*/")],
    "symlink-is-not-a-folder": [(EXC, "link/"), (EXC, "file-link/")],
    "symlink-by-name": [(EXC, "link")],
    "empty-folder": [(EXC, "empty/")],
    "prefix-overrides-kind": [(INC, "- *.o"), (EXC, "+ build/"), (EXC, "build/*")],
    "clear": [(EXC, "*.o"), (EXC, "!"), (EXC, "*.c")],
    "first-match-wins": [(INC, "*.o"), (EXC, "build/"), (EXC, "*.o")],
}


def make_tree(root: Path) -> None:
    for rel in TREE_FILES:
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    for name, target in SYMLINKS.items():
        (root / name).symlink_to(target)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("filters") / "src"
    make_tree(src)
    return src


def kept_by_filters(src: Path, filters: Filters) -> set[str]:
    """What our planner would transfer: folders as "rel/", excluded folders pruned."""
    kept: set[str] = set()
    for top, dirnames, filenames in os.walk(src):
        rel_top = os.path.relpath(top, src)
        prefix = "" if rel_top == "." else rel_top + "/"
        descend = []
        for name in dirnames + filenames:
            rel = prefix + name
            is_dir = name in dirnames and not os.path.islink(os.path.join(top, name))
            if filters.excluded(rel, is_dir):
                continue
            kept.add(rel + "/" if is_dir else rel)
            if is_dir:
                descend.append(name)
        dirnames[:] = descend
    return kept


def _unescape_rsync(line: bytes) -> str:
    """rsync prints control characters (and a literal backslash before "#ddd") as "\\#ooo"."""
    return os.fsdecode(re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m[1], 8)]), line))


def kept_by_rsync(src: Path, dst: Path, args: list[str]) -> set[str]:
    rsync = need_tool("rsync")
    done = subprocess.run(
        [rsync, "-a", "-8", "--dry-run", "--out-format=%n", *args, f"{src}/", f"{dst}/"],
        capture_output=True,
        check=True,
    )
    return {_unescape_rsync(line) for line in done.stdout.split(b"\n") if line and line != b"./"}


def rsync_args(rules: list[tuple[bool, str]]) -> list[str]:
    return [f"--{'include' if include else 'exclude'}={pattern}" for include, pattern in rules]


def test_tree_is_listed_whole_without_rules(tree, tmp_path):
    ours = kept_by_filters(tree, Filters.build([]))
    assert ours == kept_by_rsync(tree, tmp_path, [])
    assert "x\udcff" in ours and "new\nline" in ours and "empty/" in ours and "link" in ours


@pytest.mark.parametrize("rules", list(CASES.values()), ids=list(CASES))
def test_same_entries_as_rsync(tree, tmp_path, rules):
    expected = kept_by_rsync(tree, tmp_path, rsync_args(rules))
    assert kept_by_filters(tree, Filters.build(rules)) == expected


def test_exclude_from_file_like_rsync(tree, tmp_path):
    rules_file = tmp_path / "rules"
    rules_file.write_bytes(
        b"# comment\r\n; another\r\n\r\n+ src/***\r\n*.o\r\n- build/\n"
        b"keep/\n+ */\n+ *.c\n*\n"
    )
    dst = tmp_path / "dst"
    dst.mkdir()
    expected = kept_by_rsync(tree, dst, [f"--exclude-from={rules_file}"])
    ours = kept_by_filters(tree, Filters.build(Filters.read_rules_file(str(rules_file), False)))
    assert ours == expected
    assert "src/main.o" in ours and "a/b.c" in ours and "keep/" not in ours  # the file did filter
