"""``deepmad sweep``: the paper's design studies in one command (Tables 1, 2, 7, 8; Table 3's resolution and scale).

One quantity is swept over a list, everything else fixed (a preset's problem, or a block family and budgets):

  rho         ρ0 (Table 1: DeepMAD-R18 over 0.1, 0.3, 0.5, 0.7; Table 2: DeepMAD-B0 over 0.3 ... 2.0)
  alpha5      the weight of the last scale, the others 1 (Table 7: 1, 8, 16)
  guidelines  all, -1, -2, -3 (Table 8: each guideline switched off; ``-1-3`` drops two): guideline 1 off is
              α = (0, ..., 0, 1) (the entropy of the last scale only, Eq. 4 of the whole network), guideline 2
              off is β = 0, guideline 3 off lets channels decrease (``api.problem``)
  flops       a model family: FLOPs budgets, the params budget scaled with them (the base's params/FLOPs ratio)
              unless it is given
  resolution  the input side (Table 3: DeepMAD-29M at 224 and 288)

Every design is solved as ``deepmad design`` solves it (``exact.solve``: the search, then the branch and bound
that proves its gap), in parallel processes (one per value, at most ``jobs``); each solve is deterministic, so
the sweep is too, whatever the number of processes. Then every design is scored under every other problem of
the sweep: where one problem's design is feasible in another's and better there (a design for ρ0 = 0.3 is a
design for ρ0 = 0.5), it replaces that problem's design (``found_by`` says whose solve found it); the proven
bound stays, the gap shrinks. So along a sweep whose feasible sets are nested the objectives never decrease.

Where the paper prints a row for a design's exact problem (same space, budgets, α, β), its accuracy stands
beside it (``paper_rows``; the tables ship in ``deepmad/core/data/paper_tables.json``).
"""
from __future__ import annotations

import functools
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from .. import api
from ..core import paper
from ..core.analysis import Analysis, usage
from ..core.bound import default_workers
from ..core.budget import Problem, evaluate, in_space, parse_count, to_spec
from ..core.presets import PRESETS
from ..core.result import Infeasible

QUANTITIES = ("rho", "alpha5", "guidelines", "flops", "resolution")
GUIDELINES = {"1": "multi-scale entropy", "2": "uniform stage depth", "3": "non-decreasing channels"}


@dataclass(frozen=True)
class Point:
    """One value of the sweep and its design (or why there is none)."""

    value: Any  # the swept value: a float (rho, alpha5, flops), an int (resolution) or a guideline label
    label: str  # the value as text (file names, tables)
    problem: Problem
    design: Any | None  # deepmad.core.result.Design; None when the problem is infeasible
    analysis: Analysis | None
    error: str | None  # the Infeasible message
    found_by: str | None  # label of the point whose solve found the design (itself unless improved)
    paper: tuple[dict, ...]  # the paper's rows for exactly this problem


@dataclass(frozen=True)
class Sweep:
    quantity: str
    name: str  # the base problem's name (a preset's, or deepmad-<block>)
    points: tuple[Point, ...]
    seconds: float  # wall time of the whole sweep


# ---------------------------------------------------------------------------------------------- values

def _split(text: str | Sequence, what: str) -> list:
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    if not items or any(t == "" for t in items):
        raise ValueError(f"{what}: expected a comma-separated list, got {text!r}")
    return items


def guideline_label(text: str) -> str:
    """'all', '-1', '-2', '-3' or a combination like '-1-3' (normalized); a clear error else."""
    t = str(text).strip().lower()
    if t == "all":
        return "all"
    parts = t.split("-")
    if parts[0] != "" or len(parts) < 2 or any(p not in GUIDELINES for p in parts[1:]) or len(set(parts[1:])) < len(parts) - 1:
        raise ValueError(f"guidelines: expected all, -1, -2, -3 or a combination like -1-3 (a guideline switched "
                         f"off), got {text!r}")
    return "-" + "-".join(sorted(parts[1:]))


