"""POSIX ACL text (tar --acls records) to the kernel's xattr form."""

from __future__ import annotations

import struct

import pytest

from zcp.acl import AclError, acl_xattr

UNDEFINED = 0xFFFFFFFF


def xattr_of(*entries: tuple[int, int, int]) -> bytes:
    """The kernel's form: version 2, then (tag, perms, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def test_named_entries_go_in_the_kernels_order():
    text = "user::rw-\ngroup:66:rwx\nuser:1234:r-x\nuser:55:--x\ngroup::r--\nmask::rwx\nother::r--\n"
    assert acl_xattr(text) == xattr_of((0x01, 6, UNDEFINED), (0x02, 1, 55), (0x02, 5, 1234), (0x04, 4, UNDEFINED),
                                       (0x08, 7, 66), (0x10, 7, UNDEFINED), (0x20, 4, UNDEFINED))


def test_short_tags_commas_comments_names_and_appended_ids():
    text = "u::rwx,u:root:r--,g::r-x #effective:r-x\ng:nosuchgroup-zcp:rw-:4242,m::rwx,o::---"
    assert acl_xattr(text) == xattr_of((0x01, 7, UNDEFINED), (0x02, 4, 0), (0x04, 5, UNDEFINED), (0x08, 6, 4242),
                                       (0x10, 7, UNDEFINED), (0x20, 0, UNDEFINED))


@pytest.mark.parametrize(("text", "message"), [
    ("user:nosuchuser-zcp:rwx", "no user named 'nosuchuser-zcp'"),
    ("group::rwz", "bad permissions"),
    ("owner::rwx", "bad ACL entry"),
    ("mask:bob:rwx", "takes no name"),
    ("user:rwx", "bad ACL entry"),
])
def test_what_cannot_be_converted_says_why(text, message):
    with pytest.raises(AclError, match=message):
        acl_xattr(text)
