"""The training configuration: every switch of the Section 5.1 recipe, the data, and how the run scales.

``TrainConfig`` is a frozen record; ``resolve`` fills the ``None`` ("auto") fields from the recipe and the
dataset kind, and ``check`` raises ``ConfigError`` naming the command-line flag of the first bad field. The
resolved config is stored in every checkpoint: ``--resume`` continues only under the same trajectory
fields (``TRAJECTORY``), ``deepmad eval`` rebuilds the model and the evaluation transform from it.

No torch here: the CLI parses and checks flags before torch is imported.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

BASE_BATCH = 256  # Section 5.1: lr 0.1 for a batch of 256 images; lr scales linearly with the global batch
RECIPES = ("paper", "basic", "none")
CROPS = ("rrc", "pad", "resize")
AUTOAUGMENT = ("off", "imagenet", "cifar10", "svhn")
AMP = ("auto", "off", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")  # and cuda:N
SWITCH = ("auto", "on", "off")


class ConfigError(ValueError):
    """A training option that cannot work; the message names the flag."""


# Section 5.1 recipe ("paper") and two lighter ones. Fields left None in a TrainConfig take these values;
# crop, flip and AutoAugment policy also depend on the dataset kind (see ``resolve``).
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": dict(label_smoothing=0.1, mixup=1.0, random_erasing=0.25, color_jitter=0.4, autoaugment="auto",
                  crop="auto", flip="auto"),
    "basic": dict(label_smoothing=0.0, mixup=0.0, random_erasing=0.0, color_jitter=0.0, autoaugment="off",
                  crop="auto", flip="auto"),
    "none": dict(label_smoothing=0.0, mixup=0.0, random_erasing=0.0, color_jitter=0.0, autoaugment="off",
                 crop="resize", flip=0.0),
}
# What a run defaults to on each kind of data (the fields left None). Image folders and CIFAR: the paper's recipe
# (Section 5.1: lr 0.1 per 256 images, batch 256; its schedules are 480 and 1,440 epochs, 10 is a first look).
# The bundled digits are small (builtin:mnist 4,000 training images, builtin:digits 1,437): at batch 256 an
# epoch is 15 (5) optimizer steps, and the paper's augmentation (mixup, AutoAugment, erasing) fights a
# short schedule, so the paper's settings leave a run there at chance. They default to a short schedule
# without augmentation at a small batch instead (measured: docs/training.md, benchmarks/train_cpu.py).
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "imagefolder": dict(epochs=10, batch_size=256, lr=0.1, recipe="paper"),
    "cifar": dict(epochs=10, batch_size=256, lr=0.1, recipe="paper"),
    "builtin:mnist": dict(epochs=10, batch_size=64, lr=0.8, recipe="none"),
    "builtin:digits": dict(epochs=30, batch_size=32, lr=0.8, recipe="none"),
}
# Section 5.1: weight decay 5e-4 on CIFAR-100, 4e-5 on ImageNet (directories of images)
WEIGHT_DECAY = {"imagefolder": 4e-5, "cifar": 5e-4, "builtin": 5e-4}
WARMUP_EPOCHS = 5.0  # Section 5.1; shortened to a quarter of the run when the run is shorter than 20 epochs


@dataclass(frozen=True)
class TrainConfig:
    model: str  # preset or reference name, or spec file path
    data: str  # directory, CIFAR python folder, or builtin:mnist / builtin:digits
    out: str  # run directory: last.pt, best.pt, metrics.jsonl, curves.png, summary.json
    epochs: int | None = None  # None: by data (DATA_DEFAULTS)
    batch_size: int | None = None  # global images per optimizer step (all processes x accumulation steps)
    lr: float | None = None  # per BASE_BATCH images; the run uses lr * batch_size / 256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float | None = None  # None: 4e-5 (image folders, ImageNet) or 5e-4 (CIFAR, builtin)
    decay_norm_bias: bool = False  # also decay BN weights and biases (off: no decay on 1-d params)
    warmup_epochs: float | None = None  # None: 5, or epochs / 4 when shorter
    min_lr: float = 0.0  # floor of the cosine decay (absolute)
    recipe: str | None = None  # paper | basic | none: defaults of the augmentation fields below (None: by data)
    label_smoothing: float | None = None
    mixup: float | None = None  # probability that a batch is mixed (kornia RandomMixUpV2)
    mixup_lambda: tuple[float, float] = (0.0, 0.3)  # range of the per-image mixing weight
    random_erasing: float | None = None  # per-image probability
    color_jitter: float | None = None  # brightness/contrast/saturation strength ("lighting"); 0 = off
    autoaugment: str | None = None  # off | imagenet | cifar10 | svhn; auto: by dataset
    crop: str | None = None  # rrc (random resized crop) | pad (pad-and-crop, CIFAR) | resize
    min_scale: float = 0.08  # smallest area of a random resized crop
    flip: float | None = None  # horizontal flip probability (auto: 0.5, 0 for digits)
    drop_rate: float = 0.0  # dropout before the classifier
    drop_path_rate: float = 0.0  # stochastic depth
    resolution: int | None = None  # input side; None: the data's (array data: CIFAR, builtin), else the spec's
    val_split: float | None = None  # share of the training images held out when there is no val/test split
    subset: int | None = None  # train on this many images (a fixed random subset)
    val_subset: int | None = None  # evaluate on this many images
    seed: int = 0
    accum_steps: int = 1  # micro-batches per optimizer step
    workers: int | None = None  # image decoding processes (image folders only); None: the CPUs this process has
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on GPU, off on CPU) | off | bf16 | fp16
    channels_last: str = "auto"  # auto (on GPU) | on | off
    deterministic: bool = False  # torch.use_deterministic_algorithms (GPU runs; CPU runs are already)
    eval_every: int = 1  # epochs between evaluations (the last epoch is always evaluated)
    eval_batch_size: int | None = None  # per process; None: twice the training micro-batch
    log_every: int = 50  # optimizer steps between step records in metrics.jsonl
    progress: str = "auto"  # auto (a progress bar on a terminal, a line per epoch otherwise) | on | off

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mixup_lambda"] = list(self.mixup_lambda)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "mixup_lambda" in d:
            d["mixup_lambda"] = tuple(d["mixup_lambda"])
        return cls(**d)


# fields that change what is computed: a resumed run must keep them (the others only change how it runs)
TRAJECTORY = ("model", "data", "epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay",
              "decay_norm_bias", "warmup_epochs", "min_lr", "label_smoothing", "mixup", "mixup_lambda",
              "random_erasing", "color_jitter", "autoaugment", "crop", "min_scale", "flip", "drop_rate",
              "drop_path_rate", "resolution", "val_split", "subset", "seed", "accum_steps", "amp",
              "channels_last")


def flag(field: str) -> str:
    """The command-line flag of a config field."""
    return {"model": "MODEL", "data": "--data", "out": "--output"}.get(field, "--" + field.replace("_", "-"))


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; os.cpu_count where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Image decoding processes of a run: the CPUs of this process, shared by the processes of this machine
    under torchrun (LOCAL_WORLD_SIZE)."""
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, available_cpus() // local)


