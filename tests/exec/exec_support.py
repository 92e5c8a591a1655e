"""Helpers for the executor fault tests: os calls that misbehave on cue, sinks with hooks, a hang guard.

Imported by name from the test modules (a conftest.py here would shadow tests/conftest.py).
"""

from __future__ import annotations

import functools

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from zcp.exec.events import RecordingSink
from zcp.model import Action



# behaviour(call number from 1, the real function, its arguments) -> what the call returns
Behaviour = Callable[[int, Callable, tuple], object]


class Injected:
    """Replaces ``os.<name>`` for one test; counts calls and lets ``behaviour`` decide each one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, behaviour: Behaviour | None = None):
        self.real = getattr(os, name)
        self.calls = 0
        self.behaviour = behaviour or (lambda n, real, args: real(*args))
        monkeypatch.setattr(os, name, self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        real = functools.partial(self.real, **kwargs) if kwargs else self.real  # dir_fd= and the like
        return self.behaviour(self.calls, real, args)


def fail_call(number: int, err: int) -> Behaviour:
    """Call ``number`` raises OSError(err); the others go through."""

    def behaviour(n: int, real: Callable, args: tuple) -> object:
        if n == number:
            raise OSError(err, os.strerror(err))
        return real(*args)

    return behaviour


class HookSink(RecordingSink):
    """Records events and runs ``hook(action)``, if given, when an action joins the plan, before it runs."""

    def __init__(self, hook: Callable[[Action], None] | None = None):
        super().__init__()
        self.hook = hook

    def planned(self, action: Action) -> None:
        if self.hook is not None:
            self.hook(action)

    def failures(self) -> list[tuple[str, str]]:
        """(where, message) of every failure."""
        return [(event[1], event[2]) for event in self.events if event[0] == "failed"]


def temp_files(root: Path) -> list[str]:
    """zcp's atomic-write temp files (``.name.<token>.zcp``) left anywhere below ``root``."""
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
            if n.startswith(".") and n.endswith(".zcp")]
