"""Train a DeepMAD design and a ResNet baseline of the same budget on the bundled MNIST, on the CPU.

    python benchmarks/train_cpu.py [--epochs 2] [--seeds 3] [--rho 0.3] [--resolution 28] [--out DIR]

Baseline: He et al.'s CIFAR ResNet-8 layout (3x3 stem of 16 channels, stride 1; 3 stages of one basic block,
16/32/64 channels, strides 1/2/2), 10 classes, at --resolution. DeepMAD: the DeepMAD program (Eq. 5) solved by
the project's search over basic-block networks of the same layout (stem stride 1, stage strides 1/2/2, 3x3
kernels) under the baseline's FLOPs and params and rho <= --rho. Both train with the same recipe (--recipe,
default basic: pad-and-crop, no flip for digits; SGD momentum 0.9, cosine with warm-up, weight decay 5e-4;
batch 32, lr 0.2)
for the same epochs, once per seed, the two networks alternating so that machine load hits both alike.

Printed per network: params, MACs, rho, entropy (from deepmad.api.analyze), last-epoch val top-1 and top-5
mean ± std over the seeds (1,000 held-out digits), and training images/s mean ± std; then the per-seed
throughput ratio DeepMAD / baseline (median) measured in this run.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

from deepmad.api import analyze_spec
from deepmad.core.budget import Budget, Problem, Space
from deepmad.core.solver import solve
from deepmad.core.spec import save
from deepmad.train import TrainConfig, train
from deepmad.train.study import resnet_cifar


def designs(resolution: int, rho: float):
    base = resnet_cifar(8, num_classes=10, resolution=resolution)
    b = analyze_spec(base)
    space = Space(block="basic", strides=(1, 2, 2), resolution=resolution, stem_channels=(8, 32), stem_kernel=3,
                  stem_stride=1, kernels=(3,), max_depth=30, max_channels=256, num_classes=10)
    d = solve(Problem(space, Budget(b.flops, b.params, rho), name=f"deepmad-basic-rho{rho:g}"))
    return [("resnet8-cifar", base), (f"deepmad rho0={rho:g}", d.spec)]


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rho", type=float, default=0.3, help="rho0 of the DeepMAD design (the presets' value for "
                    "ResNet blocks)")
    ap.add_argument("--resolution", type=int, default=28)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1.6, help="per 256 images (default 1.6: 0.2 at batch 32; the "
                    "paper's 0.1 per 256 barely moves these tiny nets in 2 epochs)")
    ap.add_argument("--recipe", default="basic")
    ap.add_argument("--out", help="keep the runs here (default: a temporary directory)")
    a = ap.parse_args()
    nets = designs(a.resolution, a.rho)
    out = a.out or tempfile.mkdtemp(prefix="deepmad-train-bench-")
    print(f"builtin:mnist (4,000 train / 1,000 val digits) at {a.resolution} px, {a.epochs} epochs, batch "
          f"{a.batch_size}, lr {a.lr} per 256, recipe {a.recipe}, {a.seeds} seeds; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    results: dict[str, dict[str, list[float]]] = {n: {"top1": [], "top5": [], "ips": []} for n, _ in nets}
    t0 = time.perf_counter()
    for seed in range(a.seeds):
        for name, spec in nets:
            path = os.path.join(out, f"{name.split()[0]}-seed{seed}")
            os.makedirs(path, exist_ok=True)
            spec_file = os.path.join(path, "spec.yaml")
            save(spec, spec_file)
            r = train(TrainConfig(model=spec_file, data="builtin:mnist", out=path, epochs=a.epochs,
                                  batch_size=a.batch_size, lr=a.lr, recipe=a.recipe, seed=seed, progress="off"),
                      force=True)
            results[name]["top1"].append(r.last["val_top1"])
            results[name]["top5"].append(r.last["val_top5"])
            results[name]["ips"].append(r.img_per_s)
            print(f"  {name} seed {seed}: val top-1 {100 * r.last['val_top1']:.2f}%, {r.img_per_s:,.0f} img/s",
                  flush=True)
    print(f"{'network':<18} {'params':>8} {'MMACs':>6} {'rho':>6} {'entropy':>8} {'depths':>9} {'widths':>13} "
          f"{'val top-1 (%)':>15} {'val top-5 (%)':>14} {'train img/s':>14}")
    for name, spec in nets:
        an = analyze_spec(spec)
        r = results[name]
        t1, t5, ips = mean_std([100 * v for v in r["top1"]]), mean_std([100 * v for v in r["top5"]]), mean_std(r["ips"])
        depths = ",".join(str(s.depth) for s in spec.stages)
        widths = ",".join(str(c) for c in [spec.stem.channels] + [s.channels for s in spec.stages])
        print(f"{name:<18} {an.params:>8,} {an.flops / 1e6:>6.2f} {an.rho:>6.3f} {an.entropy:>8.1f} {depths:>9} "
              f"{widths:>13} {t1[0]:>7.2f} ± {t1[1]:<5.2f} {t5[0]:>6.2f} ± {t5[1]:<5.2f} {ips[0]:>6,.0f} ± {ips[1]:<5,.0f}")
    (b, _), (d, _) = nets
    ratios = [x / y for x, y in zip(results[d]["ips"], results[b]["ips"])]
    print(f"throughput DeepMAD / baseline: median {statistics.median(ratios):.2f} over {len(ratios)} seed pairs; "
          f"total {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.2f} at the end; runs in {out}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
