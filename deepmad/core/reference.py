"""Reference networks as specs, shaped exactly as torchvision builds them.

ResNet-18/34/50/101/152 (He et al., torchvision v1.5: stride on the 3x3 conv), MobileNet-V2 and
EfficientNet-B0. Their parameter counts equal torchvision's (ResNet-18 11,689,512; ResNet-50 25,557,032;
MobileNet-V2 3,504,872; EfficientNet-B0 5,288,548).
"""
from __future__ import annotations

from .spec import Spec, Stage, Stem


def _resnet(name: str, block: str, depths: tuple[int, ...]) -> Spec:
    widths = (64, 128, 256, 512)
    expansion = 4 if block == "bottleneck" else 1
    stages = tuple(
        Stage(block, w * expansion, d, stride=1 if i == 0 else 2, kernel=3,
              mid=w if block == "bottleneck" else None)
        for i, (w, d) in enumerate(zip(widths, depths)))
    return Spec(224, Stem(64, kernel=7, stride=2, pool=True), stages, name=name)


def _mbconv(name: str, stem: int, rows: tuple, head: int, act: str, se: float) -> Spec:
    """rows: (expand ratio, kernel, stride, out channels, depth), as in the papers' tables."""
    stages = tuple(Stage("mbconv", c, n, stride=s, kernel=k, expand=float(t), se=se) for t, k, s, c, n in rows)
    return Spec(224, Stem(stem, 3, 2), stages, head=head, act=act, name=name)


REFERENCE = {
    "resnet18": lambda: _resnet("resnet18", "basic", (2, 2, 2, 2)),
    "resnet34": lambda: _resnet("resnet34", "basic", (3, 4, 6, 3)),
    "resnet50": lambda: _resnet("resnet50", "bottleneck", (3, 4, 6, 3)),
    "resnet101": lambda: _resnet("resnet101", "bottleneck", (3, 4, 23, 3)),
    "resnet152": lambda: _resnet("resnet152", "bottleneck", (3, 8, 36, 3)),
    "mobilenet_v2": lambda: _mbconv("mobilenet_v2", 32, (
        (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 3, 2, 32, 3), (6, 3, 2, 64, 4),
        (6, 3, 1, 96, 3), (6, 3, 2, 160, 3), (6, 3, 1, 320, 1)), head=1280, act="relu6", se=0.0),
    "efficientnet_b0": lambda: _mbconv("efficientnet_b0", 32, (
        (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)), head=1280, act="silu", se=0.25),
}


def reference(name: str) -> Spec:
    """The reference network called name (see REFERENCE)."""
    return REFERENCE[name]()