def check_device(device: Any, what: str = "--device") -> None:
    """auto, cpu, cuda or cuda:N (N a GPU index)."""
    if isinstance(device, str) and (device in DEVICES or re.fullmatch(r"cuda:\d+", device)):
        return
    raise ConfigError(f"{what}: expected auto, cpu, cuda or cuda:N (a GPU index), got {device!r}")


def _num(cfg: TrainConfig, name: str, lo: float, hi: float = math.inf, *, integer: bool = False,
         lo_open: bool = False, allow_none: bool = False) -> None:
    v = getattr(cfg, name)
    if v is None and allow_none:
        return
    kind = "an integer" if integer else "a number"
    ok = not isinstance(v, bool) and isinstance(v, int if integer else (int, float))
    ok = ok and math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        rng = f"> {lo:g}" if lo_open else f">= {lo:g}"
        rng += f" and <= {hi:g}" if math.isfinite(hi) else ""
        raise ConfigError(f"{flag(name)}: expected {kind} {rng}, got {v!r}")


def _choice(cfg: TrainConfig, name: str, choices: tuple[str, ...]) -> None:
    v = getattr(cfg, name)
    if v not in choices:
        raise ConfigError(f"{flag(name)}: expected one of {', '.join(choices)}, got {v!r}")


def check(cfg: TrainConfig) -> None:
    """Raise ConfigError naming the flag of the first field that cannot work (before any data is read)."""
    for name in ("model", "data", "out"):
        v = getattr(cfg, name)
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{flag(name)}: expected a non-empty text, got {v!r}")
    _num(cfg, "epochs", 1, integer=True, allow_none=True)
    _num(cfg, "batch_size", 1, integer=True, allow_none=True)
    _num(cfg, "lr", 0, lo_open=True, allow_none=True)
    _num(cfg, "momentum", 0, 1)
    _num(cfg, "weight_decay", 0, allow_none=True)
    _num(cfg, "warmup_epochs", 0, allow_none=True)
    _num(cfg, "min_lr", 0)
    if cfg.recipe is not None:
        _choice(cfg, "recipe", RECIPES)
    _num(cfg, "label_smoothing", 0, 0.99, allow_none=True)
    _num(cfg, "mixup", 0, 1, allow_none=True)
    lam = cfg.mixup_lambda
    if (not isinstance(lam, tuple) or len(lam) != 2 or any(isinstance(a, bool) or not isinstance(a, (int, float))
                                                            for a in lam) or not 0 <= lam[0] <= lam[1] <= 1):
        raise ConfigError(f"--mixup-lambda: expected LOW,HIGH with 0 <= LOW <= HIGH <= 1, got {lam!r}")
    _num(cfg, "random_erasing", 0, 1, allow_none=True)
    _num(cfg, "color_jitter", 0, 1, allow_none=True)
    if cfg.autoaugment is not None:
        _choice(cfg, "autoaugment", AUTOAUGMENT + ("auto",))
    if cfg.crop is not None:
        _choice(cfg, "crop", CROPS + ("auto",))
    _num(cfg, "min_scale", 0, 1, lo_open=True)
    if cfg.flip not in (None, "auto"):
        _num(cfg, "flip", 0, 1)
    _num(cfg, "drop_rate", 0, 1, lo_open=False)
    if cfg.drop_rate >= 1:
        raise ConfigError(f"--drop-rate: expected a number >= 0 and < 1, got {cfg.drop_rate!r}")
    _num(cfg, "drop_path_rate", 0, 1)
    if cfg.drop_path_rate >= 1:
        raise ConfigError(f"--drop-path-rate: expected a number >= 0 and < 1, got {cfg.drop_path_rate!r}")
    _num(cfg, "resolution", 8, 4096, integer=True, allow_none=True)
    _num(cfg, "val_split", 0, 0.9, allow_none=True)
    _num(cfg, "subset", 1, integer=True, allow_none=True)
    _num(cfg, "val_subset", 1, integer=True, allow_none=True)
    _num(cfg, "seed", 0, 2**31 - 1, integer=True)
    _num(cfg, "accum_steps", 1, integer=True)
    _num(cfg, "workers", 0, 256, integer=True, allow_none=True)
    check_device(cfg.device)
    _choice(cfg, "amp", AMP)
    _choice(cfg, "channels_last", SWITCH)
    _num(cfg, "eval_every", 1, integer=True)
    _num(cfg, "eval_batch_size", 1, integer=True, allow_none=True)
    _num(cfg, "log_every", 1, integer=True)
    _choice(cfg, "progress", SWITCH)
    if cfg.batch_size is not None and cfg.batch_size % cfg.accum_steps:
        raise ConfigError(f"--accum-steps: {cfg.accum_steps} does not divide --batch-size {cfg.batch_size}")
    if (cfg.warmup_epochs is not None and cfg.epochs is not None and cfg.warmup_epochs >= cfg.epochs
            and cfg.epochs > 1):
        raise ConfigError(f"--warmup-epochs: {cfg.warmup_epochs:g} leaves no epoch of the {cfg.epochs} for "
                          f"the cosine decay; give fewer warm-up epochs")


