"""Learning rate of Section 5.1: linear warm-up, then cosine decay, set at every optimizer step."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    peak: float  # lr after warm-up: --lr x global batch / 256
    warmup_steps: int
    total_steps: int
    min_lr: float = 0.0

    def __call__(self, step: int) -> float:
        """lr of optimizer step ``step`` (0-based): (step + 1) / warmup x peak during the warm-up, then
        min_lr + (peak - min_lr) (1 + cos(pi t)) / 2 with t going from 0 to 1 over the remaining steps."""
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.min_lr + (self.peak - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    def state_dict(self) -> dict:
        return {"kind": "warmup-cosine", "peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "min_lr": self.min_lr}


__all__ = ["Schedule"]