def parse_values(quantity: str, text: str | Sequence) -> list:
    """The swept values of a quantity from '0.1,0.3' (or a list); a clear error names the quantity."""
    if quantity not in QUANTITIES:
        raise ValueError(f"sweep: expected one of {', '.join(QUANTITIES)}, got {quantity!r}")
    items = _split(text, quantity)
    out: list = []
    for t in items:
        if quantity == "guidelines":
            out.append(guideline_label(t))
        elif quantity == "flops":
            out.append(parse_count(t, "flops"))
        elif quantity == "resolution":
            try:
                v = int(t)
            except (TypeError, ValueError):
                raise ValueError(f"resolution: expected integers like 224,288, got {t!r}") from None
            if v < 1:
                raise ValueError(f"resolution: expected an integer >= 1, got {v}")
            out.append(v)
        else:
            try:
                v = float(t)
            except (TypeError, ValueError):
                raise ValueError(f"{quantity}: expected numbers like 0.1,0.3, got {t!r}") from None
            if not math.isfinite(v) or (v <= 0 if quantity == "rho" else v < 0):
                raise ValueError(f"{quantity}: expected numbers {'> 0' if quantity == 'rho' else '>= 0'}, got {t!r}")
            out.append(v)
    if len(set(out)) != len(out):
        raise ValueError(f"{quantity}: a value is given twice in {text!r}")
    return out


def label(quantity: str, value: Any) -> str:
    if quantity == "flops":
        return f"{value / 1e9:.4g}G" if value >= 1e9 else f"{value / 1e6:.4g}M"
    if quantity in ("rho", "alpha5"):
        return f"{value:g}"
    return str(value)


# ---------------------------------------------------------------------------------------------- problems

def problems(quantity: str, values: Sequence, preset: str | None = None, **kw) -> list[Problem]:
    """The problem of every value: ``api.problem(preset, **kw)`` with the swept quantity set."""
    kw = {k: v for k, v in kw.items() if v is not None}
    if quantity == "alpha5" and "alpha" in kw:
        raise ValueError("alpha5: sweeping the last scale's weight sets alpha (the others 1); drop --alpha")
    if quantity == "guidelines" and ("multiscale" in kw or "allow_decreasing" in kw):
        raise ValueError("guidelines: the sweep switches the guidelines itself; drop --no-multiscale and "
                         "--allow-decreasing")
    if quantity in kw:
        raise ValueError(f"{quantity}: it is the swept quantity; give its values once")
    first = {quantity: values[0]} if quantity in ("rho", "flops", "resolution") else {}
    base = api.problem(preset, **kw, **first)  # checks the fixed part once (a clear error before any solve)
    if quantity == "flops" and preset is not None:
        base = api.problem(preset, **kw)  # the preset's own params/FLOPs ratio scales the family
    out = []
    for v in values:
        over = dict(kw)
        if quantity == "rho":
            over["rho"] = v
        elif quantity == "alpha5":
            m = len(base.space.scale_ends())
            over["alpha"] = (1.0,) * (m - 1) + (float(v),)
        elif quantity == "guidelines":
            off = set(v[1:].split("-")) if v != "all" else set()
            over["multiscale"] = "1" not in off
            over["allow_decreasing"] = "3" in off
            if "2" in off:
                over["beta"] = 0.0
        elif quantity == "flops":
            over["flops"] = v
            if "params" not in kw:
                over["params"] = base.budget.params * v / base.budget.flops
        elif quantity == "resolution":
            over["resolution"] = v
        out.append(api.problem(preset, **over))
    return out


# ---------------------------------------------------------------------------------------------- the paper

def _key(p: Problem) -> tuple:
    b = p.budget
    return (p.space, b.flops, b.params, b.rho0, p.alpha, b.beta, b.classifier)


