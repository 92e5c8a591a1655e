"""Filters: one test table per rule form, plus rule-list parsing and rules files."""

from __future__ import annotations

import pytest

from zcp.errors import ExitCode, UsageError, ZcpError
from zcp.planner.filters import Filters, Rule

FILE, DIR = False, True


def excluded_by(pattern: str, rel: str, is_dir: bool) -> bool:
    return Filters.build([(False, pattern)]).excluded(rel, is_dir)


def check(pattern: str, table: list[tuple[str, bool, bool]]) -> None:
    got = [(rel, is_dir, excluded_by(pattern, rel, is_dir)) for rel, is_dir, _ in table]
    assert got == table


def test_no_rules_is_falsy_and_excludes_nothing():
    filters = Filters.build([])
    assert not filters
    assert not filters.excluded("a", FILE) and not filters.excluded("a", DIR)
    assert Filters.build([(False, "x")])


def test_name_without_slash_matches_the_final_component_at_any_depth():
    check(
        "core",
        [
            ("core", FILE, True),
            ("a/b/core", FILE, True),
            ("core", DIR, True),
            ("core/x", FILE, False),
            ("acore", FILE, False),
            ("core.1", FILE, False),
        ],
    )


def test_leading_slash_anchors_at_the_transfer_root():
    check(
        "/top.txt",
        [("top.txt", FILE, True), ("a/top.txt", FILE, False)],
    )
    check(
        "/a/b",
        [("a/b", FILE, True), ("x/a/b", FILE, False), ("a/b/c", FILE, False)],
    )


def test_infix_slash_matches_the_end_of_the_path_on_component_boundaries():
    check(
        "a/b",
        [
            ("a/b", FILE, True),
            ("x/a/b", FILE, True),
            ("x/y/a/b", DIR, True),
            ("xa/b", FILE, False),
            ("a/bc", FILE, False),
            ("a/b/c", FILE, False),
            ("b", FILE, False),
        ],
    )
    check("a/*.c", [("a/m.c", FILE, True), ("z/a/m.c", FILE, True), ("a/q/m.c", FILE, False)])


def test_trailing_slash_matches_only_folders():
    check("build/", [("build", DIR, True), ("x/build", DIR, True), ("build", FILE, False)])
    check("a/b/", [("x/a/b", DIR, True), ("a/b", FILE, False)])
    rule = Rule.parse(False, "build/")
    assert rule.dir_only and rule.file_regex is None


def test_single_star_stays_within_one_component():
    check(
        "*.o",
        [("m.o", FILE, True), ("src/m.o", FILE, True), (".o", FILE, True), ("m.c", FILE, False)],
    )
    check("/src/*", [("src/m", FILE, True), ("src/lib/m", FILE, False)])
    check("/*", [("a", FILE, True), ("a", DIR, True), ("a/b", FILE, False)])


def test_double_star_crosses_slashes():
    check(
        "src/**.c",
        [("src/m.c", FILE, True), ("src/lib/deep/m.c", FILE, True), ("x/src/l/m.c", FILE, True)],
    )
    check("**/deep/*.txt", [("deep/a.txt", FILE, True), ("x/y/deep/a.txt", FILE, True)])
    check("**.log", [("a.log", FILE, True), ("d/a.log", FILE, True), ("a.txt", FILE, False)])
    check("/**/x", [("x", FILE, False), ("a/x", FILE, True), ("a/b/x", FILE, True)])
    check("a**b", [("a/x/b", FILE, True), ("ab", FILE, True), ("xa/b", FILE, False)])


def test_question_mark_is_one_byte_but_never_a_slash():
    check(
        "?.txt",
        [("a.txt", FILE, True), ("ab.txt", FILE, False), (".txt", FILE, False)],
    )
    check("a?b", [("a/b", FILE, False), ("a-b", FILE, True)])
    # "é" is two bytes in UTF-8: rsync's "?" matches one byte, like ours.
    check("x?", [("xé", FILE, False), ("xa", FILE, True)])
    check("x??", [("xé", FILE, True)])


def test_triple_star_suffix_matches_the_folder_and_everything_inside():
    check(
        "keep/***",
        [
            ("keep", DIR, True),
            ("keep/a", FILE, True),
            ("keep/a/b", DIR, True),
            ("x/keep", DIR, True),
            ("keep", FILE, False),
            ("keeper", DIR, False),
        ],
    )
    check("/keep/***", [("keep", DIR, True), ("x/keep", DIR, False)])


@pytest.mark.parametrize(
    "pattern, matches, misses",
    [
        ("[ab]c", ["ac", "bc"], ["cc", "abc"]),
        ("[a-c]", ["a", "b", "c"], ["d", "-"]),
        ("[!a-c]", ["d", "-"], ["a", "/"]),
        ("[^a-c]", ["d"], ["b"]),
        ("[]x]", ["]", "x"], ["y"]),
        ("[x-]", ["x", "-"], ["y"]),
        ("[-x]", ["x", "-"], ["w"]),
        ("[a-c-e]", ["b", "-", "e"], ["d"]),
        ("[\\]]", ["]"], ["\\"]),
        ("[[:digit:]]", ["7"], ["x"]),
        ("[[:alpha:][:digit:]]", ["a", "Z", "7"], ["_"]),
        ("[[:upper:]]*", ["Readme"], ["readme"]),
        ("[[:space:]]", [" ", "\t", "\n"], ["x"]),
        ("[[:punct:]]", ["!", "_", "]"], ["a", " "]),
        ("[[:xdigit:]]", ["f", "F", "9"], ["g"]),
        ("[[:a]", ["[", ":", "a"], ["b"]),  # no ":]": a plain set holding "[", ":" and "a"
        ("[[]x", ["[x"], ["x"]),
        ("[é]", [], ["é"]),  # a class matches one byte, and "é" has two
    ],
)
def test_character_classes(pattern, matches, misses):
    filters = Filters.build([(False, pattern)])
    assert [filters.excluded(name, FILE) for name in matches] == [True] * len(matches)
    assert [filters.excluded(name, FILE) for name in misses] == [False] * len(misses)


