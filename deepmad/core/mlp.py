"""MLPs designed by the theory of the paper's Section 3: entropy (Theorem 1, Eq. 1), effectiveness (Eq. 2-3).

An L-layer MLP maps w_1 = inputs through hidden widths w_2..w_L to w_{L+1} = outputs; layer i is a linear map
(weights w_i·w_{i+1}, plus w_{i+1} biases) followed by the activation (none after the last). Its entropy is
H = w_{L+1} · Σ_{i=1..L} log w_i (Eq. 1 as restored in deepmad-math.md §2: output dimension times the log
variance), its effectiveness ρ = L / w̄ with w̄ = exp(Σ log w_i / L) (Eq. 2 with Prop. 1's geometric mean).

Spec file (``MLPSpec``; YAML or JSON, versioned like the CNN spec; validation names the field)::

    deepmad_mlp: 1
    inputs: 784
    outputs: 10
    hidden: [120, 120]   # widths of the hidden layers: L = len(hidden) + 1 linear layers
    act: relu            # relu | relu6 | silu | gelu | tanh (no effect on counts)
    bias: true
    name: my-mlp

Design (``MLPProblem``, ``solve``): maximize H subject to params <= budget and ρ <= ρ0, over the MLPs of
Section 3.2's family: L linear layers (1..max_depth) whose hidden layers share one width w (multiples of
``step`` up to ``max_width``). Exact by enumeration over depth with a closed-form inner solve: for a fixed L,
H and the params are both increasing in w, so the best width is the largest that fits the params budget (a
root of the quadratic params(w) = budget, then checked on the grid); it is feasible iff its ρ <= ρ0 (ρ falls
as w grows, so no narrower width can meet ρ0 where the widest cannot). Every depth is scored, so the optimum is
proven: gap 0. Why not free per-layer widths: that program's optimum alternates narrow and wide layers (for
784 -> 10 at 1 M params, 24, 584, 32, 456, ... measured by a Lagrangian dynamic program), because the params
see only the products w_i·w_{i+1} while H sees Σ log w_i, so uniform and alternating widths with the same
products tie on everything but the biases; the uniform family is the paper's own (Sec. 3.2) and avoids such
degenerate designs. ``analyze`` scores any MLP, per-layer widths included.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .spec import SpecError, _yaml_loader, read_text, write_atomic

MLP_VERSION = 1
MLP_ACTIVATIONS = ("relu", "relu6", "silu", "gelu", "tanh")


@dataclass(frozen=True)
class MLPSpec:
    inputs: int  # w_1: input dimension
    outputs: int  # w_{L+1}: output dimension
    hidden: tuple[int, ...] = ()  # w_2..w_L: hidden widths (L = len(hidden) + 1 linear layers)
    act: str = "relu"
    bias: bool = True  # every linear layer has a bias
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        validate(self)

    @property
    def depth(self) -> int:
        """L: linear layers."""
        return len(self.hidden) + 1

    @property
    def widths(self) -> tuple[int, ...]:
        """w_1..w_{L+1}: inputs, hidden widths, outputs."""
        return (self.inputs, *self.hidden, self.outputs)


def _int(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where}: expected an integer >= 1, got {value!r}")


def validate(spec: MLPSpec) -> None:
    """Raise SpecError naming the first field that cannot describe an MLP."""
    _int(spec.inputs, "inputs")
    _int(spec.outputs, "outputs")
    if not isinstance(spec.hidden, tuple):
        raise SpecError(f"hidden: expected a list of widths, got {spec.hidden!r}")
    for i, w in enumerate(spec.hidden):
        _int(w, f"hidden[{i}]")
    if spec.act not in MLP_ACTIVATIONS:
        raise SpecError(f"act: expected one of {', '.join(MLP_ACTIVATIONS)}, got {spec.act!r}")
    if not isinstance(spec.bias, bool):
        raise SpecError(f"bias: expected true or false, got {spec.bias!r}")
    if not isinstance(spec.name, str):
        raise SpecError(f"name: expected text, got {spec.name!r}")


# ---------------------------------------------------------------------------------------------- files

def to_dict(spec: MLPSpec) -> dict[str, Any]:
    """The file format: every field present."""
    return {"deepmad_mlp": MLP_VERSION, "inputs": spec.inputs, "outputs": spec.outputs,
            "hidden": list(spec.hidden), "act": spec.act, "bias": spec.bias, "name": spec.name}


def from_dict(data: Any) -> MLPSpec:
    """Build and validate an MLPSpec from the file format."""
    if not isinstance(data, dict):
        raise SpecError(f"mlp spec: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    version = data.pop("deepmad_mlp", None)
    if isinstance(version, bool) or version != MLP_VERSION:
        raise SpecError(f"deepmad_mlp: this version reads MLP spec version {MLP_VERSION}, got {version!r}")
    known = {f.name for f in fields(MLPSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(f"mlp spec: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    missing = [f.name for f in fields(MLPSpec) if f.name not in data and f.default is MISSING]
    if missing:
        raise SpecError(f"{missing[0]}: missing (an MLP spec needs inputs and outputs)")
    if "hidden" in data and not isinstance(data["hidden"], list):
        raise SpecError(f"hidden: expected a list of widths, got {type(data['hidden']).__name__}")
    return MLPSpec(**data)


def dumps(spec: MLPSpec, fmt: str = "yaml") -> str:
    d = to_dict(spec)
    if fmt == "json":
        return json.dumps(d, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=110)


def save(spec: MLPSpec, path) -> None:
    """Write the spec atomically, as JSON for .json paths and YAML otherwise."""
    write_atomic(path, dumps(spec, "json" if Path(path).suffix.lower() == ".json" else "yaml"))


def read_file(path) -> Any:
    """A spec file's data (a CNN Spec or an MLPSpec, told apart by ``deepmad_mlp``); SpecError names the file."""
    from . import spec as cnn

    p = Path(path)
    text = read_text(p, SpecError)
    fmt = "json" if p.suffix.lower() == ".json" else "yaml"
    try:
        import yaml

        data = json.loads(text) if fmt == "json" else yaml.load(text, Loader=_yaml_loader())
    except Exception as e:
        raise SpecError(f"{p}: not a valid {fmt.upper()} spec: {str(e).splitlines()[0]}") from None
    try:
        if isinstance(data, dict) and "deepmad_mlp" in data:
            return from_dict(data)
        return cnn.from_dict(data)
    except SpecError as e:
        raise SpecError(f"{p}: {e}") from None


