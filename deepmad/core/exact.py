"""The exact solve of a design problem: a light search and the branch and bound's proof; and the spec of any
named network (a preset is solved).

``solve`` runs the search (``solver``, lns) or the authors' evolutionary baseline (``evolution``), then the branch
and bound of ``bound``, which proves an upper bound on the optimum and, for lns, improves the design wherever it
finds a better one. The branch and bound's root relaxation does not depend on the search's design, so where the
proof runs in two processes (``bound.default_workers``) the light search runs in the second one meanwhile
(``bound.Alongside``), and the proof takes its design once the root is solved: the same design, sooner.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from typing import Any

import numpy as np

from . import bound
from .budget import Problem, evaluate, over_budget, to_spec
from .evolution import evolve
from .presets import PRESETS, preset
from .reference import REFERENCE, reference
from .result import Design, Infeasible, NotFound
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
          time_limit: float | None = None, bound_nodes: int | None = None, gap_tol: float = 0.0,
          progress=None) -> Design:
    """Solve a problem: the search (lns) or the evolutionary baseline, then the branch and bound's proof.

    ``bound_nodes`` (default ``bound.BOUND_NODES``; 0 skips the proof) is the node budget of the branch and bound
    of ``deepmad.core.bound``; it stops earlier once its bound is within ``gap_tol`` (relative; 0 = proven optimal)
    of the design. With lns, the search is the light one (``solver.BOUNDED_STARTS`` starts; beside the proof's
    root, in a second process, without a time limit), and the branch and bound's designs replace the search's
    wherever they are better: the default result is the proven optimum. The evolutionary baseline's design is
    only bounded, never changed. ``time_limit`` (seconds) covers both parts. The design's ``status`` says how the
    proof ended (``result.STATUSES``).

    Raises ``Infeasible`` only when it is proven that no design meets the budgets (the message names the
    binding constraint and what the space can meet); ``NotFound`` when no design was found without such a proof.
    Deterministic: the same arguments give the same design, bit for bit (but for ``time_limit``)."""
    bound_nodes = bound.BOUND_NODES if bound_nodes is None else bound_nodes
    if isinstance(bound_nodes, bool) or not isinstance(bound_nodes, int) or bound_nodes < 0:
        raise ValueError(f"bound_nodes: expected an integer >= 0 (0 skips the proof), got {bound_nodes!r}")
    if isinstance(gap_tol, bool) or not isinstance(gap_tol, (int, float)) or not 0 <= gap_tol < 1:
        raise ValueError(f"gap_tol: expected a relative gap in [0, 1), e.g. 0.001 for 0.1%, got {gap_tol!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver: expected one of {', '.join(SOLVERS)}, got {solver!r}")
    if time_limit is not None:
        time_limit = _positive(time_limit, "time_limit")
    t0 = time.perf_counter()
    why = over_budget(prob)  # proven for every solver: no network of the space is that cheap
    if why:
        raise Infeasible(why)
    d, missing, beside = None, None, None
    try:
        if solver == "lns" and bound_nodes and time_limit is None:  # beside the proof's root, in a second process
            beside = bound.Alongside(_light_search, prob, wanted=bound.default_workers() > 1)
        elif solver == "lns":
            light = dict(n_starts=BOUNDED_STARTS, kicks=BOUNDED_KICKS) if bound_nodes else {}
            d = search(prob, time_limit=time_limit, **light)
        else:
            if time_limit is not None:
                raise ValueError("time_limit: applies to the lns search only (the evolution's budget is candidates)")
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
            d = evolve(prob, candidates=_positive_int(candidates, "candidates"), seed=seed)
    except NotFound as e:  # the search found nothing; the branch and bound decides whether anything exists
        if not bound_nodes:
            raise
        missing = e
    if not bound_nodes:
        return d
    left = None if time_limit is None else max(time_limit - (time.perf_counter() - t0), 0.0)
    improve = solver == "lns" or d is None

    def incumbent() -> float:  # the proof asks once its root's relaxation is solved
        nonlocal d, missing
        if beside is not None:
            d, missing = beside.result()
        return -math.inf if d is None else d.objective

    try:
        b = bound.prove(prob, incumbent, max_nodes=bound_nodes, gap_tol=gap_tol, time_limit=left, polish=improve,
                        progress=progress)
    finally:
        if beside is not None:
            beside.close()
    if b.status == "infeasible":
        raise Infeasible(infeasible_message(prob))
    if b.row is not None and (d is None or (improve and b.incumbent > d.objective)):
        spec = to_spec(prob, b.row, name=prob.name)
        if d is None:
            d = Design(prob, tuple(b.row), spec, b.incumbent, None, None, 0.0, solver, 0)
        else:
            d = replace(d, x=tuple(b.row), spec=spec, objective=b.incumbent)
    if d is None:
        raise NotFound(f"{missing}; the branch and bound found none either within its {b.status.replace('_', ' ')} "
                       f"({b.nodes:,} nodes, {b.seconds:.1f} s) and did not prove that none exists: raise "
                       f"bound_nodes / time_limit")
    gap = 0.0 if b.bound <= d.objective else (b.bound - d.objective) / abs(d.objective)
    status = "optimal" if gap == 0.0 else b.status
    return replace(d, bound=b.bound, gap=gap, seconds=time.perf_counter() - t0, bound_nodes=b.nodes, status=status,
                   lp_solves=b.lp_solves, proof_seconds=b.seconds, proof_workers=b.workers)


def _light_search(prob: Problem) -> tuple[Design | None, NotFound | None]:
    """The search before the branch and bound (``BOUNDED_STARTS`` starts, ``BOUNDED_KICKS`` kicks): its design, or
    why it found none."""
    try:
        return search(prob, n_starts=BOUNDED_STARTS, kicks=BOUNDED_KICKS), None
    except NotFound as e:
        return None, e


def infeasible_message(prob: Problem) -> str:
    """Why no design meets the budgets (proven by the caller): the binding constraint and the value of it that
    the space can meet, computed. The FLOPs and params of the space's smallest network are the least any of its
    networks needs (every cost grows with every variable); when both fit, rho0 binds, and the least rho0 any
    design within the FLOPs and params budgets meets is bracketed by bisection (``least_rho``)."""
    why = over_budget(prob)
    if why:
        return why
    b = prob.budget
    lo, hi = least_rho(prob)
    within = (f"{b.flops:.4g} FLOPs and {b.params:.4g} params" if b.latency is None else
              f"{b.flops:.4g} FLOPs, {b.params:.4g} params and {b.latency_text()}")
    return (f"rho: no design of this space meets rho <= {b.rho0:g} within {within} (proven by branch and bound); "
            f"the least rho0 any design within these budgets meets lies in [{lo:.4g}, {hi:.4g}]: raise rho0 to "
            f"{hi:.4g}, or the budgets")


def least_rho(prob: Problem, steps: int = 8, max_nodes: int = 2000) -> tuple[float, float]:
    """An interval [lo, hi] holding the least rho0 for which some design meets the FLOPs and params budgets of
    prob: hi is the largest scale-prefix rho of a design found within them, lo a rho0 proven infeasible (prob's
    own, to start), narrowed by bisection, each step a branch and bound that stops at its first design."""
    lo = prob.budget.rho0
    loose = replace(prob, budget=replace(prob.budget, rho0=1e9))
    hi = _rho_of(prob, search(loose, n_starts=1, kicks=0).x)
    for _ in range(steps):
        if hi <= lo * 1.001:
            break
        mid = math.sqrt(lo * hi)
        trial = replace(prob, budget=replace(prob.budget, rho0=mid))
        b = bound.prove(trial, max_nodes=max_nodes, first=True)
        if b.status == "infeasible":
            lo = mid
        elif b.row is not None:
            hi = min(hi, _rho_of(prob, b.row))
        else:  # undecided within the node budget
            break
    return lo, hi


def _rho_of(prob: Problem, row) -> float:
    return float(evaluate(prob, np.asarray([row])).rho[0])


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


__all__ = ["solve", "resolve", "infeasible_message", "least_rho", "SOLVERS"]
