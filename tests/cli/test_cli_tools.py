"""`zcp hash` and `zcp check` through the real command line: xxhsum agrees both ways, odd names survive,
every status has its line and its exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash
from cli_support import Result, assert_one_error_line, call_zcp, run_zcp

from conftest import need_tool
from zcp.errors import ExitCode

# Names that xxhsum 0.8.1 prints verbatim, as bytes: spaces, a tab, UTF-8, and bytes that are not UTF-8.
PLAIN_NAMES = [b"plain", b"sp ace", b"  lead", b"tab\tname", "\u00fcn\u00efc\u00f6d\u00e9".encode(), b"latin1-\xe9\xff"]
# Names a list line has to escape (xxhsum 0.8.2+ and coreutils style).
ESCAPED_NAMES = [b"new\nline", b"back\\slash", b"cr\rname"]


def zcp(*args: str | bytes | os.PathLike, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """zcp as a child process, every byte of its output kept."""
    return subprocess.run([sys.executable, "-m", "zcp", *args], cwd=cwd, input=stdin, capture_output=True, timeout=60)


def make_files(folder: Path, names: list[bytes]) -> dict[bytes, bytes]:
    """Files with distinct contents; name -> xxh3-128 digest."""
    digests = {}
    for i, name in enumerate(names):
        data = os.urandom(i * 37 + 1)
        (folder / os.fsdecode(name)).write_bytes(data)
        digests[name] = xxhash.xxh3_128_digest(data)
    return digests


def line(digest: bytes, name: bytes) -> bytes:
    return digest.hex().encode() + b"  " + name + b"\n"


# --- zcp hash ---------------------------------------------------------------------------------


def test_hash_prints_what_xxhsum_prints(tmp_path):
    xxhsum = need_tool("xxhsum")
    digests = make_files(tmp_path, PLAIN_NAMES)
    ours = zcp("hash", "--", *PLAIN_NAMES, cwd=tmp_path)
    assert (ours.returncode, ours.stderr) == (0, b"")
    assert ours.stdout == b"".join(line(d, n) for n, d in digests.items())
    assert ours.stdout == subprocess.run([xxhsum, "-H2", "--", *PLAIN_NAMES], cwd=tmp_path, capture_output=True).stdout


def test_xxhsum_checks_our_list_and_we_check_xxhsums(tmp_path):
    xxhsum = need_tool("xxhsum")
    make_files(tmp_path, PLAIN_NAMES)
    (tmp_path / "ours").write_bytes(zcp("hash", "--", *PLAIN_NAMES, cwd=tmp_path).stdout)
    checked = subprocess.run([xxhsum, "-H2", "--strict", "-c", "ours"], cwd=tmp_path, capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(b": OK\n") == len(PLAIN_NAMES)

    (tmp_path / "theirs").write_bytes(subprocess.run([xxhsum, "-H2", "--", *PLAIN_NAMES], cwd=tmp_path,
                                                     capture_output=True, check=True).stdout)
    ours = zcp("hash", "-c", "theirs", cwd=tmp_path)
    assert (ours.returncode, ours.stderr) == (0, b"")
    # shown for a terminal: control characters and bytes that are not UTF-8 as \\#ooo
    shown = [b"plain", b"sp ace", b"  lead", b"tab\\#011name", PLAIN_NAMES[4], b"latin1-\\#351\\#377"]
    assert ours.stdout.splitlines() == [name + b": OK" for name in shown]


def test_names_that_need_escaping_go_round_trip(tmp_path):
    digests = make_files(tmp_path, ESCAPED_NAMES)
    listed = zcp("hash", "--", *ESCAPED_NAMES, cwd=tmp_path)
    assert listed.returncode == 0
    assert listed.stdout.split(b"\n")[:-1] == [
        b"\\" + digests[b"new\nline"].hex().encode() + b"  new\\nline",
        b"\\" + digests[b"back\\slash"].hex().encode() + b"  back\\\\slash",
        b"\\" + digests[b"cr\rname"].hex().encode() + b"  cr\\rname",
    ]
    checked = zcp("hash", "-c", "-", cwd=tmp_path, stdin=listed.stdout)
    assert (checked.returncode, checked.stderr) == (0, b"")
    assert checked.stdout.splitlines() == [b"new\\#012line: OK", b"back\\slash: OK", b"cr\\#015name: OK"]


def test_dash_hashes_standard_input(tmp_path):
    (tmp_path / "a").write_bytes(b"file a")
    done = zcp("hash", "a", "-", cwd=tmp_path, stdin=b"piped data")
    assert done.returncode == 0
    assert done.stdout == line(xxhash.xxh3_128_digest(b"file a"), b"a") + line(xxhash.xxh3_128_digest(b"piped data"), b"-")


def test_recursive_lists_regular_files_in_name_order_without_following_symlinks(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "outside").write_bytes(b"not below tree")
    digests = {name: make_files(tree, [name.encode()])[name.encode()]
               for name in ("b", "sub/deeper/z", "sub/a", "A", "c")}
    os.symlink("b", tree / "link-to-file")
    os.symlink(tmp_path / "elsewhere", tree / "link-to-folder")
    os.mkfifo(tree / "fifo")
    done = zcp("hash", "-r", "tree", "tree/b", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, b"")
    order = ["A", "b", "c", "sub/a", "sub/deeper/z"]
    assert done.stdout == b"".join(line(digests[n], f"tree/{n}".encode()) for n in [*order, "b"])


def test_a_folder_without_r_fails_alone_and_ends_with_23(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    digests = make_files(tmp_path, [b"before", b"after"])
    result = call_zcp(capsys, "hash", tmp_path / "before", tmp_path / "folder", tmp_path / "missing", tmp_path / "after")
    assert result.code == ExitCode.PARTIAL
    assert result.out == "".join(os.fsdecode(line(digests[n], os.fsencode(tmp_path / os.fsdecode(n))))
                                 for n in (b"before", b"after"))
    assert result.err_lines == [f"zcp: {tmp_path / 'folder'}: Is a directory (-r hashes the files below it)",
                                f"zcp: {tmp_path / 'missing'}: No such file or directory"]


def test_check_reports_ok_failed_and_unreadable_files(tmp_path):
    digests = make_files(tmp_path, [b"same", b"changed", b"gone"])
    (tmp_path / "list").write_bytes(b"".join(line(d, n) for n, d in digests.items()))
    (tmp_path / "changed").write_bytes(b"other content")
    (tmp_path / "gone").unlink()
    done = zcp("hash", "-c", "list", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [b"same: OK", b"changed: FAILED", b"gone: FAILED open or read"]
    assert done.stderr.splitlines() == [b"zcp: gone: No such file or directory",
                                        b"zcp: WARNING: 1 listed file could not be read",
                                        b"zcp: WARNING: 1 computed checksum did NOT match"]
    quiet = zcp("hash", "-c", "--quiet", "list", cwd=tmp_path)
    assert (quiet.returncode, quiet.stderr) == (1, done.stderr)
    assert quiet.stdout.splitlines() == [b"changed: FAILED", b"gone: FAILED open or read"]


def test_check_of_a_good_list_exits_0_and_quiet_prints_nothing(tmp_path, capsys, monkeypatch):
    digests = make_files(tmp_path, [b"one", b"two"])
    (tmp_path / "list").write_bytes(b"".join(line(d, n) for n, d in digests.items()))
    monkeypatch.chdir(tmp_path)  # list names are relative to the current folder
    assert call_zcp(capsys, "hash", "-c", "list") == Result(0, "one: OK\ntwo: OK\n", "")
    assert call_zcp(capsys, "hash", "-c", "-q", "list") == Result(0, "", "")


@pytest.mark.parametrize("flags", [[], ["-q"]])
def test_check_counts_several_failures_in_the_plural(tmp_path, capsys, monkeypatch, flags):
    (tmp_path / "list").write_text(f"{'0' * 32}  a\n{'0' * 32}  b\n{'0' * 32}  c\n{'0' * 32}  d\n")
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    monkeypatch.chdir(tmp_path)
    result = call_zcp(capsys, "hash", "-c", *flags, "list")
    assert result.code == 1
    assert result.err_lines[-2:] == ["zcp: WARNING: 2 listed files could not be read",
                                     "zcp: WARNING: 2 computed checksums did NOT match"]


def test_a_malformed_line_is_named_and_nothing_is_hashed(tmp_path, capsys, monkeypatch):
    digests = make_files(tmp_path, [b"fine"])
    (tmp_path / "list").write_bytes(line(digests[b"fine"], b"fine") + b"# comment\n0123  short\n")
    monkeypatch.chdir(tmp_path)
    result = call_zcp(capsys, "hash", "-c", "list")
    assert (result.code, result.out) == (1, "")
    assert assert_one_error_line(result) == "zcp: list: line 3: not an XXH128 checksum (32 hex digits)"


def test_an_empty_or_missing_list_fails(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").write_bytes(b"# only a comment\n")
    monkeypatch.chdir(tmp_path)
    result = call_zcp(capsys, "hash", "-c", "empty", "absent")
    assert (result.code, result.out) == (1, "")
    assert result.err_lines == ["zcp: empty: no checksum lines", "zcp: absent: No such file or directory"]


@pytest.mark.parametrize("args", [["hash"], ["hash", "-c", "-r", "list"], ["hash", "-q", "a"], ["hash", "--nope", "a"]])
def test_usage_errors_are_one_line_and_exit_1(tmp_path, capsys, args):
    result = call_zcp(capsys, *args)
    assert result.code == ExitCode.USAGE and result.out == ""
    assert_one_error_line(result)


def test_a_reader_that_goes_away_ends_the_run_with_141(tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(800):  # ~110 KB of lines: more than a pipe holds
        (many / f"{i:04}{'x' * 70}").write_bytes(b"")
    child = subprocess.Popen([sys.executable, "-m", "zcp", "hash", "-r", many], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    assert child.stdout.readline().endswith(b"x\n")
    child.stdout.close()
    assert child.wait(timeout=60) == ExitCode.BROKEN_PIPE
    assert child.stderr.read() == b""  # quiet, as a process killed by SIGPIPE


def test_a_file_named_hash_is_copied_as_dot_slash_hash(tmp_path):
    (tmp_path / "hash").write_bytes(b"a file called hash")
    assert run_zcp("./hash", "copy", cwd=tmp_path).code == 0
    assert (tmp_path / "copy").read_bytes() == b"a file called hash"


# --- zcp check --------------------------------------------------------------------------------


def _pair(root: Path) -> tuple[Path, Path]:
    """Two equal trees: files, an empty file, a symlink, nested folders."""
    src, dst = root / "src", root / "dst"
    for tree in (src, dst):
        (tree / "sub" / "deep").mkdir(parents=True)
        (tree / "same").write_bytes(b"same content")
        (tree / "empty").write_bytes(b"")
        (tree / "sub" / "deep" / "file").write_bytes(b"deep")
        os.symlink("same", tree / "link")
    return src, dst


def test_equal_trees_exit_0_and_print_only_the_count(tmp_path, capsys):
    src, dst = _pair(tmp_path)
    assert call_zcp(capsys, "check", src, dst) == Result(0, "", "0 differences, 32 B hashed\n")


def test_each_kind_of_difference_has_its_line_and_exit_1(tmp_path, capsys):
    src, dst = _pair(tmp_path)
    (dst / "sub" / "deep" / "file").write_bytes(b"deeP")  # same size, one byte off
    (src / "only-in-src").write_bytes(b"x")
    (dst / "only-in-dst").mkdir()
    (dst / "same").unlink()
    (dst / "same").mkdir()
    os.unlink(dst / "link")
    os.symlink("elsewhere", dst / "link")
    result = call_zcp(capsys, "check", src, dst)
    assert result.code == 1
    assert result.out.splitlines() == ["differ: link", "extra: only-in-dst", "missing: only-in-src", "type: same",
                                       "differ: sub/deep/file"]
    assert result.err_lines == ["5 differences, 8 B hashed"]


def test_json_prints_one_object_per_difference(tmp_path, capsys):
    src, dst = _pair(tmp_path)
    (dst / "same").write_bytes(b"SAME content")
    (src / os.fsdecode(b"bad-\xff")).write_bytes(b"")
    result = call_zcp(capsys, "check", "--json", src, dst)
    assert result.code == 1
    objects = [json.loads(text) for text in result.out.splitlines()]
    assert objects == [
        {"rel": os.fsdecode(b"bad-\xff"), "kind": "missing", "detail": "file not in destination"},
        {"rel": "same", "kind": "differ", "detail": "same size, different content"},
    ]


def test_names_are_escaped_for_the_terminal(tmp_path, capsys):
    src, dst = _pair(tmp_path)
    (src / "new\nline").write_bytes(b"")
    (dst / os.fsdecode(b"\x1b[31mred-\xff")).write_bytes(b"")
    result = call_zcp(capsys, "check", src, dst)
    assert result.out.splitlines() == ["extra: \\#033[31mred-\\#377", "missing: new\\#012line"]


def test_an_unreadable_entry_is_an_error_line_and_exit_23(tmp_path, capsys, monkeypatch):
    from zcp import treecheck

    src, dst = _pair(tmp_path)
    (dst / "same").write_bytes(b"SAME content")
    real_hash_path = treecheck.hash_path

    def deny_empty(path, progress=None):
        if path.endswith("/empty"):
            raise PermissionError(13, "Permission denied", path)
        return real_hash_path(path, progress)

    monkeypatch.setattr(treecheck, "hash_path", deny_empty)
    result = call_zcp(capsys, "check", src, dst)
    assert result.code == ExitCode.PARTIAL
    assert result.out.splitlines() == [f"error: empty: {src / 'empty'}: Permission denied", "differ: same"]


@pytest.mark.parametrize("missing", ["src", "dst"])
def test_a_missing_root_is_one_line_and_exit_11(tmp_path, capsys, missing):
    src, dst = _pair(tmp_path)
    gone = tmp_path / "gone"
    args = (gone, dst) if missing == "src" else (src, gone)
    result = call_zcp(capsys, "check", *args)
    assert (result.code, result.out) == (ExitCode.FILE_IO, "")
    assert assert_one_error_line(result) == f"zcp: {gone}: No such file or directory"


def test_check_agrees_after_an_archive_copy(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    make_files(src, [*PLAIN_NAMES, *ESCAPED_NAMES, b"sub/nested"])
    (src / "big").write_bytes(os.urandom(3 << 20))  # more than one read of the hash
    os.symlink("plain", src / "link")
    os.mkfifo(src / "fifo")
    assert run_zcp("-a", f"{src}/", f"{tmp_path / 'dst'}/").code == 0
    checked = run_zcp("check", src, tmp_path / "dst")
    assert (checked.code, checked.out) == (0, "")
    assert checked.err.startswith("0 differences, ")
    (tmp_path / "dst" / "big").write_bytes(os.urandom(3 << 20))
    assert run_zcp("check", src, tmp_path / "dst").out == "differ: big\n"
