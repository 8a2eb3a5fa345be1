"""A proven upper bound on the DeepMAD program (Eq. 5): spatial branch and bound over convex relaxations.

Why this method. The program is mixed-integer and non-convex (products of depths and logs, the exp of a
variance); a general MINLP solver on the raw formulation finds no finite dual bound in minutes
(solver-notes.md). Its structure gives a tight convex relaxation instead. Take as variables the logs of the
channel counts x = log c (and of the mid channels), of the kernels κ = log k, the extra depths L' = L − 1 of
every stage, and the *perspective* variables X = L'·x of each channel and kernel variable of a stage (the
log widths of its L' repeated blocks, summed). Then
  - every Σ log w (the S_j of Eq. 4) is linear in (x, κ, X): the repeated blocks contribute q(X) exactly;
  - MACs and params are sums of monomials: exp(affine(x, κ)) for the blocks met once (stem, each stage's first
    block, head, classifier) and L'·exp(affine(X)/L') for the repeated ones, the perspective of exp: both are
    convex, and both are exact (but for the projection shortcut of a stride-1 stage, there only when
    c_{i-1} < c_i, or without guideline 3 c_{i-1} != c_i: it counts in a box that guarantees that, and boxes
    are split so that one does);
  - the only relaxed link is X = L'·x, replaced on a box by McCormick's envelope (exact when L' or x is fixed);
  - the ρ0 constraint of every scale prefix, S_j ≥ ℓ_j·log(ℓ_j/ρ0) with ℓ_j linear in L', is convex;
  - the penalty: t ≤ −β·exp(V), V ≥ Var(L') = Σ_k (U_k·L')²/n (U: an orthonormal basis of zero-mean depth
    vectors, so each square is a one-dimensional convex function), convex;
  - each product log(r_j²c_j)·S_j is bounded above on a box by McCormick's two planes (linear);
  - the ordering (guideline 3, where ``space.ordered``) and ratio constraints are linear, on x and (times L')
    on X. Without guideline 3 an mbconv stage's mid differs from the previous channels (``budget.in_space``),
    so every block keeps its expand conv, as the relaxation has it.
Every design inside a box of (depths, kernels, channels) is a point of that box's convex program, so its
optimum bounds the box. The program is solved as a linear program over tangent cuts (Kelley's method), which
only enlarge the feasible set, so every LP optimum is itself a valid bound. The cost cuts are tangents where
the segment from the box's cheapest design to the LP point leaves the budget (the supporting-hyperplane
method), one per stage of each budget (every stage's cost has its own epigraph variable), so the polyhedral
model is good after a few rounds: up to 8 x 10 rounds at the root, 2 at every other box, whose children
inherit the cuts active at its LP point and start the dual simplex from its final basis (the box rows keep one
structure, and only rows with basic slacks are dropped, so the basis stays a basis: ~12 pivots a child instead
of ~30 from scratch).

Two ways of narrowing a box use the incumbent (no design that beats it is lost): reduced-cost fixing at every
box (a column at a bound with reduced cost d cannot leave it by more than (LP value − incumbent)/|d|), and at
the root, optimization-based bound tightening (the least and largest value of every depth and log channel count
over the relaxation with the objective held at the incumbent's; ``ROOT_NARROWING`` rounds, each on the tighter
box): on deepmad-mb it shrinks every depth range from 1..30 to at most 1..8.

Best-first branch and bound. A box is split where its relaxation is loosest at the LP point: the McCormick
gap of an X = L'·x, the slack of a log(r_j²c_j)·S_j envelope, a kernel strictly between two choices, then
integrality (a fractional depth or channel count), a stride-1 stage whose LP point wants a projection
(c_{i-1} <= s < c_i, both <= s, both > s; without guideline 3 also c_{i-1} > s >= c_i), each scored by what
it is worth in the objective (an integer variable by the weighted score of its two roundings, ``_score``);
children are narrowed by the ordering and ratio constraints, and boxes whose bound does not exceed the incumbent
are dropped. A box that holds a single design is scored exactly. Primal heuristic: every POLISH_EVERY boxes, the
LP point of the best open box is rounded to the grid every way (down and up in each of its ROUNDINGS most
fractional channel variables), and the best of those rows is handed to ``polish`` (``solver.Polisher``: the
search's descent); a better design becomes the incumbent (``Bound.row``), which prunes and narrows more. It stops when
the largest open bound is at most the incumbent (status ``optimal``), within ``gap_tol`` of it (``gap_limit``),
or at its node or time limit; every max(largest open bound, incumbent) along the way is valid, and it returns
the smallest. With no incumbent and no open box left, nothing is feasible (``infeasible``: a proof). With a node
limit only, it is deterministic.

Two processes. Where the platform forks (Linux) and two CPUs are free to the process (``default_workers``;
DEEPMAD_WORKERS=1 keeps one), the search that finds the first incumbent runs in a forked process while the root's
relaxation is solved (``Alongside``; ``prove`` takes a function for the incumbent and calls it only then: the root does
not depend on it), a forked helper solves every other column's LPs of the root's bound tightening, and once SPLIT_AT
boxes are solved a second process takes every other open box (the 2nd best, the 4th, ...). Each then runs its own
best-first search for the same work, SYNC_WORK LP solves (a polish counting as POLISH_WORK, about its time:
docs/solver.md), and the two exchange incumbents, open bounds and counts: both take the better incumbent (a tie: the
first process's), both stop when the largest open bound of either is at most it (or at a limit), and the one holding
fewer of the SYNC_EVERY best open boxes of both receives every other one of the other's (a box travels with its cuts and
its basis, as statuses). What a process does depends only on what it holds at each exchange, never on timing: a problem
gives the same tree, bit for bit, on every run (not the one-process tree: the two search in a different order, and solve
between them from 6% fewer boxes to 39% more on the presets). If the second process fails, ``prove`` runs the search
again in one process.

Scope: designs whose depth variance exceeds ``var_cap`` are left out (it keeps the LPs well scaled):
max(16, log(1e8/β)), or the largest possible variance if smaller (or when β = 0). Their penalty alone,
β·e^var_cap ≥ 1e8, puts them below any design with a positive objective wherever the entropy is under 1e8
(it is under 1e6 for every network of the presets' spaces). An LP that HiGHS cannot finish gives its box the
bound of the box's parent, which contains it. Tests check the bound against brute-force enumeration.

Measured: ``python benchmarks/solve.py`` prints, per preset, the nodes, LP solves and time to the proven optimum, and
the whole process's time against the evolutionary baseline's. Where the time goes, why the constants have their
values, and the alternatives tried and not kept: docs/solver.md.
"""
from __future__ import annotations

import contextlib
import functools
import heapq
import math
import os
import pickle
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import latency as lat
from .budget import Problem, bounds, evaluate, in_space

INF = float("inf")
_GRID = np.linspace(0.0, 1.0, 17)  # points on the way to an LP point where the budgets are checked
_MC_SIGN = np.array([-1.0, -1.0, 1.0, 1.0])[:, None]  # McCormick's four planes of X = L'·x: two below, two above
_SQUARE_AT = np.linspace(0.0, 1.0, 4)  # where on y_k's range over a box the tangents of s_k >= y_k² touch it
VAR_CAP, PENALTY_CAP = 16.0, 1e8  # designs whose depth penalty exceeds both are left out (see Scope)
PENALTY_TANGENTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)  # variances of the penalty's fixed tangents
ROOT_ROUNDS, ROOT_ITERS = 8, 10  # at the root (its cuts seed the whole tree): up to 8 x 10 rounds of cuts
NODE_ITERS = 2  # rounds of cuts at every other box
POLISH_EVERY = 16  # at most one primal heuristic per this many boxes
ROUNDINGS = 11  # channel variables of an LP point rounded both ways before the primal heuristic (_polish)
ROOT_NARROWING = 2  # rounds of bound tightening at the root (see BranchAndBound.narrow)
SPLIT_AT = 8  # boxes solved before a second process takes half of the open ones (BranchAndBound.run)
SYNC_WORK = 52  # work each of the two processes does between two exchanges: LP solves, a polish counting as
POLISH_WORK = 6  # this many (its time, measured); at most 2·SYNC_EVERY boxes (BranchAndBound._together)
SYNC_EVERY = 24  # the best open boxes of both that _balance shares out
SCORE_MU = 1 / 6  # weight of the larger rounding distance in an integer variable's branching score (_score)
IDENT = 10_000  # ``when`` of a term present only where c_{i-1} = c_i (IDENT + i: an mbconv stage's residual add)


@dataclass(frozen=True)
class Node:
    """A box of the design space."""

    L: tuple[tuple[int, int], ...]  # depth range of each stage
    k: tuple[tuple[int, int], ...]  # index range into the sorted kernel choices, per stage
    z: tuple[tuple[int, int], ...]  # range of each channel variable in grid steps: c0, c1..n, m1..n


@dataclass(frozen=True)
class Bound:
    bound: float  # proven upper bound on the optimum (−inf: nothing is feasible)
    incumbent: float  # best objective known at the end (the search's, or a better one met while branching)
    row: tuple[int, ...] | None  # the design of a better incumbent found while branching, else None
    nodes: int  # boxes whose relaxation was solved
    open: int  # boxes left open
    seconds: float
    status: str  # optimal | gap_limit | node_limit | time_limit | infeasible (nothing in the space is feasible)
    lp_solves: int = 0  # linear programs HiGHS solved (every round of cuts and every bound tightening counts)
    workers: int = 1  # processes that shared the tree search (2 once a second one took half of the boxes)


@dataclass(frozen=True, eq=False)
class Start:
    """How a box's LP starts its children: the cut rows of its final LP (CA, cb) and that LP's basis; a child
    leaves out the rows ``drop`` (basic slacks: inactive, and leaving them out keeps the basis a basis) and adds
    the last round's cuts (CN, cbn), which its parent computed but did not solve with."""

    basis: object  # highspy.HighsBasis
    CA: np.ndarray
    cb: np.ndarray
    drop: np.ndarray
    CN: np.ndarray
    cbn: np.ndarray

    def cuts(self) -> tuple[np.ndarray, np.ndarray]:
        """The cuts a child holds: the active ones and the last round's, (rows, rhs)."""
        return self._held

    @functools.cached_property
    def _held(self) -> tuple[np.ndarray, np.ndarray]:  # every child of a box holds the same (not to be changed)
        keep = np.ones(len(self.cb), dtype=bool)
        keep[self.drop] = False
        return np.vstack([self.CA[keep], self.CN]), np.concatenate([self.cb[keep], self.cbn])

    @functools.cached_property
    def rows(self) -> tuple[tuple, tuple]:
        """CA's and CN's nonzeros row by row (``_LP.rows``), for every child of the box."""
        return _LP.rows(self.CA), _LP.rows(self.CN)


