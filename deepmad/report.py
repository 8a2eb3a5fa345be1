"""Human-readable and JSON reports of an analysis or a design (what the ``deepmad`` command prints).

Every number printed comes from an ``api.Analysis``, a ``solver.Design`` or a ``budget.Budget``: nothing here
computes or stores a result of its own.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .core.analysis import Analysis, usage
from .core.spec import to_dict


def si(x: float, unit: str = "") -> str:
    """1.8e9 -> '1.8 G', 25557032 -> '25.56 M' (four significant digits)."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.4g} {suffix}{unit}".rstrip()
    return f"{x:.4g} {unit}".rstrip()


def num(x: float | None, digits: int = 2) -> str:
    """A float with a fixed number of decimals; inf / None spelled out."""
    if x is None:
        return "-"
    if math.isinf(x):
        return "-inf" if x < 0 else "inf"
    return f"{x:,.{digits}f}"


def finite(obj: Any) -> Any:
    """The same structure in plain Python types, non-finite floats replaced by None (JSON has no inf/nan)."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: dict[str, Any]) -> str:
    """One JSON object, deterministic key order as given."""
    return json.dumps(finite(obj), indent=2, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------------------------- table

def _map(side) -> str:
    """A feature map's size: r x r, or h x w for a traced non-square map (its side r = √(h·w))."""
    h, w = getattr(side, "hw", (side, side))
    return f"{h}x{w}"


_COLUMNS = ("", "block", "channels", "mid", "kernel", "depth", "stride", "out", "layers", "H prefix", "rho prefix")


