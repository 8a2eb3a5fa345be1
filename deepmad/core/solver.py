"""Solving the DeepMAD program (Eq. 5) over a discrete design space: a fast, deterministic local search.

Method ("lns": iterated local search in a large neighbourhood of the integer rows of ``budget``):

1. Starts. A scan over network *profiles*: depth t at the last stage ramping down by a towards the first,
   channels growing by a factor g at every stride-2 stage, mid = ratio · channels, the largest kernel
   (up to 2,240 profiles). The objective grows with every channel, so the best member of a profile sits at its
   budget frontier: a bisection on a common channel scale (10 steps, all profiles at once) finds the widest
   member that still meets the budgets. The best ``n_starts`` (12) frontier rows are the starts.
2. Descent. From each start, best-improvement descent: every one-variable move (channels by 1..256 grid
   steps, depths by 1..24, both directions) and every joint move of two variables (channels by ±1..±32 steps in
   opposite directions, a channel with a depth or two depths by ±1, ±2 in any directions) until none improves;
   then every kernel change, alone or with one such step of another variable (rarely useful, so it is only
   tried at those local optima; an improvement resumes the first part). Pair moves matter: the budgets and ρ0
   bind at the optimum, so one variable can only grow if another shrinks.
3. Kicks. The landscape has many local optima: the starts' descents end several percent apart, and which start
   leads to the best one is not predictable from the scan. So the best row is perturbed ``kicks`` (40) times
   and descended again, a better optimum replacing it (iterated local search). Most kicks rescale the channels
   of a run of consecutive stages by one random factor (with a depth ±1 half the time); a kick that breaks a
   budget is first scaled back onto it as a whole. The perturbations come from
   ``numpy.random.default_rng(seed)``: same problem, same design, bit for bit; only ``time_limit`` makes
   the result depend on the clock.

Rows are ranked by ``merit``: the objective of feasible rows; below every feasible row, minus the relative
constraint violation, otherwise (so a start need not be feasible). The result is a local optimum of the whole
neighbourhood (``neighbours``); tests check that no neighbour of a preset's design is better.

Why it is fast. A neighbourhood has ~4,800 rows (bottleneck presets) or ~7,200 (MBConv presets) plus the
kernel changes, each differing from the current row in one or two variables, so each stage of a neighbour is
one of ~475 *variants* of that stage. The moves are fixed templates, and the stage variants they produce are
known in advance; their costs (MACs, params, layers, Σ log w of the first and of the other blocks) are
computed as small tables, kept while the stage's variables stay the same, and a neighbour's scores are table
look-ups summed in exactly the order of ``budget.evaluate``: the merits are bit for bit those of ``merit``
(tested), at ~30-50 ns a row instead of ~1 µs. Rows over the MACs or params budget are dropped before the
entropy is summed, and rows that do not improve before ρ is.

Why not a general-purpose MINLP solver: on this program SCIP found no finite dual bound in 120 s and an
incumbent far below a simple hill climb (../shared/docs/solver-notes.md). Why no evolutionary seed (the
previous version of this search also descended from the best row of ``evolution.evolve`` at 500,000
candidates, ~0.9 s by itself): more starts and the kicks reach higher objectives in a fraction of that time;
``seed_candidates`` still adds such a start on request.

What the benchmark shows (``benchmarks/solve.py``; its full output is in the project's reports): on the
nine presets, on this project's 2-core machine, median solve times of about 0.25-0.5 s, and objectives above
both the evolutionary baseline at 500,000 candidates and the previous (evolution-seeded) search on every
preset (the previous search's objectives are a floor in tests/core/test_solver.py).

The proof is not done here: ``solve`` returns ``bound``/``gap`` ``None``. ``deepmad.core.exact.solve`` (what
``deepmad design`` and ``deepmad.design`` call) runs a lighter search (``BOUNDED_STARTS`` starts,
``BOUNDED_KICKS`` kicks; beside the branch and bound's root, in a second process where there is one) and the
branch and bound of ``deepmad/core/bound.py``, whose primal heuristic (``Polisher``: this module's descent from
the rounded optimum of a relaxation) does most of what the kicks do here, guided by the bounds, and which runs
until the design is proven optimal: the search only supplies the first incumbent.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np

from . import latency as lat
from .budget import Problem, Space, bounds, columns, evaluate, in_space, over_budget, smallest, to_spec
from .evolution import evolve
from .result import Design, Infeasible, NotFound

PAIR_STEPS = (1, 2, 4, 8, 16, 32)  # grid steps of the two-variable channel moves
DEPTH_STEPS = (-2, -1, 1, 2)  # depth steps of the two-variable moves
SINGLE_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)  # one-variable channel moves
SINGLE_DEPTH_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24)  # one-variable depth moves
N_STARTS = 12  # frontier-scan starts, each descended
KICKS = 40  # perturbations of the best row, each descended
# The search beside the branch and bound's root (deepmad.core.exact.solve): one start, no kicks. Measured on the
# nine presets in two processes (2026-12-02): as many boxes in all as with 3 starts and 2 kicks (3,520 vs 3,494;
# deepmad-mb 822 vs 866), and done before the root's relaxation (~0.1 s) is, so that the proof does not wait for
# it (but ~0.04 s on deepmad-50m; with 2 starts it waits 0.02-0.07 s on every preset).
BOUNDED_STARTS, BOUNDED_KICKS = 1, 0
KICK_ODDS = (0.1, 0.2, 0.7)  # odds of the three kinds of kick (see kick)
KICK_SIGMA = 0.15  # spread of the log channel factor of a rescaling kick
KICK_DEPTH = 0.5  # odds that a rescaling kick also moves a depth by one
FEASIBLE = -1e11  # a merit above this is a feasible row's objective


def _violation(problem: Problem, macs, params, rho, latency=None):
    b = problem.budget
    v = (np.maximum(macs / b.flops - 1, 0) + np.maximum(params / b.params - 1, 0)
         + np.maximum(rho / b.rho0 - 1, 0))
    if b.latency is not None and latency is not None:
        v = v + np.maximum(latency / b.latency - 1, 0)
    return v


def merit(problem: Problem, X: np.ndarray) -> np.ndarray:
    """Objective of feasible rows; below every feasible row, minus the relative violation, otherwise;
    −inf outside the space."""
    return _merit(problem, X)[0]


def _merit(problem: Problem, X: np.ndarray):
    """``merit`` and the rows' scores (``budget.evaluate``)."""
    X = np.atleast_2d(X)
    s = evaluate(problem, X)
    m = np.where(s.feasible, s.objective, -1e12 * (1 + _violation(problem, s.macs, s.params, s.rho, s.latency)))
    return np.where(in_space(problem, X), m, -np.inf), s


