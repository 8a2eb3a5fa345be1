"""``deepmad`` commands that train: ``train``, ``eval`` and ``study``.

A CLI extension (see ``deepmad.cli.EXTENSIONS``): ``add_commands(sub)`` adds the subparsers, ``COMMANDS`` maps
each command to its handler ``handler(args) -> str``. torch, kornia and matplotlib are imported inside the
handlers only. Under ``torchrun`` every process runs the handler; rank 0 prints the result, the others print
nothing.
"""
from __future__ import annotations

import argparse
import json
import os

TRAIN_MISSING = "this command needs the training extras: install with pip install 'deepmad[train]'"

EPILOG_TRAIN = """examples:
  deepmad train my-net.yaml --data builtin:mnist                 # CPU, bundled digits, a few minutes
  deepmad train deepmad-r18 --data /data/imagenet --epochs 480 --batch-size 256 -o runs/r18
  torchrun --nproc_per_node 8 -m deepmad train deepmad-r18 --data /data/imagenet --epochs 480 \\
      --batch-size 2048 -o runs/r18
  deepmad train deepmad-r18 --data /data/imagenet -o runs/r18 --resume          # continue after a stop

recipe (Section 5.1): SGD momentum 0.9, lr 0.1 per 256 images (scaled by --batch-size, the global batch),
cosine decay after 5 warm-up epochs (per step), weight decay 5e-4 (CIFAR, builtin) or 4e-5 (image folders),
none on BN and biases; label smoothing 0.1, mixup, random erasing 0.25, random resized crop (image folders)
or pad-and-crop (CIFAR), flip, AutoAugment, colour jitter. --recipe basic keeps crop and flip only; --recipe
none no augmentation; each flag below overrides its recipe default (0 or off switches a part off).
Defaults by data (epochs, batch size, lr per 256, recipe): {defaults}.

timm's train.py spellings: --lr-base is --lr here (per 256 images; timm's --lr is the rate itself);
--mixup-prob is --mixup here (a probability; timm's --mixup is a Beta alpha); --resume PATH works (a run's
last.pt) as well as the flag; --smoothing, --drop, --drop-path, --reprob, --aa and -j are accepted. timm's
-b/--batch-size is per process, --batch-size here is global.

exit status: 0 done; 2 bad options or data (one line on stderr, nothing left behind); 143 stopped by SIGTERM,
130 by SIGINT (Ctrl-C), after writing last.pt (--resume continues it)."""

EPILOG_STUDY = """examples:
  deepmad study rho --budget-of resnet20-cifar --models 65 --data /data/cifar-100-python --epochs 1440 \\
      --batch-size 256 -o runs/rho-study                                       # Section 5.3 (GPU)
  deepmad study rho --budget-of resnet8-cifar --resolution 16 --models 12 --data builtin:mnist --epochs 2 \\
      --batch-size 32 --lr 1.6 --recipe basic -o runs/rho-mnist                 # small CPU study

Run the same command again to continue a study: finished networks are skipped, an interrupted one resumes."""


def require_train() -> None:
    """Raise a one-line ValueError when torch, kornia, matplotlib or tqdm cannot be imported."""
    try:
        import kornia  # noqa: F401
        import matplotlib  # noqa: F401
        import torch  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        raise ValueError(TRAIN_MISSING) from None


