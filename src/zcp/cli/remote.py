"""`zcp SRC... HOST:DST` and `zcp HOST:SRC... DST`: a zcp stream through the remote shell.

A push is `zcp SRC... - | ssh HOST zcp - DST` in one command, a pull is
`ssh HOST zcp SRC... - | zcp - DST`: the same stream, hashes and receiver checks. This side runs
its half in this process, the remote shell (-e/--rsh, default ssh) starts the other half, whose
messages come through on stderr. The receiving side accepts only a zcp stream (--format=zcp): a
zcp that failed before sending anything never leaves an empty file behind.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from zcp.cli.remote_args import RemotePath, receiver_options, sender_options, shell_command, split_remote
from zcp.cli.streams import STDIO, receive_into, refuse_unsupported_options, send_tree, stream_roots
from zcp.config import Config, StreamFormat
from zcp.errors import BrokenPipe, ExitCode, RemoteShellError, StreamError, UsageError, ZcpError, remote_exit_code
from zcp.planner.operands import check_target

# What ssh or the remote shell exits with when zcp never ran: ssh's own failure, or the command
# not found / not executable there.
_SSH_FAILED, _NOT_FOUND, _NOT_EXECUTABLE = 255, 127, 126
FAILED_GRACE = 2.0  # seconds the remote gets to end once this side has failed


@dataclass(frozen=True)
class Shell:
    rsh: str  # the remote shell command, e.g. "ssh -p 2222"
    remote_zcp: str  # how to start zcp on the other host


def run_remote(sources: list[str], dest: str, config: Config, shell: Shell, jobs_given: bool) -> int:
    remote_dest = split_remote(dest)
    remote_sources = [split_remote(src) for src in sources]
    if STDIO in sources or dest == STDIO:
        raise UsageError("'-' (a pipe end) and a remote HOST:PATH cannot be combined")
    if remote_dest is not None and any(remote_sources):
        raise UsageError("both sides are remote: run zcp on one of the hosts")
    refuse_unsupported_options(config, jobs_given, {}, "with a remote HOST:PATH (it travels as a stream)")
    if remote_dest is not None:
        return _push(sources, remote_dest, config, shell)
    if not all(remote_sources):
        raise UsageError("sources must be all local or all remote")
    hosts = {remote.host for remote in remote_sources}
    if len(hosts) > 1:
        raise UsageError(f"remote sources on several hosts ({', '.join(sorted(hosts))}): one host a run")
    return _pull([remote.path for remote in remote_sources], hosts.pop(), dest, config, shell)


def _push(sources: list[str], dest: RemotePath, config: Config, shell: Shell) -> int:
    """Send the stream into the remote shell, whose zcp receives it into DEST there."""
    roots = stream_roots(sources, config)  # a missing source fails before anything connects
    argv = shell_command(shell.rsh, dest.host, shell.remote_zcp, receiver_options(config), [STDIO, dest.path])
    with _Remote(argv, dest.host, stdin=subprocess.PIPE) as remote:
        try:
            code = send_tree(roots, config, remote.process.stdin.fileno())
        except (BrokenPipe, BrokenPipeError):  # it stopped reading: its exit code says why
            return remote.outcome(None, "the remote zcp stopped reading the stream")
        except ZcpError:  # the stream is incomplete: the receiver drops what it was writing
            remote.end()
            raise
        return remote.outcome(code)


def _pull(paths: list[str], host: str, dest: str, config: Config, shell: Shell) -> int:
    """The remote zcp sends PATHS through the remote shell; receive the stream into DEST here."""
    check_target(dest)  # before connecting: a usage error, as for a local copy
    argv = shell_command(shell.rsh, host, shell.remote_zcp, sender_options(config), [*paths, STDIO])
    with _Remote(argv, host, stdout=subprocess.PIPE) as remote:
        try:
            code = receive_into(dest, config, remote.process.stdout.fileno(), StreamFormat.ZCP)
        except ZcpError as exc:  # caused by the sender failing (its message said why), or ours
            return remote.outcome(None, exc)
        return remote.outcome(code)


class _Remote:
    """The remote shell process, its end of the pipe ours; always waited for, and stopped if this
    side ends first (an interruption)."""

    def __init__(self, argv: list[str], host: str, **pipes):
        self.host = host
        try:  # stdin of a pull: not ours to hand over (ssh would read it)
            self.process = subprocess.Popen(argv, **{"stdin": subprocess.DEVNULL, **pipes})
        except OSError as exc:
            raise RemoteShellError(f"cannot start the remote shell {argv[0]!r}: {exc.strerror}") from None

    def __enter__(self) -> _Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.end()

    def end(self, grace: float | None = None) -> int | None:
        """Close our end of the pipe (EOF, or EPIPE, for the other side) and wait for it to exit;
        with ``grace``, that long at most: then it is stopped, and None says so."""
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:  # it does not notice (a remote busy hashing a big file)
            self.process.terminate()
            self.process.wait()
            return None

    def outcome(self, local: int | None, failure: ZcpError | str | None = None) -> int:
        """The run's exit code (errors.remote_exit_code). ``local`` None: this side failed with
        ``failure``, raised unless the remote failed first and said why on stderr (then it has
        ended, or ends within FAILED_GRACE: any longer and it is stopped, for this side's failure)."""
        code = self.end(None if local is not None else FAILED_GRACE)
        if code in (_SSH_FAILED, _NOT_FOUND, _NOT_EXECUTABLE):
            raise RemoteShellError(self._shell_failure(code))
        if local is None and code in (None, ExitCode.OK, ExitCode.BROKEN_PIPE):
            raise failure if isinstance(failure, ZcpError) else StreamError(str(failure))
        return remote_exit_code(code, local)

    def _shell_failure(self, code: int) -> str:
        if code == _SSH_FAILED:  # ssh's own failure: before the stream, or while it ran
            return f"the remote shell failed (exit {code}): no connection to {self.host}, or it broke"
        what = "not found" if code == _NOT_FOUND else "not executable"
        return f"zcp {what} on {self.host} (exit {code}): install it there or name it with --remote-zcp"
