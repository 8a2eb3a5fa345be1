"""``MLPNet``: a ``deepmad.core.mlp.MLPSpec`` as a PyTorch ``nn.Sequential`` (Section 3's MLP family).

Layout: ``fc1``, ``act1``, ``fc2``, ``act2``, ..., ``fc{L}`` (no activation after the last layer), each
``fcI`` an ``nn.Linear(w_i, w_{i+1}, bias=spec.bias)``; with ``drop_rate``, an ``nn.Dropout`` (``drop``)
before the last layer. The parameters are exactly ``deepmad.core.mlp.params(model.spec)``.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from torch import nn

from ..core.mlp import MLPSpec, validate

_ACT = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLPNet(nn.Sequential):
    """The MLP a spec describes; ``num_classes`` replaces its output dimension (None: the spec's)."""

    def __init__(self, spec: MLPSpec, num_classes: int | None = None, drop_rate: float = 0.0) -> None:
        if not isinstance(spec, MLPSpec):
            raise ValueError(f"spec: expected a deepmad MLPSpec, got {type(spec).__name__}")
        if num_classes is not None:
            spec = replace(spec, outputs=num_classes)
        validate(spec)
        if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0 <= drop_rate < 1:
            raise ValueError(f"drop_rate: expected a probability in [0, 1), got {drop_rate!r}")
        w = spec.widths
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(spec.depth):
            if i == spec.depth - 1 and drop_rate:
                layers["drop"] = nn.Dropout(drop_rate)
            layers[f"fc{i + 1}"] = nn.Linear(w[i], w[i + 1], bias=spec.bias)
            if i < spec.depth - 1:
                layers[f"act{i + 1}"] = _ACT[spec.act]()
        super().__init__(layers)
        self.spec = spec
        self.num_classes = spec.outputs

    def __getitem__(self, idx):
        """A layer, or a slice as a plain ``nn.Sequential`` (a slice is no longer the spec's MLP)."""
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)


__all__ = ["MLPNet"]
