"""Layer primitives of the builder: conv-BN-act, squeeze-excitation, stochastic depth.

Every convolution is 'same'-padded (padding k // 2, odd k), so a stride-s layer maps side r to
ceil(r / s) = ``deepmad.core.spec.out_resolution(r, s)``, the side the counts of ``deepmad.core.blocks`` use.
"""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU}  # deepmad.core.spec.ACTIVATIONS


def make_act(name: str | None) -> nn.Module:
    """The activation called name (a spec's ``act``); None gives nn.Identity."""
    if name is None:
        return nn.Identity()
    try:
        cls = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"act: expected one of {', '.join(ACTIVATIONS)}, got {name!r}") from None
    # relu/relu6 in place as torchvision does; SiLU is not (its backward needs the input)
    return cls(inplace=True) if cls is not nn.SiLU else cls()


class ConvBNAct(nn.Sequential):
    """k x k convolution (no bias) -> BatchNorm -> activation (``act=None``: conv-BN only).

    Children ``conv``, ``bn``, ``act``; one ``deepmad.core.blocks.Conv`` record (bn=True, bias=False) each.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = make_act(act)


class SqueezeExcite(nn.Module):
    """Squeeze-excitation (Hu et al.): x * sigmoid(expand(act(reduce(avgpool(x))))).

    ``reduce`` and ``expand`` are 1x1 convs with bias and no BN, as in torchvision's EfficientNet; the
    squeeze width is given by the caller (``deepmad.core.blocks.squeeze``: max(1, int(block input · se))).
    """

    def __init__(self, channels: int, squeeze: int, act: str = "relu") -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze, 1, bias=True)
        self.act = make_act(act)
        self.expand = nn.Conv2d(squeeze, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * s


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, zero a residual branch for a random subset of
    the samples with probability p and scale the kept ones by 1 / (1 - p); the identity in eval mode."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


__all__ = ["ACTIVATIONS", "make_act", "ConvBNAct", "SqueezeExcite", "DropPath"]
