"""A device's inference latency as a posynomial in the channel counts: the fourth budget of the program.

The model (fitted by ``deepmad.latency.calibrate`` from measured blocks; the method is in docs/latency.md):
a network's latency is the sum over its layers of ``θ_kind · feature``, with one non-negative coefficient per
(layer kind, feature). A layer kind is a 1x1 conv (``pw``; ``pw_s2`` for a stride-2 projection shortcut), a
dense k x k conv of stride s (``conv{k}_s{s}``), a depthwise one (``dw{k}_s{s}``), the stem (``stem{k}_s{s}``),
the head 1x1 conv (``head``), a squeeze-excitation (``se``), a residual add with its activation (``add``), the
global pool with the classifier (``tail``), a max-pool after the stem (``maxpool``) and a fixed per-network
cost (``net``). The features of a conv layer c_in -> c_out, kernel k, stride s, input side r_in, output side r:

    macs = r²·k²·c_in·c_out (depthwise r²·k²·c)   in = r_in²·c_in   out = r²·c_out
    weights = k²·c_in·c_out (depthwise k²·c)      one = 1

(its BatchNorm and activation work on ``out`` elements, so they are part of the ``out`` coefficient); an SE
has ``elems`` = r²·m (pool and gate), ``fc`` = m·squeeze, ``chans`` = m, ``one``; an add ``out`` and ``one``; the
tail ``in`` = r²·c (pool) and ``macs`` = c·classes and ``one``. Every feature is a monomial in the channel
counts with a positive coefficient, and the θ are non-negative (NNLS), so the latency is a posynomial: convex
in the logs of the channels, exactly like MACs and params. That is what lets the branch and bound
(``bound.py``) treat it as a third budget of the same shape, and its bound stay valid. Coefficients depend on
the kernel and the stride, both discrete and known in each box of the branch and bound (the kernel through
its range: the box takes the smallest coefficient of the kernels in it, which is exact once the kernel is
fixed).

A model covers block *families*: a block type with its activation (``bottleneck`` with relu, ``mbconv`` with
silu, ...); a design's space must use a covered family, kernels and strides, or ``check`` says which is
missing. Latencies are in milliseconds per forward pass of one batch of the calibration's batch size.

Row evaluation (``rows``) sums the stages in order, each stage through ``stage_rows`` (the stem folded into
the first stage; head, pool, classifier and the fixed cost into the last), so the search's neighbourhood
tables (``solver.py``), which call ``stage_rows`` on the same values, give the same floats bit for bit.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

import numpy as np

from .spec import Spec, out_resolution

MODEL_VERSION = 1
STATISTICS = ("median", "min")  # what a model fits of an item's timed runs (the file's measure.statistic)
CONV = ("macs", "in", "out", "weights", "one")
FEATURES = {"conv": CONV, "se": ("elems", "fc", "chans", "one"), "add": ("out", "one"),
            "tail": ("in", "macs", "one"), "maxpool": ("in", "one"), "net": ("one",)}
# block input, output and mid channels of a block: the variables of a term's monomial
I, C, M = 0, 1, 2
ALWAYS, PROJ, IDENT, EXPAND = "always", "proj", "ident", "expand"  # when a term is present (see Term)


class LatencyModelError(ValueError):
    """A latency model that cannot be read, or that does not cover what it is asked to predict."""


def kind_group(kind: str) -> str:
    """The feature group of a layer kind: conv (pw, pw_s2, conv*, dw*, stem*, head) or its own."""
    if kind in FEATURES:
        return kind
    if kind in ("pw", "pw_s2", "head") or kind.startswith(("conv", "dw", "stem")):
        return "conv"
    raise LatencyModelError(f"unknown layer kind {kind!r}")


class Term(NamedTuple):
    """One feature of one layer: ``mult · i^a · c^b · m^d`` (× squeeze(i) with sq), feeding θ[kind][feature].

    when: always; proj (a projection shortcut: present when c_in != c, for a stride-1 block); ident (an mbconv
    residual add: present when c_in == c, stride 1); expand (an mbconv expand conv: present when mid != c_in).
    """

    kind: str
    feature: str
    mult: float  # an integer: resolution², kernel², fixed channels
    exps: tuple[int, int, int]  # exponents of (block input, output, mid) channels
    sq: bool = False
    when: str = ALWAYS


def _conv(kind: str, cin, cout, k: int, stride: int, r_in: int, depthwise: bool = False,
          when: str = ALWAYS) -> list[Term]:
    """Features of a conv layer; cin / cout are a variable (I, C, M) or a fixed channel count (``fixed``)."""
    r = out_resolution(r_in, stride)

    def mono(mult: float, *vs) -> tuple[float, tuple[int, int, int]]:
        e = [0, 0, 0]
        for v in vs:
            if isinstance(v, tuple):  # ("fixed", channels)
                mult *= v[1]
            else:
                e[v] += 1
        return mult, (e[0], e[1], e[2])

    kk = k * k
    parts = [("macs", mono(r * r * kk, cout) if depthwise else mono(r * r * kk, cin, cout)),
             ("in", mono(r_in * r_in, cin)), ("out", mono(r * r, cout)),
             ("weights", mono(kk, cout) if depthwise else mono(kk, cin, cout)), ("one", (1, (0, 0, 0)))]
    return [Term(kind, f, float(mult), e, False, when) for f, (mult, e) in parts]


def fixed(channels: int) -> tuple[str, int]:
    """A channel count that is not a variable (the stem's input, the head's output)."""
    return ("fixed", int(channels))


def block_terms(block: str, k: int, stride: int, r_in: int, se: float, first: bool) -> list[Term]:
    """The features of one block: a stage's first block (input c_in, the stage's stride) or one of the others
    (input c, stride 1), in a fixed order."""
    r = out_resolution(r_in, stride)
    if not first:
        stride, r_in = 1, r
    proj = [] if stride == 1 and not first else (
        _conv("pw" if stride == 1 else "pw_s2", I, C, 1, stride, r_in, when=ALWAYS if stride != 1 else PROJ))
    if block == "bottleneck":
        t = (_conv("pw", I, M, 1, 1, r_in) + _conv(f"conv{k}_s{stride}", M, M, k, stride, r_in)
             + _conv("pw", M, C, 1, 1, r) + proj)
        return t + [Term("add", "out", float(r * r), (0, 1, 0)), Term("add", "one", 1.0, (0, 0, 0))]
    if block == "basic":
        t = _conv(f"conv{k}_s{stride}", I, C, k, stride, r_in) + _conv(f"conv{k}_s1", C, C, k, 1, r) + proj
        return t + [Term("add", "out", float(r * r), (0, 1, 0)), Term("add", "one", 1.0, (0, 0, 0))]
    if block == "mbconv":
        t = _conv("pw", I, M, 1, 1, r_in, when=EXPAND) + _conv(f"dw{k}_s{stride}", M, M, k, stride, r_in, True)
        if se > 0:
            t += [Term("se", "elems", float(r * r), (0, 0, 1)), Term("se", "fc", 1.0, (0, 0, 1), True),
                  Term("se", "chans", 1.0, (0, 0, 1)), Term("se", "one", 1.0, (0, 0, 0))]
        t += _conv("pw", M, C, 1, 1, r)
        if stride == 1:
            when = IDENT if first else ALWAYS
            t += [Term("add", "out", float(r * r), (0, 1, 0), False, when), Term("add", "one", 1.0, (0, 0, 0), False, when)]
        return t
    raise LatencyModelError(f"unknown block family {block!r}")


def stem_terms(k: int, stride: int, resolution: int, in_channels: int = 3, pool: bool = False) -> list[Term]:
    """The stem conv (in_channels -> c0, the I variable), and the max-pool after it if any."""
    t = _conv(f"stem{k}_s{stride}", fixed(in_channels), I, k, stride, resolution)
    if pool:
        r0 = out_resolution(resolution, stride)
        t += [Term("maxpool", "in", float(r0 * r0), (1, 0, 0)), Term("maxpool", "one", 1.0, (0, 0, 0))]
    return t


def tail_terms(r: int, head: int | None, classes: int) -> list[Term]:
    """The head 1x1 conv (C -> head) if any, the global pool and the classifier (classes > 0), the fixed cost."""
    t = _conv("head", C, fixed(head), 1, 1, r) if head is not None else []
    if classes:
        width = (float(head), (0, 0, 0)) if head is not None else (1.0, (0, 1, 0))
        t += [Term("tail", "in", float(r * r) * width[0], width[1]), Term("tail", "macs", classes * width[0], width[1]),
              Term("tail", "one", 1.0, (0, 0, 0))]
    return t + [Term("net", "one", 1.0, (0, 0, 0))]


# ---------------------------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class Family:
    """The coefficients of one block family: θ[kind][feature], in ms per unit of the feature."""

    block: str
    act: str
    coef: tuple[tuple[str, tuple[float, ...]], ...]  # (kind, θ in the order of FEATURES[kind_group(kind)])
    margin: float = 0.0  # the design margin: how much slower than predicted designs under a latency budget ran

    @property
    def name(self) -> str:
        return f"{self.block} ({self.act})"

    def table(self) -> dict[str, dict[str, float]]:
        return {k: dict(zip(FEATURES[kind_group(k)], v)) for k, v in self.coef}

    def theta(self, kind: str, feature: str) -> float:
        for k, v in self.coef:
            if k == kind:
                return v[FEATURES[kind_group(k)].index(feature)]
        raise LatencyModelError(f"the latency model's {self.name} family has no {describe_kind(kind)} "
                                f"(calibrated: {', '.join(describe_kind(k) for k, _ in self.coef)}); calibrate "
                                f"a model of the layers this network uses (deepmad latency calibrate)")


def describe_kind(kind: str) -> str:
    if kind.startswith(("conv", "dw", "stem")):
        name = "conv" if kind.startswith("conv") else "dw" if kind.startswith("dw") else "stem"
        k, s = kind[len(name):].split("_s")
        what = {"conv": "conv", "dw": "depthwise conv", "stem": "stem conv"}[name]
        return f"{k}x{k}/{s} {what}"
    return {"pw": "1x1 conv", "pw_s2": "1x1/2 conv", "head": "head conv", "se": "squeeze-excitation",
            "add": "residual add", "tail": "pool+classifier", "maxpool": "stem max-pool", "net": "fixed cost"}.get(kind, kind)


@dataclass(frozen=True)
class LatencyModel:
    """Fitted coefficients of the block families a device was calibrated for, with where they come from."""

    families: tuple[Family, ...]
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # environment, fit, grid, source
    source: str = field(default="", compare=False, hash=False)  # the file it was read from

    def family(self, block: str, act: str) -> Family:
        for f in self.families:
            if f.block == block and f.act == act:
                return f
        have = ", ".join(f.name for f in self.families) or "none"
        where = f"{self.source}: " if self.source else ""
        same = [f for f in self.families if f.block == block]
        hint = (f"calibrate it with 'deepmad latency calibrate --families {block}:{act}'" if same else
                f"calibrate it with 'deepmad latency calibrate --families {block}'")
        raise LatencyModelError(f"{where}the latency model covers {have} blocks, not {block} ({act}); {hint}")

    @property
    def statistic(self) -> str:
        """What the model fits of an item's timed runs: "median" or "min" (``STATISTICS``; files that do not say:
        median; ``from_dict`` checks the file's)."""
        return (self.meta.get("measure") or {}).get("statistic", STATISTICS[0])

    def describe(self) -> str:
        env = self.meta.get("environment", {})
        v = env.get("versions") or {}
        back = (f"onnxruntime {v.get('onnxruntime')}" if env.get("backend") == "onnxruntime"
                else f"torch {v.get('torch')}")
        th = env.get("threads")
        return (f"{self.source or 'latency model'}: {env.get('device', '?')} ({env.get('device_name', '?')}), "
                f"{back}, {th} thread{'s' if th != 1 else ''}, batch {env.get('batch')}"
                + (", channels-last" if env.get("channels_last") else "")
                + (", the minimum of each item's runs" if self.statistic == "min" else ""))


