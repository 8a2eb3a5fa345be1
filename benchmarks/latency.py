"""Latency model and latency budgets on this machine: everything issue 11's acceptance asks for, in one run.

    python benchmarks/latency.py [--quick] [--model FILE] [--save-model FILE] [--networks 30] [--runs 10]
                                 [--clock wall|cpu] [--statistic median|min] [--pin-cpu CORE] [--json FILE]

1. Calibrate (``deepmad.latency.calibrate``, default grid; --quick: the small grid), or read --model.
2. (a) Prediction error on held-out random networks: --networks random networks per family (bottleneck and
   MBConv, in their presets' spaces, 0.3-3x the preset's MACs budget) drawn with seeds calibration does not
   use (checked: none of them is one of calibration's networks), measured interleaved (round-robin, 3 rounds)
   in chunks of 8, each after the model's drift reference (``calibrate.speed``: how fast the device runs now
   against when it was calibrated, chunk by chunk); median, 90th percentile and largest |predicted / measured
   - 1|, the median signed error, and the median and 90th percentile with the device's drift taken out
   (predicted times its chunk's speed). Then the same networks are timed again, the same way: how far a
   network's measured median moves between the two (raw and with each time's drift taken out) is the
   measurement's own repeatability, the floor under any prediction error this machine can show.
3. (b) Designs under a latency budget: resnet18 is measured as calibration measures (in a chunk with 7 random
   networks of the family, interleaved, after the drift reference: the device's speed then);
   deepmad-r18's problem (resnet18's FLOPs and params) is solved with latency budgets of 0.75x, 1x and 1.25x
   that measurement in the model's units (over that speed; designs held to it over 1 + the model's design
   margin, ``--latency-margin auto``), and without one (FLOPs only); then resnet18, the
   four designs and the drift reference are measured again, interleaved in one run: objective, MACs, predicted and
   measured latency, measured / budget (as measured first), the same with the drift taken out (measured over
   the speed at the end, over the budget in the model's units), and measured / resnet18 of that same run.
   The same for the MBConv family (deepmad-mb's problem) against mobilenet_v2.

Settings: CPU, batch 1, one thread, torch eager (inference mode), median of --runs runs (--statistic min: their
minimum, calibrated, predicted and compared; with --model, the model's). The machine should be quiet (the load
average is printed before and after): on a shared machine, --clock cpu measures each run's thread CPU time instead
of the elapsed time (steadier; the same on a quiet machine), and --statistic min the runs least disturbed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import replace

import numpy as np

from deepmad import api
from deepmad.core import blocks, latency as lat
from deepmad.core.reference import reference
from deepmad.core.spec import to_dict
from deepmad.latency import calibrate as cal, measure as ms
from deepmad.latency.model import errors, read, save

HELDOUT_SEED = 424242  # calibration's networks use seeds seed * 1000 + 17 + family index
CHUNK = 8  # networks timed together after the drift reference (``calibrate.speed``'s chunk)
FAMILIES = (("bottleneck", "relu", "deepmad-r18", "resnet18"), ("mbconv", "silu", "deepmad-mb", "mobilenet_v2"))


def say(text: str = "") -> None:
    print(text, flush=True)


def random_networks(block: str, act: str, count: int, seed: int) -> list:
    """count random networks of the family's space with 0.3-3x its preset's MACs (``calibrate.random_specs``)."""
    budget = cal.family_budget(block)
    return cal.random_specs(cal.family_space(block, act), count, seed, (0.3 * budget, 3.0 * budget))


def heldout(model: lat.LatencyModel, settings: ms.Settings, count: int, seen: set, out: dict) -> None:
    stat = model.statistic  # what is compared of a network's runs: the model's statistic
    say(f"(a) prediction error on {count} held-out random networks per family (seeds {HELDOUT_SEED}+; 0.3-3x the "
        f"preset's MACs), measured interleaved in chunks of {CHUNK} after the model's drift reference (speed: now / at "
        f"calibration, the median of the chunks')")
    say(f"  {'family':<18} {'n':>3} {'median':>7} {'p90':>7} {'max':>7} {'bias':>7} | {'speed':>6} drift-corrected: "
        f"{'median':>7} {'p90':>7}   measured ms (min-max)")
    for j, (block, act, preset, _) in enumerate(FAMILIES):
        specs = random_networks(block, act, count, HELDOUT_SEED + j)
        overlap = sum(1 for s in specs if replace(s, name="") in seen)
        t0 = time.perf_counter()
        factor, timings, speeds = cal.speed(model, settings, specs, chunk=CHUNK)
        measured = np.array([t.value(stat) for t in timings])
        speeds = np.array(speeds)
        pred = np.array([lat.predict(model, s).total for s in specs])
        e = errors(pred, measured)
        ed = errors(pred * speeds, measured) if math.isfinite(factor) else None  # the device's drift taken out
        bias = float(np.median(pred / measured - 1))
        drift = f"{100 * ed['median']:>6.1f}% {100 * ed['p90']:>6.1f}%" if ed else f"{'-':>7} {'-':>7}"
        say(f"  {block + ' (' + act + ')':<18} {e['count']:>3} {100 * e['median']:>6.1f}% {100 * e['p90']:>6.1f}% "
            f"{100 * e['max']:>6.1f}% {100 * bias:>+6.1f}% | {factor:>6.3f} {'':>16}{drift}"
            f"   {measured.min():.1f}-{measured.max():.1f} ({time.perf_counter() - t0:.0f} s){'' if not overlap else f'; {overlap} seen by calibration!'}")
        # the same networks timed again, the same way: how far the measurement itself repeats on this machine
        factor2, timings2, speeds2 = cal.speed(model, settings, specs, chunk=CHUNK)
        again = np.array([t.value(stat) for t in timings2])
        rep = errors(again, measured)
        repd = errors(again / np.array(speeds2), measured / speeds) if math.isfinite(factor2) else None
        say(f"  {'':<18} timed again: a network's {stat} moved by {100 * rep['median']:.1f}% (median), "
            f"{100 * rep['p90']:.1f}% (p90), speed {factor2:.3f}"
            + (f"; with each time's drift taken out {100 * repd['median']:.1f}%, {100 * repd['p90']:.1f}%" if repd
               else "") + ": the measurement's own repeatability here")
        out.setdefault("heldout", {})[f"{block}:{act}"] = {
            "errors": e, "bias": bias, "speed": factor, "drift_corrected": ed, "overlap_with_calibration": overlap,
            "repeat": {"changed": rep, "drift_corrected": repd, "speed": factor2},
            "networks": [{"name": s.name, "macs": blocks.cost(s).macs, "measured_ms": float(m), "predicted_ms": float(p)}
                         for s, m, p in zip(specs, measured, pred)]}


def budgets(model: lat.LatencyModel, settings: ms.Settings, factors, out: dict) -> None:
    stat = model.statistic
    say()
    say("(b) designs under a latency budget (f x the baseline's measured latency), beside the FLOPs-only design and "
        "the baseline, measured interleaved in one run")
    say("    budget: f x the baseline as measured first; in the model's units: that over the device's speed then (the "
        "model's drift reference timed with it); drift-corr.: measured over the speed at the end, over the budget in "
        "the model's units")
    for j, (block, act, preset, base) in enumerate(FAMILIES):
        ref = reference(base)
        # the baseline is timed as calibration times everything (interleaved, 3 rounds, in a chunk with other
        # networks, after the drift reference): timed alone back to back, its cache and the reference's are warm
        # and the speed comes out ~15% fast (0.84 against ~1.0 a minute later, in two runs)
        company = random_networks(block, act, CHUNK - 1, HELDOUT_SEED + 100 + j)
        _, (first, *_), (f1, *_) = cal.speed(model, settings, [ref] + company, chunk=CHUNK)
        t_ref = first.value(stat)
        units = t_ref / f1 if math.isfinite(f1) else t_ref  # the baseline's latency at the calibration's speed
        prob = api.problem(preset)
        say(f"  {preset} problem (FLOPs {prob.budget.flops / 1e9:.3g} G, params {prob.budget.params / 1e6:.4g} M; "
            f"{base}: {blocks.cost(ref).macs / 1e9:.3g} G, {blocks.cost(ref).params / 1e6:.4g} M), {base} measured "
            f"{t_ref:.2f} ms first, the device at speed {f1:.3f} of its calibration: {units:.2f} ms in the model's "
            f"units; designs held to that / (1 + the model's design margin {100 * model.family(block, act).margin:.1f}%)")
        rows = []
        t0 = time.perf_counter()
        free = api.design(preset)
        rows.append(("FLOPs only", None, free))
        for f in factors:
            try:
                d = api.design(preset, latency=f * units, latency_model=model)
                rows.append((f"{f:g}x {base}", f, d))
            except ValueError as e:
                say(f"    {f:g}x: {e}")
        solve_s = time.perf_counter() - t0
        f2, timings, speeds = cal.speed(model, settings, [ref] + [d.spec for _, _, d in rows])
        t_again = timings[0].value(stat)
        say(f"    {'network':<16} {'objective':>10} {'gap':>6} {'MACs':>8} {'params':>7} {'budget':>8} {'(model)':>8} "
            f"{'predicted':>9} {'measured':>9} {'meas/budget':>11} {'drift-corr.':>11} {'vs ' + base:>14}")
        say(f"    {base:<16} {'-':>10} {'-':>6} {blocks.cost(ref).macs / 1e9:>7.3f}G {blocks.cost(ref).params / 1e6:>6.2f}M "
            f"{'-':>8} {'-':>8} {'-':>9} {t_again:>7.2f}ms {'-':>11} {'-':>11} {1.0:>13.3f}x")
        res = {"baseline": base, "margin": model.family(block, act).margin, "baseline_first_ms": t_ref,
               "baseline_ms": t_again, "speed_first": f1, "speed_end": f2, "solve_seconds": solve_s, "designs": []}
        for (label, f, d), t, now in zip(rows, timings[1:], speeds[1:]):
            pred = lat.predict(model, d.spec).total
            m = t.value(stat)
            budget, bm = (None, None) if f is None else (f * t_ref, f * units)
            corr = None if bm is None or not math.isfinite(now) else m / now / bm
            gap = "-" if d.gap is None else f"{100 * d.gap:.1f}%"
            say(f"    {label:<16} {d.objective:>10,.0f} {gap:>6} {blocks.cost(d.spec).macs / 1e9:>7.3f}G "
                f"{blocks.cost(d.spec).params / 1e6:>6.2f}M {('-' if budget is None else f'{budget:.2f}ms'):>8} "
                f"{('-' if bm is None else f'{bm:.2f}ms'):>8} {pred:>7.2f}ms {m:>7.2f}ms "
                f"{('-' if budget is None else f'{m / budget:.3f}'):>11} "
                f"{('-' if corr is None else f'{corr:.3f}'):>11} "
                f"{m / t_again:>13.3f}x")
            res["designs"].append({"label": label, "budget_ms": budget, "budget_model_ms": bm, "objective": d.objective,
                                   "gap": d.gap, "macs": blocks.cost(d.spec).macs, "params": blocks.cost(d.spec).params,
                                   "predicted_ms": pred, "measured_ms": m, "drift_corrected": corr,
                                   "spec": to_dict(d.spec)})
            if f == 1.0:
                res["at_baseline"] = {"measured_over_budget": m / budget, "drift_corrected": corr,
                                      "measured_over_baseline_same_run": m / t_again}
        say(f"    the device's speed at the end: {f2:.3f} of its calibration")
        out.setdefault("budgets", {})[preset] = res


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small calibration grid, 10 networks, 6 runs, budget 1x only")
    p.add_argument("--model", help="use this latency model file instead of calibrating")
    p.add_argument("--save-model", help="write the calibrated model here")
    p.add_argument("--networks", type=int, help="held-out random networks per family (default 30; quick 10)")
    p.add_argument("--runs", type=int, help="timed runs per measurement (default 10; quick 6)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall (default) or the thread's CPU time")
    p.add_argument("--statistic", choices=ms.STATISTICS, help="what is calibrated and compared of a network's "
                   "runs: median (default) or min; with --model, the model's")
    p.add_argument("--pin-cpu", type=int, metavar="CORE", help="run on this core only")
    p.add_argument("--json", metavar="FILE", help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    count = args.networks or (10 if args.quick else 30)
    runs = args.runs or (6 if args.quick else 10)
    ms.pin_cpu(args.pin_cpu)
    settings = ms.Settings(threads=1, batch=1, warmup=2, runs=runs, clock=args.clock)
    import torch

    load0 = ms.load_average()
    what = "the model's statistic" if args.model else args.statistic or "median"
    say(f"torch {torch.__version__}, {ms.cpu_name()} ({platform.machine()}, {os.cpu_count()} CPUs"
        f"{f', pinned to core {args.pin_cpu}' if args.pin_cpu is not None else ''}), 1 thread, batch 1, eager NCHW, "
        f"{'elapsed time' if args.clock == 'wall' else 'thread CPU time'}, "
        f"{what} of {runs} runs; "
        f"load average {load0:.2f} before")
    out: dict = {"settings": settings.to_dict(), "environment": ms.environment(settings), "load_before": load0}
    t0 = time.perf_counter()
    seen: set = set()
    if args.model:
        model = read(args.model)
        if args.statistic and args.statistic != model.statistic:
            p.error(f"--statistic {args.statistic}: the model {args.model} fits the {model.statistic}")
        say(f"latency model {args.model} ({model.describe()})")
    else:
        grid = "small" if args.quick else "default"
        model = cal.calibrate(settings, grid=grid, progress=sys.stderr.isatty(), runs=runs,
                              statistic=args.statistic or "median")
        for it in cal.items_for(cal.parse_families(None), cal.GRIDS[grid], 0, 1):
            if it.role == "network":
                seen.add(replace(it.spec, name=""))
        say(f"calibrated grid {grid}: {model.meta['grid']['items']} items in {model.meta['seconds']:.0f} s")
        from deepmad.latency.model import describe_fit

        for f in model.families:
            say(f"  {f.name}: {describe_fit(model.meta['fits'].get(f'{f.block}:{f.act}'))}")
        if args.save_model:
            save(model, args.save_model)
    out["model"] = lat.to_dict(model)
    out["statistic"] = model.statistic
    heldout(model, settings, count, seen, out)
    budgets(model, settings, (1.0,) if args.quick else (0.75, 1.0, 1.25), out)
    load1 = ms.load_average()
    say()
    say("acceptance:")
    for key, h in out["heldout"].items():
        e = h["errors"]
        say(f"  held-out {key}: median {100 * e['median']:.1f}% (<= 5%: {'yes' if e['median'] <= 0.05 else 'NO'}), "
            f"p90 {100 * e['p90']:.1f}% (<= 10%: {'yes' if e['p90'] <= 0.10 else 'NO'})")
        r = h["repeat"]
        say(f"  held-out {key}: the same networks timed again moved by {100 * r['changed']['median']:.1f}% (median)"
            + (f", {100 * r['drift_corrected']['median']:.1f}% with the drift taken out" if r["drift_corrected"] else "")
            + ": the floor under any error measured here")
        d = h["drift_corrected"]
        if d:
            say(f"  held-out {key}, drift-corrected: median {100 * d['median']:.1f}% (<= 5%: "
                f"{'yes' if d['median'] <= 0.05 else 'NO'}), p90 {100 * d['p90']:.1f}% (<= 10%: "
                f"{'yes' if d['p90'] <= 0.10 else 'NO'})")
    for preset, res in out["budgets"].items():
        a = res.get("at_baseline")
        if a:
            ok = lambda r: "yes" if r <= 1.05 else "NO"  # noqa: E731
            dc = a["drift_corrected"]
            say(f"  {preset} at {res['baseline']}'s latency: measured / budget {a['measured_over_budget']:.3f} "
                f"(<= 1.05: {ok(a['measured_over_budget'])}), drift-corrected "
                f"{'-' if dc is None else f'{dc:.3f}'} (<= 1.05: {'-' if dc is None else ok(dc)}), measured / "
                f"{res['baseline']} in the same interleaved run {a['measured_over_baseline_same_run']:.3f} "
                f"(<= 1.05: {ok(a['measured_over_baseline_same_run'])})")
    note = (" (above the core count: other processes competed; timings are inflated and noisy)"
            if load1 and load1 > (os.cpu_count() or 1) * 0.75 else "")
    say(f"load average {load0:.2f} before, {load1:.2f} after{note}; {time.perf_counter() - t0:.0f} s in all")
    out["load_after"] = load1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=lambda o: None if isinstance(o, float) and not math.isfinite(o) else str(o))


if __name__ == "__main__":
    main()