# ---------------------------------------------------------------------------------------------- counts, theory

def params(spec: MLPSpec) -> int:
    """Learnable parameters: Σ_i w_i·w_{i+1} (+ w_{i+1} biases)."""
    w = spec.widths
    return sum(a * b + (b if spec.bias else 0) for a, b in zip(w[:-1], w[1:]))


def macs(spec: MLPSpec) -> int:
    """Multiply-accumulates of one input: Σ_i w_i·w_{i+1}."""
    w = spec.widths
    return sum(a * b for a, b in zip(w[:-1], w[1:]))


def entropy(widths) -> float:
    """Eq. 1 (restored): H = w_{L+1} · Σ_{i=1..L} log w_i for widths w_1..w_{L+1}."""
    return widths[-1] * sum(math.log(w) for w in widths[:-1])


def rho(widths) -> float:
    """Eq. 2-3: ρ = L / exp(Σ_{i=1..L} log w_i / L), Prop. 1's geometric-mean width."""
    L = len(widths) - 1
    return L / math.exp(sum(math.log(w) for w in widths[:-1]) / L)


@dataclass(frozen=True)
class Layer:
    index: int  # 1..L
    inputs: int  # w_i
    outputs: int  # w_{i+1}
    params: int
    entropy: float  # Eq. 1 on the first i layers: w_{i+1} · Σ_{k<=i} log w_k
    rho: float  # Eq. 2-3 on the first i layers

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class MLPAnalysis:
    name: str
    spec: MLPSpec
    params: int
    flops: int  # MACs of one input
    entropy: float  # Eq. 1
    rho: float  # Eq. 2-3
    layers: int  # L
    rows: tuple[Layer, ...]

    @property
    def objective(self) -> float:
        """What the MLP design maximizes: the entropy."""
        return self.entropy

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": "mlp", "params": self.params, "flops": self.flops,
                "entropy": self.entropy, "rho": self.rho, "layers": self.layers,
                "rows": [r.to_dict() for r in self.rows], "spec": to_dict(self.spec)}


def analyze(spec: MLPSpec) -> MLPAnalysis:
    """Counts, entropy and ρ of an MLP, in total and for every prefix of its layers."""
    w = spec.widths
    rows = []
    for i in range(1, spec.depth + 1):
        rows.append(Layer(i, w[i - 1], w[i], w[i - 1] * w[i] + (w[i] if spec.bias else 0),
                          entropy(w[:i + 1]), rho(w[:i + 1])))
    return MLPAnalysis(spec.name, spec, params(spec), macs(spec), entropy(w), rho(w), spec.depth, tuple(rows))


# ---------------------------------------------------------------------------------------------- design

