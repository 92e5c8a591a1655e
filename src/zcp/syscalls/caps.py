"""What the kernel refused, remembered per (source device, destination device) pair."""

from __future__ import annotations

import threading

from zcp.config import Method


class Capabilities:
    """Methods known to be unsupported between two devices, so later files skip them at once.

    One instance lives for a run and is passed to whoever copies; safe to share between threads.
    """

    def __init__(self) -> None:
        self._unsupported: set[tuple[Method, int, int]] = set()
        self._lock = threading.Lock()

    def is_known_unsupported(self, method: Method, src_dev: int, dst_dev: int) -> bool:
        # A set lookup is atomic under the GIL: the lock only orders writers (asked once per file).
        return (method, src_dev, dst_dev) in self._unsupported

    def mark_unsupported(self, method: Method, src_dev: int, dst_dev: int) -> None:
        with self._lock:
            self._unsupported.add((method, src_dev, dst_dev))
