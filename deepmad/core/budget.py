"""Budgets, the design space, and the DeepMAD program (Eq. 5) evaluated on many candidates at once.

A design problem is a ``Space`` (block family, stage layout, resolution, the discrete choices) and a
``Budget`` (FLOPs, params, ρ0, α, β). ``evaluate`` scores a batch of candidates, one per row of an integer
matrix, with the closed forms of ``blocks.block_cost``; ``to_spec`` turns a row into a ``Spec``. The exact
solver and the evolutionary baseline both work on these rows, so they optimize the very same program.

Row layout for n stages: [c0 | c_1..c_n | m_1..m_n | k_1..k_n | L_1..L_n] = stem channels, stage output
channels, middle (bottleneck / expansion) channels, kernels, depths.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import blocks, latency as lat
from .spec import Spec, Stage, Stem, out_resolution
from .theory import BETA, default_alpha

_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_count(text: str | float | int, what: str = "budget") -> float:
    """'1.8G', '11.7M', '350k', '4.1e9' or a number -> a positive float."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*", str(text))
        if not m:
            raise ValueError(f"{what}: expected a number like 1.8G, 11.7M or 4.1e9, got {text!r}")
        value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what}: expected a positive number, got {text!r}")
    return value


@dataclass(frozen=True)
class Budget:
    flops: float  # multiply-accumulates, convs + classifier
    params: float  # learnable parameters of the built network
    rho0: float  # effectiveness bound: ρ of every scale prefix <= rho0
    alpha: tuple[float, ...] | None = None  # multi-scale weights; None = (1, ..., 1, 8)
    beta: float = BETA  # depth-penalty weight
    classifier: bool = True  # count the classifier in params and FLOPs (and in the latency)
    latency: float | None = None  # milliseconds under latency_model, what a design's prediction must meet; None: none
    latency_model: lat.LatencyModel | None = None  # predicts the latency (deepmad.core.latency)
    latency_margin: float = 0.0  # kept below the budget asked: latency = asked / (1 + margin) (``latency_asked``)

    def __post_init__(self) -> None:
        for name in ("flops", "params", "rho0") + (("latency",) if self.latency is not None else ()):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name}: expected a positive number, got {v!r}")
        if self.latency is not None and self.latency_model is None:
            raise ValueError("latency: a latency budget needs a latency model (deepmad latency calibrate)")
        m = self.latency_margin
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m < 1:
            raise ValueError(f"latency_margin: expected a number in [0, 1), got {m!r}")
        if self.latency_model is not None and not isinstance(self.latency_model, lat.LatencyModel):
            raise ValueError(f"latency_model: expected a deepmad.core.latency.LatencyModel, got "
                             f"{type(self.latency_model).__name__}")
        if not isinstance(self.beta, (int, float)) or not math.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"beta: expected a number >= 0, got {self.beta!r}")
        if self.alpha is not None:
            object.__setattr__(self, "alpha", tuple(float(a) for a in self.alpha))
            if any(not math.isfinite(a) or a < 0 for a in self.alpha) or not any(self.alpha):
                raise ValueError(f"alpha: expected non-negative weights, not all zero, got {self.alpha}")

    @property
    def latency_asked(self) -> float | None:
        """The latency budget as asked (ms): ``latency`` with the design margin added back."""
        return None if self.latency is None else self.latency * (1 + self.latency_margin)

    def latency_text(self) -> str:
        """'30 ms', or with a design margin '28.57 ms (30 ms asked, less the design margin 5.0%)'."""
        if not self.latency_margin:
            return f"{self.latency:.4g} ms"
        return (f"{self.latency:.4g} ms ({self.latency_asked:.4g} ms asked, less the design margin "
                f"{100 * self.latency_margin:.1f}%)")


