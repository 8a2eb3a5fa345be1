"""Solve every preset and print the figures: our exact solver (search, then branch and bound) against the
authors' evolutionary baseline and their released structures.

    python benchmarks/solve.py [--runs 5] [--evo-runs 3] [--presets deepmad-r18,deepmad-mb]
                               [--candidates 50000,500000] [--bound-nodes 1000]

Per preset: the exact solve as `deepmad design` runs it (``deepmad.api.solve``: the light search, then the
branch and bound at its default node budget), median wall time over --runs runs, its objective, proven bound,
gap and budget use; the same at each larger --bound-nodes budget (one run: time, objective, gap); the search
alone (``--bound-nodes 0``: the full search, no proof), median time and objective; the evolution baseline (seed
0) at each candidate count with its objective, median time over --evo-runs runs and the ratios to the exact
solve (objective exact/evolution, time exact/evolution); the released structure of the same name scored by
our program (objective, entropy alone, and how far it breaks our budgets); both networks under the authors'
own score (deepmad.core.tinynas). Last, `deepmad design --preset deepmad-r50` as a whole process, beside
`python -c pass`, and a summary. The machine's load average is printed first and last: timings on a shared
machine are only comparable within one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from deepmad import api
from deepmad.core import blocks, theory, tinynas
from deepmad.core.bound import BOUND_NODES
from deepmad.core.budget import evaluate
from deepmad.core.evolution import evolve
from deepmad.core.presets import PRESETS, RELEASED_NAME
from deepmad.core.solver import solve


def median_time(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def released_row(name: str, problem) -> str:
    structure = tinynas.released(RELEASED_NAME[name])
    spec = tinynas.to_spec(structure)
    units = blocks.units(spec)
    cost = blocks.cost(spec, classifier=problem.budget.classifier)
    depths = [s.depth for s in spec.stages]
    b = problem.budget
    over = [f"{what} +{100 * (v / lim - 1):.2f}%" for what, v, lim in
            (("flops", cost.macs, b.flops), ("params", cost.params, b.params),
             ("rho", theory.rho_max(units), b.rho0)) if v > lim]
    return (f"  released {RELEASED_NAME[name]}: objective {theory.objective(units, depths, problem.alpha):,.2f}"
            f"  entropy {theory.entropy(units, problem.alpha):,.2f}  penalty "
            f"{theory.depth_penalty(depths):,.2f}  breaks our budgets: {', '.join(over) or 'none'}")


def tinynas_row(name: str, spec) -> str:
    released = tinynas.released(RELEASED_NAME[name])
    theirs = tinynas.score(released)
    try:
        ours = tinynas.score(tinynas.from_spec(spec), budgets=released.budgets)
        mine = f"{ours.final:,.2f} (within their budgets under their counts: {ours.feasible})"
    except ValueError as e:
        mine = f"not scorable ({e})"
    return f"  authors' score: ours {mine}; released {theirs.final:,.2f}"


def process_time(runs: int) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "deepmad", "design", "--preset", "deepmad-r50"]
    base, _ = median_time(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), runs)
    full, _ = median_time(lambda: subprocess.run(cmd, check=True, capture_output=True), runs)
    return full, base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--evo-runs", type=int, default=3)
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--candidates", default="50000,500000")
    ap.add_argument("--bound-nodes", default="1000",
                    help="larger node budgets of the branch and bound to report too, comma-separated")
    a = ap.parse_args()
    counts = [int(c) for c in a.candidates.split(",") if c]
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs); "
          f"default node budget {BOUND_NODES}")
    times, gaps, wins = {}, {}, {n: 0 for n in counts}
    names = a.presets.split(",")
    for name in names:
        problem = PRESETS[name]
        t, d = median_time(lambda: api.solve(problem), a.runs)
        times[name], gaps[name] = t, d.gap
        s = evaluate(problem, [d.x])
        print(f"{name}: exact solve objective {d.objective:,.2f}  median {t:.3f} s over {a.runs} runs  "
              f"bound {d.bound:,.2f}  gap {d.gap:.2%} ({d.bound_nodes:,} nodes)  flops "
              f"{s.macs[0] / problem.budget.flops:.2%}  params {s.params[0] / problem.budget.params:.2%}  "
              f"rho {s.rho[0]:.4f}")
        for nodes in [int(v) for v in a.bound_nodes.split(",") if v]:
            tb, p = median_time(lambda: api.solve(problem, bound_nodes=nodes), 1)
            print(f"  with {p.bound_nodes:,} nodes: {tb:.2f} s  objective {p.objective:,.2f}  bound {p.bound:,.2f}  "
                  f"gap {p.gap:.2%}")
        ts, alone = median_time(lambda: solve(problem), a.runs)
        print(f"  search alone (--bound-nodes 0): objective {alone.objective:,.2f}  median {ts:.3f} s  "
              f"(exact/search: objective x{d.objective / alone.objective:.4f})")
        for n in counts:
            te, e = median_time(lambda: evolve(problem, candidates=n, seed=0), a.evo_runs)
            wins[n] += d.objective >= e.objective
            print(f"  evolution {n:>7,} candidates: objective {e.objective:,.2f}  median {te:.3f} s over "
                  f"{a.evo_runs} runs  (exact/evolution: objective x{d.objective / e.objective:.4f}, "
                  f"time x{t / te:.3f})")
        if name in RELEASED_NAME:
            print(released_row(name, problem))
            print(tinynas_row(name, d.spec))
        sys.stdout.flush()
    full, base = process_time(a.runs)
    print(f"`deepmad design --preset deepmad-r50` whole process: median {full:.3f} s "
          f"(python -c pass: {base:.3f} s; difference {full - base:.3f} s)")
    slowest, loosest = max(times, key=times.get), max(gaps, key=gaps.get)
    print(f"summary: slowest median exact solve {times[slowest]:.3f} s ({slowest}); largest gap "
          f"{gaps[loosest]:.2%} ({loosest}); exact objective >= evolution's "
          + ", ".join(f"at {n:,} candidates on {wins[n]}/{len(names)} presets" for n in counts))
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
