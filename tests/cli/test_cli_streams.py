"""`zcp SRC... -` and `zcp - DST` as a user runs them: real processes joined by real pipes, files,
/dev/null, terminals; the copies checked by rsync and GNU tar, the syscalls by strace."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_support import Result, assert_one_error_line, temp_files

from conftest import need_root, need_tool

ZCP = [sys.executable, "-m", "zcp"]
MiB = 1 << 20
NON_UTF8 = os.fsdecode(b"caf\xe9 latin1")
# Future atimes: reading a file then never moves them (relatime), so two streams of a tree are equal.
ATIME_NS = (time.time_ns() // 1_000_000_000 + 86_000) * 1_000_000_000 + 123


def build_tree(root: Path) -> Path:
    """Odd names, long paths, symlinks, hard links, empty folders, modes and ns times."""
    (root / "empty-dir" / "nested-empty").mkdir(parents=True)
    deep = root / "deep" / ("d" * 120) / ("e" * 150)
    deep.mkdir(parents=True)
    (deep / ("f" * 200)).write_bytes(b"long path")
    for name, size in (("empty", 0), ("one", 1), ("block", 512), ("odd", 100_003), ("big", 2 * MiB + 1)):
        (root / name).write_bytes(os.urandom(size))
    for name in ("ünïcødé ✓", NON_UTF8, "new\nline", "-dash", " spaced "):
        (root / name).write_bytes(name.encode("utf-8", "surrogateescape"))
    (root / "exec").write_bytes(b"#!/bin/sh\n")
    (root / "exec").chmod(0o750)
    (root / "private").write_bytes(b"secret")
    (root / "private").chmod(0o600)
    os.symlink("one", root / "link-rel")
    os.symlink("/nonexistent/target", root / "link-dangling")
    os.symlink("l" * 150, root / "link-long")
    os.link(root / "odd", root / "deep" / "hard-odd")
    os.link(root / "odd", root / "hard-odd-again")
    for i, path in enumerate(sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True)):
        os.utime(path, ns=(ATIME_NS + i, 1_600_000_000_123_456_789 + i * 1_000_001), follow_symlinks=False)
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return build_tree(tmp_path / "tree")


def shell(script: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``script`` in bash, where `zcp` runs this interpreter's zcp; pipefail reports any failing stage."""
    prelude = f"set -o pipefail; zcp() {{ {shlex.join(ZCP)} \"$@\"; }}\n"
    return subprocess.run(["bash", "-c", prelude + script], cwd=cwd, capture_output=True, text=True,
                          errors="surrogateescape", timeout=timeout, stdin=subprocess.DEVNULL)


def stream_bytes(*args: str | os.PathLike, cwd: Path | None = None) -> bytes:
    """What `zcp ARGS -` writes to a pipe."""
    done = subprocess.run([*ZCP, *map(os.fspath, args), "-"], cwd=cwd, capture_output=True, check=True, timeout=60)
    return done.stdout