# ------------------------------------------------------------------------------------------ stage costs


def _stage_costs(sp: Space, i: int, Z: np.ndarray):
    """Stage i on rows Z = [c_{i-1}, c_i, m_i, k_i, L_i] (float): MACs, params, layers, A, B, with A = Σ log w
    of the stage's first block and B = (L − 1) · Σ log w of one other block, as ``budget.evaluate`` forms them
    (``blocks.block_cost``'s expressions, same order of operations, so the same floats). The stem is folded
    into stage 0, the head and classifier into the last stage: MACs, params and layers are integers, exact in
    float64, so adding them elsewhere changes nothing."""
    cin, c, m, k, d = Z.T
    r0, rs = sp.resolutions()
    rin2, r2 = ([r0] + rs)[i] ** 2, rs[i] ** 2
    k2 = k * k
    d1 = d - 1
    if sp.block == "bottleneck":
        proj = 1.0 if sp.strides[i] != 1 else (cin != c)
        mk = m * k2
        inner = r2 * (m * mk + c * m)
        pin = m * mk + c * m + 4 * m + 2 * c
        macs = rin2 * m * cin + inner + proj * (r2 * c * cin) + d1 * (r2 * m * c + inner)
        params = m * cin + pin + proj * (c * cin + 2 * c) + d1 * (m * c + pin)
        lmk, lm = np.log(mk), np.log(m)
        A = np.log(cin) + lmk + lm
        B = d1 * (np.log(c) + lmk + lm)
        layers = 3 * d
    elif sp.block == "mbconv":
        ex, exr = m != cin, m != c  # expand conv present (first block, other blocks)
        if sp.se > 0:
            sq = np.maximum(1, np.floor(cin * sp.se + 1e-9))
            sqr = np.maximum(1, np.floor(c * sp.se + 1e-9))
            se_p, se_pr = 2 * m * sq + sq + m, 2 * m * sqr + sqr + m
        else:
            sq = sqr = se_p = se_pr = 0.0
        body = r2 * (m * k2 + c * m)
        pin = m * k2 + 2 * m + c * m + 2 * c
        macs = ex * (rin2 * m * cin) + body + 2 * m * sq + d1 * (exr * (r2 * m * c) + body + 2 * m * sqr)
        params = ex * (m * cin + 2 * m) + pin + se_p + d1 * (exr * (m * c + 2 * m) + pin + se_pr)
        lk, lm = np.log(k2), np.log(m)
        A = ex * np.log(cin) + lk + lm
        B = d1 * (exr * np.log(c) + lk + lm)
        layers = 2 + ex + d1 * (2 + exr)
    else:  # basic
        proj = 1.0 if sp.strides[i] != 1 else (cin != c)
        ck = c * k2
        macs = r2 * ck * (cin + c) + proj * (r2 * c * cin) + d1 * (r2 * ck * (2 * c))
        params = ck * (cin + c) + 4 * c + proj * (c * cin + 2 * c) + d1 * (ck * (2 * c) + 4 * c)
        lck = np.log(ck)
        A = np.log(cin * k2) + lck
        B = d1 * (np.log(c * k2) + lck)
        layers = 2 * d
    if i == 0:
        macs = macs + cin * 3 * sp.stem_kernel**2 * r0**2
        params = params + cin * 3 * sp.stem_kernel**2 + 2 * cin
    if i == sp.n - 1 and sp.head is not None:
        macs = macs + sp.head * c * r2
        params = params + sp.head * c + 2 * sp.head
    return macs, params, layers, A, B


