"""The Python API: ``design`` a network (solve the DeepMAD program of Eq. 5) and ``analyze`` any network.

``design`` builds a ``budget.Problem`` (from a preset, or from a block family and budgets with the presets'
default layouts) and hands it to the search (lns) or the evolutionary baseline. ``analyze`` scores a spec with
the closed-form counts of ``blocks`` and the theory of ``theory``: nothing is re-derived here, so the numbers
``analyze`` prints are the ones the solver optimized.

Only numpy-level modules are imported at module load; the solvers are imported when a design is asked for.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Any, Sequence

from . import blocks, theory
from .budget import Budget, Problem, Space, evaluate, parse_count, to_spec
from .presets import PRESETS, preset as _preset
from .reference import REFERENCE, reference
from .spec import BLOCKS, Spec, SpecError, load
from .theory import BETA

# Default layouts of a design given by its block family; they mirror the spaces of presets.py
# (tests/test_api.py checks they agree).
LAYOUTS: dict[str, dict[str, Any]] = {
    "basic": dict(block="basic", strides=(2, 2, 2, 2), stem_channels=(8, 32), kernels=(3, 5), max_depth=30),
    "bottleneck": dict(block="bottleneck", strides=(2, 2, 2, 2), stem_channels=(8, 32), kernels=(3, 5),
                       max_depth=30, ratio=(0.0, 1.0)),
    "mbconv": dict(block="mbconv", strides=(2, 2, 2, 1, 2), stem_channels=(16, 64), kernels=(3, 5, 7),
                   max_depth=30, ratio=(1.5, 6.0), se=0.25, head=1280, act="silu"),
}
SOLVERS = ("lns", "evolution")


# ---------------------------------------------------------------------------------------------- analysis

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
    return Analysis(name=spec.name, spec=spec, params=int(round(total.params)), flops=int(round(total.macs)),
                    rho=theory.rho(us), rho_max=theory.rho_max(us), entropy=entropy, penalty=penalty,
                    objective=entropy - penalty, layers=int(round(total.layers)), alpha=tuple(alpha), beta=beta,
                    classifier=classifier, stem=stem, stages=tuple(rows), head=head)


def resolve(target: Spec | str | os.PathLike) -> Spec:
    """A spec from a Spec, a reference network name, a preset name or a spec file path.

    A preset is designed first, under its own problem (budgets, α, β) with the search (lns).
    """
    if isinstance(target, Spec):
        return target
    if isinstance(target, str) and target in REFERENCE:
        return reference(target)
    if isinstance(target, str) and target in PRESETS:
        return design(target).spec
    if not isinstance(target, (str, os.PathLike)):
        raise ValueError(f"target: expected a Spec, a network or preset name, or a spec file path, "
                         f"got {type(target).__name__}")
    text = os.fspath(target)
    looks_like_path = os.path.exists(text) or os.sep in text or text.lower().endswith((".yaml", ".yml", ".json"))
    if not looks_like_path:
        raise ValueError(f"unknown network or preset {text!r}; networks: {', '.join(REFERENCE)}; "
                         f"presets: {', '.join(PRESETS)}; or give a spec file (.yaml, .yml, .json)")
    if os.path.isdir(text):
        raise SpecError(f"{text}: is a directory, expected a spec file (.yaml, .yml, .json)")
    return load(text)


def analyze(target: Spec | str | os.PathLike, alpha: Sequence[float] | None = None, beta: float = BETA,
            classifier: bool = True) -> Analysis:
    """Analyze a Spec, a reference network (``deepmad.reference.REFERENCE``), a preset or a spec file.

    alpha (default (1, ..., 1, 8)), beta and classifier set how the network is scored and counted.
    """
    alpha, beta = parse_alpha(alpha), parse_beta(beta)  # bad weights fail before a preset is designed
    return analyze_spec(resolve(target), alpha, beta, classifier)


# ---------------------------------------------------------------------------------------------- design

def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what}: expected a number > 0, got {value!r}")
    return float(value)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what}: expected an integer >= 1, got {value!r}")
    return value


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, str):
        value = value.split(",")
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected comma-separated integers, got {value!r}") from None
    if not out:
        raise ValueError(f"{what}: expected at least one value")
    return out


def problem(preset: str | None = None, *, block: str | None = None, flops: Any = None, params: Any = None,
            rho: float | None = None, resolution: int | None = None, strides: Sequence[int] | None = None,
            alpha: Sequence[float] | None = None, beta: float | None = None, classifier: bool | None = None,
            max_depth: int | None = None, max_channels: int | None = None,
            kernels: Sequence[int] | None = None) -> Problem:
    """The design problem of a preset (with overrides) or of a block family and budgets."""
    alpha = parse_alpha(alpha)
    over = {}
    if resolution is not None:
        over["resolution"] = _positive_int(resolution, "resolution")
    if strides is not None:
        over["strides"] = _ints(strides, "strides")
    if kernels is not None:
        over["kernels"] = _ints(kernels, "kernels")
    if max_depth is not None:
        over["max_depth"] = _positive_int(max_depth, "max_depth")
    if max_channels is not None:
        over["max_channels"] = _positive_int(max_channels, "max_channels")
    flops = None if flops is None else parse_count(flops, "flops")
    params = None if params is None else parse_count(params, "params")
    rho = None if rho is None else _positive(rho, "rho")
    if preset is not None:
        base = _preset(preset)
        if block is not None and block != base.space.block:
            raise ValueError(f"block: preset {preset} uses {base.space.block} blocks, got {block!r}")
        space = replace(base.space, **over) if over else base.space
        b = base.budget
        budget = Budget(flops or b.flops, params or b.params, rho or b.rho0,
                        alpha if alpha is not None else b.alpha, b.beta if beta is None else parse_beta(beta),
                        b.classifier if classifier is None else bool(classifier))
        name = base.name
    else:
        if block is None:
            raise ValueError("design: give a preset, or a block family (block=...) with flops, params and rho")
        if block not in LAYOUTS:
            raise ValueError(f"block: expected one of {', '.join(BLOCKS)}, got {block!r}")
        missing = [k for k, v in (("flops", flops), ("params", params), ("rho", rho)) if v is None]
        if missing:
            raise ValueError(f"{missing[0]}: a design from a block family needs flops, params and rho")
        space = Space(**{**LAYOUTS[block], "resolution": 224, **over})
        budget = Budget(flops, params, rho, alpha, parse_beta(beta), True if classifier is None else bool(classifier))
        name = f"deepmad-{block}"
    prob = Problem(space, budget, name=name)
    prob.alpha  # raises a ValueError naming alpha when it does not fit the layout's scales
    return prob


def solve(prob: Problem, *, solver: str = "lns", seed: int = 0, candidates: int = 500_000,
          time_limit: float | None = None, bound_nodes: int | None = None):
    """Solve a problem with the search (lns) or the evolutionary baseline, then bound its optimum.

    The design is checked feasible. ``bound_nodes`` (default ``bound.BOUND_NODES``; 0 skips it) is the node
    budget of the branch and bound of ``deepmad.bound`` that proves an upper bound on the optimum; the design's
    ``bound`` and ``gap`` come from it (``None``: not proven). With the lns solver and a bound, the search is
    the light one of ``solver.BOUNDED_STARTS`` (its first incumbent) and the branch and bound improves the design
    wherever it finds a better one (its primal heuristic descends from the relaxations' optima): the design
    is the best of both. Without a bound it is the full search's. The evolutionary baseline's design is only
    bounded, never changed. Deterministic: the same arguments give the same design, bit for bit."""
    from .bound import BOUND_NODES

    bound_nodes = BOUND_NODES if bound_nodes is None else bound_nodes
    if isinstance(bound_nodes, bool) or not isinstance(bound_nodes, int) or bound_nodes < 0:
        raise ValueError(f"bound_nodes: expected an integer >= 0 (0 skips the bound), got {bound_nodes!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver: expected one of {', '.join(SOLVERS)}, got {solver!r}")
    if time_limit is not None:
        time_limit = _positive(time_limit, "time_limit")
    if solver == "lns":
        from .solver import BOUNDED_KICKS, BOUNDED_STARTS, solve as lns

        light = dict(n_starts=BOUNDED_STARTS, kicks=BOUNDED_KICKS) if bound_nodes else {}
        d = lns(prob, time_limit=time_limit, **light)
    else:
        from .evolution import evolve

        if time_limit is not None:
            raise ValueError("time_limit: applies to the lns search only (the evolution's budget is candidates)")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
        d = evolve(prob, candidates=_positive_int(candidates, "candidates"), seed=seed)
    import numpy as np

    if not bool(evaluate(prob, np.asarray([d.x])).feasible[0]):
        from .solver import Infeasible

        raise Infeasible(f"the {solver} solver found no design of {prob.name or 'this problem'} within its budgets")
    if not bound_nodes:
        return d
    left = None if time_limit is None else max(time_limit - d.seconds, 0.0)
    return prove(d, bound_nodes, improve=solver == "lns", time_limit=left)


def prove(d, max_nodes: int, improve: bool = True, time_limit: float | None = None):
    """The design with the bound and gap the branch and bound proves in max_nodes nodes (or time_limit
    seconds, then machine-dependent); with ``improve``, the better design it finds, if any, replaces it."""
    from .bound import prove as _prove

    b = _prove(d.problem, d.objective, max_nodes=max_nodes, polish=improve, time_limit=time_limit)
    if improve and b.row is not None and b.incumbent > d.objective:
        d = replace(d, x=tuple(b.row), spec=to_spec(d.problem, b.row, name=d.spec.name), objective=b.incumbent)
    gap = 0.0 if b.bound <= d.objective else (b.bound - d.objective) / abs(d.objective)
    return replace(d, bound=b.bound, gap=gap, seconds=d.seconds + b.seconds, bound_nodes=b.nodes)


def design(preset: str | None = None, *, block: str | None = None, flops: Any = None, params: Any = None,
           rho: float | None = None, resolution: int | None = None, strides: Sequence[int] | None = None,
           alpha: Sequence[float] | None = None, beta: float | None = None, classifier: bool | None = None,
           max_depth: int | None = None, max_channels: int | None = None, kernels: Sequence[int] | None = None,
           solver: str = "lns", seed: int = 0, candidates: int = 500_000, time_limit: float | None = None,
           bound_nodes: int | None = None):
    """Design a network: a preset (budget fields may be overridden) or a block family with flops/params/rho.

    flops and params take numbers or strings like '1.8G', '11.7M'; resolution defaults to the preset's or
    224; alpha to (1, ..., 1, 8), beta to 10, classifier to True (counted in params and FLOPs); bound_nodes
    to ``bound.BOUND_NODES`` (the proof's node budget, 0: no proof, gap None). Returns a
    ``deepmad.solver.Design``; raises ValueError (``solver.Infeasible`` for budgets no design meets).
    """
    prob = problem(preset, block=block, flops=flops, params=params, rho=rho, resolution=resolution,
                   strides=strides, alpha=alpha, beta=beta, classifier=classifier, max_depth=max_depth,
                   max_channels=max_channels, kernels=kernels)
    return solve(prob, solver=solver, seed=seed, candidates=candidates, time_limit=time_limit,
                 bound_nodes=bound_nodes)


def analyze_design(d) -> Analysis:
    """The analysis of a design, under its own problem's α, β and classifier convention."""
    bu = d.problem.budget
    return analyze_spec(d.spec, d.problem.alpha, bu.beta, bu.classifier)


def usage(a: Analysis, budget: Budget) -> dict[str, float]:
    """Share of each budget a network uses (1.0 = all of it)."""
    return {"flops": a.flops / budget.flops, "params": a.params / budget.params, "rho": a.rho_max / budget.rho0}


def list_presets() -> list[str]:
    """Names of the built-in presets."""
    return list(PRESETS)


def list_networks() -> list[str]:
    """Names of the built-in reference networks."""
    return list(REFERENCE)


__all__ = ["design", "analyze", "analyze_spec", "analyze_design", "problem", "solve", "resolve", "usage",
           "Analysis", "Row", "LAYOUTS", "SOLVERS", "list_presets", "list_networks"]
