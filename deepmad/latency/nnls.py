"""Non-negative least squares, min ||A x − b|| subject to x >= 0 (Lawson and Hanson's active-set method, 1974).

Small and dense (a few hundred rows, a few dozen columns): numpy only, so the latency model needs no scipy.
"""
from __future__ import annotations

import numpy as np


def nnls(A: np.ndarray, b: np.ndarray, max_iter: int | None = None, tol: float | None = None) -> np.ndarray:
    """x >= 0 minimizing ||A x − b||₂ (Lawson-Hanson). Columns of A that are all zero get x = 0."""
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    m, n = A.shape
    if b.shape != (m,):
        raise ValueError(f"nnls: b has shape {b.shape}, expected ({m},)")
    tol = 10 * max(m, n) * np.finfo(float).eps * max(1.0, np.abs(A).max(initial=0.0)) if tol is None else tol
    max_iter = 3 * n + 30 if max_iter is None else max_iter
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = A.T @ (b - A @ x)
    for _ in range(max_iter):
        if passive.all() or w[~passive].max(initial=-np.inf) <= tol:
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        for _ in range(max_iter):  # inner loop: keep the passive set's solution feasible
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if z[passive].min() > 0:
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        else:
            z = np.where(passive, z, 0.0)
        x = z
        w = A.T @ (b - A @ x)
    return np.maximum(x, 0.0)


__all__ = ["nnls"]
