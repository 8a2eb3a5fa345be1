"""``deepmad bench`` (measured latency of a model) and ``deepmad latency calibrate | show`` (the latency model).

torch is imported inside the handlers that measure (bench, calibrate); ``latency show`` reads a model file
without it. Progress bars go to stderr, off with --quiet or --json.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

from .design import check_output, int_at_least

EPILOG_BENCH = """examples:
  deepmad bench resnet18 --device cpu --threads 1 --batch 1
  deepmad bench my-net.yaml --backend onnxruntime --json
  deepmad bench deepmad-r18 --latency-model cpu.latency.json    # predicted beside measured"""

EPILOG_CALIBRATE = """examples:
  deepmad latency calibrate --device cpu --threads 1 --batch 1 -o cpu.latency.json
  deepmad latency calibrate --families bottleneck,mbconv:relu6 --grid small -o cpu.latency.json"""


QUOTE = "'"


def _settings_args(p: argparse.ArgumentParser, runs: int | None, warmup: int | None) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default cpu)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="torch (eager, inference mode; default) or onnxruntime (the model exported to ONNX)")
    p.add_argument("--threads", type=lambda t: int_at_least(t, 1), default=1, help="intra-op threads (default 1)")
    p.add_argument("--batch", type=lambda t: int_at_least(t, 1), default=1, help="images per forward pass (default 1)")
    p.add_argument("--channels-last", action="store_true", help="torch: model and input in channels_last")
    p.add_argument("--runs", type=lambda t: int_at_least(t, 1), default=runs,
                   help=f"timed runs (default {runs if runs else 'the grid' + QUOTE + 's'})")
    p.add_argument("--warmup", type=lambda t: int_at_least(t, 0), default=warmup,
                   help=f"untimed runs first (default {warmup if warmup is not None else 'the grid' + QUOTE + 's'})")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time (default); cpu: the thread's CPU time (one thread on a CPU; steadier on a "
                        "machine other work shares, equal to wall on a quiet one)")
    p.add_argument("--allocator", choices=("keep", "system"), default="keep",
                   help="keep: glibc keeps freed memory, as caching allocators (jemalloc, tcmalloc) do (default); "
                        "system: as it is (a forward pass then pays page faults for its large activations)")
    p.add_argument("--pin-cpu", type=lambda t: int_at_least(t, 0), metavar="CORE",
                   help="run on this CPU core only (Linux sched_setaffinity)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


def add_commands(sub) -> None:
    """Add bench and latency to the ``deepmad`` parser's subparsers."""
    b = sub.add_parser("bench", help="measured inference latency of a model on this device: median, p90, images/s",
                       epilog=EPILOG_BENCH, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("model", help="preset name, reference network (resnet18, ...), or spec file path")
    b.add_argument("--resolution", type=lambda t: int_at_least(t, 1), help="input side in pixels (default: the spec's)")
    b.add_argument("--latency-model", metavar="FILE", help="also print the latency this model file predicts")
    _settings_args(b, 20, 5)

    lat = sub.add_parser("latency", help="calibrate a latency model on this device, or show one",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    lsub = lat.add_subparsers(dest="latency_command", metavar="ACTION", parser_class=type(lat))
    c = lsub.add_parser("calibrate", help="measure blocks of each family here and fit a posynomial latency model",
                        epilog=EPILOG_CALIBRATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("-o", "--output", required=True, help="the model file to write (.json)")
    c.add_argument("--force", action="store_true", help="overwrite the -o file if it exists")
    c.add_argument("--families", help="block families, optionally with their activation (default "
                   "bottleneck,mbconv,basic: relu, silu, relu), e.g. bottleneck or mbconv:relu6")
    c.add_argument("--grid", choices=("tiny", "small", "default"), default="default",
                   help="how much to measure: default (a few minutes on one core), small, tiny (seconds; for tests, "
                        "its coefficients mean nothing)")
    c.add_argument("--resolution", type=lambda t: int_at_least(t, 16), default=224,
                   help="input side of the networks to design (default 224): blocks are measured at its stage sides")
    c.add_argument("--seed", type=lambda t: int_at_least(t, 0), default=0, help="seed of the grid's random choices")
    c.add_argument("--statistic", choices=("median", "min"), default="median",
                   help="what the model fits of each item's timed runs: median (default; what a user waits, "
                        "typically) or min (the runs least disturbed by other work: repeats better on a shared "
                        "machine; predictions and latency budgets are then minimum latencies)")
    _settings_args(c, None, None)
    s = lsub.add_parser("show", help="what a latency model file holds: device, versions, families, fit errors")
    s.add_argument("file", help="a latency model file")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")


def _settings(args):
    from ..latency.measure import Settings

    return Settings(device=args.device, backend=args.backend, threads=args.threads, batch=args.batch,
                    channels_last=args.channels_last, warmup=args.warmup if args.warmup is not None else 3,
                    runs=args.runs if args.runs is not None else 10, clock=args.clock,
                    allocator=args.allocator)


def _bench(args) -> str:
    from .models import require_torch

    require_torch()
    from .. import report
    from ..core import blocks
    from ..core.latency import predict
    from ..latency import measure as ms
    from ..latency.model import load, warn_if_foreign
    from ..models.factory import resolve_spec

    settings = _settings(args)
    ms.check_device(settings)
    ms.pin_cpu(args.pin_cpu)
    model = load(args.latency_model, warn=False) if args.latency_model else None
    spec = resolve_spec(args.model)
    if args.resolution:
        spec = replace(spec, resolution=args.resolution)
    predicted = predict(model, spec).total if model is not None else None
    stat = model.statistic if model is not None else None
    if model is not None:
        warn_if_foreign(model)
    shape = ms.input_shape(spec, settings.batch)
    from ..progress import bar as progress_bar

    rounds = min(settings.runs, 5)
    load0 = ms.load_average()
    drift = model is not None and bool(model.meta.get("reference"))  # timed after the model's drift reference
    with progress_bar(total=rounds * (3 if drift else 1), desc=f"bench {spec.name or args.model}", unit="round",
                      enabled=not (args.quiet or args.json)) as bar:
        if drift:
            from ..latency.calibrate import speed

            _, (t,), (now,) = speed(model, settings, [spec], rounds=rounds, progress=bar.update)
        else:
            t, now = ms.measure_many([(ms.build(spec), shape)], settings, rounds=rounds, progress=bar.update)[0], None
    env = ms.environment(settings)
    load1 = ms.load_average()
    name = spec.name or str(args.model)
    if args.json:
        return report.dumps({"model": name, "input": list(shape), "macs": blocks.cost(spec).macs * settings.batch,
                             "settings": settings.to_dict(), "environment": env, "timing": t.to_dict(),
                             "samples_ms": list(t.samples), "predicted_ms": predicted, "speed": now,
                             "predicted_now_ms": None if now is None else predicted * now,
                             "latency_model": model.source if model is not None else None, "statistic": stat,
                             "load_average": [load0, load1]})
    lines = [f"{name}: {ms.describe(env)}; input {'x'.join(map(str, shape))}",
             f"  median {t.median_ms:.2f} ms   p90 {t.p90_ms:.2f} ms   min {t.min_ms:.2f} ms   "
             f"{t.images_per_s:.1f} images/s   ({t.runs} runs after {settings.warmup} warm-up)"]
    if predicted is not None:
        lines.append(f"  predicted {predicted:.2f} ms by {model.source} ({100 * (predicted / t.value(stat) - 1):+.1f}% "
                     f"of the measured {stat}, what the model fits)")
    if now is not None:
        ref = model.meta["reference"]
        lines.append(f"  the device ran at {now:.3f} of its calibration's speed (its drift reference "
                     f"{ref['spec'].get('name', '')} timed with it): predicted {predicted * now:.2f} ms at that speed "
                     f"({100 * (predicted * now / t.value(stat) - 1):+.1f}%)")
    note = " (more than the CPUs: other work competed, timings are inflated)" if load1 and load1 > (os.cpu_count() or 1) else ""
    lines.append(f"  load average {load0:.2f} before, {load1:.2f} after{note}" if load0 is not None else "")
    return "\n".join(x for x in lines if x) + "\n"


def _calibrate(args) -> str:
    from .models import require_torch

    require_torch()
    from .. import report
    from ..latency import calibrate as cal, measure as ms
    from ..latency.model import describe_fit, save

    check_output(args.output, args.force, what="a latency model file path")
    settings = _settings(args)
    families = cal.parse_families(args.families)
    ms.check_device(settings)
    ms.pin_cpu(args.pin_cpu)
    log = None if (args.quiet or args.json) else (lambda s: print(s, file=sys.stderr, flush=True))
    grid = cal.GRIDS[args.grid]
    if args.resolution != 224 and args.grid != "tiny":
        grid = replace(grid, resolutions=(args.resolution,))
    model = cal.calibrate(settings, families, grid=grid, seed=args.seed, progress=not (args.quiet or args.json),
                          runs=args.runs, warmup=args.warmup, statistic=args.statistic, log=log)
    check_output(args.output, args.force, what="a latency model file path")  # again: it may have appeared meanwhile
    try:
        save(model, args.output)
    except OSError as e:
        raise ValueError(f"-o {args.output}: cannot write ({e.strerror or e})") from None
    from ..core.latency import to_dict

    if args.json:
        return report.dumps({"output": args.output, **to_dict(model)})
    meta = model.meta
    lines = [f"calibrated {', '.join(f.name for f in model.families)} on {ms.describe(meta['environment'])}: "
             f"{meta['grid']['items']} items measured in {meta['seconds']:.0f} s (grid {meta['grid']['name']}; the "
             f"device's speed drifted {meta['reference']['speed'][0]:.2f}-{meta['reference']['speed'][1]:.2f} over "
             f"its chunks, taken out; fitted: the {args.statistic} of each item's runs)"]
    lines += [f"  {f.name}: {describe_fit(meta['fits'].get(f'{f.block}:{f.act}'))}" for f in model.families]
    lines.append(f"model written to {args.output}")
    return "\n".join(lines) + "\n"


def _show(args) -> str:
    from .. import report
    from ..core.latency import describe_kind, to_dict
    from ..latency.model import describe_fit, mismatches, read

    model = read(args.file)
    if args.json:
        return report.dumps({**to_dict(model), "mismatches": mismatches(model)})
    lines = [model.describe()]
    meta = model.meta
    if meta.get("grid"):
        lines.append(f"  grid {meta['grid'].get('name')}: {meta['grid'].get('items')} items, "
                     f"created {meta.get('created', '?')}, {meta.get('seconds', '?')} s")
    ref = meta.get("reference")
    if ref:
        lines.append(f"  drift reference {ref['spec'].get('name', '?')}: {ref['ms']:.3g} ms; the device ran at "
                     f"{ref['speed'][0]:.2f}-{ref['speed'][1]:.2f} of that over the {ref['chunks']} chunks measured")
    for f in model.families:
        lines.append(f"  {f.name}: {describe_fit(meta.get('fits', {}).get(f'{f.block}:{f.act}'))}")
        lines.append(f"    layers: {', '.join(describe_kind(k) for k, _ in f.coef)}")
    diff = mismatches(model)
    if diff:
        lines.append(f"  this machine differs: {', '.join(diff)}")
    return "\n".join(lines) + "\n"


def _latency(args) -> str:
    if args.latency_command is None:
        raise ValueError("latency: an action is required: calibrate or show (see 'deepmad latency --help')")
    return {"calibrate": _calibrate, "show": _show}[args.latency_command](args)


COMMANDS: dict[str, Any] = {"bench": _bench, "latency": _latency}
