"""Block families, in closed form and layer by layer.

Each family is what torchvision builds (conv-BN-act, no conv bias):
  basic       k x k (stride) -> k x k                       (ResNet-18/34)
  bottleneck  1x1 -> k x k (stride, groups) -> 1x1          (ResNet-50, ResNeXt; stride on the k x k conv)
  mbconv      [1x1 expand] -> depthwise k x k (stride) -> [SE] -> 1x1 project   (MobileNet-V2, EfficientNet)
basic/bottleneck blocks get a 1x1 projection shortcut (stride, BN) when the stride is not 1 or the channels
change; an mbconv block is residual only when its shape is kept, and has no projection. The mbconv expand
conv is absent when the expansion equals the input channels (expansion ratio 1), as in torchvision.

Two independent descriptions of the same network live here: ``block_cost`` gives a block's
multiply-accumulates, parameters, main-path layer count and Σ log(width) in closed form (numpy-friendly, the
solver evaluates it on arrays); ``convs`` lists every convolution one by one. Tests check that they agree.

Width of a layer (the paper's Sec. 4.1): fan-in c_in·k²/g. Main-path layers are the ones ρ and the entropy
count; shortcut projections, squeeze-excitation and the classifier are not (deepmad-math.md §3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .spec import Spec, Stage, out_resolution


@dataclass(frozen=True)
class Conv:
    """One convolution (or the classifier, as a 1x1 'conv' at resolution 1)."""

    name: str
    c_in: int
    c_out: int
    k: int
    stride: int
    groups: int
    r_out: int  # output side
    role: str  # main | shortcut | se | classifier
    bias: bool = False
    bn: bool = True

    @property
    def width(self) -> float:
        return self.c_in * self.k**2 / self.groups

    @property
    def macs(self) -> int:
        return self.c_out * (self.c_in // self.groups) * self.k**2 * self.r_out**2

    @property
    def params(self) -> int:
        return self.c_out * (self.c_in // self.groups) * self.k**2 + self.c_out * (self.bias + 2 * self.bn)


class Cost(NamedTuple):
    """Closed-form totals of a block (or a sum of blocks)."""

    macs: float
    params: float
    layers: float  # main-path layers
    logw: float  # Σ log(width) over the main-path layers


def expansion(s: Stage, c_in: int) -> int:
    """Middle channels of a block of stage s whose input has c_in channels."""
    if s.mid is not None:
        return s.mid
    if s.expand is not None:
        return np.rint(np.asarray(c_in) * s.expand).astype(np.int64)
    return s.channels  # basic: the inner k x k conv maps to the output width


def squeeze(c_in, se):
    """SE squeeze channels: max(1, int(c_in * se)) (torchvision EfficientNet: input_channels // 4)."""
    return np.maximum(1, np.floor(np.asarray(c_in) * se + 1e-9))


def block_cost(block: str, c_in, c, mid, k, stride: int, r_in, groups=1, se: float = 0.0) -> Cost:
    """Closed form of one block; every argument but block/stride may be a numpy array."""
    r = (np.asarray(r_in) - 1) // stride + 1
    r_in2, r2, k2 = np.asarray(r_in) ** 2, r**2, np.asarray(k) ** 2
    proj = np.where((stride != 1) | (np.asarray(c_in) != c), 1, 0)
    if block == "basic":
        macs = r2 * c * k2 * (c_in + c) / groups + proj * r2 * c * c_in
        params = c * k2 * (c_in + c) / groups + 4 * c + proj * (c * c_in + 2 * c)
        return Cost(macs, params, 2 + 0 * proj, np.log(c_in * k2 / groups) + np.log(c * k2 / groups))
    if block == "bottleneck":
        macs = r_in2 * mid * c_in + r2 * (mid * mid * k2 / groups + c * mid) + proj * r2 * c * c_in
        params = mid * c_in + mid * mid * k2 / groups + c * mid + 4 * mid + 2 * c + proj * (c * c_in + 2 * c)
        logw = np.log(c_in) + np.log(mid * k2 / groups) + np.log(mid)
        return Cost(macs, params, 3 + 0 * proj, logw)
    if block == "mbconv":
        expand = np.where(np.asarray(mid) != c_in, 1, 0)
        has_se = np.asarray(se) > 0
        sq = np.where(has_se, squeeze(c_in, se), 0)
        macs = expand * r_in2 * mid * c_in + r2 * (mid * k2 + c * mid) + 2 * mid * sq
        params = (expand * (mid * c_in + 2 * mid) + mid * k2 + 2 * mid + c * mid + 2 * c
                  + np.where(has_se, 2 * mid * sq + sq + mid, 0))
        logw = expand * np.log(c_in) + np.log(k2) + np.log(mid)
        return Cost(macs, params, 2 + expand, logw)
    raise ValueError(f"unknown block family {block!r}")


def block_convs(block: str, c_in: int, c: int, mid: int, k: int, stride: int, r_in: int, groups: int = 1,
                se: float = 0.0, name: str = "") -> list[Conv]:
    """Every convolution of one block, in forward order (main path first, then the shortcut)."""
    r = out_resolution(r_in, stride)
    out: list[Conv] = []
    if block == "basic":
        out += [Conv(f"{name}.conv1", c_in, c, k, stride, groups, r, "main"),
                Conv(f"{name}.conv2", c, c, k, 1, groups, r, "main")]
    elif block == "bottleneck":
        out += [Conv(f"{name}.conv1", c_in, mid, 1, 1, 1, r_in, "main"),
                Conv(f"{name}.conv2", mid, mid, k, stride, groups, r, "main"),
                Conv(f"{name}.conv3", mid, c, 1, 1, 1, r, "main")]
    elif block == "mbconv":
        if mid != c_in:
            out.append(Conv(f"{name}.expand", c_in, mid, 1, 1, 1, r_in, "main"))
        out.append(Conv(f"{name}.dw", mid, mid, k, stride, mid, r, "main"))
        if se > 0:
            sq = max(1, int(c_in * se + 1e-9))
            out += [Conv(f"{name}.se.reduce", mid, sq, 1, 1, 1, 1, "se", bias=True, bn=False),
                    Conv(f"{name}.se.expand", sq, mid, 1, 1, 1, 1, "se", bias=True, bn=False)]
        out.append(Conv(f"{name}.project", mid, c, 1, 1, 1, r, "main"))
        return out
    else:
        raise ValueError(f"unknown block family {block!r}")
    if stride != 1 or c_in != c:
        out.append(Conv(f"{name}.shortcut", c_in, c, 1, stride, 1, r, "shortcut"))
    return out


@dataclass(frozen=True)
class Unit:
    """One unit of the main path as the theory sees it: the stem, a block, or the head conv."""

    name: str
    widths: tuple[float, ...]  # c·k²/g of each main-path layer
    channels: int  # output channels
    resolution: int  # output side
    stage: int  # spec stage index; -1 for the stem, len(stages) for the head


def stem_conv(spec: Spec) -> Conv:
    r = out_resolution(spec.resolution, spec.stem.stride)
    return Conv("stem", spec.in_channels, spec.stem.channels, spec.stem.kernel, spec.stem.stride, 1, r, "main")


def walk(spec: Spec):
    """Yield (unit, convs) for the stem, every block and the head, in forward order."""
    stem = stem_conv(spec)
    r, c = stem.r_out, stem.c_out
    yield Unit("stem", (stem.width,), c, r, -1), [stem]  # its scale ends at the conv, before any pool
    r = out_resolution(r, 2) if spec.stem.pool else r
    for i, s in enumerate(spec.stages):
        for d in range(s.depth):
            stride = s.stride if d == 0 else 1
            name = f"stages.{i}.{d}"
            cv = block_convs(s.block, c, s.channels, expansion(s, c), s.kernel, stride, r, s.groups, s.se, name)
            r = out_resolution(r, stride)
            c = s.channels
            yield Unit(name, tuple(v.width for v in cv if v.role == "main"), c, r, i), cv
    if spec.head is not None:
        head = Conv("head", c, spec.head, 1, 1, 1, r, "main")
        yield Unit("head", (head.width,), spec.head, r, len(spec.stages)), [head]


def units(spec: Spec) -> list[Unit]:
    """The main-path units of a spec (what entropy and ρ are computed from)."""
    return [u for u, _ in walk(spec)]


def convs(spec: Spec) -> list[Conv]:
    """Every convolution of the network as built, then the classifier (if any)."""
    out: list[Conv] = []
    for u, cv in walk(spec):
        out += cv
        c = u.channels
    if spec.num_classes:
        out.append(Conv("classifier", c, spec.num_classes, 1, 1, 1, 1, "classifier", bias=True, bn=False))
    return out


def stage_cost(s: Stage, c_in, r_in) -> Cost:
    """Closed form of a whole stage: its first block plus (depth - 1) identical blocks."""
    first = block_cost(s.block, c_in, s.channels, expansion(s, c_in), s.kernel, s.stride, r_in, s.groups, s.se)
    r = out_resolution(r_in, s.stride)
    if s.depth == 1:
        return first
    rest = block_cost(s.block, s.channels, s.channels, expansion(s, s.channels), s.kernel, 1, r, s.groups, s.se)
    return Cost(*(a + (s.depth - 1) * b for a, b in zip(first, rest)))


def counts(spec: Spec, classifier: bool = True) -> tuple[int, int]:
    """Exact (MACs, params) of a spec as Python integers, whatever its size: each stage's first block and one of
    its repeated blocks conv by conv (``block_convs``), the repeated one times depth − 1."""
    stem = stem_conv(spec)
    macs, params = stem.macs, stem.params
    r = out_resolution(stem.r_out, 2) if spec.stem.pool else stem.r_out
    c = spec.stem.channels
    for i, s in enumerate(spec.stages):
        first = block_convs(s.block, c, s.channels, int(expansion(s, c)), s.kernel, s.stride, r, s.groups, s.se)
        macs += sum(v.macs for v in first)
        params += sum(v.params for v in first)
        r, c = out_resolution(r, s.stride), s.channels
        if s.depth > 1:
            rest = block_convs(s.block, c, c, int(expansion(s, c)), s.kernel, 1, r, s.groups, s.se)
            macs += (s.depth - 1) * sum(v.macs for v in rest)
            params += (s.depth - 1) * sum(v.params for v in rest)
    if spec.head is not None:
        macs += spec.head * c * r * r
        params += spec.head * c + 2 * spec.head
        c = spec.head
    if classifier and spec.num_classes:
        macs += c * spec.num_classes
        params += (c + 1) * spec.num_classes
    return macs, params


def cost(spec: Spec, classifier: bool = True) -> Cost:
    """Closed-form totals of a spec: MACs, params, main-path layers and Σ log(width)."""
    stem = stem_conv(spec)
    total = np.array([stem.macs, stem.params, 1.0, math.log(stem.width)])
    r = out_resolution(stem.r_out, 2) if spec.stem.pool else stem.r_out
    c = spec.stem.channels
    for s in spec.stages:
        total += np.array([float(x) for x in stage_cost(s, c, float(r))])  # float: no int64 overflow
        r, c = out_resolution(r, s.stride), s.channels
    if spec.head is not None:
        total += [spec.head * c * r * r, spec.head * c + 2 * spec.head, 1.0, math.log(c)]
        c = spec.head
    if classifier and spec.num_classes:
        total += [c * spec.num_classes, (c + 1) * spec.num_classes, 0.0, 0.0]
    return Cost(*(float(x) for x in total))