def receive_from(data: bytes, *args: str | os.PathLike, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`zcp ARGS` (ending with `- DST`) fed ``data`` through a pipe."""
    return subprocess.run([*ZCP, *map(os.fspath, args)], cwd=cwd, input=data.decode("latin-1"), encoding="latin-1",
                          capture_output=True, timeout=60)


def assert_same_tree(src: Path, dst: Path, *, ns: bool = True) -> None:
    """rsync sees nothing to do: content, types, links, hard links, modes, owners, times (in ns)."""
    rsync = need_tool("rsync")
    window = ["--modify-window=-1"] if ns else []
    done = subprocess.run([rsync, "-anciH", "--delete", *window, f"{src}/", f"{dst}/"], capture_output=True, check=True)
    assert done.stdout == b"", done.stdout.decode(errors="replace")


# ---- trees ---------------------------------------------------------------------------------


def test_a_tree_crosses_a_pipe_exactly(tree, tmp_path):
    done = shell("zcp -a tree/ - | zcp -a - out/", tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert_same_tree(tree, tmp_path / "out")
    assert os.lstat(tmp_path / "out").st_mtime_ns == os.lstat(tree).st_mtime_ns  # `./` carried the root's metadata


def test_a_folder_without_slash_arrives_under_its_name(tree, tmp_path):
    (tmp_path / "out").mkdir()
    done = shell("zcp -a tree - | zcp -a - out/", tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert os.listdir(tmp_path / "out") == ["tree"]
    assert_same_tree(tree, tmp_path / "out" / "tree")


def test_a_tree_to_a_new_name_creates_that_folder(tree, tmp_path):
    done = shell("zcp -a tree/ - | zcp -a - newdir", tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert_same_tree(tree, tmp_path / "newdir")


def test_several_files_to_a_new_name_create_that_folder(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(name.encode() * 1000)
    done = shell("zcp a b - | zcp - newdir", tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert sorted(os.listdir(tmp_path / "newdir")) == ["a", "b"]
    assert (tmp_path / "newdir" / "b").read_bytes() == b"b" * 1000
    assert temp_files(tmp_path) == []


def test_a_tree_to_an_existing_file_name_is_refused(tree, tmp_path):
    (tmp_path / "taken").write_bytes(b"keep me")
    done = shell("zcp -a tree/ - | zcp -a - taken", tmp_path)
    assert done.returncode == 1  # as for `zcp -a tree/ taken`
    assert "a tree never replaces a file" in done.stderr
    assert (tmp_path / "taken").read_bytes() == b"keep me"
    assert temp_files(tmp_path) == []


def test_gnu_tar_extracts_the_stream(tree, tmp_path):
    tar = need_tool("tar")
    (tmp_path / "out").mkdir()
    done = shell(f"zcp -a tree/ - | {tar} -x -C out --warning=no-unknown-keyword", tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert_same_tree(tree, tmp_path / "out")


def test_a_gnu_tar_stream_is_unpacked(tree, tmp_path):
    tar = need_tool("tar")
    done = shell(f"{tar} -C tree -c . | zcp -a - out/", tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert_same_tree(tree, tmp_path / "out", ns=False)  # GNU tar's default format keeps seconds


def test_filters_apply_to_the_sender(tree, tmp_path):
    done = shell("zcp -a --exclude 'deep/' --exclude '*dash' tree/ - | zcp -a - out/", tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "out" / "deep").exists() and not (tmp_path / "out" / "-dash").exists()
    assert (tmp_path / "out" / "odd").read_bytes() == (tree / "odd").read_bytes()


def test_without_hard_links_option_each_name_gets_its_own_file(tree, tmp_path):
    done = shell("zcp -r tree/ - | zcp -r - out/", tmp_path)
    assert done.returncode == 0, done.stderr
    assert os.lstat(tmp_path / "out" / "hard-odd-again").st_nlink == 1
    assert (tmp_path / "out" / "hard-odd-again").read_bytes() == (tree / "odd").read_bytes()


def test_a_fifo_crosses_with_archive_as_root(tmp_path):
    need_root()
    (tmp_path / "src").mkdir()
    os.mkfifo(tmp_path / "src" / "fifo", 0o640)
    done = shell("zcp -a src/ - | zcp -a - out/", tmp_path, timeout=20)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert stat.S_ISFIFO(os.lstat(tmp_path / "out" / "fifo").st_mode)
    skipped = shell("zcp -r src/ - | zcp -r - out2/", tmp_path, timeout=20)
    assert skipped.returncode == 0 and "skipping fifo 'fifo'" in skipped.stderr
    assert os.listdir(tmp_path / "out2") == []


def test_the_output_file_inside_the_tree_is_not_sent_into_itself(tree, tmp_path):
    done = shell("zcp -a tree/ - > tree/self.tar && zcp -a - out/ < tree/self.tar", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "'self.tar' is the stream's own output: not sent" in done.stderr
    assert not (tmp_path / "out" / "self.tar").exists() and (tmp_path / "out" / "odd").exists()


# ---- single files ----------------------------------------------------------------------------


def test_one_file_as_a_stream_is_verified_and_keeps_its_metadata(tmp_path):
    src = tmp_path / "file"
    src.write_bytes(os.urandom(300_000))
    src.chmod(0o640)
    os.utime(src, ns=(ATIME_NS, 1_500_000_000_987_654_321))
    done = shell("zcp -a file - | zcp -a -v - copy", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "received 1 file, " in done.stderr and "1 verified" in done.stderr
    copy = os.lstat(tmp_path / "copy")
    assert (copy.st_mode, copy.st_mtime_ns) == (os.lstat(src).st_mode, os.lstat(src).st_mtime_ns)
    assert (tmp_path / "copy").read_bytes() == src.read_bytes()


def test_one_file_raw(tmp_path):
    (tmp_path / "file").write_bytes(os.urandom(300_000))
    raw = stream_bytes("--format", "raw", "file", cwd=tmp_path)
    assert raw == (tmp_path / "file").read_bytes()
    done = shell("zcp --format raw file - | zcp - copy", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "copy").read_bytes() == raw


def test_a_tar_file_streamed_to_a_file_name_is_never_unpacked(tree, tmp_path):
    tar = need_tool("tar")
    subprocess.run([tar, "-C", tree, "-cf", tmp_path / "x.tar", "."], check=True)
    done = shell("cat x.tar | zcp - name.tar", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "name.tar").read_bytes() == (tmp_path / "x.tar").read_bytes()


def test_a_saved_zcp_stream_is_kept_as_a_file_with_format_raw(tree, tmp_path):
    (tmp_path / "saved.tar").write_bytes(stream_bytes("-a", "tree/", cwd=tmp_path))
    done = shell("cat saved.tar | zcp --format raw - copy.tar", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "copy.tar").read_bytes() == (tmp_path / "saved.tar").read_bytes()


@pytest.mark.parametrize("dest", ["file", "folder/"])
def test_format_zcp_takes_a_zcp_stream_as_auto_does(tree, tmp_path, dest):
    done = receive_from(stream_bytes("-a", "tree/", cwd=tmp_path), "--format=zcp", "-", dest, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_same_tree(tree, tmp_path / dest)


@pytest.mark.parametrize("dest", ["file", "folder/"])
@pytest.mark.parametrize(("data", "message"), [(b"", "no stream came (it is empty)"),
                                               (b"raw bytes", "not a zcp stream")])
def test_format_zcp_refuses_anything_else_and_writes_nothing(tmp_path, dest, data, message):
    done = receive_from(data, "--format=zcp", "-", dest, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (12, f"zcp: {message}\n")
    assert os.listdir(tmp_path) == []


def test_format_zcp_refuses_a_plain_tar_stream(tree, tmp_path):
    tar = need_tool("tar")
    plain = subprocess.run([tar, "-C", tree, "-cf", "-", "."], capture_output=True, check=True).stdout
    done = receive_from(plain, "--format=zcp", "-", "out/", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (12, "zcp: not a zcp stream\n")
    assert not (tmp_path / "out").exists()


# ---- modes without -p, as `zcp src/ dst` and GNU tar give them -----------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_a_file_named_twice_gets_the_later_mode(tmp_path):
    """`tar -r` appends a second copy: its mode counts, not that of the copy this stream made first."""
    need_tool("tar")
    done = shell("umask 022; echo v1 > f; chmod 644 f; tar -cf a.tar f; echo secret > f; chmod 600 f; "
                 "tar -rf a.tar f; zcp -r - out/ < a.tar", tmp_path)
    assert done.returncode == 0, done.stderr
    assert ((tmp_path / "out" / "f").read_bytes(), _mode(tmp_path / "out" / "f")) == (b"secret\n", 0o600)


def test_a_folder_listed_after_its_contents_gets_its_mode(tmp_path):
    need_tool("tar")
    done = shell("umask 022; mkdir -p src/d; echo x > src/d/f; chmod 700 src/d; tar -C src -cf t.tar d/f d; "
                 "zcp -r - out/ < t.tar", tmp_path)
    assert done.returncode == 0, done.stderr
    assert _mode(tmp_path / "out" / "d") == 0o700


@pytest.mark.parametrize("dest", ["out", "out/"])
def test_a_new_dest_gets_the_source_folder_mode_with_or_without_slash(tmp_path, dest):
    done = shell(f"umask 022; mkdir src; echo x > src/f; chmod 700 src; zcp -r src/ - | zcp -r - {dest}", tmp_path)
    assert done.returncode == 0, done.stderr
    assert _mode(tmp_path / "out") == 0o700


def test_one_file_replacing_dest_keeps_dest_mode(tmp_path):
    """As `zcp f e` and the raw format do: a file it replaces keeps its permissions (without -p)."""
    done = shell("echo new > f; chmod 755 f; echo old > e; chmod 600 e; zcp f - | zcp - e", tmp_path)
    assert done.returncode == 0, done.stderr
    assert ((tmp_path / "e").read_bytes(), _mode(tmp_path / "e")) == (b"new\n", 0o600)


# ---- what is a stream and what is raw ------------------------------------------------------------


def test_bytes_that_only_look_like_a_tar_header_arrive_raw(tmp_path):
    """A valid checksum and magic, but a number field that is no number: raw data, not a stream."""
    from zcp.stream import pax

    block = bytearray(pax.encode_header(b"a", b"0", mode=0o644, size=0))
    block[108:116] = b"nobody\0\0"  # the uid field
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    data = bytes(block) + b"payload"
    done = receive_from(data, "-", "out.bin", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.bin").read_bytes() == data


def test_a_zcp_stream_cut_in_its_first_block_is_refused(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 4096)
    cut = stream_bytes("f", cwd=tmp_path)[:300]
    done = receive_from(cut, "-", "out", cwd=tmp_path)
    assert done.returncode == 12 and "truncated stream" in done.stderr
    assert os.listdir(tmp_path) == ["f"]


def test_a_checksum_field_that_int_would_take_but_tar_would_not_is_no_header(tmp_path):
    from zcp.stream import pax

    block = bytearray(pax.encode_header(b"a", b"0", mode=0o644, size=0))
    block[148:156] = b" " * 8
    block[148:156] = b"+%05o\0 " % sum(block)
    data = bytes(block) + bytes(1024)
    assert receive_from(data, "-", "out/", cwd=tmp_path).returncode == 12  # not a tar stream
    done = receive_from(data, "-", "raw.bin", cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "raw.bin").read_bytes() == data


def test_extended_headers_for_one_entry_are_bounded(tmp_path):
    """Each 'x' header is capped, and so are all of one entry's together: memory stays bounded."""
    from zcp.stream import pax

    many = b"".join(pax.pax_header(b"x", pax.PAX_EXTENDED, [(f"key{i}", b"v" * (600 << 10))]) for i in range(4))
    data = many + pax.encode_header(b"f", b"0", mode=0o644, size=0) + bytes(1024)
    done = receive_from(data, "-", "out/", cwd=tmp_path)
    assert done.returncode == 12 and "for one entry refused" in done.stderr


# ---- failures ----------------------------------------------------------------------------------


def test_a_corrupted_stream_fails_with_one_line_and_leaves_nothing_at_the_bad_name(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "first").write_bytes(b"fine")
    (tmp_path / "src" / "victim").write_bytes(b"MARKER" * 50_000)
    saved = bytearray(stream_bytes("-a", "src/", cwd=tmp_path))
    saved[saved.index(b"MARKER") + 1000] ^= 0x01
    (tmp_path / "saved").write_bytes(saved)
    done = shell("zcp -a - out/ < saved", tmp_path)
    assert done.returncode == 12
    line = assert_one_error_line(_result(done))
    assert "hash mismatch for 'victim'" in line
    assert not (tmp_path / "out" / "victim").exists()
    assert (tmp_path / "out" / "first").read_bytes() == b"fine"  # files completed before the error stay
    assert temp_files(tmp_path) == []


def test_a_reader_that_goes_away_ends_the_sender_quietly_with_141(tmp_path):
    (tmp_path / "big").write_bytes(os.urandom(8 * MiB))
    done = shell("zcp big - | head -c 100 >/dev/null; echo ${PIPESTATUS[0]}", tmp_path)
    assert done.stdout.strip() == "141"
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-", "-"], "both the source"),
        (["-", "a", "b"], "must be the only source"),
        (["a", "-", "b"], "must be the only source"),
        (["src", "-"], "is a folder: use -r or -a"),
        (["--format", "raw", "a", "b", "-"], "exactly one file"),
        (["--format", "raw", "src/", "-"], "is not one"),
        (["-r", "src/a", "src2/a", "-"], "would both be sent as 'a'"),
        (["-n", "a", "-"], "--dry-run: not supported"),
        (["--exclude", "x", "-", "out/"], "apply to the sending side"),
        (["missing", "-"], "cannot read 'missing'"),
        (["-", "nope/raw"], "folder 'nope' does not exist"),
        (["-", "nope/deeper/"], "folder 'nope' does not exist"),
        (["-", "a/"], "target 'a/' is not a folder"),
        (["--max-delete", "0", "-", "out/"], "--delete/--max-delete/--delete-excluded: not supported"),
        (["--inplace", "-", "out"], "--inplace: not supported"),
        (["-j", "2", "src/", "-"], "--jobs: not supported"),
        (["--reflink", "never", "-", "out"], "--reflink: not supported"),
        (["--verify", "a", "-"], "the receiving zcp verifies"),
        (["--format", "tar", "-", "a"], "a: not a folder; --format=tar unpacks into a folder"),
    ],
)
def test_usage_errors(tmp_path, args, message):
    for folder in ("src", "src2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a").write_bytes(b"a")
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    done = subprocess.run([*ZCP, *args], cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.PIPE, timeout=60)
    assert done.returncode == 1
    assert message in assert_one_error_line(_result(done))
    assert done.stdout == ""


