"""The authors' search (TinyNAS), as a seeded baseline over the same program and space as the exact solver.

DeepMAD's released code does not solve Eq. 5 with an MP solver: it runs a mutation-only evolutionary search
(deepmad-math.md §6; TinyNAS ``tinynas/searchers/searcher.py``, ``spaces/base.py``, ``spaces/mutator/*``).
``evolve`` is that procedure on our rows (``budget.columns`` layout), every candidate scored with
``budget.evaluate``, so its result is directly comparable with the exact solver's.

Procedure
---------
- Start: one feasible seed, the population is that seed alone (TinyNAS fills its population with copies of
  one initial network that must meet the budgets). The seed is the cheapest (fewest MACs) feasible network of
  a uniform ladder: every channel count t (multiples of ``step``), stem at its lowest or at min(t, highest),
  mid at the lowest or highest ratio, the smallest or largest kernel, depth 1 everywhere. The smallest
  network of the space (everything at its lower bound) is the ladder's first rung, but it usually breaks
  ρ ≤ ρ0 (for deepmad-r18 its ρ is 0.75): ρ falls only as layers get wider, hence the ladder.
- Generations: ``batch`` children at a time, each a copy of a uniformly drawn member of the current
  population mutated twice (TinyNAS ``block_num = 2``). A mutation draws one unit uniformly among the stem
  and the n stages, then (stages) one of out / k / btn / L uniformly (out / k / L for basic blocks), the stem
  only out:
    out  channels × a factor drawn from {1.5, 1.25, 0.8, 0.6, 0.5} (bottleneck, basic: ``space_k1kxk1``) or
         {0.5, 0.6, ..., 2.0} (mbconv: ``space_k1dwsek1``), rounded to a multiple of ``step`` (TinyNAS
         ``smart_round``: half to even, at least ``step``), then clipped to the neighbours (previous unit's
         channels <= c <= next unit's, ``max_channels`` for the last; the stem also to ``stem_channels``);
         without guideline 3 (``space.ordered`` False) to the box only.
         A bottleneck keeps its mid channels; an mbconv keeps its expansion ratio (snapped to the 0.1 grid,
         as ``check_btn`` does).
    k    another kernel of ``space.kernels``, uniformly.
    btn  bottleneck: mid × the channel factor, rounded; mbconv: a new expansion ratio from the 0.1 grid of
         ``space.ratio``, mid = round(c · ratio).
    L    depth + one of {−2, −1, +1, +2}; a step below 1 is taken upwards instead (TinyNAS retries until the
         depth changes), then clipped to 1..max_depth (``first_depth`` for the first stage).
  After every mutation the mid channels are clipped into the ratio range of their stage's channels.
- Selection: children outside the budgets (FLOPs, params, ρ ≤ ρ0) are discarded; the population becomes the
  best ``population`` distinct rows of population ∪ children by objective (ties: smaller row first,
  lexicographically), as TinyNAS ``rank_population`` dedups and keeps ``popu_size``.
- Result: the best row of the final population. ``evaluated`` counts every row scored, the seed included,
  and equals ``candidates``.

Departures from TinyNAS, on purpose (same space and program as the exact solver, see budget.py):
- every stage may mutate, the last included (TinyNAS's ``randint(0, len - 1)`` never picks its last
  top-level block, which in bottleneck spaces is the last group; starting from a tiny seed that would freeze
  the last group at its seed size);
- no TinyNAS-only constraints: out <= 4·in and btn >= out/10 (bottleneck), first group depth <= 3, stem
  channel caps; the space's own (``bounds``, ``in_space``, non-decreasing channels) apply instead;
- the children of one batch all come from the population as it was at the start of the batch (TinyNAS
  workers also breed ``sync_interval`` children between two rankings).

Determinism: only ``numpy.random.default_rng(seed)``; every batch draws the same number of random values
whatever the population holds, and a last, partial batch draws a full batch and scores its first rows. So
the same (problem, candidates, population, seed, batch) gives the same design bit for bit, and, the
population being elitist, more candidates (same seed, population, batch) never give a worse best.
"""
from __future__ import annotations

