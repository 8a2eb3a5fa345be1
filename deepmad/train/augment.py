"""Batch augmentation of the Section 5.1 recipe with kornia, on the training device.

Why kornia: it is maintained, runs on plain torch (no torchvision, which this project does not depend on), and
transforms whole batches on the GPU, so a data-loading process only decodes images. Every random draw comes
from torch's global generator, whose state the checkpoints save, so a resumed run draws the same
augmentations as an uninterrupted one.

Order (train): uint8 -> [0, 1] float -> channels adapted to the model -> crop (random resized crop | pad 1/8 and
random crop | resize) -> horizontal flip -> AutoAugment -> colour jitter ("lighting") -> normalize -> random
erasing -> mixup. Evaluation: -> [0, 1] -> channels -> center crop (image folders) or resize -> normalize.

Where kornia differs from the usual torchvision/timm recipe (documented in docs/training.md): mixup draws each
image's mixing weight uniformly from ``--mixup-lambda`` (kornia's RandomMixUpV2) instead of from Beta(a, a);
"lighting" is colour jitter of brightness, contrast and saturation instead of AlexNet's PCA lighting; erased
patches are filled with 0 after normalization (the mean colour).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig


def _kornia():
    try:
        import kornia.augmentation as K
    except ImportError:  # pragma: no cover - a dependency of deepmad[train]
        raise ValueError("training needs kornia (pip install 'deepmad[train]')") from None
    return K


def adapt_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Gray -> RGB by repetition, RGB -> gray by the ITU-R 601 luma weights."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1)
    if channels == 1 and x.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    raise ValueError(f"cannot feed {x.shape[1]}-channel images to a model with {channels} input channels")


class TrainTransform(nn.Module):
    """uint8 batch -> (augmented normalized float batch, targets); targets are (B,) class ids, or (B, 3)
    rows (class, paired class, weight of the paired class) when the batch was mixed."""

    def __init__(self, cfg: TrainConfig, *, resolution: int, channels: int, mean, std, size: int):
        super().__init__()
        K = _kornia()
        self.channels = channels
        ops: list[nn.Module] = []
        r = (resolution, resolution)
        if cfg.crop == "rrc":
            ops.append(K.RandomResizedCrop(r, scale=(cfg.min_scale, 1.0)))
        else:
            if size != resolution:
                ops.append(K.Resize(r))
            if cfg.crop == "pad":
                ops.append(K.RandomCrop(r, padding=max(1, resolution // 8)))
        if cfg.flip:
            ops.append(K.RandomHorizontalFlip(p=cfg.flip))
        if cfg.autoaugment != "off":
            from kornia.augmentation.auto import AutoAugment

            ops.append(AutoAugment(cfg.autoaugment))
        if cfg.color_jitter:
            s = cfg.color_jitter
            ops.append(K.ColorJitter(brightness=s, contrast=s, saturation=s if channels == 3 else 0.0, p=1.0))
        ops.append(K.Normalize(_expand(mean, channels), _expand(std, channels)))
        if cfg.random_erasing:
            ops.append(K.RandomErasing(p=cfg.random_erasing, value=0.0))
        self.ops = nn.ModuleList(ops)
        self.mix = (K.RandomMixUpV2(lambda_val=cfg.mixup_lambda, p=cfg.mixup, data_keys=["input", "class"])
                    if cfg.mixup else None)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = adapt_channels(images.float().div_(255), self.channels)
        for op in self.ops:
            x = op(x)
        if self.mix is not None:
            x, labels = self.mix(x, labels)
        return x.contiguous(), labels


class EvalTransform(nn.Module):
    """uint8 batch -> normalized float batch at the model's resolution."""

    def __init__(self, *, resolution: int, channels: int, mean, std, size: int, center_crop: bool):
        super().__init__()
        K = _kornia()
        self.channels = channels
        ops: list[nn.Module] = []
        r = (resolution, resolution)
        if center_crop and size > resolution:
            ops.append(K.CenterCrop(r))
        elif size != resolution:
            ops.append(K.Resize(r))
        ops.append(K.Normalize(_expand(mean, channels), _expand(std, channels)))
        self.ops = nn.ModuleList(ops)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = adapt_channels(images.float().div_(255), self.channels)
        for op in self.ops:
            x = op(x)
        return x.contiguous()


def _expand(v, channels: int) -> torch.Tensor:
    t = torch.as_tensor(list(v), dtype=torch.float32)
    if len(t) == channels:
        return t
    if len(t) == 1:
        return t.expand(channels).clone()
    return t.mean().expand(channels).clone()  # RGB statistics for a gray model


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy with label smoothing; mixed targets (B, 3) weigh the two classes by the mixing weight."""
    logits = logits.float()
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    a = F.cross_entropy(logits, targets[:, 0].long(), label_smoothing=label_smoothing, reduction="none")
    b = F.cross_entropy(logits, targets[:, 1].long(), label_smoothing=label_smoothing, reduction="none")
    lam = targets[:, 2].to(a.dtype)
    return ((1 - lam) * a + lam * b).mean()


def hard_labels(targets: torch.Tensor) -> torch.Tensor:
    """The dominant class of each target (mixed targets: the image's own class unless its weight < 1/2)."""
    if targets.ndim == 1:
        return targets
    return torch.where(targets[:, 2] > 0.5, targets[:, 1], targets[:, 0]).long()


__all__ = ["TrainTransform", "EvalTransform", "loss_fn", "hard_labels", "adapt_channels"]
