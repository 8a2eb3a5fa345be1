"""Authors'-score compatibility: the DeepMAD score as the authors' code (TinyNAS) computes it, quirks and all.

TinyNAS (github.com/alibaba/lightweight-neural-architecture-search, read at commit 90a9d0cc) scores a network
analytically from its structure list (``configs/classification/models/deepmad-*.txt``). This module reproduces
that computation on the same list, so our designs can be compared with theirs on their own terms. Where it
departs from the paper's formulation (deepmad-math.md §2-4, implemented in ``deepmad.core.theory``):

- Score resolution: always 224. No config passes ``image_size`` to the score class
  (``tinynas/scores/compute_deepmad.py``, ``ComputeDeepMadScore.__init__``), even for the 288-px config; the
  config's ``image_size`` only reaches the FLOPs budget (``tinynas/strategy/strategy.py``).
- Stages (``tinynas/models/cnnnet.py``, ``CnnNet.get_stage_info``): a stage closes before every top-level
  layer of stride 2 except the first, and at the end. A stride-1 group merges into the previous stage, the
  stem alone is stage 1 when group 1 has stride 2, and the final 1x1 conv belongs to the last stage.
  Resolutions use integer ``//``.
- SE blocks report output resolution 1 (``blocks_basic.py``, ``SE.get_output_resolution``), so log(R²) = 0
  for every stage at or after the first MBConv-SE block.
- Entropy (``ComputeDeepMadScore.ratio_score`` and the blocks' ``get_deepmad_forward``):
  H_j = log(C_j · R_j²) · Σ ½·log w over every block from the input to the end of stage j (product form;
  the ½ is their log of a standard deviation), raw = Σ_j α_j H_j with α = (1, 1, 1, 1, 8). Their score
  needs exactly len(α) = 5 stages; otherwise it raises and their strategy records -9999: here ``score``
  raises ``StageCountError``.
- Widths: fan-ins, one product per block (``get_width``): conv c_in·k² (its groups ignored), bottleneck
  c_in·btn·k²·btn, MBConv-SE c_in·k²·btn. Shortcuts, avg-pools and SE convs are not counted.
- ρ (``CnnNet.get_efficient_score``): L_j / exp(Σ log w / L_j) per stage prefix (full log), the maximum over
  stages; it is compared with the ``efficient_score`` budget (0.3 bottleneck, 0.5 MBConv configs).
- Depth penalty (``Strategy.get_info_for_evolution``, applied outside the score class and only to
  budget-feasible nets): 10 · exp(std(L)), population std of the group depths; when layer 1 is a bottleneck
  group the first two groups are left out (after the first is dropped, exactly 4 must remain: their assert).
- FLOPs (``get_flops`` of ``ConvKXBN``, ``ConvKXBNRELU``, ``ResK1KXK1``, ``ResK1DWSEK1``, ``BaseSuperBlock``):
  conv MACs + 2 per BN output + 1 per activation output; bottleneck: + c_in (avg-pool) when stride 2, and the
  first block of every group (``force_resproj``) or a channel change adds a 1x1 projection conv-BN + 1 per
  add output; MBConv-SE: + c_in (avg-pool) for an identity shortcut of stride 2, no SE FLOPs, no projection.
  Resolution is divided as a float after each block; the classifier does not exist in their ``CnnNet``.
- Params: backbone only, no classifier, 2 per BN channel; the SE's two 1x1 convs carry BN and have
  max(1, round(btn/4)//8)·8 hidden channels (``SE.__init__``).

Every number this module returns is computed by this port, from the formulas read in their code: the
authors' repository publishes no score values (no logs, no tests, none in its READMEs).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .spec import Spec, Stage, Stem
from .theory import BETA, effectiveness

LAYER_TYPES = ("conv", "bottleneck", "mbconv_se")
CLASSES = {"conv": "ConvKXBNRELU", "bottleneck": "SuperResK1KXK1", "mbconv_se": "SuperResK1DWSEK1"}
ALPHA = (1.0, 1.0, 1.0, 1.0, 8.0)  # multi_block_ratio of every DeepMAD config
SCORE_RESOLUTION = 224  # ComputeDeepMadScore's image_size default, never overridden
RELEASED = ("deepmad-R18", "deepmad-R34", "deepmad-R50", "deepmad-29M-224", "deepmad-29M-288", "deepmad-50M",
            "deepmad-89M")
DATA = Path(__file__).with_name("data") / "released_structures.json"


class StageCountError(ValueError):
    """Their score needs one stage per α weight; TinyNAS scores any other net -9999."""


# ---------------------------------------------------------------------------------------------- structures

@dataclass(frozen=True)
class Layer:
    """One top-level entry of their structure list: a conv-BN-ReLU, or a group of L blocks."""

    type: str  # conv | bottleneck | mbconv_se
    c_in: int  # 'in'
    c_out: int  # 'out'
    k: int  # kernel of the conv, or of the group's k x k (depthwise) conv
    stride: int = 1  # 's': the conv's, or the group's first block's
    btn: int | None = None  # groups: bottleneck (expanded) channels of every block
    L: int | None = None  # groups: number of blocks

    def __post_init__(self) -> None:
        if self.type not in LAYER_TYPES:
            raise ValueError(f"type: expected one of {', '.join(LAYER_TYPES)}, got {self.type!r}")
        for name in ("c_in", "c_out", "k") + (("btn", "L") if self.type != "conv" else ()):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{self.type}.{name}: expected an integer >= 1, got {v!r}")
        if self.stride not in (1, 2):  # their blocks assert stride in (1, 2)
            raise ValueError(f"{self.type}.stride: their blocks take stride 1 or 2, got {self.stride!r}")
        if self.type == "conv" and (self.btn is not None or self.L is not None):
            raise ValueError("conv: a conv has no btn / L")


@dataclass(frozen=True)
class Budgets:
    """The budgets of a TinyNAS config; each is met when value <= budget (``budgets.py``)."""

    flops: float | None = None  # 'flops', counted at the config's image_size
    params: float | None = None  # 'model_size', backbone only
    rho: float | None = None  # 'efficient_score' (ρ0)


@dataclass(frozen=True)
class Structure:
    """Their structure list, plus the config's image size and budgets."""

    layers: tuple[Layer, ...]
    resolution: int = 224  # the config's image_size: only the FLOPs budget uses it
    budgets: Budgets = field(default_factory=Budgets)
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("layers: expected at least one layer")
        for i in range(1, len(self.layers)):
            if self.layers[i].c_in != self.layers[i - 1].c_out:
                raise ValueError(f"layers[{i}].c_in: {self.layers[i].c_in} != {self.layers[i - 1].c_out}, "
                                 f"the out channels of layers[{i - 1}]")


