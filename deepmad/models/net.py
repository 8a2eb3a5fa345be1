"""``DeepMADNet``: any ``deepmad.Spec`` as a plain PyTorch module (classifier or multi-scale backbone).

Layout (module names are those of ``deepmad.core.blocks.convs``, so each counted conv is
``model.get_submodule(conv.name)``)::

    stem        ConvBNAct(in_chans, stem.channels, stem.kernel, stem.stride)
    stem_pool   MaxPool2d(3, 2, padding=1) when spec.stem.pool, else Identity
    stages      Sequential of stages, each a Sequential of blocks (``stages.i.d``)
    head        ConvBNAct(1x1) when spec.head, else Identity
    global_pool AdaptiveAvgPool2d(1) + flatten;  drop  Dropout(drop_rate);  classifier  Linear (or Identity)

Feature levels (timm's ``features_only`` convention): level j is the output of the last module that works
at the j-th distinct reduction (input side / map side) of the network. Level 0 is the stem output (before
its max-pool), unless stride-1 stages follow the stem without a pool, in which case it is the last of them;
each later level is the output of the last stage at that reduction, the last level the output of the last
stage (the head conv is not a level). A ResNet has levels 0..4 at reductions 2, 4, 8, 16, 32 (stem, stages
0..3); MobileNet-V2 has levels 0..4 at 2, 4, 8, 16, 32 (stages 0, 1, 2, 4, 6). A map of level j has side
ceil(input side / reduction). ``model.feature_info`` lists them (all levels of a classifier; the requested
ones of a backbone).
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import nn

from ..core import blocks as counts
from ..core.spec import Spec, SpecError, validate
from .blocks import BasicBlock, Bottleneck, InvertedResidual
from .layers import ConvBNAct


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # as deepmad.train.data
CROP_PCT = 0.875  # evaluation: center crop of 224 from 256, as deepmad.train.data


def pretrained_cfg(resolution: int, in_chans: int = 3, num_classes: int = 1000, architecture: str = "",
                   pool_size: int | None = None) -> dict[str, Any]:
    """timm's model configuration (``model.pretrained_cfg``, what ``timm.data.resolve_data_config`` reads):
    the input size, and the preprocessing deepmad train uses for image folders (ImageNet mean and std,
    bilinear resize, center crop of 0.875). There are no pretrained weights (no url, no file)."""
    if in_chans == 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:  # the channel average of the ImageNet statistics, for gray or other channel counts
        mean, std = (round(sum(IMAGENET_MEAN) / 3, 4),) * in_chans, (round(sum(IMAGENET_STD) / 3, 4),) * in_chans
    cfg: dict[str, Any] = {
        "url": "", "architecture": architecture, "tag": "", "custom_load": False,
        "input_size": (in_chans, resolution, resolution), "fixed_input_size": False, "interpolation": "bilinear",
        "crop_pct": CROP_PCT, "crop_mode": "center", "mean": mean, "std": std, "num_classes": num_classes,
        "first_conv": "stem.conv", "classifier": "classifier", "license": "",
        "notes": ("no pretrained weights: a deepmad design is trained from scratch",)}
    if pool_size is not None:
        cfg["pool_size"] = (pool_size, pool_size)
    return cfg


class FeatureInfo(list):
    """A list of dicts ``{"num_chs", "reduction", "module", "index"}``, one per feature level, with timm's
    accessors: ``channels()``, ``reduction()``, ``module_name()`` (each a list, or one value for ``idx``)."""

    def _get(self, key: str, idx: int | None) -> Any:
        return [f[key] for f in self] if idx is None else self[idx][key]

    def channels(self, idx: int | None = None) -> list[int] | int:
        return self._get("num_chs", idx)

    def reduction(self, idx: int | None = None) -> list[int] | int:
        return self._get("reduction", idx)

    def module_name(self, idx: int | None = None) -> list[str] | str:
        return self._get("module", idx)


def feature_levels(spec: Spec) -> FeatureInfo:
    """Every feature level of a spec's network (see the module docstring), in forward order."""
    points = [("stem", spec.stem.channels, spec.stem.stride)]  # (module, channels, reduction at its output)
    reduction = spec.stem.stride * (2 if spec.stem.pool else 1)
    for i, s in enumerate(spec.stages):
        reduction *= s.stride
        points.append((f"stages.{i}", s.channels, reduction))
    levels = FeatureInfo()
    for j, (module, channels, red) in enumerate(points):
        if j + 1 == len(points) or points[j + 1][2] != red:
            levels.append({"num_chs": channels, "reduction": red, "module": module, "index": len(levels)})
    return levels


