"""`zcp SRC HOST:DST` and `zcp HOST:SRC DST` through a real sshd on 127.0.0.1, started here.

The "other host" is this machine: what the remote zcp wrote is checked on this filesystem.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import zcp
from conftest import need, need_tool
from tools.local_sshd import HOST, LocalSshd, SshdUnavailable, free_port

ODD_NAMES = ["with space", "new\nline", os.fsdecode(b"\xff\xfe"), "-dash", "it's $(x)"]
MTIME_NS = 1_600_000_000_123_456_789


@dataclass(frozen=True)
class Ssh:
    rsh: str  # the -e command that reaches the test sshd
    remote_zcp: str  # zcp as the remote shell starts it: this interpreter, this source tree
    base: Path

    def run(self, *args: str | os.PathLike, rsh: str | None = None, remote_zcp: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "zcp", "-e", rsh or self.rsh, "--remote-zcp", remote_zcp or self.remote_zcp,
                *map(os.fspath, args)]
        return subprocess.run(argv, capture_output=True, text=True, errors="surrogateescape", timeout=timeout,
                              stdin=subprocess.DEVNULL)


def _remote_zcp() -> str:
    """zcp as the remote shell starts it: this interpreter, this source tree."""
    package_root = Path(zcp.__file__).resolve().parents[1]
    return f"env PYTHONPATH={shlex.quote(str(package_root))} {shlex.quote(sys.executable)} -m zcp"


@pytest.fixture(scope="module")
def ssh(tmp_path_factory) -> Ssh:
    try:
        with LocalSshd(tmp_path_factory.mktemp("sshd")) as sshd:
            yield Ssh(sshd.rsh, _remote_zcp(), sshd.folder)
    except SshdUnavailable as exc:
        need(False, str(exc))


def _tree(root: Path) -> Path:
    """Files, odd names, a hard link, symlinks, xattrs, an empty folder, a private mode, ns mtimes."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "big").write_bytes(os.urandom(3 << 20))
    (root / "sub" / "small").write_bytes(b"small body")
    for i, name in enumerate(ODD_NAMES):
        (root / "sub" / name).write_bytes(f"odd {i}".encode())
    os.link(root / "sub" / "small", root / "sub" / "deeper" / "small.link")
    os.symlink("../big", root / "sub" / "to-big")
    os.symlink("nowhere", root / "dangling")
    os.setxattr(root / "big", "user.origin", b"remote test")
    (root / "private").write_bytes(b"0600")
    os.chmod(root / "private", 0o600)
    (root / "app.log").write_bytes(b"not wanted")
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    return root


