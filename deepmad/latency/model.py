"""Latency model files: read (with a one-line warning when they come from another device or version), write
(atomically), and fit (non-negative least squares on measured blocks). No torch here: ``deepmad design
--latency-model FILE`` reads the file and the core evaluates it with numpy (``deepmad.core.latency``).

The file is JSON: ``deepmad_latency`` (format version), ``environment`` (device, its name, backend, threads,
batch, channels-last, torch / onnxruntime versions, CPU), ``grid`` and ``measure`` (what was measured, how),
``created``, ``seconds``, and ``families``: for each block family its block type, activation, coefficients
(``coef``: layer kind -> feature -> ms per unit) and ``fit`` (the fit's errors, see ``fit_family``).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.latency import (FEATURES, Family, LatencyModel, LatencyModelError, from_dict, kind_group, predict,
                            to_dict)
from ..core.result import DeepMADWarning
from ..core.spec import read_text, write_atomic
from .nnls import nnls


class LatencyModelWarning(DeepMADWarning):
    """A latency model used on another device, or with other library versions, than it was calibrated with."""


# ---------------------------------------------------------------------------------------------- files

def read(path: str | os.PathLike) -> LatencyModel:
    """The model in a file; a LatencyModelError (one line, naming the file) when it cannot be read."""
    p = Path(path)
    if p.is_dir():
        raise LatencyModelError(f"{p}: is a directory, expected a latency model file (.json)")
    text = read_text(p, LatencyModelError, "the latency model", "not a deepmad latency model (not UTF-8 text)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LatencyModelError(f"{p}: not a deepmad latency model (invalid JSON: {e.msg} at line {e.lineno} "
                                f"column {e.colno})") from None
    return from_dict(data, source=str(p))


def mismatches(model: LatencyModel) -> list[str]:
    """How this machine differs from the one the model was calibrated on (CPU, torch, onnxruntime versions).
    Read without importing torch (package metadata and /proc/cpuinfo)."""
    from .measure import cpu_name, versions

    env = model.meta.get("environment") or {}
    here_v = versions(env.get("backend", "torch"))
    out = []
    if env.get("device", "cpu") == "cpu" and env.get("device_name") and env.get("device_name") != cpu_name():
        out.append(f"CPU {env.get('device_name')!r} (this machine: {cpu_name()!r})")
    for lib in ("torch", "onnxruntime"):
        then = (env.get("versions") or {}).get(lib)
        if then and here_v.get(lib) != then:
            out.append(f"{lib} {then} (here: {here_v.get(lib) or 'not installed'})")
    return out


def warn_if_foreign(model: LatencyModel) -> None:
    """A LatencyModelWarning (one line) when the model was calibrated on another device or other versions."""
    diff = mismatches(model)
    if diff:
        warnings.warn(f"latency model {model.source or ''} was calibrated with {', '.join(diff)}: its predictions "
                      f"are for that device and those versions", LatencyModelWarning, stacklevel=3)


def load(path: str | os.PathLike, warn: bool = True) -> LatencyModel:
    """Read a model file; with warn, a LatencyModelWarning (one line) when it was calibrated elsewhere."""
    model = read(path)
    if warn:
        warn_if_foreign(model)
    return model


def save(model: LatencyModel, path: str | os.PathLike) -> None:
    """Write the model atomically (the old file, if any, is replaced only once the new one is complete)."""
    write_atomic(path, json.dumps(to_dict(model), indent=1, allow_nan=False) + "\n")


def as_model(value: Any, warn: bool = True) -> LatencyModel | None:
    """A LatencyModel from a model, a path to a model file, or None."""
    if value is None or isinstance(value, LatencyModel):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load(value, warn=warn)
    raise LatencyModelError(f"latency_model: expected a latency model file path, got {type(value).__name__}")


# ---------------------------------------------------------------------------------------------- fitting

def errors(pred: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Median, 90th percentile and largest |predicted / measured − 1|, and how many."""
    e = np.abs(np.asarray(pred, dtype=float) / np.asarray(measured, dtype=float) - 1)
    if not len(e):
        return {"count": 0}
    return {"count": int(len(e)), "median": float(np.median(e)), "p90": float(np.percentile(e, 90)),
            "max": float(e.max())}


