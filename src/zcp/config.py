"""Run configuration: a frozen value built once by the CLI and read by everything else."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Excluder(Protocol):
    def excluded(self, rel: str, is_dir: bool) -> bool: ...


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


class StreamFormat(StrEnum):
    """What crosses a pipe: a pax tar stream, one file's raw bytes, auto, or zcp: auto that accepts
    only a zcp stream, never raw bytes (what a remote zcp sends; see docs/stream-format.md)."""

    AUTO = "auto"
    TAR = "tar"
    RAW = "raw"
    ZCP = "zcp"


class Compare(StrEnum):
    """How an existing destination file is judged up to date."""

    QUICK = "quick"  # same size and mtime (ns)
    CHECKSUM = "checksum"  # same size and xxh3-128
    SIZE_ONLY = "size-only"


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
    jobs: int = 1  # processes copying files; 1 copies in the main process
    compare: Compare = Compare.QUICK
    update: bool = False  # -u: keep destination files that are newer
    ignore_existing: bool = False
    delete: bool = False
    max_delete: int | None = None
    delete_excluded: bool = False
    filters: Excluder | None = None
    itemize: bool = False
    verify: bool = False  # read every written file back from storage and compare hashes
    inplace: bool = False  # --inplace: rewrite an existing file's changed blocks in it (no temp, not atomic)