def from_dict(data: Any, source: str = "") -> LatencyModel:
    """Validate and build a model from its file format (``to_dict``); a LatencyModelError names the field."""
    where = f"{source}: " if source else ""
    if not isinstance(data, dict) or "deepmad_latency" not in data:
        raise LatencyModelError(f"{where}not a deepmad latency model (no 'deepmad_latency' field); write one "
                                f"with 'deepmad latency calibrate'")
    if data["deepmad_latency"] != MODEL_VERSION:
        raise LatencyModelError(f"{where}deepmad_latency: this version reads latency models of version "
                                f"{MODEL_VERSION}, got {data['deepmad_latency']!r}")
    fams = data.get("families")
    if not isinstance(fams, list) or not fams:
        raise LatencyModelError(f"{where}families: expected a non-empty list")
    out = []
    for j, f in enumerate(fams):
        at = f"{where}families[{j}]"
        if not isinstance(f, dict) or not isinstance(f.get("block"), str) or not isinstance(f.get("act"), str):
            raise LatencyModelError(f"{at}: expected a mapping with block, act and coef")
        coef = f.get("coef")
        if not isinstance(coef, dict) or not coef:
            raise LatencyModelError(f"{at}.coef: expected a mapping of layer kinds to coefficients")
        rows = []
        for kind in sorted(coef):
            try:
                names = FEATURES[kind_group(kind)]
            except LatencyModelError as e:
                raise LatencyModelError(f"{at}.coef: {e}") from None
            vals = coef[kind]
            if not isinstance(vals, dict) or set(vals) != set(names):
                raise LatencyModelError(f"{at}.coef.{kind}: expected the coefficients {', '.join(names)}")
            for name in names:
                v = vals[name]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise LatencyModelError(f"{at}.coef.{kind}.{name}: expected a number >= 0 (a posynomial "
                                            f"model has non-negative coefficients), got {v!r}")
            rows.append((kind, tuple(float(vals[n]) for n in names)))
        margin = f.get("margin", 0.0)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
            raise LatencyModelError(f"{at}.margin: expected a number in [0, 1) (the design margin), got {margin!r}")
        out.append(Family(f["block"], f["act"], tuple(rows), float(margin)))
    measure = data.get("measure", {})
    if not isinstance(measure, dict):
        raise LatencyModelError(f"{where}measure: expected an object (warmup, runs, statistic), got {measure!r}")
    stat = measure.get("statistic", STATISTICS[0])
    if stat not in STATISTICS:
        raise LatencyModelError(f"{where}measure.statistic: expected one of {', '.join(STATISTICS)} (what the model "
                                f"fits of the timed runs), got {stat!r}")
    meta = {k: v for k, v in data.items() if k not in ("deepmad_latency", "families")}
    meta["fits"] = {f"{x['block']}:{x['act']}": x.get("fit") for x in fams}
    return LatencyModel(tuple(out), meta, source)


