"""DeepMAD (CVPR 2023): design a CNN by solving a mathematical program.

Maximize the multi-scale entropy of a network under an effectiveness bound ρ0 and FLOPs / params budgets.
``design`` solves the program for a preset or given budgets, ``analyze`` scores any network; ``Spec`` is the
architecture description they exchange (``load`` / ``save`` read and write spec files).

Importing the package loads numpy-level modules only; the solvers load on first use. ``create_model`` and
``list_models`` (``deepmad.models``, PyTorch) load torch on first access, never at import.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .api import Analysis, Row, analyze, design, list_networks, list_presets  # noqa: E402
from .core.presets import PRESETS, preset  # noqa: E402
from .core.reference import REFERENCE, reference  # noqa: E402
from .core.spec import Spec, SpecError, Stage, Stem, dumps, load, loads, save  # noqa: E402

__all__ = ["__version__", "design", "analyze", "Analysis", "Row", "Spec", "Stage", "Stem", "SpecError", "load",
           "save", "loads", "dumps", "PRESETS", "preset", "list_presets", "REFERENCE", "reference",
           "list_networks"]


_LAZY = {"create_model", "list_models"}  # from deepmad.models, which imports torch


def __getattr__(name: str):
    if name in _LAZY:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