@dataclass(frozen=True)
class MLPProblem:
    inputs: int
    outputs: int
    params: float  # budget: learnable parameters
    rho0: float  # effectiveness bound
    max_depth: int = 256  # linear layers: 1..max_depth
    max_width: int = 4096  # hidden width: step..max_width, multiples of step
    step: int = 8
    bias: bool = True
    act: str = "relu"
    name: str = "deepmad-mlp"

    def __post_init__(self) -> None:
        for f in ("inputs", "outputs", "max_depth", "max_width", "step"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{f}: expected an integer >= 1, got {v!r}")
        for f in ("params", "rho0"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{f}: expected a positive number, got {v!r}")
        if self.max_width < self.step:
            raise ValueError(f"max_width: expected >= step {self.step}, got {self.max_width}")
        if self.act not in MLP_ACTIVATIONS:
            raise ValueError(f"act: expected one of {', '.join(MLP_ACTIVATIONS)}, got {self.act!r}")


@dataclass(frozen=True)
class MLPDesign:
    problem: MLPProblem
    spec: MLPSpec
    objective: float  # H (Eq. 1)
    bound: float  # proven upper bound on H over the space (every depth scored: the optimum itself)
    gap: float  # 0: proven optimal
    seconds: float
    solver: str  # "enumeration"
    evaluated: int  # depths scored


def widest(p: MLPProblem, L: int) -> int | None:
    """The largest hidden width (grid multiple of step, <= max_width) whose depth-L MLP fits the params budget,
    None if none does: the positive root of the quadratic params(w) = budget, rounded down to the grid, then
    moved to the grid point the exact integer count accepts."""
    b = 1 if p.bias else 0
    a2 = L - 2  # params(w) = a2·w² + a1·w + a0
    a1 = p.inputs + b + (L - 2) * b + p.outputs
    a0 = b * p.outputs - p.params
    if a2 == 0:
        root = -a0 / a1
    else:
        root = (-a1 + math.sqrt(a1 * a1 - 4 * a2 * a0)) / (2 * a2) if a1 * a1 - 4 * a2 * a0 >= 0 else -1.0
    w = min(int(math.floor(root / p.step + 1e-9)) * p.step, p.max_width // p.step * p.step)

    def fits(v: int) -> bool:
        return v >= p.step and mlp_params(p, L, v) <= p.params

    while w >= p.step and not fits(w):  # rounding of the root: step down (at most once in practice)
        w -= p.step
    while w + p.step <= p.max_width and fits(w + p.step):
        w += p.step
    return w if fits(w) else None


def mlp_params(p: MLPProblem, L: int, w: int) -> int:
    """Exact integer params of the depth-L MLP of hidden width w under problem p."""
    return params(MLPSpec(p.inputs, p.outputs, (w,) * (L - 1), bias=p.bias)) if L > 1 else \
        p.inputs * p.outputs + (p.outputs if p.bias else 0)


def _score(p: MLPProblem, L: int, w: int | None) -> tuple[float, float]:
    """(S = Σ log w_i, ρ) of the depth-L MLP of hidden width w."""
    S = math.log(p.inputs) + (L - 1) * math.log(w) if L > 1 else math.log(p.inputs)
    return S, L / math.exp(S / L)


def smallest_params(p: MLPProblem) -> int:
    """The fewest params of any MLP of the space (each depth at the narrowest width)."""
    return min(mlp_params(p, L, p.step) for L in range(1, p.max_depth + 1))


def solve(p: MLPProblem) -> MLPDesign:
    """The MLP of the space with the largest entropy under the params budget and ρ0 (module docstring): exact.

    Raises ``result.Infeasible`` with what the space needs when no MLP meets the budgets."""
    from .result import Infeasible

    t0 = time.perf_counter()
    best: tuple[float, int, int] | None = None  # (S, L, w)
    least_rho = math.inf
    for L in range(1, p.max_depth + 1):
        if L == 1:
            if mlp_params(p, 1, 0) > p.params:
                continue
            w = 0
        else:
            w = widest(p, L)
            if w is None:
                continue
        S, r = _score(p, L, w)
        least_rho = min(least_rho, r)
        if r <= p.rho0 and (best is None or S > best[0]):
            best = (S, L, w)
    if best is None:
        need = smallest_params(p)
        if need > p.params:
            raise Infeasible(f"params budget {p.params:.4g} is below the {need:,} params of the smallest MLP "
                             f"{p.inputs} -> {p.outputs} of this space (one linear layer, or hidden width {p.step})")
        raise Infeasible(f"no MLP {p.inputs} -> {p.outputs} within {p.params:.4g} params meets rho <= {p.rho0:g} "
                         f"(the lowest rho within the budget is {least_rho:.3g}); raise rho0 or the params budget")
    S, L, w = best
    spec = MLPSpec(p.inputs, p.outputs, (w,) * (L - 1), act=p.act, bias=p.bias, name=p.name)
    H = p.outputs * S
    return MLPDesign(p, spec, H, H, 0.0, time.perf_counter() - t0, "enumeration", p.max_depth)


__all__ = ["MLPSpec", "MLPProblem", "MLPDesign", "MLPAnalysis", "Layer", "analyze", "solve", "params", "macs",
           "entropy", "rho", "read_file", "save", "dumps", "to_dict", "from_dict", "widest",
           "smallest_params", "MLP_VERSION"]
