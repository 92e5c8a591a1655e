"""Operands on another host, and the command line that runs zcp there (pure: nothing is run here).

rsync's rule: an operand is remote when a colon comes before any slash, ``[USER@]HOST:PATH``, or
``[USER@][ADDRESS]:PATH`` for an IPv6 address. ``./a:b`` names a local file. ``HOST:`` alone is the
remote user's home folder.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from zcp.config import Config
from zcp.errors import UsageError


@dataclass(frozen=True)
class RemotePath:
    host: str  # as ssh takes it: HOST or USER@HOST (an IPv6 address without its brackets)
    path: str


# [USER@][ADDRESS]:PATH, the address without a slash
_BRACKETED = re.compile(r"([^@/:\[]+@)?\[([^\]/]+)\]:(.*)", re.DOTALL)


def split_remote(operand: str) -> RemotePath | None:
    """The host and path of a remote operand; None for a local one."""
    bracketed = _BRACKETED.fullmatch(operand)
    if bracketed:
        user, address, path = bracketed.groups()
        return _checked(RemotePath((user or "") + address, path))
    if operand.startswith("[") or "@[" in operand.partition(":")[0]:
        return None  # a bracket that opens no address: a local name
    host, colon, path = operand.partition(":")
    if not colon or not host or "/" in host:
        return None
    return _checked(RemotePath(host, path))


def _checked(remote: RemotePath) -> RemotePath:
    if remote.host.startswith("-"):  # ssh would take it for an option
        raise UsageError(f"'{remote.host}': a host name cannot start with '-'")
    if remote.path == "-":  # a file named '-': not the remote zcp's stdin or stdout
        return RemotePath(remote.host, "./-")
    return RemotePath(remote.host, remote.path or ".")


_MAX_ARGUMENT = 128 << 10  # MAX_ARG_STRLEN: ssh passes the remote command line as one argument

# A leading ~ or ~user is left to the remote shell to expand, as scp and rsync leave it; the slash
# after it must stay unquoted too, or the shell does not expand it.
_HOME = re.compile(r"~[A-Za-z0-9._-]*(?:/|$)")


def quote_path(path: str) -> str:
    """``path`` as one word for the remote shell: quoted, except a leading ~ or ~user."""
    home = _HOME.match(path)
    if home is None:
        return shlex.quote(path)
    rest = path[home.end():]
    return home.group() + (shlex.quote(rest) if rest else "")


def shell_command(rsh: str, host: str, remote_zcp: str, args: Sequence[str], paths: Sequence[str]) -> list[str]:
    """The argv that starts ``remote_zcp ARGS -- PATHS`` on ``host`` through the remote shell.

    ssh hands the remote shell one command line: the arguments are quoted for it; ``remote_zcp``
    (say ``python3 -m zcp``) is a command line already and goes as it is.
    """
    try:
        shell = shlex.split(rsh)
    except ValueError as exc:
        raise UsageError(f"--rsh {rsh!r}: {exc}") from None
    if not shell:
        raise UsageError("--rsh: no command given")
    command = " ".join([remote_zcp, *map(shlex.quote, args), "--", *map(quote_path, paths)])
    if len(os.fsencode(command)) >= _MAX_ARGUMENT:
        raise UsageError(f"the command line for the remote zcp would be {len(os.fsencode(command))} bytes, over the "
                         f"kernel's limit for one argument ({_MAX_ARGUMENT}): give fewer filter rules or sources")
    return [*shell, host, command]


def receiver_options(config: Config) -> list[str]:
    """What the zcp that receives on the other host needs of this run's options (it always keeps
    times, symlinks and hard links as the stream carries them)."""
    keep = config.preserve
    flags = [flag for flag, on in (("-p", keep.mode), ("-o", keep.owner), ("-D", keep.specials),
                                   ("-X", keep.xattrs), ("--verify", config.verify), ("-q", config.quiet)) if on]
    return [*flags, *["-v"] * config.verbose, "--format=zcp"]


def sender_options(config: Config) -> list[str]:
    """What the zcp that sends from the other host needs of this run's options: what to walk and
    what each entry carries."""
    keep = config.preserve
    flags = [flag for flag, on in (("-r", config.recursive), ("-l", keep.links), ("-H", keep.hard_links),
                                   ("-X", keep.xattrs), ("-D", keep.specials), ("-q", config.quiet)) if on]
    return [*flags, *["-v"] * config.verbose, *(config.filters.as_options() if config.filters else [])]
