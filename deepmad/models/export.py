"""Export a built model to ONNX or TorchScript, checked against PyTorch before the file is published.

``export_onnx`` uses PyTorch's TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``): the
newer ``torch.export`` exporter needs ``onnxscript``, which ``deepmad[export]`` does not install. The batch
axis is always dynamic; with ``dynamic_hw`` the height and width are too. A ``features_only`` backbone has one
named output per feature level (``level1``, ``level2``, ...: the level numbers of ``model.feature_info``).

Every file is written to a temporary file in the destination directory, checked, and only then moved into
place with ``os.replace``: a failed export or a failed check leaves no file behind, and an existing file is
kept unless ``force=True``. The check runs the exported file (onnxruntime for ONNX, when installed;
``torch.jit.load`` for TorchScript) on fixed random inputs at batch 1 and 3 (and, with ``dynamic_hw``, at a
second, non-square size) and requires every output to equal PyTorch's within ``RTOL`` of the output's scale
(its largest magnitude), and a classifier's argmax to agree on every input row.

A check is only as good as the weights it runs with: a freshly built model has its last BatchNorm of every
residual branch at zero and logits of a few hundredths, so a wrong layer can hide below any tolerance.
``randomize_`` gives a model random weights and BatchNorm statistics of order one; ``deepmad export``
applies it unless it exports a trained checkpoint (``--checkpoint``).
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

EXPORT_MISSING = "ONNX export needs the onnx package: pip install 'deepmad[export]'"
ORT_MISSING = "onnxruntime is not installed (pip install 'deepmad[export]')"
DEFAULT_OPSET = 17
OPSETS = range(9, 21)  # opsets the TorchScript-based exporter of torch 2.13 writes
RTOL = 1e-4  # largest |exported - PyTorch| accepted, relative to the largest |PyTorch| of the output
INPUT_NAME = "input"


class ExportError(ValueError):
    """An export that cannot be done (bad path, missing package, unsupported model) or failed its check."""


@dataclass(frozen=True)
class Check:
    """One comparison of the exported file against PyTorch on a random input of shape (batch, C, H, W)."""

    batch: int
    height: int
    width: int
    max_abs_diff: float  # largest |exported - PyTorch| over all outputs
    rel_diff: float  # the largest, over the outputs, of max |exported - PyTorch| / max |PyTorch|
    argmax_agree: int | None = None  # rows whose class (argmax) is the same; None: no classifier output
    rows: int = 0

    @property
    def ok(self) -> bool:
        return self.rel_diff <= RTOL and (self.argmax_agree is None or self.argmax_agree == self.rows)

    def describe(self) -> str:
        am = f"; argmax agrees on {self.argmax_agree}/{self.rows}" if self.argmax_agree is not None else ""
        return (f"max |diff| {self.max_abs_diff:.2e}, {self.rel_diff:.1e} of the output's scale (<= {RTOL:g}"
                f"){am}: {'ok' if self.ok else 'FAILED'}")


@dataclass(frozen=True)
class ExportResult:
    """What was written, and how it was checked."""

    path: str
    format: str  # "onnx" or "torchscript"
    input_name: str
    output_names: tuple[str, ...]
    in_chans: int
    resolution: int  # side of the example input the model was traced with
    dynamic_hw: bool
    opset: int | None  # ONNX opset (None for TorchScript)
    checker: str  # what ran the exported file, or why nothing did
    checks: tuple[Check, ...]  # empty when no runtime was available

    def describe(self) -> str:
        """A few lines for the CLI: the file, its axes and the parity check."""
        size = os.path.getsize(self.path)
        hw = "H, W" if self.dynamic_hw else f"{self.resolution}, {self.resolution}"
        axes = f"{self.input_name}: (batch, {self.in_chans}, {hw})"
        what = f"ONNX opset {self.opset}" if self.format == "onnx" else "TorchScript (traced)"
        lines = [f"wrote {self.path} ({what}, {size / 2**20:,.1f} MiB); input {axes}, dynamic batch"
                 + (" and H, W" if self.dynamic_hw else "") + f"; outputs {', '.join(self.output_names)}"]
        if not self.checks:
            lines.append(f"  parity check skipped: {self.checker}")
        for c in self.checks:
            lines.append(f"  check {self.checker} vs PyTorch, input {c.batch}x{self.in_chans}x{c.height}x{c.width}: "
                         f"{c.describe()}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- helpers

def check_path(path: str | os.PathLike, force: bool = False, what: str = "output") -> Path:
    """The destination as a Path, or an ExportError naming why it cannot be written."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ExportError(f"{what}: expected a file path, got {path!r}")
    p = Path(os.fspath(path))
    if p.is_dir():
        raise ExportError(f"{what} {p}: is a directory, expected a file path")
    if (p.exists() or p.is_symlink()) and not force:
        how = "--force" if what.startswith("--") else "force=True"
        raise ExportError(f"{what} {p}: file exists; use {how} to overwrite it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"{what} {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"{what} {p}: directory {parent} is not writable")
    return p


def _write_atomic(path: Path, write: Callable[[str], None], verify: Callable[[str], Any]) -> Any:
    """write(tmp) into a temporary file beside path, verify(tmp), then os.replace it onto path."""
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        result = verify(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it the mode a new file would get
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return result


def _model_input(model: nn.Module, resolution: int | None, in_chans: int | None) -> tuple[int, int]:
    if not isinstance(model, nn.Module):
        raise ExportError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    spec = getattr(model, "spec", None)
    if resolution is None:
        if spec is None:
            raise ExportError("resolution: required for a model without a deepmad spec")
        resolution = spec.resolution
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ExportError(f"resolution: expected an integer >= 1, got {resolution!r}")
    if in_chans is None:
        in_chans = spec.in_channels if spec is not None else 3
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ExportError(f"in_chans: expected an integer >= 1, got {in_chans!r}")
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_meta for t in tensors):
        raise ExportError("model: its weights are on the meta device (no values); build it on a real device")
    return resolution, in_chans


def _device(model: nn.Module) -> torch.device:
    t = next(iter([*model.parameters(), *model.buffers()]), None)
    return t.device if t is not None else torch.device("cpu")


def _outputs(y: Any) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, (list, tuple)) and y and all(isinstance(t, torch.Tensor) for t in y):
        return list(y)
    raise ExportError(f"model: forward must return a tensor or a list of tensors, got {type(y).__name__}")


