"""``deepmad`` commands that build PyTorch models: ``summary`` and ``export``.

A CLI extension (see ``deepmad.cli.EXTENSIONS``): ``add_commands(sub)`` adds the subparsers and ``COMMANDS``
maps each command to its handler ``handler(args) -> str``. torch is imported inside the handlers only, so
the design commands start without it; without torch a command fails with one line saying how to install it.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

TORCH_MISSING = "this command needs PyTorch: install with pip install 'deepmad[torch]'"


def require_torch() -> None:
    """Raise a one-line ValueError (the CLI prints it, exit 2) when torch cannot be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ValueError(TORCH_MISSING) from None


# ---------------------------------------------------------------------------------------------- summary

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

    from .. import report
    from ..core import blocks
    from ..models import create_model
    from ..models.summary import layer_summary

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
                 f"analytic counts (deepmad.core.blocks): {analytic.params:,.0f} params, {analytic.macs:,.0f} MACs: "
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
    from ..models import create_model
    from ..models.export import DEFAULT_OPSET, OPSETS, check_path, export_onnx, export_torchscript

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
