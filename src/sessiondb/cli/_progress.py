"""A progress bar on stderr for long command-line work, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_REDRAW_SECONDS = 0.1
_BAR_WIDTH = 30


class Progress:
    """``advance()`` as work gets done; ``close()`` erases the bar. Silent when not on a terminal.

    With ``total=None`` it shows what is done and the elapsed time (work of unknown size).
    """

    def __init__(self, label: str, total: int | None, *, stream: TextIO | None = None, unit: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._start = time.monotonic()
        self._drawn = 0.0
        self._visible = False

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        if self.enabled:
            now = time.monotonic()
            if now - self._drawn >= _REDRAW_SECONDS or self.done == self.total:
                self._drawn = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self._start
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = int(fraction * _BAR_WIDTH)
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            text = f"{self.label} [{bar}] {self.done:,}/{self.total:,}{unit} {elapsed:4.1f}s"
        else:
            text = f"{self.label} {self.done:,}{unit} {elapsed:4.1f}s"
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self._visible = True

    def close(self) -> None:
        if self._visible:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._visible = False

    def __enter__(self) -> Progress:
        if self.enabled:
            self._draw(time.monotonic())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["Progress"]
