"""Per-layer summary of a built ``DeepMADNet``: output shape, params and MACs of every layer (``deepmad summary``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import ConvBNAct


@dataclass(frozen=True)
class Layer:
    """One row of the summary: a conv-BN-act unit, a bare conv (SE), a pool or the classifier."""

    name: str  # module name in the model (the name deepmad.core.blocks.convs gives its conv)
    type: str  # e.g. conv3x3/2-bn-relu, dwconv5x5/1-bn-silu, conv1x1/1+bias, maxpool3x3/2, linear
    shape: tuple[int, ...]  # output shape of one sample (C, H, W) or (features,)
    params: int
    macs: int  # multiply-accumulates of one sample (convs and the classifier; 0 for pools)


def _conv_type(conv, bn: bool, act) -> str:
    from torch import nn

    k, s, g = conv.kernel_size[0], conv.stride[0], conv.groups
    kind = "dwconv" if g > 1 and g == conv.in_channels == conv.out_channels else "conv"
    text = f"{kind}{k}x{k}/{s}" + (f"-g{g}" if g > 1 and kind == "conv" else "")
    text += "-bn" if bn else ("+bias" if conv.bias is not None else "")
    if act is not None and not isinstance(act, nn.Identity):
        text += f"-{type(act).__name__.lower()}"
    return text


def layer_summary(model, resolution: int) -> list[Layer]:
    """Rows of ``model`` (a DeepMADNet) from one batch-1 forward at resolution x resolution, with forward
    hooks; the model is run as is (build it on the meta device to count without memory or compute)."""

    rows: dict[str, Layer] = {}
    hooks = []

    def record(name: str, module: nn.Module):
        def hook(mod, inputs, output):
            shape = tuple(output.shape[1:])
            n_out = output[0].numel()
            if isinstance(mod, ConvBNAct):
                conv, typ = mod.conv, _conv_type(mod.conv, True, mod.act)
            elif isinstance(mod, nn.Conv2d):
                conv, typ = mod, _conv_type(mod, False, None)
            else:
                conv = None
                typ = ("linear" if isinstance(mod, nn.Linear) else
                       f"maxpool{mod.kernel_size}x{mod.kernel_size}/{mod.stride}" if isinstance(mod, nn.MaxPool2d)
                       else "avgpool-global")
            if conv is not None:
                macs = n_out * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]
            elif isinstance(mod, nn.Linear):
                macs = n_out * mod.in_features
            else:
                macs = 0
            params = sum(p.numel() for p in mod.parameters())
            rows[name] = Layer(name, typ, shape, params, macs)
        return module.register_forward_hook(hook)

    in_units: set[str] = set()  # convs counted with their ConvBNAct
    order: dict[str, int] = {}
    for name, m in model.named_modules():
        order[name] = len(order)
        if isinstance(m, ConvBNAct):
            in_units.add(f"{name}.conv")
        bare_conv = isinstance(m, nn.Conv2d) and name not in in_units
        if isinstance(m, (ConvBNAct, nn.Linear, nn.MaxPool2d)) or bare_conv or name == "global_pool":
            hooks.append(record(name, m))
    param = next(model.parameters())
    x = torch.zeros(1, model.spec.in_channels, resolution, resolution, device=param.device, dtype=param.dtype)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return sorted(rows.values(), key=lambda r: order[r.name])
