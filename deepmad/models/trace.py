"""Entropy and effectiveness of any ``nn.Module``, read off one forward pass (``deepmad analyze --torch``).

How the network is seen. One forward pass (eval mode, ``no_grad``, batch 1, a fixed random input) runs under
a ``torch.overrides.TorchFunctionMode`` that records every torch operation with the tensors it reads and
writes, tracked by object identity (every tensor is kept alive during the pass, so no identity is reused; an
in-place operation makes a new version of its tensor). Forward hooks on ``nn.Conv2d`` / ``nn.Linear`` name
the layer behind each ``conv2d`` / ``linear`` operation (a weight that is a parameter of the model names it
too). This is the real dataflow of any eager forward: residual additions, gating products, pooling, views and
in-place activations included, data-dependent control flow or Python containers no obstacle. Why not the
alternatives: ``torch.fx`` needs a symbolically traceable forward (no data-dependent branches), which users'
models often are not; hooks on the convolutions alone see the layers but not how their outputs are joined,
which is what tells the main path from a shortcut. Module names only name layers in the report, never decide
anything. TorchScript modules run outside Python and are refused: trace the eager module.

What is counted (deepmad-math.md §3: "every convolution on the main path, the stem and a final 1x1 head conv
included; shortcut projections, squeeze-excitation and the classifier not counted"):

1. Squeeze-excitation: a product ``x * s`` of two input-dependent tensors where ``s`` broadcasts over ``x``
   (fewer elements, or an expanded view). Every conv / linear layer ``s`` depends on and ``x`` does not is SE;
   the edge ``s -> product`` is then ignored, so the main path never runs through the gate.
2. Main path: the path from the input to an output through the most conv / linear layers (ties: the most
   operations, then the first recorded). A layer off it is skipped: on a branch that leaves the main path and
   rejoins it ("shortcut" when all the branch's layers are 1x1, e.g. torchvision's ``downsample``; "parallel
   branch" otherwise), or on one that does not rejoin it ("off-path").
3. Classifier: the main path from the first global reduction (pooling, mean, flatten) after its last spatial
   map on (a conv after the global pool, as in MobileNet-V3's head, is classifier too).
4. Units (the ``deepmad.core.blocks.Unit`` the theory reads): main-path layers that one branch bypasses (a residual
   block, from its fork to its join) form one unit; the first layer (the stem) is a unit of its own. The other
   layers run in plain chains: if the network has linear bottlenecks (two consecutive main-path layers joined
   with no activation between them, only normalization, additions, scaling or views, as after MobileNet-V2's
   projection conv), a chain is cut into units at them, else each of its layers is a unit (VGG). A unit's
   output side and channels are those of its last layer, so a down-sampling block (1x1 expand or reduce, then
   the strided conv) belongs wholly to its output scale, as in a spec.
5. Stages (rows of the table, depths of the penalty): after the stem, a unit starts a new stage unless it has
   stride 1, keeps the side and the channels of the unit before, and repeats its layers (kernel and
   depthwise-ness of the stage's first unit; every shape of the unit before). A last unit that is one 1x1
   stride-1 conv is the head. Two consecutive stages of identical blocks read as one.

Entropy, ρ and the scales are then computed by ``deepmad.core.theory`` from these units, exactly as
``deepmad.api.analyze_spec`` does from a spec's (for an h x w map, r² = h·w). Params are ``sum(p.numel())``
over the module; MACs those of every conv2d / linear operation, counted or skipped (``deepmad.core.blocks``
convention: c_out·(c_in/g)·kh·kw·h·w; in·out per position for a linear layer). Only Conv2d and Linear
operations are layers (``F.conv2d`` / ``F.linear`` calls included); other ops (conv1d/3d, transposed convs,
matmul) are neither counted nor cost. A model built from a spec by ``deepmad.models`` traces to the spec's
numbers (tests/models/test_trace.py).
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..core import theory
from ..core.analysis import Row, parse_alpha, parse_beta
from ..core.blocks import Unit
from ..core.spec import MAX_RESOLUTION
from ..core.theory import BETA


class TraceError(ValueError):
    """A model that cannot be traced (bad arguments, failing forward, nothing to count)."""


# ---------------------------------------------------------------------------------------------- records

ROLES = ("main", "shortcut", "se", "classifier", "branch", "off-path")


@dataclass(frozen=True)
class Layer:
    """One conv2d / linear operation of the forward pass, and what the analysis made of it."""

    name: str  # its module's name; for a functional call its weight's name, or '<op>#<node>'
    kind: str  # conv | linear
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    groups: int
    in_size: tuple[int, int]  # input height, width (linear: positions it is applied at)
    out_size: tuple[int, int]  # output height, width
    params: int  # weight + bias elements
    macs: int  # multiply-accumulates at batch 1
    role: str  # one of ROLES; only 'main' layers are counted
    reason: str  # why it was skipped ('' for main-path layers)
    unit: int = -1  # index of its unit (main-path layers)

    @property
    def width(self) -> float:
        """Fan-in c_in·k²/g (the paper's width, Sec. 4.1); c_in for a linear layer."""
        return self.c_in * self.kernel[0] * self.kernel[1] / self.groups

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(kernel=list(self.kernel), stride=list(self.stride), in_size=list(self.in_size),
                 out_size=list(self.out_size), width=self.width)
        return d


@dataclass(frozen=True)
class TraceAnalysis:
    """``deepmad.api.Analysis`` of a traced module: the same summary and rows (``deepmad.report.table`` and
    ``summary`` print it), plus the layers counted and the layers skipped with the reason."""

    name: str
    input: tuple[int, int]  # height, width traced at
    in_chans: int
    params: int  # sum(p.numel()) of the module (classifier layers left out when classifier=False)
    flops: int  # multiply-accumulates of every conv2d / linear operation (classifier as for params)
    rho: float
    rho_max: float
    entropy: float
    penalty: float
    objective: float
    layers: int  # main-path layers counted
    alpha: tuple[float, ...]
    beta: float
    classifier: bool
    stem: Row
    stages: tuple[Row, ...]
    head: Row | None
    units: tuple[Unit, ...]
    counted: tuple[Layer, ...]
    skipped: tuple[Layer, ...]

    @property
    def rows(self) -> tuple[Row, ...]:
        return (self.stem, *self.stages) + ((self.head,) if self.head else ())

    @property
    def scales(self) -> int:
        return len(theory.scales(self.units))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the keys of ``Analysis.to_dict`` plus input, counted and skipped layers."""
        return {"name": self.name, "input": list(self.input), "in_chans": self.in_chans, "params": self.params,
                "flops": self.flops, "rho": self.rho, "rho_max": self.rho_max, "entropy": self.entropy,
                "penalty": self.penalty, "objective": self.objective, "layers": self.layers,
                "alpha": list(self.alpha), "beta": self.beta, "classifier": self.classifier,
                "stem": self.stem.to_dict(), "stages": [r.to_dict() for r in self.stages],
                "head": self.head.to_dict() if self.head else None,
                "counted": [x.to_dict() for x in self.counted], "skipped": [x.to_dict() for x in self.skipped]}


# ---------------------------------------------------------------------------------------------- recording

# Operations that keep a main-path connection linear (no activation): normalization, views, padding,
# dropout, average pooling; additions and scaling are handled by operand count (see _Graph.linear).
_LINEAR = frozenset("""batch_norm instance_norm layer_norm group_norm local_response_norm dropout dropout1d
dropout2d dropout3d alpha_dropout feature_alpha_dropout feature_dropout identity view view_as reshape reshape_as
flatten unflatten permute contiguous transpose t clone to type float half double pad constant_pad_nd getitem
squeeze unsqueeze expand expand_as broadcast_to narrow detach avg_pool1d avg_pool2d avg_pool3d
adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d mean sum neg pos cat concat concatenate stack
add sub data T mT setitem copy""".split())
_REDUCE = ("pool", "mean", "sum", "amax", "amin", "max", "min", "flatten", "view", "reshape", "squeeze")
_ALIASES = {"iadd": "add", "radd": "add", "isub": "sub", "rsub": "sub", "imul": "mul", "rmul": "mul",
            "multiply": "mul", "truediv": "div", "itruediv": "div", "rtruediv": "div", "true_divide": "div",
            "divide": "div", "idiv": "div", "subtract": "sub"}


def _opname(func: Any) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":  # a property such as Tensor.data
        name = getattr(getattr(func, "__self__", None), "__name__", "get")
    base = name.strip("_")
    return _ALIASES.get(base, base)


def _tensors(obj: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 4 and isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v, depth + 1)
    elif depth < 4 and isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v, depth + 1)


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


@dataclass
class _Operand:
    parent: int | None  # node producing it; None for parameters, buffers, constants
    numel: int
    broadcast: bool  # an expanded view (a zero stride)


@dataclass
class _Node:
    index: int
    op: str
    operands: list[_Operand]
    out_shape: tuple[int, ...]
    layer: dict | None = None  # conv2d / linear: what Layer needs

    @property
    def parents(self) -> list[int]:
        return [o.parent for o in self.operands if o.parent is not None]


class _Recorder(TorchFunctionMode):
    """Records the dataflow of a forward pass (see the module docstring)."""

    def __init__(self, x: torch.Tensor, names: dict[int, str], params: dict[int, str]) -> None:
        super().__init__()
        self.nodes = [_Node(0, "input", [], tuple(x.shape))]
        self.producer = {id(x): 0}
        self.keep: list[torch.Tensor] = [x]
        self.names, self.params = names, params
        self.active: list[nn.Module] = []  # Conv2d / Linear modules running now (forward hooks)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._record(func, args, kwargs, out)
        return out

    def _record(self, func, args: tuple, kwargs: dict, out: Any) -> None:
        operands = [_Operand(self.producer.get(id(t)), t.numel(),
                             t.layout == torch.strided and t.numel() > 1 and 0 in t.stride())
                    for t in _tensors((args, kwargs))]
        if not any(o.parent is not None for o in operands):
            return  # does not depend on the input: a constant as far as the analysis goes
        outs = list(_tensors(out))
        if not outs and _opname(func) == "setitem":  # x[...] = y writes a new version of x
            outs = [args[0]]
        if not outs:
            return
        node = _Node(len(self.nodes), _opname(func), operands, tuple(outs[0].shape))
        if node.op in ("conv2d", "linear"):
            node.layer = self._layer(node, args, kwargs, outs[0])
        self.nodes.append(node)
        for t in outs:
            self.producer[id(t)] = node.index
            self.keep.append(t)

    def _layer(self, node: _Node, args: tuple, kwargs: dict, out: torch.Tensor) -> dict:
        x, w, b = (_arg(args, kwargs, i, k) for i, k in enumerate(("input", "weight", "bias")))
        name = self.params.get(id(w))
        if name is None and self.active:
            name = self.names.get(id(self.active[-1]))
        name = name or f"{node.op}#{node.index}"
        params = w.numel() + (b.numel() if isinstance(b, torch.Tensor) else 0)
        ids = tuple(id(t) for t in (w, b) if isinstance(t, torch.Tensor))
        if node.op == "conv2d":
            groups = int(_arg(args, kwargs, 6, "groups", 1))
            c_out, cg, kh, kw = w.shape
            oh, ow = out.shape[-2:]
            return dict(name=name, kind="conv", c_in=cg * groups, c_out=c_out, kernel=(kh, kw),
                        stride=_pair(_arg(args, kwargs, 3, "stride", 1)), groups=groups,
                        in_size=tuple(x.shape[-2:]), out_size=(oh, ow), params=params,
                        macs=c_out * cg * kh * kw * oh * ow, ids=ids)
        c_out, c_in = w.shape
        shape = tuple(out.shape)
        size = (shape[1], shape[2]) if len(shape) == 4 else (shape[1], 1) if len(shape) == 3 else (1, 1)
        return dict(name=name, kind="linear", c_in=c_in, c_out=c_out, kernel=(1, 1), stride=(1, 1), groups=1,
                    in_size=size, out_size=size, params=params, macs=c_in * c_out * size[0] * size[1], ids=ids)


# ---------------------------------------------------------------------------------------------- analysis

def _spatial(shape: tuple[int, ...]) -> bool:
    return len(shape) >= 3 and math.prod(shape[2:]) > 1


class _Graph:
    """The recorded dataflow, with the main path, the SE gates, bypassing branches and units."""

    def __init__(self, nodes: list[_Node], outputs: list[int]) -> None:
        self.nodes = nodes
        self.dropped: set[tuple[int, int]] = set()  # (node, parent) edges of SE gates
        self.se: set[int] = set()
        self._find_gates()
        self.path = self._main_path(outputs)
        self.pos = {n: i for i, n in enumerate(self.path)}
        self.children: dict[int, list[int]] = {n.index: [] for n in nodes}
        for n in nodes:
            for p in self.parents(n.index):
                self.children[p].append(n.index)

    def parents(self, i: int) -> list[int]:
        return [p for p in self.nodes[i].parents if (i, p) not in self.dropped]

    def _ancestors(self, start: int) -> set[int]:
        seen, todo = set(), [start]
        while todo:
            i = todo.pop()
            if i not in seen:
                seen.add(i)
                todo.extend(self.nodes[i].parents)
        return seen

    def _find_gates(self) -> None:
        for n in self.nodes:
            ops = [o for o in n.operands if o.parent is not None]
            if n.op != "mul" or len(ops) != 2:
                continue
            a, b = ops
            if b.numel < a.numel or (b.broadcast and not a.broadcast):
                x, s = a, b
            elif a.numel < b.numel or (a.broadcast and not b.broadcast):
                x, s = b, a
            else:
                continue
            gate = self._ancestors(s.parent) - self._ancestors(x.parent)
            self.se |= {i for i in gate if self.nodes[i].layer is not None}
            self.dropped.add((n.index, s.parent))

    def weight(self, i: int) -> int:
        return int(self.nodes[i].layer is not None and i not in self.se)

    def _main_path(self, outputs: list[int]) -> list[int]:
        score: dict[int, tuple[int, int]] = {0: (0, 0)}
        pred: dict[int, int] = {}
        for n in self.nodes[1:]:
            best = None
            for p in self.parents(n.index):
                if p in score and (best is None or score[p] > score[best]):
                    best = p
            if best is not None:
                score[n.index] = (score[best][0] + self.weight(n.index), score[best][1] + 1)
                pred[n.index] = best
        reach = [o for o in outputs if o in score]
        end = max(reach, key=lambda o: score[o])  # the first of the best
        path = [end]
        while path[-1] != 0:
            path.append(pred[path[-1]])
        return path[::-1]

    def linear(self, i: int) -> bool:
        """Whether node i keeps a connection linear (no activation, no gate)."""
        n = self.nodes[i]
        if n.op in ("mul", "div"):
            return len(n.parents) == 1  # scaling by a constant or a parameter (layer scale)
        return n.op in _LINEAR

    def classifier_start(self) -> int:
        """Position on the main path where the classifier begins (len(path): none)."""
        last = max((k for k, i in enumerate(self.path) if _spatial(self.nodes[i].out_shape)), default=0)
        for k in range(last + 1, len(self.path)):
            n = self.nodes[self.path[k]]
            prev = self.nodes[self.path[k - 1]]
            if n.layer is None and (any(r in n.op for r in _REDUCE) or len(n.out_shape) < len(prev.out_shape)):
                return k
        return len(self.path)

    def bypasses(self) -> tuple[list[tuple[int, int]], dict[int, tuple[int, int] | None]]:
        """Merged (fork, join) position intervals of the branches that skip main-path nodes, and for every
        node off the main path the (fork, join) of its branch (None: it does not rejoin the main path)."""
        lo: dict[int, int] = {}
        for n in self.nodes:
            if n.index in self.pos:
                continue
            ps = [self.pos[p] if p in self.pos else lo.get(p) for p in self.parents(n.index)]
            ps = [p for p in ps if p is not None]
            if ps:
                lo[n.index] = min(ps)
        hi: dict[int, int] = {}
        for n in reversed(self.nodes):
            if n.index in self.pos:
                continue
            cs = [self.pos[c] if c in self.pos else hi.get(c) for c in self.children[n.index]]
            cs = [c for c in cs if c is not None]
            if cs:
                hi[n.index] = max(cs)
        spans = [(lo[i], hi[i]) for i in lo if i in hi and hi[i] > lo[i] + 1]
        for i in self.path:
            spans += [(self.pos[p], self.pos[i]) for p in self.parents(i)
                      if p in self.pos and self.pos[i] > self.pos[p] + 1]
        merged: list[list[int]] = []
        for a, b in sorted(spans):
            if merged and a < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        branch = {n.index: (lo[n.index], hi[n.index]) if n.index in lo and n.index in hi else None
                  for n in self.nodes if n.index not in self.pos}
        return [(a, b) for a, b in merged], branch


def _family(layers: list[Layer], projection: bool) -> tuple[str, int | None]:
    """Block family name and mid channels of a unit, as a spec would call it (display only)."""
    if len(layers) == 1:
        return "conv", None
    ks = [x.kernel for x in layers]
    dw = [x for x in layers if x.kind == "conv" and x.groups == x.c_in == x.c_out and x.groups > 1]
    if (len(layers) == 3 and ks[0] == ks[2] == (1, 1) and (projection or not dw)) \
            and layers[0].c_out == layers[1].c_in == layers[1].c_out:
        return "bottleneck", layers[0].c_out
    if len(dw) == 1 and len(layers) <= 3 and all(x.kernel == (1, 1) for x in layers if x is not dw[0]):
        return "mbconv", dw[0].c_out
    if len(layers) == 2 and all(k != (1, 1) for k in ks):
        return "basic", None
    return "block", None


@dataclass
class _Unit:
    layers: list[Layer]
    region: int | None  # index of the bypass interval holding it (residual), None in a plain chain
    projection: bool = False  # a 1x1 shortcut conv bypasses it

    @property
    def size(self) -> tuple[int, int]:
        return self.layers[-1].out_size

    @property
    def in_size(self) -> tuple[int, int]:
        return self.layers[0].in_size

    @property
    def channels(self) -> int:
        return self.layers[-1].c_out

    @property
    def stride(self) -> int:
        return math.prod(x.stride[0] for x in self.layers)

    @property
    def kernel(self) -> int:
        return max(x.kernel[0] for x in self.layers)

    def signature(self, strict: bool) -> tuple:
        """Every layer's shape (strict), or the spatial kernel and whether it is depthwise (a stage's first
        block differs from the others in its input channels, and an mbconv one in its expansion)."""
        if strict:
            return tuple((x.kind, x.kernel, x.groups, x.c_in, x.c_out) for x in self.layers)
        return (self.kernel, any(x.groups == x.c_in == x.c_out > 1 for x in self.layers))


class _Side(float):
    """The side r = √(h·w) of a non-square map (r² = h·w in Eq. 4), printed with one decimal; ``hw`` keeps
    the map's height and width for tables."""

    hw: tuple[int, int] = (0, 0)

    def __format__(self, spec: str) -> str:
        return float.__format__(self, spec or ".1f")

    def __str__(self) -> str:
        return format(self, ".1f")


