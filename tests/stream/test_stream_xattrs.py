"""Extended attributes across a stream (-X, in -a): SCHILY.xattr records, as GNU tar writes them."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need_root, need_tool
from stream_support import END, hashed, member, receive_bytes, zcp_global

from zcp.errors import StreamError
from zcp.xattrs import read_xattrs

ZCP = [sys.executable, "-m", "zcp"]
BINARY = b"\x00\xffbinary\nvalue"


def _user_xattrs(path: Path) -> dict[str, bytes]:
    return {name: value for name, value in read_xattrs(str(path)).items() if name.startswith("user.")}


def _tree(root: Path) -> Path:
    """A small and a big file and a folder, each with user xattrs (a binary one, an empty one)."""
    (root / "dir").mkdir(parents=True)
    (root / "small").write_bytes(b"small")
    (root / "big").write_bytes(os.urandom(3 << 20))
    (root / "plain").write_bytes(b"no xattrs")
    for name in ("small", "big", "dir"):
        os.setxattr(root / name, "user.binary", BINARY)
        os.setxattr(root / name, "user.empty", b"")
    os.setxattr(root / "dir", "user.folder", b"yes")
    os.setxattr(root / "small", "user.a=b", b"c=d")  # '=' ends a record's key: GNU tar writes %3D
    os.setxattr(root / "small", "user.pct%41", b"%")  # and '%' as %25
    return root


def _pipe(sender: list[str], receiver: list[str], cwd: Path) -> None:
    send = subprocess.Popen(sender, cwd=cwd, stdout=subprocess.PIPE)
    done = subprocess.run(receiver, cwd=cwd, stdin=send.stdout, capture_output=True, timeout=60)
    send.stdout.close()
    assert send.wait(timeout=60) == 0 and done.returncode == 0, done.stderr


@pytest.mark.parametrize("options", [["-a"], ["-rX"]], ids=["archive", "xattrs"])
def test_xattrs_cross_a_stream_with_archive_or_x(tmp_path, options):
    src = _tree(tmp_path / "src")
    _pipe([*ZCP, *options, "src/", "-"], [*ZCP, *options, "-", "out/"], tmp_path)
    for name in ("small", "big", "dir", "plain"):
        assert _user_xattrs(tmp_path / "out" / name) == _user_xattrs(src / name), name


def test_without_x_no_xattr_is_sent(tmp_path):
    _tree(tmp_path / "src")
    _pipe([*ZCP, "-rlpt", "src/", "-"], [*ZCP, "-a", "-", "out/"], tmp_path)
    assert _user_xattrs(tmp_path / "out" / "small") == {}


def test_gnu_tar_reads_and_writes_them_alike(tmp_path):
    tar = need_tool("tar")
    src = _tree(tmp_path / "src")
    (tmp_path / "by-tar").mkdir()
    _pipe([*ZCP, "-a", "src/", "-"], [tar, "--xattrs", "--xattrs-include=user.*", "-x", "-C", "by-tar"], tmp_path)
    _pipe([tar, "--xattrs", "-C", "src", "-cf", "-", "."], [*ZCP, "-a", "-", "from-tar/"], tmp_path)
    for name in ("small", "big", "dir"):
        assert _user_xattrs(tmp_path / "by-tar" / name) == _user_xattrs(src / name), name
        assert _user_xattrs(tmp_path / "from-tar" / name) == _user_xattrs(src / name), name


def _file_with(xattrs: list[tuple[str, bytes]]) -> bytes:
    records = [*hashed(b"x"), *((f"SCHILY.xattr.{name}", value) for name, value in xattrs)]
    return zcp_global() + member(b"f", body=b"x", records=records) + END


def test_other_namespaces_only_as_root_with_perms(tmp_path):
    """trusted.* and security.* hold what only root may set (capabilities among them): like set-id
    bits, they are kept only when asked to keep permissions too."""
    need_root()
    stream = _file_with([("user.u", b"1"), ("trusted.t", b"2")])
    receive_bytes(stream, f"{tmp_path}/plain/", xattrs=True, preserve_owner=True, keep_perms=False)
    assert read_xattrs(str(tmp_path / "plain" / "f")) == {"user.u": b"1"}
    receive_bytes(stream, f"{tmp_path}/kept/", xattrs=True, preserve_owner=True, keep_perms=True)
    assert read_xattrs(str(tmp_path / "kept" / "f")) == {"user.u": b"1", "trusted.t": b"2"}
    receive_bytes(stream, f"{tmp_path}/none/", xattrs=False, preserve_owner=True, keep_perms=True)
    assert read_xattrs(str(tmp_path / "none" / "f")) == {}


@pytest.mark.parametrize("name", ["", "user.a\x00b", "user." + "x" * 260])
def test_a_bad_xattr_name_is_a_stream_error(tmp_path, name):
    with pytest.raises(StreamError, match="bad xattr name"):
        receive_bytes(_file_with([(name, b"v")]), f"{tmp_path}/dest/", xattrs=True)
    assert os.listdir(tmp_path / "dest") == []


@pytest.mark.parametrize("err", [errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSPC], ids=errno.errorcode.get)
def test_an_xattr_that_cannot_be_set_gets_a_warning_and_the_file_arrives(tmp_path, monkeypatch, err):
    """A filesystem without xattrs, a value the kernel calls invalid (a malformed capability), no
    room left for it: the attribute is not kept, the file is."""
    def refuse(*args):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "setxattr", refuse)
    warnings: list[str] = []
    stats = receive_bytes(_file_with([("user.u", b"1")]), f"{tmp_path}/dest/", xattrs=True, on_warning=warnings.append)
    assert stats.files == 1 and (tmp_path / "dest" / "f").read_bytes() == b"x"
    assert warnings == [f"f: xattr user.u not kept: {os.strerror(err)}"]


def test_xattrs_too_big_for_a_header_are_left_out_with_a_warning(tmp_path, monkeypatch):
    """A receiver takes extended headers up to 1 MiB: a file whose xattrs would not fit is sent
    without them, and the sender says so, rather than sending a stream its own receiver refuses."""
    from stream_support import walk_items

    from zcp.stream import pax, writer

    monkeypatch.setattr(writer, "_XATTR_ROOM", 200)
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(b"b")
    (src / "small").write_bytes(b"s")
    os.setxattr(src / "big", "user.v", b"x" * 300)
    os.setxattr(src / "small", "user.v", b"x" * 10)
    with open(tmp_path / "stream", "wb") as out:
        stats = writer.write_stream(out.fileno(), walk_items(src), xattrs=True)
    size = len(pax.record(b"SCHILY.xattr.user.v", b"x" * 300))
    assert stats.warnings == [f"{src / 'big'}: xattrs not sent: {size} bytes of them, more than the 200 a header may hold"]
    receive_bytes((tmp_path / "stream").read_bytes(), f"{tmp_path}/dest/", xattrs=True)
    assert _user_xattrs(tmp_path / "dest" / "big") == {}
    assert _user_xattrs(tmp_path / "dest" / "small") == {"user.v": b"x" * 10}


def test_acls_from_gnu_tar_acls_are_set(tmp_path):
    """tar --acls stores ACLs as text (SCHILY.acl.*): `zcp -a` as root sets them, as tar -x --acls does."""
    need_root()
    tar = need_tool("tar")
    from conftest import give_default_acl

    from zcp.acl import acl_xattr

    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "f").write_bytes(b"with an ACL")
    access = acl_xattr("user::rw-\nuser:1234:rwx\ngroup::r--\nmask::rwx\nother::r--")
    os.setxattr(src / "f", "system.posix_acl_access", access)
    give_default_acl(src / "dir", other=5)
    archive = tmp_path / "a.tar"
    subprocess.run([tar, "--acls", "--format=posix", "-C", src, "-cf", archive, "."], check=True)
    done = subprocess.run([*ZCP, "-a", "-", "out/"], cwd=tmp_path, stdin=open(archive, "rb"), capture_output=True)
    assert (done.returncode, done.stderr) == (0, b"")
    for rel, name in (("f", "system.posix_acl_access"), ("dir", "system.posix_acl_default")):
        assert os.getxattr(tmp_path / "out" / rel, name) == os.getxattr(src / rel, name), rel


def test_an_acl_naming_an_unknown_user_is_a_warning(tmp_path):
    need_root()
    records = [*hashed(b"x"), ("SCHILY.acl.access", b"user::rw-\nuser:nosuchuser-zcp:r--\ngroup::r--\nmask::r--\nother::---\n")]
    stream = zcp_global() + member(b"f", body=b"x", records=records) + END
    warnings: list[str] = []
    receive_bytes(stream, f"{tmp_path}/out/", xattrs=True, preserve_owner=True, keep_perms=True,
                  on_warning=warnings.append)
    assert (tmp_path / "out" / "f").read_bytes() == b"x"
    assert warnings == ["f: ACL not set: no user named 'nosuchuser-zcp' here"]