def to_dict(model: LatencyModel) -> dict[str, Any]:
    """The file format: version, the environment and grid (meta), then every family's coefficients and fit."""
    meta = {k: v for k, v in model.meta.items() if k != "fits"}
    fits = model.meta.get("fits", {})
    fams = [{"block": f.block, "act": f.act, "coef": f.table(), "margin": f.margin,
             "fit": fits.get(f"{f.block}:{f.act}")}
            for f in model.families]
    return {"deepmad_latency": MODEL_VERSION, **meta, "families": fams}


# ---------------------------------------------------------------------------------------------- evaluation

def _value(t: Term, i, c, m, se: float):
    """mult · i^a · c^b · m^d (× squeeze(i)), an exact integer in float64 for channel counts of real networks."""
    v = t.mult
    for x, e in ((i, t.exps[0]), (c, t.exps[1]), (m, t.exps[2])):
        for _ in range(e):
            v = v * x
    if t.sq:
        v = v * np.maximum(1, np.floor(np.asarray(i, dtype=float) * se + 1e-9))
    return v


def _present(t: Term, i, c, m):
    if t.when == PROJ:
        return i != c
    if t.when == IDENT:
        return i == c
    if t.when == EXPAND:
        return m != i
    return True


def evaluate_terms(fam: Family, terms: list[Term], i, c, m, se: float = 0.0) -> Any:
    """Σ θ · feature over terms (in order) at the channels given (numbers or arrays)."""
    total = 0.0
    for t in terms:
        present = _present(t, i, c, m)
        if np.ndim(present) == 0 and not present:  # an absent layer (a scalar network): nothing to look up
            continue
        total = total + fam.theta(t.kind, t.feature) * (_value(t, i, c, m, se) * present)
    return total


