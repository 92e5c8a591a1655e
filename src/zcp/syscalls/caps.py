"""What the kernel refused, remembered per (source device, destination device) pair."""

from __future__ import annotations

import threading

from zcp.config import Method
from zcp.errors import Unsupported


class Capabilities:
    """Methods known to be unsupported between two devices, so later files skip them at once.

    One instance lives for a run and is passed to whoever copies; safe to share between threads.
    """

    def __init__(self) -> None:
        self._unsupported: set[tuple[Method, int, int]] = set()
        # what usable() answered, asked once per file: dropped whenever a refusal is learnt
        self._usable: dict[tuple[tuple[Method, ...], int, int], tuple[Method, ...]] = {}
        self._lock = threading.Lock()

    def is_known_unsupported(self, method: Method, src_dev: int, dst_dev: int) -> bool:
        # A set lookup is atomic under the GIL: the lock only orders writers.
        return (method, src_dev, dst_dev) in self._unsupported

    def usable(self, methods: tuple[Method, ...], src_dev: int, dst_dev: int) -> tuple[Method, ...]:
        """``methods`` less those known to be unsupported between the two devices."""
        key = (methods, src_dev, dst_dev)
        found = self._usable.get(key)
        if found is None:
            found = self._usable[key] = tuple(m for m in methods if (m, src_dev, dst_dev) not in self._unsupported)
        return found

    def refused(self, method: Method, exc: Unsupported, src_dev: int, dst_dev: int) -> None:
        """``method`` refused a file: remembered when the refusal holds for every file between the
        two devices, not when it is that file's own (Unsupported.device_wide)."""
        if exc.device_wide:
            self.mark_unsupported(method, src_dev, dst_dev)

    def mark_unsupported(self, method: Method, src_dev: int, dst_dev: int) -> None:
        with self._lock:
            self._unsupported.add((method, src_dev, dst_dev))
            self._usable = {}