def table(a: Analysis, latency=None) -> str:
    """The per-stage table: stem, stages, head; entropy H and ρ of the prefix ending at each row; with a latency
    prediction (``deepmad.core.latency.Prediction``), the predicted ms of each row too."""
    rows = [_COLUMNS + (("ms",) if latency is not None else ())]
    for r in a.rows:
        rows.append((r.name, r.block, str(r.channels), "-" if r.mid is None else str(r.mid), f"{r.kernel}x{r.kernel}",
                     str(r.depth), str(r.stride), _map(r.resolution), str(r.layers),
                     num(r.entropy, 1), num(r.rho, 3))
                    + ((num(latency.rows.get(r.name, 0.0), 2),) if latency is not None else ()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(row[2:], widths[2:])]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _alpha(alpha: tuple[float, ...]) -> str:
    return ",".join(f"{x:g}" for x in alpha)


def summary(a: Analysis, budget=None) -> list[tuple[str, str]]:
    """(label, value) lines: objective, entropy, ρ, FLOPs, params, layers; with % of each budget if given."""
    use = usage(a, budget) if budget is not None else None
    cls = "with classifier" if a.classifier else "no classifier"
    flops = f"{si(a.flops)} MACs ({a.flops:,}, {cls})"
    params = f"{si(a.params)} ({a.params:,}, {cls})"
    rho = f"{a.rho:.3f} (largest scale prefix {a.rho_max:.3f})"
    if use is not None:
        flops += f"  {100 * use['flops']:.1f}% of {si(budget.flops)}"
        params += f"  {100 * use['params']:.1f}% of {si(budget.params)}"
        rho += f"  {100 * use['rho']:.1f}% of rho0 {budget.rho0:g}"
    return [("objective", f"{num(a.objective)}  (entropy {num(a.entropy)} - depth penalty {num(a.penalty)})"),
            ("entropy", f"{num(a.entropy)}  (alpha {_alpha(a.alpha)}, beta {a.beta:g})"),
            ("rho", rho), ("FLOPs", flops), ("params", params), ("layers", str(a.layers))]


def _lines(title: str, a: Analysis, extra: list[tuple[str, str]], latency=None) -> str:
    width = max(len(k) for k, _ in extra)
    out = [title, "", table(a, latency), ""]
    out += [f"{k.ljust(width)}  {v}" for k, v in extra]
    return "\n".join(out) + "\n"


def latency_summary(pred, model, budget: float | None = None, in_bound: bool = False,
                    margin: float = 0.0) -> list[tuple[str, str]]:
    """(label, value) lines of a latency prediction: total (and share of a budget, met with a margin), where it
    comes from."""
    value = f"{num(pred.total)} ms predicted (pool, classifier and fixed cost {num(pred.rows.get('tail', 0.0))} ms)"
    if budget is not None:
        value += f"  {100 * pred.total / budget:.1f}% of {budget:g} ms"
        if margin:
            value += f" (designed within {budget / (1 + margin):.4g} ms: a design margin of {100 * margin:.1f}%)"
        value += "; the gap's bound includes it" if in_bound else ""
    return [("latency", value), ("latency model", model.describe())]


def latency_json(pred, model, budget: float | None = None) -> dict[str, Any]:
    """The ``latency`` object of the JSON reports."""
    fits = model.meta.get("fits", {})
    return {"predicted_ms": pred.total, "rows_ms": dict(pred.rows), "budget_ms": budget, "model": model.source,
            "environment": model.meta.get("environment"),
            "statistic": model.statistic,  # of a network's timed runs
            "fit": {f"{f.block}:{f.act}": fits.get(f"{f.block}:{f.act}") for f in model.families}}


def analysis_text(a: Analysis, latency=None) -> str:
    """Human report of an analyzed network; latency: (Prediction, LatencyModel) to add its predicted latency."""
    spec = a.spec
    title = f"{a.name or 'network'}: {spec.resolution}x{spec.resolution} input, {len(spec.stages)} stages"
    extra = summary(a) + (latency_summary(*latency) if latency is not None else [])
    return _lines(title, a, extra, latency[0] if latency is not None else None)


STOPPED = {"gap_limit": "stopped at the gap tolerance", "node_limit": "stopped at the node limit",
           "time_limit": "stopped at the time limit"}


def gap_text(gap: float | None, status: str | None = None) -> str:
    """'0 (proven optimal)', '1.23% (stopped at the node limit)' or 'not proven'."""
    if gap is None:
        return "not proven"
    if gap == 0:
        return "0 (proven optimal)"
    return f"{100 * gap:.3g}%" + (f" ({STOPPED[status]})" if status in STOPPED else "")


def design_text(d, a: Analysis, latency=None) -> str:
    """Human report of a design: the table, the summary with budget usage, solve time and gap."""
    sp, bu = d.problem.space, d.problem.budget
    title = (f"{d.problem.name or 'design'}: {sp.block} blocks, {sp.resolution}x{sp.resolution} input, "
             f"{sp.n} stages, rho0 {bu.rho0:g}")
    procs = f", {d.proof_workers} processes" if d.proof_workers > 1 else ""
    extra = summary(a, bu) + [
        ("solver", f"{d.solver}, {d.seconds:.2f} s, {d.evaluated:,} candidates scored"),
        ("gap", gap_text(d.gap, d.status) + ("" if d.bound is None else f"  proven: optimum <= {num(d.bound)}, branch "
            f"and bound over {d.bound_nodes:,} nodes{procs}")),
        ("status", d.status if d.bound is not None else "not proven (--bound-nodes 0)"),
    ]
    if latency is not None:  # (Prediction, LatencyModel): the design's predicted latency against its budget
        extra += latency_summary(latency[0], latency[1], bu.latency_asked, d.bound is not None, bu.latency_margin)
    return _lines(title, a, extra, latency[0] if latency is not None else None)


def analysis_json(a: Analysis, latency=None) -> dict[str, Any]:
    """The JSON object of ``deepmad analyze`` (with ``latency`` when a latency model was given)."""
    out = {**a.to_dict(), "spec": to_dict(a.spec)}
    if latency is not None:
        out["latency"] = latency_json(*latency)
    return out


def budget_json(bu) -> dict[str, Any]:
    return {"flops": bu.flops, "params": bu.params, "rho0": bu.rho0,
            "alpha": None if bu.alpha is None else list(bu.alpha), "beta": bu.beta, "classifier": bu.classifier,
            "latency_ms": getattr(bu, "latency_asked", None), "latency_margin": getattr(bu, "latency_margin", 0.0),
            "latency_limit_ms": getattr(bu, "latency", None)}


def guidelines_json(problem) -> dict[str, bool]:
    """Which of the paper's three guidelines (Sec. 4.2) the problem keeps: 1, the multi-scale entropy (α not
    the last scale's alone); 2, the depth penalty (β > 0); 3, non-decreasing widths."""
    alpha = problem.alpha
    return {"multiscale": any(w != 0 for w in alpha[:-1]), "depth_penalty": problem.budget.beta > 0,
            "non_decreasing": bool(problem.space.ordered)}


def design_json(d, a: Analysis, latency=None) -> dict[str, Any]:
    """The JSON object of ``deepmad design``: the analysis, the spec, and how it was solved (and with a latency
    model, ``latency`` and its share of the latency budget in ``usage``)."""
    out = {**a.to_dict(), "spec": to_dict(d.spec), "gap": d.gap, "bound": d.bound, "status": d.status,
           "bound_nodes": d.bound_nodes, "bound_workers": d.proof_workers, "seconds": d.seconds,
           "solver": d.solver, "evaluated": d.evaluated, "budget": budget_json(d.problem.budget),
           "usage": usage(a, d.problem.budget), "guidelines": guidelines_json(d.problem)}
    if latency is not None:
        bu = d.problem.budget
        out["latency"] = {**latency_json(latency[0], latency[1], bu.latency_asked), "in_bound": d.bound is not None,
                          "margin": bu.latency_margin}
        if bu.latency is not None:
            out["usage"]["latency"] = latency[0].total / bu.latency_asked
    return out


def presets_text(problems) -> str:
    """Table of the presets and their budgets."""
    rows = [("preset", "block", "input", "FLOPs (MACs)", "params", "rho0", "head")]
    for p in problems:
        sp, bu = p.space, p.budget
        rows.append((p.name, sp.block, str(sp.resolution), si(bu.flops), si(bu.params), f"{bu.rho0:g}",
                     "-" if sp.head is None else str(sp.head)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def presets_json(problems) -> dict[str, Any]:
    """The JSON object of ``deepmad presets``."""
    return {"presets": [{"name": p.name, "block": p.space.block, "resolution": p.space.resolution,
                         "strides": list(p.space.strides), "head": p.space.head, **budget_json(p.budget)}
                        for p in problems]}


# ---------------------------------------------------------------------------------------------- MLPs (Section 3)

def mlp_table(a) -> str:
    """Per-layer table of an MLP: widths, params, and the entropy (Eq. 1) and ρ of the prefix ending there."""
    rows = [("layer", "in", "out", "params", "H prefix", "rho prefix")]
    for r in a.rows:
        rows.append((str(r.index), str(r.inputs), str(r.outputs), f"{r.params:,}", num(r.entropy, 1), num(r.rho, 3)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def mlp_text(a, d=None) -> str:
    """Human report of an analyzed MLP, or (d) of a designed one, with its budget usage and proof."""
    sp = a.spec
    hidden = ",".join(map(str, sp.hidden)) or "none"
    title = f"{a.name or 'mlp'}: MLP {sp.inputs} -> {sp.outputs}, {a.layers} linear layers, hidden {hidden}"
    extra = [("entropy", f"{num(a.entropy)}  (Eq. 1: w_(L+1) * sum log w_i)"),
             ("rho", f"{a.rho:.3f}"), ("params", f"{si(a.params)} ({a.params:,})"),
             ("FLOPs", f"{si(a.flops)} MACs ({a.flops:,}, one input)"), ("layers", str(a.layers))]
    if d is not None:
        p = d.problem
        extra[1] = ("rho", f"{a.rho:.3f}  {100 * a.rho / p.rho0:.1f}% of rho0 {p.rho0:g}")
        extra[2] = ("params", f"{si(a.params)} ({a.params:,})  {100 * a.params / p.params:.1f}% of {si(p.params)}")
        extra += [("solver", f"{d.solver} over {d.evaluated} depths (hidden widths {p.step}..{p.max_width}, step "
                             f"{p.step}), {d.seconds:.2f} s"),
                  ("gap", gap_text(d.gap) + f"  proven: every depth scored, entropy <= {num(d.bound)}")]
    width = max(len(k) for k, _ in extra)
    out = [title, "", mlp_table(a), ""] + [f"{k.ljust(width)}  {v}" for k, v in extra]
    return "\n".join(out) + "\n"


def mlp_json(a, d=None) -> dict[str, Any]:
    """The JSON object of ``deepmad analyze`` / ``design --block mlp`` for an MLP."""
    out = a.to_dict()
    if d is not None:
        p = d.problem
        out.update({"objective": d.objective, "gap": d.gap, "bound": d.bound, "seconds": d.seconds,
                    "solver": d.solver, "evaluated": d.evaluated,
                    "budget": {"params": p.params, "rho0": p.rho0, "max_depth": p.max_depth,
                               "max_width": p.max_width, "step": p.step},
                    "usage": {"params": a.params / p.params, "rho": a.rho / p.rho0}})
    return out
