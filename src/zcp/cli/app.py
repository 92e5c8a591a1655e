"""The command line: options -> frozen Config -> a run -> one exit code.

This module is the only place that exits. Exceptions map to codes through errors.ExitCode.

No ``from __future__ import annotations`` here: typer reads the options from the annotations, and
evaluating them from strings at every start cost 3 ms of a 60 ms run.
"""

import os
import signal
import sys
from typing import Annotated, NoReturn

import typer

from zcp import __version__
from zcp.config import Compare, Config, Method, Preserve, Reflink, StreamFormat
from zcp.errors import BrokenPipe, ExitCode, Interrupted, UsageError, ZcpError, describe

HELP = """Copy or sync files and trees through the kernel's fastest path.

\b
  zcp [OPTIONS] SRC... DST
  zcp [OPTIONS] SRC... -
  zcp [OPTIONS] - DEST
  zcp [OPTIONS] SRC... [USER@]HOST:DST
  zcp [OPTIONS] [USER@]HOST:SRC... DST

SRC/ (trailing slash) copies a folder's contents into DST; SRC copies the folder itself into
DST when DST is a folder (or ends with /, or there are several sources), else DST becomes the copy.
A - as DST writes a tar stream to stdout (--format raw: one file's bytes); a - as SRC reads one.
HOST:PATH (a colon before any slash; ./a:b is local) is on another host: the same stream goes
through ssh (-e) to a zcp started there, as in zcp SRC - | ssh HOST zcp - DST; there, as through
a pipe, SRC lands in DST as DST/SRC (rsync's rule), and one regular file to a new name becomes it.

Subcommands: zcp hash (xxh3-128 lists like xxhsum -H2; -c checks them) and zcp check SRC DST
(compare two trees by content); a file named hash or check is copied as ./hash.

Exit codes: 0 ok, 1 usage, 11 file I/O, 12 stream, 14 remote shell or remote zcp did not start,
20 interrupted, 23 partial, 24 vanished, 25 --max-delete reached, 141 stdout closed."""

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        print(f"zcp {__version__}")
        raise typer.Exit(0)


