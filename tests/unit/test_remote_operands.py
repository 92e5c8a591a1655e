"""Which operands name another host, and the command line that starts zcp there (pure logic)."""

from __future__ import annotations

import os
import shlex

import pytest

from zcp.config import Config, Preserve
from zcp.errors import UsageError
from zcp.planner.filters import Filters
from zcp.cli.remote_args import RemotePath, quote_path, receiver_options, sender_options, shell_command, split_remote


@pytest.mark.parametrize(("operand", "expected"), [
    ("host:dir/", RemotePath("host", "dir/")),
    ("user@host:/abs path", RemotePath("user@host", "/abs path")),
    ("host:", RemotePath("host", ".")),  # the remote home folder
    ("host:a:b", RemotePath("host", "a:b")),
    ("[::1]:/data", RemotePath("::1", "/data")),
    ("[fe80::1%eth0]:", RemotePath("fe80::1%eth0", ".")),
    ("user@[::1]:/data", RemotePath("user@::1", "/data")),
])
def test_remote_operands(operand, expected):
    assert split_remote(operand) == expected


@pytest.mark.parametrize("operand", ["plain", "./a:b", "dir/a:b", "/abs:x", ":x", "-", "[::1]", "[::1]x:y", "[a/b]:c", "",
                                     "u@[x:y", "[]:z"])
def test_local_operands(operand):
    assert split_remote(operand) is None


def test_a_host_that_looks_like_an_option_is_refused():
    with pytest.raises(UsageError, match="cannot start with '-'"):
        split_remote("-oProxyCommand=x:dst")


@pytest.mark.parametrize(("path", "quoted"), [
    ("~", "~"),
    ("~/a b", "~/'a b'"),
    ("~user/x;y", "~user/'x;y'"),
    ("a~/b", "'a~/b'"),
    ("~$(id)/x", "'~$(id)/x'"),  # not a user name: quoted whole
    ("/plain/path", "/plain/path"),
])
def test_paths_are_one_word_for_the_remote_shell(path, quoted):
    assert quote_path(path) == quoted


ODD = ["new\nline", "it's", "$(reboot)", "-dash", "semi;colon", os.fsdecode(b"\xff\xfe"), "--", " lead"]


def test_shell_command_survives_the_remote_shell():
    argv = shell_command("ssh -p 2222 -o 'ProxyJump=a b'", "user@host", "python3 -m zcp", ["-p", "--exclude=- *.log"], ODD)
    assert argv[:5] == ["ssh", "-p", "2222", "-o", "ProxyJump=a b"]
    assert argv[5] == "user@host"
    # The remote shell splits the command line as shlex does (POSIX sh rules).
    assert shlex.split(argv[6]) == ["python3", "-m", "zcp", "-p", "--exclude=- *.log", "--", *ODD]


@pytest.mark.parametrize("rsh", ["", "   ", "ssh 'unclosed"])
def test_a_bad_remote_shell_is_a_usage_error(rsh):
    with pytest.raises(UsageError, match="--rsh"):
        shell_command(rsh, "host", "zcp", [], ["x"])


def test_receiver_gets_what_it_applies():
    config = Config(recursive=True, preserve=Preserve.archive(), verify=True, verbose=2)
    assert receiver_options(config) == ["-p", "-o", "-D", "-X", "--verify", "-v", "-v", "--format=zcp"]
    assert receiver_options(Config(quiet=True)) == ["-q", "--format=zcp"]


def test_sender_gets_what_it_walks_and_sends():
    rules = [(False, "*.log"), (True, "+ keep/"), (False, "- tmp/**"), (True, "!x")]
    config = Config(recursive=True, preserve=Preserve.archive(), filters=Filters.build(rules))
    options = sender_options(config)
    assert options[:5] == ["-r", "-l", "-H", "-X", "-D"]
    assert options[5:] == ["--exclude=- *.log", "--include=+ keep/", "--exclude=- tmp/**", "--include=+ !x"]


def test_forwarded_filters_build_the_same_rules():
    """The remote zcp reads the forwarded options as any command line: the same rules come out."""
    from zcp.cli.app import _filters

    rules = [(False, "*.log"), (True, "dir/"), (False, "- **/cache/***"), (True, "+ - odd"), (False, "/a b")]
    original = Filters.build(rules)
    again = _filters(original.as_options(), True)
    assert again.rules == original.rules


def test_a_remote_file_named_dash_is_no_pipe_end():
    assert split_remote("host:-") == RemotePath("host", "./-")


def test_a_remote_command_line_too_long_for_the_kernel_is_a_usage_error():
    rules = [f"--exclude=- build/output/file{i:05d}.o" for i in range(5000)]
    with pytest.raises(UsageError, match="over the kernel's limit"):
        shell_command("ssh", "host", "zcp", rules, ["src/", "-"])
