"""Solve every preset as `deepmad design` does (search, then the branch and bound to the proven optimum) and print
the figures, beside the authors' evolutionary baseline and their released structures.

    python benchmarks/solve.py [--runs 3] [--presets deepmad-r18,deepmad-mb] [--candidates 50000,500000]
                               [--process deepmad-r50,deepmad-mb,deepmad-89m]

Per preset: the exact solve (``deepmad.api.solve`` at its defaults), median wall time over --runs runs, its status,
objective, proven bound and gap, the branch and bound's nodes and LP solves, time per node and the time of the
proof (to the proven optimum where the status is optimal); the evolution baseline (seed 0) at each candidate count,
objective and median time, with the ratios exact/evolution measured in the same run; the released structure of
the same name scored by our program; both networks under the authors' own score (``deepmad.core.tinynas``).
Last, for the --process presets, whole processes measured interleaved: `deepmad design --preset P` against
`deepmad design --preset P --solver evolution --bound-nodes 0` (the baseline at its 500,000 candidates), median
of --runs each, and their ratio; then every run, and the ratio of the fastest runs (on a shared machine the baseline's
own time varies most: 1.0-1.7 s in one process on the 2-core machine of 2026-12-03, against 1.13-1.29 s for the exact
solve). The machine's load average is printed first and last: timings on a shared machine are only comparable
within one run.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version

from deepmad import api
from deepmad.core import blocks, theory, tinynas
from deepmad.core.budget import evaluate
from deepmad.core.evolution import evolve
from deepmad.core.presets import PRESETS, RELEASED_NAME


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
    macs, params = blocks.counts(spec, classifier=problem.budget.classifier)
    depths = [s.depth for s in spec.stages]
    b = problem.budget
    over = [f"{what} +{100 * (v / lim - 1):.2f}%" for what, v, lim in
            (("flops", macs, b.flops), ("params", params, b.params), ("rho", theory.rho_max(units), b.rho0))
            if v > lim]
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


def process_times(preset: str, runs: int) -> tuple[list[float], list[float]]:
    """Wall times of the exact and of the evolutionary `deepmad design` processes, run interleaved."""
    exe = [sys.executable, "-m", "deepmad", "design", "--preset", preset, "--json"]
    exact, evo = [], []
    for _ in range(runs):
        for out, extra in ((exact, []), (evo, ["--solver", "evolution", "--bound-nodes", "0"])):
            t = time.perf_counter()
            subprocess.run(exe + extra, check=True, capture_output=True)
            out.append(time.perf_counter() - t)
    return exact, evo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--candidates", default="50000,500000")
    ap.add_argument("--process", default="deepmad-r50,deepmad-mb,deepmad-89m",
                    help="presets whose whole processes are timed against the evolution's (empty: none)")
    a = ap.parse_args()
    counts = [int(c) for c in a.candidates.split(",") if c]
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs); "
          f"python {platform.python_version()}, numpy {version('numpy')}, highspy {version('highspy')}")
    names = [n for n in a.presets.split(",") if n]
    optimal, wins = 0, {n: 0 for n in counts}
    for name in names:
        problem = PRESETS[name]
        t, d = median_time(lambda: api.solve(problem), a.runs)
        s = evaluate(problem, [d.x])
        optimal += d.status == "optimal"
        print(f"{name}: {d.status}, objective {d.objective:,.2f}, bound {d.bound:,.2f}, gap {d.gap:.2%}; median "
              f"{t:.3f} s over {a.runs} runs; proof {d.proof_seconds:.3f} s, {d.bound_nodes:,} nodes, "
              f"{d.lp_solves:,} LP solves, {d.proof_workers} process(es), "
              f"{1000 * d.proof_seconds / max(d.bound_nodes, 1):.2f} ms a node; flops "
              f"{s.macs[0] / problem.budget.flops:.2%}  params {s.params[0] / problem.budget.params:.2%}  "
              f"rho {s.rho[0]:.4f}")
        for n in counts:
            te, e = median_time(lambda: evolve(problem, candidates=n, seed=0), a.runs)
            wins[n] += d.objective >= e.objective
            print(f"  evolution {n:>7,} candidates: objective {e.objective:,.2f}  median {te:.3f} s  "
                  f"(exact/evolution: objective x{d.objective / e.objective:.4f}, time x{t / te:.3f})")
        if name in RELEASED_NAME:
            print(released_row(name, problem))
            print(tinynas_row(name, d.spec))
        sys.stdout.flush()
    print(f"summary: {optimal}/{len(names)} presets proven optimal; exact objective >= evolution's "
          + ", ".join(f"at {n:,} candidates on {wins[n]}/{len(names)}" for n in counts))
    for name in [n for n in a.process.split(",") if n]:
        exact, evo = process_times(name, a.runs)
        ex, ev = statistics.median(exact), statistics.median(evo)
        runs = "; ".join(f"{what} {', '.join(f'{t:.3f}' for t in ts)}"
                         for what, ts in (("exact", exact), ("evolution", evo)))
        print(f"whole process, {name}: `deepmad design` median {ex:.3f} s, `--solver evolution --bound-nodes 0` "
              f"median {ev:.3f} s, ratio {ex / ev:.2f} (interleaved, {a.runs} runs each: {runs} s; ratio of the "
              f"fastest runs {min(exact) / min(evo):.2f})", flush=True)
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