@app.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
def copy(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(metavar="PATH", show_default=False, help="SRC... DST: sources, then the destination.")],
    archive: Annotated[bool, typer.Option("-a", "--archive", help="Recursive, keep everything: -rptolHXD (-o keeps the group too).")] = False,
    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Copy folders and their contents (symlinks as symlinks).")] = False,
    perms: Annotated[bool, typer.Option("-p", "--perms", help="Keep permissions.")] = False,
    times: Annotated[bool, typer.Option("-t", "--times", help="Keep modification and access times (ns).")] = False,
    owner: Annotated[bool, typer.Option("-o", "--owner", help="Keep owner and group (as root).")] = False,
    links: Annotated[bool, typer.Option("-l", "--links", help="Copy symlinks as symlinks.")] = False,
    hard_links: Annotated[bool, typer.Option("-H", "--hard-links", help="Keep hard links.")] = False,
    xattrs: Annotated[bool, typer.Option("-X", "--xattrs", help="Keep extended attributes.")] = False,
    devices: Annotated[bool, typer.Option("-D", "--devices", help="Recreate FIFOs, sockets, devices (as root).")] = False,
    sparse: Annotated[bool, typer.Option("--sparse/--no-sparse", help="Keep holes in sparse files.")] = True,
    method: Annotated[Method, typer.Option("--method", help="auto tries each kernel path in turn; any other value forces that path and fails the files it cannot serve.")] = Method.AUTO,
    reflink: Annotated[Reflink, typer.Option("--reflink", help="Share extents: auto; always (else fail); never (also no copy_file_range within a filesystem, which may clone).")] = Reflink.AUTO,
    dry_run: Annotated[bool, typer.Option("-n", "--dry-run", help="Print the plan (action, method, why); write nothing.")] = False,
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, show_default=False, help="List files (local copies) and print a summary.")] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print errors only.")] = False,
    fsync: Annotated[bool, typer.Option("--fsync", help="fsync each file and its folder before finishing.")] = False,
    jobs: Annotated[int, typer.Option("-j", "--jobs", min=0, metavar="N", help="Processes that walk and copy folders; 0 = one per CPU.")] = 0,
    checksum: Annotated[bool, typer.Option("-c", "--checksum", help="Up to date means same size and xxh3-128, not same mtime.")] = False,
    size_only: Annotated[bool, typer.Option("--size-only", help="Up to date means same size.")] = False,
    update: Annotated[bool, typer.Option("-u", "--update", help="Keep destination files that are newer.")] = False,
    ignore_existing: Annotated[bool, typer.Option("--ignore-existing", help="Never touch destination files that exist.")] = False,
    delete: Annotated[bool, typer.Option("--delete", help="Delete destination entries that are not in the source.")] = False,
    max_delete: Annotated[int | None, typer.Option("--max-delete", min=0, metavar="N", help="Delete at most N entries (exit 25 beyond); plans in one process.")] = None,
    delete_excluded: Annotated[bool, typer.Option("--delete-excluded", help="With --delete, also delete excluded entries.")] = False,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", metavar="PATTERN", help="Skip matching entries (rsync's rules: /anchored, *, **, ?, [..], trailing / for folders).")] = None,
    include: Annotated[list[str] | None, typer.Option("--include", metavar="PATTERN", help="Keep matching entries (first matching rule wins).")] = None,
    exclude_from: Annotated[list[str] | None, typer.Option("--exclude-from", metavar="FILE", help="Read exclude patterns from FILE.")] = None,
    include_from: Annotated[list[str] | None, typer.Option("--include-from", metavar="FILE", help="Read include patterns from FILE.")] = None,
    itemize: Annotated[bool, typer.Option("-i", "--itemize-changes", help="Print one rsync-style line per change on stdout.")] = False,
    inplace: Annotated[bool, typer.Option("--inplace", help="Update existing files by rewriting only their changed blocks in place (not atomic; for files too big to duplicate).")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Read every written file back from storage and compare xxh3-128 with the source.")] = False,
    stream_format: Annotated[StreamFormat, typer.Option("--format", help="With - as SRC or DST: tar stream, raw bytes of one file, or auto; receiving, also zcp (a zcp stream only, never raw).")] = StreamFormat.AUTO,
    rsh: Annotated[str, typer.Option("-e", "--rsh", envvar="ZCP_RSH", metavar="COMMAND", help="Remote shell for HOST:PATH operands (default ssh; ZCP_RSH sets it too).")] = "ssh",
    remote_zcp: Annotated[str, typer.Option("--remote-zcp", metavar="COMMAND", help="The command line that starts zcp on the other host, as its shell reads it (e.g. 'python3 -m zcp').")] = "zcp",
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> int:
    if len(paths) < 2:
        raise UsageError("need a source and a destination (usage: zcp [OPTIONS] SRC... DST)")
    if reflink is Reflink.ALWAYS and method not in (Method.AUTO, Method.REFLINK):
        raise UsageError(f"--reflink=always conflicts with --method={method}")
    if reflink is Reflink.NEVER and method in (Method.REFLINK, Method.COPY_FILE_RANGE):
        raise UsageError(f"--reflink=never conflicts with --method={method}"
                         + (" (it clones within xfs and btrfs)" if method is Method.COPY_FILE_RANGE else ""))
    if inplace and (reflink is Reflink.ALWAYS or method is Method.REFLINK):
        raise UsageError("--inplace rewrites blocks inside the existing file, which a reflink cannot do: "
                         f"it conflicts with {'--reflink=always' if reflink is Reflink.ALWAYS else '--method=reflink'}")
    base = Preserve.archive() if archive else Preserve()
    preserve = Preserve(
        mode=base.mode or perms, times=base.times or times, owner=base.owner or owner,
        links=base.links or links or recursive, hard_links=base.hard_links or hard_links,
        xattrs=base.xattrs or xattrs, sparse=sparse, specials=base.specials or devices,
    )
    if checksum and size_only:
        raise UsageError("--checksum and --size-only exclude each other")
    compare = Compare.CHECKSUM if checksum else Compare.SIZE_ONLY if size_only else Compare.QUICK
    config = Config(
        recursive=recursive or archive, preserve=preserve, method=method, reflink=reflink, dry_run=dry_run,
        verbose=verbose, quiet=quiet, fsync=fsync, jobs=jobs or default_jobs(), compare=compare, update=update,
        ignore_existing=ignore_existing, delete=delete or delete_excluded or max_delete is not None,
        max_delete=max_delete, delete_excluded=delete_excluded, filters=_filters(ctx.obj, bool(exclude or include or exclude_from or include_from)), itemize=itemize, verify=verify, inplace=inplace,
    )
    sources, dest = paths[:-1], paths[-1]
    remote = any(":" in path for path in paths) and _names_a_host(paths)
    _refuse_unused(ctx, stream="-" in paths, remote=remote)
    if remote:  # HOST:PATH, through the remote shell
        from zcp.cli.remote import Shell, run_remote

        return run_remote(sources, dest, config, Shell(rsh, remote_zcp), jobs_given=jobs != 0)
    if "-" in paths:  # a pipe end: stdin as the source or stdout as the destination
        from zcp.cli.streams import run_stream

        return run_stream(sources, dest, config, stream_format, jobs_given=jobs != 0)
    from zcp.cli.run import run_copy  # imported late: --help and --version stay fast

    return run_copy(sources, dest, config)


def _names_a_host(paths: list[str]) -> bool:
    """Whether an operand is HOST:PATH; the parser is imported only for operands with a colon (a
    local copy's start-up does not pay for it)."""
    from zcp.cli.remote_args import split_remote

    return any(map(split_remote, paths))


def _refuse_unused(ctx: typer.Context, stream: bool, remote: bool) -> None:
    """Options given for another kind of run are errors, not silently ignored (ZCP_RSH, an
    environment variable, is no option given)."""
    unused = [f"{option}: only with {needs}" for name, option, needs, used in (
        ("stream_format", "--format", "'-' (a remote copy always sends a zcp stream)", stream),
        ("rsh", "--rsh", "a remote HOST:PATH", remote),
        ("remote_zcp", "--remote-zcp", "a remote HOST:PATH", remote),
    ) if not used and ctx.get_parameter_source(name).name == "COMMANDLINE"]
    if unused:
        raise UsageError("; ".join(unused))


_FILTER_OPTIONS = {"--exclude": (False, False), "--include": (True, False),
                   "--exclude-from": (False, True), "--include-from": (True, True)}


def _filters(argv: list[str] | None, given: bool):
    """Filter rules in command-line order, read from ``argv`` as main() hands it over: typer groups
    each option's values, losing their order, and the first matching rule wins."""
    if not given:
        return None
    if argv is None:
        raise UsageError("filters need the command line in order: run zcp through zcp.cli.app.main")
    from zcp.planner.filters import Filters  # only runs with filters pay for it

    rules: list[tuple[bool, str]] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name not in _FILTER_OPTIONS:
            continue
        include, from_file = _FILTER_OPTIONS[name]
        value = value if eq else next(args, "")
        rules.extend(Filters.read_rules_file(value, include) if from_file else [(include, value)])
    return Filters.build(rules) if rules else None


def default_jobs() -> int:
    """One copying process per CPU we may run on (measured: see docs/benchmarks.md)."""
    return len(os.sched_getaffinity(0))


from zcp.cli.tools import check_app, hash_app  # noqa: E402  (light: typer and zcp.errors only)

# Subcommands, by the first word of the command line (tools/gendocs.py documents them from here).
SUBCOMMANDS = {"hash": hash_app, "check": check_app}


def _interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def _hold_closed_std_fds() -> None:
    """A closed stdin, stdout or stderr gets an O_PATH fd on /dev/null, so that no file zcp opens
    takes that number and is then read as stdin or written as stdout; reading or writing the
    placeholder fails with EBADF, as on the closed fd."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_PATH | os.O_CLOEXEC)  # the lowest free number: this one
    # Python leaves sys.stdout/sys.stderr None for a closed fd, and print(file=None) writes to
    # stdout: a message must never end up in a stream there. Messages to a closed fd are lost.
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")


def main(argv: list[str] | None = None) -> NoReturn:
    _hold_closed_std_fds()
    args = sys.argv[1:] if argv is None else argv
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _interrupted)
    command, prog, rest = app, "zcp", args
    if args and args[0] in SUBCOMMANDS:  # a file named like a subcommand is copied as ./hash
        command, prog, rest = SUBCOMMANDS[args[0]], f"zcp {args[0]}", args[1:]
    try:
        code = typer.main.get_command(command).main(args=rest, prog_name=prog, standalone_mode=False, obj=rest)
        sys.stdout.flush()  # here, not at exit, where a reader gone away could not be told apart
    except BrokenPipe:  # the reader of stdout went away: quiet, as a process killed by SIGPIPE
        code = ExitCode.BROKEN_PIPE
    except BrokenPipeError:  # ... found out by the last flush
        from zcp.cli.output import detach_stdout

        detach_stdout()
        code = ExitCode.BROKEN_PIPE
    except typer.TyperException as exc:
        _error(f"{exc.format_message()} (see {prog} --help)")
        code = ExitCode.USAGE
    except ZcpError as exc:
        _error(str(exc))
        code = exc.exit_code
    except Interrupted:
        _error("interrupted")
        code = ExitCode.INTERRUPTED
    except typer.Abort:
        code = ExitCode.INTERRUPTED
    except OSError as exc:  # a whole-run step that no finer handler took: one line, not a traceback
        _error(describe(exc))
        code = ExitCode.FILE_IO
    sys.exit(int(code or 0))


def _error(message: str) -> None:
    print(f"zcp: {message}", file=sys.stderr)