def _check_int(value: Any, what: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{what}: expected an integer >= {lo}, got {value!r}")
    return value


def _check_rate(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{what}: expected a probability in [0, 1), got {value!r}")
    return float(value)


def _select(levels: FeatureInfo, out_indices: Sequence[int] | None) -> FeatureInfo:
    """The requested levels (all by default); negative indices count from the last level."""
    n = len(levels)
    valid = (f"this network has feature levels 0..{n - 1} (reductions "
             f"{', '.join(str(f['reduction']) for f in levels)})")
    if out_indices is None:
        return FeatureInfo(levels)
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        out_indices = (out_indices,)
    try:
        wanted = list(out_indices)
    except TypeError:
        raise ValueError(f"out_indices: expected a sequence of level indices, got {out_indices!r}") from None
    if not wanted:
        raise ValueError(f"out_indices: expected at least one level; {valid}")
    picked = []
    for i in wanted:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"out_indices: expected integer level indices, got {i!r}")
        if not -n <= i < n:
            raise ValueError(f"out_indices: level {i} is outside the network; {valid}")
        picked.append(i % n)
    if len(set(picked)) != len(picked):
        raise ValueError(f"out_indices: a level is requested twice in {tuple(wanted)}")
    return FeatureInfo(levels[i] for i in picked)


def _check_memory(spec: Spec, params: float) -> None:
    """A spec whose weights cannot fit in this machine's memory fails here, not in the allocator."""
    if torch.get_default_device().type != "cpu":
        return
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return
    need = 4 * params
    if need > physical:
        raise SpecError(f"{spec.name or 'spec'}: cannot build: its {params:,.0f} parameters need "
                        f"{need / 2**30:,.1f} GiB of float32 weights, more than this machine's "
                        f"{physical / 2**30:,.1f} GiB of memory")


class DeepMADNet(nn.Module):
    """The network a spec describes, with exactly the convolutions ``deepmad.core.blocks.convs`` counts.

    num_classes: classifier outputs (None: the spec's; 0: no classifier, ``forward`` returns the pooled
    features). in_chans: input channels (None: the spec's). drop_rate: dropout before the classifier.
    drop_path_rate: stochastic depth of the residual blocks, increasing linearly from 0 at the first block
    to drop_path_rate at the last one. features_only: build the stem and the stages up to the last
    requested level only, and return the feature maps of ``out_indices`` (default: every level; see the
    module docstring) as a list.

    ``model.spec`` is the spec as built (num_classes and in_chans applied), so for a classifier
    ``sum(p.numel() for p in model.parameters()) == deepmad.core.blocks.cost(model.spec).params``.
    """

    def __init__(self, spec: Spec, num_classes: int | None = None, in_chans: int | None = None,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, features_only: bool = False,
                 out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        if not isinstance(spec, Spec):
            raise ValueError(f"spec: expected a deepmad.Spec, got {type(spec).__name__}")
        validate(spec)  # a Spec altered after construction is checked again
        nc = spec.num_classes if num_classes is None else _check_int(num_classes, "num_classes", 0)
        ic = spec.in_channels if in_chans is None else _check_int(in_chans, "in_chans", 1)
        self.spec = spec = replace(spec, num_classes=nc, in_channels=ic)
        self.drop_rate = _check_rate(drop_rate, "drop_rate")
        self.drop_path_rate = _check_rate(drop_path_rate, "drop_path_rate")
        if out_indices is not None and not features_only:
            raise ValueError("out_indices: applies to features_only=True backbones only")
        self.features_only = bool(features_only)
        levels = feature_levels(spec)
        self.feature_info = _select(levels, out_indices) if features_only else levels
        _check_memory(spec, counts.cost(spec).params)

        n_stages = len(spec.stages)
        if features_only:  # nothing after the deepest requested level is built
            n_stages = 1 + max(-1 if f["module"] == "stem" else int(f["module"].split(".")[1])
                               for f in self.feature_info)
        act = spec.act
        self.stem = ConvBNAct(ic, spec.stem.channels, spec.stem.kernel, spec.stem.stride, act=act)
        self.stem_pool = nn.MaxPool2d(3, 2, padding=1) if spec.stem.pool else nn.Identity()

        n_blocks = sum(s.depth for s in spec.stages)
        b, c = 0, spec.stem.channels
        stages = []
        for s in spec.stages[:n_stages]:
            blocks = []
            for d in range(s.depth):
                rate = self.drop_path_rate * b / max(n_blocks - 1, 1)
                blocks.append(make_block(s, c, s.stride if d == 0 else 1, act, rate))
                b, c = b + 1, s.channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self._taps = [f["module"] for f in self.feature_info]

        self.grad_checkpointing = False
        last = self.feature_info[-1]["reduction"] if features_only else feature_levels(spec)[-1]["reduction"]
        self.pretrained_cfg = pretrained_cfg(spec.resolution, ic, nc if not features_only else 0,
                                             (spec.name or "deepmad").replace("-", "_"),
                                             -(-spec.resolution // last))
        if not features_only:
            self.head = ConvBNAct(c, spec.head, 1, act=act) if spec.head is not None else nn.Identity()
            self.num_features = self.head_hidden_size = spec.head if spec.head is not None else c
            self.num_classes = nc
            self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
            self.drop = nn.Dropout(self.drop_rate)
            self.classifier = nn.Linear(self.num_features, nc) if nc else nn.Identity()
        self.init_weights()

    # ------------------------------------------------------------------------------------------ init

    def init_weights(self, zero_init_last: bool = True) -> None:
        """Kaiming-normal convs (fan_out, relu), BN weight 1 and bias 0, Linear N(0, 0.01) and bias 0;
        with zero_init_last, the last BN of every residual branch starts at zero."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()

    # ------------------------------------------------------------------------------------------ forward

    def _stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One stage; with gradient checkpointing (``set_grad_checkpointing``), its activations are not kept
        for the backward pass but recomputed there (the random draws of dropout and stochastic depth too)."""
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (after the head conv, if any), before pooling."""
        x = self.stem_pool(self.stem(x))
        for stage in self.stages:
            x = self._stage(stage, x)
        return x if self.features_only else self.head(x)

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps of ``self.feature_info``, in its order."""
        maps = {}
        x = self.stem(x)
        maps["stem"] = x
        x = self.stem_pool(x)
        for i, stage in enumerate(self.stages):
            x = self._stage(stage, x)
            maps[f"stages.{i}"] = x
        return [maps[m] for m in self._taps]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, dropout and classifier (pre_logits: stop before the classifier)."""
        if self.features_only:
            raise RuntimeError("forward_head: a features_only backbone has no head")
        x = self.drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_levels(x)
        return self.forward_head(self.forward_features(x))

    # ------------------------------------------------------------------------------------------ timm API

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name of ``pretrained_cfg``."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, cfg: dict[str, Any]) -> None:
        self.pretrained_cfg = cfg

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint stage by stage (timm's API): less memory for activations, one more forward pass of each
        stage during the backward pass. Gradients are the same as without it."""
        self.grad_checkpointing = bool(enable)

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm's parameter groups (layer-wise lr decay): the stem, then each stage (coarse) or each block;
        the head conv and the classifier are the last group (timm's rule for unmatched names)."""
        return {"stem": r"^stem", "blocks": r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)"}

    def no_weight_decay(self) -> set[str]:
        """Parameter names timm's optimizer factory exempts from weight decay besides the 1-d ones: none."""
        return set()

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier of num_classes outputs (0: none), initialized as in ``init_weights``; global_pool
        (timm's argument) can only be "avg" (or None), the pooling these models have."""
        if self.features_only:
            raise RuntimeError("reset_classifier: a features_only backbone has no classifier")
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool: a deepmad model pools by average ('avg'), got {global_pool!r}")
        nc = _check_int(num_classes, "num_classes", 0)
        self.classifier = nn.Linear(self.num_features, nc) if nc else nn.Identity()
        if nc:
            nn.init.normal_(self.classifier.weight, 0.0, 0.01)
            nn.init.zeros_(self.classifier.bias)
        self.num_classes = nc
        self.spec = replace(self.spec, num_classes=nc)
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": nc}


def make_block(s, c_in: int, stride: int, act: str, drop_path: float = 0.0) -> nn.Module:
    """One block of stage s (a ``deepmad.core.spec.Stage``) whose input has c_in channels."""
    if s.block == "basic":
        return BasicBlock(c_in, s.channels, s.kernel, stride, s.groups, act, drop_path)
    mid = int(counts.expansion(s, c_in))
    if s.block == "bottleneck":
        return Bottleneck(c_in, s.channels, mid, s.kernel, stride, s.groups, act, drop_path)
    if s.block == "mbconv":
        squeeze = int(counts.squeeze(c_in, s.se)) if s.se > 0 else 0
        return InvertedResidual(c_in, s.channels, mid, s.kernel, stride, squeeze, act, drop_path)
    raise SpecError(f"block: expected one of basic, bottleneck, mbconv, got {s.block!r}")


__all__ = ["DeepMADNet", "FeatureInfo", "feature_levels", "make_block", "pretrained_cfg"]
