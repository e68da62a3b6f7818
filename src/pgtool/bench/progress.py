"""A progress bar per scenario on a terminal (stderr), and nothing at all otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

WIDTH = 30


class Progress:
    """Counts finished iterations of one scenario and redraws its bar at most ten times a second."""

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self._lock = threading.Lock()
        self._last_draw = 0.0

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done = min(self.total, self.done + n)
            now = time.monotonic()
            if self.enabled and (now - self._last_draw >= 0.1 or self.done == self.total):
                self._last_draw = now
                self._draw()

    def _draw(self) -> None:
        filled = WIDTH * self.done // self.total
        bar = "#" * filled + "-" * (WIDTH - filled)
        self.stream.write(f"\r{self.label:<22} [{bar}] {self.done}/{self.total}")
        self.stream.flush()

    def finish(self, note: str = "") -> None:
        """End the bar's line (with a short note, e.g. the speedup)."""
        if not self.enabled:
            return
        with self._lock:
            self.done = self.total
            self._draw()
            self.stream.write(f"  {note}\n" if note else "\n")
            self.stream.flush()