def from_dict(data: dict[str, Any], name: str = "") -> Structure:
    """A Structure from the released-structures format (layers with in/out/k/stride[/btn/L], budgets)."""
    b = data.get("budgets", {})
    layers = tuple(Layer(d["type"], d["in"], d["out"], d["k"], d.get("stride", 1), d.get("btn"), d.get("L"))
                   for d in data["layers"])
    return Structure(layers, data.get("resolution", 224), Budgets(b.get("flops"), b.get("params"),
                                                                  b.get("rho_max")), name)


def to_dict(structure: Structure) -> dict[str, Any]:
    """The released-structures format."""
    b = structure.budgets
    layers = [{"type": l.type, "in": l.c_in, "out": l.c_out, "k": l.k, "stride": l.stride}
              | ({"btn": l.btn, "L": l.L} if l.type != "conv" else {}) for l in structure.layers]
    return {"resolution": structure.resolution, "budgets": {"flops": b.flops, "params": b.params,
                                                            "rho_max": b.rho}, "layers": layers}


def structure_info(structure: Structure) -> list[dict[str, Any]]:
    """The list their ``CnnNet(structure_info=...)`` takes (the models/*.txt format)."""
    return [{"class": CLASSES[l.type], "in": l.c_in, "out": l.c_out, "s": l.stride, "k": l.k}
            | ({"btn": l.btn, "L": l.L} if l.type != "conv" else {}) for l in structure.layers]


@lru_cache(maxsize=1)
def _released_data() -> dict[str, Any]:
    return json.loads(DATA.read_text())["structures"]


def released(name: str) -> Structure:
    """A structure the authors released (see RELEASED), with its config's budgets."""
    data = _released_data()
    if name not in data:
        raise KeyError(f"{name!r}: not a released structure (known: {', '.join(RELEASED)})")
    return from_dict(data[name], name)


# ---------------------------------------------------------------------------------------------- blocks

@dataclass(frozen=True)
class _Block:
    """One inner block (their get_block_num unit): the conv itself, or one block of a group."""

    type: str
    c_in: int
    c_out: int
    k: int
    stride: int
    btn: int = 0
    first: bool = True  # first block of its group (force_resproj for bottlenecks)


