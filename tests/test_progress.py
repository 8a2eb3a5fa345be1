"""deepmad.progress: bars redrawn in place on a terminal; elsewhere (logs, pipes) no carriage returns, and a
line at most every LOG_INTERVAL seconds."""
from __future__ import annotations

import io
import subprocess
import sys

from deepmad import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_off_a_terminal_writes_no_carriage_returns():
    out = io.StringIO()
    with progress.bar(total=5, desc="work", unit="item", stream=out) as bar:
        for _ in range(5):
            bar.update(1)
    assert "\r" not in out.getvalue()
    assert out.getvalue() == ""  # work shorter than LOG_INTERVAL: not a line


def test_a_bar_off_a_terminal_is_a_line_a_redraw():
    out = io.StringIO()
    bar = progress.bar(total=3, desc="work", unit="item", stream=out, leave=True)
    bar.delay = 0  # as if LOG_INTERVAL had passed
    bar.update(3)
    bar.refresh()
    bar.close()
    text = out.getvalue()
    assert "\r" not in text and "work" in text and "3/3" in text and text.endswith("\n")


def test_a_bar_on_a_terminal_redraws_in_place():
    out = Terminal()
    with progress.bar(total=3, desc="work", unit="item", stream=out, leave=True) as bar:
        bar.update(3)
    assert "\r" in out.getvalue() and "3/3" in out.getvalue()
    assert isinstance(progress.bar(desc="x", unit="y", enabled=False), progress.NoBar)


def test_design_with_stderr_in_a_file_has_no_carriage_returns():
    """deepmad-mb's proof runs for over a second (its bar would show on a terminal); in a file, nothing."""
    r = subprocess.run([sys.executable, "-m", "deepmad", "design", "--preset", "deepmad-mb"], capture_output=True)
    assert r.returncode == 0 and b"proven" in r.stdout
    assert b"\r" not in r.stderr and b"proving" not in r.stderr, r.stderr
