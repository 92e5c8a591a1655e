"""Run configuration: a frozen value built once by the CLI and read by everything else."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Method(StrEnum):
    """Kernel paths that move file bytes, cheapest first."""

    AUTO = "auto"
    REFLINK = "reflink"
    COPY_FILE_RANGE = "copy_file_range"
    SENDFILE = "sendfile"
    SPLICE = "splice"
    RW = "rw"


class Reflink(StrEnum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class Preserve:
    """Which metadata to carry over (``-a`` turns all of them on)."""

    mode: bool = False
    times: bool = False
    owner: bool = False
    links: bool = False  # symlinks as symlinks (otherwise followed)
    hard_links: bool = False
    xattrs: bool = False
    sparse: bool = True
    specials: bool = False  # FIFOs, sockets, devices

    @classmethod
    def archive(cls) -> "Preserve":
        return cls(mode=True, times=True, owner=True, links=True, hard_links=True, xattrs=True, specials=True)


@dataclass(frozen=True)
class Config:
    recursive: bool = False
    preserve: Preserve = field(default_factory=Preserve)
    method: Method = Method.AUTO
    reflink: Reflink = Reflink.AUTO
    dry_run: bool = False
    verbose: int = 0
    quiet: bool = False
    fsync: bool = False

