"""Capabilities: what was unsupported, per method and device pair, shared across threads."""

from __future__ import annotations

import threading

from zcp.config import Method
from zcp.syscalls import Capabilities


def test_nothing_is_known_at_first():
    caps = Capabilities()
    assert not any(caps.is_known_unsupported(m, 1, 2) for m in Method)


def test_a_mark_applies_to_its_method_and_ordered_device_pair_only():
    caps = Capabilities()
    caps.mark_unsupported(Method.REFLINK, 1, 2)
    assert caps.is_known_unsupported(Method.REFLINK, 1, 2)
    assert not caps.is_known_unsupported(Method.COPY_FILE_RANGE, 1, 2)
    assert not caps.is_known_unsupported(Method.REFLINK, 2, 1)
    assert not caps.is_known_unsupported(Method.REFLINK, 1, 3)


def test_instances_do_not_share_memory():
    first, second = Capabilities(), Capabilities()
    first.mark_unsupported(Method.SPLICE, 7, 7)
    assert not second.is_known_unsupported(Method.SPLICE, 7, 7)


def test_marking_is_idempotent():
    caps = Capabilities()
    caps.mark_unsupported(Method.SENDFILE, 1, 1)
    caps.mark_unsupported(Method.SENDFILE, 1, 1)
    assert caps.is_known_unsupported(Method.SENDFILE, 1, 1)


def test_concurrent_marks_are_all_kept():
    caps = Capabilities()
    start = threading.Barrier(8)

    def mark(worker: int) -> None:
        start.wait()
        for dev in range(500):
            caps.mark_unsupported(Method.COPY_FILE_RANGE, worker, dev)

    threads = [threading.Thread(target=mark, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(caps.is_known_unsupported(Method.COPY_FILE_RANGE, w, d) for w in range(8) for d in range(500))


def test_usable_methods_leave_out_known_refusals_and_learn_new_ones():
    caps = Capabilities()
    methods = (Method.REFLINK, Method.COPY_FILE_RANGE, Method.RW)
    assert caps.usable(methods, 1, 2) == methods
    caps.mark_unsupported(Method.REFLINK, 1, 2)
    assert caps.usable(methods, 1, 2) == (Method.COPY_FILE_RANGE, Method.RW)  # not the answer kept before
    assert caps.usable(methods, 2, 1) == methods  # per device pair
