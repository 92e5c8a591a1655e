"""hashlist: byte-compatible with xxhsum -H2 both ways, escaping like coreutils, xxhsum -c's parsing rules."""

from __future__ import annotations

import os
import subprocess

import pytest
import xxhash

from conftest import need_tool
from zcp import hashing
from zcp.hashlist import CheckResult, MalformedLine, check_list, format_line, parse_lines

# Names every xxhsum prints verbatim (no backslash, newline or carriage return).
PLAIN_NAMES = [
    "plain",
    "sp ace",
    "  leading",
    "trailing ",
    "tab\tname",
    "star*",
    "x) = y",
    "#not a comment",
    "ünïcödé",
    os.fsdecode(b"latin1-\xe9\xff"),
]
ESCAPED_NAMES = ["back\\slash", "new\nline", "cr\rname", "all\\\n\r"]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_files(names: list[str]) -> dict[str, bytes]:
    digests = {}
    for i, name in enumerate(names):
        data = os.urandom(i * 100)
        with open(name, "wb") as f:
            f.write(data)
        digests[name] = xxhash.xxh3_128_digest(data)
    return digests


def our_list(digests: dict[str, bytes]) -> bytes:
    return os.fsencode("".join(format_line(digest, name) for name, digest in digests.items()))


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=stdin, capture_output=True)


def test_our_lines_are_xxhsums_bytes(in_tmp):
    xxhsum = need_tool("xxhsum")
    digests = make_files(PLAIN_NAMES)
    printed = run(xxhsum, "-H2", "--", *PLAIN_NAMES)
    assert printed.returncode == 0
    assert printed.stdout == our_list(digests)


def test_xxhsum_checks_our_list(in_tmp):
    xxhsum = need_tool("xxhsum")
    digests = make_files(PLAIN_NAMES)
    (in_tmp / "list").write_bytes(our_list(digests))
    checked = run(xxhsum, "-H2", "--strict", "-c", "list")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(b": OK\n") == len(PLAIN_NAMES)


def test_we_read_xxhsums_list_and_check_it(in_tmp):
    xxhsum = need_tool("xxhsum")
    digests = make_files(PLAIN_NAMES)
    printed = run(xxhsum, "-H2", "--", *PLAIN_NAMES).stdout
    parsed = list(parse_lines(os.fsdecode(printed)))
    assert parsed == [(digests[name], name) for name in PLAIN_NAMES]
    assert check_list(parsed) == [CheckResult(name, "OK") for name in PLAIN_NAMES]


@pytest.mark.parametrize("flags", [["--tag"], ["--tag", "--little-endian"]])
def test_we_read_xxhsums_bsd_lines(in_tmp, flags):
    xxhsum = need_tool("xxhsum")
    digests = make_files(PLAIN_NAMES)
    printed = run(xxhsum, "-H2", *flags, "--", *PLAIN_NAMES).stdout
    assert list(parse_lines(os.fsdecode(printed))) == [(digests[name], name) for name in PLAIN_NAMES]


def test_escaping_follows_coreutils(in_tmp):
    """xxhsum 0.8.2+ escapes like coreutils: check against sha256sum's lines, digest swapped."""
    sha256sum = need_tool("sha256sum")
    digests = make_files(ESCAPED_NAMES)
    for name, digest in digests.items():
        line = run(sha256sum, "--", name).stdout
        assert line.startswith(b"\\")
        ours = line.replace(line[1:65], hashing.hex_digest(digest).encode())  # sha256: 64 hex digits
        assert os.fsencode(format_line(digest, name)) == ours
    parsed = list(parse_lines(os.fsdecode(our_list(digests))))
    assert parsed == [(digest, name) for name, digest in digests.items()]