def _side(size: tuple[int, int]) -> float | int:
    """The side r of Eq. 4 (r² = h·w); the integer side of a square map."""
    h, w = size
    if h == w:
        return h
    side = _Side(math.sqrt(h * w))
    side.hw = (h, w)
    return side


def _row(index: int, name: str, units: list[_Unit], prefix: tuple[int, float], depth: int,
         stride: int | None = None) -> Row:
    u0, u1 = units[0], units[-1]
    block, mid = _family(u0.layers, u0.projection)
    layers, logw = prefix
    r = _side(u1.size)
    sc = theory.Scale(index, r, u1.channels, layers, logw)
    return Row(index, name, block, u1.channels, mid, max(u.kernel for u in units), depth,
               u0.stride if stride is None else stride, r, layers, float(sc.entropy), float(sc.rho))


# ---------------------------------------------------------------------------------------------- trace

def _size(resolution: Any) -> tuple[int, int]:
    if isinstance(resolution, (tuple, list)) and len(resolution) == 2:
        h, w = resolution
    else:
        h = w = resolution
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise TraceError(f"resolution: expected an integer >= 1 or a (height, width) pair, got {resolution!r}")
        if v > MAX_RESOLUTION:
            raise TraceError(f"resolution: {v} is above {MAX_RESOLUTION}, the largest input side this version "
                             f"traces")
    return h, w


