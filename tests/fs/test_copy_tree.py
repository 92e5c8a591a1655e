"""`zcp -a src/ dst/` of a demanding tree: rsync finds nothing to do, times match to the nanosecond,
and a second run writes nothing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import give_default_acl, need, need_root, need_tool
from zcp.config import Config, Preserve
from zcp.exec.events import RecordingSink
from zcp.replicate import replicate

MKDATA = Path(__file__).resolve().parents[3] / "shared" / "bench" / "mkdata.py"
ODD_NAMES = ["with space", "new\nline", os.fsdecode(b"\xff\xfe"), "-dash"]
BASE_NS = 1_600_000_000_123_456_789  # mtimes with every nanosecond digit set
# atimes an hour ahead: with relatime, reading an entry (rsync -c, os.walk, zcp itself) moves its atime only
# when that is not later than its mtime and ctime, so these stay put and can be compared afterwards.
ATIME_AHEAD_NS = 3600 * 10**9 + 987_654_321


def _decorate(src: Path) -> None:
    """Everything mkdata does not make: links, xattrs, odd names, modes, ns times, specials."""
    (src / "linked").write_bytes(b"one inode, three names")
    os.link(src / "linked", src / "linked.2")
    (src / "xattr").write_bytes(b"with attributes")
    os.setxattr(src / "xattr", "user.zcp.test", b"value\x00with a nul")
    os.setxattr(src / "xattr", "user.empty", b"")
    for i, name in enumerate(ODD_NAMES):
        (src / name).write_bytes(f"odd name {i}".encode())
    (src / "empty").mkdir()
    (src / "readonly").mkdir()
    (src / "readonly" / "inside").write_bytes(b"in a 0555 folder")
    os.link(src / "linked", src / "readonly" / "linked.3")
    (src / "private").write_bytes(b"mode 0600")
    os.chmod(src / "private", 0o600)
    os.symlink("missing/target", src / "dangling")
    (src / "setuid").write_bytes(b"#!/bin/sh\n")
    os.chown(src / "setuid", 1234, 5678)
    os.chmod(src / "setuid", 0o4755)  # after chown, which clears it
    os.lchown(src / "dangling", 4321, 8765)
    os.mkfifo(src / "fifo")
    atime_ns = time.time_ns() + ATIME_AHEAD_NS
    os.chmod(src / "readonly", 0o555)
    for n, (dirpath, dirnames, filenames) in enumerate(os.walk(src)):
        for i, name in enumerate(dirnames + filenames):
            os.utime(os.path.join(dirpath, name), ns=(atime_ns + 7 * i + n, BASE_NS + 11 * i + n),
                     follow_symlinks=False)
    os.utime(src, ns=(atime_ns, BASE_NS))


def _lstats(root: Path) -> dict[str, os.stat_result]:
    found = {".": os.lstat(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = os.lstat(path)
    return found


@pytest.fixture(scope="module")
def synced(tmp_path_factory) -> tuple[Path, Path, dict[str, os.stat_result], dict[str, os.stat_result]]:
    """After one `zcp -a src/ dst/`: (src, dst, lstat of every source entry before the copy, and of every
    destination entry right after it, before other tests read files and move their atimes)."""
    need_root()
    need(MKDATA.exists(), f"needs the shared data generator {MKDATA}")
    base = tmp_path_factory.mktemp("tree")
    src, dst = base / "src", base / "dst"
    subprocess.run([sys.executable, str(MKDATA), str(src), "600"], check=True, capture_output=True)
    _decorate(src)
    before = _lstats(src)
    done = subprocess.run([sys.executable, "-m", "zcp", "-a", f"{src}/", f"{dst}/"], capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    return src, dst, before, _lstats(dst)


def test_rsync_finds_nothing_to_do(synced):
    src, dst, _, _ = synced
    rsync = need_tool("rsync")
    done = subprocess.run([rsync, "-anciHAX", "--delete", f"{src}/", f"{dst}/"], capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode(errors="replace") == ""


def test_times_match_to_the_nanosecond(synced):
    _, _, before, after = synced
    assert set(after) == set(before)
    wrong = {rel: ((st.st_atime_ns, st.st_mtime_ns), (after[rel].st_atime_ns, after[rel].st_mtime_ns))
             for rel, st in before.items()
             if (st.st_atime_ns, st.st_mtime_ns) != (after[rel].st_atime_ns, after[rel].st_mtime_ns)}
    assert wrong == {}


def test_modes_links_and_names_are_kept(synced):
    _, dst, _, _ = synced
    assert stat.S_IMODE(os.lstat(dst / "readonly").st_mode) == 0o555
    assert (dst / "readonly" / "inside").read_bytes() == b"in a 0555 folder"
    assert stat.S_IMODE(os.lstat(dst / "private").st_mode) == 0o600
    inodes = {os.lstat(dst / name).st_ino for name in ("linked", "linked.2", "readonly/linked.3")}
    assert len(inodes) == 1
    assert os.readlink(dst / "dangling") == "missing/target"
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    assert os.getxattr(dst / "xattr", "user.zcp.test") == b"value\x00with a nul"
    for i, name in enumerate(ODD_NAMES):
        assert (dst / name).read_bytes() == f"odd name {i}".encode()
    assert os.listdir(dst / "empty") == []


def _second_run(src: Path, dst: Path) -> tuple[dict[str, os.stat_result], dict[str, os.stat_result], object]:
    before = _lstats(dst)
    sink = RecordingSink()
    stats = replicate([f"{src}/"], f"{dst}/", Config(recursive=True, preserve=Preserve.archive()), sink)
    assert (stats.failed, stats.vanished) == (0, 0), sink.events
    return before, _lstats(dst), stats


def test_second_run_keeps_every_inode_and_copies_nothing(synced):
    src, dst, _, _ = synced
    before, after, stats = _second_run(src, dst)
    assert {rel: st.st_ino for rel, st in after.items()} == {rel: st.st_ino for rel, st in before.items()}
    assert (stats.files, stats.bytes, stats.links, stats.specials) == (0, 0, 0, 0)


def test_second_run_changes_no_metadata(synced):
    """Not even a chmod or utime with the same values: those move ctime, and rsync does not do them."""
    src, dst, _, _ = synced
    before, after, _ = _second_run(src, dst)
    touched = sorted(f"{rel} ({stat.filemode(st.st_mode)})" for rel, st in before.items()
                     if after[rel].st_ctime_ns != st.st_ctime_ns)
    assert not touched, f"{len(touched)} entries re-written, e.g. {touched[:5]}"


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_default_acl_does_not_cut_the_kept_mode(tmpfs_dir, jobs):
    """A file created in a folder with a default ACL takes its mode from the ACL, not from the umask:
    -a must still end with the source's mode (as cp -a and rsync -a do), in new subfolders too."""
    src, dst = tmpfs_dir / "src", tmpfs_dir / "dst"
    (src / "sub").mkdir(parents=True)
    for path in (src / "f", src / "sub" / "g"):
        path.write_bytes(b"x")
        path.chmod(0o644)
    dst.mkdir()
    give_default_acl(dst, other=0)
    stats = replicate([f"{src}/"], str(dst), Config(recursive=True, preserve=Preserve.archive(), jobs=jobs),
                      RecordingSink())
    assert stats.exit_code() == 0
    assert stat.S_IMODE((dst / "f").stat().st_mode) == 0o644
    assert stat.S_IMODE((dst / "sub" / "g").stat().st_mode) == 0o644
