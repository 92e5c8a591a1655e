"""Worker processes without multiprocessing: real forks and pipes, messages of any size, every way
a child can end."""

from __future__ import annotations

import os
import signal

import pytest

from zcp.exec.forked import Child, readable

pytestmark = pytest.mark.usefixtures("no_hang")


def echo(channel, suffix: str) -> None:
    """Sends back every message with ``suffix`` added, until None."""
    while (message := channel.recv()) is not None:
        channel.send(message + suffix)


def test_messages_of_any_size_go_both_ways_in_order():
    child = Child.start(echo, "!")
    big = "x" * (5 << 20)  # many times a pipe's buffer: written while the other side reads
    for message in ("a", big, ""):
        child.channel.send(message)
        assert child.channel.recv() == message + "!"
    child.channel.send(None)
    assert child.join() == 0 and not child.is_alive()
    child.channel.close()


def test_poll_and_readable_say_when_a_message_waits():
    first, second = Child.start(echo, "1"), Child.start(echo, "2")
    assert not first.channel.poll()
    second.channel.send("b")
    assert readable([first.channel, second.channel]) == [second.channel]
    assert second.channel.poll() and second.channel.recv() == "b2"
    for child in (first, second):
        child.channel.send(None)
        child.join()
        child.channel.close()


def fail(channel) -> None:
    raise RuntimeError("worker failed")


def test_a_failing_target_exits_1_with_its_traceback_and_never_returns_to_the_caller(capfd):
    here = os.getpid()
    child = Child.start(fail)
    assert os.getpid() == here  # only the parent comes back from start()
    with pytest.raises(EOFError):
        child.channel.recv()  # its end closed when it exited
    assert child.join() == 1
    assert "RuntimeError: worker failed" in capfd.readouterr().err
    child.channel.close()


def test_a_killed_child_reads_as_minus_its_signal_and_a_closed_parent_is_end_of_file():
    child = Child.start(echo, "")
    os.kill(child.pid, signal.SIGKILL)
    assert child.join() == -signal.SIGKILL
    with pytest.raises(EOFError):
        child.channel.recv()
    with pytest.raises(BrokenPipeError):
        child.channel.send("anyone?")
    child.channel.close()


def test_a_child_sees_end_of_file_when_the_parent_closes_its_end():
    child = Child.start(echo, "")
    child.channel.close()  # echo's recv() raises EOFError: the child exits 1, with a traceback
    assert child.join() == 1