def _pair(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two comma-separated numbers like 0.1,1.0, got {text!r}") from None
    return a, b


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.1,0.5,1.0, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 3,5, got {text!r}") from None


def _flip(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability or auto, got {text!r}") from None


def _count(text: str) -> float:
    from ..core.budget import parse_count

    try:
        return parse_count(text, "budget")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _device(text: str) -> str:
    from ..train.config import ConfigError, check_device

    try:
        check_device(text, "device")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None
    return text


def _by_data(field: str) -> str:
    """A field's default on each kind of data, e.g. '10 (image folders, CIFAR), 64 (builtin:mnist), ...'."""
    from ..train.config import DATA_DEFAULTS

    names = {"imagefolder": "image folders", "cifar": "CIFAR"}
    groups: dict[str, list[str]] = {}
    for kind, values in DATA_DEFAULTS.items():
        v = values[field]
        groups.setdefault(v if isinstance(v, str) else f"{v:g}", []).append(names.get(kind, kind))
    return ", ".join(f"{v} ({', '.join(kinds)})" for v, kinds in groups.items())


def _recipe_flags(p: argparse.ArgumentParser, study: bool = False) -> None:
    """Flags shared by train and study (the study trains every network with them)."""
    from ..train.config import WARMUP_EPOCHS, default_workers

    g = p.add_argument_group("data")
    g.add_argument("--data", required=True,
                   help="image folder (DIR/train, DIR/val or DIR/<class>), CIFAR python folder, builtin:mnist "
                        "or builtin:digits (bundled, no download); required")
    g.add_argument("--val-split", type=float, help="hold this share of the training images out for validation "
                   "(default: the data's own val/test split; 0.2 for builtin data)")
    g.add_argument("--subset", type=int, help="train on this many images, a fixed random subset (default: all)")
    g.add_argument("--val-subset", type=int, help="validate on this many images (default: all)")
    if not study:
        g.add_argument("--resolution", type=int, help="input side in pixels (default: the data's for CIFAR and "
                       "builtin data, whose images have one size; the model's for image folders)")
    g.add_argument("-j", "--workers", type=int, help="image decoding processes (image folders; default: the "
                   f"CPUs this process may use, {default_workers()} here)")

    g = p.add_argument_group("schedule and optimizer (Section 5.1)")
    g.add_argument("--epochs", type=int, help=f"default by data: {_by_data('epochs')} (paper: 480 ImageNet, "
                   f"1440 CIFAR-100)")
    g.add_argument("--batch-size", type=int,
                   help="global images per optimizer step, over all processes and --accum-steps (timm's "
                        f"-b/--batch-size is per process); default by data: {_by_data('batch_size')}")
    g.add_argument("--lr", "--lr-base", dest="lr", type=float,
                   help="learning rate per 256 images: the run uses LR x batch size / 256 (timm's --lr-base; "
                        f"timm's --lr is the rate itself); default by data: {_by_data('lr')}")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum (default: off)")
    g.add_argument("--weight-decay", type=float,
                   help="default 5e-4 (CIFAR, builtin) or 4e-5 (image folders, ImageNet)")
    g.add_argument("--decay-norm-bias", action="store_true",
                   help="also decay BN weights and all biases (default: off, no decay on 1-d parameters)")
    g.add_argument("--warmup-epochs", type=float, help=f"linear warm-up before the cosine decay (default "
                   f"{WARMUP_EPOCHS:g}; a quarter of runs shorter than {4 * WARMUP_EPOCHS:g} epochs)")
    g.add_argument("--min-lr", type=float, default=0.0, help="floor of the cosine decay (default 0)")

    g = p.add_argument_group("augmentation and regularization (defaults from --recipe)")
    g.add_argument("--recipe", choices=("paper", "basic", "none"),
                   help="paper: all of Section 5.1; basic: crop and flip; none: no augmentation; default by "
                        f"data: {_by_data('recipe')}")
    g.add_argument("--label-smoothing", "--smoothing", dest="label_smoothing", type=float,
                   help="default: the recipe's (paper 0.1, basic and none 0)")
    g.add_argument("--mixup", "--mixup-prob", dest="mixup", type=float,
                   help="probability that a batch is mixed (timm's --mixup-prob; timm's --mixup is the alpha of "
                        "a Beta draw, here --mixup-lambda sets the weight's range); default: the recipe's "
                        "(paper 1.0, basic and none 0 = off)")
    g.add_argument("--mixup-lambda", type=_pair, default=(0.0, 0.3),
                   help="range of the per-image mixing weight (default 0,0.3)")
    g.add_argument("--random-erasing", "--reprob", dest="random_erasing", type=float,
                   help="per-image probability (default: the recipe's: paper 0.25, basic and none 0)")
    g.add_argument("--color-jitter", type=float, help="brightness/contrast/saturation strength (default: the "
                   "recipe's: paper 0.4, basic and none 0)")
    g.add_argument("--autoaugment", "--aa", dest="autoaugment", choices=("off", "imagenet", "cifar10", "svhn"),
                   help="AutoAugment policy (default: the recipe's: paper imagenet for folders, cifar10 for "
                        "CIFAR, svhn for digits; basic and none off)")
    g.add_argument("--crop", choices=("rrc", "pad", "resize"),
                   help="rrc: random resized crop; pad: pad 1/8 and random crop; resize (default: the recipe's: "
                        "paper and basic rrc for folders, pad otherwise; none resize)")
    g.add_argument("--min-scale", type=float, default=0.08,
                   help="smallest area of a random resized crop (default 0.08)")
    g.add_argument("--flip", type=_flip, help="horizontal flip probability (default: 0.5, 0 for digits; recipe "
                   "none 0)")
    g.add_argument("--drop-rate", "--drop", dest="drop_rate", type=float, default=0.0,
                   help="dropout before the classifier (default 0)")
    g.add_argument("--drop-path-rate", "--drop-path", dest="drop_path_rate", type=float, default=0.0,
                   help="stochastic depth (default 0)")

    g = p.add_argument_group("scale and reproducibility")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights, data order and augmentation "
                   "(default 0)")
    g.add_argument("--accum-steps", type=int, default=1, help="micro-batches per optimizer step (default 1)")
    g.add_argument("--device", default="auto", type=_device,
                   help="auto, cpu, cuda or cuda:N (default auto: cuda if there is a GPU; under torchrun, give "
                        "cuda: each process takes GPU LOCAL_RANK)")
    g.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"),
                   help="mixed precision (default auto: bf16 on GPU, off on CPU)")
    g.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                   help="NHWC memory format (default auto: on GPU)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic GPU kernels, slower (default: off; CPU runs are deterministic anyway)")
    g.add_argument("--eval-every", type=int, default=1, help="epochs between evaluations (default 1)")
    g.add_argument("--eval-batch-size", type=int, help="per process (default: twice the training micro-batch)")
    g.add_argument("--log-every", type=int, default=50,
                   help="optimizer steps between metrics.jsonl records (default 50)")
    g.add_argument("--progress", default="auto", choices=("auto", "on", "off"),
                   help="progress bars on stderr (default auto: on a terminal; otherwise a line at most once a "
                        "minute); off: as --quiet")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing on stderr but errors (default: off)")