@pytest.mark.parametrize(("script", "message"), [("zcp -a - out/ <&-", "stdin is closed"),
                                                 ("zcp -a src/ - >&-", "stdout is closed")], ids=["stdin", "stdout"])
def test_a_closed_end_of_the_pipe_is_a_usage_error_and_never_taken_by_another_file(tmp_path, script, message):
    """Without care, the first file zcp opens takes the closed fd's number and is read as stdin."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_bytes(b"a")
    done = shell(script, tmp_path)
    assert done.returncode == 1
    assert message in assert_one_error_line(_result(done))
    assert not (tmp_path / "out").exists()


def test_with_stderr_closed_no_message_ever_reaches_the_stream_on_stdout(tmp_path):
    done = shell("zcp -a missing - 2>&- | od -c", tmp_path)
    assert done.returncode == 1  # pipefail: zcp's exit code
    assert done.stdout == "0000000\n"  # od saw not a byte
    done = shell("echo hi | zcp - copy 2>&-", tmp_path)
    assert done.returncode == 0 and (tmp_path / "copy").read_bytes() == b"hi\n"


# ---- where the stream goes -----------------------------------------------------------------------


def test_a_redirected_file_an_appended_file_and_dev_null_get_the_same_stream(tree, tmp_path):
    piped = stream_bytes("-a", "tree/", cwd=tmp_path)
    (tmp_path / "appended").write_bytes(b"kept\n")
    done = shell("zcp -a tree/ - > redirected && zcp -a tree/ - >> appended && zcp -a tree/ - > /dev/null", tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert (tmp_path / "redirected").read_bytes() == piped
    assert (tmp_path / "appended").read_bytes() == b"kept\n" + piped


def test_a_terminal_gets_no_stream_but_raw_bytes_are_allowed(tmp_path):
    (tmp_path / "file").write_bytes(b"plain text\n")
    primary, terminal = os.openpty()
    try:
        refused = subprocess.run([*ZCP, "file", "-"], cwd=tmp_path, stdout=terminal, stderr=subprocess.PIPE, text=True, timeout=60)
        raw = subprocess.run([*ZCP, "--format", "raw", "file", "-"], cwd=tmp_path, stdout=terminal, stderr=subprocess.PIPE,
                             text=True, timeout=60)
        shown = os.read(primary, 1024)
    finally:
        os.close(primary)
        os.close(terminal)
    assert refused.returncode == 1 and "refusing to write a stream to a terminal" in refused.stderr
    assert raw.returncode == 0 and b"plain text" in shown


def test_a_non_blocking_stdout_is_polled_not_spun_on(tmp_path):
    size = 4 * MiB
    (tmp_path / "big").write_bytes(os.urandom(size))
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the sender's stdout: EAGAIN whenever the pipe is full
    proc = subprocess.Popen([*ZCP, "big", "-"], cwd=tmp_path, stdout=write_end)
    os.close(write_end)
    received = bytearray()
    start = time.monotonic()
    with os.fdopen(read_end, "rb", buffering=0) as reader:
        while chunk := reader.read(16 * 1024):
            received += chunk
            time.sleep(0.008)  # a slow reader: ~2 s for 4 MiB
    slow_s = time.monotonic() - start
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    assert slow_s > 1.5
    assert usage.ru_utime + usage.ru_stime < slow_s / 3  # a spinning sender would burn the whole time
    (tmp_path / "saved").write_bytes(received)
    done = shell("zcp - copy < saved", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "copy").read_bytes() == (tmp_path / "big").read_bytes()


def test_file_bodies_go_to_the_pipe_by_splice(tmp_path):
    strace = need_tool("strace")
    size = 16 * MiB
    (tmp_path / "big").write_bytes(os.urandom(size))
    log = tmp_path / "strace.log"
    proc = subprocess.Popen([strace, "-f", "-o", log, "-e", "trace=write,splice", *ZCP, "-a", "big", "-"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    streamed = sum(len(chunk) for chunk in iter(lambda: proc.stdout.read(MiB), b""))  # `| cat > /dev/null`
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    written = spliced = splice_calls = 0
    for line in log.read_text().splitlines():
        if call := re.match(r"^\d+\s+write\(1, .*\)\s+=\s+(\d+)$", line):
            written += int(call.group(1))
        elif call := re.match(r"^\d+\s+splice\(\d+, [^,]*, 1, .*\)\s+=\s+(\d+)$", line):
            spliced += int(call.group(1))
            splice_calls += 1
    assert splice_calls > 0 and spliced == size
    assert written < 64 * 1024  # headers and padding only
    assert written + spliced == streamed


# ---- what a user sees --------------------------------------------------------------------------


def test_verbose_prints_a_summary_at_each_end_and_quiet_runs_print_nothing(tree, tmp_path):
    done = shell("zcp -av tree/ - | zcp -av - out/", tmp_path)
    assert done.returncode == 0, done.stderr
    sent = next(line for line in done.stderr.splitlines() if line.startswith("sent "))
    received = next(line for line in done.stderr.splitlines() if line.startswith("received "))
    assert re.match(r"sent 13 files, 2\.\d MiB in .*; \d+ entries, 2 hard links; bytes by method: splice", sent), sent
    assert re.match(r"received 13 files, .*13 verified \(xxh3-128\); bytes by method: ", received), received
    assert shell("zcp -a tree/ - | zcp -a - out2/", tmp_path).stderr == ""


def test_progress_is_drawn_on_a_terminal_stderr(tree, tmp_path):
    primary, terminal = os.openpty()
    drawn = bytearray()
    pump = threading.Thread(target=_drain_terminal, args=(primary, drawn))
    pump.start()
    try:
        sender = subprocess.Popen([*ZCP, "-a", "tree/", "-"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=terminal)
        receiver = subprocess.Popen([*ZCP, "-a", "-", "out/"], cwd=tmp_path, stdin=sender.stdout, stderr=terminal)
        sender.stdout.close()
        assert (receiver.wait(timeout=60), sender.wait(timeout=60)) == (0, 0)
    finally:
        os.close(terminal)
        pump.join(timeout=10)
        os.close(primary)
    text = drawn.decode(errors="replace")
    assert "sent 13 files" in text and "received 13 files" in text  # the summary that follows a display
    assert_same_tree(tree, tmp_path / "out")


def _drain_terminal(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every writer closed the terminal
            return
        if not chunk:
            return
        into += chunk


def _result(done: subprocess.CompletedProcess[str]) -> Result:
    return Result(done.returncode, done.stdout, done.stderr)


def test_verify_says_so_when_received_files_carry_no_hash(tmp_path):
    """Raw bytes and tar streams from elsewhere have no hash: --verify cannot prove them and says it."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_bytes(b"a")
    raw = shell("echo hi | zcp --verify - copy", tmp_path)
    assert raw.returncode == 0 and "1 of 1 file received carried no hash" in raw.stderr
    tar = shell("tar -C src -cf - . | zcp --verify - fromtar/", tmp_path)
    assert tar.returncode == 0 and "carried no hash" in tar.stderr
    ours = shell("zcp -a src/ - | zcp --verify - fromzcp/", tmp_path)
    assert ours.returncode == 0 and ours.stderr == ""


def test_a_socket_is_left_out_of_a_stream_with_a_warning(tmp_path, monkeypatch):
    import socket

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_bytes(b"a")
    monkeypatch.chdir(tmp_path / "src")  # a short relative path for bind()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        done = shell("zcp -a src/ - | zcp -a - out/", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "skipping socket 'sock' (tar has no type for it)" in done.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a"]
