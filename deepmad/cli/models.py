"""``deepmad`` commands that build PyTorch models: ``summary`` and ``export``.

A CLI extension (see ``deepmad.cli.EXTENSIONS``): ``add_commands(sub)`` adds the subparsers and ``COMMANDS``
maps each command to its handler ``handler(args) -> str``. torch is imported inside the handlers only, so
the design commands start without it; without torch a command fails with one line saying how to install it.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from .design import int_at_least

TORCH_MISSING = "this command needs PyTorch: install with pip install 'deepmad[torch]'"


def require_torch() -> None:
    """Raise a one-line ValueError (the CLI prints it, exit 2) when torch cannot be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ValueError(TORCH_MISSING) from None


# ---------------------------------------------------------------------------------------------- summary

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


TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")


def _destinations(args) -> tuple[str | None, str | None]:
    """(ONNX file, TorchScript file) from --onnx, --torchscript and -o/--output (the format by its suffix)."""
    onnx_path, ts_path = args.onnx, args.torchscript
    for path in args.output or []:
        low = path.lower()
        if low.endswith(".onnx"):
            if onnx_path:
                raise ValueError(f"-o {path}: a second ONNX file (already {onnx_path}); give one")
            onnx_path = path
        elif low.endswith(TORCHSCRIPT_SUFFIXES):
            if ts_path:
                raise ValueError(f"-o {path}: a second TorchScript file (already {ts_path}); give one")
            ts_path = path
        else:
            raise ValueError(f"-o {path}: expected a .onnx (ONNX) or {', '.join(TORCHSCRIPT_SUFFIXES)} "
                             f"(TorchScript) file name, or --onnx FILE / --torchscript FILE")
    return onnx_path, ts_path


def _from_checkpoint(args):
    """The model of a deepmad train checkpoint, with its trained weights (MODEL, if given, must fit them)."""
    from ..models import create_model
    from ..core.spec import from_dict
    from ..train.checkpoint import CheckpointError, load

    if args.num_classes is not None:
        raise ValueError("--num-classes: a checkpoint's model keeps the classes it was trained on; leave it out")
    try:
        ck = load(args.checkpoint)
    except CheckpointError as e:
        raise ValueError(f"--checkpoint {e}") from None
    spec = from_dict(ck["spec"])
    arch = spec
    if args.model:
        from dataclasses import replace

        from ..models import resolve_spec

        given = resolve_spec(args.model)
        arch = replace(given, num_classes=spec.num_classes, in_channels=spec.in_channels,
                       resolution=spec.resolution)
    model = create_model(arch, features_only=args.features_only, out_indices=args.out_indices)
    state = ck["model"]
    if args.features_only:
        own = model.state_dict()
        state = {k: v for k, v in state.items() if k in own}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:240]
        raise ValueError(f"--checkpoint {args.checkpoint}: its weights do not fit {args.model}: {first}") from None
    return model, f"weights of {args.checkpoint} (epoch {ck['epoch']})"


def _export(args) -> str:
    import sys

    require_torch()
    onnx_path, ts_path = _destinations(args)
    if not onnx_path and not ts_path:
        raise ValueError("export: give -o FILE (.onnx or .pt), --onnx FILE and/or --torchscript FILE")
    if not args.model and not args.checkpoint:
        raise ValueError("export: give MODEL (a preset, reference network or spec file) or --checkpoint CKPT")
    if args.out_indices is not None and not args.features_only:
        raise ValueError("--out-indices: applies to --features-only backbones only")
    if onnx_path and ts_path and os.path.abspath(onnx_path) == os.path.abspath(ts_path):
        raise ValueError(f"--onnx and --torchscript: both name {onnx_path}; give two different files")
    if onnx_path:
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ValueError("--onnx: needs the onnx package: pip install 'deepmad[export]'") from None
    if not onnx_path and (args.dynamic_hw or args.opset is not None):
        raise ValueError(f"{'--dynamic-hw' if args.dynamic_hw else '--opset'}: applies to --onnx only")
    from ..models import create_model
    from ..models.export import DEFAULT_OPSET, OPSETS, check_path, export_onnx, export_torchscript, randomize_

    if args.opset is not None and args.opset not in OPSETS:
        raise ValueError(f"--opset: expected an integer in {OPSETS.start}..{OPSETS.stop - 1}, got {args.opset}")
    for flag, path in (("--onnx", onnx_path), ("--torchscript", ts_path)):
        if path:
            check_path(path, args.force, "-o" if path in (args.output or []) else flag)  # every destination is checked before any work is done

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    from ..models.factory import is_preset

    if is_preset(args.model):
        say(f"model {args.model}: designing (the first use of a preset solves its program)")
    if args.checkpoint:
        model, weights = _from_checkpoint(args)
    else:
        model = create_model(args.model, num_classes=args.num_classes, features_only=args.features_only,
                             out_indices=args.out_indices)
        randomize_(model, args.seed)
        weights = (f"random weights and BatchNorm statistics (seed {args.seed}; --checkpoint exports trained "
                   f"ones)")
    res = args.resolution or model.spec.resolution
    lines = [f"{model.spec.name or args.model or args.checkpoint}: "
             f"{sum(p.numel() for p in model.parameters()):,} params, input {model.spec.in_channels}x{res}x{res}, "
             f"{weights}"]
    if onnx_path:
        r = export_onnx(model, onnx_path, res, dynamic_hw=args.dynamic_hw,
                        opset=DEFAULT_OPSET if args.opset is None else args.opset, force=args.force, log=say)
        lines.append(r.describe())
    if ts_path:
        lines.append(export_torchscript(model, ts_path, res, force=args.force, log=say).describe())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- protocol