def add_commands(sub) -> None:
    from ..train.config import DATA_DEFAULTS

    fmt = argparse.RawDescriptionHelpFormatter
    defaults = "; ".join(f"{k} {v['epochs']}, {v['batch_size']}, {v['lr']:g}, {v['recipe']}"
                         for k, v in DATA_DEFAULTS.items())
    t = sub.add_parser("train", help="train a designed (or reference) network with the Section 5.1 recipe",
                       epilog=EPILOG_TRAIN.format(defaults=defaults), formatter_class=fmt)
    t.add_argument("model", metavar="MODEL", help="preset or reference name (deepmad-r18, resnet50, ...) or spec "
                   "file (.yaml, .yml, .json)")
    _recipe_flags(t)
    t.add_argument("-o", "--output", "--out", dest="out", metavar="DIR",
                   help="run directory (default runs/<model>; --out is the older spelling)")
    r = t.add_mutually_exclusive_group()
    r.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue the run in --output from its last.pt; or give that checkpoint, as timm's "
                        "--resume PATH (RUN/last.pt continues RUN) (default: off)")
    r.add_argument("--auto-resume", action="store_true",
                   help="continue the run in --output if it has a last.pt, else start it, for requeued jobs "
                        "(default: off)")
    t.add_argument("--force", action="store_true",
                   help="start over in an --output that already holds a run (default: off)")
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object (default: off)")

    e = sub.add_parser("eval", help="top-1 / top-5 of a training checkpoint on a dataset")
    e.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by deepmad train (best.pt, last.pt)")
    e.add_argument("--data", help="image folder, its val/ split, CIFAR folder or builtin:NAME (default: the "
                   "run's own validation split)")
    e.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    e.add_argument("-j", "--workers", type=int, help="image decoding processes (image folders; default: the CPUs "
                   "this process may use)")
    e.add_argument("--device", default="auto", type=_device, help="auto, cpu, cuda or cuda:N (default auto)")
    e.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"),
                   help="mixed precision (default auto: bf16 on GPU, off on CPU)")
    e.add_argument("--progress", default="auto", choices=("auto", "on", "off"),
                   help="progress bar on stderr (default auto: on a terminal)")
    e.add_argument("-q", "--quiet", action="store_true", help="print nothing on stderr but errors (default: off)")
    e.add_argument("--json", action="store_true", help="print one JSON object (default: off)")

    s = sub.add_parser("study", help="Section 5.3: accuracy and entropy vs effectiveness rho at a fixed budget",
                       epilog=EPILOG_STUDY, formatter_class=fmt)
    s.add_argument("kind", choices=("rho",), help="the study: rho (effectiveness, Figures 2-3)")
    g = s.add_argument_group("networks")
    g.add_argument("--budget-of", default=None,
                   help="network whose FLOPs/params are the budget: resnet20-cifar (default), resnet32-cifar, "
                        "..., a reference or preset name, or a spec file")
    g.add_argument("--flops", type=_count, help="FLOPs (multiply-accumulates) budget instead, e.g. 40M "
                   "(default: --budget-of's)")
    g.add_argument("--params", type=_count, help="params budget instead, e.g. 0.27M (default: --budget-of's)")
    g.add_argument("--models", type=int, default=65, help="networks to design and train (default 65, the paper's)")
    g.add_argument("--block", default="basic", choices=("basic", "bottleneck"), help="block family (default basic)")
    g.add_argument("--rho-range", type=_pair, default=(0.1, 1.0),
                   help="targets spread over LOW,HIGH (default 0.1,1.0)")
    g.add_argument("--groups", type=_floats, default=(0.1, 0.5, 1.0),
                   help="centres of the rho groups for Kendall tau (default 0.1,0.5,1.0)")
    g.add_argument("--group-width", type=float, default=0.1,
                   help="a group holds |rho - centre| <= this (default 0.1)")
    g.add_argument("--resolution", type=int, default=32,
                   help="input side the networks are designed and trained at (default 32)")
    g.add_argument("--kernels", type=_ints, default=(3,), help="kernel choices (default 3)")
    g.add_argument("--max-depth", type=int, default=30, help="most blocks per stage (default 30)")
    g.add_argument("--max-channels", type=int, default=512, help="most channels of a stage (default 512)")
    g.add_argument("--solver", default="lns", choices=("lns", "evolution"),
                   help="search of the designs (default lns)")
    _recipe_flags(s, study=True)
    s.add_argument("-o", "--output", "--out", dest="out", required=True, metavar="DIR",
                   help="study directory (designs, one run per network, results); required")
    s.add_argument("--json", action="store_true", help="print the results as one JSON object (default: off)")