@functools.lru_cache(maxsize=1)
def paper_rows() -> tuple[tuple[tuple, dict], ...]:
    """(problem key, row) of every printed row of Tables 1, 2, 3, 7, 8 that is a DeepMAD design of a preset's
    problem: row = {table, model, acc, note}."""
    out = []

    def add(table: str, model: str, acc: float, note: str, preset: str, **over) -> None:
        out.append((_key(api.problem(preset, **over)), {"table": table, "model": model, "acc": acc, "note": note}))

    for r in paper.table("table1_resnet_family"):
        name = r["model"].lower()
        if name in PRESETS:
            add("Table 1", r["model"], r["acc"], f"rho {r['rho']:g}, ImageNet top-1", name, rho=r["rho"])
    for r in paper.table("table2_mobile"):
        name = r["model"].lower()
        if name in PRESETS:
            add("Table 2", r["model"], r["acc"], f"rho {r['rho']:g}, ImageNet top-1", name, rho=r["rho"])
    for r in paper.table("table3_sota"):
        name = r["model"].rstrip("*").lower()
        if name in PRESETS:
            add("Table 3", r["model"], r["acc"], f"{r['resolution']} px, ImageNet top-1", name,
                resolution=r["resolution"])
    for r in paper.table("table7_stage_weight_alpha5"):
        add("Table 7", r["model"], r["imagenet_acc"], f"alpha5 {r['alpha5']:g}, ImageNet top-1; COCO AP "
            f"{r['coco_ap']:g}", "deepmad-r18", alpha=(1, 1, 1, 1, r["alpha5"]))
    switches = {"1": dict(multiscale=False), "2": dict(beta=0.0), "3": dict(allow_decreasing=True), "": {}}
    for r in paper.table("table8_guidelines_b0_120ep"):
        g = r["without"].split()[1] if r["without"] != "none" else ""
        what = f"without guideline {g}" if g else "all guidelines"
        add("Table 8", "DeepMAD-B0", r["acc"], f"{what}, ImageNet top-1 after 120 epochs", "deepmad-b0", **switches[g])
    return tuple(out)


def paper_for(problem: Problem) -> tuple[dict, ...]:
    """The paper's rows for exactly this problem (none when any setting differs from the paper's)."""
    k = _key(problem)
    return tuple(dict(row) for key, row in paper_rows() if key == k)


# ---------------------------------------------------------------------------------------------- solving

def _solve(job: tuple[Problem, dict]):
    """One design (run in a worker process): the Design, or the Infeasible message."""
    prob, kw = job
    try:
        return api.solve(prob, **kw)
    except Infeasible as e:
        return str(e)


def _pool(jobs: int):
    """Worker processes: forked on Linux (fast, and no re-import of the caller's main module, so a script
    without a ``__main__`` guard works), spawned elsewhere."""
    import multiprocessing as mp
    import sys

    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)


def _adopt(points: list[Point]) -> list[Point]:
    """Every problem's design replaced by another point's where that one is feasible there and better."""
    out = []
    for p in points:
        best, by = p.design, p.found_by
        for q in points:
            if q is p or q.design is None or len(q.design.x) != 4 * p.problem.space.n + 1:
                continue
            x = np.array([q.design.x])
            s = evaluate(p.problem, x)
            if not (s.feasible[0] and in_space(p.problem, x)[0]):
                continue
            f = float(s.objective[0])
            if best is None or f > best.objective + 1e-9 * abs(best.objective):
                base = best if best is not None else q.design
                spec = to_spec(p.problem, q.design.x, name=p.problem.name)
                bound = None if p.design is None else p.design.bound
                gap = None if bound is None else max(0.0, (bound - f) / abs(f))
                status = "optimal" if gap == 0.0 else base.status
                best = replace(base, problem=p.problem, x=q.design.x, spec=spec, objective=f, bound=bound, gap=gap,
                               status=status)
                by = q.label
        if best is not p.design:
            p = replace(p, design=best, analysis=api.analyze_design(best), found_by=by, error=None)
        out.append(p)
    return out


