"""The paper's designs as problems: its budgets, block families and ρ0 (Tables 1-3).

Budgets are the ones of the authors' released configs (``data/released_structures.json``); params and
FLOPs are counted our way (whole network, classifier included, multiply-accumulates of convs and the
classifier), so each preset's design is a network that really fits the paper's table row.
"""
from __future__ import annotations

from .budget import Budget, Problem, Space

_BOTTLENECK = dict(block="bottleneck", strides=(2, 2, 2, 2), stem_channels=(8, 32), kernels=(3, 5),
                   max_depth=30, ratio=(0.0, 1.0))
_MBCONV = dict(block="mbconv", strides=(2, 2, 2, 1, 2), stem_channels=(16, 64), kernels=(3, 5, 7),
               max_depth=30, ratio=(1.5, 6.0), se=0.25, act="silu")


def _p(name: str, space: dict, flops: float, params: float, rho0: float, **kw) -> Problem:
    return Problem(Space(**{**space, **kw}), Budget(flops, params, rho0), name=name)


PRESETS: dict[str, Problem] = {p.name: p for p in (
    _p("deepmad-r18", _BOTTLENECK, 1.82e9, 11.69e6, 0.3),
    _p("deepmad-r34", _BOTTLENECK, 3.68e9, 21.80e6, 0.3),
    _p("deepmad-r50", _BOTTLENECK, 4.13e9, 25.55e6, 0.3),
    _p("deepmad-b0", _MBCONV, 0.39e9, 5.3e6, 0.5, head=1280),
    _p("deepmad-mb", _MBCONV, 0.32e9, 3.5e6, 0.5, head=1280),
    _p("deepmad-29m", _MBCONV, 4.5e9, 29e6, 0.5, head=1792),
    _p("deepmad-29m-288", _MBCONV, 4.5e9, 29e6, 0.5, head=1792, resolution=288),
    _p("deepmad-50m", _MBCONV, 8.7e9, 50e6, 0.5, head=2048),
    _p("deepmad-89m", _MBCONV, 15.4e9, 89e6, 0.5, head=2560),
)}

# the authors' released structure each preset is compared with (deepmad.core.tinynas.RELEASED)
RELEASED_NAME = {"deepmad-r18": "deepmad-R18", "deepmad-r34": "deepmad-R34", "deepmad-r50": "deepmad-R50",
                 "deepmad-29m": "deepmad-29M-224", "deepmad-29m-288": "deepmad-29M-288",
                 "deepmad-50m": "deepmad-50M", "deepmad-89m": "deepmad-89M"}


def preset(name: str) -> Problem:
    """The preset problem called name."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