@pytest.mark.parametrize(
    "pattern",
    ["[ab", "x[[:nope:]]", "*\\", "[a-\\", "a[/]b", "a/[!/]", "[!/]/x"],
    ids=["unterminated", "unknown-class", "trailing-backslash", "range-to-nothing",
         "slash-class", "negated-slash-class", "slash-class-counts-as-slash"],
)
def test_malformed_or_impossible_patterns_never_match(pattern):
    filters = Filters.build([(False, pattern)])
    names = ["ab", "[ab", "x", "a/b", "a/x", "ax", "x\\", "a", "[a-\\", "y/x", "x/y/x", "/"]
    assert [n for n in names if filters.excluded(n, FILE) or filters.excluded(n, DIR)] == []


def test_backslash_escapes_only_in_patterns_with_wildcards():
    check("star\\*", [("star*", FILE, True), ("starx", FILE, False)])
    check("\\[br\\]?", [("[br]x", FILE, True), ("b", FILE, False)])
    # Without "*", "?" or "[", rsync compares literally, so the backslash is itself.
    check("back\\slash", [("back\\slash", FILE, True), ("backslash", FILE, False)])


def test_names_with_any_bytes():
    check("a b/c d", [("x/a b/c d", FILE, True)])
    check("new\nline", [("new\nline", FILE, True), ("new", FILE, False)])
    check("*line", [("new\nline", FILE, True)])
    check("[br]", [("b", FILE, True), ("[br]", FILE, False)])
    check("x\udcff", [("d/x\udcff", FILE, True), ("x", FILE, False)])
    check("x*", [("x\udcff", FILE, True)])
    check("*", [("\udc80\n\t", DIR, True)])


def test_first_matching_rule_wins_and_no_match_means_included():
    filters = Filters.build([(True, "keep.o"), (False, "*.o"), (True, "*")])
    assert not filters.excluded("keep.o", FILE)
    assert filters.excluded("d/m.o", FILE)
    assert not filters.excluded("m.c", FILE)
    only_c = Filters.build([(True, "*/"), (True, "*.c"), (False, "*")])
    assert [only_c.excluded(*e) for e in [("d", DIR), ("d/m.c", FILE), ("d/m.h", FILE)]] == [
        False,
        False,
        True,
    ]


def test_a_folder_rule_earlier_in_the_list_decides_for_folders_only():
    filters = Filters.build([(True, "src/"), (False, "src")])
    assert not filters.excluded("src", DIR)
    assert filters.excluded("src", FILE)


def test_plus_and_minus_prefixes_override_the_option_kind():
    filters = Filters.build([(True, "- *.o"), (False, "+ keep/"), (False, "*")])
    assert [r.include for r in filters.rules] == [False, True, False]
    assert [r.pattern for r in filters.rules] == ["*.o", "keep/", "*"]
    assert filters.excluded("m.o", FILE) and not filters.excluded("keep", DIR)
    # Only "+ " and "- " with a space are prefixes.
    assert Filters.build([(False, "-x")]).rules[0].pattern == "-x"


def test_bang_clears_the_rules_so_far_and_empty_patterns_are_ignored():
    filters = Filters.build([(False, "*.o"), (True, "!"), (False, ""), (False, "*.c")])
    assert [r.pattern for r in filters.rules] == ["*.c"]
    assert not filters.excluded("m.o", FILE) and filters.excluded("m.c", FILE)
    assert not Filters.build([(False, "x"), (False, "!")])
    assert Filters.build([(False, "- !")]).excluded("!", FILE)


def test_a_prefix_without_a_pattern_is_a_usage_error():
    with pytest.raises(UsageError, match="unexpected end of filter rule"):
        Filters.build([(False, "+ ")])


def test_many_rules_compile_into_one_matcher():
    filters = Filters.build([(False, f"f{i}") for i in range(500)] + [(True, "*")])
    assert filters.excluded("d/f499", FILE) and not filters.excluded("d/f500", FILE)


def test_rules_file_skips_comments_and_blank_lines_and_keeps_spaces(tmp_path):
    path = tmp_path / "rules"
    path.write_bytes(b"# c\n; c\n\n*.o\r\n+ keep/\r a b \n\xff*\n #not a comment")
    assert Filters.read_rules_file(str(path), False) == [
        (False, "*.o"),
        (False, "+ keep/"),
        (False, " a b "),
        (False, "\udcff*"),
        (False, " #not a comment"),
    ]
    assert Filters.read_rules_file(str(path), True)[0] == (True, "*.o")


def test_rules_file_feeds_build(tmp_path):
    path = tmp_path / "rules"
    path.write_text("+ *.c\n*\n")
    filters = Filters.build(Filters.read_rules_file(str(path), False))
    assert not filters.excluded("m.c", FILE) and filters.excluded("m.h", FILE)


def test_unreadable_rules_file_ends_the_run_with_a_file_io_error(tmp_path):
    with pytest.raises(ZcpError, match="cannot read exclude file") as caught:
        Filters.read_rules_file(str(tmp_path / "missing"), False)
    assert caught.value.exit_code is ExitCode.FILE_IO
