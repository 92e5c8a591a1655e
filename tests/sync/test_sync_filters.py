"""Include/exclude rules through the CLI, checked against what rsync makes of the same rules and trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_support import Link, build, call_zcp, contents, rsync

# "build" is a file at the top; the folder named build lives below src/
TREE = {
    "top.txt": b"top",
    "main.c": b"int main;",
    "main.o": b"obj",
    "build": b"a file named build",
    "build.txt": b"not a folder",
    "src/build/out.o": b"obj",
    "src/build/log.txt": b"log",
    "src/lib/util.c": b"util",
    "src/lib/util.o": b"obj",
    "src/lib/deep/top.txt": b"deep top",
    "src/lib/deep/x.txt": b"x",
    "docs/top.txt": b"docs top",
    "docs/guide/a.md": b"a",
    "empty/": None,
    "link-to-c": Link("main.c"),
    "link.o": Link("main.o"),
}

CASES = {
    "suffix": ["--exclude", "*.o"],
    "folders-only": ["--exclude", "build/"],
    "anchored": ["--exclude", "/top.txt"],
    "unanchored": ["--exclude", "top.txt"],
    "double-star": ["--exclude", "src/**/x.txt"],
    "double-star-prefix": ["--exclude", "**/deep/*"],
    "include-before-exclude-all": ["--include", "*/", "--include", "*.c", "--exclude", "*"],
    "exclude-before-include-wins": ["--exclude", "*.c", "--include", "*.c"],
    "include-before-exclude-wins": ["--include", "main.c", "--exclude", "*.c"],
    "equals-form-in-order": ["--include=main.c", "--exclude=*.c", "--exclude=*.o"],
    "anchored-folder": ["--exclude", "/src/lib/"],
    "question-and-class": ["--exclude", "util.?", "--exclude", "[a-m]*.md"],
}


def _both(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], existing: dict | None = None) -> tuple[dict, dict]:
    """The destination zcp makes and the one rsync makes, from the same tree and arguments."""
    src = build(tmp_path / "src", TREE)
    ours, theirs = tmp_path / "zcp", tmp_path / "rsync"
    for dst in (ours, theirs):
        build(dst, existing or {})
    done = rsync("-a", *args, f"{src}/", f"{theirs}/")
    assert done.returncode == 0, done.stderr
    result = call_zcp(capsys, "-a", *args, f"{src}/", ours)
    assert (result.code, result.err) == (0, "")
    return contents(ours), contents(theirs)


@pytest.mark.parametrize("args", CASES.values(), ids=CASES.keys())
def test_filters_keep_what_rsync_keeps(tmp_path, capsys, args):
    ours, theirs = _both(tmp_path, capsys, args)
    assert ours == theirs


def test_folder_only_rule_keeps_a_file_of_that_name(tmp_path, capsys):
    ours, _ = _both(tmp_path, capsys, ["--exclude", "build/"])
    assert ours["build"] == b"a file named build"
    assert not any(rel.startswith("src/build") for rel in ours)


def test_anchored_rule_matches_only_at_the_top(tmp_path, capsys):
    anchored, _ = _both(tmp_path / "a", capsys, ["--exclude", "/top.txt"])
    anywhere, _ = _both(tmp_path / "b", capsys, ["--exclude", "top.txt"])
    assert "top.txt" not in anchored and {"docs/top.txt", "src/lib/deep/top.txt"} <= set(anchored)
    assert not any(rel.endswith("top.txt") for rel in anywhere)


def test_first_matching_rule_wins(tmp_path, capsys):
    include_first, _ = _both(tmp_path / "a", capsys, ["--include", "main.c", "--exclude", "*.c"])
    exclude_first, _ = _both(tmp_path / "b", capsys, ["--exclude", "*.c", "--include", "main.c"])
    assert "main.c" in include_first and "src/lib/util.c" not in include_first
    assert "main.c" not in exclude_first


def test_rule_order_is_kept_across_options_and_files(tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.write_text("# comment\n*.md\ntop.txt\n")
    # include /top.txt, then the file's excludes (which also match top.txt), then an include for *.md
    # that comes too late to win: the order on the command line, not per option, must decide
    args = ["--include", "/top.txt", "--exclude-from", str(rules), "--include", "*.md", "--exclude", "*.o"]
    ours, theirs = _both(tmp_path / "t", capsys, args)
    assert ours == theirs
    assert "top.txt" in ours and "docs/top.txt" not in ours and "docs/guide/a.md" not in ours


def test_include_from_file_before_exclude_all(tmp_path, capsys):
    rules = tmp_path / "keep"
    rules.write_text("*/\n*.c\n")
    args = ["--include-from", str(rules), "--exclude", "*"]
    ours, theirs = _both(tmp_path / "t", capsys, args)
    assert ours == theirs
    assert {rel for rel, what in ours.items() if what is not None} == {"main.c", "src/lib/util.c"}


@pytest.mark.parametrize("extra_args", [["--delete"], ["--delete-excluded"]], ids=["delete", "delete-excluded"])
def test_deletion_with_filters_matches_rsync(tmp_path, capsys, extra_args):
    existing = {"old.o": b"obj", "src/build/stale": b"stale", "gone.txt": b"gone", "docs/old.md": b"md",
                "src/lib/util.o": b"obj in the destination"}
    args = [*extra_args, "--exclude", "*.o", "--exclude", "build/", "--exclude", "*.md"]
    ours, theirs = _both(tmp_path, capsys, args, existing)
    assert ours == theirs
