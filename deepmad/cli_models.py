"""``deepmad`` commands that build PyTorch models: ``summary`` and ``export``.

A CLI extension (see ``deepmad.cli.EXTENSIONS``): ``add_commands(sub)`` adds the subparsers and ``COMMANDS``
maps each command to its handler ``handler(args) -> str``. torch is imported inside the handlers only, so
the design commands start without it; without torch a command fails with one line saying how to install it.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

TORCH_MISSING = "this command needs PyTorch: install with pip install 'deepmad[torch]'"


def require_torch() -> None:
    """Raise a one-line ValueError (the CLI prints it, exit 2) when torch cannot be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ValueError(TORCH_MISSING) from None


# ---------------------------------------------------------------------------------------------- summary

@dataclass(frozen=True)
class Layer:
    """One row of the summary: a conv-BN-act unit, a bare conv (SE), a pool or the classifier."""

    name: str  # module name in the model (the name deepmad.blocks.convs gives its conv)
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
    import torch
    from torch import nn

    from .models.layers import ConvBNAct

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


def _int(text: str, lo: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
    if value < lo:
        raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {value}")
    return value


def _summary(args) -> str:
    require_torch()
    from dataclasses import replace

    import torch

    from . import blocks, report
    from .models import create_model

    with torch.device("meta"):  # shapes and counts only: no weights are allocated, nothing is computed
        model = create_model(args.model, num_classes=args.num_classes)
    spec = model.spec
    res = args.resolution or spec.resolution
    layers = layer_summary(model, res)
    params = sum(p.numel() for p in model.parameters())
    macs = sum(r.macs for r in layers)
    analytic = blocks.cost(replace(spec, resolution=res))
    agree = params == analytic.params and macs == analytic.macs
    name = spec.name or str(args.model)
    if args.json:
        return report.dumps({
            "model": name, "resolution": res, "num_classes": spec.num_classes,
            "layers": [{"name": r.name, "type": r.type, "shape": list(r.shape), "params": r.params,
                        "macs": r.macs} for r in layers],
            "params": params, "macs": macs,
            "analytic": {"params": int(analytic.params), "macs": int(analytic.macs)}, "agree": agree})
    head = ("layer", "type", "output", "params", "MACs")
    body = [(r.name, r.type, "x".join(map(str, r.shape)), f"{r.params:,}", f"{r.macs:,}") for r in layers]
    body.append(("total", "", "", f"{params:,}", f"{macs:,}"))
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(5)]
    fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [f"{name}: input {spec.in_channels}x{res}x{res}, {spec.num_classes or 'no'} classes, batch 1",
             fmt.format(*head), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*row) for row in body[:-1]]
    lines += ["  ".join("-" * w for w in widths), fmt.format(*body[-1]), ""]
    verdict = "agree" if agree else (f"DIFFER (params {params - analytic.params:+,.0f}, "
                                     f"MACs {macs - analytic.macs:+,.0f})")
    lines.append(f"built model: {params:,} params ({report.si(params)}), {macs:,} MACs ({report.si(macs)}); "
                 f"analytic counts (deepmad.blocks): {analytic.params:,.0f} params, {analytic.macs:,.0f} MACs: "
                 f"{verdict}")
    lines.append("MACs: multiply-accumulates of convolutions and the classifier (= FLOPs / 2); BatchNorm, "
                 "activations, pooling and additions are not counted")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- export

def _levels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(a) for a in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated level indices like 1,2,3,4, got {text!r}") from None


def _export(args) -> str:
    require_torch()
    if not args.onnx and not args.torchscript:
        raise ValueError("export: give --onnx FILE and/or --torchscript FILE")
    if args.out_indices is not None and not args.features_only:
        raise ValueError("--out-indices: applies to --features-only backbones only")
    if args.onnx and args.torchscript and os.path.abspath(args.onnx) == os.path.abspath(args.torchscript):
        raise ValueError(f"--onnx and --torchscript: both name {args.onnx}; give two different files")
    if args.onnx:
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ValueError("--onnx: needs the onnx package: pip install 'deepmad[export]'") from None
    if not args.onnx and (args.dynamic_hw or args.opset is not None):
        raise ValueError(f"{'--dynamic-hw' if args.dynamic_hw else '--opset'}: applies to --onnx only")
    from .models import create_model
    from .models.export import DEFAULT_OPSET, OPSETS, check_path, export_onnx, export_torchscript

    if args.opset is not None and args.opset not in OPSETS:
        raise ValueError(f"--opset: expected an integer in {OPSETS.start}..{OPSETS.stop - 1}, got {args.opset}")
    for flag, path in (("--onnx", args.onnx), ("--torchscript", args.torchscript)):
        if path:
            check_path(path, args.force, flag)  # every destination is checked before any work is done
    model = create_model(args.model, num_classes=args.num_classes, features_only=args.features_only,
                         out_indices=args.out_indices)
    res = args.resolution or model.spec.resolution
    lines = [f"{model.spec.name or args.model}: {sum(p.numel() for p in model.parameters()):,} params, "
             f"input {model.spec.in_channels}x{res}x{res}"]
    if args.onnx:
        r = export_onnx(model, args.onnx, res, dynamic_hw=args.dynamic_hw,
                        opset=DEFAULT_OPSET if args.opset is None else args.opset, force=args.force)
        lines.append(r.describe())
    if args.torchscript:
        lines.append(export_torchscript(model, args.torchscript, res, force=args.force).describe())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- protocol

def add_commands(sub) -> None:
    """Add this module's subcommands to the ``deepmad`` parser's subparsers."""
    s = sub.add_parser("summary", help="per-layer table of a built PyTorch model: shapes, params, MACs")
    s.add_argument("model", help="preset name, reference network (resnet50, ...), or spec file path")
    s.add_argument("--resolution", type=lambda t: _int(t, 1),
                   help="input side in pixels (default: the spec's)")
    s.add_argument("--num-classes", type=lambda t: _int(t, 0),
                   help="classifier outputs (default: the spec's; 0: no classifier)")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    e = sub.add_parser("export", help="write a built PyTorch model as ONNX and/or TorchScript, checked against "
                       "PyTorch", epilog="example: deepmad export deepmad-r18 --onnx r18.onnx --dynamic-hw")
    e.add_argument("model", help="preset name, reference network (resnet50, ...), or spec file path")
    e.add_argument("--onnx", metavar="FILE", help="write an ONNX file (dynamic batch axis)")
    e.add_argument("--torchscript", metavar="FILE", help="write a traced TorchScript file")
    e.add_argument("--resolution", type=lambda t: _int(t, 1),
                   help="side of the example input in pixels (default: the spec's)")
    e.add_argument("--dynamic-hw", action="store_true", help="ONNX: make height and width dynamic axes too")
    e.add_argument("--num-classes", type=lambda t: _int(t, 0),
                   help="classifier outputs (default: the spec's; 0: no classifier)")
    e.add_argument("--features-only", action="store_true",
                   help="export the backbone: one output per feature level (see --out-indices)")
    e.add_argument("--out-indices", type=_levels, metavar="I,J,...",
                   help="feature levels of a --features-only backbone, e.g. 1,2,3,4 (default: all)")
    e.add_argument("--opset", type=lambda t: _int(t, 1), help="ONNX opset (default: 17)")
    e.add_argument("--force", action="store_true", help="overwrite existing output files")


COMMANDS: dict[str, Any] = {
    "summary": _summary,
    "export": _export,
}