# ------------------------------------------------------------------------------------------ neighbourhood


def _unique_rows(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of an integer matrix and, for every row, the index of its distinct row."""
    if not len(A):
        return A, np.zeros(0, dtype=np.int64)
    lo = A.min(axis=0)
    span = A.max(axis=0) - lo + 1
    key = np.zeros(len(A), dtype=np.int64)
    for j in range(A.shape[1]):
        key = key * span[j] + (A[:, j] - lo[j])
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return A[first], inv.ravel()


@dataclass(frozen=True)
class _Templates:
    """The moves of the neighbourhood, independent of the current row: deltas and kernel changes, and for every
    stage the distinct variants of that stage they produce."""

    delta: np.ndarray  # (N, D) added to the row, then clipped to the box
    kvar: np.ndarray  # (N,) kernel column set to another kernel, −1: none
    kalt: np.ndarray  # (N,) which other kernel (index into the kernels different from the current one)
    variants: tuple[np.ndarray, ...]  # per stage: distinct (Δc_in, Δc, Δm, ΔL, kernel alt or −1)
    stage_idx: tuple[np.ndarray, ...]  # per stage: (N,) variant of each move
    depth_desc: np.ndarray  # distinct depth deltas
    depth_idx: np.ndarray  # (N,) depth variant of each move


def _stage_columns(n: int, i: int) -> list[int]:
    return [i, i + 1, n + 1 + i, 2 * n + 1 + i, 3 * n + 1 + i]  # c_{i-1}, c_i, m_i, k_i, L_i


@functools.lru_cache(maxsize=32)
def _templates(sp: Space, kernels: bool) -> _Templates:
    """The channel and depth moves (kernels False) or the kernel changes (kernels True) of the neighbourhood."""
    n, st = sp.n, sp.step
    col = columns(n)
    D = 4 * n + 1
    chan = list(range(col["c"].stop)) + (list(range(col["m"].start, col["m"].stop)) if sp.has_mid else [])
    kern = list(range(col["k"].start, col["k"].stop))
    depth = list(range(col["L"].start, col["L"].stop))
    unit = np.zeros(D, dtype=np.int64)
    unit[chan], unit[depth] = st, 1
    steps = np.array([s * d for d in PAIR_STEPS for s in (-1, 1)])
    dsteps = np.array(DEPTH_STEPS)
    movable = chan + depth
    rows, kv, ka = [], [], []

    def add(M: np.ndarray, v: int = -1, j: int = -1) -> None:
        rows.append(M)
        kv.extend([v] * len(M))
        ka.extend([j] * len(M))

    def one(a: int, values: np.ndarray) -> np.ndarray:
        M = np.zeros((len(values), D), dtype=np.int64)
        M[:, a] = values * unit[a]
        return M

    for a in movable if not kernels else []:  # one variable
        s = np.array(SINGLE_DEPTH_STEPS if a in depth else SINGLE_STEPS)
        add(one(a, np.concatenate([-s[::-1], s])))
    for j, a in enumerate(movable if not kernels else []):  # two variables
        da = dsteps if a in depth else steps
        for b in movable[j + 1:]:
            db = dsteps if b in depth else steps
            A, B = (v.ravel() for v in np.meshgrid(da, db))
            if a in chan and b in chan:  # both up or both down never helps at the budget frontier
                keep = A * B < 0
                A, B = A[keep], B[keep]
            M = np.zeros((len(A), D), dtype=np.int64)
            M[:, a], M[:, b] = A * unit[a], B * unit[b]
            add(M)
    for v in kern if kernels else []:  # a kernel change, alone or with one step of another variable
        for j in range(len(sp.kernels) - 1):
            add(np.concatenate([np.zeros((1, D), dtype=np.int64)]
                               + [one(a, dsteps if a in depth else steps) for a in movable]), v, j)
    if not rows:  # a single kernel choice: no kernel moves
        add(np.zeros((0, D), dtype=np.int64))
    delta = np.concatenate(rows)
    kvar, kalt = np.array(kv, dtype=np.int64), np.array(ka, dtype=np.int64)
    variants, idxs = [], []
    for i in range(n):
        cols = _stage_columns(n, i)
        code = np.where(kvar == cols[3], kalt, -1)
        d, idx = _unique_rows(np.column_stack([delta[:, [cols[0], cols[1], cols[2], cols[4]]], code]))
        variants.append(d)
        idxs.append(idx)
    ddesc, didx = _unique_rows(delta[:, col["L"]])
    for a in [delta, kvar, kalt, ddesc, didx, *variants, *idxs]:
        a.setflags(write=False)
    return _Templates(delta, kvar, kalt, tuple(variants), tuple(idxs), ddesc, didx)


class _Neighbourhood:
    """Merits of every neighbour of a row, computed from tables of stage variants (module docstring)."""

    CACHE = 256  # stage tables kept per stage (a kick's descent returns to stages seen before)

    def __init__(self, problem: Problem, kernels: bool = False) -> None:
        sp = problem.space
        self.problem, self.sp, self.bu, self.n = problem, sp, problem.budget, sp.n
        self.lo, self.hi = bounds(problem)
        self.t = _templates(sp, kernels)
        self.N = len(self.t.delta)
        self.kernels = np.array(sp.kernels)
        self.cols = [np.array(_stage_columns(self.n, i)) for i in range(self.n)]
        self.Lcols = columns(self.n)["L"]
        r0, rs = sp.resolutions()
        self.sides = [r0] + rs
        self.stem_logw = math.log(3 * sp.stem_kernel**2)
        self.scales = list(zip(problem.alpha, sp.scale_ends()))
        self.classes = sp.num_classes if problem.budget.classifier else 0
        self.timed = problem.budget.latency is not None  # a latency budget: a latency column in the tables
        self.fam = lat.family_for(problem.budget.latency_model, sp, problem.budget.classifier) if self.timed else None
        self.head_ent = (np.log(self.sides[-1] ** 2 * np.full(1, float(sp.head)))[0]
                         if sp.head is not None else None)
        self._cache: list[dict] = [{} for _ in range(self.n)]
        self._penalties: dict[tuple, np.ndarray] = {}  # by the row's depths (_penalty)

    def _alt(self, k: int) -> np.ndarray:
        alt = self.kernels[self.kernels != k]
        return alt if len(alt) else np.array([k])

    def _table(self, x: np.ndarray, i: int) -> dict:
        """Costs of every variant of stage i around x (kept while stage i's variables are the same)."""
        cols = self.cols[i]
        key = tuple(x[cols].tolist())
        cache = self._cache[i]
        if key in cache:
            return cache[key]
        d = self.t.variants[i]
        Z = np.empty((len(d), 5))
        at = cols[[0, 1, 2, 4]]  # c_{i-1}, c_i, m_i, L_i: moved by d's first four columns and clipped to the box
        Z[:, [0, 1, 2, 4]] = np.clip(np.array(key)[[0, 1, 2, 4]] + d[:, :4], self.lo[at], self.hi[at])
        Z[:, 3] = np.where(d[:, 4] < 0, key[3], self._alt(key[3])[np.maximum(d[:, 4], 0)])
        macs, params, layers, A, B = _stage_costs(self.sp, i, Z)
        cin, c, m = Z[:, 0], Z[:, 1], Z[:, 2]
        if i == self.n - 1 and self.classes:
            cout = np.full_like(c, self.sp.head) if self.sp.head is not None else c
            macs = macs + cout * self.classes
            params = params + (cout + 1) * self.classes
        ok = c >= cin if self.sp.ordered else np.ones(len(c), bool)
        if self.sp.has_mid:
            ok &= (m >= self.sp.ratio[0] * c - 1e-9) & (m <= self.sp.ratio[1] * c + 1e-9)
            if self.sp.block == "mbconv" and not self.sp.ordered:
                ok &= m != cin  # budget.in_space: the first block keeps its expand conv
        tab = dict(macs=np.where(ok, macs, np.inf),  # a row outside the space never fits: merit −inf
                   params=params, layers=layers, A=A, B=B,
                   logc=np.log(c), ent=np.log(self.sides[i + 1] ** 2 * c))
        if self.timed:  # predicted ms, as budget.evaluate forms it (the same stage sums, the same floats)
            tab["lat"] = lat.stage_rows(self.fam, self.sp, i, self.bu.classifier, cin, c, m, Z[:, 3], Z[:, 4])
        if i == 0:
            tab["ent_stem"] = np.log(self.sides[0] ** 2 * cin)
        if len(cache) >= self.CACHE:
            cache.pop(next(iter(cache)))
        cache[key] = tab
        return tab

    def _penalty(self, x: np.ndarray) -> np.ndarray:
        """exp(Var(depths)) of every depth variant around x (Eq. 5's penalty over β), kept while x's depths are."""
        key = tuple(x[self.Lcols].tolist())
        pen = self._penalties.get(key)
        if pen is None:
            t = self.t
            L = np.zeros((len(t.depth_desc), len(x)))  # the depth variants, laid out as evaluate's rows
            L[:, self.Lcols] = np.clip(x[self.Lcols] + t.depth_desc, self.lo[self.Lcols], self.hi[self.Lcols])
            if len(self._penalties) >= self.CACHE:
                self._penalties.pop(next(iter(self._penalties)))
            pen = self._penalties[key] = np.exp(L[:, self.Lcols].var(axis=1))
        return pen

    def merits(self, x: np.ndarray, above: float | None = None) -> np.ndarray:
        """merit() of every neighbour of x, bit for bit. With ``above`` (a feasible merit), only the feasible
        neighbours with an objective above it get their merit, every other one −inf: the MACs and params
        budgets are checked first, then the objective, then ρ, each on the rows left."""
        x = np.asarray(x, dtype=np.int64)
        sp, bu, n, t = self.sp, self.bu, self.n, self.t
        tabs = [self._table(x, i) for i in range(n)]
        g = t.stage_idx
        macs, params = tabs[0]["macs"][g[0]], tabs[0]["params"][g[0]]
        for i in range(1, n):
            macs = macs + tabs[i]["macs"][g[i]]
            params = params + tabs[i]["params"][g[i]]
        fits = (macs <= bu.flops) & (params <= bu.params)
        latency = None
        if self.timed:
            latency = tabs[0]["lat"][g[0]]
            for i in range(1, n):
                latency = latency + tabs[i]["lat"][g[i]]
            fits &= latency <= bu.latency
        if above is not None:
            rows = np.flatnonzero(fits)
            g = [gi[rows] for gi in g]
        else:
            rows = np.arange(self.N)
        K = len(rows)
        logw = np.full(K, self.stem_logw)
        pre = [logw]  # Σ log w at the end of the stem and of every stage
        for i in range(n):
            logw = logw + tabs[i]["A"][g[i]] + tabs[i]["B"][g[i]]
            pre.append(logw)
        if sp.head is not None:
            pre[-1] = logw + tabs[-1]["logc"][g[-1]]
        entropy = np.zeros(K)
        for a, u in self.scales:
            if u == -1:
                lg = tabs[0]["ent_stem"][g[0]]
            elif u == n - 1 and sp.head is not None:
                lg = self.head_ent
            else:
                lg = tabs[u]["ent"][g[u]]
            entropy = entropy + a * lg * pre[u + 1]
        objective = entropy - bu.beta * self._penalty(x)[t.depth_idx[rows]]
        if above is not None:
            keep = np.flatnonzero(objective > above)
            rows, objective, g, pre = rows[keep], objective[keep], [gi[keep] for gi in g], [s[keep] for s in pre]
        layers = np.ones(len(rows))
        cum = [layers]
        for i in range(n):
            layers = layers + tabs[i]["layers"][g[i]]
            cum.append(layers)
        if sp.head is not None:
            cum[-1] = layers + 1
        rho = np.zeros(len(rows))
        for a, u in self.scales:
            nl, s = cum[u + 1], pre[u + 1]
            rho = np.maximum(rho, nl * np.exp(-s / nl))
        if above is not None:
            out = np.full(self.N, -np.inf)
            out[rows] = np.where(rho <= bu.rho0, objective, -np.inf)
            return out
        feasible = fits & (rho <= bu.rho0)
        return np.where(feasible, objective, -1e12 * (1 + _violation(self.problem, macs, params, rho, latency)))

    def row(self, x: np.ndarray, r: int) -> np.ndarray:
        """Neighbour r of x."""
        y = np.clip(x + self.t.delta[r], self.lo, self.hi)
        v = self.t.kvar[r]
        if v >= 0:
            y[v] = self._alt(x[v])[self.t.kalt[r]]
        return y

    def rows(self, x: np.ndarray) -> np.ndarray:
        """Every neighbour of x (row r is ``row(x, r)``)."""
        x = np.asarray(x, dtype=np.int64)
        Y = np.clip(x + self.t.delta, self.lo, self.hi)
        for v in np.unique(self.t.kvar[self.t.kvar >= 0]):
            sel = self.t.kvar == v
            Y[sel, v] = self._alt(x[v])[self.t.kalt[sel]]
        return Y


def neighbours(problem: Problem, x) -> np.ndarray:
    """Every row of the search's neighbourhood of x: one- and two-variable moves, then kernel changes."""
    x = np.asarray(x, dtype=np.int64)
    return np.concatenate([_Neighbourhood(problem, k).rows(x) for k in (False, True)])


# ------------------------------------------------------------------------------------------ search


class _Search:
    def __init__(self, problem: Problem, deadline: float) -> None:
        self.problem = problem
        self.hoods = (_Neighbourhood(problem), _Neighbourhood(problem, kernels=True))
        self.deadline = deadline
        self.scored = 0
        self.ends: dict[tuple[int, ...], tuple[np.ndarray, float]] = {}  # row on a finished descent -> its end

    def merit(self, X: np.ndarray) -> np.ndarray:
        return self.scores(X)[0]

    def scores(self, X: np.ndarray):
        """``merit`` of the rows and their scores (``budget.evaluate``), counted as scored."""
        self.scored += len(X)
        return _merit(self.problem, X)

    def descend(self, x: np.ndarray, f: float | None = None) -> tuple[np.ndarray, float]:
        """Best-improvement descent from x: (local optimum, its merit). The channel and depth moves are
        searched until none improves, then the kernel changes (rarely useful, ~1/6 of the rows): the result is a
        local optimum of both. The descent from a row depends on the row alone, so a descent that reaches a row of
        an earlier finished one ends where that one ended (``ends``), without scoring its steps again."""
        x = np.asarray(x, dtype=np.int64)
        if f is None:
            f = float(self.merit(x[None])[0])
        part, path = 0, []
        while time.perf_counter() < self.deadline:
            if part == 0:
                key = tuple(x.tolist())
                if key in self.ends:
                    x, f = self.ends[key]
                    break
                path.append(key)
            hood = self.hoods[part]
            if hood.N:
                m = hood.merits(x, above=f + 1e-9 if f > FEASIBLE else None)
                self.scored += hood.N
                j = int(np.argmax(m))
                if m[j] > f + 1e-9:
                    x, f, part = hood.row(x, j), float(m[j]), 0
                    continue
            if part == 1:
                break
            part = 1
        else:
            return x, f  # cut short by the deadline: not a local optimum, nothing to remember
        for key in path:
            self.ends[key] = (x, f)
        return x, f


def _repair(problem: Problem, X: np.ndarray) -> np.ndarray:
    """Rows clipped into the box, channels made non-decreasing (guideline 3) and mids put into their ratio range
    (without guideline 3, an mbconv mid equal to the previous unit's channels moved one step, see in_space)."""
    sp = problem.space
    n, st = sp.n, sp.step
    lo, hi = bounds(problem)
    X = np.clip(np.atleast_2d(X), lo, hi)
    if sp.ordered:
        X[:, : n + 1] = np.maximum.accumulate(X[:, : n + 1], axis=1)
    if sp.has_mid:
        c = X[:, 1: n + 1]
        mlo = np.maximum(st, np.ceil(sp.ratio[0] * c / st - 1e-9) * st)
        mhi = np.minimum(np.floor(sp.ratio[1] * c / st + 1e-9) * st, hi[n + 1: 2 * n + 1])
        X[:, n + 1: 2 * n + 1] = np.clip(X[:, n + 1: 2 * n + 1], mlo, np.maximum(mlo, mhi))
        if sp.block == "mbconv" and not sp.ordered:
            M = X[:, n + 1: 2 * n + 1]
            same = M == X[:, :n]
            M[same] = np.where((M + st <= np.maximum(mlo, mhi))[same], M[same] + st, M[same] - st)
    return X


def _profiles(problem: Problem, scale: np.ndarray, G, R, T, A) -> np.ndarray:
    """Rows of the scan: channels scale·g^(stride-2 stages so far)/g^(all), stem half the first stage, mid =
    ratio·channels, depth T at the last stage ramping down by A towards the first, the largest kernel."""
    sp = problem.space
    n, st = sp.n, sp.step
    col = columns(n)
    lo, hi = bounds(problem)
    down = np.array([1.0 if s == 2 else 0.0 for s in sp.strides])
    logg = np.cumsum(down[None, :] * np.log(G)[:, None], axis=1)
    c = np.clip(np.round(scale[:, None] * np.exp(logg - logg[:, -1:]) / st) * st, st, sp.max_channels)
    X = np.zeros((len(G), 4 * n + 1), dtype=np.int64)
    X[:, col["c"]] = c
    X[:, 0] = np.clip(np.round(c[:, 0] / 2 / st) * st, lo[0], hi[0])
    if sp.has_mid:
        X[:, col["m"]] = np.round(R[:, None] * c / st) * st
    X[:, col["L"]] = np.round(T[:, None] - A[:, None] * (n - 1 - np.arange(n))[None, :] / max(n - 1, 1))
    X[:, col["k"]] = max(sp.kernels)
    return _repair(problem, X)


def starts(problem: Problem, count: int = N_STARTS, search: _Search | None = None) -> list[tuple[np.ndarray, float]]:
    """The best `count` distinct rows of the frontier scan, with their merits (see the module docstring)."""
    sp = problem.space
    ratios = np.geomspace(max(sp.ratio[0], 1 / 32), sp.ratio[1], 4) if sp.has_mid else np.array([1.0])
    depths = np.arange(1, min(sp.max_depth, 16) + 1)
    G, R, T, A = (a.ravel() for a in np.meshgrid([1.25, 1.5, 2.0, 2.5, 3.0], ratios, depths,
                                                  [0, 1, 2, 3, 4, 6, 8], indexing="ij"))
    score = search.merit if search is not None else (lambda X: merit(problem, X))
    lo = np.full(len(G), math.log(sp.step))  # feasible side (or the smallest scale)
    hi = np.full(len(G), math.log(4.0 * sp.max_channels))
    for _ in range(10):  # bisection: the largest common scale that meets the budgets
        mid = (lo + hi) / 2
        ok = score(_profiles(problem, np.exp(mid), G, R, T, A)) > FEASIBLE
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    X = _profiles(problem, np.exp(lo), G, R, T, A)
    m = score(X)
    out, seen = [], set()
    for j in np.argsort(-m, kind="stable"):
        if len(out) == count or not np.isfinite(m[j]):
            break
        if tuple(X[j]) not in seen:
            seen.add(tuple(X[j]))
            out.append((X[j], float(m[j])))
    return out or [(smallest(problem), float(score(smallest(problem)[None])[0]))]


def kick(problem: Problem, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random perturbation of x, one of three kinds (odds KICK_ODDS): 2-4 channel or depth variables nudged
    (±6 grid steps, ±2 blocks); one or two stage depths ±1 and one or two channels nudged; the channels (and
    mids) of a run of consecutive units scaled by one factor exp(N(0, KICK_SIGMA²)), with a depth ±1 (odds
    KICK_DEPTH). Over the presets the rescaling kind led to a better optimum about three times as often per
    kick as the nudges, hence its odds."""
    sp = problem.space
    n, st = sp.n, sp.step
    chans = list(range(2 * n + 1)) if sp.has_mid else list(range(n + 1))
    depths = list(range(3 * n + 1, 4 * n + 1))
    y = x.copy()
    kind = rng.choice(3, p=KICK_ODDS)
    if kind == 0:
        pool = chans + depths
        for _ in range(rng.integers(2, 5)):
            v = pool[rng.integers(0, len(pool))]
            y[v] += st * rng.integers(-6, 7) if v < 2 * n + 1 else rng.integers(-2, 3)
    elif kind == 1:
        for _ in range(rng.integers(1, 3)):
            y[depths[rng.integers(0, n)]] += rng.choice([-1, 1])
        for _ in range(rng.integers(1, 3)):
            y[chans[rng.integers(0, len(chans))]] += st * rng.integers(-6, 7)
    else:
        a = rng.integers(0, n + 1)
        b = rng.integers(a, n + 1)
        f = math.exp(rng.normal(0, KICK_SIGMA))
        idx = list(range(a, b + 1)) + ([n + i for i in range(max(a, 1), b + 1)] if sp.has_mid else [])
        y[idx] = np.round(y[idx] * f / st) * st
        if rng.random() < KICK_DEPTH:
            y[depths[rng.integers(0, n)]] += rng.choice([-1, 1])
    return _repair(problem, y)[0]


FIT_FACTORS = np.geomspace(0.5, 1.0, 24)  # channel factors tried on a kick that breaks a budget


def _feasible(problem: Problem, search: _Search, y: np.ndarray, f: float | None = None,
              rho: float | None = None) -> tuple[np.ndarray, float]:
    """y (of merit f, when known), or if it breaks a budget the widest feasible copy of y with every channel scaled
    by one factor. With y's rho known and above rho0 there is none where scaling keeps every layer, as it does for
    basic and bottleneck blocks, and for mbconv ones with guideline 3 and mids above their channels (ratio above 1:
    no expand conv comes or goes): narrower widths then only raise rho (Eq. 3)."""
    f = float(search.merit(y[None])[0]) if f is None else f
    if f > FEASIBLE:
        return y, f
    sp = problem.space
    if rho is not None and rho > problem.budget.rho0 and (sp.block != "mbconv" or (sp.ordered and sp.ratio[0] > 1)):
        return y, f
    chans = list(range(2 * sp.n + 1)) if sp.has_mid else list(range(sp.n + 1))
    Y = np.repeat(y[None], len(FIT_FACTORS), 0)
    Y[:, chans] = np.round(Y[:, chans] * FIT_FACTORS[:, None] / sp.step) * sp.step
    Y = _repair(problem, Y)
    m = search.merit(Y)
    ok = np.flatnonzero(m > FEASIBLE)
    if not len(ok):
        return y, f
    j = ok[-1]
    return Y[j], float(m[j])


class Polisher:
    """The branch and bound's primal heuristic (deepmad/core/bound.py). ``pick``: of rows rounded from a
    relaxation's optimum, the best once put into the space, its merit and its rho; calling it with a row (and, from
    ``pick``, its merit and rho): the local optimum the descent reaches from it (scaled onto the budgets first) and
    its objective, or None when that is not feasible."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.search = _Search(problem, math.inf)

    def pick(self, X) -> tuple[tuple[int, ...], float, float]:
        Y = _repair(self.problem, np.asarray(X, dtype=np.int64))
        # rows rounded apart often meet once repaired (~3 in 4 do): each distinct row is scored once (merit is row
        # by row, so every row gets the merit it would get alone; the first best row wins, as it would)
        rows = np.ascontiguousarray(Y).view(np.dtype((np.void, Y.dtype.itemsize * Y.shape[1]))).ravel()
        _, first, inv = np.unique(rows, return_index=True, return_inverse=True)
        m, s = self.search.scores(Y[first])
        inv = inv.ravel()
        j = int(np.argmax(m[inv]))
        return tuple(int(v) for v in Y[j]), float(m[inv[j]]), float(s.rho[inv[j]])

    def __call__(self, row, f: float | None = None,
                 rho: float | None = None) -> tuple[tuple[int, ...], float] | None:
        y = np.asarray(row, dtype=np.int64)
        if f is None:  # not one of pick's rows (in the space already, its merit known)
            y = _repair(self.problem, y[None])[0]
        x, f = self.search.descend(*_feasible(self.problem, self.search, y, f, rho))
        return (tuple(int(v) for v in x), f) if f > FEASIBLE else None


def solve(problem: Problem, *, time_limit: float | None = None, n_starts: int = N_STARTS, kicks: int = KICKS,
          seed: int = 0, seed_candidates: int = 0) -> Design:
    """Best design found by the search (see the module docstring). Deterministic: same problem and arguments,
    same design, unless time_limit (seconds) cuts the search short. seed: of the kicks' random generator;
    seed_candidates > 0 adds the best row of ``evolution.evolve(problem, seed_candidates, seed=0)`` as a start."""
    t0 = time.perf_counter()
    why = over_budget(problem)
    if why:
        raise Infeasible(why)
    search = _Search(problem, t0 + (time_limit if time_limit else math.inf))
    first = starts(problem, n_starts, search)
    if seed_candidates:
        try:
            e = evolve(problem, candidates=seed_candidates, seed=0)
            first.append((np.array(e.x), e.objective))
            search.scored += e.evaluated
        except (Infeasible, NotFound):
            pass
    best, best_f = first[0]
    for x0, f0 in first:
        x, f = search.descend(x0, f0)
        if f > best_f:
            best, best_f = x, f
    rng = np.random.default_rng(seed) if kicks else None  # (no kicks: numpy.random is not even imported)
    for _ in range(kicks if best_f > FEASIBLE else 0):
        if time.perf_counter() >= search.deadline:
            break
        x, f = search.descend(*_feasible(problem, search, kick(problem, best, rng)))
        if f > best_f + 1e-9:
            best, best_f = x, f
    final = evaluate(problem, best[None])
    if not (final.feasible[0] and in_space(problem, best[None])[0]):
        if time.perf_counter() >= search.deadline:
            raise NotFound(f"the search found no design within the budgets in the time limit of {time_limit:g} s; "
                           f"allow more time")
        raise NotFound("the search found no design within the budgets (that none exists is not proven: "
                       "run the branch and bound, bound_nodes > 0)")
    # The search's design; deepmad.core.exact.solve adds the proven bound and gap (deepmad/core/bound.py).
    objective = float(final.objective[0])
    bound, gap = None, None
    return Design(problem, tuple(int(v) for v in best), to_spec(problem, best), objective, bound, gap,
                  time.perf_counter() - t0, "lns", search.scored)
