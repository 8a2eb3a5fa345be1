"""The ``deepmad`` command.

One module per command group: ``design`` (design, analyze, presets; no torch), ``studies`` (sweep, draw; no
torch), ``models`` (summary, export), ``train`` (train, eval, study) and ``latency`` (bench, latency calibrate /
show). Each has ``add_commands(sub)``, which adds its subparsers, and
``COMMANDS``, a dict from command name to a handler ``handler(args) -> str`` (the text to print; ValueError
for bad input). No group imports torch at import time: the design commands load them all.

Bad input of any kind (usage errors included) ends with one line ``deepmad: error: ...`` on stderr and exit
status 2, before anything is written. A handler whose work ends otherwise than in success (a training run
stopped by SIGTERM: 143, by SIGINT: 130) raises ``Exit(code, out)``: out goes to stdout, code is the status.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

from .. import __version__
from . import design, latency, models, studies, train

GROUPS = (design, studies, models, train, latency)


class Exit(Exception):
    """A command's end with exit status code (not 0), after printing out on stdout."""

    def __init__(self, code: int, out: str = "") -> None:
        super().__init__(code)
        self.code, self.out = code, out


class UsageError(Exception):
    """A usage error found by argparse (reported as one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with its error path reduced to one line on stderr."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{message} (see '{self.prog} --help')")


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``deepmad`` command."""
    p = _Parser(prog="deepmad", description="DeepMAD (CVPR 2023): design a CNN by solving a mathematical "
                "program; analyze any network's entropy, effectiveness and costs.")
    p.add_argument("--version", action="version", version=f"deepmad {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for group in GROUPS:
        group.add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 128 + N stopped by signal N)."""
    p = parser()
    try:
        args = p.parse_args(argv)
    except UsageError as e:
        print(f"deepmad: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    handlers = {name: run for group in GROUPS for name, run in group.COMMANDS.items()}
    if args.command is None:
        print(f"deepmad: error: a command is required: {', '.join(handlers)} (see 'deepmad --help')",
              file=sys.stderr)
        return 2
    from ..core.result import DeepMADWarning

    code = 0
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeepMADWarning)
            try:
                out = handlers[args.command](args)
            finally:
                for w in caught:  # ignored options, budgets that cannot bind: one line each, on stderr
                    if issubclass(w.category, DeepMADWarning):
                        print(f"deepmad: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
                    else:
                        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    except Exit as e:
        out, code = e.out, e.code
    except (ValueError, OverflowError) as e:  # bad input: SpecError, Infeasible, budget errors; absurd sizes
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"deepmad: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepmad: error: interrupted", file=sys.stderr)
        return 130
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into head
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return code


if __name__ == "__main__":
    sys.exit(main())