@dataclass(frozen=True)
class Space:
    block: str  # basic | bottleneck | mbconv
    strides: tuple[int, ...]  # stride of each stage's first block
    resolution: int = 224
    stem_channels: tuple[int, int] = (8, 32)  # range of the stem's output channels (multiples of step)
    stem_kernel: int = 3
    stem_stride: int = 2
    kernels: tuple[int, ...] = (3, 5)  # choices of the k x k conv
    max_depth: int = 30  # blocks per stage: 1..max_depth
    max_channels: int = 2048
    step: int = 8  # channels are multiples of step
    ratio: tuple[float, float] = (0.0, 1.0)  # mid / channels range (bottleneck <= 1, mbconv expansion)
    se: float = 0.0  # mbconv squeeze-excitation ratio (of the block input), 0 = none
    head: int | None = None  # fixed channels of a final 1x1 conv
    num_classes: int = 1000
    act: str = "relu"
    first_depth: int | None = None  # optional cap on the first stage's depth
    ordered: bool = True  # guideline 3: c0 <= c1 <= ... <= cn; False: channels may also decrease (see in_space)

    def __post_init__(self) -> None:
        from .spec import BLOCKS

        if self.block not in BLOCKS:
            raise ValueError(f"block: expected one of {', '.join(BLOCKS)}, got {self.block!r}")
        object.__setattr__(self, "strides", tuple(self.strides))
        object.__setattr__(self, "kernels", tuple(sorted(set(self.kernels))))
        if not self.strides or any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"strides: expected a non-empty list of 1s and 2s, got {self.strides}")
        if not self.kernels or any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels: expected odd sizes, got {self.kernels}")
        lo, hi = self.stem_channels
        if lo % self.step or hi % self.step or not 0 < lo <= hi:
            raise ValueError(f"stem_channels: expected a range of multiples of {self.step}, got {self.stem_channels}")
        from .spec import MAX_CHANNELS, MAX_DEPTH, MAX_RESOLUTION, MAX_STAGES

        if not 1 <= self.resolution <= MAX_RESOLUTION:
            raise ValueError(f"resolution: expected 1..{MAX_RESOLUTION}, got {self.resolution}")
        if len(self.strides) > MAX_STAGES:
            raise ValueError(f"strides: {len(self.strides)} stages is above {MAX_STAGES}, the most supported")
        if not 1 <= self.max_depth <= MAX_DEPTH:
            raise ValueError(f"max_depth: expected 1..{MAX_DEPTH}, got {self.max_depth}")
        if not self.step <= self.max_channels <= MAX_CHANNELS:
            raise ValueError(f"max_channels: expected {self.step}..{MAX_CHANNELS}, got {self.max_channels}")
        if self.block == "mbconv" and self.ratio[0] <= 1.0:
            raise ValueError(f"ratio: mbconv expansion must exceed 1 (an expand conv in every block), got {self.ratio}")
        if not 0 <= self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio: expected 0 <= low <= high, got {self.ratio}")

    @property
    def n(self) -> int:
        return len(self.strides)

    @property
    def has_mid(self) -> bool:
        return self.block != "basic"

    def resolutions(self) -> tuple[int, list[int]]:
        """Stem output side and each stage's output side."""
        r0 = out_resolution(self.resolution, self.stem_stride)
        out, r = [], r0
        for s in self.strides:
            r = out_resolution(r, s)
            out.append(r)
        return r0, out

    def scale_ends(self) -> list[int]:
        """Unit index ending each down-sampling scale: -1 = stem, i = stage i (the head joins the last)."""
        units = [-1] + list(range(self.n))
        sides = [self.resolutions()[0]] + self.resolutions()[1]
        return [u for j, u in enumerate(units) if j + 1 == len(units) or sides[j + 1] != sides[j]]


@dataclass(frozen=True)
class Problem:
    space: Space
    budget: Budget
    name: str = ""
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.budget.latency_model is not None:  # a model that does not cover the space fails here, named
            lat.family_for(self.budget.latency_model, self.space, self.budget.classifier)

    @property
    def alpha(self) -> tuple[float, ...]:
        m = len(self.space.scale_ends())
        alpha = self.budget.alpha or default_alpha(m)
        if len(alpha) != m:
            raise ValueError(f"alpha: expected {m} weights (one per down-sampling scale of this layout), "
                             f"got {len(alpha)}")
        return alpha


