"""The README's training example, run as a user runs it, over several seeds: val top-1, time, exit status.

    python benchmarks/readme_train.py [--seeds 3] [--out DIR]

Runs the README's two commands (``DESIGN``, then ``TRAIN`` with ``--seed N`` added for seeds after 0, and
``-o`` pointing into DIR) as subprocesses of the ``deepmad`` beside this Python, and prints for each seed the
exit status, the wall time of the training command and the best val top-1 from its ``summary.json``; then
the mean, standard deviation and minimum over the seeds. tests/cli/test_readme.py checks that the README
holds these very commands.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DESIGN = ["deepmad", "design", "--block", "basic", "--flops", "10M", "--params", "80k", "--rho", "0.3",
          "--resolution", "28", "--strides", "1,2,2", "--kernels", "3", "-o", "mnist-net.yaml"]
TRAIN = ["deepmad", "train", "mnist-net.yaml", "--data", "builtin:mnist"]


def _exe() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "deepmad")
    return here if os.path.exists(here) else shutil.which("deepmad") or "deepmad"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    ap.add_argument("--out", help="work here (default: a temporary directory)")
    a = ap.parse_args()
    work = a.out or tempfile.mkdtemp(prefix="deepmad-readme-train-")
    os.makedirs(work, exist_ok=True)
    exe = _exe()
    import torch

    print(f"README example: {' '.join(DESIGN)} && {' '.join(TRAIN)}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start", flush=True)
    t0 = time.perf_counter()
    d = subprocess.run([exe, *DESIGN[1:], "--force"], cwd=work, capture_output=True, text=True)
    if d.returncode:
        sys.exit(f"design failed ({d.returncode}): {d.stderr.strip()}")
    print(f"  design: exit {d.returncode}, {time.perf_counter() - t0:.1f} s", flush=True)
    top1, secs = [], []
    for seed in range(a.seeds):
        run = os.path.join(work, f"run-seed{seed}")
        argv = [exe, *TRAIN[1:], "-o", run, "--force", "--quiet"] + (["--seed", str(seed)] if seed else [])
        t = time.perf_counter()
        r = subprocess.run(argv, cwd=work, capture_output=True, text=True)
        dt = time.perf_counter() - t
        if r.returncode:
            print(f"  seed {seed}: exit {r.returncode} after {dt:.0f} s: {r.stderr.strip()[-300:]}", flush=True)
            continue
        s = json.load(open(os.path.join(run, "summary.json")))
        top1.append(100 * s["best"]["top1"])
        secs.append(dt)
        print(f"  seed {seed}: exit 0, {dt:.0f} s, {s['epochs']} epochs at {s['resolution']} px, best val top-1 "
              f"{top1[-1]:.2f}% (epoch {s['best']['epoch']}), last {100 * s['last']['val_top1']:.2f}%, "
              f"{s['img_per_s']:,.0f} img/s", flush=True)
    if top1:
        sd = statistics.stdev(top1) if len(top1) > 1 else 0.0
        print(f"val top-1 over {len(top1)} seeds: {statistics.fmean(top1):.2f} ± {sd:.2f}% (min {min(top1):.2f}%); "
              f"training wall time {statistics.fmean(secs):.0f} s mean, {max(secs):.0f} s max; load average "
              f"{os.getloadavg()[0]:.2f} at the end; runs in {work}")


if __name__ == "__main__":
    main()
