"""CPU inference speed of every preset beside torchvision-shaped ResNet-18 and ResNet-50 built by this project.

    python benchmarks/models.py [--batch-sizes 1,32] [--runs 10] [--models deepmad-r18,deepmad-mb]
                                [--channels-last] [--threads N] [--max-seconds 6]

Each model is built with ``deepmad.models.create_model`` (random weights, eval mode) and run under
``torch.inference_mode`` at its spec's own resolution on a fixed random input. Per batch size: warm-up
runs (3 at batch 1, 1 above), then the median wall time of the timed runs and images/s. A measurement runs
--runs times, fewer when the warm-up says --runs would take more than --max-seconds, but never fewer than 3
at batch 1 and 2 above (the big models at batch 32 get 2 or 3 timed runs, so that a full run stays near 5
minutes on 2 cores; the runs column says how many were timed). MACs (multiply-accumulates of convolutions and the classifier,
= FLOPs / 2) and params are the built model's (MACs from ``deepmad.core.blocks.cost`` of its spec, which the
builder matches exactly). "vs" is the latency ratio to whichever of ResNet-18 / ResNet-50 has the closer
MACs (closest in log scale), measured in the same run at the same batch size.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import torch

from deepmad.core import blocks
from deepmad.models import create_model, list_models
from deepmad.core.presets import PRESETS

BASELINES = ("resnet18", "resnet50")


def measure(model: torch.nn.Module, x: torch.Tensor, runs: int, max_seconds: float) -> tuple[float, int]:
    """(median seconds of one forward, number of timed runs)."""
    warmup = 3 if x.shape[0] == 1 else 1
    t = 0.0
    for _ in range(warmup):
        t0 = time.perf_counter()
        model(x)
        t = time.perf_counter() - t0
    n = max(3 if x.shape[0] == 1 else 2, min(runs, int(max_seconds / max(t, 1e-9))))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="1,32", help="comma-separated batch sizes (default 1,32)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per measurement (default 10)")
    p.add_argument("--models", help="comma-separated subset of the presets (default: all)")
    p.add_argument("--channels-last", action="store_true", help="models and inputs in channels_last format")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--max-seconds", type=float, default=6.0,
                   help="cut the runs of one measurement to about this many seconds (default 6; still >= 3 "
                   "timed runs at batch 1, >= 2 above)")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    presets = args.models.split(",") if args.models else list(PRESETS)
    unknown = [m for m in presets if m not in list_models()]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)}; known: {', '.join(list_models())}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"{'channels_last' if args.channels_last else 'contiguous (NCHW)'}, float32, inference_mode; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the run")

    names = [*BASELINES, *[m for m in presets if m not in BASELINES]]
    head = f"{'model':<16} {'res':>4} {'MACs':>8} {'params':>8}"
    for b in batches:
        head += f" | b{b:<3} {'ms':>9} {'img/s':>8} {'runs':>4} {'vs':>12}"
    print(head)
    print("-" * len(head), flush=True)
    base = {}  # baseline name -> (MACs, {batch: latency})
    for name in names:  # the baselines first: each later row is printed as soon as it is measured
        model = create_model(name).eval().to(memory_format=fmt)
        spec = model.spec
        params = sum(q.numel() for q in model.parameters())
        macs = int(blocks.cost(spec).macs)
        timings = {}
        with torch.inference_mode():
            for b in batches:
                x = torch.randn(b, spec.in_channels, spec.resolution, spec.resolution).to(memory_format=fmt)
                timings[b] = measure(model, x, args.runs, args.max_seconds)
        del model
        if name in BASELINES:
            base[name] = (macs, {b: t for b, (t, _) in timings.items()})
        ref = None if name in BASELINES else min(BASELINES, key=lambda r: abs(math.log(macs / base[r][0])))
        line = f"{name:<16} {spec.resolution:>4} {macs / 1e9:>7.3f}G {params / 1e6:>7.2f}M"
        for b in batches:
            t, n = timings[b]
            vs = "-" if ref is None else f"{t / base[ref][1][b]:.2f}x r{ref[6:]}"
            line += f" | {'':<4} {1e3 * t:>9.2f} {b / t:>8.1f} {n:>4} {vs:>12}"
        print(line, flush=True)
    print("vs: latency / latency of the ResNet (r18 or r50) with the closer MACs, same batch, same run")
    load = os.getloadavg()[0]
    note = (" (above the thread count, other processes competed for the CPUs and the latencies are inflated "
            "and noisy)" if load > torch.get_num_threads() else "")
    print(f"load average {load:.2f} after the run{note}")


if __name__ == "__main__":
    main()