class StageTerms(NamedTuple):
    """A stage's terms in a space: per kernel choice, the first block's and the other blocks' (same structure
    for every kernel), and what the first stage carries for the stem, the last one for the head and tail."""

    first: list[list[Term]]  # [kernel choice] -> terms
    rest: list[list[Term]]
    pre: list[Term]  # stem (stage 0 only)
    post: list[Term]  # head, pool + classifier, fixed cost (last stage only)


def stage_terms(sp, i: int, classifier: bool) -> StageTerms:
    """The terms of stage i (0-based) of space sp, for each of its kernel choices."""
    r0, rs = sp.resolutions()
    r_in = ([r0] + rs)[i]
    first = [block_terms(sp.block, k, sp.strides[i], r_in, sp.se, True) for k in sp.kernels]
    rest = [block_terms(sp.block, k, sp.strides[i], r_in, sp.se, False) for k in sp.kernels]
    pre = stem_terms(sp.stem_kernel, sp.stem_stride, sp.resolution) if i == 0 else []
    post = tail_terms(rs[-1], sp.head, sp.num_classes if classifier else 0) if i == sp.n - 1 else []
    return StageTerms(first, rest, pre, post)


def _coef_table(fam: Family, per_kernel: list[list[Term]]) -> np.ndarray:
    """θ · mult of every term (columns) for every kernel choice (rows)."""
    shapes = {tuple((t.feature, t.exps, t.sq, t.when) for t in ts) for ts in per_kernel}
    assert len(shapes) == 1, "the terms of a block have the same structure for every kernel"
    return np.array([[fam.theta(t.kind, t.feature) * t.mult for t in ts] for ts in per_kernel])


