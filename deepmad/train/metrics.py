"""Feedback: top-k counts, the JSONL metrics log, a dependency-free progress line, and the curves PNG."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, TextIO

from ..core.spec import write_atomic


def topk_correct(logits, labels, ks: Iterable[int] = (1, 5)) -> list[int]:
    """How many rows have their label among the k highest logits, for each k (k capped at the classes)."""
    n_cls = logits.shape[1]
    ks = list(ks)
    kmax = min(max(ks), n_cls)
    top = logits.topk(kmax, dim=1).indices
    hit = top.eq(labels.view(-1, 1))
    return [int(hit[:, :min(k, n_cls)].any(dim=1).sum().item()) for k in ks]


class JsonlLog:
    """Append-only metrics log, one JSON object per line, flushed at every record."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop records past optimizer step ``step`` (written after the checkpoint a run resumes from)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        write_atomic(self.path, "".join(line + "\n" for line in keep))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")
            f.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    s = int(round(seconds))
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """One status line: epoch, step, loss, lr, images/s and time left.

    On a terminal the line is redrawn in place (at most 4 times a second); otherwise (a log file, a batch
    job) one line is printed per epoch and at most one a minute in between.
    """

    def __init__(self, mode: str, total_steps: int, epochs: int, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = mode == "on" or (mode == "auto" and tty)
        self.enabled = mode != "off"
        self.inplace = self.live and tty
        self.total, self.epochs = total_steps, epochs
        self.last_draw = 0.0
        self.window: list[tuple[float, int]] = []  # (time, images done) samples for the rate
        self.images = 0

    def start(self, step: int) -> None:
        self.window = [(time.perf_counter(), 0)]
        self.start_step = step
        self.images = 0

    def rate(self) -> float:
        if len(self.window) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.window[0], self.window[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def update(self, *, epoch: int, step: int, epoch_step: int, epoch_steps: int, images: int, loss: float,
               lr: float, force: bool = False) -> None:
        now = time.perf_counter()
        self.images += images
        self.window.append((now, self.images))
        if len(self.window) > 50:
            self.window.pop(0)
        if not self.enabled:
            return
        interval = 0.25 if self.inplace else 60.0
        if not force and now - self.last_draw < interval:
            return
        self.last_draw = now
        r = self.rate()
        steps_per_s = r / max(images, 1) if r else 0.0
        eta_epoch = (epoch_steps - epoch_step) / steps_per_s if steps_per_s else math.inf
        eta_all = (self.total - step) / steps_per_s if steps_per_s else math.inf
        pct = 100.0 * step / max(self.total, 1)
        line = (f"epoch {epoch + 1}/{self.epochs} [{epoch_step:>{len(str(epoch_steps))}}/{epoch_steps}] "
                f"{pct:5.1f}% loss {loss:.4f} lr {lr:.4g} {r:,.0f} img/s "
                f"ETA epoch {_hms(eta_epoch)} run {_hms(eta_all)}")
        if self.inplace:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (an epoch summary), after the live line."""
        if not self.enabled:
            return
        if self.inplace:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


def plot_curves(records: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> bool:
    """Loss and accuracy per epoch (train and val) as a PNG; False when there is nothing to plot."""
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not epochs:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    x = [r["epoch"] for r in epochs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(x, [r["train_loss"] for r in epochs], "o-", label="train")
    xv = [r["epoch"] for r in epochs if r.get("val_loss") is not None]
    a.plot(xv, [r["val_loss"] for r in epochs if r.get("val_loss") is not None], "s-", label="val")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    a.grid(alpha=0.3)
    b.plot(x, [100 * r["train_top1"] for r in epochs], "o-", label="train top-1")
    b.plot(xv, [100 * r["val_top1"] for r in epochs if r.get("val_loss") is not None], "s-", label="val top-1")
    b.plot(xv, [100 * r["val_top5"] for r in epochs if r.get("val_loss") is not None], "^--", label="val top-5")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy (%)")
    b.legend()
    b.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, p)
    return True


__all__ = ["topk_correct", "JsonlLog", "read_jsonl", "Progress", "plot_curves"]