def _blocks(layer: Layer) -> list[_Block]:
    """BaseSuperBlock: block 0 maps in -> out with the stride, the others out -> out."""
    if layer.type == "conv":
        return [_Block("conv", layer.c_in, layer.c_out, layer.k, layer.stride)]
    return [_Block(layer.type, layer.c_in if i == 0 else layer.c_out, layer.c_out, layer.k,
                   layer.stride if i == 0 else 1, layer.btn, i == 0) for i in range(layer.L)]


def _all_blocks(structure: Structure) -> list[_Block]:
    return [b for l in structure.layers for b in _blocks(l)]


def _logw(b: _Block) -> float:
    """log of get_width(): the product of the block's layer widths."""
    if b.type == "conv":
        return math.log(b.c_in * b.k**2)
    if b.type == "bottleneck":
        return math.log(b.c_in) + math.log(b.btn * b.k**2) + math.log(b.btn)
    return math.log(b.c_in) + math.log(b.k**2) + math.log(b.btn)


def _n_layers(b: _Block) -> int:
    return 1 if b.type == "conv" else 3


def _out_resolution(b: _Block, r: int) -> int:
    """get_output_resolution: r // stride, and 1 after any SE."""
    return 1 if b.type == "mbconv_se" else r // b.stride


def se_hidden(btn: int) -> int:
    """Hidden channels of their SE on btn channels: max(1, round(btn/4)//8)·8."""
    return max(1, round(btn * 0.25) // 8) * 8


def _conv_bn(c_in: int, c_out: int, k: int, s: int = 1, g: int = 1) -> tuple[float, float]:
    """ConvKXBN: (params, FLOPs per input pixel)."""
    return c_in * c_out * k * k / g + 2 * c_out, c_in * c_out * k * k / (s * s * g) + 2 * c_out / s**2


def _cost(b: _Block) -> tuple[float, float]:
    """(params, FLOPs per input pixel) of one inner block, in their convention."""
    s, c_in, c, k = b.stride, b.c_in, b.c_out, b.k
    if b.type == "conv":
        p, f = _conv_bn(c_in, c, k, s)
        return p, f + c / s**2  # + ReLU
    p1, f1 = _conv_bn(c_in, b.btn, 1)
    p2, f2 = _conv_bn(b.btn, b.btn, k, s, 1 if b.type == "bottleneck" else b.btn)
    p3, f3 = _conv_bn(b.btn, c, 1)
    p = p1 + p2 + p3
    f = f1 + f2 + f3 / s**2 + b.btn + b.btn / s**2 + c / s**2  # + activations (the last after the add)
    if b.type == "bottleneck":
        if s == 2:
            f += c_in  # avg-pool shortcut
        if b.first or c_in != c:  # force_resproj on a group's first block
            pp, fp = _conv_bn(c_in, c, 1)
            p, f = p + pp, f + fp / s**2 + c / s**2  # + the add
        return p, f
    h = se_hidden(b.btn)
    p += _conv_bn(b.btn, h, 1)[0] + _conv_bn(h, b.btn, 1)[0]  # SE params counted, SE FLOPs not
    if c_in == c and s == 2:
        f += c_in  # avg-pool on the identity shortcut
    return p, f


# ---------------------------------------------------------------------------------------------- score

@dataclass(frozen=True)
class TinyStage:
    """One of their stages: everything from the input to its end (``CnnNet.get_stage_info``)."""

    last: int  # index of its last top-level layer (their stage_idx)
    blocks: int  # inner blocks so far (stage_block_num)
    layers: int  # convs so far (stage_layer_num)
    channels: int  # C_j: out channels of its last layer
    resolution: int  # R_j as they report it (// per stride, 1 after any SE block)
    logw: float  # Σ log w over those blocks (full log)

    @property
    def entropy(self) -> float:
        """H_j = log(C_j · R_j²) · Σ ½·log w."""
        return (math.log(self.channels) + math.log(self.resolution**2)) * 0.5 * self.logw

    @property
    def rho(self) -> float:
        """ρ_j = L_j / exp(Σ log w / L_j)."""
        return effectiveness(self.layers, self.logw)


@dataclass(frozen=True)
class TinyNASScore:
    """Their score of one structure, with the quantities their search checks."""

    raw: float  # Σ_j α_j H_j (their avg_nas_score)
    entropies: tuple[float, ...]  # H_j per stage, unweighted
    penalty: float  # depth penalty (their strategy subtracts it)
    final: float  # raw − penalty: what their evolution ranks
    rho: float  # max over stage prefixes (get_efficient_score)
    flops: float  # their FLOPs at the structure's resolution
    params: float  # backbone params
    feasible: bool | None  # every budget met (is_satify_budget); None without budgets
    stages: tuple[TinyStage, ...]  # their stage split
    depths: tuple[int, ...]  # the group depths the penalty uses


def stages(structure: Structure, resolution: int = SCORE_RESOLUTION) -> tuple[TinyStage, ...]:
    """Their stage split: close a stage before every stride-2 layer but the first, and at the end."""
    out: list[TinyStage] = []
    n_blocks, n_layers, logw, r, c = 0, 0, 0.0, resolution, 0
    for i, layer in enumerate(structure.layers):
        if layer.stride == 2 and i > 0:
            out.append(TinyStage(i - 1, n_blocks, n_layers, c, r, logw))
        for b in _blocks(layer):
            n_blocks, n_layers, logw = n_blocks + 1, n_layers + _n_layers(b), logw + _logw(b)
            r = _out_resolution(b, r)
        c = layer.c_out
    out.append(TinyStage(len(structure.layers) - 1, n_blocks, n_layers, c, r, logw))
    return tuple(out)


def rho(structure: Structure) -> float:
    """Their effectiveness: the largest ρ_j over the stage prefixes."""
    return max(s.rho for s in stages(structure))


def flops(structure: Structure, resolution: int | None = None) -> float:
    """Their FLOPs at resolution (default the structure's): float division by each block's stride."""
    r, total = float(resolution or structure.resolution), 0.0
    for b in _all_blocks(structure):
        total += _cost(b)[1] * r**2
        r /= b.stride
    return total


def params(structure: Structure) -> float:
    """Their model size: backbone parameters, BN included, no classifier."""
    return sum(_cost(b)[0] for b in _all_blocks(structure))


def depths(structure: Structure) -> tuple[int, ...]:
    """The group depths their depth penalty uses (the first two left out when layer 1 is a bottleneck)."""
    ds = [l.L for l in structure.layers if l.type != "conv"]
    if len(structure.layers) > 1 and structure.layers[1].type == "bottleneck":
        if len(ds) != 5:
            raise ValueError(f"their depth penalty needs exactly 5 groups in a bottleneck net, got {len(ds)}")
        ds = ds[2:]
    if not ds:
        raise ValueError("no block groups: their depth penalty is undefined")
    return tuple(ds)


def depth_penalty(structure: Structure, beta: float = BETA) -> float:
    """β · exp(std(depths)), population std (np.std, ddof = 0); β is their depth_penalty_ratio."""
    return beta * math.exp(float(np.std(depths(structure))))


def feasible(value_flops: float, value_params: float, value_rho: float, budgets: Budgets) -> bool | None:
    """Their is_satify_budget: every given budget met (value <= budget); None when none is given."""
    pairs = [(v, b) for v, b in ((value_flops, budgets.flops), (value_params, budgets.params),
                                 (value_rho, budgets.rho)) if b is not None]
    return all(v <= b for v, b in pairs) if pairs else None


def score(structure: Structure, *, alpha: Sequence[float] = ALPHA, beta: float = BETA,
          resolution: int = SCORE_RESOLUTION, budgets: Budgets | None = None) -> TinyNASScore:
    """Their DeepMAD score of structure; resolution is the score's (224 in all their configs).

    Computed whatever the budgets say (their search scores only feasible nets: see ``feasible``).
    Raises StageCountError when the net does not have len(alpha) stages (TinyNAS: -9999).
    """
    st = stages(structure, resolution)
    if len(st) != len(alpha):
        raise StageCountError(f"{structure.name or 'structure'}: their score needs exactly {len(alpha)} "
                              f"stages (one per α weight), this net has {len(st)}; TinyNAS scores it -9999")
    entropies = tuple(s.entropy for s in st)
    raw = sum(a * h for a, h in zip(alpha, entropies) if a != 0)
    penalty = depth_penalty(structure, beta) if beta != 0 else 0.0
    r, f, p = max(s.rho for s in st), flops(structure), params(structure)
    b = structure.budgets if budgets is None else budgets
    return TinyNASScore(raw, entropies, penalty, raw - penalty, r, f, p, feasible(f, p, r, b), st,
                        depths(structure) if beta != 0 else ())


# ---------------------------------------------------------------------------------------------- our specs

def from_spec(spec: Spec) -> Structure:
    """Our spec as their structure: stem conv, one group per stage, the 1x1 head conv if any.

    Bottleneck stages become bottleneck groups (btn = mid), mbconv stages with mid and SE become MBConv-SE
    groups (btn = mid; their SE width is theirs, whatever se says). Raises ValueError for what their
    structures cannot express. num_classes and act are dropped (no classifier, activation not counted).
    """
    if spec.stem.pool:
        raise ValueError("stem.pool: their structures have no stem pooling")
    if spec.stem.stride not in (1, 2):
        raise ValueError(f"stem.stride: their convs take stride 1 or 2, got {spec.stem.stride}")
    layers = [Layer("conv", spec.in_channels, spec.stem.channels, spec.stem.kernel, spec.stem.stride)]
    c = spec.stem.channels
    for i, s in enumerate(spec.stages):
        where = f"stages[{i}]"
        if s.block == "basic":
            raise ValueError(f"{where}.block: their DeepMAD spaces have no basic-block group")
        if s.stride not in (1, 2):
            raise ValueError(f"{where}.stride: their blocks take stride 1 or 2, got {s.stride}")
        if s.groups != 1:
            raise ValueError(f"{where}.groups: their groups apply to every conv of a block, ours to the "
                             "k x k only; use groups 1")
        if s.block == "bottleneck":
            if s.se:
                raise ValueError(f"{where}.se: their bottleneck block has no squeeze-excitation")
            layers.append(Layer("bottleneck", c, s.channels, s.kernel, s.stride, s.mid, s.depth))
        else:
            if s.mid is None:
                raise ValueError(f"{where}.expand: their MBConv takes fixed expanded channels; give mid")
            if not s.se:
                raise ValueError(f"{where}.se: their MBConv group always has squeeze-excitation (se > 0)")
            if s.mid == c or (s.depth > 1 and s.mid == s.channels):
                raise ValueError(f"{where}.mid: equals a block's input channels, where our block drops its "
                                 "expand conv and theirs keeps it")
            layers.append(Layer("mbconv_se", c, s.channels, s.kernel, s.stride, s.mid, s.depth))
        c = s.channels
    if spec.head is not None:
        layers.append(Layer("conv", c, spec.head, 1, 1))
    return Structure(tuple(layers), spec.resolution, name=spec.name)


def to_spec(structure: Structure, num_classes: int = 1000) -> Spec:
    """Their structure as our spec, with the same main-path widths and layers (hence our entropy and ρ).

    Bottleneck groups keep our 1x1 projection shortcut (theirs: avg-pool then 1x1); MBConv-SE groups become
    mbconv stages with mid = btn and se = 0.25, which ours squeezes by the block *input* channels, so SE
    parameters differ from theirs. act is relu for bottleneck nets, silu when any group is MBConv-SE.
    """
    first, rest = structure.layers[0], list(structure.layers[1:])
    if first.type != "conv":
        raise ValueError("layers[0]: our spec needs a stem conv first")
    head = None
    if rest and rest[-1].type == "conv":
        last = rest.pop()
        if last.k != 1 or last.stride != 1:
            raise ValueError("layers[-1]: our head is a 1x1 stride-1 conv")
        head = last.c_out
    stages = []
    for i, l in enumerate(rest, start=1):
        if l.type == "conv":
            raise ValueError(f"layers[{i}]: our spec has no conv between stages")
        if l.type == "mbconv_se" and (l.btn == l.c_in or (l.L > 1 and l.btn == l.c_out)):
            raise ValueError(f"layers[{i}].btn: equals a block's input channels, where our mbconv drops its "
                             "expand conv")
        mb = l.type == "mbconv_se"
        stages.append(Stage("mbconv" if mb else "bottleneck", l.c_out, l.L, l.stride, l.k, mid=l.btn,
                            se=0.25 if mb else 0.0))
    act = "silu" if any(l.type == "mbconv_se" for l in rest) else "relu"
    return Spec(structure.resolution, Stem(first.c_out, first.k, first.stride), tuple(stages), head=head,
                num_classes=num_classes, in_channels=first.c_in, act=act, name=structure.name)


__all__ = ["Layer", "Budgets", "Structure", "TinyStage", "TinyNASScore", "StageCountError", "RELEASED",
           "ALPHA", "released", "from_dict", "to_dict", "structure_info", "stages", "rho", "flops", "params",
           "depths", "depth_penalty", "feasible", "se_hidden", "score", "from_spec", "to_spec"]