class Scores(NamedTuple):
    """Per-candidate arrays."""

    entropy: np.ndarray  # Σ α_j H_j
    penalty: np.ndarray  # β exp(Var(L))
    objective: np.ndarray  # entropy − penalty
    macs: np.ndarray
    params: np.ndarray
    rho: np.ndarray  # largest ρ over the scale prefixes
    feasible: np.ndarray  # all constraints hold
    latency: np.ndarray | None = None  # predicted ms (deepmad.core.latency), None without a latency model


def columns(n: int) -> dict[str, slice]:
    """Where each variable group sits in a row."""
    return {"c0": slice(0, 1), "c": slice(1, n + 1), "m": slice(n + 1, 2 * n + 1),
            "k": slice(2 * n + 1, 3 * n + 1), "L": slice(3 * n + 1, 4 * n + 1)}


def evaluate(problem: Problem, X: np.ndarray) -> Scores:
    """Score every row of X (shape (N, 4n+1)) under the program of Eq. 5."""
    sp, bu = problem.space, problem.budget
    X = np.asarray(X, dtype=float)
    n = sp.n
    col = columns(n)
    c0, C, Mid, K, L = (X[:, col[g]] for g in ("c0", "c", "m", "k", "L"))
    c0 = c0[:, 0]
    r0, rs = sp.resolutions()
    macs = c0 * 3 * sp.stem_kernel**2 * r0**2
    params = c0 * 3 * sp.stem_kernel**2 + 2 * c0
    layers = np.ones_like(c0)
    logw = np.full_like(c0, math.log(3 * sp.stem_kernel**2))
    pre = [(layers.copy(), logw.copy())]  # prefix (layers, Σ log w) at the end of each unit
    chans = [c0]
    c_in, r_in = c0, r0
    for i in range(n):
        c, m, k, d = C[:, i], Mid[:, i], K[:, i], L[:, i]
        if not sp.has_mid:
            m = c
        first = blocks.block_cost(sp.block, c_in, c, m, k, sp.strides[i], r_in, 1, sp.se)
        rest = blocks.block_cost(sp.block, c, c, m, k, 1, rs[i], 1, sp.se)
        macs = macs + first.macs + (d - 1) * rest.macs
        params = params + first.params + (d - 1) * rest.params
        layers = layers + first.layers + (d - 1) * rest.layers
        logw = logw + first.logw + (d - 1) * rest.logw
        pre.append((layers.copy(), logw.copy()))
        chans.append(c)
        c_in, r_in = c, rs[i]
    if sp.head is not None:
        macs = macs + sp.head * c_in * r_in**2
        params = params + sp.head * c_in + 2 * sp.head
        layers, logw = layers + 1, logw + np.log(c_in)
        pre[-1] = (layers, logw)
        chans[-1] = np.full_like(c0, sp.head)
        c_in = chans[-1]
    if bu.classifier and sp.num_classes:
        macs = macs + c_in * sp.num_classes
        params = params + (c_in + 1) * sp.num_classes
    sides = [r0] + rs
    entropy = np.zeros_like(c0)
    rho = np.zeros_like(c0)
    for a, u in zip(problem.alpha, problem.space.scale_ends()):
        nl, s = pre[u + 1]
        entropy = entropy + a * np.log(sides[u + 1] ** 2 * chans[u + 1]) * s
        rho = np.maximum(rho, nl * np.exp(-s / nl))
    var = L.var(axis=1)
    penalty = bu.beta * np.exp(var)
    ordered = np.all(np.diff(X[:, : n + 1], axis=1) >= 0, axis=1) if sp.ordered else True
    feasible = (macs <= bu.flops) & (params <= bu.params) & (rho <= bu.rho0) & ordered
    latency = None
    if bu.latency_model is not None:
        latency = lat.rows(lat.family_for(bu.latency_model, sp, bu.classifier), sp, bu.classifier, X)
        if bu.latency is not None:
            feasible &= latency <= bu.latency
    return Scores(entropy, penalty, entropy - penalty, macs, params, rho, feasible, latency)