import time

import numpy as np

from . import budget as bud
from .budget import Problem
from .result import Design, Infeasible, NotFound

CHANNEL_FACTORS = (1.5, 1.25, 0.8, 0.6, 0.5)  # TinyNAS space_k1kxk1 search_channel_list
MBCONV_CHANNEL_FACTORS = tuple(round(0.5 + 0.1 * i, 1) for i in range(16))  # np.arange(0.5, 2.01, 0.1)
DEPTH_STEPS = (-2, -1, 1, 2)  # TinyNAS search_layer_list
RATIO_STEP = 0.1  # TinyNAS search_btn_ratio_list = np.arange(1.5, 6.01, 0.1)
OUT, KERNEL, BTN, DEPTH = 0, 1, 2, 3


def _snap(x: np.ndarray, step: int) -> np.ndarray:
    """TinyNAS smart_round: nearest multiple of step (half to even), at least step."""
    return np.maximum(step, np.round(np.asarray(x, dtype=float) / step) * step).astype(np.int64)


class _Space:
    """The pieces of a problem's space the mutations need, precomputed."""

    def __init__(self, problem: Problem) -> None:
        sp = problem.space
        self.sp, self.n, self.step = sp, sp.n, sp.step
        self.lo, self.hi = bud.bounds(problem)
        self.col = bud.columns(sp.n)
        self.kernels = np.array(sp.kernels, dtype=np.int64)
        self.factors = np.array(MBCONV_CHANNEL_FACTORS if sp.block == "mbconv" else CHANNEL_FACTORS)
        self.keep_ratio = sp.block == "mbconv"
        lo, hi = sp.ratio
        count = int(np.floor((hi - lo) / RATIO_STEP + 1e-9)) + 1
        self.ratios = np.round(lo + RATIO_STEP * np.arange(count), 10)
        self.methods = 4 if sp.has_mid else 3  # out, k, [btn,] L

    def mid_range(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Smallest and largest mid channels allowed with c output channels (lo > hi: none)."""
        sp, st = self.sp, self.step
        lo = np.maximum(st, np.ceil(sp.ratio[0] * c / st - 1e-9) * st)
        hi = np.minimum(self.hi[self.n + 1], np.floor(sp.ratio[1] * c / st + 1e-9) * st)
        return lo.astype(np.int64), hi.astype(np.int64)

    def uniform(self, c0: np.ndarray, c: np.ndarray, high_mid: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Rows with stem c0, every stage c channels, mid at the low/high end, kernel k, depth 1."""
        n = self.n
        X = np.zeros((len(c), 4 * n + 1), dtype=np.int64)
        X[:, 0] = c0
        X[:, self.col["c"]] = c[:, None]
        if self.sp.has_mid:
            mlo, mhi = self.mid_range(c)
            X[:, self.col["m"]] = np.where(high_mid, mhi, mlo)[:, None]
        X[:, self.col["k"]] = k[:, None]
        X[:, self.col["L"]] = 1
        return X


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 1000 else f"{v:.4g}"


def _smallest(s: _Space) -> np.ndarray:
    """The smallest network of the space: every variable at its lower bound (channels >= the stem's)."""
    c0 = int(s.sp.stem_channels[0])
    return s.uniform(np.array([c0]), np.array([max(c0, s.step)]), np.array([False]),
                     np.array([s.kernels[0]]))


def _seed(problem: Problem, s: _Space) -> np.ndarray:
    """The cheapest feasible network of the uniform ladder; Infeasible when no network of the space meets the
    FLOPs and params budgets (proven: the costs grow with every variable), NotFound when none of the ladder meets
    rho0 too."""
    sp, bu = s.sp, problem.budget
    ts = np.arange(s.step, sp.max_channels + 1, s.step, dtype=np.int64)
    t, stem_hi, high, kmax = (a.ravel() for a in np.meshgrid(ts, [False, True], [False, True], [False, True],
                                                               indexing="ij"))
    c0 = np.where(stem_hi, np.clip(t // s.step * s.step, sp.stem_channels[0], sp.stem_channels[1]),
                  sp.stem_channels[0])
    X = s.uniform(c0, t, high, np.where(kmax, s.kernels[-1], s.kernels[0]))
    X = np.vstack([_smallest(s), X])
    X = X[bud.in_space(problem, X)]
    sc = bud.evaluate(problem, X)
    ok = np.flatnonzero(sc.feasible)
    if len(ok):
        order = np.lexsort(tuple(X[ok].T[::-1]) + (sc.params[ok], sc.macs[ok]))
        return X[ok[order[0]]].copy()
    # No feasible rung: say which budget is too small and what the space needs.
    small = _smallest(s)
    ss = bud.evaluate(problem, small)
    macs, params, rho = float(ss.macs[0]), float(ss.params[0]), float(ss.rho[0])
    what = (f"the smallest network of the space (stem {small[0, 0]}, every stage {small[0, 1]} channels, "
            f"kernel {small[0, 2 * s.n + 1]}, depth 1) needs FLOPs {_fmt(macs)} MACs, params {_fmt(params)} "
            f"and has rho {rho:.4g}")
    why = bud.over_budget(problem)
    if why:
        raise Infeasible(f"{problem.name or 'problem'}: {why}; {what}")
    low_rho = sc.rho <= bu.rho0
    if low_rho.any():
        i = np.flatnonzero(low_rho)[np.argmin(sc.macs[low_rho])]
        need = (f"the narrowest uniform network with rho <= {bu.rho0:g} (every stage {X[i, 1]} channels) needs "
                f"FLOPs {_fmt(float(sc.macs[i]))} MACs and params {_fmt(float(sc.params[i]))}")
    else:
        need = (f"no uniform depth-1 network of the space reaches rho <= {bu.rho0:g}: the lowest is "
                f"{float(sc.rho.min()):.4g}")
    raise NotFound(f"{problem.name or 'problem'}: rho0 budget {bu.rho0:g} is below {rho:.4g}, the rho of the "
                     f"smallest network, and {need}; FLOPs budget {_fmt(bu.flops)}, params budget "
                     f"{_fmt(bu.params)}: the evolution found no feasible start; {what}")


def _repair_mid(s: _Space, X: np.ndarray, r: np.ndarray, u: np.ndarray) -> None:
    """Clip the mid channels of stage u (1-based) of rows r into their ratio range."""
    mc = s.n + u
    lo, hi = s.mid_range(X[r, u])
    X[r, mc] = np.minimum(np.maximum(X[r, mc], lo), hi)


def _mutate(s: _Space, X: np.ndarray, rng: np.random.Generator) -> None:
    """One mutation of every row of X, in place (one unit each: stem or stage)."""
    B, n, sp = len(X), s.n, s.sp
    # every draw has the batch's size whatever the rows hold: the random stream depends on B alone
    unit = rng.integers(0, n + 1, B)
    method = rng.integers(0, s.methods, B)
    factor = s.factors[rng.integers(0, len(s.factors), B)]
    kshift = rng.integers(1, max(2, len(s.kernels)), B)
    dstep = np.array(DEPTH_STEPS)[rng.integers(0, len(DEPTH_STEPS), B)]
    ratio = s.ratios[rng.integers(0, len(s.ratios), B)]
    if not sp.has_mid:
        method = np.where(method == 2, DEPTH, method)  # out, k, L
    method = np.where(unit == 0, OUT, method)
    rows = np.arange(B)

    # out: scale the channels, round, clip to the neighbours
    r = rows[method == OUT]
    u = unit[r]
    old = X[r, u]
    new = np.minimum(_snap(old * factor[r], s.step), sp.max_channels)
    if sp.ordered:  # guideline 3: clipped to the neighbours
        below = np.where(u > 0, X[r, np.maximum(u - 1, 0)], sp.stem_channels[0])
        above = np.where(u < n, X[r, np.minimum(u + 1, n)], sp.max_channels)
    else:  # to the box only
        below = np.where(u > 0, s.step, sp.stem_channels[0])
        above = np.full(len(r), sp.max_channels)
    above = np.where(u == 0, np.minimum(above, sp.stem_channels[1]), above)
    new = np.minimum(np.maximum(new, below), above)
    X[r, u] = new
    g = u > 0
    r, u, old, new = r[g], u[g], old[g], new[g]
    if sp.has_mid and len(r):
        if s.keep_ratio:
            kept = X[r, n + u] / old
            kept = s.ratios[np.abs(s.ratios[None, :] - kept[:, None]).argmin(axis=1)]
            X[r, n + u] = _snap(new * kept, s.step)
        _repair_mid(s, X, r, u)

    # k: another kernel
    r = rows[method == KERNEL]
    if len(s.kernels) > 1 and len(r):
        u = unit[r]
        idx = np.searchsorted(s.kernels, X[r, 2 * n + u])
        X[r, 2 * n + u] = s.kernels[(idx + kshift[r]) % len(s.kernels)]

    # btn: scale the bottleneck, or draw a new expansion ratio
    r = rows[method == BTN]
    if len(r):
        u = unit[r]
        if s.keep_ratio:
            X[r, n + u] = _snap(X[r, u] * ratio[r], s.step)
        else:
            X[r, n + u] = np.minimum(_snap(X[r, n + u] * factor[r], s.step), X[r, u])
        _repair_mid(s, X, r, u)

    # L: depth ± 1 or 2
    r = rows[method == DEPTH]
    if len(r):
        u = unit[r]
        d = X[r, 3 * n + u]
        new = np.where(d + dstep[r] < 1, d + np.abs(dstep[r]), d + dstep[r])
        X[r, 3 * n + u] = np.clip(new, 1, s.hi[3 * n + u])


def _rank(X: np.ndarray, obj: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `keep` distinct rows by objective (ties: lexicographically smaller row first)."""
    X, first = np.unique(X, axis=0, return_index=True)
    obj = obj[first]
    order = np.lexsort(tuple(X.T[::-1]) + (-obj,))[:keep]
    return X[order], obj[order]


def evolve(problem: Problem, candidates: int = 500_000, population: int = 256, seed: int = 0,
           batch: int = 2048) -> Design:
    """The authors' mutation-only evolutionary search over the problem's rows (see the module docstring).

    candidates: rows scored in all, the seed included; population: members kept; seed: of
    numpy.random.default_rng; batch: children bred from one population before it is re-ranked.
    Raises solver.Infeasible when no feasible start is found (the message states the budgets the space needs).
    """
    for name, v in (("candidates", candidates), ("population", population), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    t0 = time.perf_counter()
    s = _Space(problem)
    rng = np.random.default_rng(seed)
    x0 = _seed(problem, s)
    P = x0[None, :]
    Pobj = bud.evaluate(problem, P).objective
    evaluated = 1
    while evaluated < candidates:
        take = min(batch, candidates - evaluated)
        C = P[rng.integers(0, len(P), batch)]  # full-size draws: a partial last batch keeps the stream
        _mutate(s, C, rng)
        _mutate(s, C, rng)
        C = C[:take]
        evaluated += take
        sc = bud.evaluate(problem, C)
        ok = sc.feasible & bud.in_space(problem, C)
        if ok.any():
            P, Pobj = _rank(np.vstack([P, C[ok]]), np.concatenate([Pobj, sc.objective[ok]]), population)
    x = P[0]
    best = bud.evaluate(problem, x[None, :])
    assert bool(best.feasible[0]) and bool(bud.in_space(problem, x)[0])
    return Design(problem=problem, x=tuple(int(v) for v in x), spec=bud.to_spec(problem, x),
                  objective=float(best.objective[0]), bound=None, gap=None,
                  seconds=time.perf_counter() - t0, solver="evolution", evaluated=int(evaluated))
