"""The three block families of ``deepmad.core.blocks``, as torchvision / timm build them.

Each block has exactly the convolutions ``deepmad.core.blocks.block_convs`` lists, under the same names
(``conv1``, ``conv2``, ``conv3``, ``shortcut``, ``expand``, ``dw``, ``se.reduce``, ``se.expand``,
``project``), so ``model.get_submodule(conv.name)`` finds the layer each ``Conv`` record counts.

Residual branches end in a BN whose weight ``init_weights`` sets to zero (``zero_init_last``), so a fresh
residual block starts as its shortcut (Goyal et al. 2017); stochastic depth (``DropPath``) drops the branch.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import ConvBNAct, DropPath, SqueezeExcite, make_act


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """1x1 stride-s conv-BN projection when the shape changes (torchvision's downsample), else identity."""
    if stride != 1 or c_in != c_out:
        return ConvBNAct(c_in, c_out, 1, stride, act=None)
    return nn.Identity()


class BasicBlock(nn.Module):
    """k x k (stride, groups) -> k x k (groups), plus the shortcut, then the activation (ResNet-18/34)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: str = "relu", drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(c_in, c_out, kernel, stride, groups, act)
        self.conv2 = ConvBNAct(c_out, c_out, kernel, 1, groups, act=None)
        self.drop_path = DropPath(drop_path)
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.act = make_act(act)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return self.act(self.drop_path(y) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 -> k x k (stride, groups) -> 1x1, plus the shortcut, then the activation (ResNet-50, ResNeXt).

    The stride sits on the k x k conv (torchvision's ResNet v1.5).
    """

    def __init__(self, c_in: int, c_out: int, mid: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: str = "relu", drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(c_in, mid, 1, 1, 1, act)
        self.conv2 = ConvBNAct(mid, mid, kernel, stride, groups, act)
        self.conv3 = ConvBNAct(mid, c_out, 1, 1, 1, act=None)
        self.drop_path = DropPath(drop_path)
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.act = make_act(act)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.conv2(self.conv1(x)))
        return self.act(self.drop_path(y) + self.shortcut(x))


class InvertedResidual(nn.Module):
    """MBConv: [1x1 expand] -> depthwise k x k (stride) -> [SE] -> 1x1 project, no activation after it
    (MobileNet-V2, EfficientNet). Residual (identity, no projection) only when stride 1 and c_in == c_out.

    The expand conv is absent (``nn.Identity``) when mid == c_in; squeeze = 0 means no SE.
    """

    def __init__(self, c_in: int, c_out: int, mid: int, kernel: int = 3, stride: int = 1, squeeze: int = 0,
                 act: str = "relu6", drop_path: float = 0.0) -> None:
        super().__init__()
        self.residual = stride == 1 and c_in == c_out
        self.expand = ConvBNAct(c_in, mid, 1, 1, 1, act) if mid != c_in else nn.Identity()
        self.dw = ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid, squeeze, act) if squeeze > 0 else nn.Identity()
        self.project = ConvBNAct(mid, c_out, 1, 1, 1, act=None)
        self.drop_path = DropPath(drop_path) if self.residual else nn.Identity()

    def zero_init_last(self) -> None:
        if self.residual:
            nn.init.zeros_(self.project.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return self.drop_path(y) + x if self.residual else y


__all__ = ["BasicBlock", "Bottleneck", "InvertedResidual"]
