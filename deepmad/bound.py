"""A proven upper bound on the DeepMAD program (Eq. 5): spatial branch and bound over convex relaxations.

Why this method. The program is mixed-integer and non-convex (products of depths and logs, the exp of a
variance); a general MINLP solver on the raw formulation finds no finite dual bound in minutes
(solver-notes.md). Its structure gives a tight convex relaxation instead. Take as variables the logs of the
channel counts x = log c, y = log m, of the kernels κ = log k, the extra depths L' = L − 1 and their logs
u = log L'. Then
  - MACs and params are posynomials: log-sum-exps of affine functions of (x, y, κ, u), convex;
  - every Σ log w (the S_j of Eq. 4) is affine in (x, y, κ) plus products L'_i·q_i, q_i the log width of a
    repeated block (affine), bounded above on a box by McCormick's envelope (linear);
  - the ρ0 constraint of every scale prefix, S_j ≥ ℓ_j·log(ℓ_j/ρ0) with ℓ_j affine in L', is convex;
  - the depth penalty β·exp(Var L) is convex in L', so the objective's −penalty is concave;
  - each product log(r_j²c_j)·S_j is bounded above on a box by a_j^hi·S_j − (a_j^hi − a_j)·S_j^min
    (a_j = log(r_j²c_j) ≤ a_j^hi, S_j ≥ S_j^min ≥ 0), linear;
  - u ≤ log L' (convex set) and u ≥ the chord of log over the box keep u tied to L'.
Every design inside a box of (depths, kernels, channels) is a point of that box's convex program, so its
optimum bounds the box. The program is solved as a linear program over tangent cuts (Kelley's method): the
cuts only enlarge the feasible set, so every LP optimum is itself a valid bound (three rounds of cuts per
box; a child inherits the cuts tight at its parent's LP point). Best-first branch and bound: each box is split
where its relaxation is loosest at the LP point (the McCormick gap of a P_i = L'_i·q_i, the a_j^hi − a_j
slack, a kernel strictly between two choices; a stage's depth range is first split at L = 1), and boxes whose
bound does not exceed the incumbent (the search's design) are dropped. A box that holds a single design is
scored exactly (a better design met there becomes the incumbent). It stops when the largest open bound is
within ``tol`` of the incumbent or at its node (or time) limit; every max(largest open bound, incumbent)
along the way is valid, and it returns the smallest. With a node limit only, it is deterministic.

Scope: designs whose depth variance exceeds VAR_CAP (16) are left out of the relaxation (the penalty's
epigraph variable is bounded below by −β·e^16, which keeps the LPs well scaled): their penalty alone,
β·e^16 ≈ 8.9e6·β, puts them below any design with a positive objective wherever the entropy is under that
(it is under 1e6 for every network of the presets' spaces). An LP that HiGHS cannot finish gives its box the
bound of the box's parent, which contains it.

Measured (benchmarks/solve.py, 2,000 nodes, about 3 s): gaps of 1-2% on the bottleneck presets and 10-17% on
the MBConv presets, whose five stages and three kernels make a larger tree; more nodes tighten them.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass

import numpy as np

from .budget import Problem, bounds, evaluate, in_space

INF = float("inf")
VAR_CAP = 16.0  # depth variance above which designs are left out of the relaxation (see Scope)


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
    complete: bool  # the bound is within tol of the incumbent


class Relaxation:
    """The convex program of a box, in the variables v = [x (c0..cn) | y (m1..mn) | κ | L' | u | P | t]."""

    def __init__(self, problem: Problem):
        sp = problem.space
        if sp.block == "mbconv" and sp.ratio[0] <= 1:
            raise ValueError("bound: mbconv spaces need an expansion ratio above 1")
        self.p, self.sp, self.b = problem, sp, problem.budget
        n = self.n = sp.n
        self.nz = 1 + n + (n if sp.has_mid else 0)
        self.ik = self.nz  # κ_i
        self.iL = self.ik + n  # L'_i
        self.iu = self.iL + n  # u_i
        self.iP = self.iu + n  # P_i >= L'_i q_i (upper envelope)
        self.it = self.iP + n  # t <= -β exp(Var L)
        self.nv = self.it + 1
        self.r0, self.rs = sp.resolutions()
        self.per_block = {"basic": 2, "bottleneck": 3, "mbconv": 3}[sp.block]
        self.ends = sp.scale_ends()
        self.alpha = problem.alpha
        self.macs = self._costs(macs=True)
        self.params = self._costs(macs=False)
        self.cuts_A: list[np.ndarray] = []
        self.cuts_b: list[float] = []
        self.lp = _LP()
        self.last: dict | None = None  # the LP point and objective of the last box solved

    def xc(self, i: int) -> int:
        return i

    def xm(self, i: int) -> int:  # basic blocks have no mid: their k x k convs map to c
        return self.n + i if self.sp.has_mid else i

    # ---- the pieces of the program
    def _costs(self, macs: bool):
        """Monomials (coef, exponent vector, stage whose L' it carries or -1) of MACs or params."""
        sp, n = self.sp, self.n
        out = []

        def mono(coef, *vs, rest=-1):
            e = np.zeros(self.nv)
            for v in vs:
                e[v] += 1
            if rest >= 0:
                e[self.iu + rest] += 1
            out.append((float(coef), e, rest))

        ks = sp.stem_kernel
        if macs:
            mono(3 * ks * ks * self.r0**2, 0)
        else:
            mono(3 * ks * ks + 2, 0)
        r_in = self.r0
        for i in range(1, n + 1):
            r = self.rs[i - 1]
            kk = (self.ik + i - 1,) * 2  # k² = exp(2κ)
            cin, c, m = self.xc(i - 1), self.xc(i), self.xm(i)
            proj = sp.strides[i - 1] != 1
            for first in (True, False):
                rs = -1 if first else i - 1
                src, rin = (cin, r_in) if first else (c, r)
                if sp.block == "bottleneck":
                    if macs:
                        mono(rin**2, m, src, rest=rs); mono(r * r, m, m, *kk, rest=rs); mono(r * r, c, m, rest=rs)
                        if first and proj:
                            mono(r * r, c, cin)
                    else:
                        mono(1, m, src, rest=rs); mono(1, m, m, *kk, rest=rs); mono(1, c, m, rest=rs)
                        mono(4, m, rest=rs); mono(2, c, rest=rs)
                        if first and proj:
                            mono(1, c, cin); mono(2, c)
                elif sp.block == "basic":
                    if macs:
                        mono(r * r, c, src, *kk, rest=rs); mono(r * r, c, c, *kk, rest=rs)
                        if first and proj:
                            mono(r * r, c, cin)
                    else:
                        mono(1, c, src, *kk, rest=rs); mono(1, c, c, *kk, rest=rs); mono(4, c, rest=rs)
                        if first and proj:
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

    def prefix(self, j_stage: int):
        """S at the end of stage j_stage (0 = stem) as (vector over v, constant), and ℓ as (vector, constant)."""
        sp = self.sp
        S = np.zeros(self.nv)
        s0 = math.log(3 * sp.stem_kernel**2)
        ell = np.zeros(self.nv)
        l0 = 1.0
        for i in range(1, j_stage + 1):
            cin, c, m, kap = self.xc(i - 1), self.xc(i), self.xm(i), self.ik + i - 1
            if sp.block == "bottleneck":
                S[cin] += 1; S[m] += 2; S[kap] += 2
            elif sp.block == "basic":
                S[cin] += 1; S[c] += 1; S[kap] += 4
            else:
                S[cin] += 1; S[m] += 1; S[kap] += 2
            S[self.iP + i - 1] += 1
            ell[self.iL + i - 1] += self.per_block
            l0 += self.per_block
        if j_stage == self.n and sp.head is not None:
            S[self.xc(self.n)] += 1
            l0 += 1
        return S, s0, ell, l0

    def q(self, i: int) -> np.ndarray:
        """Log width sum of one repeated block of stage i (1-based), as a vector over v."""
        sp = self.sp
        v = np.zeros(self.nv)
        c, m, kap = self.xc(i), self.xm(i), self.ik + i - 1
        if sp.block == "bottleneck":
            v[c] += 1; v[m] += 2; v[kap] += 2
        elif sp.block == "basic":
            v[c] += 2; v[kap] += 4
        else:
            v[c] += 1; v[m] += 1; v[kap] += 2
        return v

    # ---- one box
    def box(self, node: Node, step: int):
        sp, n = self.sp, self.n
        lo = np.zeros(self.nv); hi = np.zeros(self.nv)
        for v, (a, b) in enumerate(node.z):
            lo[v], hi[v] = math.log(a * step), math.log(b * step)
        for i in range(n):
            lo[self.ik + i] = math.log(sp.kernels[node.k[i][0]])
            hi[self.ik + i] = math.log(sp.kernels[node.k[i][1]])
            a, b = node.L[i]
            lo[self.iL + i], hi[self.iL + i] = a - 1, b - 1
            lo[self.iu + i] = math.log(a - 1) if a > 1 else -50.0
            hi[self.iu + i] = math.log(b - 1) if b > 1 else -50.0
        return lo, hi

    def solve(self, node: Node, step: int, iters: int = 30, eps: float = 1e-7, cuts=None):
        """Upper bound of the box's program (−inf when it is infeasible), and the cuts it used."""
        self.cuts_A, self.cuts_b = (list(cuts[0]), list(cuts[1])) if cuts else ([], [])
        sp, n, b = self.sp, self.n, self.b
        lo, hi = self.box(node, step)
        A, rhs = [], []
        Pmax = np.zeros(n)
        for i in range(n):  # McCormick: P_i <= L'_i q_i over the box
            qv = self.q(i + 1)
            qlo = float(np.where(qv > 0, qv * lo, qv * hi).sum())
            qhi = float(np.where(qv > 0, qv * hi, qv * lo).sum())
            Llo, Lhi = lo[self.iL + i], hi[self.iL + i]
            iP, iL = self.iP + i, self.iL + i
            r1 = -Lhi * qv; r1[iP] += 1; r1[iL] -= qlo  # P <= Lhi q + L' qlo - Lhi qlo
            A.append(r1); rhs.append(-Lhi * qlo)
            r2 = -Llo * qv; r2[iP] += 1; r2[iL] -= qhi  # P <= Llo q + L' qhi - Llo qhi
            A.append(r2); rhs.append(-Llo * qhi)
            Pmax[i] = Lhi * qhi
            if Llo >= 1:  # u >= chord of log L' on [Llo, Lhi]
                row = np.zeros(self.nv)
                if Lhi > Llo:
                    sl = (math.log(Lhi) - math.log(Llo)) / (Lhi - Llo)
                    row[self.iu + i] = -1; row[iL] = sl
                    A.append(row); rhs.append(sl * Llo - math.log(Llo))
        lo[self.iP:self.iP + n] = 0.0
        hi[self.iP:self.iP + n] = Pmax
        for i in range(n):  # non-decreasing channels
            row = np.zeros(self.nv); row[self.xc(i)] = 1; row[self.xc(i + 1)] = -1
            A.append(row); rhs.append(0.0)
        if sp.has_mid:
            for i in range(1, n + 1):
                if sp.ratio[0] > 0:
                    row = np.zeros(self.nv); row[self.xc(i)] = 1; row[self.xm(i)] = -1
                    A.append(row); rhs.append(-math.log(sp.ratio[0]))
                row = np.zeros(self.nv); row[self.xm(i)] = 1; row[self.xc(i)] = -1
                A.append(row); rhs.append(math.log(sp.ratio[1]))
        # objective: Σ_j α_j [a_j^hi S_j − (a_j^hi − a_j) S_j^min] + t
        obj = np.zeros(self.nv); obj0 = 0.0
        prefixes, smins = [], []
        for j, u in enumerate(self.ends):
            S, s0, ell, l0 = self.prefix(u + 1)
            prefixes.append((S, s0, ell, l0))
            ellmin = float(ell @ lo + l0)
            smin = max(float(np.where(S > 0, S * lo, 0).sum() + s0), ellmin * math.log(ellmin / b.rho0), 0.0)
            smins.append(smin)
            r2 = math.log(self.rs[u] ** 2 if u >= 0 else self.r0**2)
            a = self.alpha[j]
            if u == n - 1 and sp.head is not None:
                ahi = r2 + math.log(sp.head)
            else:
                v = self.xc(u + 1)
                ahi = r2 + hi[v]
                obj[v] += a * smin; obj0 -= a * hi[v] * smin
            obj += a * ahi * S; obj0 += a * ahi * s0
        obj[self.it] = 1.0
        lo[self.it], hi[self.it] = -b.beta * math.exp(VAR_CAP), -b.beta
        A = np.array(A); rhs = np.array(rhs)
        bnds = list(zip(lo, hi))
        best, v = INF, None
        lp = self.lp
        lp.load(obj, np.vstack([A] + self.cuts_A) if self.cuts_A else A,
                np.concatenate([rhs, self.cuts_b]) if self.cuts_b else rhs, lo, hi)
        for it in range(iters):
            status, val, x = lp.run()
            if status == "infeasible":
                return -INF, None
            if status == "failed":  # no bound from this box's LP: its caller keeps the parent's
                return INF, None
            v = x
            best = min(best, val + obj0)
            n0 = len(self.cuts_b)
            if not self._add_cuts(v, prefixes, lo, eps):
                break
            lp.add(np.array(self.cuts_A[n0:]), np.array(self.cuts_b[n0:]))
        if v is None:
            return best, None
        # keep for the children the cuts tight at v (the others rarely matter again)
        if self.cuts_A:
            CA = np.array(self.cuts_A)
            keep = CA @ v >= np.array(self.cuts_b) - 1e-6 * (1 + np.abs(self.cuts_b))
            keep[-8:] = True
            self.cuts_A = [a for a, k in zip(self.cuts_A, keep) if k]
            self.cuts_b = [c for c, k in zip(self.cuts_b, keep) if k]
        self.last = dict(v=v, obj=obj, smin=smins, prefixes=prefixes, lo=lo, hi=hi)
        return best, (self.cuts_A, self.cuts_b)

    def _add_cuts(self, v, prefixes, lo, eps) -> bool:
        """Tangent cuts at v of every convex constraint v violates; False when v violates none."""
        n, b = self.n, self.b
        added = False
        for terms, B in ((self.macs, b.flops), (self.params, b.params)):
            coef = np.array([c for c, _, _ in terms])
            E = np.array([e for _, e, _ in terms])
            act = np.array([rs < 0 or lo[self.iL + rs] >= 1 for _, _, rs in terms])  # L' may be 0: term >= 0
            t = coef[act] * np.exp(E[act] @ v)
            f = math.log(t.sum())
            if f > math.log(B) + eps:
                g = (t / t.sum()) @ E[act]
                self.cuts_A.append(g); self.cuts_b.append(math.log(B) - f + g @ v)
                added = True
        for i in range(n):  # u <= log L'
            Lp, u = v[self.iL + i], v[self.iu + i]
            if lo[self.iL + i] >= 1 and u > math.log(max(Lp, 1e-12)) + eps:
                row = np.zeros(self.nv); row[self.iu + i] = 1; row[self.iL + i] = -1 / Lp
                self.cuts_A.append(row); self.cuts_b.append(math.log(Lp) - 1)
                added = True
        for S, s0, ell, l0 in prefixes:  # S >= ℓ log(ℓ/ρ0)
            l = float(ell @ v + l0)
            if l * math.log(l / b.rho0) > float(S @ v + s0) + eps:
                d = math.log(l / b.rho0) + 1  # tangent: g(l) >= g(l*) + d (l - l*)
                row = -S + d * ell
                self.cuts_A.append(row); self.cuts_b.append(s0 - d * l0 - (l * math.log(l / b.rho0) - d * l))
                added = True
        Ls = v[self.iL:self.iL + n]  # t <= -β exp(Var L); tangent taken at a variance <= VAR_CAP
        var = float(Ls.var())
        if v[self.it] > -b.beta * math.exp(min(var, 700.0)) + eps * b.beta * math.exp(min(var, VAR_CAP)):
            if var > VAR_CAP:  # shrink toward the mean: the cut stays valid, its slope moderate
                Ls = Ls.mean() + (Ls - Ls.mean()) * math.sqrt(VAR_CAP / var)
                var = VAR_CAP
            f = -b.beta * math.exp(var)
            g = -b.beta * math.exp(var) * 2 * (Ls - Ls.mean()) / n
            row = np.zeros(self.nv); row[self.it] = 1; row[self.iL:self.iL + n] = -g
            self.cuts_A.append(row); self.cuts_b.append(f - g @ Ls)
            added = True
        return added


class BranchAndBound:
    def __init__(self, problem: Problem, incumbent: float, iters: int = 3):
        self.p, self.sp = problem, problem.space
        self.iters = iters
        self.R = Relaxation(problem)
        self.inc = incumbent
        self.row: tuple[int, ...] | None = None

    def root(self) -> Node:
        sp, n, st = self.sp, self.sp.n, self.sp.step
        lo, hi = bounds(self.p)
        L = tuple((int(lo[3 * n + 1 + i]), int(hi[3 * n + 1 + i])) for i in range(n))
        k = tuple((0, len(sp.kernels) - 1) for _ in range(n))
        z = [(int(lo[i]) // st, int(hi[i]) // st) for i in range(n + 1)]
        if sp.has_mid:
            z += [(max(1, int(lo[n + 1 + i]) // st), int(hi[n + 1 + i]) // st) for i in range(n)]
        return Node(L, k, tuple(z))

    def exact(self, node: Node) -> float:
        """Objective of the one design a box holds (−inf when infeasible)."""
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
        """Split the box where the relaxation is loosest at its LP point (spatial branching)."""
        for i, (a, b) in enumerate(node.L):  # separate L = 1 (no repeated blocks) first
            if a == 1 < b:
                return [_with(node, "L", i, (1, 1)), _with(node, "L", i, (2, b))]
        R, sp, n = self.R, self.sp, self.sp.n
        cands = []  # (slack, kind, index, split value in the variable's own units)
        if info is not None:
            v, obj, lo, hi = info["v"], info["obj"], info["lo"], info["hi"]
            for i in range(n):  # McCormick gap of P_i = L'_i q_i
                q = float(R.q(i + 1) @ v)
                gap = obj[R.iP + i] * (v[R.iP + i] - v[R.iL + i] * q)
                a, b = node.L[i]
                if b > a:
                    cands.append((gap, "L", i, v[R.iL + i] + 1))
                else:
                    qv = R.q(i + 1)
                    w = max((j for j in range(R.nz) if qv[j] > 0 and node.z[j][1] > node.z[j][0]),
                            key=lambda j: qv[j] * (hi[j] - lo[j]), default=None)
                    if w is not None:
                        cands.append((gap, "z", w, math.exp(v[w]) / sp.step))
            for j, u in enumerate(R.ends):  # a_j^hi − a_j slack
                if u == n - 1 and sp.head is not None:
                    continue
                w = R.xc(u + 1)
                S, s0, _, _ = info["prefixes"][j]
                gap = R.alpha[j] * (hi[w] - v[w]) * (float(S @ v + s0) - info["smin"][j])
                if node.z[w][1] > node.z[w][0]:
                    cands.append((gap, "z", w, math.exp(v[w]) / sp.step))
            for i in range(n):  # a kernel strictly between two choices
                a, b = node.k[i]
                if b > a:
                    kap = v[R.ik + i]
                    ks = [math.log(k) for k in sp.kernels[a:b + 1]]
                    gap = obj[R.ik + i] * min(abs(kap - k) for k in ks)
                    split = max(j for j in range(a, b) if math.log(sp.kernels[j]) <= kap + 1e-12) if kap > ks[0] else a
                    cands.append((gap, "k", i, split))
        cands.sort(key=lambda c: -c[0])
        for gap, kind, i, at in cands:
            a, b = getattr(node, kind)[i]
            if b > a and gap > 1e-6:
                mid = min(max(int(math.floor(at)), a), b - 1)
                return [_with(node, kind, i, (a, mid)), _with(node, kind, i, (mid + 1, b))]
        i = max(range(n), key=lambda i: node.L[i][1] - node.L[i][0])
        a, b = node.L[i]
        if b > a:
            mid = (a + b) // 2
            return [_with(node, "L", i, (a, mid)), _with(node, "L", i, (mid + 1, b))]
        for i, (a, b) in enumerate(node.k):
            if b > a:
                return [_with(node, "k", i, (a, a)), _with(node, "k", i, (a + 1, b))]
        v = max(range(len(node.z)), key=lambda i: node.z[i][1] / node.z[i][0])
        a, b = node.z[v]
        if b == a:
            return []
        mid = min(max(int(math.sqrt(a * b)), a), b - 1)
        return [_with(node, "z", v, (a, mid)), _with(node, "z", v, (mid + 1, b))]

    def run(self, time_limit: float = 10.0, tol: float = 1e-3, max_nodes: int = 10**7) -> Bound:
        t0 = time.perf_counter()
        root = self.root()
        ub, cuts = self.R.solve(root, self.sp.step, iters=self.iters)
        heap = [(-ub, 0, root, cuts, self.R.last)]
        count = nodes = 1
        proven = INF  # every max(open bound, incumbent) along the way is valid: keep the smallest
        while heap and heap[0][0] > -INF:
            top = -heap[0][0]
            proven = min(proven, max(top, self.inc))
            if top <= self.inc + tol * abs(self.inc) or time.perf_counter() - t0 > time_limit or nodes >= max_nodes:
                break
            _, _, node, cuts, info = heapq.heappop(heap)
            kids = self.branch(node, info)
            if not kids:
                self.exact(node)
                continue
            for kid in kids:
                ub, kc = self.R.solve(kid, self.sp.step, iters=self.iters, cuts=cuts)
                nodes += 1
                if kc is None and ub == INF:  # the LP failed: the parent's bound holds for the child
                    ub, kc, self.R.last = top, cuts, info
                if ub > self.inc:
                    count += 1
                    heapq.heappush(heap, (-ub, count, kid, kc, self.R.last))
        top = min(proven, max(-heap[0][0], self.inc) if heap else self.inc)
        return Bound(float(top), float(self.inc), self.row, nodes, len(heap), time.perf_counter() - t0,
                     bool(top <= self.inc + tol * abs(self.inc)))


class _LP:
    """max c·x s.t. A x <= b, lo <= x <= hi, with HiGHS; rows added later warm-start the dual simplex."""

    def __init__(self):
        import highspy

        self.hs = highspy
        self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("presolve", "off")

    def load(self, c: np.ndarray, A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        hs = self.hs
        lp = hs.HighsLp()
        m, nv = A.shape
        lp.num_col_, lp.num_row_ = nv, m
        lp.col_cost_ = -c
        lp.col_lower_, lp.col_upper_ = lo, hi
        lp.row_lower_, lp.row_upper_ = np.full(m, -hs.kHighsInf), b
        lp.a_matrix_.format_ = hs.MatrixFormat.kRowwise
        self._rows(lp.a_matrix_, A)
        self.h.passModel(lp)

    @staticmethod
    def _rows(mat, A: np.ndarray) -> tuple:
        nz = A != 0
        start = np.concatenate([[0], np.cumsum(nz.sum(1))]).astype(np.int32)
        index, value = np.nonzero(nz)[1].astype(np.int32), A[nz]
        if mat is not None:
            mat.start_, mat.index_, mat.value_ = start, index, value
        return start[:-1], index, value

    def add(self, A: np.ndarray, b: np.ndarray) -> None:
        start, index, value = self._rows(None, A)
        self.h.addRows(len(b), np.full(len(b), -self.hs.kHighsInf), np.asarray(b, float), len(value), start,
                       index, value)

    def run(self):
        """("optimal", value, x) or ("infeasible", -inf, None)."""
        hs, h = self.hs, self.h
        h.run()
        st = h.getModelStatus()
        if st == hs.HighsModelStatus.kInfeasible:
            return "infeasible", -INF, None
        if st != hs.HighsModelStatus.kOptimal:
            return "failed", INF, None
        return "optimal", -h.getInfo().objective_function_value, np.array(h.getSolution().col_value)


def _with(node: Node, field: str, i: int, value: tuple[int, int]) -> Node:
    t = getattr(node, field)
    t = t[:i] + (value,) + t[i + 1:]
    return Node(**{**{f: getattr(node, f) for f in ("L", "k", "z")}, field: t})


BOUND_NODES = 2000  # default node budget of ``prove``: a few seconds on a laptop core


def prove(problem: Problem, incumbent: float, *, max_nodes: int = BOUND_NODES, tol: float = 1e-3,
          time_limit: float | None = None) -> Bound:
    """Upper bound on the optimum of ``problem`` given a design of objective ``incumbent``.

    Deterministic for a given ``max_nodes`` (the search order depends on nothing else); ``time_limit`` stops
    it earlier on a slow machine, the bound it returns is valid either way."""
    bb = BranchAndBound(problem, incumbent, iters=3)
    return bb.run(time_limit=math.inf if time_limit is None else time_limit, tol=tol, max_nodes=max_nodes)