def to_spec(problem: Problem, x, name: str = "") -> Spec:
    """The network a row describes."""
    sp = problem.space
    x = [int(v) for v in x]
    col = columns(sp.n)
    c0 = x[col["c0"]][0]
    C, Mid, K, L = (x[col[g]] for g in ("c", "m", "k", "L"))
    stages = tuple(Stage(sp.block, C[i], L[i], stride=sp.strides[i], kernel=K[i],
                         mid=Mid[i] if sp.has_mid else None, se=sp.se) for i in range(sp.n))
    return Spec(sp.resolution, Stem(c0, sp.stem_kernel, sp.stem_stride), stages, head=sp.head,
                num_classes=sp.num_classes, act=sp.act, name=name or problem.name)


def from_spec(problem: Problem, spec: Spec) -> np.ndarray:
    """The row of a spec that lies in the problem's layout (inverse of to_spec)."""
    sp = problem.space
    if len(spec.stages) != sp.n:
        raise ValueError(f"spec has {len(spec.stages)} stages, the space {sp.n}")
    row = [spec.stem.channels] + [s.channels for s in spec.stages]
    row += [(s.mid if sp.has_mid else 0) for s in spec.stages]
    row += [s.kernel for s in spec.stages] + [s.depth for s in spec.stages]
    return np.array(row, dtype=np.int64)