def _rsync_differences(src: Path, dst: Path) -> str:
    rsync = need_tool("rsync")
    done = subprocess.run([rsync, "-anciHX", "--delete", f"{src}/", f"{dst}/"], capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode(errors="replace")


def _leftovers(root: Path) -> list[str]:
    return [name for _, dirs, files in os.walk(root) for name in dirs + files if name.endswith(".zcp")]


def test_push_a_tree(ssh, tmp_path):
    src = _tree(tmp_path / "src")
    done = ssh.run("-a", f"{src}/", f"{HOST}:{tmp_path}/dst/")
    assert (done.returncode, done.stderr) == (0, "")
    assert _rsync_differences(src, tmp_path / "dst") == ""


def test_pull_a_tree_into_a_folder(ssh, tmp_path):
    src = _tree(tmp_path / "src")
    done = ssh.run("-a", f"{HOST}:{src}", f"{tmp_path}/dst/")
    assert (done.returncode, done.stderr) == (0, "")
    assert _rsync_differences(src, tmp_path / "dst" / "src") == ""


def test_one_file_each_way_becomes_the_named_file(ssh, tmp_path):
    (tmp_path / "one").write_bytes(b"one file")
    (tmp_path / "old").write_bytes(b"replaced")
    assert ssh.run("-a", tmp_path / "one", f"{HOST}:{tmp_path}/old").returncode == 0
    assert ssh.run("-a", f"{HOST}:{tmp_path}/one", tmp_path / "pulled").returncode == 0
    assert (tmp_path / "old").read_bytes() == (tmp_path / "pulled").read_bytes() == b"one file"
    assert os.stat(tmp_path / "pulled").st_mtime_ns == os.stat(tmp_path / "one").st_mtime_ns


def test_a_remote_home_path_is_expanded_there(tmp_path):
    """HOST:~/x is the remote user's home, as with scp and rsync: the ~ reaches the remote shell
    unquoted. A stand-in remote shell runs the command here, with HOME in the test's folder."""
    (tmp_path / "home").mkdir()
    (tmp_path / "f").write_bytes(b"home")
    done = subprocess.run([sys.executable, "-m", "zcp", "-e", _stand_in_shell(tmp_path), "--remote-zcp", _remote_zcp(),
                           str(tmp_path / "f"), "anyhost:~/x"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": str(tmp_path / "home")})
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "home" / "x").read_bytes() == b"home"


def _stand_in_shell(tmp_path: Path) -> str:
    """A remote shell that runs the command here: `rsh HOST COMMAND` is `sh -c COMMAND`."""
    stand_in = tmp_path / "rsh"
    stand_in.write_text('#!/bin/sh\nshift\nexec sh -c "$1"\n')
    stand_in.chmod(0o755)
    return str(stand_in)


def test_a_pull_refused_here_does_not_wait_for_a_remote_that_goes_on(tmp_path):
    """The stream is no zcp stream: this side fails at once, and a remote that neither ends nor
    reads is stopped after a grace period, not waited for."""
    garbage = "head -c 1024 /dev/zero | tr '\\0' x; sleep 60 >/dev/null 2>&1; :"  # holds none of our pipes
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "zcp", "-e", _stand_in_shell(tmp_path), "--remote-zcp", garbage,
                           "anyhost:/nowhere", str(tmp_path / "dst")], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (12, "zcp: not a zcp stream\n")
    assert time.monotonic() - start < 20
    assert not (tmp_path / "dst").exists()


def test_a_remote_that_sends_on_after_the_stream_is_not_read_forever(tmp_path):
    (tmp_path / "f").write_bytes(b"payload")
    saved = tmp_path / "saved.tar"
    with open(saved, "wb") as out:
        subprocess.run([sys.executable, "-m", "zcp", str(tmp_path / "f"), "-"], stdout=out, check=True)
    endless = f"cat {shlex.quote(str(saved))}; cat /dev/zero; :"
    done = subprocess.run([sys.executable, "-m", "zcp", "-e", _stand_in_shell(tmp_path), "--remote-zcp", endless,
                           "anyhost:/f", str(tmp_path / "got")], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "got").read_bytes() == b"payload"


def _logging_zcp(ssh: Ssh, log: Path) -> str:
    """A --remote-zcp that records the arguments it was started with, then runs zcp."""
    script = log.with_suffix(".sh")
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {shlex.quote(str(log))}\nexec {ssh.remote_zcp} "$@"\n')
    script.chmod(0o755)
    return str(script)


def test_the_receiver_is_told_what_to_keep_and_verify(ssh, tmp_path):
    src = _tree(tmp_path / "src")
    log = tmp_path / "args"
    done = ssh.run("-a", "--verify", "-v", f"{src}/", f"{HOST}:{tmp_path}/dst/", remote_zcp=_logging_zcp(ssh, log))
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == ["-p", "-o", "-D", "-X", "--verify", "-v", "--format=zcp", "--", "-",
                                            f"{tmp_path}/dst/"]
    assert "verified (xxh3-128)" in done.stderr  # the remote receiver's summary comes through
    assert _rsync_differences(src, tmp_path / "dst") == ""


def test_filters_apply_on_the_remote_sender(ssh, tmp_path):
    src = _tree(tmp_path / "src")
    log = tmp_path / "args"
    done = ssh.run("-a", "--exclude", "*.log", "--exclude=sub/deeper/", f"{HOST}:{src}/", f"{tmp_path}/dst/",
                   remote_zcp=_logging_zcp(ssh, log))
    assert done.returncode == 0, done.stderr
    assert "--exclude=- *.log" in log.read_text().splitlines()
    assert not (tmp_path / "dst" / "app.log").exists()
    assert not (tmp_path / "dst" / "sub" / "deeper").exists()
    assert (tmp_path / "dst" / "sub" / "small").read_bytes() == b"small body"


def test_a_missing_remote_source_creates_nothing(ssh, tmp_path):
    done = ssh.run("-a", f"{HOST}:{tmp_path}/missing", tmp_path / "dst")
    assert done.returncode == 1  # the remote zcp's usage error, its message passed on
    assert done.stderr.splitlines() == [f"zcp: cannot read '{tmp_path}/missing': No such file or directory"]
    assert not (tmp_path / "dst").exists()


def test_a_missing_local_source_connects_to_nothing(ssh, tmp_path):
    log = tmp_path / "args"
    done = ssh.run("-a", tmp_path / "missing", f"{HOST}:{tmp_path}/dst", remote_zcp=_logging_zcp(ssh, log))
    assert done.returncode == 1
    assert not log.exists() and not (tmp_path / "dst").exists()


def test_an_unreachable_host_is_exit_14(ssh, tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    closed = ssh.rsh.replace("-p ", f"-p {free_port()} -o Port=", 1)  # nobody listens there
    for args in ([tmp_path / "f", f"{HOST}:{tmp_path}/dst"], [f"{HOST}:{tmp_path}/f", tmp_path / "dst"]):
        done = ssh.run(*args, rsh=closed)
        assert done.returncode == 14
        assert done.stderr.splitlines()[-1] == f"zcp: the remote shell failed (exit 255): no connection to {HOST}, or it broke"
        assert not (tmp_path / "dst").exists()


def test_no_zcp_on_the_other_host_is_exit_14(ssh, tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    for args in ([tmp_path / "f", f"{HOST}:{tmp_path}/dst"], [f"{HOST}:{tmp_path}/f", tmp_path / "dst"]):
        done = ssh.run(*args, remote_zcp="/nonexistent/zcp")
        assert done.returncode == 14
        assert done.stderr.splitlines()[-1].startswith(f"zcp: zcp not found on {HOST} (exit 127)")
        assert not (tmp_path / "dst").exists()


def test_a_remote_refusal_keeps_its_exit_code_and_the_file(ssh, tmp_path):
    src = _tree(tmp_path / "src")
    (tmp_path / "file").write_bytes(b"stays")
    done = ssh.run("-a", src, f"{HOST}:{tmp_path}/file")
    assert done.returncode == 1  # the remote zcp's, as for a local copy of a folder onto a file
    assert done.stderr.splitlines() == [f"zcp: {tmp_path}/file: the stream holds a tree, and a tree never replaces a file (the file stays)"]
    assert (tmp_path / "file").read_bytes() == b"stays"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("option", [["--delete"], ["-n"], ["--inplace"], ["--format", "raw"]])
def test_options_a_stream_cannot_honour_are_refused(ssh, tmp_path, option):
    log = tmp_path / "args"
    done = ssh.run("-a", *option, f"{tmp_path}/", f"{HOST}:{tmp_path}/dst/", remote_zcp=_logging_zcp(ssh, log))
    assert done.returncode == 1 and done.stderr.startswith("zcp: ")
    assert not log.exists()


@pytest.mark.parametrize("operands", [["-", "HOST:x"], ["HOST:a", "HOST:b"], ["HOST:a", "local", "dst"],
                                      ["HOST:a", "other:b", "dst"]])
def test_impossible_operand_mixes_are_usage_errors(ssh, tmp_path, operands):
    done = ssh.run(*[op.replace("HOST", HOST) for op in operands])
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1


def test_an_interrupted_push_leaves_nothing_on_the_other_host(ssh, tmp_path):
    """SIGTERM mid-transfer: the local zcp exits 20 and stops the remote shell; the remote receiver
    sees the stream end early and drops the file it was writing."""
    need_tool("pv")
    (tmp_path / "dst").mkdir()
    (tmp_path / "big").write_bytes(os.urandom(8 << 20))
    slow = tmp_path / "slow-ssh"  # 1 MiB/s: the transfer is still running when we interrupt it
    slow.write_text(f'#!/bin/sh\npv -q -L 1m | {ssh.rsh} "$@"\n')
    slow.chmod(0o755)
    status = tmp_path / "remote-exit"
    remote = tmp_path / "remote-zcp.sh"
    remote.write_text(f'#!/bin/sh\n{ssh.remote_zcp} "$@"\necho $? > {shlex.quote(str(status))}\n')
    remote.chmod(0o755)
    argv = [sys.executable, "-m", "zcp", "-e", str(slow), "--remote-zcp", str(remote), str(tmp_path / "big"),
            f"{HOST}:{tmp_path}/dst/"]
    local = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    local.send_signal(signal.SIGTERM)
    _, err = local.communicate(timeout=30)
    assert (local.returncode, err.splitlines()[0]) == (20, "zcp: interrupted")
    deadline = time.monotonic() + 30
    while not status.exists() or not status.read_text():
        assert time.monotonic() < deadline, "the remote zcp did not end"
        time.sleep(0.1)
    assert status.read_text().strip() == "12"  # a truncated stream
    assert os.listdir(tmp_path / "dst") == []
