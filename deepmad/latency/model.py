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
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.latency import (FEATURES, Family, LatencyModel, LatencyModelError, from_dict, kind_group, predict,
                            to_dict)
from ..core.result import DeepMADWarning
from ..core.spec import write_atomic
from .nnls import nnls


class LatencyModelWarning(DeepMADWarning):
    """A latency model used on another device, or with other library versions, than it was calibrated with."""


# ---------------------------------------------------------------------------------------------- files

def read(path: str | os.PathLike) -> LatencyModel:
    """The model in a file; a LatencyModelError (one line, naming the file) when it cannot be read."""
    p = Path(path)
    if p.is_dir():
        raise LatencyModelError(f"{p}: is a directory, expected a latency model file (.json)")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise LatencyModelError(f"{p}: cannot read the latency model ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise LatencyModelError(f"{p}: not a deepmad latency model (not UTF-8 text)") from None
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


def _nnls_relative(A: np.ndarray, t: np.ndarray) -> np.ndarray:
    """θ >= 0 minimizing Σ ((A θ − t) / t)²: relative errors, so small and large items count alike."""
    scale = A.max(axis=0)
    scale[scale <= 0] = 1.0
    W = (A / scale) / t[:, None]
    return nnls(W, np.ones(len(t))) / scale


def fit_family(block: str, act: str, parts: Sequence[tuple[dict, float]],
               networks: Sequence[tuple[Any, dict, float]] = ()) -> tuple[Family, dict[str, Any]]:
    """The coefficients of a family from measured parts (blocks, stems, heads, tails: their features and ms),
    then, given measured whole networks (spec, features, ms), a correction for what the parts measured alone
    miss (weights and activations that are cold in a whole network, the fixed cost of a forward pass):
    predicted = a · Σ parts + b, a and b >= 0, fitted on the networks (``correction``: kept only where it
    predicts left-out networks better), folded into the coefficients (every θ times a, ``net`` = b), so the
    model stays a posynomial. Returns the family and its fit record."""
    keys = sorted({k for f, _ in parts for k in f} | {k for _, f, _ in networks for k in f})
    kinds = sorted({k for k, _ in keys} | {"net"})
    A = np.array([[f.get(k, 0.0) for k in keys] for f, _ in parts])
    t = np.array([ms for _, ms in parts])
    theta = dict(zip(keys, _nnls_relative(A, t)))
    record: dict[str, Any] = {"parts": errors(A @ np.array([theta[k] for k in keys]), t)}

    def family(th: dict) -> Family:
        coef = tuple((k, tuple(float(th.get((k, f), 0.0)) for f in FEATURES[kind_group(k)])) for k in kinds)
        return Family(block, act, coef)

    if networks:
        N = np.array([[f.get(k, 0.0) for k in keys] for _, f, _ in networks])
        tn = np.array([ms for _, _, ms in networks])
        p = N @ np.array([theta[k] for k in keys])
        record["networks_uncorrected"] = errors(p, tn)
        a, b, loo = correction(p, tn)
        record["correction"] = {"scale": float(a), "overhead_ms": float(b), "applied": bool(a != 1.0 or b != 0.0),
                                "leave_one_out": loo}
        theta = {k: v * a for k, v in theta.items()}
        theta[("net", "one")] = theta.get(("net", "one"), 0.0) + b
        fam = family(theta)
        model = LatencyModel((fam,))
        record["networks"] = errors([predict(model, spec).total for spec, _, _ in networks], tn)
        return fam, record
    return family(theta), record


def correction(parts: np.ndarray, measured: np.ndarray) -> tuple[float, float, dict]:
    """(a, b) >= 0 with measured ≈ a · parts + b (NNLS, relative errors), kept only if it predicts networks it
    was not fitted on better than no correction: leave-one-out over the networks, median |error| with and
    without it (with a few noisy measurements, a correction can be a fit of their noise). (1, 0) otherwise."""
    X = np.column_stack([parts, np.ones_like(parts)])
    n = len(parts)
    if n < 4:
        return 1.0, 0.0, {"count": n}
    held = []
    for i in range(n):
        keep = np.arange(n) != i
        a, b = _nnls_relative(X[keep], measured[keep])
        held.append(a * parts[i] + b if a > 0 else parts[i])
    with_c = float(np.median(np.abs(np.array(held) / measured - 1)))
    without = float(np.median(np.abs(parts / measured - 1)))
    loo = {"count": n, "median_with": with_c, "median_without": without}
    a, b = _nnls_relative(X, measured)
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
        c = fit.get("correction") or {}
        how = (f"x{c.get('scale', 1):.3f} + {c.get('overhead_ms', 0):.3g} ms over the parts" if c.get("applied", True)
               else "no correction: it did not predict held-out networks better")
        out += f"; networks {one(fit.get('networks'))} ({how})"
    return out


__all__ = ["read", "load", "save", "as_model", "mismatches", "warn_if_foreign", "fit_family", "correction",
           "errors", "describe_fit", "LatencyModelWarning", "LatencyModelError"]
