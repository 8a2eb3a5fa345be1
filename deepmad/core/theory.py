"""Entropy, effectiveness and the DeepMAD objective (the paper's Eq. 2-5, restored in deepmad-math.md).

Everything here is a pure function of the main-path units of a network (``blocks.Unit``: the widths
c·k²/g of its layers, its output channels and resolution), so a spec, a traced PyTorch model or an authors'
structure are scored by the same code.

Scales (the paper's down-sampling "stages" of guideline 1) are the maximal runs of units with the same output
resolution. Scale j's entropy (Eq. 4, product form) is H_j = log(r_j² c_j) · S_j, with S_j = Σ log w over
every layer from the input to the end of scale j and r_j, c_j the resolution and channels of its last unit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .blocks import Unit

BETA = 10.0  # weight of the depth-unevenness penalty (paper, Sec. 4.3)


def default_alpha(n_scales: int) -> tuple[float, ...]:
    """Multi-scale weights: (1, ..., 1, 8), the paper's (1, 1, 1, 1, 8) for five scales."""
    return (1.0,) * (n_scales - 1) + (8.0,)


@dataclass(frozen=True)
class Scale:
    """One down-sampling scale: where it ends, and the quantities Eq. 2-4 need at that point."""

    end: int  # index of its last unit
    resolution: int  # r_j
    channels: int  # c_j
    layers: int  # layers from the input to the end of the scale
    logw: float  # S_j = Σ log w over those layers

    @property
    def entropy(self) -> float:
        """Eq. 4: H_j = log(r_j² c_j) · Σ_i log w_i."""
        return math.log(self.resolution**2 * self.channels) * self.logw

    @property
    def rho(self) -> float:
        """Eq. 2-3 on the prefix: L / exp(mean log w)."""
        return effectiveness(self.layers, self.logw)


def effectiveness(layers: float, logw: float) -> float:
    """ρ = L / w̄ with w̄ = exp(Σ log w / L), the geometric-mean width (Eq. 2-3)."""
    return layers / math.exp(logw / layers)


def prefixes(units: Sequence[Unit]) -> list[tuple[int, float]]:
    """(layers, Σ log w) from the input to the end of each unit."""
    out, n, s = [], 0, 0.0
    for u in units:
        n += len(u.widths)
        s += sum(math.log(w) for w in u.widths)
        out.append((n, s))
    return out


def scales(units: Sequence[Unit]) -> list[Scale]:
    """Split the main path into down-sampling scales (runs of equal output resolution)."""
    pre = prefixes(units)
    out = []
    for i, u in enumerate(units):
        if i + 1 == len(units) or units[i + 1].resolution != u.resolution:
            out.append(Scale(i, u.resolution, u.channels, *pre[i]))
    return out


def rho(units: Sequence[Unit]) -> float:
    """Effectiveness of the whole network (Eq. 2-3)."""
    return effectiveness(*prefixes(units)[-1])


def rho_max(units: Sequence[Unit]) -> float:
    """The largest ρ over the scale prefixes: what the constraint ρ ≤ ρ0 bounds."""
    return max(s.rho for s in scales(units))


def depth_penalty(depths: Sequence[int], beta: float = BETA) -> float:
    """Guideline 2: Q = β · exp(Var(L_1..L_M)), population variance of the stage depths."""
    m = sum(depths) / len(depths)
    return beta * math.exp(sum((d - m) ** 2 for d in depths) / len(depths))


def entropy(units: Sequence[Unit], alpha: Sequence[float] | None = None) -> float:
    """Weighted multi-scale entropy Σ_j α_j H_j (guideline 1)."""
    sc = scales(units)
    alpha = default_alpha(len(sc)) if alpha is None else alpha
    if len(alpha) != len(sc):
        raise ValueError(f"alpha: expected {len(sc)} weights (one per down-sampling scale), got {len(alpha)}")
    return sum(a * s.entropy for a, s in zip(alpha, sc))


def objective(units: Sequence[Unit], depths: Sequence[int], alpha: Sequence[float] | None = None,
              beta: float = BETA) -> float:
    """Eq. 5: Σ_j α_j H_j − β · exp(Var(L))."""
    return entropy(units, alpha) - depth_penalty(depths, beta)