def _run(model: nn.Module, size: tuple[int, int], in_chans: int, name: str) -> tuple[list[_Node], list[int]]:
    """One recorded forward pass; returns the nodes and the nodes that produced the outputs."""
    names = {id(m): n for n, m in model.named_modules()}
    params: dict[int, str] = {}  # a parameter -> the name of the layer it is the weight of
    for mname, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            params.setdefault(id(p), mname if isinstance(m, (nn.Conv2d, nn.Linear)) else full)
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = first.dtype if first is not None else torch.float32
    device = first.device if first is not None else torch.device("cpu")
    x = torch.randn(1, in_chans, *size, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    modes = {m: m.training for m in model.modules()}
    rec = _Recorder(x, names, params)

    def enter(mod: nn.Module, inputs: Any) -> None:
        rec.active.append(mod)

    def leave(mod: nn.Module, inputs: Any, output: Any) -> None:
        rec.active.pop()

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    where = f"{size[0]}x{size[1]} ({in_chans} input channels, batch 1)"
    try:
        model.eval()
        with torch.no_grad(), rec:
            out = model(x)
    except Exception as e:  # the user's forward: any failure is bad input here
        msg = " ".join(str(e).split()) or "no message"
        raise TraceError(f"forward pass of {name} at {where} failed: {type(e).__name__}: {msg}") from None
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    outputs = [rec.producer[id(t)] for t in _tensors(out) if id(t) in rec.producer]
    if not outputs:
        raise TraceError(f"{name}: no output of the forward pass at {where} depends on the input")
    if not any(n.layer is not None for n in rec.nodes):
        raise TraceError(f"{name}: no Conv2d or Linear operation ran in the forward pass at {where}")
    return rec.nodes, outputs


_SE = "squeeze-excitation: applied to a globally pooled map, its output rescales a feature map"
_CLASSIFIER = "classifier: after the global pooling of the last feature map"
_OFF_PATH = "not on the main path: its branch does not rejoin the path from the input to the output"


def _roles(g: _Graph, cls_start: int, branch: dict[int, tuple[int, int] | None]) -> dict[int, tuple[str, str]]:
    """(role, reason) of every conv / linear operation."""
    by_span: dict[tuple[int, int], list[int]] = {}  # the layers of each branch that rejoins the main path
    for i, span in branch.items():
        if span is not None and g.nodes[i].layer is not None:
            by_span.setdefault(span, []).append(i)
    role: dict[int, tuple[str, str]] = {}
    for n in g.nodes:
        i = n.index
        if n.layer is None:
            continue
        if i in g.se:
            role[i] = ("se", _SE)
        elif i in g.pos:
            role[i] = ("classifier", _CLASSIFIER) if g.pos[i] >= cls_start else ("main", "")
        elif branch.get(i) is None:
            role[i] = ("off-path", _OFF_PATH)
        else:
            a, b = branch[i]
            bypassed = sum(g.weight(j) for j in g.path[a + 1:b] if g.pos[j] < cls_start)
            if all(g.nodes[j].layer["kernel"] == (1, 1) for j in by_span[a, b]):
                role[i] = ("shortcut", f"shortcut: 1x1 projection on a branch that bypasses {bypassed} "
                                       f"main-path layers")
            else:
                role[i] = ("branch", f"parallel branch: rejoins the main path, which has more layers "
                                     f"({bypassed}) over that span")
    return role


def _units(g: _Graph, main: list[int], regions: list[tuple[int, int]], layer) -> list[_Unit]:
    """Group the main-path layers into units (module docstring, point 4)."""
    def region(i: int) -> int | None:
        p = g.pos[i]
        return next((k for k, (a, b) in enumerate(regions) if a < p < b), None)

    def joined_linearly(i: int, j: int) -> bool:
        return all(g.linear(k) for k in g.path[g.pos[i] + 1:g.pos[j]])

    bottlenecks = any(joined_linearly(i, j) for i, j in zip(main, main[1:]))
    groups: list[list[int]] = []
    for k, i in enumerate(main):
        r = region(i)
        if k > 0 and region(main[k - 1]) == r and (
                r is not None or (k > 1 and bottlenecks and not joined_linearly(main[k - 1], i))):
            groups[-1].append(i)
        else:
            groups.append([i])
    return [_Unit([layer(i, u) for i in grp], region(grp[0])) for u, grp in enumerate(groups)]


def _stages(units: list[_Unit]) -> tuple[list[list[_Unit]], _Unit | None]:
    """The stages after the stem (runs of repeated units) and the head unit (module docstring, point 5)."""
    last = units[-1]
    head = last if (len(units) > 2 and len(last.layers) == 1 and last.layers[0].kernel == (1, 1)
                    and last.stride == 1 and last.region is None) else None
    stages: list[list[_Unit]] = []
    for u in units[1:-1] if head else units[1:]:
        if stages:
            cur, prev = stages[-1], stages[-1][-1]
            if (u.stride == 1 and u.in_size == u.size == prev.size
                    and u.layers[0].c_in == u.channels == prev.channels
                    and u.signature(False) == cur[0].signature(False)
                    and (len(cur) == 1 or u.signature(True) == prev.signature(True))):
                cur.append(u)
                continue
        stages.append([u])
    return stages, head


def trace(model: nn.Module, resolution: int | tuple[int, int] = 224, in_chans: int = 3, *,
          alpha: Sequence[float] | None = None, beta: float = BETA, classifier: bool = True,
          name: str | None = None) -> TraceAnalysis:
    """Trace model with one forward pass at resolution (side, or (height, width)) and analyze it.

    alpha (one weight per down-sampling scale, default (1, ..., 1, 8)), beta and classifier (count the
    classifier in params and MACs) as in ``deepmad.api.analyze``. Raises TraceError (a ValueError) for bad
    arguments, a forward pass that fails, or a model with no conv / linear layer on its main path.
    """
    if not isinstance(model, nn.Module):
        raise TraceError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise TraceError(f"model: a TorchScript module ({type(model).__name__}) runs outside Python and cannot "
                         f"be traced; pass the eager nn.Module")
    size = _size(resolution)
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise TraceError(f"in_chans: expected an integer >= 1, got {in_chans!r}")
    try:
        alpha, beta = parse_alpha(alpha), parse_beta(beta)
    except ValueError as e:
        raise TraceError(str(e)) from None
    name = name or type(model).__name__
    nodes, outputs = _run(model, size, in_chans, name)
    g = _Graph(nodes, outputs)
    cls_start = g.classifier_start()
    regions, branch = g.bypasses()
    role = _roles(g, cls_start, branch)

    def layer(i: int, unit: int = -1) -> Layer:
        d = {k: v for k, v in nodes[i].layer.items() if k != "ids"}
        return Layer(**d, role=role[i][0], reason=role[i][1], unit=unit)

    main = [i for i in g.path if role.get(i, ("",))[0] == "main"]
    if not main:
        raise TraceError(f"{name}: no Conv2d or Linear layer on the main path before the classifier")
    units = _units(g, main, regions, layer)
    for i in role:  # a unit a 1x1 shortcut bypasses is a projection block (bottleneck, not mbconv)
        if role[i][0] == "shortcut":
            a, b = branch[i]
            for u in units:
                if u.region is not None and regions[u.region][0] <= a and b <= regions[u.region][1]:
                    u.projection = True
    stages, head_unit = _stages(units)

    stage_of = {id(units[0]): -1, id(head_unit): len(stages)}
    stage_of.update({id(u): s for s, st in enumerate(stages) for u in st})
    th_units = [Unit(f"unit{k}", tuple(x.width for x in u.layers), u.channels, _side(u.size), stage_of[id(u)])
                for k, u in enumerate(units)]
    n_scales = len(theory.scales(th_units))
    if alpha is not None and len(alpha) != n_scales:
        raise TraceError(f"alpha: expected {n_scales} weights (one per down-sampling scale of {name} at "
                         f"{size[0]}x{size[1]}), got {len(alpha)}")
    alpha = alpha if alpha is not None else theory.default_alpha(n_scales)
    pre = theory.prefixes(th_units)
    end = {id(u): k for k, u in enumerate(units)}
    stem = _row(-1, "stem", [units[0]], pre[0], 1, units[0].layers[0].stride[0])
    rows = tuple(_row(s, f"stage{s + 1}", st, pre[end[id(st[-1])]], len(st)) for s, st in enumerate(stages))
    head = _row(len(stages), "head", [head_unit], pre[-1], 1, 1) if head_unit else None
    entropy = theory.entropy(th_units, alpha)
    try:
        penalty = theory.depth_penalty([len(st) for st in stages], beta) if stages else beta
    except OverflowError:  # exp(Var) beyond floating point
        penalty = math.inf

    counted = tuple(x for u in units for x in u.layers)
    skipped = tuple(layer(i) for i in sorted(role) if role[i][0] != "main")
    params = sum(p.numel() for p in model.parameters())
    macs = sum(x.macs for x in counted + skipped)
    if not classifier:
        macs -= sum(x.macs for x in skipped if x.role == "classifier")
        weights = {t for i in role if role[i][0] == "classifier" for t in nodes[i].layer["ids"]}
        params -= sum(p.numel() for p in model.parameters() if id(p) in weights)
    return TraceAnalysis(name=name, input=size, in_chans=in_chans, params=int(params), flops=int(macs),
                         rho=theory.rho(th_units), rho_max=theory.rho_max(th_units), entropy=entropy,
                         penalty=penalty, objective=entropy - penalty, layers=len(counted), alpha=tuple(alpha),
                         beta=beta, classifier=classifier, stem=stem, stages=rows, head=head,
                         units=tuple(th_units), counted=counted, skipped=skipped)


# ---------------------------------------------------------------------------------------------- report

def _layer_line(x: Layer) -> tuple[str, ...]:
    k = f"{x.kernel[0]}x{x.kernel[1]}" if x.kind == "conv" else "fc"
    s = f"/{x.stride[0]}" if x.stride[0] != 1 else ""
    g = f" g{x.groups}" if x.groups != 1 else ""
    return (x.name, f"{x.c_in}->{x.c_out}", f"{k}{s}{g}", f"{x.out_size[0]}x{x.out_size[1]}", f"{x.width:g}")


def _columns(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def text(a: TraceAnalysis) -> str:
    """Human report: the per-stage table and summary of ``deepmad analyze``, then every layer counted and
    every layer skipped with the reason."""
    from .. import report

    h, w = a.input
    title = (f"{a.name}: traced at {h}x{w} input ({a.in_chans} channels), {len(a.stages)} stages, "
             f"{a.scales} down-sampling scales")
    roles = {r: sum(x.role == r for x in a.skipped) for r in ROLES[1:]}
    extra = report.summary(a) + [
        ("counted", f"{len(a.counted)} main-path layers (stem, blocks, head) in {len(a.units)} units"),
        ("skipped", ", ".join(f"{n} {r}" for r, n in roles.items() if n) or "nothing")]
    width = max(len(k) for k, _ in extra)
    out = [title, "", report.table(a), ""] + [f"{k.ljust(width)}  {v}" for k, v in extra]
    if h != w:
        out.append(f"{'':{width}}  (non-square input: 'out' shows r x r with r² = h·w, the map area of Eq. 4; "
                   f"the layers below show h x w)")
    out += ["", "counted (main path), unit by unit:"]
    rows = [("unit", "layer", "channels", "kernel", "out", "width")]
    for x in a.counted:
        rows.append((str(x.unit), *_layer_line(x)))
    out += _columns(rows)
    if a.skipped:
        out += ["", "skipped:"]
        out += _columns([("layer", "channels", "kernel", "out", "reason")]
                        + [(*_layer_line(x)[:4], x.reason) for x in a.skipped])
    return "\n".join(out) + "\n"


def to_json(a: TraceAnalysis) -> dict[str, Any]:
    """The JSON object of ``deepmad analyze --torch``."""
    return a.to_dict()


# ---------------------------------------------------------------------------------------------- loading

def _import(module_name: str, ref: str) -> Any:
    """Import a module by name, or a .py file by path; TraceError naming what failed."""
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            if not os.path.isfile(module_name):
                raise TraceError(f"--torch {ref}: no such file {module_name}")
            name = f"_deepmad_traced_{os.path.splitext(os.path.basename(module_name))[0]}"
            spec = importlib.util.spec_from_file_location(name, module_name)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod  # as an import would: dataclasses, pickle look it up there
            spec.loader.exec_module(mod)
            return mod
        return importlib.import_module(module_name)
    except TraceError:
        raise
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise TraceError(f"--torch {ref}: cannot import module {module_name!r}: no module named {e.name!r} "
                             f"(looked in the current directory and sys.path)") from None
        raise TraceError(f"--torch {ref}: importing {module_name!r} failed: {e}") from None
    except Exception as e:  # the user's module raised while importing
        msg = " ".join(str(e).split())
        raise TraceError(f"--torch {ref}: importing {module_name!r} failed: {type(e).__name__}: {msg}") from None


def load_module(ref: str) -> nn.Module:
    """The nn.Module named by 'MODULE:CALLABLE' (or 'path/to/file.py:CALLABLE'; CALLABLE may be dotted):
    CALLABLE() called with no arguments, or CALLABLE itself if it is an nn.Module. The current directory is
    on sys.path while the module is imported and the callable runs."""
    module_name, sep, attr = ref.rpartition(":")
    if not sep or not module_name or not attr:
        raise TraceError(f"--torch {ref}: expected MODULE:CALLABLE, e.g. mypkg.models:build_net")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        obj: Any = _import(module_name, ref)
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise TraceError(f"--torch {ref}: module {module_name!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        if isinstance(obj, nn.Module):
            return obj
        if not callable(obj):
            raise TraceError(f"--torch {ref}: {attr} is a {type(obj).__name__}, expected an nn.Module or a "
                             f"callable returning one")
        try:
            model = obj()
        except Exception as e:  # the user's code
            msg = " ".join(str(e).split())
            raise TraceError(f"--torch {ref}: calling {attr}() failed: {type(e).__name__}: {msg}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    if not isinstance(model, nn.Module):
        raise TraceError(f"--torch {ref}: {attr}() returned a {type(model).__name__}, expected a torch.nn.Module")
    return model


__all__ = ["trace", "TraceAnalysis", "Layer", "TraceError", "text", "to_json", "load_module", "ROLES"]
