"""Solving the DeepMAD program (Eq. 5) over a discrete design space.

Method: deterministic large-neighbourhood search ("lns") over the integer rows of ``budget``. From each of
a few starts (the best rows of a scan over uniform depths and channel scales at the budget frontier, and
the best row of the evolutionary baseline's default run, seed 0, which explores more widely), it
repeatedly scores, in one vectorized call, every move of one variable to any of its values and every joint
move of two variables by ±1..±32 grid steps (kernel changes paired with any other move), and takes the best.
Infeasible rows rank below every feasible one by their relative constraint violation, so a start need not
be feasible. Pair moves matter: the budgets and ρ0 are nearly binding at the optimum, so one variable can
only grow if another shrinks.

Descent only accepts improvements, so the result is never worse than the baseline at its defaults; the
frontier starts are what make it better. Why not a general-purpose MINLP solver: on this program SCIP found no finite dual bound in 120 s and an
incumbent far below a simple hill climb (../shared/docs/solver-notes.md). The notes' reference instance is
the deepmad-r18 preset; tests check the search beats the notes' hill-climb value there, and
benchmarks/solve.py prints objective and time per preset beside the evolutionary baseline.

What is not done yet: a proof. ``Design.bound``/``gap`` stay ``None`` ("not proven") until a valid upper
bound is computed (the planned route: branch and bound over depth vectors with convex relaxations in log
space and McCormick envelopes on the log(r²c)·S products, see solver-notes.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .budget import Problem, bounds, columns, evaluate, in_space, to_spec
from .spec import Spec

PAIR_STEPS = (1, 2, 4, 8, 16, 32)  # grid steps of the two-variable moves


class Infeasible(ValueError):
    """No point of the space meets the budgets; the message states what the space needs."""


@dataclass(frozen=True)
class Design:
    problem: Problem
    x: tuple[int, ...]  # the row (budget.columns layout)
    spec: Spec
    objective: float  # Σ α_j H_j − β exp(Var L)
    bound: float | None  # proven upper bound on the optimum of the space, None when none was proven
    gap: float | None  # (bound − objective) / objective; 0 when proven optimal, None when not proven
    seconds: float  # wall time of the solve
    solver: str  # lns | evolution
    evaluated: int  # candidates scored


def merit(problem: Problem, X: np.ndarray) -> np.ndarray:
    """Objective of feasible rows; below every feasible row, minus the relative violation, otherwise."""
    s, b = evaluate(problem, X), problem.budget
    violation = (np.maximum(s.macs / b.flops - 1, 0) + np.maximum(s.params / b.params - 1, 0)
                 + np.maximum(s.rho / b.rho0 - 1, 0))
    m = np.where(s.feasible, s.objective, -1e12 * (1 + violation))
    return np.where(in_space(problem, X), m, -np.inf)


def neighbours(problem: Problem, x: np.ndarray) -> np.ndarray:
    """Every one-variable move of x and every two-variable move by PAIR_STEPS (clipped to the box)."""
    sp = problem.space
    n, st = sp.n, sp.step
    lo, hi = bounds(problem)
    col = columns(n)
    chan = list(range(col["c"].stop)) + (list(range(col["m"].start, col["m"].stop)) if sp.has_mid else [])
    kern = list(range(col["k"].start, col["k"].stop))
    depth = list(range(col["L"].start, col["L"].stop))
    unit = np.zeros(len(x), dtype=np.int64)
    unit[chan], unit[depth] = st, 1
    out = []
    for v in chan + depth:  # one variable, every value
        vals = np.arange(lo[v], hi[v] + 1, unit[v])
        X = np.repeat(x[None], len(vals), 0)
        X[:, v] = vals
        out.append(X)
    steps = np.array([s * d for d in PAIR_STEPS for s in (-1, 1)])
    depth_steps = np.array([-2, -1, 1, 2])
    movable = chan + depth
    for i, a in enumerate(movable):
        da = depth_steps if a in depth else steps
        for b in movable[i + 1:]:
            db = depth_steps if b in depth else steps
            A, B = np.meshgrid(da, db)
            X = np.repeat(x[None], A.size, 0)
            X[:, a] += A.ravel() * unit[a]
            X[:, b] += B.ravel() * unit[b]
            out.append(X)
        for v in kern:  # a kernel change together with one other move
            for k in sp.kernels:
                X = np.repeat(x[None], len(da) + 1, 0)
                X[:, v] = k
                X[1:, a] += da * unit[a]
                out.append(X)
    return np.clip(np.concatenate(out), lo, hi)


def descend(problem: Problem, x: np.ndarray, deadline: float) -> tuple[np.ndarray, float, int]:
    """Best-improvement descent from x: (local optimum, its merit, rows scored)."""
    f = float(merit(problem, x[None])[0])
    scored = 1
    while time.perf_counter() < deadline:
        X = neighbours(problem, x)
        m = merit(problem, X)
        scored += len(X)
        j = int(np.argmax(m))
        if not m[j] > f + 1e-9:
            break
        x, f = X[j].copy(), float(m[j])
    return x, f, scored


def smallest(problem: Problem) -> np.ndarray:
    """The cheapest row of the space: every cost is increasing in every variable."""
    lo, _ = bounds(problem)
    sp = problem.space
    x = lo.copy()
    col = columns(sp.n)
    x[: sp.n + 1] = np.maximum.accumulate(x[: sp.n + 1])  # non-decreasing channels
    if sp.has_mid:
        x[col["m"]] = np.maximum(x[col["m"]], np.ceil(sp.ratio[0] * x[col["c"]] / sp.step) * sp.step)
    return x


def starts(problem: Problem, count: int = 3) -> list[np.ndarray]:
    """The best few rows of a scan at the budget frontier: uniform depth t, largest kernel, channels
    growing ×2 per stride-2 stage and scaled by a common factor, mid at the middle of the ratio range."""
    sp = problem.space
    lo, hi = bounds(problem)
    col = columns(sp.n)
    growth = np.cumprod([2.0 if s == 2 else 1.0 for s in sp.strides])
    mid_ratio = float(np.sqrt(max(sp.ratio[0], 0.125) * sp.ratio[1]))
    rows = []
    for t in range(1, min(sp.max_depth, 16) + 1):
        for scale in np.geomspace(sp.step, sp.max_channels, 64):
            x = smallest(problem)
            c = np.clip(np.round(scale * growth / growth[-1] / sp.step) * sp.step, sp.step, sp.max_channels)
            x[col["c"]] = c
            x[0] = np.clip(np.round(c[0] / 2 / sp.step) * sp.step, lo[0], hi[0])
            if sp.has_mid:
                x[col["m"]] = np.clip(np.round(mid_ratio * c / sp.step) * sp.step, sp.step, hi[col["m"]])
            x[col["L"]] = np.minimum(t, hi[col["L"]])
            x[col["k"]] = max(sp.kernels)
            rows.append(x)
    X = np.array(rows)
    m = merit(problem, X)
    out: list[np.ndarray] = []
    for j in np.argsort(-m, kind="stable"):
        if len(out) == count or not np.isfinite(m[j]):
            break
        out.append(X[j])
    return out or [smallest(problem)]


def infeasible_message(problem: Problem) -> str:
    """Why nothing fits: the budgets the cheapest network of the space needs."""
    s = evaluate(problem, smallest(problem)[None])
    b = problem.budget
    parts = []
    if s.macs[0] > b.flops:
        parts.append(f"flops budget {b.flops:.4g} is below the {s.macs[0]:.4g} MACs of the smallest network")
    if s.params[0] > b.params:
        parts.append(f"params budget {b.params:.4g} is below the {s.params[0]:.4g} params of the smallest network")
    if parts:
        return "infeasible budgets: " + "; ".join(parts) + " this space allows"
    return (f"no design of this space meets rho <= {b.rho0:g} within the budgets (the smallest network has "
            f"rho {s.rho[0]:.3g}); raise rho0 or the budgets")


SEED_CANDIDATES = 500_000  # the seeded evolutionary run (the baseline's own default) whose best row is one more start


def solve(problem: Problem, *, time_limit: float | None = None, n_starts: int = 3,
          seed_candidates: int = SEED_CANDIDATES) -> Design:
    """Best design found by the search (deterministic: same problem, same design)."""
    from .evolution import evolve  # evolution returns our Design: import here, not at module level

    t0 = time.perf_counter()
    deadline = t0 + (time_limit if time_limit else float("inf"))
    s = evaluate(problem, smallest(problem)[None])
    if s.macs[0] > problem.budget.flops or s.params[0] > problem.budget.params:
        raise Infeasible(infeasible_message(problem))
    best, best_f, scored = None, -np.inf, 0
    first = starts(problem, n_starts)
    if seed_candidates:
        try:
            e = evolve(problem, candidates=seed_candidates, seed=0)
            first.append(np.array(e.x))
            scored += e.evaluated
        except Infeasible:
            pass
    for x0 in first:
        x, f, k = descend(problem, x0, deadline)
        scored += k
        if f > best_f:
            best, best_f = x, f
    if best is None or not evaluate(problem, best[None]).feasible[0]:
        raise Infeasible(infeasible_message(problem))
    return Design(problem, tuple(int(v) for v in best), to_spec(problem, best), float(best_f), None, None,
                  time.perf_counter() - t0, "lns", scored)
