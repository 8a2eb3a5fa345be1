"""Feedback: top-k counts, the JSONL metrics log, status lines and progress bars (tqdm), and the curves PNG."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, TextIO

from .. import progress
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


class Feedback:
    """What long work shows on stderr: status lines, and tqdm progress bars (steps, rate, ETA).

    mode "on": bars drawn in place; "auto": bars in place on a terminal, otherwise (a log file, a batch job)
    the same bar as a line of its own at most once a minute; "off": nothing at all. Status lines are printed
    in every mode but "off".
    """

    def __init__(self, mode: str = "auto", stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = mode != "off"
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = mode == "on" or (mode == "auto" and tty)

    def status(self, text: str) -> None:
        """One line (drawn above any bar)."""
        if not self.enabled:
            return
        if self.live:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def during(self, text: str, after: float = 1.0):
        """Context: the status line text, printed only if the work inside takes longer than after seconds
        (so that a quick failure is the one line of its error)."""
        import contextlib
        import threading

        @contextlib.contextmanager
        def ctx():
            timer = threading.Timer(after, self.status, args=(text,)) if self.enabled else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                yield
            finally:
                if timer is not None:
                    timer.cancel()
                    timer.join()

        return ctx()

    def bar(self, *, total: int, desc: str, unit: str, initial: int = 0, leave: bool = True):
        """A tqdm bar of total units starting at initial (``deepmad.progress.bar``; a do-nothing bar when off)."""
        return progress.bar(total=total, initial=initial, desc=desc, unit=unit, leave=leave, enabled=self.enabled,
                            live=self.live, stream=self.stream)


class Rate:
    """Images per second over the last ``window`` updates."""

    def __init__(self, window: int = 50):
        self.window = window
        self.samples: list[tuple[float, int]] = []
        self.images = 0

    def reset(self) -> None:
        self.samples = [(time.perf_counter(), self.images)]

    def add(self, images: int) -> float:
        self.images += images
        self.samples.append((time.perf_counter(), self.images))
        if len(self.samples) > self.window:
            self.samples.pop(0)
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


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


__all__ = ["topk_correct", "JsonlLog", "read_jsonl", "Feedback", "Rate", "plot_curves"]
