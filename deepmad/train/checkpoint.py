"""Checkpoints: written atomically, loaded safely, holding everything a bit-exact resume needs.

A checkpoint is a dict of tensors and plain Python values (so ``torch.load(weights_only=True)`` reads it):
format/version, the resolved config, the spec, the data description, model / optimizer / schedule / grad
scaler states, epoch, optimizer step and position in the epoch, every process's random states (torch CPU and
CUDA, numpy, python), the metrics history and the best result so far.

Writing goes to a temporary file in the same directory, is flushed to disk, then renamed over the target
(``os.replace`` is atomic on POSIX and Windows): a crash or a failing write leaves the previous checkpoint
whole.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.spec import atomic_file

FORMAT = "deepmad-train"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable deepmad training checkpoint."""


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save obj to path through a temporary file in the same directory and a rename."""
    with atomic_file(path) as f:
        torch.save(obj, f)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint on the CPU (tensors and plain values only: no code is run)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, expected a checkpoint file (e.g. {p}/best.pt)")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a file that is not a checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: not a readable checkpoint ({first})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a deepmad training checkpoint (no format {FORMAT!r})")
    if ck.get("version") != VERSION:
        raise CheckpointError(f"{p}: checkpoint version {ck.get('version')!r}; this deepmad reads {VERSION}")
    return ck


def rng_state() -> dict[str, Any]:
    """The random states of this process, as tensors and lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    out = {"torch": torch.get_rng_state(),
           "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "cached": float(cached)},
           "python": [py[0], list(py[1]), py[2]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in s and torch.cuda.is_available():
        states = s["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def seed_all(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


__all__ = ["save_atomic", "load", "rng_state", "set_rng_state", "seed_all", "CheckpointError", "FORMAT",
           "VERSION"]