def test_backslash_names_with_the_installed_xxhsum(in_tmp):
    """xxhsum 0.8.1 prints backslash names raw, 0.8.2+ escapes them: we read both, and match the latter."""
    xxhsum = need_tool("xxhsum")
    name = "back\\slash"
    digest = make_files([name])[name]
    printed = run(xxhsum, "-H2", name).stdout
    assert list(parse_lines(os.fsdecode(printed))) == [(digest, name)]
    if printed.startswith(b"\\"):
        assert printed == os.fsencode(format_line(digest, name))
    else:
        assert printed == f"{hashing.hex_digest(digest)}  {name}\n".encode()


def test_format_line_rejects_a_short_digest():
    with pytest.raises(ValueError):
        format_line(b"\0" * 8, "x")


def test_parse_rules_of_xxhsum_c():
    digest = bytes(range(16))
    hex_digest = digest.hex()
    text = (
        "# a comment\n"
        f"{hex_digest}  a\n"
        f"{hex_digest.upper()} *binary marker\n"
        f"{hex_digest}  crlf\r\n"
        f"XXH128 (bsd (name)) = {hex_digest}\n"
        f"XXH128_LE (le) = {digest[::-1].hex()}\n"
        f"\\{hex_digest}  esc\\\\aped\\n"
    )
    assert list(parse_lines(text)) == [
        (digest, "a"),
        (digest, "binary marker"),
        (digest, "crlf\r"),
        (digest, "bsd (name)"),
        (digest, "le"),
        (digest, "esc\\aped\n"),
    ]
    assert list(parse_lines(f"{hex_digest}  no final newline")) == [(digest, "no final newline")]
    assert list(parse_lines("")) == []


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        "0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef  ",
        "0123456789abcdef  xxh64 line",
        "XXH3_0123456789abcdef  xxh3 line",
        "0123456789abcdef0123456789abcdeg  not hex",
        "0123456789abcdef 0123456789abcdef  space inside",
        "XXH64 (name) = 0123456789abcdef",
        "XXH128 (name) 0123456789abcdef0123456789abcdef",
        "\\0123456789abcdef0123456789abcdef  bad\\tescape",
        "\\0123456789abcdef0123456789abcdef  trailing\\",
        "0123456789abcdef0123456789abcdef  nul\0name",
    ],
)
def test_malformed_lines_name_their_line(bad):
    good = "0123456789abcdef0123456789abcdef  fine\n"
    lines = parse_lines(good + "# comment\n" + bad + "\n" + good)
    assert next(lines) == (bytes.fromhex("0123456789abcdef0123456789abcdef"), "fine")
    with pytest.raises(MalformedLine, match="^line 3: ") as caught:
        next(lines)
    assert caught.value.lineno == 3
    assert isinstance(caught.value, ValueError)


def test_check_list_statuses(in_tmp):
    digests = make_files(["same", "changed", "gone"])
    os.symlink("same", "link")
    os.mkdir("folder")
    with open("changed", "ab") as f:
        f.write(b"!")
    os.unlink("gone")
    entries = [(d, n) for n, d in digests.items()] + [
        (digests["same"], "link"),
        (digests["same"], "folder"),
        (digests["same"], "same/below"),
    ]
    results = check_list(entries)
    assert [(r.name, r.status) for r in results] == [
        ("same", "OK"),
        ("changed", "FAILED"),
        ("gone", "MISSING"),
        ("link", "OK"),  # like xxhsum -c, a listed symlink is followed
        ("folder", "ERROR"),
        ("same/below", "MISSING"),
    ]
    now = hashing.hash_path("changed")
    assert results[1].detail == f"expected {digests['changed'].hex()}, got {now.hex()}"
    assert "No such file" in results[2].detail
    assert "directory" in results[4].detail


def test_check_list_reports_a_file_that_changes_while_hashed(in_tmp, monkeypatch):
    digests = make_files(["a", "b"])

    def hash_while_appending(name: str) -> bytes:
        def append(_done: int) -> None:
            with open(name, "ab") as f:
                f.write(b"more")

        return hashing.hash_path(name, append)

    results = check_list([(d, n) for n, d in digests.items() if n == "b"], hash_while_appending)
    assert [(r.name, r.status) for r in results] == [("b", "ERROR")]
    assert "grew while it was hashed" in results[0].detail