def _units(terms: list[Term]) -> list[Term]:
    return [Term(t.kind, t.feature, 1.0, t.exps, t.sq, t.when) for t in terms]  # mult is in the θ table


@functools.lru_cache(maxsize=512)
def stage_tables(fam: Family, sp, i: int, classifier: bool):
    """Stage i's terms with their coefficients: (θ·mult of the first block's terms per kernel choice, those
    terms with mult 1; the same for the other blocks; for the stem (stage 0) and for the head and tail (last
    stage): θ·mult and the terms, or None and [])."""
    st = stage_terms(sp, i, classifier)
    return (_coef_table(fam, st.first), _units(st.first[0]), _coef_table(fam, st.rest), _units(st.rest[0]),
            _coef_table(fam, [st.pre])[0] if st.pre else None, _units(st.pre),
            _coef_table(fam, [st.post])[0] if st.post else None, _units(st.post))


def _sum(theta, units: list[Term], i, c, m, se: float, ident: bool = True):
    total = 0.0
    for j, t in enumerate(units):
        if ident or t.when != IDENT:
            total = total + theta[..., j] * (_value(t, i, c, m, se) * _present(t, i, c, m))
    return total


def stage_rows(fam: Family, sp, i: int, classifier: bool, cin, c, m, k, L, ident: bool = True) -> np.ndarray:
    """Predicted latency (ms) of stage i at rows of values (float arrays; the stem in stage 0; head, pool,
    classifier and the fixed cost in the last stage): first block + (L − 1) · another block. NaN where the
    kernel is not one of the space's. ident=False leaves out an mbconv stage's residual add of its first block
    (the one term a wider stage can lose)."""
    first, ufirst, rest, urest, pre, upre, post, upost = stage_tables(fam, sp, i, classifier)
    if not sp.has_mid:
        m = c
    kernels = np.array(sp.kernels, dtype=float)
    kidx = np.minimum(np.searchsorted(kernels, k), len(kernels) - 1)
    ok = kernels[kidx] == k
    lat = _sum(first[kidx], ufirst, cin, c, m, sp.se, ident) + (L - 1) * _sum(rest[kidx], urest, c, c, m, sp.se)
    if pre is not None:
        lat = _sum(pre, upre, cin, c, m, sp.se) + lat
    if post is not None:
        lat = lat + _sum(post, upost, cin, c, m, sp.se)
    return np.where(ok, lat, np.nan)


def rows(fam: Family, sp, classifier: bool, X: np.ndarray) -> np.ndarray:
    """Predicted latency (ms) of every row of X (``budget.columns`` layout): the stages' ``stage_rows``,
    summed in order."""
    n = sp.n
    X = np.asarray(X, dtype=float)
    total = None
    for i in range(n):
        cin, c, m, k, L = X[:, i], X[:, 1 + i], X[:, n + 1 + i], X[:, 2 * n + 1 + i], X[:, 3 * n + 1 + i]
        s = stage_rows(fam, sp, i, classifier, cin, c, m, k, L)
        total = s if total is None else total + s
    return total


@functools.lru_cache(maxsize=64)
def family_for(model: LatencyModel, sp, classifier: bool = True) -> Family:
    """The family of model that predicts space sp; a LatencyModelError names what the model lacks (family,
    kernel, stride)."""
    fam = model.family(sp.block, sp.act)
    try:
        for i in range(sp.n):
            stage_tables(fam, sp, i, classifier)
    except LatencyModelError as e:
        raise LatencyModelError(f"{model.source + ': ' if model.source else ''}{e}") from None
    return fam


