"""Solve every preset and print the figures: our search against the authors' evolutionary baseline and
their released structures.

    python benchmarks/solve.py [--runs 5] [--presets deepmad-r18,deepmad-mb] [--candidates 50000,500000]

Per preset: median wall time of the search over --runs runs, its gap (None: not proven), objective and
budget use; the evolution baseline (seed 0) at each candidate count with its objective, time and the
ratios to ours; the released structure of the same name scored by our program (objective, entropy alone,
and how far it breaks our budgets); both networks under the authors' own score (deepmad.tinynas).
Last, `deepmad design --preset deepmad-r50` as a whole process, beside `python -c pass`.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from deepmad import blocks, theory, tinynas
from deepmad.budget import evaluate
from deepmad.evolution import evolve
from deepmad.presets import PRESETS, RELEASED_NAME
from deepmad.solver import solve


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
    theirs = tinynas.score(tinynas.released(RELEASED_NAME[name]))
    try:
        ours = tinynas.score(tinynas.from_spec(spec))
        mine = f"{ours.final:,.2f} (feasible under their counts: {ours.feasible})"
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
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--candidates", default="50000,500000")
    a = ap.parse_args()
    counts = [int(c) for c in a.candidates.split(",") if c]
    for name in a.presets.split(","):
        problem = PRESETS[name]
        t, d = median_time(lambda: solve(problem), a.runs)
        s = evaluate(problem, [d.x])
        print(f"{name}: search objective {d.objective:,.2f}  median {t:.3f} s over {a.runs} runs  gap "
              f"{'not proven' if d.gap is None else f'{d.gap:.2e}'}  flops {s.macs[0] / problem.budget.flops:.2%}"
              f"  params {s.params[0] / problem.budget.params:.2%}  rho {s.rho[0]:.4f}")
        for n in counts:
            e = evolve(problem, candidates=n, seed=0)
            print(f"  evolution {n:>7,} candidates: objective {e.objective:,.2f} in {e.seconds:.2f} s"
                  f"  (search/evolution: objective x{d.objective / e.objective:.4f}, time x{t / e.seconds:.3f})")
        if name in RELEASED_NAME:
            print(released_row(name, problem))
            print(tinynas_row(name, d.spec))
        sys.stdout.flush()
    full, base = process_time(a.runs)
    print(f"`deepmad design --preset deepmad-r50` whole process: median {full:.3f} s "
          f"(python -c pass: {base:.3f} s; difference {full - base:.3f} s)")


if __name__ == "__main__":
    main()
