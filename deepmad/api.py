"""The Python API: ``design`` a network (solve the DeepMAD program of Eq. 5) and ``analyze`` any network.

A thin layer over the design core (``deepmad.core``): ``design`` turns its arguments (a preset, or a block family
and budgets with the presets' default layouts) into a ``budget.Problem`` and hands it to ``exact.solve``;
``analyze`` resolves a name or file to a spec and scores it with ``analysis.analyze_spec``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import replace
from typing import Any, Sequence

from .core import latency as _lat, mlp
from .core.analysis import Analysis, Row, analyze_spec, parse_alpha, parse_beta, usage
from .core.budget import Budget, Problem, Space, parse_count, unbinding
from .core.exact import SOLVERS, _positive, _positive_int, resolve, solve  # noqa: F401 (re-exported)
from .core.presets import PRESETS, preset as _preset
from .core.reference import REFERENCE
from .core.result import DeepMADWarning
from .core.spec import BLOCKS, Spec
from .core.theory import BETA

# Default layouts of a design given by its block family; they mirror the spaces of presets.py
# (tests/test_api.py checks they agree).
LAYOUTS: dict[str, dict[str, Any]] = {
    "basic": dict(block="basic", strides=(2, 2, 2, 2), stem_channels=(8, 32), kernels=(3, 5), max_depth=30),
    "bottleneck": dict(block="bottleneck", strides=(2, 2, 2, 2), stem_channels=(8, 32), kernels=(3, 5),
                       max_depth=30, ratio=(0.0, 1.0)),
    "mbconv": dict(block="mbconv", strides=(2, 2, 2, 1, 2), stem_channels=(16, 64), kernels=(3, 5, 7),
                   max_depth=30, ratio=(1.5, 6.0), se=0.25, head=1280, act="silu"),
}


# ---------------------------------------------------------------------------------------------- analysis

def analyze(target: Spec | str | os.PathLike, alpha: Sequence[float] | None = None, beta: float = BETA,
            classifier: bool = True) -> Analysis:
    """Analyze a Spec, a reference network (``deepmad.core.reference.REFERENCE``), a preset or a spec file.

    alpha (default (1, ..., 1, 8)), beta and classifier set how the network is scored and counted.
    """
    alpha, beta = parse_alpha(alpha), parse_beta(beta)  # bad weights fail before a preset is designed
    spec = target if isinstance(target, mlp.MLPSpec) else resolve(target)
    if isinstance(spec, mlp.MLPSpec):  # Section 3: entropy (Eq. 1) and rho of an MLP
        return mlp.analyze(spec)
    return analyze_spec(spec, alpha, beta, classifier)


# ---------------------------------------------------------------------------------------------- design

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
            kernels: Sequence[int] | None = None, multiscale: bool = True,
            allow_decreasing: bool = False, latency: Any = None, latency_model: Any = None,
            latency_margin: Any = "auto") -> Problem:
    """The design problem of a preset (with overrides) or of a block family and budgets.

    The paper's guidelines (Sec. 4.2) as switches: ``multiscale=False`` drops guideline 1 (the objective's
    entropy is Eq. 4 of the whole network, the last scale's H alone: α = (0, ..., 0, 1)); ``beta=0`` drops
    guideline 2 (no depth penalty); ``allow_decreasing=True`` drops guideline 3 (channels need not grow).
    latency: a budget in milliseconds ('30ms', '0.03s', 30) under latency_model (a model file path, from
    ``deepmad latency calibrate``, or a ``deepmad.core.latency.LatencyModel``); designs are held to it less
    latency_margin ('auto': the model's design margin for the family, how much slower than predicted designs
    under latency budgets ran at calibration; '5%', 0.05; 0: none): predicted <= latency / (1 + margin)."""
    alpha = parse_alpha(alpha)
    margin = _lat.parse_margin(latency_margin)
    if latency is None and margin is not None:
        warnings.warn("latency_margin: applies to a latency budget only (latency=..., --latency); ignored",
                      DeepMADWarning, stacklevel=2)
    if not multiscale and alpha is not None:
        raise ValueError("alpha: multiscale=False (--no-multiscale) sets alpha to (0, ..., 0, 1); give one or the other")
    latency = None if latency is None else _lat.parse_ms(latency, "latency")
    if latency is not None and latency_model is None:
        raise ValueError("latency: a latency budget needs a latency model (--latency-model FILE, written by "
                         "'deepmad latency calibrate')")
    if latency_model is not None:
        from .latency.model import as_model

        latency_model = as_model(latency_model, warn=False)  # warned about below, once it fits the problem
    over = {}
    if allow_decreasing:
        over["ordered"] = False
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
                        b.classifier if classifier is None else bool(classifier), latency, latency_model)
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
        budget = Budget(flops, params, rho, alpha, parse_beta(beta), True if classifier is None else bool(classifier),
                        latency, latency_model)
        name = f"deepmad-{block}"
    prob = Problem(space, budget, name=name)
    if latency is not None:
        if margin is None:
            margin = _lat.family_for(latency_model, space, budget.classifier).margin
        prob = replace(prob, budget=replace(budget, latency=latency / (1 + margin), latency_margin=margin))
        budget = prob.budget
    if not multiscale:  # guideline 1 off: the entropy of the last scale only (Eq. 4 of the whole network)
        m = len(space.scale_ends())
        prob = replace(prob, budget=replace(budget, alpha=(0.0,) * (m - 1) + (1.0,)))
    prob.alpha  # raises a ValueError naming alpha when it does not fit the layout's scales
    for why in unbinding(prob):
        warnings.warn(why, DeepMADWarning, stacklevel=2)
    if latency_model is not None:
        from .latency.model import warn_if_foreign

        warn_if_foreign(latency_model)
    return prob


def design(preset: str | None = None, *, block: str | None = None, flops: Any = None, params: Any = None,
           rho: float | None = None, resolution: int | None = None, strides: Sequence[int] | None = None,
           alpha: Sequence[float] | None = None, beta: float | None = None, classifier: bool | None = None,
           max_depth: int | None = None, max_channels: int | None = None, kernels: Sequence[int] | None = None,
           solver: str = "lns", seed: int | None = None, candidates: int | None = None,
           time_limit: float | None = None, bound_nodes: int | None = None, gap_tol: float = 0.0, progress=None,
           multiscale: bool = True, allow_decreasing: bool = False, latency: Any = None, latency_model: Any = None,
           latency_margin: Any = "auto"):
    """Design a network: a preset (budget fields may be overridden) or a block family with flops/params/rho.

    flops and params take numbers or strings like '1.8G', '11.7M'; resolution defaults to the preset's or
    224; alpha to (1, ..., 1, 8), beta to 10, classifier to True (counted in params and FLOPs). The design is
    the proven optimum unless the proof stops first: bound_nodes (default ``bound.BOUND_NODES``; 0: no proof,
    gap None), gap_tol (stop once the gap is at most this, relative) or time_limit (seconds) end it, and the
    design's ``status`` says which. seed and candidates apply to the evolutionary baseline only.
    ``progress(nodes, bound, incumbent)`` is called while the proof runs. multiscale=False and
    allow_decreasing=True switch guidelines 1 and 3 off (see ``problem``), beta=0 guideline 2. latency ('30ms')
    is a fourth budget under latency_model (a model file or ``LatencyModel``; docs/latency.md), met with
    latency_margin to spare (default: the model's design margin; see ``problem``). Returns a
    ``deepmad.core.result.Design``; raises ValueError (``result.Infeasible`` when it is proven that no design
    meets the budgets, ``result.NotFound`` when none was found without such a proof).
    """
    prob = problem(preset, block=block, flops=flops, params=params, rho=rho, resolution=resolution,
                   strides=strides, alpha=alpha, beta=beta, classifier=classifier, max_depth=max_depth,
                   max_channels=max_channels, kernels=kernels, multiscale=multiscale,
                   allow_decreasing=allow_decreasing, latency=latency, latency_model=latency_model,
                   latency_margin=latency_margin)
    if solver in SOLVERS and solver != "evolution":
        for name, value in (("seed", seed), ("candidates", candidates)):
            if value is not None:
                warnings.warn(f"{name}: applies to the evolutionary baseline only (solver='evolution'); ignored by "
                              f"{solver}", DeepMADWarning, stacklevel=2)
    return solve(prob, solver=solver, seed=0 if seed is None else seed,
                 candidates=500_000 if candidates is None else candidates, time_limit=time_limit,
                 bound_nodes=bound_nodes, gap_tol=gap_tol, progress=progress)


def design_mlp(inputs: int, outputs: int, params: Any, rho: float, *, max_depth: int | None = None,
               max_width: int | None = None, step: int | None = None, bias: bool = True, act: str = "relu",
               name: str = "deepmad-mlp") -> mlp.MLPDesign:
    """Design an MLP (Section 3): the largest entropy of Eq. 1 within a params budget and ρ0, exact
    (``deepmad.core.mlp.solve``). params takes numbers or strings like '1M'."""
    kw = {k: v for k, v in (("max_depth", max_depth), ("max_width", max_width), ("step", step)) if v is not None}
    for k, v in (("inputs", inputs), ("outputs", outputs), *kw.items()):
        _positive_int(v, k)
    prob = mlp.MLPProblem(inputs, outputs, parse_count(params, "params"), _positive(rho, "rho"), bias=bias, act=act,
                          name=name, **kw)
    return mlp.solve(prob)


def analyze_design(d) -> Analysis:
    """The analysis of a design, under its own problem's α, β and classifier convention."""
    bu = d.problem.budget
    return analyze_spec(d.spec, d.problem.alpha, bu.beta, bu.classifier)


def predict_latency(target: Spec | str | os.PathLike, latency_model: Any, classifier: bool = True):
    """The latency a model (file or ``LatencyModel``) predicts for a network (a Spec, name or spec file), in
    total and per row (``deepmad.core.latency.Prediction``, milliseconds)."""
    from .latency.model import as_model

    model = as_model(latency_model, warn=False)
    out = _lat.predict(model, resolve(target), classifier)
    from .latency.model import warn_if_foreign

    warn_if_foreign(model)
    return out


def list_presets() -> list[str]:
    """Names of the built-in presets."""
    return list(PRESETS)


def list_networks() -> list[str]:
    """Names of the built-in reference networks."""
    return list(REFERENCE)


__all__ = ["design", "design_mlp", "analyze", "analyze_spec", "analyze_design", "problem", "solve", "resolve", "usage",
           "predict_latency", "Analysis", "Row", "LAYOUTS", "SOLVERS", "list_presets", "list_networks"]