def bounds(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Box of every variable (the ratio and ordering constraints are on top of it)."""
    sp = problem.space
    n, st = sp.n, sp.step
    lo = np.array([sp.stem_channels[0]] + [st] * n + [st] * n + [min(sp.kernels)] * n + [1] * n)
    hi = np.array([sp.stem_channels[1]] + [sp.max_channels] * n
                  + [int(sp.max_channels * max(sp.ratio[1], 1e-9) // st * st) if sp.has_mid else st] * n
                  + [max(sp.kernels)] * n + [sp.max_depth] * n)
    if sp.first_depth:
        hi[3 * n + 1] = min(hi[3 * n + 1], sp.first_depth)
    if not sp.has_mid:
        lo[n + 1: 2 * n + 1] = hi[n + 1: 2 * n + 1] = 0
    return lo, hi


def least_latency(problem: Problem) -> tuple[float, np.ndarray, float]:
    """(a lower bound on the predicted latency of every network of the space, the fastest network found, its
    latency), under the problem's latency model. Every latency term grows with every channel count and depth,
    and stages add up, so with guideline 3 the fastest network is the cheapest row (every channel and depth at
    its lower bound) with each stage's fastest kernel there; without it, one of the rows ``solver.least_costs``
    considers (a run of equal channels at its least value). The bound leaves out the only term that can vanish
    when channels grow, an mbconv stride-1 stage's residual add (present only while the stage keeps its
    input's width); for bottleneck and basic spaces it is the fastest network's latency."""
    sp = problem.space
    n, col = sp.n, columns(sp.n)
    lo, _ = bounds(problem)
    if sp.ordered:
        X = lo[None].copy()
        X[:, : n + 1] = np.maximum.accumulate(X[:, : n + 1], axis=1)
    else:
        X = np.repeat(lo[None], n + 1, 0)
        for j in range(n + 1):
            X[j, 1:j + 1] = lo[0]
    if sp.has_mid:
        X[:, col["m"]] = np.maximum(X[:, col["m"]], np.ceil(sp.ratio[0] * X[:, col["c"]] / sp.step - 1e-9) * sp.step)
    fam = lat.family_for(problem.budget.latency_model, sp, problem.budget.classifier)
    best, bound, row = math.inf, math.inf, None
    for x in X.astype(float):
        total, least, x = 0.0, 0.0, x.copy()
        for i in range(n):
            per = []
            for k in sp.kernels:
                args = (x[i], x[1 + i], x[n + 1 + i], np.float64(k), x[3 * n + 1 + i])
                per.append((float(lat.stage_rows(fam, sp, i, problem.budget.classifier, *args)),
                            float(lat.stage_rows(fam, sp, i, problem.budget.classifier, *args, ident=False))))
            j = int(np.argmin([a for a, _ in per]))
            x[2 * n + 1 + i] = sp.kernels[j]
            total += per[j][0]
            least += min(b for _, b in per)
        bound = min(bound, least)
        if total < best:
            best, row = total, x.astype(np.int64)
    return bound, row, float(evaluate(problem, row[None]).latency[0])


def in_space(problem: Problem, X: np.ndarray) -> np.ndarray:
    """Rows that respect the discrete choices, the ratio range and non-decreasing channels (guideline 3, where
    ``space.ordered``). Without guideline 3 an mbconv stage's mid channels must differ from the previous unit's
    channels, so that its first block keeps its expand conv, as every block of an ordered space does (there
    c_{i-1} <= c_i < mid); the branch and bound's relaxation relies on that conv being present."""
    sp = problem.space
    X = np.atleast_2d(X)
    lo, hi = bounds(problem)
    col = columns(sp.n)
    ok = np.all((X >= lo) & (X <= hi), axis=1)
    ok &= np.all(X[:, :sp.n + 1] % sp.step == 0, axis=1)
    ok &= np.all(np.isin(X[:, col["k"]], sp.kernels), axis=1)
    if sp.ordered:
        ok &= np.all(np.diff(X[:, : sp.n + 1], axis=1) >= 0, axis=1)
    if sp.has_mid:
        C, Mid = X[:, col["c"]], X[:, col["m"]]
        ok &= np.all(Mid % sp.step == 0, axis=1)
        ok &= np.all((Mid >= sp.ratio[0] * C - 1e-9) & (Mid <= sp.ratio[1] * C + 1e-9), axis=1)
        if sp.block == "mbconv" and not sp.ordered:
            ok &= np.all(Mid != X[:, : sp.n], axis=1)
    return ok


def smallest(problem: Problem) -> np.ndarray:
    """The cheapest row of the space with non-decreasing channels: every cost is increasing in every variable.
    (It is in the space without guideline 3 too, but need not be the cheapest there: see ``least_costs``.)"""
    lo, _ = bounds(problem)
    sp = problem.space
    x = lo.copy()
    col = columns(sp.n)
    x[: sp.n + 1] = np.maximum.accumulate(x[: sp.n + 1])  # non-decreasing channels
    if sp.has_mid:
        x[col["m"]] = np.maximum(x[col["m"]], np.ceil(sp.ratio[0] * x[col["c"]] / sp.step) * sp.step)
    return x


def least_costs(problem: Problem) -> tuple[float, float]:
    """Lower bounds on the MACs and the params of every network of the space (exact with guideline 3: those of
    ``smallest``). Without it, a stride-1 stage has a projection whenever c_{i-1} != c_i, so costs are not
    monotone in the channels; but lowering every run of equal consecutive channels to its least value keeps or
    removes projections and lowers every other cost, so every row costs at least one of the n + 1 rows whose
    first j stages have the stem's least channels and the others the least stage channels (mids and kernels at
    their least, depth 1). For mbconv, the row j = 0 drops the first expand conv: cheaper than any row of the
    space, still a lower bound."""
    x = smallest(problem)
    if problem.space.ordered:
        s = evaluate(problem, x[None])
        return float(s.macs[0]), float(s.params[0])
    sp = problem.space
    n, col = sp.n, columns(sp.n)
    lo, _ = bounds(problem)
    X = np.repeat(lo[None], n + 1, 0)
    for j in range(n + 1):
        X[j, 1:j + 1] = lo[0]
    if sp.has_mid:
        X[:, col["m"]] = np.maximum(X[:, col["m"]], np.ceil(sp.ratio[0] * X[:, col["c"]] / sp.step) * sp.step)
    s = evaluate(problem, X)
    return float(s.macs.min()), float(s.params.min())


def over_budget(problem: Problem) -> str | None:
    """Why no network of the space meets the FLOPs, params or latency budget, or None when one might:
    ``least_costs`` and ``least_latency`` are lower bounds on every network's costs (its smallest network's,
    with guideline 3), so this is a proof."""
    macs, params = least_costs(problem)
    b = problem.budget
    parts = []
    if macs > b.flops:
        parts.append(f"flops: the budget {b.flops:.4g} is below {macs:.4g}, the fewest MACs of any network of this "
                     f"space")
    if params > b.params:
        parts.append(f"params: the budget {b.params:.4g} is below {params:.4g}, the fewest params of any network "
                     f"of this space")
    if b.latency is not None:
        least, x, t = least_latency(problem)
        if least > b.latency:
            sp, col = problem.space, columns(problem.space.n)
            mids = f", mid {', '.join(str(v) for v in x[col['m']])}" if sp.has_mid else ""
            parts.append(f"latency: the budget {b.latency_text()} is below {least:.4g} ms, the least any network of "
                         f"this space takes under {b.latency_model.source or 'the latency model'} (its fastest "
                         f"network: stem {x[0]}, channels {', '.join(str(v) for v in x[col['c']])}{mids}, kernels "
                         f"{', '.join(str(v) for v in x[col['k']])}, depth 1 everywhere: {t:.4g} ms)")
    return "no design meets the budgets: " + "; ".join(parts) if parts else None


def unbinding(problem: Problem) -> list[str]:
    """The constraints of a problem that no network of its space can reach, each as a sentence: a FLOPs or params
    budget above what its largest network costs (every variable at its upper bound, plus every stride-1 projection,
    an upper bound), a rho0 above ℓ_max / w_min (the most layers of a scale prefix over the narrowest width of any
    layer, an upper bound on rho), and an input so small that down-sampling scales merge."""
    sp, bu = problem.space, problem.budget
    n = sp.n
    lo, hi = bounds(problem)
    top = hi.copy()
    top[0] = sp.stem_channels[1]
    s = evaluate(Problem(sp, Budget(1e300, 1e300, 1e300, bu.alpha, bu.beta, bu.classifier)), top[None])
    r0, rs = sp.resolutions()
    proj = [i for i in range(n) if sp.strides[i] == 1 and sp.block != "mbconv"]
    macs = float(s.macs[0]) + sum(rs[i] ** 2 * sp.max_channels ** 2 for i in proj)
    params = float(s.params[0]) + sum(sp.max_channels ** 2 + 2 * sp.max_channels for i in proj)
    out = []
    if bu.flops >= macs:
        out.append(f"flops: the budget {bu.flops:.4g} cannot bind: no network of this space needs more than "
                   f"{macs:.4g} MACs")
    if bu.params >= params:
        out.append(f"params: the budget {bu.params:.4g} cannot bind: no network of this space has more than "
                   f"{params:.4g} params")
    per_block = {"basic": 2, "bottleneck": 3, "mbconv": 3}[sp.block]
    layers = 1 + per_block * sp.max_depth * n + (sp.head is not None)
    k = min(sp.kernels)
    w_min = min(3 * sp.stem_kernel ** 2, sp.step, k * k)
    if bu.rho0 >= layers / w_min:
        out.append(f"rho: rho0 {bu.rho0:g} cannot bind: no network of this space has rho above {layers / w_min:.4g} "
                   f"({layers} layers at most, none narrower than {w_min})")
    scales, down = len(sp.scale_ends()), 1 + sum(1 for x in sp.strides if x == 2)
    if scales < down:
        out.append(f"resolution: a {sp.resolution}-px input reaches 1x1 before the last down-sampling stage, so "
                   f"its {down} down-sampling scales merge into {scales}")
    return out