class Relaxation:
    """The convex program of a box (module docstring), over v = [x | κ | L' | X | h | t | V | s | e]:
    x = log channels (c0, c1..cn, then m1..mn), κ = log kernels, L' = L − 1, X = the perspective variables
    L'_i·x of stage i's own channel and kernel variables, h_j ≥ log(r_j² c_j)·S_j, t ≤ −β exp(V),
    V ≥ Σ s_k / n, s_k ≥ (U_k·L')², e = the scaled cost of each part (stem, stage i) of each budget."""

    def __init__(self, problem: Problem):
        sp = problem.space
        if sp.block == "mbconv" and sp.ratio[0] <= 1:
            raise ValueError("bound: mbconv spaces need an expansion ratio above 1")
        self.p, self.sp, self.b = problem, sp, problem.budget
        n = self.n = sp.n
        self.nz = 1 + n + (n if sp.has_mid else 0)
        self.ik = self.nz
        self.iL = self.ik + n
        self.X: dict[tuple[int, int], int] = {}  # (stage 1..n, own variable) -> its perspective column
        for i in range(1, n + 1):
            for v in sorted({self.xc(i), self.xm(i), self.ik + i - 1}):
                self.X[(i, v)] = self.iL + n + len(self.X)
        self.pairs = np.array([(col, v, self.iL + i - 1) for (i, v), col in self.X.items()])  # X = L'·x
        self.pairs_T = tuple(self.pairs.T.copy())  # its columns: X, x, L'
        self.ends = sp.scale_ends()
        self.ih = self.iL + n + len(self.X)
        self.it = self.ih + len(self.ends)
        self.iV = self.it + 1
        self.iS = self.iV + 1  # s_k >= (U_k·L')², Var(L') = Σ_k (U_k·L')² / n
        self.parts = n + 1
        self.nb = 2 + (self.b.latency is not None)  # budgets: MACs, params, and latency when there is one
        self.ic = self.iS + n - 1  # epigraph of the cost of each part (stem, stage i) of each budget
        self.nv = self.ic + self.nb * self.parts
        # U: an orthonormal basis of the depth vectors with zero mean (Helmert's), so the variance is separable
        self.U = np.array([[1.0] * k + [-k] + [0.0] * (n - k - 1) for k in range(1, n)]).reshape(-1, n)
        if n > 1:
            self.U /= np.linalg.norm(self.U, axis=1, keepdims=True)
        self.r0, self.rs = sp.resolutions()
        self.alpha = np.array(problem.alpha)
        most = (sp.max_depth - 1) ** 2 / 4  # the largest variance of depths in 1..max_depth
        beta = self.b.beta
        self.var_cap = most if beta == 0 else min(most, max(VAR_CAP, math.log(PENALTY_CAP / beta)))
        self._terms()
        self._entropy()
        self._static()
        self._box_structure()
        self.last: dict | None = None  # the LP point of the last box solved
        self._coefs: dict[tuple, np.ndarray] = {}  # the terms' coefficients, by what decides them (box_terms)
        self.lp = _LP()

    def xc(self, i: int) -> int:
        return i

    def xm(self, i: int) -> int:  # basic blocks have no mid: their k x k convs map to c
        return self.n + i if self.sp.has_mid else i

    # ---- the pieces of the program
    def _monomials(self, macs: bool) -> list[tuple[float, tuple[int, ...], int, int]]:
        """MACs or params as monomials (coef, variables multiplied, stage whose repeated blocks carry it
        or -1, part): coef·exp(Σ x) for a block met once, coef·L'·exp(Σ x) for the L' repeated blocks."""
        sp, n = self.sp, self.n
        out = []

        part = 0  # the stage whose epigraph variable collects the term: 0 stem, i stage i (head, classifier: n)
        when = -1  # -1: always there; i: only where c_{i-1} < c_i (a stride-1 stage's projection shortcut)

        def mono(coef, *vs, rest=-1):
            out.append((float(coef), vs, rest, part, when))

        ks = sp.stem_kernel
        mono(3 * ks * ks * self.r0**2 if macs else 3 * ks * ks + 2, 0)
        r_in = self.r0
        for i in range(1, n + 1):
            part = i
            r = self.rs[i - 1]
            kk = (self.ik + i - 1,) * 2  # k² = exp(2κ)
            cin, c, m = self.xc(i - 1), self.xc(i), self.xm(i)
            proj = sp.strides[i - 1] != 1
            for first in (True, False):
                when = -1
                rs = -1 if first else i - 1
                src, rin = (cin, r_in) if first else (c, r)
                if sp.block == "bottleneck":
                    if macs:
                        mono(rin**2, m, src, rest=rs); mono(r * r, m, m, *kk, rest=rs); mono(r * r, c, m, rest=rs)
                        if first:
                            when = -1 if proj else i
                            mono(r * r, c, cin)
                    else:
                        mono(1, m, src, rest=rs); mono(1, m, m, *kk, rest=rs); mono(1, c, m, rest=rs)
                        mono(4, m, rest=rs); mono(2, c, rest=rs)
                        if first:
                            when = -1 if proj else i
                            mono(1, c, cin); mono(2, c)
                elif sp.block == "basic":
                    if macs:
                        mono(r * r, c, src, *kk, rest=rs); mono(r * r, c, c, *kk, rest=rs)
                        if first:
                            when = -1 if proj else i
                            mono(r * r, c, cin)
                    else:
                        mono(1, c, src, *kk, rest=rs); mono(1, c, c, *kk, rest=rs); mono(4, c, rest=rs)
                        if first:
                            when = -1 if proj else i
                            mono(1, c, cin); mono(2, c)
                else:  # mbconv: expand conv always present (ratio > 1), squeeze = se·c_in when exact
                    exact = abs(sp.se * sp.step - round(sp.se * sp.step)) < 1e-9
                    if macs:
                        mono(rin**2, m, src, rest=rs); mono(r * r, m, *kk, rest=rs); mono(r * r, c, m, rest=rs)
                        if sp.se > 0:
                            mono(2 * sp.se, m, src, rest=rs) if exact else mono(2, m, rest=rs)
                    else:
                        mono(1, m, src, rest=rs); mono(4, m, rest=rs); mono(1, m, *kk, rest=rs)
                        mono(1, c, m, rest=rs); mono(2, c, rest=rs)
                        if sp.se > 0:
                            if exact:
                                mono(2 * sp.se, m, src, rest=rs); mono(sp.se, src, rest=rs)
                            else:
                                mono(2, m, rest=rs); mono(1, rest=rs)
                            mono(1, m, rest=rs)
            r_in = r
        when = -1
        last = self.xc(n)
        if sp.head is not None:
            mono(sp.head * r_in**2, last) if macs else (mono(sp.head, last), mono(2 * sp.head))
        if self.b.classifier and sp.num_classes:
            nc = sp.num_classes
            if sp.head is not None:
                mono(sp.head * nc if macs else (sp.head + 1) * nc)
            else:
                mono(nc, last)
                if not macs:
                    mono(nc)
        return out

    def _latency_monomials(self) -> list[tuple]:
        """The latency model's terms (``deepmad.core.latency``) as monomials, in ``_monomials``' format plus the
        term's value a_j at every kernel choice k_j (a θ of that kernel times k_j² or 1) and the stage whose
        kernel picks it (-1: none). A box allowing kernels k_a..k_b writes the term as A·k^p (``box_terms``):
        p through (k_a, a_a) and (k_b, a_b) (0 if a_a is 0 or a_b < a_a), A = min over the allowed j of
        a_j / k_j^p, so A·k^p <= a_j at every kernel it allows, with equality once it allows one kernel, and at
        both ends of two; the relaxation sees the cost grow with κ = log k.
        The terms of an mbconv stage's residual add (present only where c_{i-1} = c_i) count where the box
        fixes both to one equal value; elsewhere they are left out, which only lowers the relaxation's cost."""
        sp, n = self.sp, self.n
        fam = lat.family_for(self.b.latency_model, sp, self.b.classifier)
        exact = abs(sp.se * sp.step - round(sp.se * sp.step)) < 1e-9
        out = []

        def add(theta: np.ndarray, t, part: int, stage: int, first: bool, kstage: int) -> None:
            i = stage + 1  # 1-based stage
            src = self.xc(i - 1) if first else self.xc(i)
            names = {lat.I: src, lat.C: self.xc(i), lat.M: self.xm(i)}
            vs = [names[v] for v, e in enumerate(t.exps) for _ in range(e)]
            theta = np.asarray(theta, dtype=float)
            if t.sq:  # squeeze = se·c_in exactly when se·step is an integer; else >= 1
                theta = theta * sp.se if exact else theta
                vs += [src] if exact else []
            when = {lat.ALWAYS: -1, lat.EXPAND: -1, lat.PROJ: i, lat.IDENT: IDENT + i}[t.when]
            out.append((float(theta.min()), tuple(vs), -1 if first else stage, part, when, theta, kstage))

        for s in range(n):
            first, ufirst, rest, urest, pre, upre, post, upost = lat.stage_tables(fam, sp, s, self.b.classifier)
            for j, t in enumerate(upre):
                add(np.full(len(sp.kernels), pre[j]), t, 0, s, True, -1)
            for j, t in enumerate(ufirst):
                add(first[:, j], t, s + 1, s, True, s)
            for j, t in enumerate(urest):
                add(rest[:, j], t, s + 1, s, False, s)
            for j, t in enumerate(upost):
                add(np.full(len(sp.kernels), post[j]), t, n, s, True, -1)
        return out

    def _terms(self) -> None:
        """Every budget's monomials as arrays, each scaled by its budget: term t is coef_t·exp(E_t·v) when met
        once and coef_t·L'·exp(E_t·X/L') (the perspective of exp, convex) for repeated blocks, E_t then over
        the stage's X columns (Ex_t: the same exponent over its x columns). The latency's coefficients depend
        on a stage's kernel (kcoef, kstage): ``box_terms`` sets them, and their power of the kernel, for a box."""
        coef, E, Ex, Lsel, group, when, kcoef, kstage, kpos = [], [], [], [], [], [], [], [], []
        K = len(self.sp.kernels)
        budgets = [(self._monomials(True), self.b.flops), (self._monomials(False), self.b.params)]
        if self.b.latency is not None:
            budgets.append((self._latency_monomials(), self.b.latency))
        for g, (monomials, limit) in enumerate(budgets):
            for c, vs, rest, part, w, *per_kernel in monomials:
                when.append(w)
                e, ex, ls = np.zeros(self.nv), np.zeros(self.nv), np.zeros(self.nv)
                for v in vs:
                    ex[v] += 1
                    e[v if rest < 0 else self.X[(rest + 1, v)]] += 1
                if per_kernel and per_kernel[1] >= 0:  # where the term's power of its stage's kernel goes
                    kap = self.ik + per_kernel[1]
                    kpos.append((kap if rest < 0 else self.X[(rest + 1, kap)], kap))
                else:
                    kpos.append((-1, -1))
                if rest >= 0:
                    ls[self.iL + rest] = 1
                coef.append(c / limit); E.append(e); Ex.append(ex); Lsel.append(ls); group.append(g * self.parts + part)
                kcoef.append(per_kernel[0] / limit if per_kernel else np.full(K, c / limit))
                kstage.append(per_kernel[1] if per_kernel else -1)
        self.coef, self.E, self.Ex, self.Lsel = np.array(coef), np.array(E), np.array(Ex), np.array(Lsel)
        self.coef_all, self.when = self.coef, np.array(when)  # self.coef: the terms present in the box
        self.kcoef, self.kstage, self.kpos = np.array(kcoef), np.array(kstage), np.array(kpos).reshape(-1, 2)
        self.by_kernel = bool((self.kstage >= 0).any())  # a coefficient depends on a kernel (a latency budget)
        self.has_ident = bool((self.when >= IDENT).any())
        self.proj_stages = sorted({int(w) for w in self.when[(self.when > 0) & (self.when < IDENT)]})  # see splits
        self.rep = self.Lsel.any(1)
        self.once = ~self.rep  # terms met once
        self.E0, self.Ex0 = self.E, self.Ex  # without the latency's powers of the kernel (box_terms adds them)
        self.EEL = np.hstack([self.E.T, self.Ex.T, self.Lsel.T])
        self._kfit: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._exps: dict[tuple, tuple] = {}
        self.group = np.array(group)  # term -> budget·parts + part
        self.onehot = np.eye(self.nb)[self.group // self.parts]  # term -> budget
        self.E_nz = self._nonzeros(self.E)

    def _kernel_fit(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(A, p) of every term for a box allowing kernels a..b (indices; see ``_latency_monomials``)."""
        got = self._kfit.get((a, b))
        if got is None:
            kap = np.log(np.array(self.sp.kernels, dtype=float))
            th = self.kcoef
            p = np.zeros(len(th))
            if b > a:
                ok = (th[:, a] > 0) & (th[:, b] > th[:, a])
                p[ok] = np.log(th[ok, b] / th[ok, a]) / (kap[b] - kap[a])
            A = (th[:, a:b + 1] * np.exp(-p[:, None] * kap[None, a:b + 1])).min(1)
            got = self._kfit[(a, b)] = (A, p)
        return got

    def kernel_looseness(self, i: int, a: int, b: int) -> float:
        """How far below a term's value at some kernel a..b the box's A·k^p of stage i's latency terms falls
        (the largest relative shortfall; 0 when exact: one kernel, or two whose values grow with the kernel)."""
        sel = np.flatnonzero(self.kstage == i)
        if not len(sel):
            return 0.0
        A, p = self._kernel_fit(a, b)
        kap = np.log(np.array(self.sp.kernels, dtype=float))[a:b + 1]
        th = self.kcoef[sel, a:b + 1]
        fit = A[sel, None] * np.exp(p[sel, None] * kap[None, :])
        short = np.where(th > 0, 1 - fit / np.where(th > 0, th, 1.0), 0.0)
        return float(short.max())

    def box_terms(self, node: Node) -> None:
        """The terms of a box: ``self.coef`` (0 for a term the box does not guarantee: a stride-1 projection only
        where c_{i-1} != c_i, an mbconv residual add only where both are fixed and equal) and, with a latency
        budget, its coefficients and powers of the kernels for the kernels the box allows (``E``, ``Ex``,
        ``EEL``; module docstring). Cached by what decides them."""
        n = self.n
        present = tuple(i for i in range(1, n + 1) if node.z[i - 1][1] < node.z[i][0]
                        or (not self.sp.ordered and node.z[i - 1][0] > node.z[i][1]))
        present += tuple(IDENT + i for i in range(1, n + 1) if self.has_ident
                         and node.z[i - 1][0] == node.z[i - 1][1] == node.z[i][0] == node.z[i][1])
        ks = node.k if self.by_kernel else ()
        key = (present, ks)
        coef = self._coefs.get(key)
        exps = self._exps.get(ks)
        if coef is None or exps is None:
            base, E, Ex = self.coef_all.copy(), self.E0.copy(), self.Ex0.copy()
            for i, (a, b) in enumerate(ks):
                sel = np.flatnonzero(self.kstage == i)
                A, p = self._kernel_fit(a, b)
                base[sel] = A[sel]
                E[sel, self.kpos[sel, 0]] += p[sel]
                Ex[sel, self.kpos[sel, 1]] += p[sel]
            if len(self._coefs) > 4096:  # boxes differ in few of these; keep the cache small
                self._coefs.clear()
                self._exps.clear()
            coef = self._coefs[key] = base * np.isin(self.when, (-1,) + present)
            if exps is None:
                exps = self._exps[ks] = (E, Ex, np.hstack([E.T, Ex.T, self.Lsel.T]), self._nonzeros(E))
        self.coef = coef
        self.E, self.Ex, self.EEL, self.E_nz = exps

    def _nonzeros(self, E: np.ndarray) -> tuple:
        """Where E and Lsel put each term's tangent into the rows of the parts (``cost_cuts``): E's nonzeros (term,
        value), Lsel's terms, and the index of each in the flattened (part, column) rows, E's first."""
        er, ec = np.nonzero(E)
        lr, lc = np.nonzero(self.Lsel)
        index = np.concatenate([self.group[er] * self.nv + ec, self.group[lr] * self.nv + lc])
        return er, E[er, ec], lr, index

    def _at(self, V: np.ndarray):
        """Exponents z and values of every term at the rows of V; a repeated term with L' ~ 0 is worth 0 and
        takes its exponent from the stage's own x."""
        return self._terms_at(V @ self.EEL)

    def _terms_at(self, Y: np.ndarray):
        """``_at`` from the rows' exponent sums Y = V @ EEL."""
        z, Lp, small = self._exponents(Y)
        return z, self.coef * np.where(small, 0.0, Lp) * np.exp(z)

    def _exponents(self, Y: np.ndarray):
        """The terms' exponents z from the rows' exponent sums Y, and their L' (1 for a term met once; ``small``:
        where it is ~0)."""
        T = len(self.coef)
        Lp = Y[:, 2 * T:] + self.once  # L' of repeated terms, 1 for the others
        small = Lp < 1e-7
        return np.minimum(np.where(small, Y[:, T:2 * T], Y[:, :T] / np.where(small, 1.0, Lp)), 700.0), Lp, small

    def _at_segment(self, ya: np.ndarray, b: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """``costs`` at the points a + t·(b − a), t in ts (the segment's exponent sums are affine in t; ya:
        a's, a @ EEL)."""
        yb = b @ self.EEL
        return self._terms_at(ya + ts[:, None] * (yb - ya))[1] @ self.onehot

    def costs(self, V: np.ndarray) -> np.ndarray:
        """Each budget's cost over its limit (MACs, params, latency when budgeted) at the rows of V (rows, budgets)."""
        return self._at(V)[1] @ self.onehot

    def cost_cuts(self, v: np.ndarray, anchor: np.ndarray, ya: np.ndarray, eps: float):
        """For each budget v breaks: tangents of the (scaled) cost of each of its parts, as rows·y <= rhs with
        that part's epigraph variable, taken where the segment from the box's cheapest design (anchor, within
        the budgets; ya: anchor @ EEL) to v crosses the budget (found on a grid, then by a secant of
        log cost): exp(z) >= e^z0 (1 + z − z0) per term met once, L'·exp(E·X/L') >= e^z0 ((1 − z0) L' + E·X)
        per repeated term. Returns (rows, rhs), one row a part of each budget broken."""
        ts = _GRID
        G = self._at_segment(ya, v, ts)  # G[-1]: at v
        over = [g for g in range(self.nb) if G[-1, g] > 1 + eps]
        if not over:
            return np.zeros((0, self.nv)), np.zeros(0)
        W = []
        for g in over:
            k = max(int(np.argmax(G[:, g] > 1)), 1)
            l0, l1 = math.log(max(G[k - 1, g], 1e-300)), math.log(G[k, g])
            t = ts[k - 1] + (ts[k] - ts[k - 1]) * (-l0 / (l1 - l0) if l1 > l0 else 1.0)
            W.append(anchor + t * (v - anchor))
        Z = self._exponents(np.array(W) @ self.EEL)[0]
        # each term of a broken budget at that budget's crossing point: gamma = its value, z its exponent; the
        # row of part p sums, over p's terms, gamma·E (+ gamma·(1 − z) at L' for a repeated term), minus 1 at
        # p's epigraph variable; its rhs is −Σ gamma·(1 − z) over p's terms met once (sums in term order)
        nb, parts, nv = self.nb, self.parts, self.nv
        at = np.full(nb, -1)
        at[over] = np.arange(len(over))
        row = at[self.group // parts]  # the row of Z each term's budget was crossed at (−1: not broken)
        live = row >= 0
        z = np.where(live, Z[np.maximum(row, 0), np.arange(len(row))], 0.0)
        gam = np.where(live, self.coef * np.exp(z), 0.0)
        w = gam * (1 - z)
        er, ev, lr, index = self.E_nz
        r = np.bincount(index, weights=np.concatenate([gam[er] * ev, w[lr]]), minlength=nb * parts * nv)
        rhs = -np.bincount(self.group, weights=w * self.once, minlength=nb * parts)
        sel = (np.array(over)[:, None] * parts + np.arange(parts)).ravel()
        r = r.reshape(nb * parts, nv)[sel]
        r[np.arange(len(sel)), self.ic + sel] -= 1
        return r, rhs[sel]

    def _entropy(self) -> None:
        """S_j (Σ log w to the end of scale j) and ℓ_j (its layers) as affine functions of v."""
        sp, n = self.sp, self.n
        per_block = {"basic": 2, "bottleneck": 3, "mbconv": 3}[sp.block]
        m = len(self.ends)
        self.S, self.ell = np.zeros((m, self.nv)), np.zeros((m, self.nv))
        self.s0 = np.full(m, math.log(3 * sp.stem_kernel**2))
        self.l0 = np.ones(m)
        for j, u in enumerate(self.ends):
            S, ell = self.S[j], self.ell[j]
            for i in range(1, u + 2):
                cin, c, mid, kap = self.xc(i - 1), self.xc(i), self.xm(i), self.ik + i - 1
                first = {"bottleneck": {cin: 1, mid: 2, kap: 2}, "basic": {cin: 1, c: 1, kap: 4},
                         "mbconv": {cin: 1, mid: 1, kap: 2}}[sp.block]
                for v, w in first.items():
                    S[v] += w
                for v, w in self.q(i).items():  # the repeated blocks, exactly: L'·q = q(X)
                    S[self.X[(i, v)]] += w
                ell[self.iL + i - 1] += per_block
                self.l0[j] += per_block
            if u == n - 1 and sp.head is not None:
                S[self.xc(n)] += 1
                self.l0[j] += 1
        sides = [self.r0] + self.rs
        self.r2 = np.array([math.log(sides[u + 1] ** 2) for u in self.ends])
        fixed = [j for j, u in enumerate(self.ends) if u == n - 1 and sp.head is not None]
        self.a_col = np.array([-1 if j in fixed else self.xc(u + 1) for j, u in enumerate(self.ends)])

    def q(self, i: int) -> dict[int, float]:
        """Log width sum of one repeated block of stage i (1-based): the weight of each of its variables."""
        c, m, kap = self.xc(i), self.xm(i), self.ik + i - 1
        if self.sp.block == "bottleneck":
            return {c: 1.0, m: 2.0, kap: 2.0}
        if self.sp.block == "basic":
            return {c: 2.0, kap: 4.0}
        return {c: 1.0, m: 1.0, kap: 2.0}

    def _static(self) -> None:
        """Rows every box shares: ordering, ratio range, fixed-factor entropy, tangents of the penalty."""
        sp, n, b = self.sp, self.n, self.b
        A, rhs = [], []

        def row(entries: dict, r: float):
            a = np.zeros(self.nv)
            for k, val in entries.items():
                a[k] += val
            A.append(a); rhs.append(r)

        for i in range(n if sp.ordered else 0):
            row({self.xc(i): 1, self.xc(i + 1): -1}, 0.0)  # non-decreasing channels (guideline 3)
        if sp.has_mid:
            for i in range(1, n + 1):
                Xc, Xm, L = self.X[(i, self.xc(i))], self.X[(i, self.xm(i))], self.iL + i - 1
                if sp.ratio[0] > 0:  # the ratio range, for the first block and (times L') the others
                    row({self.xc(i): 1, self.xm(i): -1}, -math.log(sp.ratio[0]))
                    row({Xc: 1, Xm: -1, L: math.log(sp.ratio[0])}, 0.0)
                row({self.xm(i): 1, self.xc(i): -1}, math.log(sp.ratio[1]))
                row({Xm: 1, Xc: -1, L: -math.log(sp.ratio[1])}, 0.0)
        for j in np.flatnonzero(self.a_col < 0):  # h_j <= log(r_j² head)·S_j
            a = math.log(sp.head) + self.r2[j]
            A.append(-a * self.S[j]); A[-1][self.ih + j] += 1; rhs.append(a * self.s0[j])
        for g in range(self.nb):  # the parts' costs fit the budget
            row({self.ic + g * self.parts + p: 1 for p in range(self.parts)}, 1.0)
        if n > 1:  # V >= Σ s_k / n
            row({self.iV: -1, **{self.iS + k: 1 / n for k in range(n - 1)}}, 0.0)
        for V0 in PENALTY_TANGENTS:  # t <= -β exp(V) at fixed variances (more are cut in)
            row({self.it: 1, self.iV: b.beta * math.exp(V0)}, -b.beta * math.exp(V0) * (1 - V0))
        self.A0, self.b0 = np.array(A), np.array(rhs)
        self.obj = np.zeros(self.nv)
        self.obj[self.ih:self.it] = self.alpha
        self.obj[self.it] = 1.0

    # ---- one box
    def box(self, node: Node, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The box's column bounds (log channels, log kernels, L', X = L'·x at the corners, then the fixed ones)."""
        n = self.n
        lo0, hi0, logk = self._box0
        lo, hi = lo0.copy(), hi0.copy()
        z = np.array(node.z, dtype=float) * step
        lo[:self.nz], hi[:self.nz] = np.log(z[:, 0]), np.log(z[:, 1])
        ks = logk[np.array(node.k)]
        lo[self.ik:self.iL], hi[self.ik:self.iL] = ks[:, 0], ks[:, 1]
        L = np.array(node.L, dtype=float) - 1
        lo[self.iL:self.iL + n], hi[self.iL:self.iL + n] = L[:, 0], L[:, 1]
        pc, pv, pl = self.pairs_T
        lo[pc], hi[pc] = lo[pl] * lo[pv], hi[pl] * hi[pv]
        return lo, hi

    @functools.cached_property
    def _box0(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The bounds every box shares (h free, t, V, s, e) and the log kernel choices."""
        lo, hi = np.zeros(self.nv), np.zeros(self.nv)
        lo[self.ih:self.it], hi[self.ih:self.it] = -INF, INF
        lo[self.it], hi[self.it] = -self.b.beta * math.exp(self.var_cap), -self.b.beta
        lo[self.iV], hi[self.iV] = 0.0, self.var_cap
        lo[self.iS:self.ic], hi[self.iS:self.ic] = 0.0, self.n * self.var_cap
        lo[self.ic:], hi[self.ic:] = 0.0, 1.0
        return lo, hi, np.log(np.array(self.sp.kernels, dtype=float))

    def _box_structure(self) -> None:
        """Where the rows every box has keep their nonzeros (a fixed structure, so a parent's basis fits its
        children, and the LP's matrix is assembled from values alone): ``box_rows``' McCormick rows (X, x, L'),
        the rows of each h_j (S_j's columns, h_j, the column of c_j) and the tangents of each square (s_k, U_k's
        depths); the static rows as they are."""
        pc, pv, pl = self.pairs.T
        P, n = len(pc), self.n
        self.bx_P = P
        self.bx_ja = np.flatnonzero(self.a_col >= 0)  # scales whose factor log(r_j² c_j) is a variable
        self.bx_sq = len(_SQUARE_AT) if n > 1 else 0  # tangents of each square s_k >= y_k²
        nh, nq = 2 * len(self.bx_ja), self.bx_sq * (n - 1)
        self.nbox = 4 * P + nh + nq
        H = np.zeros((nh, self.nv), dtype=bool)
        for r, j in enumerate(np.concatenate([self.bx_ja, self.bx_ja])):
            H[r] = self.S[j] != 0
            H[r, [self.ih + j, self.a_col[j]]] = True
        Q = np.zeros((nq, self.nv), dtype=bool)
        for r in range(nq):
            k = r // max(self.bx_sq, 1)
            Q[r, self.iS + k] = True
            Q[r, self.iL:self.iL + n] = self.U[k] != 0
        hr, hc = np.nonzero(H)
        qr, qc = np.nonzero(Q)
        self.bx_h, self.bx_q = (hr, hc), (qr, qc)
        j2 = np.concatenate([self.bx_ja, self.bx_ja])[hr]  # each h nonzero's scale: S_j's entry, h_j's, c_j's column
        self.bx_hv = (self.S[j2, hc], hc == self.ih + j2, hc == self.a_col[j2])
        ks = np.arange(nq) // max(self.bx_sq, 1)
        self.bx_qv = (qc == self.iS + ks[qr], self.U[ks[qr], np.clip(qc - self.iL, 0, n - 1)])  # s_k's, U_k's
        self.bx_rows = np.concatenate([np.repeat(np.arange(4 * P), 3), 4 * P + hr, 4 * P + nh + qr])
        self.bx_cols = np.concatenate([np.tile(self.pairs[:, [0, 1, 2]], (4, 1)).ravel(), hc, qc]).astype(np.int32)
        self.A0_rows = _LP.rows(self.A0)

    def box_rows(self, lo: np.ndarray, hi: np.ndarray):
        """Rows that depend on the box: McCormick's envelope of each X = L'·x, and of each h_j ≥ a_j·S_j
        (a_j = log(r_j² c_j) in [a_lo, a_hi], S_j in [S_lo, S_hi] over the box), and tangents of each square
        s_k >= y_k² across y_k's range over the box. Always ``nbox`` rows, in the same order, as
        ((row starts, columns, values) of their nonzeros, right-hand sides)."""
        pc, pv, pl = self.pairs_T
        P, n = self.bx_P, self.n
        rhs = np.empty(self.nbox)
        mc = np.empty((4, P, 3))
        Lc = np.stack([lo[pl], hi[pl], hi[pl], lo[pl]])  # the corner (L', x) of each of the four planes
        xc = np.stack([lo[pv], hi[pv], lo[pv], hi[pv]])
        mc[:, :, 0], mc[:, :, 1], mc[:, :, 2] = _MC_SIGN, -_MC_SIGN * Lc, -_MC_SIGN * xc  # columns X, x, L'
        rhs[:4 * P] = (-_MC_SIGN * Lc * xc).ravel()
        L = slice(self.iL, self.iL + n)
        ellmin = self.ell[:, L] @ lo[L] + self.l0  # S_j >= S_lo: its terms at the box's low corner, and ρ0
        smin = np.maximum(self.S[:, :self.ih] @ lo[:self.ih] + self.s0, ellmin * np.log(ellmin / self.b.rho0))
        smin = np.maximum(smin, 0.0)
        smax = self.S[:, :self.ih] @ hi[:self.ih] + self.s0
        ja = self.bx_ja
        hv = np.zeros(0)
        if len(ja):  # h <= a_c·S + a·S_c − a_c·S_c at (a_hi, S_lo) and (a_lo, S_hi)
            w = self.a_col[ja]
            a_c = np.concatenate([hi[w], lo[w]])
            s_c = np.concatenate([smin[ja], smax[ja]])
            j2 = np.concatenate([ja, ja])
            a = self.r2[j2] + a_c
            hr = self.bx_h[0]
            sv, own, cj = self.bx_hv  # the nonzeros of −a_j S_j, +1 at h_j and − s_c at c_j, row by row
            hv = -a[hr] * sv
            hv = np.where(own, hv + 1, hv)
            hv = np.where(cj, hv - s_c[hr], hv)
            rhs[4 * P:4 * P + len(j2)] = a * self.s0[j2] - a_c * s_c
        qv = np.zeros(0)
        if self.bx_sq:  # s_k >= y_k² at the points _SQUARE_AT of y_k's range: −s_k + 2 y0 U_k·L' <= y0²
            ul, uh = self.U * lo[L], self.U * hi[L]
            ylo, yhi = np.minimum(ul, uh).sum(1), np.maximum(ul, uh).sum(1)
            y0 = (ylo[:, None] + (yhi - ylo)[:, None] * _SQUARE_AT[None]).ravel()
            own, u = self.bx_qv  # the nonzeros: −1 at s_k, 2 y0 U_k at the depths
            qv = np.where(own, -1.0, 2 * y0[self.bx_q[0]] * u)
            rhs[4 * P + 2 * len(ja):] = y0 * y0
        value = np.concatenate([mc.ravel(), hv, qv])
        nz = value != 0
        count = np.bincount(self.bx_rows[nz], minlength=self.nbox)
        start = (np.cumsum(count) - count).astype(np.int32)
        return (start, self.bx_cols[nz], value[nz]), rhs

    def load(self, c: np.ndarray, lo: np.ndarray, hi: np.ndarray, box, rhs: np.ndarray, start: "Start | None",
             cuts=None) -> tuple[np.ndarray, np.ndarray]:
        """Put max c·v over the box's rows (``box_rows``) and its cuts into the LP: those of ``start``, from its
        basis, or else ``cuts`` (rows, rhs), or none. Returns the cuts, (rows, rhs)."""
        if start is not None:
            ca, cn = start.rows
            self.lp.load(c, self.matrix(box, ca, len(start.cb)), np.concatenate([self.b0, rhs, start.cb]), lo, hi,
                         start.basis)
            self.lp.delete_rows(len(self.b0) + self.nbox + start.drop)
            self.lp.add_rows(cn, start.cbn)
            return start.cuts()
        CA, cb = cuts if cuts is not None else (np.zeros((0, self.nv)), np.zeros(0))
        self.lp.load(c, self.matrix(box, _LP.rows(CA), len(CA)), np.concatenate([self.b0, rhs, cb]), lo, hi)
        return CA, cb

    def matrix(self, box, cuts, ncuts: int):
        """The LP's rows, static, of the box and the ncuts cuts (their nonzeros, ``_LP.rows``), as (row starts,
        columns, values, rows)."""
        parts = [self.A0_rows, box, cuts]
        starts, index, value, off = [], [], [], 0
        for st, ix, va in parts:
            starts.append(st + off)
            index.append(ix)
            value.append(va)
            off += len(va)
        return (np.concatenate(starts).astype(np.int32), np.concatenate(index), np.concatenate(value),
                len(self.b0) + self.nbox + ncuts)

    def _square_cut(self, k: int, y0: float) -> tuple[np.ndarray, float]:
        """Tangent of s_k >= (U_k·L')² at U_k·L' = y0: −s_k + 2 y0 U_k·L' <= y0²."""
        a = np.zeros(self.nv)
        a[self.iS + k] = -1
        a[self.iL:self.iL + self.n] = 2 * y0 * self.U[k]
        return a, y0 * y0

    def solve(self, node: Node, step: int, iters: int = 30, eps: float = 1e-7, cuts=None, floor: float = -INF,
              start: "Start | None" = None):
        """Upper bound of the box's program (−inf when it holds no feasible design), and how its children start.

        Each round of cuts tightens the bound; it stops after ``iters`` rounds, when no constraint is violated,
        or once the bound is at most ``floor`` (the box is then dropped anyway). The LP starts from ``start``
        (its parent's, a ``Start``: the parent's cuts and final basis) or else holds ``cuts`` ((rows, rhs), or
        none). Returns the bound and the box's own ``Start`` (None when it was dropped or infeasible); its LP
        point is left in ``self.last``."""
        lo, hi = self.box(node, step)
        self.box_terms(node)
        anchor = lo.copy()  # the box's cheapest design: no point of the relaxation costs less
        anchor[self.ih:] = 0.0
        ya = anchor @ self.EEL  # the anchor's exponent sums, for the cost cuts
        if ((self._terms_at(ya[None])[1] @ self.onehot)[0] > 1 + 1e-9).any():
            return -INF, None
        box, rhs = self.box_rows(lo, hi)
        lp = self.lp
        n0 = len(self.b0) + self.nbox
        CA, cb = self.load(self.obj, lo, hi, box, rhs, start, cuts)
        best, v, inlp = INF, None, len(cb)
        for it in range(iters):
            status, val, x = lp.run()
            if status == "failed" and start is not None:  # the warm start did not take: from scratch
                self.load(self.obj, lo, hi, box, rhs, None, (CA, cb))
                start = None
                status, val, x = lp.run()
            if status == "infeasible":
                return -INF, None
            if status == "failed":  # no bound from this box's LP: its caller keeps the parent's
                return INF, None
            v, best = x, min(best, val)
            if best <= floor:  # dropped by the caller: no cuts or basis needed
                self.last = None
                return best, None
            NA, nb = self._cuts(v, anchor, ya, eps)
            if not len(nb):
                break
            CA, cb = np.vstack([CA, NA]), np.concatenate([cb, nb])
            if it == iters - 1:  # the last round's cuts go to the children
                break
            lp.add(NA, nb)
            inlp = len(cb)
        # the children keep the cuts whose rows are nonbasic (active), and the last round's (not in the LP yet);
        # dropping rows with basic slacks keeps the basis a basis
        drop = np.flatnonzero(lp.basic_rows()[n0:n0 + inlp])
        self.last = dict(v=v, lo=lo, hi=hi, value=val, d=lp.reduced_costs())
        return best, Start(lp.basis(), CA[:inlp], cb[:inlp], drop, CA[inlp:], cb[inlp:])

    def _cuts(self, v: np.ndarray, anchor: np.ndarray, ya: np.ndarray, eps: float):
        """Cuts of every convex constraint v violates, (rows, rhs) (none: v solves the box's convex program)."""
        n, b = self.n, self.b
        CA, cb = self.cost_cuts(v, anchor, ya, eps)
        out = []
        ell = self.ell @ v + self.l0  # S_j >= ℓ_j log(ℓ_j / ρ0)
        f = ell * np.log(ell / b.rho0)
        for j in np.flatnonzero(f > self.S @ v + self.s0 + eps):
            d = math.log(ell[j] / b.rho0) + 1  # tangent: g(ℓ) >= g(ℓ*) + d (ℓ − ℓ*)
            out.append((-self.S[j] + d * self.ell[j], self.s0[j] - d * self.l0[j] - (f[j] - d * ell[j])))
        y = self.U @ v[self.iL:self.iL + n]  # s_k >= y_k², y_k = U_k·L'
        for k in np.flatnonzero(y**2 > v[self.iS:self.ic] + eps * (1 + y**2)):
            out.append(self._square_cut(k, y[k]))
        V = v[self.iV]  # t <= -β exp(V)
        if v[self.it] > -b.beta * math.exp(V) * (1 - eps):
            a = np.zeros(self.nv); a[self.it] = 1; a[self.iV] = b.beta * math.exp(V)
            out.append((a, -b.beta * math.exp(V) * (1 - V)))
        if out:
            CA = np.vstack([CA, np.array([a for a, _ in out])])
            cb = np.concatenate([cb, [c for _, c in out]])
        return CA, cb


class BranchAndBound:
    def __init__(self, problem: Problem, incumbent: float | Callable[[], float], iters: int = NODE_ITERS,
                 polish=None):
        """``incumbent``: the objective of a known design, or a function returning it, called once the root's
        relaxation is solved (which does not depend on it), so that the search finding it can run meanwhile."""
        self.p, self.sp = problem, problem.space
        self.iters = iters
        # the primal heuristic, a solver.Polisher: pick(rows) -> (row, f, rho), then (row, f, rho) -> (row, f) | None
        self.polish = polish
        self.tried: set[tuple[int, ...]] = set()
        self.attempts = 0
        self.R = Relaxation(problem)
        self._logk = np.log(np.array(problem.space.kernels, dtype=float))
        self.inc, self.later = (-INF, incumbent) if callable(incumbent) else (incumbent, None)
        self.row: tuple[int, ...] | None = None
        self.conn = None  # the other process's end of a pipe, while two share the tree (_split)

    def root(self) -> Node:
        sp, n, st = self.sp, self.sp.n, self.sp.step
        lo, hi = bounds(self.p)
        L = tuple((int(lo[3 * n + 1 + i]), int(hi[3 * n + 1 + i])) for i in range(n))
        k = tuple((0, len(sp.kernels) - 1) for _ in range(n))
        z = [(int(lo[i]) // st, int(hi[i]) // st) for i in range(n + 1)]
        if sp.has_mid:
            z += [(max(1, int(lo[n + 1 + i]) // st), int(hi[n + 1 + i]) // st) for i in range(n)]
        return Node(L, k, tuple(z))

    def tighten(self, node: Node) -> Node | None:
        """The box with its channel ranges narrowed by the ordering and ratio constraints (None: empty)."""
        sp, n = self.sp, self.sp.n
        z = [list(r) for r in node.z]
        for sweep in range(2):
            if sweep and [tuple(r) for r in z] == list(node.z):  # the first sweep changed nothing: nor would this
                break
            for i in range(n if sp.ordered else 0):  # c_i <= c_{i+1} (guideline 3)
                z[i + 1][0] = max(z[i + 1][0], z[i][0])
                z[n - 1 - i][1] = min(z[n - 1 - i][1], z[n - i][1])
            if sp.has_mid:
                lo_r, hi_r = sp.ratio
                for i in range(1, n + 1):  # lo_r·c <= m <= hi_r·c
                    c, m = z[i], z[n + i]
                    m[0] = max(m[0], math.ceil(lo_r * c[0] - 1e-9))
                    m[1] = min(m[1], math.floor(hi_r * c[1] + 1e-9))
                    c[0] = max(c[0], math.ceil(m[0] / hi_r - 1e-9))
                    if lo_r > 0:
                        c[1] = min(c[1], math.floor(m[1] / lo_r + 1e-9))
        if any(a > b for a, b in z):
            return None
        return Node(node.L, node.k, tuple(tuple(r) for r in z))

    def narrow(self, node: Node, cuts, rounds: int = ROOT_NARROWING, channels: bool = True,
               workers: int = 1) -> tuple[Node | None, object]:
        """The box narrowed by optimization-based bound tightening: the least and the largest value of every
        depth and log channel count over the box's relaxation with the objective held at least the incumbent's
        (no design that beats it lies outside), repeated while the box shrinks (each round's relaxation is the
        tighter box's). With ``workers`` 2, a forked process solves every other column's LPs. Returns the
        narrowed box (None: nothing beats the incumbent) and its cuts."""
        R, st = self.R, self.sp.step
        if not math.isfinite(self.inc):
            return node, cuts
        cols = list(range(R.iL, R.iL + R.n)) + (list(range(R.nz)) if channels else [])
        with _Helper(self._column_bounds, workers > 1) as helper:
            for _ in range(rounds):
                ub, start = R.solve(node, st, iters=ROOT_ITERS, cuts=cuts)
                if ub <= self.inc:
                    return None, cuts
                if start is None:
                    return node, cuts
                cuts = start.cuts()
                if helper.ask(node, cuts, cols[1::2]):
                    found = self._column_bounds(node, cuts, cols[0::2])
                    theirs = helper.answer()
                    R.lp.solves += len(theirs)  # one LP each, solved there
                    found += theirs
                else:
                    found = self._column_bounds(node, cuts, cols)
                lo, hi = R.box(node, st)
                nlo, nhi = lo.copy(), hi.copy()
                for j, sgn, status, val in found:
                    if status == "infeasible":
                        return None, cuts
                    if status == "optimal":
                        if sgn < 0:
                            nlo[j] = max(nlo[j], -val)
                        else:
                            nhi[j] = min(nhi[j], val)
                narrowed = self._box_of(node, nlo, nhi)
                if narrowed is None or narrowed == node:
                    return narrowed, cuts
                node = narrowed
        return node, cuts

    def _column_bounds(self, node: Node, cuts, cols: list[int]) -> list[tuple[int, float, str, float]]:
        """The least and the largest value of each column in cols over the box's relaxation (its rows and cuts)
        with the objective at least the incumbent's: (column, −1 | 1, LP status, −least | largest)."""
        R = self.R
        lo, hi = R.box(node, self.sp.step)
        R.box_terms(node)
        box, rhs = R.box_rows(lo, hi)
        CA, cb = cuts
        R.load(np.zeros(R.nv), lo, hi, box, rhs, None, (np.vstack([CA, -R.obj[None]]), np.append(cb, -self.inc)))
        out = []
        for j in cols:
            for sgn in (-1.0, 1.0):
                status, val = R.lp.optimize_column(j, sgn)
                out.append((j, sgn, status, val))
                if status == "infeasible":
                    return out
        return out

    def _box_of(self, node: Node, nlo: np.ndarray, nhi: np.ndarray) -> Node | None:
        """The designs of node whose log channels, log kernels and extra depths lie in [nlo, nhi] (a margin of
        1e-9 for round-off), as a box narrowed by the ordering and ratio constraints; None when empty."""
        R, st = self.R, self.sp.step
        nz, n = R.nz, R.n
        old = np.array(node.z + node.k + node.L)
        zlo = np.ceil(np.exp(nlo[:nz]) / st - 1e-9)
        zhi = np.floor(np.exp(np.minimum(nhi[:nz], 700.0)) / st + 1e-9)
        ks = self._logk
        ka, kb = old[nz:nz + n].T
        klo = np.searchsorted(ks, nlo[R.ik:R.iL] - 1e-9)  # first choice >= the new lower end
        khi = np.searchsorted(ks, nhi[R.ik:R.iL] + 1e-9, side="right") - 1
        Llo, Lhi = np.ceil(nlo[R.iL:R.iL + n] + 1 - 1e-9), np.floor(nhi[R.iL:R.iL + n] + 1 + 1e-9)
        lo_ = np.maximum(old[:, 0], np.concatenate([zlo, klo, Llo]))
        hi_ = np.minimum(old[:, 1], np.concatenate([zhi, khi, Lhi]))
        if (lo_ > hi_).any():
            return None
        if (lo_ == old[:, 0]).all() and (hi_ == old[:, 1]).all():
            return node
        r = list(zip(lo_.astype(int).tolist(), hi_.astype(int).tolist()))
        return self.tighten(Node(tuple(r[nz + n:]), tuple(r[nz:nz + n]), tuple(r[:nz])))

    def fix(self, node: Node, info: dict) -> Node | None:
        """The box narrowed by reduced costs (reduced-cost fixing): at the LP optimum (value z), a column at its
        upper bound with reduced cost d cannot move down by more than (z − incumbent) / |d| in any design that beats
        the incumbent (LP duality: the LP's value over the rest of the box is at most z − |d|·δ), and likewise at
        its lower bound. Applied to the log channels, log kernels and extra depths; None: the box is empty."""
        R = self.R
        v, lo, hi, d = info["v"], info["lo"], info["hi"], info["d"]
        slack = info["value"] - self.inc + 1e-6 * max(1.0, abs(info["value"]))
        if not math.isfinite(slack) or slack <= 0:
            return node
        m = R.iL + R.n
        tol = 1e-7 * (1 + np.abs(v[:m]))
        up = (v[:m] >= hi[:m] - tol) & (d[:m] < -1e-9)  # at the upper bound: the minimisation's reduced cost < 0
        dn = (v[:m] <= lo[:m] + tol) & (d[:m] > 1e-9)
        if not (up.any() or dn.any()):
            return node
        nlo, nhi = lo.copy(), hi.copy()
        nlo[:m][up] = np.maximum(lo[:m][up], hi[:m][up] - slack / -d[:m][up])
        nhi[:m][dn] = np.minimum(hi[:m][dn], lo[:m][dn] + slack / d[:m][dn])
        return self._box_of(node, nlo, nhi)

    def exact(self, node: Node) -> float:
        """Objective of the one design a box holds (−inf when infeasible); a better design becomes the incumbent."""
        sp, n, st = self.sp, self.sp.n, self.sp.step
        row = [node.z[i][0] * st for i in range(n + 1)]
        row += [node.z[n + 1 + i][0] * st for i in range(n)] if sp.has_mid else [0] * n
        row += [sp.kernels[a] for a, _ in node.k] + [a for a, _ in node.L]
        X = np.array([row])
        s = evaluate(self.p, X)
        if not (s.feasible[0] and in_space(self.p, X)[0]):
            return -INF
        if s.objective[0] > self.inc:
            self.inc, self.row = float(s.objective[0]), tuple(row)
        return float(s.objective[0])

    def branch(self, node: Node, info: dict | None) -> list[Node]:
        """Split the box where the relaxation is loosest at its LP point (spatial branching); [] for a box
        that holds a single design."""
        return next(self.splits(node, info), [])

    def splits(self, node: Node, info: dict | None):
        """The ways to split the box, best first: lists of children."""
        R, sp, n = self.R, self.sp, self.sp.n
        cands = []  # (slack, kind, index, split value in the variable's own units)
        if info is not None:
            v, hi = info["v"], info["hi"]
            a_hi = R.r2 + np.where(R.a_col < 0, math.log(sp.head or 1), hi[R.a_col])
            weight = (R.alpha * a_hi) @ R.S  # objective weight of each column through the entropy
            for (i, var), col in R.X.items():  # McCormick gap of X = L'·x
                Lp, x = v[R.iL + i - 1], v[var]
                gap = weight[col] * abs(v[col] - Lp * x)
                a, b = node.L[i - 1]
                if b > a:
                    cands.append((gap, "L", i - 1, Lp + 1))
                elif var < R.nz and node.z[var][1] > node.z[var][0]:
                    cands.append((gap, "z", var, math.exp(x) / sp.step))
                elif var >= R.ik and node.k[var - R.ik][1] > node.k[var - R.ik][0]:
                    cands.append((gap, "k", var - R.ik, self._ksplit(node, var - R.ik, x)))
            S = R.S @ v + R.s0
            for j, w in enumerate(R.a_col):  # slack of h_j over log(r_j² c_j)·S_j
                if w >= 0 and node.z[w][1] > node.z[w][0]:
                    gap = R.alpha[j] * (v[R.ih + j] - (R.r2[j] + v[w]) * S[j])
                    cands.append((gap, "z", w, math.exp(v[w]) / sp.step))
            for i in range(n):  # a kernel strictly between two choices
                a, b = node.k[i]
                if b > a:
                    kap = v[R.ik + i]
                    gap = weight[R.ik + i] * min(abs(kap - math.log(k)) for k in sp.kernels[a:b + 1])
                    cands.append((gap, "k", i, self._ksplit(node, i, kap)))
                if b > a and R.by_kernel:  # the latency's A·k^p is loose at a kernel the box allows: split them
                    loose = R.kernel_looseness(i, a, b)
                    if loose > 1e-9:
                        scale = abs(self.inc) if math.isfinite(self.inc) else 1.0
                        cands.append((loose * scale, "k", i, self._ksplit(node, i, v[R.ik + i])))
            # integrality, scored by the objective change of moving the LP point to the grid, both ways (_score)
            total = weight[:R.nz].copy()  # d objective / d x_j, through the first and the repeated blocks
            for (i, var), col in R.X.items():
                if var < R.nz:
                    total[var] += weight[col] * v[R.iL + i - 1]
            for i, (a, b) in enumerate(node.L):
                if b > a:
                    frac = v[R.iL + i] - math.floor(v[R.iL + i])
                    block = sum(weight[col] * v[var] for (s, var), col in R.X.items() if s == i + 1)
                    cands.append((_score(frac, 1 - frac) * block, "L", i, v[R.iL + i] + 1))
            for j, (a, b) in enumerate(node.z):
                if b > a:
                    g = math.exp(v[j]) / sp.step
                    f = math.floor(g)
                    down = max(v[j] - math.log(max(f, 1e-9) * sp.step), 0.0)
                    up = max(math.log((f + 1) * sp.step) - v[j], 0.0)
                    cands.append((total[j] * _score(down, up), "z", j, g))
            # a stride-1 stage whose box allows c_{i-1} = c_i has no projection in its relaxation: where the LP
            # point has c_{i-1} < c_i, split the pair (worth the share of a budget the projection would take)
            stages = R.proj_stages
            if stages and R.by_kernel:
                R.box_terms(node)  # the exponents of the box's kernels
            z = R._at(v[None])[0] if stages else None
            for i in stages:
                (a0, b0), (a1, b1) = node.z[i - 1], node.z[i]
                c0, c1 = math.exp(v[i - 1]) / sp.step, math.exp(v[i]) / sp.step
                if (b0 >= a1 and c0 < c1 - 0.5) or (not sp.ordered and a0 <= b1 and c0 > c1 + 0.5):
                    share = float((((R.coef_all * np.exp(z[0])) * (R.when == i)) @ R.onehot).max())
                    cands.append((share * abs(self.inc if math.isfinite(self.inc) else 1.0), "pair", i,
                                  math.floor((c0 + c1) / 2)))
        cands.sort(key=lambda c: -c[0])
        for gap, kind, i, at in cands:
            if kind == "pair":  # c_{i-1} <= s < c_i | both <= s | both > s (c_{i-1} > s >= c_i breaks the order)
                (a0, b0), (a1, b1) = node.z[i - 1], node.z[i]
                if sp.ordered:
                    s = min(max(int(at), a1 - 1, a0), b0)
                else:  # without guideline 3 the LP point may have c_{i-1} > c_i too: a fourth child
                    s = min(max(int(at), min(a0, a1)), max(b0, b1) - 1)
                kids = [((a0, min(s, b0)), (max(s + 1, a1), b1)), ((a0, min(s, b0)), (a1, min(s, b1))),
                        ((max(s + 1, a0), b0), (max(s + 1, a1), b1))]
                if not sp.ordered:
                    kids.append(((max(s + 1, a0), b0), (a1, min(s, b1))))
                kids = [_with(_with(node, "z", i - 1, p), "z", i, q) for p, q in kids
                        if p[0] <= p[1] and q[0] <= q[1]]
                if len(kids) > 1:
                    yield kids
                continue
            a, b = getattr(node, kind)[i]
            if b > a and gap > 1e-6:
                mid = min(max(int(math.floor(at)), a), b - 1)
                yield [_with(node, kind, i, (a, mid)), _with(node, kind, i, (mid + 1, b))]
        i = max(range(n), key=lambda i: node.L[i][1] - node.L[i][0])
        a, b = node.L[i]
        if b > a:
            mid = (a + b) // 2
            yield [_with(node, "L", i, (a, mid)), _with(node, "L", i, (mid + 1, b))]
            return
        for i, (a, b) in enumerate(node.k):
            if b > a:
                yield [_with(node, "k", i, (a, a)), _with(node, "k", i, (a + 1, b))]
                return
        v = max(range(len(node.z)), key=lambda i: node.z[i][1] / node.z[i][0])
        a, b = node.z[v]
        if b > a:
            mid = min(max(int(math.sqrt(a * b)), a), b - 1)
            yield [_with(node, "z", v, (a, mid)), _with(node, "z", v, (mid + 1, b))]

    def _polish(self, node: Node, v: np.ndarray) -> None:
        """Round the LP point of the box to rows: depths and kernels to the nearest choice; each channel variable
        down and up to the grid (the ROUNDINGS most fractional ones both ways, the others to the nearest: at most
        2^ROUNDINGS rows); take the best of them (``polish.pick``, by merit) and, the first time that row comes
        up, hand it to the primal heuristic; a better design becomes the incumbent."""
        R, sp, n, st = self.R, self.sp, self.sp.n, self.sp.step
        self.attempts += 1
        lo, hi = np.array(node.z).T
        g = np.exp(np.minimum(v[:len(node.z)], 700.0)) / st
        down, up, near = (np.clip(f(g), lo, hi) for f in (np.floor, np.ceil, np.round))
        both = np.flatnonzero(up != down)
        both = both[np.argsort(-np.abs(g - np.round(g))[both], kind="stable")][:ROUNDINGS]
        bits = (np.arange(2 ** len(both))[:, None] >> np.arange(len(both))[None, :]) & 1
        Z = np.tile(near, (len(bits), 1))
        Z[:, both] = np.where(bits, up[both], down[both])
        Z = Z.astype(np.int64) * st
        ks = [min(sp.kernels[a:b + 1], key=lambda k: abs(math.log(k) - v[R.ik + i])) for i, (a, b) in enumerate(node.k)]
        L = [min(max(round(v[R.iL + i] + 1), a), b) for i, (a, b) in enumerate(node.L)]
        mids = Z[:, n + 1:] if sp.has_mid else np.zeros((len(Z), n), dtype=np.int64)
        key, f, rho = self.polish.pick(np.hstack([Z[:, :n + 1], mids, np.tile(ks + L, (len(Z), 1))]))
        if key in self.tried:
            return
        self.tried.add(key)
        out = self.polish(list(key), f, rho)
        if out is not None and out[1] > self.inc:
            self.row, self.inc = out

    def _ksplit(self, node: Node, i: int, kap: float) -> int:
        """Index of the last kernel choice at or below exp(kap) in the box: where its lower half ends."""
        a, b = node.k[i]
        ks = self.sp.kernels
        return max([j for j in range(a, b) if math.log(ks[j]) <= kap + 1e-12], default=a)

    def run(self, time_limit: float = math.inf, gap_tol: float = 0.0, max_nodes: int = 10**7,
            progress=None, first: bool = False, workers: int = 1) -> Bound:
        """Best-first branch and bound until the largest open bound is within gap_tol of the incumbent (0: at
        most the incumbent: proven optimal), or max_nodes boxes were solved, or time_limit seconds passed.
        ``progress(nodes, bound, incumbent)`` is called every PROGRESS_EVERY boxes; with ``first``, it stops at the
        first feasible design (a feasibility check). With ``workers`` 2, once SPLIT_AT boxes are solved a forked
        second process takes half of the open boxes (``_together``); raises ``PeerLost`` if it fails."""
        t0 = time.perf_counter()
        self.deadline = t0 + time_limit
        R, step = self.R, self.sp.step
        root = self.tighten(self.root())
        ub, start, cuts = INF, None, None
        for _ in range(ROOT_ROUNDS):  # rounds of cuts, each keeping the ones tight at its end
            last = ub
            b, start = R.solve(root, step, iters=ROOT_ITERS, cuts=cuts)
            ub = min(ub, b)
            if start is None:
                break
            cuts = start.cuts()
            if ub > last - 1e-3 * abs(last):
                break
        if self.later is not None:  # the root's relaxation is solved: from here on the incumbent counts
            self.inc, self.later = max(self.inc, float(self.later())), None
        self.nodes = 1
        if ROOT_NARROWING and start is not None and ub > self.inc:
            root, cuts = self.narrow(root, cuts, workers=workers if not first else 1)
            self.nodes += 1
            if root is not None:
                ub, start = R.solve(root, step, iters=ROOT_ITERS, cuts=cuts)
        self.heap = [(-ub, 0, 0, root, start, R.last)] if root is not None and ub > self.inc else []
        self.count, self.me = 0, 0
        self.proven = INF  # every max(open bound, incumbent) along the way is valid: keep the smallest
        solves, open_ = None, None
        split = workers > 1 and not first and max_nodes > SPLIT_AT
        stop = self._steps(SPLIT_AT if split else max_nodes, gap_tol, first, progress)
        if split and stop == "node_limit":  # the rest in two processes, or alone if one box is open
            if len(self.heap) >= 2:
                stop, solves, open_ = self._split(max_nodes, gap_tol, progress)
            else:
                stop = self._steps(max_nodes, gap_tol, first, progress)
        heap, alone = self.heap, open_ is None
        if alone:
            top = min(self.proven, max(-heap[0][0], self.inc) if heap else self.inc)
            open_, solves = len(heap), R.lp.solves
        else:  # the last exchange's bound covers both processes' boxes
            top = self.proven
        if stop == "done":
            stop = ("infeasible" if self.inc == -INF else "optimal" if top <= self.inc else "gap_limit")
        return Bound(float(top), float(self.inc), self.row, self.nodes, open_, time.perf_counter() - t0, stop, solves,
                     1 if alone else 2)

    def _work(self) -> float:
        """This process's work so far, in LP solves (a polish counts POLISH_WORK): what balances two processes."""
        return self.R.lp.solves + POLISH_WORK * self.attempts

    def _steps(self, upto: int, gap_tol: float, first: bool, progress, work_upto: float = math.inf) -> str:
        """Take the best open box, split it and bound its children, until the best open bound is within gap_tol
        of the incumbent or nothing is open ("done"), or ``upto`` boxes are solved or the work (``_work``) reaches
        ``work_upto`` ("node_limit"), or the time is up ("time_limit")."""
        R, step, heap = self.R, self.sp.step, self.heap
        while heap:
            top = -heap[0][0]
            if self.conn is None:  # alone: the heap holds every open box
                self.proven = min(self.proven, max(top, self.inc))
            if top <= self.inc + gap_tol * abs(self.inc) or (first and self.inc > -INF):
                return "done"
            if self.nodes >= upto or self._work() >= work_upto:
                return "node_limit"
            if time.perf_counter() > self.deadline:
                return "time_limit"
            if progress is not None and self.nodes % PROGRESS_EVERY < 2:
                progress(self.nodes, self.proven, self.inc)
            bound, _, _, node, start, info = heapq.heappop(heap)
            if info is not None and info.get("fixed_at") != self.inc:  # the incumbent rose since the box was fixed
                node = self.fix(node, info)
                if node is None:
                    continue
            if self.polish is not None and info is not None and len(self.tried) * POLISH_EVERY < self.nodes:
                self._polish(node, info["v"])
            kids = self.branch(node, info)
            if not kids:
                self.exact(node)
                continue
            for kid in kids:
                kid = self.tighten(kid)
                if kid is None:
                    continue
                R.last = None
                ub, ks = R.solve(kid, step, iters=self.iters, floor=self.inc, start=start)
                self.nodes += 1
                if ks is None and ub == INF:  # the LP failed: the parent's bound and start hold for the child
                    ks = start
                ub = min(ub, -bound)  # the child's box lies in its parent's
                if ub > self.inc and R.last is not None:
                    kid = self.fix(kid, R.last)
                    R.last["fixed_at"] = self.inc  # fixed again at the same incumbent, the box would not change
                if ub > self.inc and kid is not None:
                    self.count += 1
                    heapq.heappush(heap, (-ub, self.count, self.me, kid, ks, R.last))
        return "done"

    # ---- two processes
    def _split(self, max_nodes: int, gap_tol: float, progress) -> tuple[str, int | None, int | None]:
        """Fork a second process that takes every other open box (the 2nd best, the 4th, ...) and run the tree
        search in both (``_together``). Returns (how it stopped, LP solves, open boxes) of both together."""
        ours, theirs = _pipe()
        boxes = sorted(self.heap)
        base = (self.nodes, self.R.lp.solves)
        pid = _fork()
        if pid is None:  # no second process: the rest alone
            ours.close()
            theirs.close()
            return self._steps(max_nodes, gap_tol, False, progress), None, None
        if pid == 0:  # the second process
            def second() -> None:
                ours.close()
                self.heap, self.me, self.conn = boxes[1::2], 1, theirs
                self._together(max_nodes, gap_tol, base, None)

            _child(second, lambda e: theirs.send(("failed", repr(e))))  # the first process falls back
        theirs.close()
        self.heap, self.conn = boxes[0::2], ours
        try:
            return self._together(max_nodes, gap_tol, base, progress)
        finally:
            ours.close()
            self.conn = None
            os.waitpid(pid, 0)

    def _together(self, max_nodes: int, gap_tol: float, base: tuple[int, int], progress) -> tuple[str, int, int]:
        """The tree search in one of two processes: SYNC_WORK of its own (``_work``), then an exchange of incumbents,
        open bounds and counts; both take the better incumbent (a tie: the first process's), stop together, and
        share the best open boxes (``_balance``). What each process does depends only on what it holds at each
        exchange, never on timing: the same problem gives the same tree, bit for bit. Returns (how it stopped,
        LP solves, open boxes) of both."""
        total = self.nodes
        while True:
            share = max(1, min(2 * SYNC_EVERY, -(-(max_nodes - total) // 2)))
            stopped = self._steps(self.nodes + share, gap_tol, False, None, self._work() + SYNC_WORK)
            mine = _Report(self.inc, self.row, np.array([-e[0] for e in self.heap]), self.nodes - base[0],
                           self.R.lp.solves - base[1], stopped == "time_limit")
            self._send(mine)
            other = self._recv()
            if not isinstance(other, _Report):  # ("failed", why)
                raise PeerLost(other[1])
            a, b = (mine, other) if self.me == 0 else (other, mine)
            self.inc, self.row = (a.inc, a.row) if a.inc >= b.inc else (b.inc, b.row)
            live = [int((x.bounds > self.inc).sum()) for x in (a, b)]  # open boxes the incumbent has not overtaken
            top = max([self.inc] + [float(x.bounds.max()) for x in (a, b) if len(x.bounds)])
            self.proven = min(self.proven, top)
            total = base[0] + a.nodes + b.nodes
            solves = base[1] + a.solves + b.solves
            if progress is not None:
                progress(total, self.proven, self.inc)
            stop = None
            if not sum(live) or top <= self.inc + gap_tol * abs(self.inc):  # (no incumbent: nothing left open)
                stop = "done"
            elif a.out_of_time or b.out_of_time:
                stop = "time_limit"
            elif total >= max_nodes:
                stop = "node_limit"
            if stop is not None:
                self.nodes = total
                return stop, solves, sum(live)
            self._balance(a.bounds, b.bounds)

    def _balance(self, bounds0: np.ndarray, bounds1: np.ndarray) -> None:
        """Drop the boxes the incumbent has overtaken; then, when one process holds more than its half (plus one) of
        the SYNC_EVERY best open boxes of both (the work up to the next exchange), it hands the other every other
        one of its own among them, from its second best, until both hold about as many."""
        self.heap = [e for e in self.heap if -e[0] > self.inc]
        heapq.heapify(self.heap)
        best = sorted([(-x, 0) for x in bounds0 if x > self.inc] + [(-x, 1) for x in bounds1 if x > self.inc])
        held = [sum(1 for _, p in best[:SYNC_EVERY] if p == q) for q in (0, 1)]
        if abs(held[0] - held[1]) <= 1:
            return
        giver = 0 if held[0] > held[1] else 1
        give = range(1, 2 * (abs(held[0] - held[1]) // 2), 2)
        if self.me == giver:
            boxes = sorted(self.heap)
            self._send([_packed(boxes[j]) for j in give])
            self.heap = [e for j, e in enumerate(boxes) if j not in give]
        else:
            boxes = self._recv()
            if isinstance(boxes, tuple):  # ("failed", why)
                raise PeerLost(boxes[1])
            for e in boxes:
                heapq.heappush(self.heap, _unpacked(e, self.R.lp.hs))

    def _send(self, message) -> None:
        try:
            self.conn.send(message)
        except OSError:  # the other process has gone: what it said last (read next) tells why
            pass

    def _recv(self):
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise PeerLost("the second process ended") from None


class _Helper:
    """A forked process that runs ``work(*args)`` for the one that forked it, one request at a time (``ask``,
    then ``answer``); a no-op (``ask`` says False) where it is not wanted or could not start, and when it fails
    the asker does the work itself."""

    def __init__(self, work, wanted: bool):
        self.work, self.wanted, self.conn, self.pid, self.args = work, wanted, None, None, None

    def __enter__(self) -> "_Helper":
        if not self.wanted:
            return self
        ours, theirs = _pipe()
        pid = _fork()
        if pid is None:
            ours.close()
            theirs.close()
            return self
        if pid == 0:  # the helper: answers until told to stop (if it fails, the asker does the work itself)
            def answer() -> None:
                ours.close()
                while (args := theirs.recv()) is not None:
                    theirs.send(self.work(*args))

            _child(answer)
        theirs.close()
        self.conn, self.pid = ours, pid
        return self

    def ask(self, *args) -> bool:
        """Hand the helper a request; False when there is no helper (do the work yourself)."""
        if self.conn is None:
            return False
        self.args = args
        try:
            self.conn.send(args)
        except OSError:
            self._close()
            return False
        return True

    def answer(self):
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self._close()
            return self.work(*self.args)

    def _close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.conn.close()
            self.conn = None
            os.waitpid(self.pid, 0)

    def __exit__(self, *exc) -> None:
        self._close()


class Alongside:
    """``work(*args)`` computed in a forked process (a ``_Helper``) while the caller goes on, where the platform forks
    and ``wanted``; elsewhere, or if that process fails, in the caller when the result is first asked for.
    ``result()`` waits for it (and ends that process); a context manager, so that the process ends on every path."""

    def __init__(self, work, *args, wanted: bool = True):
        self.work, self.args, self.done, self.value = work, args, False, None
        self.helper = _Helper(work, wanted).__enter__()
        if not self.helper.ask(*args):
            self.helper = None

    def result(self):
        if not self.done:
            if self.helper is not None:
                self.value = self.helper.answer()
                self.close()
            else:
                self.value = self.work(*self.args)
            self.done = True
        return self.value

    def close(self) -> None:
        if self.helper is not None:
            self.helper.__exit__(None, None, None)
            self.helper = None

    def __enter__(self) -> "Alongside":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _End:
    """One end of a two-way pipe between two processes: pickled messages, each after its length (what
    multiprocessing.Pipe does, without its ~20 ms import). ``recv`` raises EOFError once the other end is closed."""

    def __init__(self, rfd: int, wfd: int):
        self.rfd, self.wfd = rfd, wfd

    def send(self, obj) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(len(data).to_bytes(8, "little") + data)
        while view:
            view = view[os.write(self.wfd, view):]

    def recv(self):
        size = int.from_bytes(self._read(8), "little")
        return pickle.loads(self._read(size))

    def _read(self, size: int) -> bytes:
        parts, left = [], size
        while left:
            chunk = os.read(self.rfd, min(left, 1 << 20))
            if not chunk:
                raise EOFError("the other end of the pipe is closed")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.rfd = self.wfd = -1


def _pipe() -> tuple[_End, _End]:
    """Two connected ends (each reads what the other writes)."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    return _End(r1, w2), _End(r2, w1)


def _child(body, report=None) -> None:
    """In a forked child: run body() and end the process with os._exit (0, or 1 after ``report(exception)``), so
    that nothing of the parent's runs again in it: no caller returned to, no atexit handler, no buffer flushed
    twice."""
    code = 1
    try:
        body()
        code = 0
    except BaseException as e:  # noqa: BLE001 - the child's failure is the parent's to handle
        if report is not None:
            with contextlib.suppress(BaseException):
                report(e)
    finally:
        os._exit(code)


def _fork() -> int | None:
    """os.fork() with what Python has buffered for stdout and stderr flushed first (so the child cannot write it
    again); None where it fails. Python >= 3.12 warns about forking a process with threads: the children here
    use none of them (numpy and HiGHS only)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return os.fork()
        except OSError:
            return None


@dataclass(frozen=True, eq=False)
class _Report:
    """What each of two processes tells the other at an exchange (``BranchAndBound._together``)."""

    inc: float  # its incumbent
    row: tuple[int, ...] | None  # and its design, where it found it
    bounds: np.ndarray  # the bound of every box it holds open
    nodes: int  # boxes it solved since the split
    solves: int  # LPs likewise
    out_of_time: bool


class PeerLost(RuntimeError):
    """The second process of a two-process branch and bound failed (its share of the boxes is lost)."""


def _packed(entry: tuple) -> tuple:
    """A heap entry as it can be pickled: the basis as its statuses."""
    *key, node, start, info = entry
    if start is not None:
        b = start.basis
        start = (([int(s) for s in b.col_status], [int(s) for s in b.row_status], b.valid),
                 start.CA, start.cb, start.drop, start.CN, start.cbn)
    return (*key, node, start, info)


def _unpacked(entry: tuple, hs) -> tuple:
    *key, node, start, info = entry
    if start is not None:
        (cols, rows, valid), *rest = start
        b = hs.HighsBasis()
        b.col_status = [hs.HighsBasisStatus(s) for s in cols]
        b.row_status = [hs.HighsBasisStatus(s) for s in rows]
        b.valid = valid
        start = Start(b, *rest)
    return (*key, node, start, info)


@contextlib.contextmanager
def _quiet_stdout():
    """File descriptor 1 pointed at the null device for the duration (C-level writes included), then restored;
    what Python had buffered for stdout is flushed first, so nothing of the caller's is lost or reordered."""
    if sys.stdout is not None:
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1: nothing to protect
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


class _LP:
    """max c·x s.t. A x <= b, lo <= x <= hi, with HiGHS (dual simplex with Devex pricing, one thread, no presolve:
    the LPs are small); a model starts from a given basis, and rows added later warm-start it. Devex, not dual
    steepest edge: each box's model is new, and steepest edge's exact initial weights cost more than its fewer
    pivots save (docs/solver.md)."""

    def __init__(self):
        import highspy

        self.hs = highspy
        with _quiet_stdout():  # HiGHS prints a banner on file descriptor 1 when it is created (highspy >= 1.7)
            self.h = highspy.Highs()
            self.h.setOptionValue("output_flag", False)
        for option, value in (("presolve", "off"), ("threads", 1), ("simplex_strategy", 1),
                              ("simplex_dual_edge_weight_strategy", 1)):
            self.h.setOptionValue(option, value)
        self.ROWWISE, self.MINIMIZE = int(highspy.MatrixFormat.kRowwise), int(highspy.ObjSense.kMinimize)
        self.solves = 0
        self.ninf = -highspy.kHighsInf
        self._free, self._continuous = np.zeros(0), np.zeros(0, dtype=np.int32)  # row lower bounds; integrality

    def load(self, c: np.ndarray, A: tuple, b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
             basis=None) -> None:
        """The LP max c·x, A x <= b, lo <= x <= hi (A: row starts, columns, values, rows); ``basis`` (a
        HighsBasis of as many rows) to start from."""
        start, index, value, m = A
        nv = len(c)
        if len(self._free) < m:
            self._free = np.full(2 * m, self.ninf)
        if len(self._continuous) < nv:
            self._continuous = np.zeros(2 * nv, dtype=np.int32)
        self.h.passModel(nv, m, len(value), self.ROWWISE, self.MINIMIZE, 0.0, -c, lo, hi, self._free[:m],
                         np.asarray(b, dtype=float), start, index, value, self._continuous[:nv])
        if basis is not None:
            self.h.setBasis(basis)

    def delete_rows(self, rows: np.ndarray) -> None:
        """Delete the given rows (their slacks must be basic, so that the basis stays a basis)."""
        if len(rows):
            self.h.deleteRows(len(rows), np.asarray(rows, dtype=np.int32))

    @staticmethod
    def rows(A: np.ndarray) -> tuple:
        """A's nonzeros row by row: (start of each row, column indices, values)."""
        nz = A != 0
        count = nz.sum(1)
        index, value = np.nonzero(nz)[1].astype(np.int32), A[nz]
        return (np.cumsum(count) - count).astype(np.int32), index, value

    def optimize_column(self, j: int, sign: float) -> tuple[str, float]:
        """max sign·x_j over the loaded model (warm-started from the last optimum): (status, value)."""
        n = self.h.getNumCol()
        c = np.zeros(n)
        c[j] = -sign
        self.h.changeColsCost(n, np.arange(n, dtype=np.int32), c)
        status, val, _ = self.run()
        return status, val

    def reduced_costs(self) -> np.ndarray:
        """Reduced costs of the columns at the last optimum (of the minimisation HiGHS solves)."""
        return np.array(self.h.getSolution().col_dual)

    def basis(self):
        """The basis of the last solve (a copy)."""
        return self.h.getBasis()

    def basic_rows(self) -> np.ndarray:
        """Which rows have a basic slack at the last solve (a mask over the rows)."""
        bv = np.asarray(self.h.getBasicVariables()[1])
        mask = np.zeros(self.h.getNumRow(), dtype=bool)
        mask[-bv[bv < 0] - 1] = True
        return mask

    def add(self, A: np.ndarray, b: np.ndarray) -> None:
        if len(b):
            self.add_rows(self.rows(A), b)

    def add_rows(self, rows: tuple, b: np.ndarray) -> None:
        """Add rows (their nonzeros, ``rows``) x <= b."""
        if not len(b):
            return
        start, index, value = rows
        self.h.addRows(len(b), np.full(len(b), self.ninf), np.asarray(b, float), len(value), start, index, value)

    def run(self):
        """("optimal", value, x), ("infeasible", -inf, None) or ("failed", inf, None)."""
        hs, h = self.hs, self.h
        self.solves += 1
        h.run()
        st = h.getModelStatus()
        if st == hs.HighsModelStatus.kInfeasible:
            return "infeasible", -INF, None
        if st != hs.HighsModelStatus.kOptimal:
            return "failed", INF, None
        return "optimal", -h.getObjectiveValue(), np.array(h.getSolution().col_value)


def _score(down: float, up: float) -> float:
    """Branching score of an integer variable from its two rounding distances: (1-μ)·min + μ·max, μ = SCORE_MU
    (the score function of Achterberg's Constraint Integer Programming, 2007, as in SCIP); μ = 0 would be the
    nearest rounding alone. A variable the LP point holds at a grid value still scores μ·(the other distance):
    such splits pay off too (docs/solver.md)."""
    return (1 - SCORE_MU) * min(down, up) + SCORE_MU * max(down, up)


def _with(node: Node, field: str, i: int, value: tuple[int, int]) -> Node:
    t = getattr(node, field)
    t = t[:i] + (value,) + t[i + 1:]
    return Node(**{**{f: getattr(node, f) for f in ("L", "k", "z")}, field: t})


BOUND_NODES = 5000  # default node budget of ``prove``: every preset is proven optimal in well under it
PROGRESS_EVERY = 50  # boxes between calls of the progress callback


def default_workers() -> int:
    """Processes the branch and bound uses by default: 2 where it can fork (Linux) and this process may run on two
    CPUs or more, else 1; the environment variable DEEPMAD_WORKERS (1 or 2) overrides it."""
    env = os.environ.get("DEEPMAD_WORKERS")
    if env is not None:
        if env.strip() not in ("1", "2"):
            raise ValueError(f"DEEPMAD_WORKERS: expected 1 or 2 (processes of the branch and bound), got {env!r}")
        return int(env)
    if not sys.platform.startswith("linux") or not hasattr(os, "sched_getaffinity"):
        return 1
    return 2 if len(os.sched_getaffinity(0)) >= 2 else 1


def prove(problem: Problem, incumbent: float | Callable[[], float] = -INF, *, max_nodes: int = BOUND_NODES,
          gap_tol: float = 0.0,
          time_limit: float | None = None, polish: bool = True, progress=None, first: bool = False,
          workers: int | None = None) -> Bound:
    """Upper bound on the optimum of ``problem`` given a design of objective ``incumbent`` (−inf: none known; or a
    function returning it, called once the root's relaxation is solved: see ``Alongside``).

    Stops once the bound is within gap_tol (relative) of the best design known (0: proven optimal), or at
    max_nodes boxes or time_limit seconds. With polish, the search's descent is run from the relaxations'
    optima and better designs become the incumbent (``Bound.row``). ``workers`` (default ``default_workers()``):
    processes of the tree search, 1 or 2. Deterministic for a given max_nodes and workers; ``time_limit`` makes
    the result depend on the machine's speed; the bound it returns is valid either way."""
    from .solver import Polisher

    workers = default_workers() if workers is None else workers
    if workers not in (1, 2):
        raise ValueError(f"workers: expected 1 or 2, got {workers!r}")
    t0 = time.perf_counter()
    limit = math.inf if time_limit is None else time_limit
    bb = BranchAndBound(problem, incumbent, polish=Polisher(problem) if polish else None)
    try:
        return bb.run(time_limit=limit, gap_tol=gap_tol, max_nodes=max_nodes, progress=progress, first=first,
                      workers=workers)
    except PeerLost:  # the second process failed and its boxes with it: the whole search again, in one process
        bb = BranchAndBound(problem, incumbent, polish=Polisher(problem) if polish else None)
        return bb.run(time_limit=max(limit - (time.perf_counter() - t0), 0.0), gap_tol=gap_tol,
                      max_nodes=max_nodes, progress=progress, first=first)