def _nnls_relative(A: np.ndarray, t: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """θ >= 0 minimizing Σ w² ((A θ − t) / t)²: relative errors, so small and large items count alike."""
    scale = A.max(axis=0)
    scale[scale <= 0] = 1.0
    w = np.ones(len(t)) if weight is None else weight
    W = (A / scale) / t[:, None] * w[:, None]
    return nnls(W, w) / scale


JOINT_MIN = 12  # whole networks needed before they take part in the fit itself (below: a correction only)
JOINT_WEIGHTS = (1.0, 3.0, 10.0, 30.0)  # weights of a network's relative error against a part's, tried
FOLDS = 4  # cross-validation folds over the networks, to choose the weight


def _joint(A: np.ndarray, t: np.ndarray, N: np.ndarray, tn: np.ndarray, w: float) -> np.ndarray:
    """θ >= 0 fitted on the parts and the networks at once, a network's relative error weighted w."""
    weight = np.concatenate([np.ones(len(t)), np.full(len(tn), math.sqrt(w))])
    return _nnls_relative(np.vstack([A, N]), np.concatenate([t, tn]), weight)


def _scale_offset(parts: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """(a, b) >= 0 with measured ≈ a · parts + b (NNLS, relative errors)."""
    return _nnls_relative(np.column_stack([parts, np.ones_like(parts)]), measured)


def _fold(theta: np.ndarray, a: float, b: float, fixed: int) -> np.ndarray:
    """The correction a · Σ parts + b folded into the coefficients: every θ times a, b on the fixed cost."""
    out = theta * a
    out[fixed] += b
    return out


def _corrected(A: np.ndarray, t: np.ndarray, N: np.ndarray, tn: np.ndarray, fixed: int) -> np.ndarray:
    """θ of the parts with a correction fitted on the networks folded in (none where its scale is 0)."""
    th = _nnls_relative(A, t)
    a, b = _scale_offset(N @ th, tn)
    return th if a <= 0 else _fold(th, a, b, fixed)


def _fit(A: np.ndarray, t: np.ndarray, N: np.ndarray, tn: np.ndarray, fixed: int, w: float) -> np.ndarray:
    """θ fitted one way: w = 0, the parts then a correction on the networks; w > 0, jointly (``_joint``)."""
    return _corrected(A, t, N, tn, fixed) if w == 0 else _joint(A, t, N, tn, w)


def held_out(A: np.ndarray, t: np.ndarray, N: np.ndarray, tn: np.ndarray, fixed: int, w: float) -> np.ndarray:
    """predicted / measured − 1 of every network by a fit (``_fit``) that left its fold out (FOLDS folds)."""
    folds = np.arange(len(tn)) % FOLDS
    err = np.empty(len(tn))
    for f in range(FOLDS):
        tr, te = folds != f, folds == f
        err[te] = N[te] @ _fit(A, t, N[tr], tn[tr], fixed, w) / tn[te] - 1
    return err


def choose(A: np.ndarray, t: np.ndarray, N: np.ndarray, tn: np.ndarray,
           fixed: int) -> tuple[float, dict[str, float]]:
    """The way of fitting (0: parts, then a correction on the networks; w > 0: parts and networks jointly,
    a network weighted w) whose predictions of networks it was not fitted on are best: FOLDS-fold cross-
    validation over the networks, the mean |predicted / measured − 1| of the held-out ones."""
    cv = {f"{w:g}": float(np.abs(held_out(A, t, N, tn, fixed, w)).mean()) for w in (0.0,) + JOINT_WEIGHTS}
    best = min(cv, key=lambda k: (cv[k], float(k)))
    return float(best), cv


MARGIN_MIN = 4  # networks designed under latency budgets needed to tell the design margin (below: none)
MARGIN_MAX = 0.25


def design_margin(err: np.ndarray) -> float:
    """The design margin from held-out errors (predicted / measured − 1) of networks designed under latency
    budgets: how much slower than predicted the median one ran (0 if they ran faster), at most MARGIN_MAX.
    An optimizer goes where the model errs in its favour (the optimizer's curse), so designs at a budget run
    slower than the model's error on other networks suggests; budgets are met with this margin."""
    slower = float(np.median(1 / (1 + err) - 1)) if len(err) >= MARGIN_MIN else 0.0
    return min(MARGIN_MAX, max(0.0, slower))


def fit_family(block: str, act: str, parts: Sequence[tuple[dict, float]],
               networks: Sequence[tuple[Any, dict, float]] = (),
               budgeted: Sequence[bool] = ()) -> tuple[Family, dict[str, Any]]:
    """The coefficients of a family from measured parts (blocks, stems, heads, tails: their features and ms)
    and measured whole networks (spec, features, ms), all non-negative (so the model stays a posynomial).

    Parts measured alone miss what a whole network adds (weights and activations that are cold there, the
    fixed cost of a forward pass). With JOINT_MIN networks or more, the coefficients are fitted on parts and
    networks at once, a network's relative error weighted by the weight that predicts networks left out best
    (``choose``: cross-validation; 0 there means the correction below won). With fewer, the parts alone, then
    a correction predicted = a · Σ parts + b (a, b >= 0, ``correction``: kept only where it predicts left-out
    networks better), folded into the coefficients (every θ times a, ``net`` = b). budgeted: which networks
    were designed under a latency budget; their held-out errors give the family's design margin
    (``design_margin``; with the joint fit only). Returns the family and its fit record (errors of parts and
    networks, how they were fitted, the margin)."""
    keys = sorted({k for f, _ in parts for k in f} | {k for _, f, _ in networks for k in f} | {("net", "one")})
    kinds = sorted({k for k, _ in keys})
    fixed = keys.index(("net", "one"))
    A = np.array([[f.get(k, 0.0) for k in keys] for f, _ in parts])
    t = np.array([ms for _, ms in parts])
    alone = _nnls_relative(A, t)
    record: dict[str, Any] = {"parts": errors(A @ alone, t)}

    def family(th: np.ndarray, margin: float = 0.0) -> Family:
        value = dict(zip(keys, th))
        coef = tuple((k, tuple(float(value.get((k, f), 0.0)) for f in FEATURES[kind_group(k)])) for k in kinds)
        return Family(block, act, coef, margin)

    if not networks:
        return family(alone), record
    N = np.array([[f.get(k, 0.0) for k in keys] for _, f, _ in networks])
    tn = np.array([ms for _, _, ms in networks])
    record["networks_uncorrected"] = errors(N @ alone, tn)
    if len(networks) >= JOINT_MIN:
        w, cv = choose(A, t, N, tn, fixed)
        theta = _fit(A, t, N, tn, fixed, w)
        record["joint"] = {"weight": w, "folds": FOLDS, "cross_validation": cv}
        record["parts"] = errors(A @ theta, t)
        mine = np.array(list(budgeted) + [False] * (len(tn) - len(budgeted)), dtype=bool)
        held = held_out(A, t, N, tn, fixed, w)[mine]
        margin = design_margin(held)
        record["margin"] = {"count": int(mine.sum()), "margin": margin,
                            "held_out_bias": float(np.median(held)) if len(held) else None}
    else:
        a, b, loo = correction(N @ alone, tn)
        record["correction"] = {"scale": float(a), "overhead_ms": float(b), "applied": bool(a != 1.0 or b != 0.0),
                                "leave_one_out": loo}
        theta = _fold(alone, a, b, fixed)
        margin = 0.0
    fam = family(theta, margin)
    record["networks"] = errors([predict(LatencyModel((fam,)), spec).total for spec, _, _ in networks], tn)
    return fam, record


def correction(parts: np.ndarray, measured: np.ndarray) -> tuple[float, float, dict]:
    """(a, b) >= 0 with measured ≈ a · parts + b (NNLS, relative errors), kept only if it predicts networks it
    was not fitted on better than no correction: leave-one-out over the networks, median |error| with and
    without it (with a few noisy measurements, a correction can be a fit of their noise). (1, 0) otherwise."""
    n = len(parts)
    if n < 4:
        return 1.0, 0.0, {"count": n}
    held = []
    for i in range(n):
        keep = np.arange(n) != i
        a, b = _scale_offset(parts[keep], measured[keep])
        held.append(a * parts[i] + b if a > 0 else parts[i])
    with_c = float(np.median(np.abs(np.array(held) / measured - 1)))
    without = float(np.median(np.abs(parts / measured - 1)))
    loo = {"count": n, "median_with": with_c, "median_without": without}
    a, b = _scale_offset(parts, measured)
    if a <= 0 or with_c >= without:
        return 1.0, 0.0, loo
    return float(a), float(b), loo


def describe_fit(fit: dict[str, Any] | None) -> str:
    """'blocks: median 2.1%, p90 5.3% (212); networks: median 1.8%, p90 3.9% (12)'."""
    if not fit:
        return "no fit record"

    def one(e: dict | None) -> str:
        if not e or not e.get("count"):
            return "-"
        return f"median {100 * e['median']:.1f}%, p90 {100 * e['p90']:.1f}% ({e['count']})"

    out = f"parts {one(fit.get('parts'))}"
    if fit.get("networks"):
        c, j = fit.get("correction") or {}, fit.get("joint")
        if j:
            how = (f"fitted with the parts, a network weighted {j['weight']:g}, by {j['folds']}-fold cross-validation"
                   if j["weight"] else "the parts' fit corrected on the networks: cross-validation preferred it")
        elif c.get("applied", True):
            how = f"x{c.get('scale', 1):.3f} + {c.get('overhead_ms', 0):.3g} ms over the parts"
        else:
            how = "no correction: it did not predict held-out networks better"
        out += f"; networks {one(fit.get('networks'))} ({how})"
    m = fit.get("margin")
    if m and m.get("count"):
        out += (f"; design margin {100 * m['margin']:.1f}% ({m['count']} designs under latency budgets, held out: "
                f"median {100 * m['held_out_bias']:+.1f}% predicted against measured)")
    return out


__all__ = ["read", "load", "save", "as_model", "mismatches", "warn_if_foreign", "fit_family", "correction",
           "choose", "held_out", "design_margin", "errors", "describe_fit", "LatencyModelWarning", "LatencyModelError"]