def data_defaults(kind: str, data: str) -> dict[str, Any]:
    """epochs, batch_size, lr and recipe a run on data (of kind imagefolder | cifar | builtin) defaults to."""
    return dict(DATA_DEFAULTS[data if kind == "builtin" else kind])


def resolve(cfg: TrainConfig, kind: str, heldout: bool) -> TrainConfig:
    """Fill the auto fields for a dataset kind (imagefolder | cifar | builtin); heldout: the data has its own
    val/test split (otherwise 20% of the training images are held out by default)."""
    check(cfg)
    base = {k: v if getattr(cfg, k) is None else getattr(cfg, k) for k, v in data_defaults(kind, cfg.data).items()}
    if cfg.workers is None:
        base["workers"] = default_workers()
    cfg = replace(cfg, **base)
    check(cfg)
    rec = RECIPE_DEFAULTS[cfg.recipe]
    out: dict[str, Any] = {}
    for f in ("label_smoothing", "mixup", "random_erasing", "color_jitter", "autoaugment", "crop", "flip"):
        v = getattr(cfg, f)
        out[f] = rec[f] if v is None else v
    digits = kind == "builtin"
    if out["crop"] == "auto":
        out["crop"] = "rrc" if kind == "imagefolder" else "pad"
    if out["flip"] == "auto":
        out["flip"] = 0.0 if digits else 0.5  # a flipped digit is another symbol
    if out["autoaugment"] == "auto":
        out["autoaugment"] = {"imagefolder": "imagenet", "cifar": "cifar10", "builtin": "svhn"}[kind]
    out["flip"] = float(out["flip"])
    if cfg.weight_decay is None:
        out["weight_decay"] = WEIGHT_DECAY[kind]
    if cfg.warmup_epochs is None:
        out["warmup_epochs"] = min(WARMUP_EPOCHS, cfg.epochs / 4)
    if cfg.val_split is None:
        out["val_split"] = 0.0 if heldout else 0.2
    r = replace(cfg, **out)
    check(r)
    return r


__all__ = ["TrainConfig", "ConfigError", "check", "resolve", "flag", "TRAJECTORY", "BASE_BATCH", "RECIPES",
           "RECIPE_DEFAULTS", "CROPS", "AUTOAUGMENT", "AMP", "DEVICES", "SWITCH", "WEIGHT_DECAY", "DATA_DEFAULTS",
           "data_defaults", "available_cpus", "default_workers", "check_device"]
