"""Progress bars on stderr (tqdm), for the layers that do long work (CLI, latency, training; never the core).

On a terminal a bar is redrawn in place. Anywhere else (a log file, a pipe, a CI job) redraws would be
carriage returns piling up in the file: there the same bar is a plain line of its own at most once every
LOG_INTERVAL seconds (and none for work that ends sooner), with no carriage returns.
"""
from __future__ import annotations

import os
import sys
from typing import Any, TextIO

LOG_INTERVAL = 60.0  # seconds between the lines of a bar that is not on a terminal


class Lines:
    """A file for tqdm that turns each redraw into a line of its own (for logs: no carriage returns)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").replace("\x1b[A", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


class NoBar:
    """What a bar is when bars are off."""

    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def is_terminal(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def bar(*, desc: str, unit: str, total: int | None = None, initial: int = 0, leave: bool = False,
        delay: float = 0.0, enabled: bool = True, live: bool | None = None, stream: TextIO | None = None):
    """A tqdm bar on stream (default stderr): in place where live (default: stream is a terminal), else
    ``Lines`` at most every LOG_INTERVAL s; a ``NoBar`` when not enabled."""
    if not enabled:
        return NoBar()
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    if live if live is not None else is_terminal(stream):
        try:  # a terminal of unknown or zero width (some pseudo-terminals) gets 100 columns
            sized = os.get_terminal_size(stream.fileno()).columns > 0
        except (AttributeError, OSError, ValueError):
            sized = False
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream, leave=leave, delay=delay,
                    dynamic_ncols=sized, ncols=None if sized else 100, mininterval=0.25, smoothing=0.1)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=Lines(stream), leave=leave, ncols=100,
                mininterval=LOG_INTERVAL, maxinterval=1e9, delay=max(delay, LOG_INTERVAL), ascii=True,
                smoothing=0.1)


__all__ = ["bar", "Lines", "NoBar", "is_terminal", "LOG_INTERVAL"]
