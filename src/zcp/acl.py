"""POSIX ACLs from their text form (what `tar --acls` stores in SCHILY.acl.* records) to the kernel's
xattr form (system.posix_acl_access / system.posix_acl_default), so that a receiver sets them like
any other extended attribute. Pure, but for looking up user and group names."""

from __future__ import annotations

import grp
import pwd
import struct

_VERSION = 2  # POSIX_ACL_XATTR_VERSION
_UNDEFINED_ID = 0xFFFFFFFF
# tag: (its value for the owner/group/mask/other entry, its value for a named user or group entry)
_TAGS = {"user": (0x01, 0x02), "group": (0x04, 0x08), "mask": (0x10, None), "other": (0x20, None)}
_SHORT = {"u": "user", "g": "group", "m": "mask", "o": "other"}
_PERMS = {"r": 4, "w": 2, "x": 1, "-": 0}


class AclError(ValueError):
    """ACL text that cannot be turned into the kernel's form here (malformed, or an unknown name)."""


def acl_xattr(text: str) -> bytes:
    """``text`` (entries like ``user:bob:rw-`` separated by newlines or commas, ``#`` comments, an
    optional numeric id as a 4th field) as the value of a system.posix_acl_* xattr: entries in the
    order the kernel wants, by tag then id."""
    entries = []
    for raw in text.replace(",", "\n").splitlines():
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        fields = entry.split(":")
        if len(fields) not in (3, 4) or _SHORT.get(fields[0], fields[0]) not in _TAGS:
            raise AclError(f"bad ACL entry {entry!r}")
        tag = _SHORT.get(fields[0], fields[0])
        owner_tag, named_tag = _TAGS[tag]
        perms = _perms(fields[2], entry)
        if not fields[1]:
            entries.append((owner_tag, _UNDEFINED_ID, perms))
        elif named_tag is None:
            raise AclError(f"bad ACL entry {entry!r}: {tag} takes no name")
        else:
            entries.append((named_tag, _id(tag, fields[1], fields[3] if len(fields) == 4 else ""), perms))
    entries.sort()
    return struct.pack("<I", _VERSION) + b"".join(struct.pack("<HHI", tag, perms, ident)
                                                  for tag, ident, perms in entries)


def _perms(text: str, entry: str) -> int:
    if not text or any(ch not in _PERMS for ch in text):
        raise AclError(f"bad permissions in ACL entry {entry!r}")
    return sum(_PERMS[ch] for ch in set(text))


def _id(tag: str, name: str, numeric: str) -> int:
    """A named entry's id: its number, the id tar appended, or the name looked up here."""
    for text in (name, numeric):
        if text.isdigit() and int(text) < _UNDEFINED_ID:
            return int(text)
    try:
        return pwd.getpwnam(name).pw_uid if tag == "user" else grp.getgrnam(name).gr_gid
    except KeyError:
        raise AclError(f"no {tag} named {name!r} here") from None
