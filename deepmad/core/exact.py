"""The exact solve of a design problem: a light search, then the branch and bound's proof; and the spec of any
named network (a preset is solved).

``solve`` runs the search (``solver``, lns) or the authors' evolutionary baseline (``evolution``), then the branch
and bound of ``bound``, which proves an upper bound on the optimum and, for lns, improves the design wherever it
finds a better one.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any

import numpy as np

from . import bound
from .budget import Problem, evaluate, to_spec
from .evolution import evolve
from .presets import PRESETS, preset
from .reference import REFERENCE, reference
from .result import Infeasible
from .solver import BOUNDED_KICKS, BOUNDED_STARTS, solve as search
from .spec import Spec, SpecError, load

SOLVERS = ("lns", "evolution")


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what}: expected a number > 0, got {value!r}")
    return float(value)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what}: expected an integer >= 1, got {value!r}")
    return value


def solve(prob: Problem, *, solver: str = "lns", seed: int = 0, candidates: int = 500_000,
          time_limit: float | None = None, bound_nodes: int | None = None):
    """Solve a problem with the search (lns) or the evolutionary baseline, then bound its optimum.

    The design is checked feasible. ``bound_nodes`` (default ``bound.BOUND_NODES``; 0 skips it) is the node
    budget of the branch and bound of ``deepmad.core.bound`` that proves an upper bound on the optimum; the design's
    ``bound`` and ``gap`` come from it (``None``: not proven). With the lns solver and a bound, the search is
    the light one of ``solver.BOUNDED_STARTS`` (its first incumbent) and the branch and bound improves the design
    wherever it finds a better one (its primal heuristic descends from the relaxations' optima): the design
    is the best of both. Without a bound it is the full search's. The evolutionary baseline's design is only
    bounded, never changed. Deterministic: the same arguments give the same design, bit for bit."""
    bound_nodes = bound.BOUND_NODES if bound_nodes is None else bound_nodes
    if isinstance(bound_nodes, bool) or not isinstance(bound_nodes, int) or bound_nodes < 0:
        raise ValueError(f"bound_nodes: expected an integer >= 0 (0 skips the bound), got {bound_nodes!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver: expected one of {', '.join(SOLVERS)}, got {solver!r}")
    if time_limit is not None:
        time_limit = _positive(time_limit, "time_limit")
    if solver == "lns":
        light = dict(n_starts=BOUNDED_STARTS, kicks=BOUNDED_KICKS) if bound_nodes else {}
        d = search(prob, time_limit=time_limit, **light)
    else:
        if time_limit is not None:
            raise ValueError("time_limit: applies to the lns search only (the evolution's budget is candidates)")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
        d = evolve(prob, candidates=_positive_int(candidates, "candidates"), seed=seed)
    if not bool(evaluate(prob, np.asarray([d.x])).feasible[0]):
        raise Infeasible(f"the {solver} solver found no design of {prob.name or 'this problem'} within its budgets")
    if not bound_nodes:
        return d
    left = None if time_limit is None else max(time_limit - d.seconds, 0.0)
    return prove(d, bound_nodes, improve=solver == "lns", time_limit=left)


def prove(d, max_nodes: int, improve: bool = True, time_limit: float | None = None):
    """The design with the bound and gap the branch and bound proves in max_nodes nodes (or time_limit
    seconds, then machine-dependent); with ``improve``, the better design it finds, if any, replaces it."""
    b = bound.prove(d.problem, d.objective, max_nodes=max_nodes, polish=improve, time_limit=time_limit)
    if improve and b.row is not None and b.incumbent > d.objective:
        d = replace(d, x=tuple(b.row), spec=to_spec(d.problem, b.row, name=d.spec.name), objective=b.incumbent)
    gap = 0.0 if b.bound <= d.objective else (b.bound - d.objective) / abs(d.objective)
    return replace(d, bound=b.bound, gap=gap, seconds=d.seconds + b.seconds, bound_nodes=b.nodes)


def resolve(target: Spec | str | os.PathLike) -> Spec:
    """A spec from a Spec, a reference network name, a preset name or a spec file path.

    A preset is designed first, under its own problem (budgets, α, β) with the search (lns).
    """
    if isinstance(target, Spec):
        return target
    if isinstance(target, str) and target in REFERENCE:
        return reference(target)
    if isinstance(target, str) and target in PRESETS:
        return solve(preset(target)).spec
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
    from .mlp import read_file

    return read_file(text)  # a CNN Spec, or an MLPSpec (deepmad_mlp files)


__all__ = ["solve", "prove", "resolve", "SOLVERS"]