def _train_config(args, model: str, out: str):
    from ..train.config import TrainConfig

    return TrainConfig(
        model=model, data=args.data, out=out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay,
        decay_norm_bias=args.decay_norm_bias, warmup_epochs=args.warmup_epochs, min_lr=args.min_lr,
        recipe=args.recipe, label_smoothing=args.label_smoothing, mixup=args.mixup,
        mixup_lambda=tuple(args.mixup_lambda), random_erasing=args.random_erasing, color_jitter=args.color_jitter,
        autoaugment=args.autoaugment, crop=args.crop, min_scale=args.min_scale, flip=args.flip,
        drop_rate=args.drop_rate, drop_path_rate=args.drop_path_rate,
        resolution=getattr(args, "resolution", None) if args.command == "train" else None,
        val_split=args.val_split, subset=args.subset, val_subset=args.val_subset, seed=args.seed,
        accum_steps=args.accum_steps, workers=args.workers, device=args.device, amp=args.amp,
        channels_last=args.channels_last, deterministic=args.deterministic, eval_every=args.eval_every,
        eval_batch_size=args.eval_batch_size, log_every=args.log_every,
        progress="off" if args.quiet else args.progress)


def _default_out(model: str) -> str:
    base = os.path.basename(model.rstrip("/\\"))
    for suffix in (".yaml", ".yml", ".json"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return os.path.join("runs", base or "run")


def _resume_target(args) -> tuple[str, bool | str]:
    """(run directory, resume) from --output, --resume [CKPT] and --auto-resume."""
    out = args.out
    if args.auto_resume:
        return out or _default_out(args.model), "auto"
    if isinstance(args.resume, str):  # timm's --resume PATH: a run's checkpoint (or the run directory)
        path = args.resume
        run = path if os.path.isdir(path) else os.path.dirname(path) or "."
        if not os.path.isdir(path) and os.path.basename(path) != "last.pt":
            raise ValueError(f"--resume {path}: expected a run's last.pt (or its run directory); a run continues "
                             f"from its last.pt, best.pt is for evaluation and export")
        if out and os.path.abspath(out) != os.path.abspath(run):
            raise ValueError(f"--resume {path}: is not in --output {out}; give one of them")
        return run, True
    return out or _default_out(args.model), bool(args.resume)


def _train(args) -> str:
    from ..train.config import check

    from . import Exit

    out, resume = _resume_target(args)
    cfg = _train_config(args, args.model, out)
    check(cfg)  # bad flags fail before torch is imported
    require_train()
    from ..train.engine import train

    r = train(cfg, resume=resume, force=args.force)
    if not r.main:
        if r.signal:
            raise Exit(128 + r.signal)
        return ""
    if args.json:
        text = json.dumps({"out": r.out, "epochs": r.epochs_done, "steps": r.step, "best_top1": r.best_top1,
                           "best_epoch": r.best_epoch, "last": r.last, "interrupted": r.interrupted,
                           "signal": r.signal, "resolution": r.resolution, "img_per_s": r.img_per_s,
                           "seconds": r.seconds, "params": r.params}, indent=2) + "\n"
    elif r.interrupted:
        text = ""  # the stop was reported on stderr
    else:
        lines = [f"trained {cfg.model} ({r.params:,} params) at {r.resolution} px for {r.epochs_done} epochs "
                 f"({r.step} steps) in {r.seconds:.1f} s, {r.img_per_s:,.0f} img/s"]
        if r.best_top1 is not None:
            last = r.last or {}
            lines.append(f"best val top-1 {100 * r.best_top1:.2f}% (epoch {r.best_epoch}); last epoch top-1 "
                         f"{100 * last.get('val_top1', float('nan')):.2f}% top-5 "
                         f"{100 * last.get('val_top5', float('nan')):.2f}%")
        lines.append(f"run directory {r.out}: best.pt, last.pt, metrics.jsonl, curves.png, summary.json")
        text = "\n".join(lines) + "\n"
    if r.signal:
        raise Exit(128 + r.signal, out=text)
    return text


def _eval(args) -> str:
    if not os.path.exists(args.checkpoint):
        raise ValueError(f"{args.checkpoint}: no such checkpoint")
    require_train()
    from ..train.engine import evaluate_checkpoint

    ev = evaluate_checkpoint(args.checkpoint, args.data, batch_size=args.batch_size, device=args.device,
                             workers=args.workers, amp=args.amp, progress="off" if args.quiet else args.progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return ""
    if args.json:
        return json.dumps(ev, indent=2) + "\n"
    return (f"{ev['checkpoint']} (epoch {ev['epoch']}) on {ev['data']}: top-1 {100 * ev['top1']:.2f}% "
            f"top-5 {100 * ev['top5']:.2f}% loss {ev['loss']:.4f} ({ev['images']} images, {ev['seconds']:.1f} s)\n")


def _study(args) -> str:
    import sys

    from ..train.study import StudyConfig

    budget_of = args.budget_of if args.budget_of or args.flops is not None else "resnet20-cifar"
    sc = StudyConfig(out=args.out, train=_train_config(args, "study", args.out), models=args.models,
                     block=args.block, budget_of=budget_of, flops=args.flops, params=args.params,
                     rho_range=tuple(args.rho_range), groups=tuple(args.groups), group_width=args.group_width,
                     resolution=args.resolution, kernels=tuple(args.kernels), max_depth=args.max_depth,
                     max_channels=args.max_channels, solver=args.solver)
    if args.budget_of and args.flops is not None:
        raise ValueError("--budget-of and --flops/--params: give one budget, not both")
    sc.check()
    require_train()
    from ..train.study import run_study

    log = None if args.progress == "off" or args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    res = run_study(sc, log=log)
    from . import Exit

    if int(os.environ.get("RANK", "0")) != 0:
        if res.signal:
            raise Exit(128 + res.signal)
        return ""
    if args.json:
        return json.dumps({"out": res.out, "budget": res.budget, "rows": res.rows, "kendall": res.taus,
                           "complete": res.complete}, indent=2) + "\n"
    tail = (f"table: {res.out}/results.csv, results.json; plot: {res.out}/study.png\n" if res.complete else
            f"stopped before every network was trained; run the same command to continue\n")
    if res.signal:
        raise Exit(128 + res.signal, out=res.text + tail)
    return res.text + tail


COMMANDS = {"train": _train, "eval": _eval, "study": _study}

__all__ = ["add_commands", "COMMANDS", "require_train"]
