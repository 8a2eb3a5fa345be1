"""Training and evaluation: one loop for one CPU, one GPU, or many processes under torchrun.

``train(cfg)`` runs the recipe of ``cfg`` and writes into ``cfg.out``:
  last.pt        checkpoint after every epoch and on SIGTERM / Ctrl-C (``--resume`` continues it bit for bit);
                 the command then exits 128 + the signal (143 for SIGTERM, 130 for SIGINT)
  best.pt        the checkpoint of the epoch with the best val top-1
  metrics.jsonl  one record per ``log_every`` optimizer steps (kind "step") and per epoch (kind "epoch")
  curves.png     loss and accuracy per epoch
  summary.json   the final result
``evaluate_checkpoint(path, data)`` reports top-1 / top-5 / loss of a checkpoint on a dataset.

Bit-exact resume rests on: the data order being a function of (seed, epoch) (``data.epoch_batches``), the
learning rate a function of the step (``schedule``), every random draw (augmentation, dropout, stochastic
depth) coming from torch's global generator whose state every checkpoint saves per process, and the model,
optimizer and grad-scaler states saved whole.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.spec import Spec, from_dict, to_dict, write_atomic
from . import checkpoint as ckpt
from . import data as datamod
from . import distributed
from .augment import EvalTransform, TrainTransform, hard_labels, loss_fn
from ..models.factory import is_preset
from .config import BASE_BATCH, TRAJECTORY, ConfigError, TrainConfig, check, default_workers, flag, resolve
from .metrics import Feedback, JsonlLog, Rate, plot_curves, read_jsonl, topk_correct
from .schedule import Schedule


@dataclass(frozen=True)
class TrainResult:
    out: str  # run directory
    epochs_done: int
    step: int  # optimizer steps done
    best_top1: float | None  # best val top-1 (fraction)
    best_epoch: int | None  # 1-based epoch of best_top1
    last: dict[str, Any] | None  # the last epoch record
    interrupted: bool  # stopped by a signal; last.pt holds where it stopped
    img_per_s: float  # training throughput over this invocation (all processes)
    seconds: float
    params: int  # learnable parameters of the model
    main: bool  # this process is rank 0 (the one that wrote the files)
    signal: int | None = None  # the signal that stopped the run (signal.SIGTERM, signal.SIGINT), if one did
    resolution: int | None = None  # the input side it trained at


class _StopSignal:
    """SIGTERM / SIGINT set a flag; the loop finishes its optimizer step, saves, and returns (the command then
    exits with 128 + the signal's number). A second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.prev: dict[int, Any] = {}

    @property
    def flag(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.prev[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for sig, h in self.prev.items():
            signal.signal(sig, h)
        self.prev.clear()


# ---------------------------------------------------------------------------------------------- building

def model_spec(model: str) -> Spec:
    """The spec of a model name (preset, reference network) or spec file."""
    from ..models import resolve_spec

    return resolve_spec(model)


def build_model(spec: Spec, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> nn.Module:
    from ..models import create_model

    return create_model(spec, num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate)


def param_groups(model: nn.Module, weight_decay: float, decay_norm_bias: bool) -> list[dict[str, Any]]:
    """Weight decay on conv and linear weights only; BN weights/biases and every bias (1-d tensors) get none
    unless decay_norm_bias."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if decay_norm_bias or p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _amp(cfg: TrainConfig, dev: torch.device) -> str:
    if cfg.amp == "auto":
        return "bf16" if dev.type == "cuda" else "off"
    return cfg.amp


def _autocast(amp: str, dev: torch.device):
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _channels_last(cfg: TrainConfig, dev: torch.device) -> bool:
    return cfg.channels_last == "on" or (cfg.channels_last == "auto" and dev.type == "cuda")


# ---------------------------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: nn.Module, split: datamod.Split, tf: EvalTransform, d: distributed.Dist, *, batch_size: int,
             size: int, workers: int, amp: str, channels_last: bool,
             feedback: Feedback | None = None) -> dict[str, float]:
    """Loss, top-1 and top-5 over a split (each process takes a contiguous shard; sums are all-reduced)."""
    was = model.training
    model.eval()
    idx = datamod.shard(len(split), d.rank, d.world)
    chunks = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    loss_sum, c1, c5, n = 0.0, 0, 0, 0
    bar = (feedback or Feedback("off")).bar(total=len(idx), desc="eval", unit="img", leave=False)
    try:
        for x, y in datamod.batches(split, chunks, size=size, workers=workers, pin=d.device.type == "cuda"):
            x = tf(x.to(d.device, non_blocking=True))
            y = y.to(d.device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(amp, d.device):
                logits = model(x)
            logits = logits.float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            a, b = topk_correct(logits, y, (1, 5))
            c1, c5, n = c1 + a, c5 + b, n + len(y)
            bar.update(len(y))
    finally:
        bar.close()
    loss_sum, c1, c5, n = distributed.all_sum(d, [loss_sum, c1, c5, n])
    model.train(was)
    n = max(n, 1)
    return {"loss": loss_sum / n, "top1": c1 / n, "top5": c5 / n, "images": int(n)}


def _sync_buffers(model: nn.Module, d: distributed.Dist) -> None:
    """Rank 0's BN running statistics on every process (each updated its own during the last step)."""
    if d.active:
        for b in model.buffers():
            torch.distributed.broadcast(b, src=0)


# ---------------------------------------------------------------------------------------------- training

def _check_out(out: Path, resume: bool | str, force: bool) -> bool:
    """Whether to resume; raises for a run directory that would be overwritten by mistake."""
    last = out / "last.pt"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out}: is a file, expected a run directory")
    if resume == "auto":
        return last.exists()
    if resume:
        if not last.exists():
            raise ConfigError(f"--resume: no checkpoint {last} to continue (start the run without --resume)")
        return True
    if last.exists() and not force:
        raise ConfigError(f"--output {out}: already holds a run (last.pt); continue it with --resume, or start "
                          f"over with --force")
    return False


def _compare(saved: TrainConfig, now: TrainConfig) -> None:
    for f in TRAJECTORY:
        a, b = getattr(saved, f), getattr(now, f)
        if a != b and not (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b)):
            raise ConfigError(f"{flag(f)}: the run in {now.out} was started with {a!r}, now {b!r}; resume "
                              f"with the same settings (or start a new run)")


def _resolution(cfg: TrainConfig, spec: Spec, data: datamod.Data) -> tuple[int, str | None]:
    """The side a run trains at, and the line that says so when it is not the model's: --resolution; else the
    stored side of array data (CIFAR, builtin); else (image folders, decoded at any size) the model's."""
    if cfg.resolution is not None:
        return cfg.resolution, None
    if data.kind != "imagefolder" and data.size != spec.resolution:
        return data.size, (f"{spec.name or cfg.model} is designed for {spec.resolution} px inputs; {data.name} "
                           f"images are {data.size} px: training at {data.size} px (--resolution "
                           f"{spec.resolution} resizes them to the model's side instead)")
    return (spec.resolution if data.kind == "imagefolder" else data.size), None


def _check_memory(cfg: TrainConfig, spec: Spec, dev: torch.device, amp: str, micro: int, params: int) -> str:
    """Refuse, with the numbers, a run whose estimated peak memory exceeds what the device has left."""
    from . import memory

    est = memory.estimate(lambda: build_model(spec, spec.num_classes, cfg.drop_rate, cfg.drop_path_rate),
                          params=params, in_chans=spec.in_channels, resolution=cfg.resolution,
                          micro_batch=micro, amp=amp != "off")
    free = memory.available(dev)
    where = "GPU" if dev.type == "cuda" else "machine"
    line = f"memory: about {memory.gib(est.total)} per step" + (f" of the {memory.gib(free)} this {where} has "
                                                               f"available" if free is not None else "")
    if free is None or est.total <= free:
        return line
    fits = (free - est.state) // max(est.per_image, 1)
    hint = (f"a micro-batch of at most about {fits} images fits: give a smaller --batch-size, or --accum-steps "
            f"to keep it, or a smaller --resolution" if fits >= 1 else
            "even one image per step does not fit: give a smaller --resolution or a smaller model")
    raise ConfigError(f"--batch-size {cfg.batch_size}: a step of {micro} images of {cfg.resolution} px needs "
                      f"about {memory.gib(est.total)} (activations {memory.gib(est.activations)}, weights, "
                      f"gradients and momentum {memory.gib(est.state)}, inputs {memory.gib(est.inputs)}), more "
                      f"than the {memory.gib(free)} this {where} has available; {hint}")


def train(cfg: TrainConfig, *, resume: bool | str = False, force: bool = False,
          callback: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train cfg.model on cfg.data with cfg's recipe; resume=True continues cfg.out/last.pt ("auto": when
    it exists). callback(step, epoch) runs after every optimizer step (tests use it to send signals).

    Stopped by SIGTERM or SIGINT, it saves last.pt and returns a result with ``signal`` set. Bad data
    (``DataError``) or options (``ConfigError``) raise before anything is written, or, found during the run,
    leave no half-made run behind: a new run that has not finished an epoch is removed, a run with a
    checkpoint keeps it (the error says so)."""
    check(cfg)
    kind, heldout = datamod.source_kind(cfg.data)  # a missing path fails before anything else
    out = Path(cfg.out)
    resuming = _check_out(out, resume, force)
    d = distributed.setup(cfg.device)
    try:
        return _train(cfg, d, kind, heldout, out, resuming, callback)
    finally:
        distributed.teardown(d)


def _train(cfg: TrainConfig, d: distributed.Dist, kind: str, heldout: bool, out: Path, resuming: bool,
           callback) -> TrainResult:
    t_start = time.perf_counter()
    fb = Feedback(cfg.progress if d.main else "off")
    cfg = resolve(cfg, kind, heldout)
    with (fb.during(f"model {cfg.model}: designing (the first use of a preset solves its program)", 0.5)
          if is_preset(cfg.model) else contextlib.nullcontext()):
        spec = model_spec(cfg.model)
    ck = ckpt.load(out / "last.pt") if resuming else None
    t0 = time.perf_counter()
    with fb.during(f"data {cfg.data}: loading"):
        data = datamod.open_data(cfg.data, val_split=cfg.val_split, resolution=cfg.resolution or spec.resolution,
                                 subset=cfg.subset, val_subset=cfg.val_subset)
    loaded = (f"data {data.name}: {len(data.train):,} train / {len(data.val):,} val images, {data.num_classes} "
              f"classes, {data.channels} channel(s), {data.size} px ({time.perf_counter() - t0:.1f} s)")
    resolution, note = _resolution(cfg, spec, data)
    cfg = replace(cfg, resolution=resolution)
    if ck is not None:
        _compare(TrainConfig.from_dict(ck["config"]), cfg)
    spec = replace(spec, num_classes=data.num_classes, resolution=cfg.resolution)
    dev = d.device
    world, accum, B = d.world, cfg.accum_steps, cfg.batch_size
    if B % (world * accum):
        raise ConfigError(f"--batch-size {B}: not divisible by {world} process(es) x {accum} accumulation "
                          f"step(s); give a multiple of {world * accum}")
    micro = B // (world * accum)
    steps_per_epoch = len(data.train) // B
    if steps_per_epoch == 0:
        raise ConfigError(f"--batch-size {B}: larger than the {len(data.train)} training images")
    total = steps_per_epoch * cfg.epochs
    sched = Schedule(cfg.lr * B / BASE_BATCH, int(round(cfg.warmup_epochs * steps_per_epoch)), total, cfg.min_lr)
    amp = _amp(cfg, dev)
    cl = _channels_last(cfg, dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not cfg.deterministic
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    # model, identical on every process (same seed), then the per-process augmentation stream
    ckpt.seed_all(cfg.seed)
    model = build_model(spec, data.num_classes, cfg.drop_rate, cfg.drop_path_rate)
    n_params = sum(p.numel() for p in model.parameters())
    mem_line = _check_memory(cfg, spec, dev, amp, micro, n_params)
    model.to(dev, memory_format=torch.channels_last if cl else torch.contiguous_format)
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay, cfg.decay_norm_bias), lr=sched(0),
                          momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
    ckpt.seed_all(int(np.random.SeedSequence([cfg.seed, d.rank, 1]).generate_state(1)[0]))

    start_epoch, start_pos, step = 0, 0, 0
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"top1": None, "epoch": None}
    sums = [0.0, 0.0, 0.0]  # this process's loss sum, correct, images in the current epoch
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        start_epoch, start_pos, step = ck["epoch"], ck["position"], ck["step"]
        history, best = list(ck["history"]), dict(ck["best"])
        if len(ck["rng"]) == world:
            ckpt.set_rng_state(ck["rng"][d.rank])
            sums = list(ck["epoch_sums"][d.rank])
        else:  # a different number of processes: the data order holds, the augmentation stream cannot
            ckpt.seed_all(int(np.random.SeedSequence([cfg.seed, d.rank, 2, step]).generate_state(1)[0]))
    train_model: nn.Module = model
    if d.active:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    # array datasets on the GPU: batches are cut there, no host transfer per step
    for split in (data.train, data.val):
        if dev.type == "cuda" and split.images is not None and split.images.numel() < 4 * 2**30:
            split.images = split.images.to(dev)
    common = dict(resolution=cfg.resolution, channels=spec.in_channels, mean=data.mean, std=data.std,
                  size=data.size)
    train_tf = TrainTransform(cfg, **common).to(dev)
    eval_tf = EvalTransform(**common, center_crop=data.kind == "imagefolder").to(dev)
    eval_batch = cfg.eval_batch_size or 2 * micro

    stop = _StopSignal()
    stop.install()
    made_dir = not out.exists()
    saved_any = [False]  # a checkpoint of this run exists (written now or before a resume)
    saved_any[0] = ck is not None
    try:
        if d.main:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"--output {out}: cannot create the run directory ({e.strerror or e})") from None
        distributed.barrier(d)
        log = JsonlLog(out / "metrics.jsonl", enabled=d.main)
        if ck is not None:
            log.truncate_after(step)
        elif d.main:  # a new run (--force over an old one): nothing of the old run may be mistaken for it
            for f in ("metrics.jsonl", "last.pt", "best.pt", "summary.json", "curves.png"):
                (out / f).unlink(missing_ok=True)
            write_atomic(out / "config.json", json.dumps({"config": cfg.to_dict(), "spec": to_dict(spec),
                                                          "data": data.info(), "world_size": world}, indent=2)
                         + "\n")
        fb.status(loaded)
        if note:
            fb.status(note)
        if ck is None:
            fb.status(f"training {cfg.model} ({n_params:,} params) at {cfg.resolution} px: {cfg.epochs} epoch(s) x "
                      f"{steps_per_epoch} steps of {B} images ({world} process(es) x {accum} x {micro}), "
                      f"recipe {cfg.recipe}, peak lr {sched.peak:.4g}, device {dev}, amp {amp}; {mem_line}")
        else:
            fb.status(f"resuming {out / 'last.pt'} at epoch {start_epoch + 1}, step {step} of {total}; {mem_line}")
        result = _loop(cfg, d, data, out, fb, stop, callback, saved_any, model=model, train_model=train_model,
                       opt=opt, scaler=scaler, sched=sched, train_tf=train_tf, eval_tf=eval_tf, spec=spec,
                       log=log, amp=amp, cl=cl, micro=micro, eval_batch=eval_batch, total=total,
                       steps_per_epoch=steps_per_epoch, start_epoch=start_epoch, start_pos=start_pos, step=step,
                       history=history, best=best, sums=sums, n_params=n_params)
    except BaseException as e:
        stop.restore()
        if d.main and not saved_any[0]:  # nothing worth keeping: leave no half-made run behind
            for f in ("config.json", "metrics.jsonl", "curves.png", "summary.json"):
                (out / f).unlink(missing_ok=True)
            if made_dir:
                with contextlib.suppress(OSError):
                    out.rmdir()
        elif d.main and isinstance(e, ValueError):
            last = ckpt.load(out / "last.pt")
            raise type(e)(f"{e}; the run in {out} is kept as its last.pt left it (epoch {last['epoch']}, step "
                          f"{last['step']}): --resume continues it") from None
        raise
    finally:
        stop.restore()
    result = replace(result, seconds=time.perf_counter() - t_start)
    return result


def _loop(cfg: TrainConfig, d: distributed.Dist, data: datamod.Data, out: Path, fb: Feedback, stop: _StopSignal,
          callback, saved_any: list[bool], *, model, train_model, opt, scaler, sched, train_tf, eval_tf, spec, log,
          amp, cl, micro, eval_batch, total, steps_per_epoch, start_epoch, start_pos, step, history, best, sums,
          n_params) -> TrainResult:
    world, accum, B, dev = d.world, cfg.accum_steps, cfg.batch_size, d.device

    def state(epoch: int, position: int) -> dict[str, Any]:
        rng = distributed.gather(d, ckpt.rng_state())
        all_sums = distributed.gather(d, list(sums))
        return {"format": ckpt.FORMAT, "version": ckpt.VERSION, "config": cfg.to_dict(), "spec": to_dict(spec),
                "data": data.info(), "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": {**sched.state_dict(), "step": step}, "scaler": scaler.state_dict(),
                "epoch": epoch, "position": position, "step": step, "rng": rng, "epoch_sums": all_sums,
                "history": history, "best": best, "world_size": world, "params": n_params}

    def save(epoch: int, position: int, is_best: bool = False) -> None:
        _sync_buffers(model, d)
        s = state(epoch, position)  # every process joins the gathers
        if d.main:
            ckpt.save_atomic(s, out / "last.pt")
            if is_best:
                ckpt.save_atomic(s, out / "best.pt")
        saved_any[0] = True
        distributed.barrier(d)

    interrupted = False
    images_run, train_seconds = 0, 0.0
    check_every = 10 if (d.active and dev.type == "cuda") else 1
    ls = cfg.label_smoothing
    rate = Rate()
    bar = fb.bar(total=total, initial=step, desc="train", unit="step")
    try:
        train_model.train()
        for epoch in range(start_epoch, cfg.epochs):
            pos0 = start_pos if epoch == start_epoch else 0
            if pos0 == 0:
                sums = [0.0, 0.0, 0.0]
            gb = datamod.epoch_batches(len(data.train), B, cfg.seed, epoch)
            mine = [m for b in gb[pos0:] for m in datamod.micro_batches(b, d.rank, world, accum)]
            it = iter(datamod.batches(data.train, mine, size=data.size, workers=cfg.workers,
                                      pin=dev.type == "cuda"))
            t_epoch = time.perf_counter()
            rate.reset()
            loss_t = torch.zeros((), dtype=torch.float64, device=dev)
            correct_t = torch.zeros((), dtype=torch.float64, device=dev)
            seen = 0
            done_pos = pos0
            for k in range(pos0, steps_per_epoch):
                lr = sched(step)
                for g in opt.param_groups:
                    g["lr"] = lr
                step_loss = torch.zeros((), dtype=torch.float64, device=dev)
                for a in range(accum):
                    x, y = next(it)
                    x = x.to(dev, non_blocking=True)
                    y = y.to(dev, non_blocking=True)
                    x, t = train_tf(x, y)
                    if cl:
                        x = x.contiguous(memory_format=torch.channels_last)
                    sync = contextlib.nullcontext() if not d.active or a == accum - 1 else train_model.no_sync()
                    with sync:
                        with _autocast(amp, dev):
                            logits = train_model(x)
                        loss = loss_fn(logits, t, ls)
                        scaler.scale(loss / accum).backward()
                    ld = loss.detach().double()
                    step_loss += ld
                    loss_t += ld * len(x)
                    correct_t += (logits.detach().argmax(1) == hard_labels(t)).sum()
                    seen += len(x)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                step += 1
                done_pos = k + 1
                if step % cfg.log_every == 0:
                    sl, nm = distributed.all_sum(d, [float(step_loss), float(accum)])
                    log.write({"kind": "step", "step": step, "epoch": epoch + done_pos / steps_per_epoch,
                               "loss": sl / nm, "lr": lr})
                if fb.enabled:
                    ips = rate.add(B)
                    bar.set_postfix_str(f"epoch {epoch + 1}/{cfg.epochs}, loss {float(step_loss) / accum:.4f}, "
                                        f"lr {lr:.3g}, {ips:,.0f} img/s", refresh=False)
                    bar.update(1)
                if callback is not None:
                    callback(step, epoch)
                if (step % check_every == 0 or k + 1 == steps_per_epoch) and distributed.any_true(d, stop.flag):
                    interrupted = True
                    break
            del it  # image-folder workers end here
            dt = time.perf_counter() - t_epoch
            train_seconds += dt
            images_run += (done_pos - pos0) * B
            sums = [sums[0] + float(loss_t), sums[1] + float(correct_t), sums[2] + seen]
            if interrupted and done_pos < steps_per_epoch:
                save(epoch, done_pos)
                break
            tl, tc, tn = distributed.all_sum(d, sums)
            rec: dict[str, Any] = {"kind": "epoch", "epoch": epoch + 1, "step": step, "lr": lr,
                                   "train_loss": tl / max(tn, 1), "train_top1": tc / max(tn, 1),
                                   "img_per_s": (done_pos - pos0) * B / dt if dt > 0 else 0.0,
                                   "epoch_seconds": dt}
            is_best = False
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                _sync_buffers(model, d)
                ev = evaluate(model, data.val, eval_tf, d, batch_size=eval_batch, size=data.size,
                              workers=cfg.workers, amp=amp, channels_last=cl, feedback=fb)
                rec.update(val_loss=ev["loss"], val_top1=ev["top1"], val_top5=ev["top5"])
                if best["top1"] is None or ev["top1"] > best["top1"]:
                    best = {"top1": ev["top1"], "top5": ev["top5"], "loss": ev["loss"], "epoch": epoch + 1}
                    is_best = True
            history.append(rec)
            log.write(rec)
            save(epoch + 1, 0, is_best)
            fb.status(_epoch_line(rec, cfg.epochs))
            start_pos = 0
            if interrupted or distributed.any_true(d, stop.flag):
                interrupted = True
                break
    finally:
        bar.close()
    signum = None
    if interrupted:
        signum = int(distributed.broadcast(d, stop.signum or signal.SIGTERM))
        name = signal.Signals(signum).name
        fb.status(f"stopped by {name} at epoch {min(epoch + 1, cfg.epochs)}, step {step} of {total}: saved "
                  f"{out / 'last.pt'}; continue with the same command and --resume")
    last = history[-1] if history else None
    done = last["epoch"] if last else 0
    if d.main and not interrupted:
        plot_curves(read_jsonl(out / "metrics.jsonl"), out / "curves.png", title=f"{os.path.basename(cfg.model)} on {data.name}")
        summary = {"model": cfg.model, "data": data.name, "params": n_params, "epochs": done, "steps": step,
                   "best": best, "last": last, "img_per_s": images_run / train_seconds if train_seconds else 0.0,
                   "world_size": world, "device": str(dev), "amp": amp, "resolution": cfg.resolution}
        write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    distributed.barrier(d)
    return TrainResult(str(out), done, step, best["top1"], best["epoch"], last, interrupted,
                       images_run / train_seconds if train_seconds else 0.0, 0.0, n_params, d.main, signum,
                       cfg.resolution)


def _epoch_line(rec: dict[str, Any], epochs: int) -> str:
    s = (f"epoch {rec['epoch']}/{epochs}: train loss {rec['train_loss']:.4f} top-1 {100 * rec['train_top1']:.2f}%")
    if "val_top1" in rec:
        s += (f" | val loss {rec['val_loss']:.4f} top-1 {100 * rec['val_top1']:.2f}% "
              f"top-5 {100 * rec['val_top5']:.2f}%")
    return s + f" | {rec['img_per_s']:,.0f} img/s, {rec['epoch_seconds']:.1f} s"


# ---------------------------------------------------------------------------------------------- eval command

def _check_match(path: str | os.PathLike, src: str, ds: datamod.Data, spec: Spec, info: dict[str, Any]) -> None:
    """A dataset the checkpoint's model cannot be evaluated on is refused, naming both."""
    trained = info.get("classes") or []
    what = f"--data {src}: does not match the checkpoint {path}"
    if ds.kind == "imagefolder":
        if trained and ds.classes != trained[:len(ds.classes)]:
            diff = next((a for a, b in zip(ds.classes, trained) if a != b), ds.classes[len(trained):][:1] or ["?"])
            raise ConfigError(f"{what}: its class folders differ from the {len(trained)} classes the model was "
                              f"trained on (first difference: {diff if isinstance(diff, str) else diff[0]!r})")
        if ds.num_classes > spec.num_classes:
            raise ConfigError(f"{what}: {ds.num_classes} classes, the model predicts {spec.num_classes}")
        return
    if ds.num_classes != spec.num_classes:
        raise ConfigError(f"{what}: {ds.num_classes} classes ({ds.name}), the model predicts {spec.num_classes} "
                          f"(trained on {info.get('name', '?')})")
    if trained and ds.classes and ds.classes != trained:
        raise ConfigError(f"{what}: its classes ({', '.join(ds.classes[:3])}, ...) are not the ones the model was "
                          f"trained on ({', '.join(trained[:3])}, ... of {info.get('name', '?')})")


def evaluate_checkpoint(path: str | os.PathLike, data: str | None = None, *, batch_size: int = 256,
                        device: str = "auto", workers: int | None = None, amp: str = "auto",
                        progress: str = "auto") -> dict[str, Any]:
    """Top-1 / top-5 / loss of a checkpoint on data (default: its own validation split). A directory of
    class folders is evaluated whole; an ImageNet-style root (train/, val/) on val/; CIFAR on its test split;
    builtin data on the training run's held-out share. Data whose classes are not the model's is refused."""
    ck = ckpt.load(path)
    cfg = TrainConfig.from_dict(ck["config"])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"--batch-size: expected an integer >= 1, got {batch_size!r}")
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"--workers: expected an integer >= 0, got {workers!r}")
    fb = Feedback(progress if int(os.environ.get("RANK", "0")) == 0 else "off")
    spec = from_dict(ck["spec"])
    info = ck["data"]
    src = data or cfg.data
    kind, heldout = datamod.source_kind(src)
    same = src == cfg.data
    with fb.during(f"data {src}: loading"):
        ds = datamod.open_data(src, val_split=cfg.val_split if same else (0.0 if heldout or kind == "imagefolder"
                                                                          else cfg.val_split or 0.2),
                               resolution=cfg.resolution, val_subset=cfg.val_subset if same else None,
                               split="eval")
    _check_match(path, src, ds, spec, info)
    d = distributed.setup(device)
    try:
        model = build_model(spec, spec.num_classes)
        model.load_state_dict(ck["model"])
        model.to(d.device)
        cfg = replace(cfg, amp=amp)
        amp_ = _amp(cfg, d.device)
        mean, std = tuple(info["mean"]), tuple(info["std"])
        tf = EvalTransform(resolution=cfg.resolution, channels=spec.in_channels, mean=mean, std=std,
                           size=ds.size, center_crop=ds.kind == "imagefolder").to(d.device)
        t0 = time.perf_counter()
        ev = evaluate(model, ds.val, tf, d, batch_size=batch_size, size=ds.size, workers=workers, amp=amp_,
                      channels_last=False, feedback=fb)
        ev["seconds"] = time.perf_counter() - t0
    finally:
        distributed.teardown(d)
    ev.update(checkpoint=str(path), data=ds.name, epoch=ck["epoch"], model=cfg.model, params=ck.get("params"))
    return ev


__all__ = ["train", "evaluate", "evaluate_checkpoint", "TrainResult", "build_model", "model_spec",
           "param_groups"]
