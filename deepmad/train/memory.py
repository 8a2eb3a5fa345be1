"""How much memory a training run will take, estimated before its first step, and how much the device has.

The estimate (``estimate``) adds up:
  weights, gradients and SGD momentum   3 x 4 bytes per parameter
  activations                           what autograd keeps for the backward pass of one micro-batch:
                                        every tensor its saved-tensor hook sees during one forward pass in
                                        training mode on the meta device (shapes only, no memory, no
                                        compute), times ACTIVATION_MARGIN for the backward pass's own
                                        temporaries and the allocator; halved under bf16/fp16 autocast
  the input batch                       the micro-batch at the training resolution, float32, a few copies
                                        (the augmentation pipeline)
Measured on CPU (torch 2.13, peak resident memory of a training step minus the memory before it): the
saved tensors alone came to 0.9 to 1.3 times the measured growth for ResNet-18/50, the deepmad-r18 and
deepmad-mb presets and a small MNIST network at 28 to 224 px, so ACTIVATION_MARGIN = 1.5 leaves room
without refusing runs that fit.

``available`` is the memory the device can still give: on a CPU the kernel's MemAvailable (/proc/meminfo;
os.sysconf's free pages elsewhere), on a GPU the free memory torch.cuda.mem_get_info reports.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ACTIVATION_MARGIN = 1.5
INPUT_COPIES = 4  # uint8 -> float, augmentation outputs, normalized batch, the model's input
GiB = 2**30


@dataclass(frozen=True)
class Estimate:
    """Bytes a training step needs, by part."""

    state: int  # weights, gradients, momentum
    activations: int  # saved for the backward pass, margin included
    inputs: int
    per_image: int  # activations + inputs of one image (what one more image in the micro-batch costs)

    @property
    def total(self) -> int:
        return self.state + self.activations + self.inputs


def saved_bytes_per_image(model_fn, in_chans: int, resolution: int) -> int:
    """Bytes autograd saves for one image in a training-mode forward pass of ``model_fn()`` (a function
    building the model; called under ``torch.device("meta")``), measured at batch 2 (BatchNorm needs more
    than one value per channel in training mode)."""
    with torch.device("meta"):
        model = model_fn()
    params = {id(p) for p in model.parameters()}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if id(t) not in params:
            total += t.numel() * t.element_size()
        return t

    model.train()
    x = torch.zeros(2, in_chans, resolution, resolution, device="meta", requires_grad=False)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = model(x)
        if isinstance(y, torch.Tensor) and y.ndim == 2:
            F.cross_entropy(y, torch.zeros(2, dtype=torch.long, device="meta"))
    return total // 2


def estimate(model_fn, *, params: int, in_chans: int, resolution: int, micro_batch: int,
             amp: bool) -> Estimate:
    """The memory of one training step (see the module docstring)."""
    act = saved_bytes_per_image(model_fn, in_chans, resolution) * ACTIVATION_MARGIN
    if amp:
        act *= 0.5
    inp = INPUT_COPIES * 4 * max(in_chans, 3) * resolution * resolution
    return Estimate(state=12 * params, activations=int(act * micro_batch), inputs=int(inp * micro_batch),
                    per_image=int(act + inp))


def available(device: torch.device) -> int | None:
    """Bytes the device can still allocate (None when it cannot be told)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return None


def gib(n: float) -> str:
    """Bytes for people: GiB, MiB or KiB."""
    if n >= 0.1 * GiB:
        return f"{n / GiB:,.1f} GiB"
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n / 2**10:,.0f} KiB"


__all__ = ["Estimate", "estimate", "available", "saved_bytes_per_image", "ACTIVATION_MARGIN", "gib"]