def add_commands(sub) -> None:
    """Add this module's subcommands to the ``deepmad`` parser's subparsers."""
    s = sub.add_parser("summary", help="per-layer table of a built PyTorch model: shapes, params, MACs")
    s.add_argument("model", help="preset name, reference network (resnet50, ...), or spec file path")
    s.add_argument("--resolution", type=lambda t: int_at_least(t, 1),
                   help="input side in pixels (default: the spec's)")
    s.add_argument("--num-classes", type=lambda t: int_at_least(t, 0),
                   help="classifier outputs (default: the spec's; 0: no classifier)")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of the table (default: off)")
    e = sub.add_parser("export", help="write a built PyTorch model as ONNX and/or TorchScript, checked against "
                       "PyTorch", epilog="examples:\n  deepmad export deepmad-r18 -o r18.onnx --dynamic-hw\n"
                       "  deepmad export --checkpoint runs/my-net/best.pt -o my-net.onnx -o my-net.pt")
    e.add_argument("model", nargs="?", help="preset name, reference network (resnet50, ...), or spec file path "
                   "(default with --checkpoint: the checkpoint's model)")
    e.add_argument("-o", "--output", action="append", metavar="FILE",
                   help="write FILE, ONNX for .onnx, TorchScript for .pt/.pth/.ts; repeat for both (default: "
                        "none; one of -o, --onnx, --torchscript is required)")
    e.add_argument("--onnx", metavar="FILE", help="write an ONNX file, dynamic batch axis (default: none)")
    e.add_argument("--torchscript", metavar="FILE", help="write a traced TorchScript file (default: none)")
    e.add_argument("--checkpoint", metavar="CKPT",
                   help="export the trained weights of a deepmad train checkpoint (best.pt, last.pt) (default: "
                        "random weights and BatchNorm statistics, so that the check sees every layer)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random weights without --checkpoint (default 0)")
    e.add_argument("--resolution", type=lambda t: int_at_least(t, 1),
                   help="side of the example input in pixels (default: the spec's, or the checkpoint's)")
    e.add_argument("--dynamic-hw", action="store_true",
                   help="ONNX: make height and width dynamic axes too (default: off)")
    e.add_argument("--num-classes", type=lambda t: int_at_least(t, 0),
                   help="classifier outputs (default: the spec's; 0: no classifier)")
    e.add_argument("--features-only", action="store_true",
                   help="export the backbone: one output per feature level, see --out-indices (default: off)")
    e.add_argument("--out-indices", type=_levels, metavar="I,J,...",
                   help="feature levels of a --features-only backbone, e.g. 1,2,3,4 (default: all)")
    e.add_argument("--opset", type=lambda t: int_at_least(t, 1), help="ONNX opset (default: 17)")
    e.add_argument("--force", action="store_true", help="overwrite existing output files (default: off)")
    e.add_argument("-q", "--quiet", action="store_true", help="print no status lines on stderr (default: off)")


COMMANDS: dict[str, Any] = {
    "summary": _summary,
    "export": _export,
}
