"""Export a built model to ONNX or TorchScript, checked against PyTorch before the file is published.

``export_onnx`` uses PyTorch's TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``): the
newer ``torch.export`` exporter needs ``onnxscript``, which ``deepmad[export]`` does not install. The batch
axis is always dynamic; with ``dynamic_hw`` the height and width are too. A ``features_only`` backbone has one
named output per feature level (``level1``, ``level2``, ...: the level numbers of ``model.feature_info``).

Every file is written to a temporary file in the destination directory, checked, and only then moved into
place with ``os.replace``: a failed export or a failed check leaves no file behind, and an existing file is
kept unless ``force=True``. The check runs the exported file (onnxruntime for ONNX, when installed;
``torch.jit.load`` for TorchScript) on fixed random inputs at batch 1 and 3 (and, with ``dynamic_hw``, at a
second, non-square size) and requires every output to equal PyTorch's within ``ATOL``.
"""
from __future__ import annotations

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
ATOL = 1e-4  # largest |exported - PyTorch| accepted, element-wise
INPUT_NAME = "input"


class ExportError(ValueError):
    """An export that cannot be done (bad path, missing package, unsupported model) or failed its check."""


@dataclass(frozen=True)
class Check:
    """One comparison of the exported file against PyTorch on a random input of shape (batch, C, H, W)."""

    batch: int
    height: int
    width: int
    max_abs_diff: float  # over all outputs

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= ATOL


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
                         f"max |diff| {c.max_abs_diff:.2e} <= {ATOL:g}: {'ok' if c.ok else 'FAILED'}")
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


def _max_diff(expected: Sequence[torch.Tensor], got: Sequence[Any], names: Sequence[str]) -> float:
    if len(got) != len(expected):
        raise ExportError(f"check: the exported file returns {len(got)} outputs, PyTorch {len(expected)}")
    worst = 0.0
    for name, e, g in zip(names, expected, got):
        g = torch.as_tensor(g)
        if tuple(g.shape) != tuple(e.shape):
            raise ExportError(f"check: output {name} has shape {tuple(g.shape)} in the exported file, "
                              f"{tuple(e.shape)} in PyTorch")
        worst = max(worst, float((g.float().cpu() - e.float().cpu()).abs().max()) if e.numel() else 0.0)
    return worst


def _require_ok(checks: Sequence[Check], fmt: str) -> None:
    bad = [c for c in checks if not c.ok]
    if bad:
        c = bad[0]
        raise ExportError(f"check: the {fmt} file differs from PyTorch by {c.max_abs_diff:.3g} > {ATOL:g} at "
                          f"input {c.batch}x{c.height}x{c.width}; nothing was written")


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
                force: bool = False, verify: bool = True) -> ExportResult:
    """Write model as an ONNX file with a dynamic batch axis (and dynamic H, W with dynamic_hw).

    resolution: side of the example input (default: the spec's). The file is checked with
    ``onnx.checker`` and, when onnxruntime is installed and verify is set, run against PyTorch (see the
    module docstring); it is written only if the check passes.
    """
    try:
        import onnx
    except ImportError:
        raise ExportError(EXPORT_MISSING) from None
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in OPSETS:
        raise ExportError(f"opset: expected an integer in {OPSETS.start}..{OPSETS.stop - 1}, got {opset!r}")
    dest = check_path(path, force)
    resolution, in_chans, device, example, inputs, names, expected = _reference(model, resolution, in_chans,
                                                                                 dynamic_hw)

    axes: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch", **({2: "height", 3: "width"} if dynamic_hw else {})}}
    for name in names:
        axes[name] = {0: "batch"}
        if dynamic_hw and name.startswith("level"):
            axes[name].update({2: f"{name}_height", 3: f"{name}_width"})

    def write(tmp: str) -> None:
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
        try:
            session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
            runs = [session.run(names, {INPUT_NAME: x.numpy()}) for x in inputs]
        except Exception as e:  # onnxruntime raises its own exception types
            raise ExportError(f"check: onnxruntime cannot run the exported file: "
                              f"{' '.join(str(e).split())[:300]}; nothing was written") from None
        for x, e, got in zip(inputs, expected, runs):
            checks.append(Check(x.shape[0], x.shape[2], x.shape[3], _max_diff(e, got, names)))
        _require_ok(checks, "ONNX")
        return f"onnxruntime {ort.__version__}", tuple(checks)

    checker, checks = _write_atomic(dest, write, check)
    return ExportResult(str(dest), "onnx", INPUT_NAME, tuple(names), in_chans, resolution, dynamic_hw, opset,
                        checker, checks)


# ---------------------------------------------------------------------------------------------- TorchScript

def export_torchscript(model: nn.Module, path: str | os.PathLike, resolution: int | None = None, *,
                       in_chans: int | None = None, force: bool = False) -> ExportResult:
    """Write ``torch.jit.trace(model)`` (eval mode) with ``torch.jit.save``; the saved file is loaded back
    with ``torch.jit.load`` and must equal the model at batch 1 and 3 before it is published. The traced
    graph works at any batch size; other input sides are not checked (a trace records one forward)."""
    dest = check_path(path, force)
    resolution, in_chans, device, example, inputs, names, expected = _reference(model, resolution, in_chans, False)

    def write(tmp: str) -> None:
        with _Eval(model):
            try:
                traced = torch.jit.trace(model, example.to(device), strict=False, check_trace=False)
            except RuntimeError as e:
                raise ExportError(f"torchscript: tracing failed: {' '.join(str(e).split())[:300]}") from None
            torch.jit.save(traced, tmp)

    def check(tmp: str) -> tuple[Check, ...]:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(tmp, map_location=device)
            checks = tuple(Check(x.shape[0], x.shape[2], x.shape[3],
                                 _max_diff(e, _outputs(loaded(x.to(device))), names))
                           for x, e in zip(inputs, expected))
        _require_ok(checks, "TorchScript")
        return checks

    checks = _write_atomic(dest, write, check)
    return ExportResult(str(dest), "torchscript", INPUT_NAME, tuple(names), in_chans, resolution, False, None,
                        "torch.jit.load", checks)


__all__ = ["export_onnx", "export_torchscript", "check_path", "check_inputs", "output_names", "ExportResult",
           "Check", "ExportError", "ATOL", "DEFAULT_OPSET", "OPSETS"]