def output_names(model: nn.Module, y: Any) -> list[str]:
    """``level<j>`` per map of a features_only DeepMADNet, ``logits`` (``features`` without a classifier),
    or ``output<i>`` for any other module."""
    outs = _outputs(y)
    info = getattr(model, "feature_info", None)
    if getattr(model, "features_only", False) and info is not None and len(info) == len(outs):
        return [f"level{f['index']}" for f in info]
    if len(outs) == 1 and hasattr(model, "num_classes"):
        return ["logits" if model.num_classes else "features"]
    return [f"output{i}" for i in range(len(outs))] if len(outs) > 1 else ["output"]


def check_inputs(in_chans: int, resolution: int, dynamic_hw: bool) -> list[torch.Tensor]:
    """The fixed random inputs of the parity check (seeded: the same on every run)."""
    g = torch.Generator().manual_seed(0)
    shapes = [(1, resolution, resolution), (3, resolution, resolution)]
    if dynamic_hw:
        shapes.append((2, resolution // 2 + 1, resolution))
    return [torch.randn(b, in_chans, h, w, generator=g) for b, h, w in shapes]


class _Eval:
    """Context: the model in eval mode (restored after), no autograd, exporter warnings silenced."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self):
        self.training = self.model.training
        self.model.eval()
        self.grad = torch.no_grad()
        self.grad.__enter__()
        self.warn = warnings.catch_warnings()
        self.warn.__enter__()
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer warnings
        return self

    def __exit__(self, *exc):
        self.warn.__exit__(*exc)
        self.grad.__exit__(*exc)
        self.model.train(self.training)
        return False


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give model random weights and BatchNorm statistics of order one, in place (seeded), so that every layer
    shows in its outputs: convolutions and linear layers He-normal with small random biases, BatchNorm
    running means N(0, 0.1^2), variances and scales U(0.5, 1.5) (U(0.1, 0.4) for the last scale of a residual
    branch), shifts N(0, 0.1^2). Returns model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                w.copy_(torch.randn(w.shape, generator=g) * (2.0 / max(w[0].numel(), 1)) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))
        # the last BN of a residual branch (the one zero_init_last zeroes) at U(0.1, 0.4): each branch still
        # counts, and the sum over dozens of blocks stays of order one instead of doubling per block
        for m in model.modules():
            if hasattr(m, "zero_init_last"):
                bns = [b for b in m.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm) and b.affine]
                m.zero_init_last()
                for b in bns:
                    if not b.weight.any():
                        b.weight.copy_(0.1 + 0.3 * torch.rand(b.num_features, generator=g))
    return model


def compare(expected: Sequence[torch.Tensor], got: Sequence[Any], names: Sequence[str], batch: int, height: int,
            width: int) -> Check:
    """The check of one input: largest absolute and relative difference over the outputs, argmax of logits."""
    if len(got) != len(expected):
        raise ExportError(f"check: the exported file returns {len(got)} outputs, PyTorch {len(expected)}")
    worst, rel, agree, rows = 0.0, 0.0, None, 0
    for name, e, g in zip(names, expected, got):
        g = torch.as_tensor(g).float().cpu()
        e = e.float().cpu()
        if tuple(g.shape) != tuple(e.shape):
            raise ExportError(f"check: output {name} has shape {tuple(g.shape)} in the exported file, "
                              f"{tuple(e.shape)} in PyTorch")
        if not e.numel():
            continue
        if not torch.isfinite(g).all():
            return Check(batch, height, width, math.inf, math.inf, 0 if e.ndim == 2 else None, e.shape[0])
        diff = float((g - e).abs().max())
        scale = float(e.abs().max())
        worst = max(worst, diff)
        rel = max(rel, diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf))
        if name == "logits" and e.ndim == 2 and e.shape[1] > 1:
            # a row agrees when the exported argmax is PyTorch's, or ties with it within the tolerance
            top = e.max(dim=1).values
            at = e.gather(1, g.argmax(dim=1, keepdim=True)).squeeze(1)
            agree = int((at >= top - 2 * RTOL * max(scale, 1e-12)).sum())
            rows = e.shape[0]
    return Check(batch, height, width, worst, rel, agree, rows)


def _require_ok(checks: Sequence[Check], fmt: str) -> None:
    bad = [c for c in checks if not c.ok]
    if bad:
        c = bad[0]
        raise ExportError(f"check: the {fmt} file differs from PyTorch at input {c.batch}x{c.height}x{c.width}: "
                          f"{c.describe()}; nothing was written")


# ---------------------------------------------------------------------------------------------- ONNX

def _reference(model: nn.Module, resolution: int | None, in_chans: int | None, dynamic_hw: bool):
    """What an export is traced with and checked against: input side and channels, the model's device, the
    tracing example, the check inputs, the output names and the model's outputs on those inputs (eval mode)."""
    resolution, in_chans = _model_input(model, resolution, in_chans)
    device = _device(model)
    inputs = check_inputs(in_chans, resolution, dynamic_hw)
    with _Eval(model):
        example = torch.randn(2, in_chans, resolution, resolution, generator=torch.Generator().manual_seed(1))
        names = output_names(model, model(example.to(device)))
        expected = [[t.cpu() for t in _outputs(model(x.to(device)))] for x in inputs]
    return resolution, in_chans, device, example, inputs, names, expected


def export_onnx(model: nn.Module, path: str | os.PathLike, resolution: int | None = None, *,
                dynamic_hw: bool = False, opset: int = DEFAULT_OPSET, in_chans: int | None = None,
                force: bool = False, verify: bool = True,
                log: Callable[[str], None] | None = None) -> ExportResult:
    """Write model as an ONNX file with a dynamic batch axis (and dynamic H, W with dynamic_hw).

    resolution: side of the example input (default: the spec's). The file is checked with
    ``onnx.checker`` and, when onnxruntime is installed and verify is set, run against PyTorch (see the
    module docstring); it is written only if the check passes. log(text) receives a status line per phase.
    """
    say = log or (lambda text: None)
    try:
        import onnx
    except ImportError:
        raise ExportError(EXPORT_MISSING) from None
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in OPSETS:
        raise ExportError(f"opset: expected an integer in {OPSETS.start}..{OPSETS.stop - 1}, got {opset!r}")
    dest = check_path(path, force)
    say(f"{dest}: running the model in PyTorch on the check inputs")
    resolution, in_chans, device, example, inputs, names, expected = _reference(model, resolution, in_chans,
                                                                                 dynamic_hw)

    axes: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch", **({2: "height", 3: "width"} if dynamic_hw else {})}}
    for name in names:
        axes[name] = {0: "batch"}
        if dynamic_hw and name.startswith("level"):
            axes[name].update({2: f"{name}_height", 3: f"{name}_width"})

    def write(tmp: str) -> None:
        say(f"{dest}: exporting (ONNX opset {opset}, TorchScript-based exporter)")
        with _Eval(model):
            try:
                torch.onnx.export(model, (example.to(device),), tmp, dynamo=False, input_names=[INPUT_NAME],
                                  output_names=names, dynamic_axes=axes, opset_version=opset,
                                  do_constant_folding=True)
            except (RuntimeError, torch.onnx.errors.OnnxExporterError) as e:
                raise ExportError(f"onnx: the exporter failed: {' '.join(str(e).split())[:300]}") from None
        try:
            onnx.checker.check_model(tmp)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"onnx: the exported file is not valid ONNX: {' '.join(str(e).split())[:300]}") from None

    def check(tmp: str) -> tuple[str, tuple[Check, ...]]:
        if not verify:
            return "not requested (verify=False)", ()
        try:
            import onnxruntime as ort
        except ImportError:
            return ORT_MISSING, ()
        checks = []
        say(f"{dest}: checking with onnxruntime {ort.__version__} on {len(inputs)} inputs")
        try:
            session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
            runs = [session.run(names, {INPUT_NAME: x.numpy()}) for x in inputs]
        except Exception as e:  # onnxruntime raises its own exception types
            raise ExportError(f"check: onnxruntime cannot run the exported file: "
                              f"{' '.join(str(e).split())[:300]}; nothing was written") from None
        for x, e, got in zip(inputs, expected, runs):
            checks.append(compare(e, got, names, x.shape[0], x.shape[2], x.shape[3]))
        _require_ok(checks, "ONNX")
        return f"onnxruntime {ort.__version__}", tuple(checks)

    checker, checks = _write_atomic(dest, write, check)
    return ExportResult(str(dest), "onnx", INPUT_NAME, tuple(names), in_chans, resolution, dynamic_hw, opset,
                        checker, checks)


# ---------------------------------------------------------------------------------------------- TorchScript

def export_torchscript(model: nn.Module, path: str | os.PathLike, resolution: int | None = None, *,
                       in_chans: int | None = None, force: bool = False,
                       log: Callable[[str], None] | None = None) -> ExportResult:
    """Write ``torch.jit.trace(model)`` (eval mode) with ``torch.jit.save``; the saved file is loaded back
    with ``torch.jit.load`` and must equal the model at batch 1 and 3 before it is published. The traced
    graph works at any batch size; other input sides are not checked (a trace records one forward).
    log(text) receives a status line per phase."""
    say = log or (lambda text: None)
    dest = check_path(path, force)
    say(f"{dest}: running the model in PyTorch on the check inputs")
    resolution, in_chans, device, example, inputs, names, expected = _reference(model, resolution, in_chans, False)

    def write(tmp: str) -> None:
        say(f"{dest}: tracing (torch.jit.trace) and saving")
        with _Eval(model):
            try:
                traced = torch.jit.trace(model, example.to(device), strict=False, check_trace=False)
            except RuntimeError as e:
                raise ExportError(f"torchscript: tracing failed: {' '.join(str(e).split())[:300]}") from None
            torch.jit.save(traced, tmp)

    def check(tmp: str) -> tuple[Check, ...]:
        say(f"{dest}: checking with torch.jit.load on {len(inputs)} inputs")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(tmp, map_location=device)
            checks = tuple(compare(e, _outputs(loaded(x.to(device))), names, x.shape[0], x.shape[2], x.shape[3])
                           for x, e in zip(inputs, expected))
        _require_ok(checks, "TorchScript")
        return checks

    checks = _write_atomic(dest, write, check)
    return ExportResult(str(dest), "torchscript", INPUT_NAME, tuple(names), in_chans, resolution, False, None,
                        "torch.jit.load", checks)


__all__ = ["export_onnx", "export_torchscript", "check_path", "check_inputs", "output_names", "ExportResult",
           "Check", "ExportError", "RTOL", "DEFAULT_OPSET", "OPSETS", "randomize_", "compare"]
