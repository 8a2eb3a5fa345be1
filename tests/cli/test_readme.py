"""The README's training example is the one benchmarks/readme_train.py measures, and the flags it uses exist."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from deepmad import cli

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("readme_train", ROOT / "benchmarks" / "readme_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_holds_the_benchmarked_commands():
    readme = (ROOT / "README.md").read_text()
    b = _bench()
    for argv in (b.DESIGN, b.TRAIN):
        assert "\n.venv/bin/" + " ".join(argv) + "\n" in readme, argv
    p = cli.parser()
    for argv in (b.DESIGN, b.TRAIN):
        p.parse_args(argv[1:])  # no usage error
