"""DeepMAD (CVPR 2023): design a CNN by solving a mathematical program.

Maximize the multi-scale entropy of a network under an effectiveness bound ρ0 and FLOPs / params budgets.
``design`` solves the program for a preset or given budgets, ``analyze`` scores any network; ``Spec`` is the
architecture description they exchange (``load`` / ``save`` read and write spec files).

Importing the package loads nothing but this file: each name loads its module on first access (PEP 562), so the
``deepmad`` command starts its own handlers (Ctrl-C, bad input) before numpy loads. The design names load
numpy-level modules only, the solvers load on first use; ``create_model`` and ``list_models``
(``deepmad.models``, PyTorch) load torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {  # name -> the module (relative to this package) that defines it
    **dict.fromkeys(("Analysis", "Row", "analyze", "design", "list_networks", "list_presets"), ".api"),
    **dict.fromkeys(("PRESETS", "preset"), ".core.presets"),
    **dict.fromkeys(("REFERENCE", "reference"), ".core.reference"),
    **dict.fromkeys(("Spec", "SpecError", "Stage", "Stem", "dumps", "load", "loads", "save"), ".core.spec"),
    **dict.fromkeys(("create_model", "list_models"), ".models"),  # imports torch
}

__all__ = ["__version__", "design", "analyze", "Analysis", "Row", "Spec", "Stage", "Stem", "SpecError", "load",
           "save", "loads", "dumps", "PRESETS", "preset", "list_presets", "REFERENCE", "reference",
           "list_networks"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later accesses find it directly
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
