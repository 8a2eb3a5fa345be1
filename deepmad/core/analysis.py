"""What a network is under the DeepMAD program: counts, effectiveness ρ (Eq. 2-3), multi-scale entropy (Eq. 4)
and objective (Eq. 5), per stage and in total.

``analyze_spec`` scores a spec with the closed-form counts of ``blocks`` and the theory of ``theory``: nothing
is re-derived here, so the numbers it gives are the ones the solvers optimize.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from . import blocks, theory
from .budget import Budget
from .spec import Spec
from .theory import BETA


@dataclass(frozen=True)
class Row:
    """One row of the per-stage table: the stem, a stage, or the head conv."""

    index: int  # spec stage index; -1 for the stem, len(stages) for the head
    name: str  # stem | stage1.. | head
    block: str  # conv (stem, head) or the stage's block family
    channels: int  # output channels
    mid: int | None  # bottleneck / expansion channels of the stage's first block (None: no mid)
    kernel: int
    depth: int  # blocks (1 for stem and head)
    stride: int
    resolution: int  # output side
    layers: int  # main-path layers from the input to the end of this row
    entropy: float  # Eq. 4 on the prefix ending here: log(r²c) · Σ log w
    rho: float  # Eq. 2-3 on the same prefix

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Analysis:
    """What a network is under the DeepMAD program: counts, effectiveness, entropy, objective."""

    name: str
    spec: Spec
    params: int  # learnable parameters as built (classifier included unless classifier=False)
    flops: int  # multiply-accumulates of convs (+ classifier unless classifier=False)
    rho: float  # effectiveness of the whole network
    rho_max: float  # largest ρ over the down-sampling scale prefixes (what ρ0 bounds)
    entropy: float  # Σ_j α_j H_j
    penalty: float  # β · exp(Var(stage depths))
    objective: float  # entropy − penalty
    layers: int  # main-path layers
    alpha: tuple[float, ...]  # multi-scale weights used, one per down-sampling scale
    beta: float
    classifier: bool  # whether params/flops include the classifier
    stem: Row
    stages: tuple[Row, ...]
    head: Row | None

    @property
    def rows(self) -> tuple[Row, ...]:
        """Stem, stages and head, in forward order."""
        return (self.stem, *self.stages) + ((self.head,) if self.head else ())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the spec itself is left to the caller: ``spec.to_dict``)."""
        return {"name": self.name, "params": self.params, "flops": self.flops, "rho": self.rho,
                "rho_max": self.rho_max, "entropy": self.entropy, "penalty": self.penalty,
                "objective": self.objective, "layers": self.layers, "alpha": list(self.alpha),
                "beta": self.beta, "classifier": self.classifier, "stem": self.stem.to_dict(),
                "stages": [r.to_dict() for r in self.stages],
                "head": self.head.to_dict() if self.head else None}


def _row(index: int, name: str, block: str, channels: int, mid: int | None, kernel: int, depth: int,
         stride: int, resolution: int, prefix: tuple[int, float]) -> Row:
    layers, logw = prefix
    sc = theory.Scale(index, resolution, channels, layers, logw)
    return Row(index, name, block, int(channels), mid, int(kernel), int(depth), int(stride), int(resolution),
               int(layers), float(sc.entropy), float(sc.rho))


def parse_alpha(alpha: Sequence[float] | str | None) -> tuple[float, ...] | None:
    """Multi-scale weights from a list or '1,1,1,1,8' (None stays None: the default); a clear error else."""
    if alpha is None:
        return None
    if isinstance(alpha, str):
        try:
            alpha = [float(a) for a in alpha.split(",")]
        except ValueError:
            raise ValueError(f"alpha: expected comma-separated numbers like 1,1,1,1,8, got {alpha!r}") from None
    try:
        out = tuple(float(a) for a in alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha: expected a list of numbers, got {alpha!r}") from None
    if not out or any(not math.isfinite(a) or a < 0 for a in out) or not any(out):
        raise ValueError(f"alpha: expected non-negative weights, not all zero, got {list(out)}")
    return out


def parse_beta(beta: float | None) -> float:
    """The depth-penalty weight (None: the paper's 10), checked >= 0."""
    if beta is None:
        return BETA
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta: expected a number >= 0, got {beta!r}")
    return float(beta)


def analyze_spec(spec: Spec, alpha: Sequence[float] | None = None, beta: float | None = BETA,
                 classifier: bool = True) -> Analysis:
    """Counts, effectiveness, multi-scale entropy and objective of a spec."""
    alpha, beta = parse_alpha(alpha), parse_beta(beta)
    us = blocks.units(spec)
    scales = theory.scales(us)
    if alpha is not None and len(alpha) != len(scales):
        raise ValueError(f"alpha: expected {len(scales)} weights (one per down-sampling scale of "
                         f"{spec.name or 'this network'}), got {len(alpha)}")
    alpha = alpha if alpha is not None else theory.default_alpha(len(scales))
    depths = [s.depth for s in spec.stages]
    total = blocks.cost(spec, classifier=classifier)
    macs, params = blocks.counts(spec, classifier=classifier)  # exact integers, however large the spec
    pre = theory.prefixes(us)
    ends: dict[int, int] = {}  # row index -> position of its last unit
    for pos, u in enumerate(us):
        ends[u.stage] = pos
    st = spec.stem
    stem = _row(-1, "stem", "conv", st.channels, None, st.kernel, 1, st.stride, us[0].resolution, pre[ends[-1]])
    rows, c_in = [], st.channels
    for i, s in enumerate(spec.stages):
        mid = int(blocks.expansion(s, c_in)) if s.block != "basic" else None
        rows.append(_row(i, f"stage{i + 1}", s.block, s.channels, mid, s.kernel, s.depth, s.stride,
                         us[ends[i]].resolution, pre[ends[i]]))
        c_in = s.channels
    head = None
    if spec.head is not None:
        n = len(spec.stages)
        head = _row(n, "head", "conv", spec.head, None, 1, 1, 1, us[ends[n]].resolution, pre[ends[n]])
    entropy = theory.entropy(us, alpha)
    try:
        penalty = theory.depth_penalty(depths, beta)
    except OverflowError:  # exp(Var) beyond floating point: depths so uneven the objective is -inf
        penalty = math.inf
    return Analysis(name=spec.name, spec=spec, params=params, flops=macs,
                    rho=theory.rho(us), rho_max=theory.rho_max(us), entropy=entropy, penalty=penalty,
                    objective=entropy - penalty, layers=int(round(total.layers)), alpha=tuple(alpha), beta=beta,
                    classifier=classifier, stem=stem, stages=tuple(rows), head=head)


def usage(a: Analysis, budget: Budget) -> dict[str, float]:
    """Share of each budget a network uses (1.0 = all of it)."""
    return {"flops": a.flops / budget.flops, "params": a.params / budget.params, "rho": a.rho_max / budget.rho0}


__all__ = ["Row", "Analysis", "analyze_spec", "parse_alpha", "parse_beta", "usage"]