def run(quantity: str, values: Sequence | str, preset: str | None = None, *, jobs: int | None = None,
        bound_nodes: int | None = None, progress=None, **kw) -> Sweep:
    """Solve the problem of every value (see the module docstring). kw: ``api.problem``'s keywords for the
    fixed part; bound_nodes: each proof's node budget (``deepmad design --bound-nodes``); jobs: processes (default:
    one per value, at most the CPUs over the processes of each proof, ``bound.default_workers``);
    progress(done, total): called as designs finish."""
    t0 = time.perf_counter()
    values = parse_values(quantity, values)
    probs = problems(quantity, values, preset, **kw)
    labels = [label(quantity, v) for v in values]
    solve_kw = {} if bound_nodes is None else {"bound_nodes": bound_nodes}
    api.solve  # noqa: B018 (the worker's entry point)
    if jobs is None:  # each proof runs in bound.default_workers() processes of its own
        jobs = min(len(probs), max(1, (os.cpu_count() or 1) // default_workers()))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected an integer >= 1, got {jobs!r}")
    work = [(p, solve_kw) for p in probs]
    results = []
    if jobs == 1 or len(work) == 1:
        for w in work:
            results.append(_solve(w))
            if progress:
                progress(len(results), len(work))
    else:
        with _pool(min(jobs, len(work))) as ex:
            for r in ex.map(_solve, work):  # in order: the same rows whatever finishes first
                results.append(r)
                if progress:
                    progress(len(results), len(work))
    points = []
    for v, lab, p, r in zip(values, labels, probs, results):
        if isinstance(r, str):
            points.append(Point(v, lab, p, None, None, r, None, paper_for(p)))
        else:
            points.append(Point(v, lab, p, r, api.analyze_design(r), None, lab, paper_for(p)))
    points = _adopt(points)
    return Sweep(quantity, probs[0].name, tuple(points), time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------- reports

def profile(point: Point) -> dict[str, list[int]]:
    """Depths, channels, mids and kernels per stage of a point's design."""
    spec = point.design.spec
    return {"depths": [s.depth for s in spec.stages], "channels": [s.channels for s in spec.stages],
            "mids": [s.mid for s in spec.stages], "kernels": [s.kernel for s in spec.stages],
            "stem": spec.stem.channels}


def spec_name(sweep: Sweep, point: Point) -> str:
    """File name of a point's spec: <name>-<quantity>-<value>.yaml."""
    lab = point.label.replace("-", "without", 1).replace("-", "") if sweep.quantity == "guidelines" else point.label
    return f"{sweep.name}-{sweep.quantity}-{lab}.yaml"


def to_json(sweep: Sweep, files: dict | None = None) -> dict[str, Any]:
    """The JSON document of ``deepmad sweep``: one entry per value, in order."""
    from ..core.spec import to_dict
    from ..report import budget_json

    rows = []
    for p in sweep.points:
        row: dict[str, Any] = {"value": p.value, "label": p.label, "status": "infeasible" if p.design is None else "designed",
                               "error": p.error, "paper": [dict(r) for r in p.paper],
                               "budget": budget_json(p.problem.budget), "alpha": list(p.problem.alpha),
                               "ordered": p.problem.space.ordered, "resolution": p.problem.space.resolution}
        if p.design is not None:
            d, a = p.design, p.analysis
            row.update({"objective": d.objective, "entropy": a.entropy, "penalty": a.penalty, "rho": a.rho,
                        "rho_max": a.rho_max, "flops": a.flops, "params": a.params, "layers": a.layers,
                        **profile(p), "gap": d.gap, "bound": d.bound, "bound_nodes": d.bound_nodes,
                        "proof": d.status,
                        "seconds": d.seconds, "found_by": p.found_by, "usage": usage(a, p.problem.budget),
                        "spec_file": None if files is None else files["specs"].get(p.label),
                        "spec": to_dict(d.spec)})
        rows.append(row)
    return {"sweep": sweep.quantity, "name": sweep.name, "values": [p.value for p in sweep.points],
            "designs": rows, "seconds": sweep.seconds,
            "files": None if files is None else {"json": files["json"], "plot": files["plot"],
                                                  "specs": [files["specs"].get(p.label) for p in sweep.points]}}


def text(sweep: Sweep, files: dict | None = None) -> str:
    """The human report: one row per design, then the files written."""
    from ..report import gap_text, num, si

    head = (sweep.quantity, "objective", "entropy", "rho", "FLOPs", "params", "depths", "channels", "gap", "s",
            "paper")
    rows = [head]
    for p in sweep.points:
        acc = "; ".join(f"{r['acc']:g}% ({r['table']})" for r in p.paper) or "-"
        if p.design is None:
            rows.append((p.label, "infeasible", "-", "-", "-", "-", "-", "-", "-", "-", acc))
            continue
        d, a, pr = p.design, p.analysis, profile(p)
        found = "" if p.found_by == p.label else f" (from {p.found_by})"
        rows.append((p.label, num(d.objective) + found, num(a.entropy), f"{a.rho_max:.3f}", si(a.flops), si(a.params),
                     ",".join(map(str, pr["depths"])), ",".join(map(str, [pr["stem"]] + pr["channels"])),
                     gap_text(d.gap), f"{d.seconds:.2f}", acc))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"{sweep.name}: sweep of {sweep.quantity} over {len(sweep.points)} values, {sweep.seconds:.1f} s", ""]
    for j, r in enumerate(rows):
        lines.append("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1])]
                               + [r[-1]]).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    errors = [f"{p.label}: {p.error}" for p in sweep.points if p.error]
    if errors:
        lines += [""] + errors
    if files is not None:
        lines += ["", f"specs, JSON ({os.path.basename(files['json'])}) written to {files['dir']}"
                  + ("" if files["plot"] is None else f"; plot {files['plot']}")]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- files

def targets(sweep_name: str, quantity: str, labels: Sequence[str], out: str, plot: bool) -> list[str]:
    """Every path ``write`` creates (checked before solving: nothing is overwritten without force)."""
    dummy = Sweep(quantity, sweep_name, (), 0.0)
    names = [spec_name(dummy, Point(None, lab, None, None, None, None, None, ())) for lab in labels]
    names += ["sweep.json"] + (["sweep.png"] if plot else [])
    return [os.path.join(out, n) for n in names]


def check_out(paths: Sequence[str], force: bool) -> None:
    """A one-line error when a target exists (without force) or its directory cannot be written."""
    for path in paths:
        if os.path.isdir(path):
            raise ValueError(f"-o/--output: {path} is a directory, expected a file path there")
        if os.path.exists(path) and not force:
            raise ValueError(f"-o/--output: {path} exists; use --force to overwrite it, or another -o/--output")
    parent = os.path.dirname(paths[0]) or "."
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"-o/--output {parent}: not a directory")
    if os.path.isdir(parent) and not os.access(parent, os.W_OK):
        raise ValueError(f"-o/--output {parent}: directory is not writable")


def write(sweep: Sweep, out: str, plot: bool = True) -> dict:
    """Write every design's spec, the JSON document and (plot) the PNG into out, each atomically."""
    from ..core.spec import save, write_atomic
    from ..report import dumps

    os.makedirs(out, exist_ok=True)
    files: dict[str, Any] = {"dir": out, "specs": {}, "json": os.path.join(out, "sweep.json"), "plot": None}
    for p in sweep.points:
        if p.design is not None:
            path = os.path.join(out, spec_name(sweep, p))
            save(p.design.spec, path)
            files["specs"][p.label] = path
    if plot:
        from .plots import sweep_png

        files["plot"] = os.path.join(out, "sweep.png")
        sweep_png(sweep, files["plot"])
    write_atomic(files["json"], dumps(to_json(sweep, files)))
    return files


__all__ = ["QUANTITIES", "Point", "Sweep", "parse_values", "problems", "paper_rows", "paper_for", "run", "to_json",
           "text", "write", "targets", "check_out", "profile", "guideline_label"]