def parse_ms(text: Any, what: str = "latency") -> float:
    """'30ms', '30 ms', '0.03s', '30000us' or a number (milliseconds) -> a positive number of milliseconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        mt = re.fullmatch(r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ms|s|us|µs)?\s*", str(text))
        if not mt:
            raise ValueError(f"{what}: expected a duration like 30ms, 0.03s or 30 (milliseconds), got {text!r}")
        value = float(mt.group(1)) * {"ms": 1.0, None: 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3}[mt.group(2)]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what}: expected a positive duration like 30ms, got {text!r}")
    return value


def parse_margin(text: Any, what: str = "latency_margin") -> float | None:
    """'auto' (None: the model's design margin), '5%', '0.05' or a number in [0, 1) -> a fraction."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "auto"):
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        mt = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(%?)\s*", str(text))
        if not mt:
            raise ValueError(f"{what}: expected auto (the latency model's design margin), a percentage like 5% or "
                             f"a fraction like 0.05, got {text!r}")
        value = float(mt.group(1)) / (100 if mt.group(2) else 1)
    if not math.isfinite(value) or not 0 <= value < 1:
        raise ValueError(f"{what}: expected a margin from 0 to below 100%, got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------- specs

def spec_terms(spec: Spec, classifier: bool = True) -> list[tuple[str, list[Term], tuple[int, int, int], float]]:
    """(row, terms, (i, c, m), se) of every block of a spec, in forward order: the stem, every block of every
    stage (row stage1, stage2, ...), the head conv (row head) and the pool, classifier and fixed cost (row tail).
    What ``predict`` sums and calibration regresses on."""
    from .blocks import expansion

    st = spec.stem
    out = [("stem", stem_terms(st.kernel, st.stride, spec.resolution, spec.in_channels, st.pool),
            (st.channels, 0, 0), 0.0)]
    r = out_resolution(spec.resolution, st.stride)
    r = out_resolution(r, 2) if st.pool else r
    c, block = st.channels, spec.stages[0].block
    for j, s in enumerate(spec.stages):
        if s.groups != 1:
            raise LatencyModelError(f"stages[{j}]: grouped convolutions (groups {s.groups}) are not in the "
                                    f"latency model")
        if s.block != block:
            raise LatencyModelError(f"stages[{j}]: a network of more than one block family ({block}, {s.block}) "
                                    f"is not in the latency model")
        for d in range(s.depth):
            stride = s.stride if d == 0 else 1
            mid = int(expansion(s, c)) if s.block != "basic" else s.channels
            out.append((f"stage{j + 1}", block_terms(s.block, s.kernel, stride, r, s.se, True),
                        (c, s.channels, mid), s.se))
            r, c = out_resolution(r, stride), s.channels
    tail = tail_terms(r, spec.head, spec.num_classes if classifier else 0)
    if spec.head is not None:
        out.append(("head", [t for t in tail if t.kind == "head"], (0, c, 0), 0.0))
    out.append(("tail", [t for t in tail if t.kind != "head"], (0, c, 0), 0.0))
    return out


class Prediction(NamedTuple):
    total: float  # ms
    rows: dict[str, float]  # stem, stage1.., head (head conv), tail (pool + classifier + fixed cost)


def predict(model: LatencyModel, spec: Spec, classifier: bool = True) -> Prediction:
    """Predicted latency of a spec's network (ms), in total and per row (stem, stages, head, tail)."""
    fam = model.family(spec.stages[0].block, spec.act)
    per: dict[str, float] = {}
    try:
        for name, terms, (i, c, m), se in spec_terms(spec, classifier):
            per[name] = per.get(name, 0.0) + float(evaluate_terms(fam, terms, i, c, m, se))
    except LatencyModelError as e:
        raise LatencyModelError(f"{model.source + ': ' if model.source else ''}{e}") from None
    return Prediction(float(sum(per.values())), per)


def features(terms: Iterable[Term], i, c, m, se: float = 0.0) -> dict[tuple[str, str], float]:
    """Σ of each (kind, feature) over terms at the given channels (what calibration regresses on)."""
    out: dict[tuple[str, str], float] = {}
    for t in terms:
        key = (t.kind, t.feature)
        out[key] = out.get(key, 0.0) + float(_value(t, i, c, m, se) * _present(t, i, c, m))
    return out


__all__ = ["LatencyModel", "Family", "LatencyModelError", "Term", "block_terms", "stem_terms", "tail_terms",
           "stage_terms", "stage_tables", "stage_rows", "rows", "family_for", "parse_ms", "predict", "spec_terms", "features", "from_dict",
           "to_dict", "parse_margin", "FEATURES", "MODEL_VERSION", "describe_kind", "kind_group"]
