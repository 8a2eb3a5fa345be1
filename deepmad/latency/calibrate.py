"""Calibrate a latency model on this device: measure blocks of each family over a grid, fit the posynomial.

What is measured (``grid``), per block family (a block type with its activation, in its default layout of
``deepmad.core.presets``: kernels, strides, stem, head, SE ratio):

- blocks: for every (stride, input side) cell the layout meets at the calibrated resolutions (stride 2 at the
  sides of the stride-2 stages' inputs, stride 1 at every stage side) and every kernel, ``per_cell`` blocks:
  output channels log-uniform over a range that shrinks with the side (wide blocks at 7x7, narrow ones at
  112x112), mid channels over the family's whole ratio range, input channels from a quarter of the output up
  to it (a stage's first block) or equal (the others); mbconv blocks with and without squeeze-excitation;
- stems (3 -> c0 at the resolutions), head 1x1 convs and pool + classifier tails, a few of each;
- ``networks`` random whole networks of the family's space (``random_specs``) and ``designs`` designed ones
  (``design_specs``: what the search designs for the family's preset problem at other budgets and ρ0), to fit
  what the parts measured alone miss (``model.fit_family``);
- then, once a first model is fitted, ``refine`` more designs, each under a latency budget of a fraction of
  its FLOPs-only design's predicted latency (``refine_specs``), measured, and the model fitted again. A
  design is where an optimizer goes, and it goes where the model errs in its favour (the optimizer's curse):
  random networks alone do not look like designs (the FLOPs-only deepmad-r18 design, 6-11 thin bottlenecks
  a stage, ran 18% slower than such a model predicted).

Every item is built with seeded random weights and timed (``measure.measure_many``, interleaved in shuffled
chunks, so a slow spell of a shared machine spreads over all families) with the same settings the model is
for (device, backend, threads, batch, layout). Progress: a tqdm bar on stderr.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import numpy as np

from ..core import latency as lat, solver
from ..core.budget import Budget, Problem, Space, evaluate, in_space, to_spec
from ..core.presets import PRESETS
from ..core.result import Infeasible, NotFound
from ..core.spec import from_dict, out_resolution, to_dict
from . import measure as ms
from .model import LatencyModel, describe_fit, fit_family

DEFAULT_ACT = {"basic": "relu", "bottleneck": "relu", "mbconv": "silu"}
DEFAULT_FAMILIES = ("bottleneck", "mbconv", "basic")


@dataclass(frozen=True)
class Grid:
    """How much is measured."""

    name: str
    resolutions: tuple[int, ...]  # network input sides whose stage sides the blocks are measured at
    per_cell: int  # blocks per (stride, input side, kernel)
    networks: int  # random whole networks per family (0: none, no correction)
    designs: int  # designed networks per family (design_specs)
    refine: int  # designs under latency budgets per family, measured after a first fit (refine_specs)
    warmup: int
    runs: int
    width: float  # scale of the channel ranges (the tiny grid's blocks are small)
    macs: tuple[float, float]  # MACs range of the random networks, relative to the family's preset budget


GRIDS = {
    "tiny": Grid("tiny", (32,), 1, 2, 1, 1, 1, 2, 0.125, (0.3, 3.0)),  # CI: seconds; meaningless coefficients
    "small": Grid("small", (224,), 3, 8, 4, 4, 2, 6, 1.0, (0.3, 3.0)),
    "default": Grid("default", (224,), 8, 32, 16, 8, 2, 10, 1.0, (0.3, 3.0)),
}


def parse_families(text: str | Sequence[str] | None) -> list[tuple[str, str]]:
    """'bottleneck,mbconv:relu6' -> [(bottleneck, relu), (mbconv, relu6)] (default activations per block)."""
    from ..core.spec import ACTIVATIONS, BLOCKS

    items = DEFAULT_FAMILIES if text is None else (text.split(",") if isinstance(text, str) else text)
    out = []
    for item in items:
        block, _, act = str(item).strip().partition(":")
        if block not in BLOCKS:
            raise ValueError(f"families: expected block families among {', '.join(BLOCKS)} (optionally with "
                             f":activation), got {item!r}")
        act = act or DEFAULT_ACT[block]
        if act not in ACTIVATIONS:
            raise ValueError(f"families: {item!r}: expected an activation among {', '.join(ACTIVATIONS)}")
        if (block, act) not in out:
            out.append((block, act))
    if not out:
        raise ValueError("families: expected at least one block family")
    return out


def family_space(block: str, act: str, resolution: int = 224) -> Space:
    """The default layout of a family (the presets' spaces; basic blocks in the bottleneck layout)."""
    base = PRESETS["deepmad-mb"].space if block == "mbconv" else PRESETS["deepmad-r18"].space
    over: dict[str, Any] = dict(block=block, act=act, resolution=resolution)
    if block == "basic":
        over["ratio"] = (0.0, 1.0)
    return replace(base, **over)


def family_budget(block: str) -> float:
    """The MACs budget of the family's preset (deepmad-r18, deepmad-mb): the scale of its random networks."""
    return (PRESETS["deepmad-mb"] if block == "mbconv" else PRESETS["deepmad-r18"]).budget.flops


# ---------------------------------------------------------------------------------------------- items

@dataclass
class Item:
    """One thing to time: how to build it, its input, and its features (what the fit regresses on)."""

    family: tuple[str, str]
    role: str  # block | stem | head | tail | network
    label: str
    build: Callable[[], Any]
    shape: tuple[int, ...]
    features: dict
    spec: Any = None  # the spec of a network item
    ms: float = math.nan  # measured median
    timing: Any = None  # measure.Timing


MAX_BLOCK_MACS = 6e8  # blocks of the grid are narrowed below this many MACs (a few ms each on one core)


def _macs(terms, c_in, c, mid, se) -> float:
    return sum(v for (_, f), v in lat.features(terms, c_in, c, mid, se).items() if f == "macs")


def _round(x: float, step: int = 8, lo: int = 8) -> int:
    return int(max(lo, round(x / step) * step))


def _block_items(block: str, act: str, sp: Space, grid: Grid, rng: np.random.Generator, batch: int) -> list[Item]:
    from ..core.spec import Stage
    from ..models.net import make_block

    items = []
    cells = set()
    for res in grid.resolutions:
        r0, rs = replace(sp, resolution=res).resolutions()
        sides = [r0] + rs
        for i, s in enumerate(sp.strides):
            cells.add((s, sides[i]))
            cells.add((1, rs[i]))
    ses = (sp.se, 0.0) if sp.se > 0 else (0.0,)
    for stride, r_in in sorted(cells):
        wide = grid.width * (2048 if block != "mbconv" else 640) * min(1.0, 14 / r_in) ** 0.75
        for k in sp.kernels:
            for j in range(grid.per_cell):
                c = _round(math.exp(rng.uniform(math.log(16 * grid.width + 8), math.log(max(wide, 24)))))
                first = stride == 2 or j % 3 != 2  # a third of the stride-1 blocks are a stage's other blocks
                c_in = _round(c * rng.uniform(0.25, 1.0)) if first else c
                if stride == 1 and first and j % 3 == 1:
                    c_in = c  # a first block of a stride-1 stage that keeps the width (no projection / a residual)
                c_in = min(c_in, c)
                if block == "mbconv":
                    mid = _round(max(c, c_in) * rng.uniform(*sp.ratio) + 8)
                    se = ses[j % len(ses)] if len(ses) > 1 and j % 4 == 3 else sp.se
                elif block == "bottleneck":
                    mid = min(c, _round(c * math.exp(rng.uniform(math.log(1 / 16), 0.0))))
                    se = 0.0
                else:
                    mid, se = c, 0.0
                terms = lat.block_terms(block, k, stride, r_in, se, True)
                while c > 8 and _macs(terms, c_in, c, mid, se) > MAX_BLOCK_MACS * grid.width ** 2:
                    c, c_in, mid = (_round(0.85 * v) for v in (c, c_in, mid))  # keep every block quick to time
                    if block == "basic":
                        mid = c
                    elif block == "mbconv":
                        mid = max(mid, _round(sp.ratio[0] * c + 4))
                st = Stage(block, c, 1, stride=stride, kernel=k, mid=mid if block != "basic" else None, se=se)
                items.append(Item((block, act), "block", f"{block} {c_in}->{c} mid {mid} k{k} s{stride} @{r_in}",
                                  (lambda st=st, c_in=c_in, stride=stride: make_block(st, c_in, stride, act)),
                                  (batch, c_in, r_in, r_in), lat.features(terms, c_in, c, mid, se)))
    return items


def _other_items(block: str, act: str, sp: Space, grid: Grid, rng: np.random.Generator, batch: int) -> list[Item]:
    from torch import nn

    from ..models.layers import ConvBNAct

    items = []
    fam = (block, act)
    for res in grid.resolutions:
        r0, rs = replace(sp, resolution=res).resolutions()
        stems = [(sp.stem_kernel, sp.stem_stride, False)] + ([(7, 2, True)] if block != "mbconv" else [])
        for k, s, pool in stems:  # the layout's stem; ResNets' 7x7/2 stem with its max-pool for their families
            for j in range(max(2, grid.per_cell // (2 if pool else 1))):
                c0 = _round(rng.uniform(8, 64 * grid.width + 8))
                items.append(Item(fam, "stem", f"stem 3->{c0} k{k} s{s}{' + max-pool' if pool else ''} @{res}",
                                  (lambda c0=c0, k=k, s=s, pool=pool: nn.Sequential(
                                      ConvBNAct(3, c0, k, s, act=act), *([nn.MaxPool2d(3, 2, 1)] if pool else []))),
                                  (batch, 3, res, res), lat.features(lat.stem_terms(k, s, res, 3, pool), c0, 0, 0)))
        r = rs[-1]
        heads = [sp.head] if sp.head is not None else []
        for j in range(max(2, grid.per_cell // 2)):
            c = _round(math.exp(rng.uniform(math.log(32 * grid.width + 8), math.log(2048 * grid.width + 16))))
            for h in heads:
                terms = [t for t in lat.tail_terms(r, h, 0) if t.kind == "head"]
                items.append(Item(fam, "head", f"head {c}->{h} @{r}", (lambda c=c, h=h: ConvBNAct(c, h, 1, act=act)),
                                  (batch, c, r, r), lat.features(terms, 0, c, 0)))
            width = c if not heads or j % 2 else heads[0]
            nc = sp.num_classes
            terms = [t for t in lat.tail_terms(r, None, nc) if t.kind == "tail"]
            items.append(Item(fam, "tail", f"pool+classifier {width}->{nc} @{r}",
                              (lambda w=width, nc=nc: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                                                    nn.Linear(w, nc))),
                              (batch, width, r, r), lat.features(terms, 0, width, 0)))
    return items


def random_specs(sp: Space, count: int, seed: int, macs: tuple[float, float], max_depth: int = 6,
                 classifier: bool = True) -> list:
    """count random networks of space sp whose MACs lie in macs (absolute), as specs: channels growing stage to
    stage by random factors, mids over the family's whole ratio range, random kernels, depths 1..max_depth."""
    rng = np.random.default_rng(seed)
    n, step = sp.n, sp.step
    prob = Problem(sp, Budget(macs[1], 1e30, 1e9, classifier=classifier))
    out: list = []
    for _ in range(200):
        N = 4096
        grow = np.where(np.array(sp.strides) == 2, math.log(2.5), math.log(1.4))
        logc = np.log(rng.uniform(16, 128, N))[:, None] + np.cumsum(rng.uniform(0, 1, (N, n)) * grow, axis=1)
        logc += rng.uniform(-1.0, 1.5, N)[:, None]
        C = np.clip(np.round(np.exp(logc) / step) * step, step, sp.max_channels)
        C = np.maximum.accumulate(C, axis=1)
        X = np.zeros((N, 4 * n + 1))
        X[:, 1:n + 1] = C
        X[:, 0] = np.minimum(np.round(rng.uniform(*sp.stem_channels, N) / step) * step, C[:, 0])
        X[:, 0] = np.clip(X[:, 0], *sp.stem_channels)
        if sp.has_mid:
            if sp.block == "mbconv":
                r = rng.uniform(*sp.ratio, (N, n))
            else:
                r = np.exp(rng.uniform(math.log(1 / 16), math.log(max(sp.ratio[1], 1 / 16)), (N, n)))
            lo_m = np.ceil(sp.ratio[0] * C / step - 1e-9) * step
            hi_m = np.floor(sp.ratio[1] * C / step + 1e-9) * step
            X[:, n + 1:2 * n + 1] = np.clip(np.round(r * C / step) * step, np.maximum(lo_m, step), hi_m)
        X[:, 2 * n + 1:3 * n + 1] = rng.choice(sp.kernels, (N, n))
        X[:, 3 * n + 1:] = rng.integers(1, max_depth + 1, (N, n))
        X = X.astype(np.int64)
        s = evaluate(prob, X)
        ok = in_space(prob, X) & (s.macs >= macs[0]) & (s.macs <= macs[1])
        for x in X[ok]:
            if len(out) == count:
                return out
            out.append(to_spec(prob, x, name=f"random-{sp.block}-{seed}-{len(out)}"))
    if len(out) < count:
        raise ValueError(f"random_specs: found only {len(out)} networks of {count} in the MACs range {macs}")
    return out


DESIGN_RHO = {"bottleneck": (0.3, 0.1, 0.5, 0.7), "basic": (0.3, 0.1, 0.5, 0.7), "mbconv": (0.5, 0.3, 1.0, 1.5)}
DESIGN_FLOOR = {"mbconv": 0.5}  # least budget scale with designs at every ρ0 (mbconv: the 1280-wide head's params)
REFINE_FRACTIONS = (0.75, 0.6, 0.9)  # latency budgets of refine_specs, times the FLOPs-only design's prediction
REFINED = "refine-"  # the name of a refine_specs design starts so (their held-out errors give the design margin)


def family_problem(block: str, act: str, resolution: int, scale: float, rho0: float, latency: float | None = None,
                   model: Any = None) -> Problem:
    """The family's preset problem (deepmad-r18's for bottleneck and basic blocks, deepmad-mb's for mbconv) in
    its default layout at another resolution, with FLOPs and params times scale (FLOPs also times the
    resolution's area), ρ0 = rho0, and optionally a latency budget under model."""
    base = (PRESETS["deepmad-mb"] if block == "mbconv" else PRESETS["deepmad-r18"]).budget
    b = replace(base, flops=base.flops * scale * (resolution / 224) ** 2, params=base.params * scale, rho0=rho0,
                latency=latency, latency_model=model)
    return Problem(family_space(block, act, resolution), b, name=f"calibration-{block}")


def _search(prob: Problem):
    try:
        return solver.solve(prob, n_starts=3, kicks=2)
    except (Infeasible, NotFound):
        return None


def _scales(block: str, count: int, macs: tuple[float, float]) -> np.ndarray:
    """count budget scales spaced evenly in log over macs (from DESIGN_FLOOR[block] at least)."""
    lo, hi = math.log(max(macs[0], DESIGN_FLOOR.get(block, 0.0))), math.log(macs[1])
    return np.exp(np.linspace(lo, hi, count) if count > 1 else [(lo + hi) / 2])


def design_specs(block: str, act: str, count: int, macs: tuple[float, float], resolution: int = 224) -> list:
    """count designs (the search's, no proof: ``solver.solve``) of the family's preset problem
    (``family_problem``) at FLOPs scales spaced evenly in log over macs (``_scales``), ρ0 cycling over
    DESIGN_RHO[block]: networks that look like the ones users design (deep stages, thin mids, the widest last stage)."""
    out = []
    for j, f in enumerate(_scales(block, count, macs)):
        d = _search(family_problem(block, act, resolution, float(f), DESIGN_RHO[block][j % len(DESIGN_RHO[block])]))
        if d is not None:
            out.append(replace(d.spec, name=f"design-{block}-{j}"))
    return out


def refine_specs(model: LatencyModel, block: str, act: str, count: int, macs: tuple[float, float],
                 resolution: int = 224) -> list:
    """count designs under latency budgets: at FLOPs scales spaced evenly in log over macs and ρ0 cycling over
    DESIGN_RHO[block], the budget is a fraction (REFINE_FRACTIONS, cycling) of the FLOPs-only design's latency
    as model predicts it (``family_problem``, ``solver.solve``)."""
    out = []
    rhos = DESIGN_RHO[block]
    for j, f in enumerate(_scales(block, count, macs)):
        free = _search(family_problem(block, act, resolution, float(f), rhos[j % len(rhos)]))
        if free is None:
            continue
        budget = REFINE_FRACTIONS[j % len(REFINE_FRACTIONS)] * lat.predict(model, free.spec).total
        d = _search(family_problem(block, act, resolution, float(f), rhos[j % len(rhos)], budget, model))
        if d is not None:
            out.append(replace(d.spec, name=f"{REFINED}{block}-{j}"))
    return out


def _spec_items(block: str, act: str, specs: Sequence, batch: int) -> list[Item]:
    from .measure import build

    items = []
    for spec in specs:
        f: dict = {}
        for _, terms, (i, c, m), se in lat.spec_terms(spec):
            for key, v in lat.features(terms, i, c, m, se).items():
                f[key] = f.get(key, 0.0) + v
        items.append(Item((block, act), "network", spec.name, (lambda spec=spec: build(spec)),
                          ms.input_shape(spec, batch), f, spec))
    return items


def _network_items(block: str, act: str, sp: Space, grid: Grid, seed: int, batch: int) -> list[Item]:
    items = []
    per_res = max(1, grid.networks // len(grid.resolutions))
    for res in grid.resolutions:
        scale = family_budget(block) * (res / 224) ** 2
        if grid.networks:
            items += _spec_items(block, act, random_specs(replace(sp, resolution=res), per_res, seed,
                                                          (grid.macs[0] * scale, grid.macs[1] * scale),
                                                          max_depth=2 if grid.name == "tiny" else 6), batch)
        if grid.designs:
            items += _spec_items(block, act, design_specs(block, act, max(1, grid.designs // len(grid.resolutions)),
                                                          grid.macs, res), batch)
    return items


def items_for(families: Sequence[tuple[str, str]], grid: Grid, seed: int, batch: int) -> list[Item]:
    """Everything calibration measures, per family (see the module docstring)."""
    out = []
    for j, (block, act) in enumerate(families):
        sp = family_space(block, act, grid.resolutions[0])
        rng = np.random.default_rng([seed, j])
        out += _block_items(block, act, sp, grid, rng, batch)
        out += _other_items(block, act, sp, grid, rng, batch)
        out += _network_items(block, act, sp, grid, seed * 1000 + 17 + j, batch)
    return out


# ---------------------------------------------------------------------------------------------- calibrate

DRIFT_REFERENCE = ("resnet18", 112)  # the network timed with every chunk (a reference network, input side)


def drift_reference():
    """The spec timed first in every chunk of a calibration, and with whatever is timed against a model later
    (``speed``): ResNet-18 at 112x112 (a few ms on one core; every kind of layer a bottleneck network has)."""
    from ..core.reference import reference

    name, side = DRIFT_REFERENCE
    return replace(reference(name), resolution=side, name=f"{name}@{side}")


def _timed_with_reference(ref_run, runs: list, settings: ms.Settings, rounds: int,
                          progress: Callable[[int], None] | None, statistic: str = "median") -> tuple[float, list]:
    """runs timed interleaved (``measure.measure_many``) with the drift reference ref_run first and in their
    middle: the reference's statistic (median or min) over both, and the timings of runs."""
    h = len(runs) // 2
    tm = ms.measure_many([ref_run] + runs[:h] + [ref_run] + runs[h:], settings, rounds=rounds, progress=progress)
    return ms.Timing(tm[0].samples + tm[h + 1].samples).value(statistic), tm[1:h + 1] + tm[h + 2:]


def measure_items(items: Sequence[Item], settings: ms.Settings, seed: int = 0, progress: bool = True,
                  chunk: int = 32, level: float | None = None, statistic: str = "median") -> dict:
    """Time every item (its ``timing`` and ``ms``): in a seeded shuffled order, interleaved in chunks
    (``measure.measure_many``), each item built just before its chunk runs, the drift reference first and in
    the middle of each.

    A shared machine's speed drifts by tens of percent within minutes, slowly against a chunk's few seconds: an
    item's ``ms`` is its median (or min: ``statistic``) over its chunk's speed, the reference's there over ``level``
    (default: the median of the chunks' reference values), so every item is in the units of one speed. Returns
    ``{"spec", "ms": level, "chunks", "speed": [least, most]}``, what the model file keeps as its reference."""
    from ..progress import bar as progress_bar

    order = np.random.default_rng(seed).permutation(len(items))
    rounds = max(1, min(3, settings.runs))
    ref = drift_reference()
    ref_run = (ms.build(ref), ms.input_shape(ref, settings.batch))  # built once, timed twice in every chunk
    bar = progress_bar(total=(len(items) + 2 * math.ceil(len(items) / chunk)) * rounds, desc="calibrating",
                       unit="item", enabled=progress)
    chunks = []
    try:
        for a in range(0, len(order), chunk):
            part = [items[j] for j in order[a:a + chunk]]
            r, timings = _timed_with_reference(ref_run, [(it.build(), it.shape) for it in part], settings, rounds,
                                               bar.update, statistic)
            chunks.append((part, r, timings))
    finally:
        bar.close()
    level = float(np.median([r for _, r, _ in chunks])) if level is None else level
    for part, r, timings in chunks:
        for it, tm in zip(part, timings):
            it.timing, it.ms = tm, tm.value(statistic) * level / r
    speeds = [r / level for _, r, _ in chunks]
    return {"spec": to_dict(ref), "ms": level, "chunks": len(chunks), "speed": [min(speeds), max(speeds)]}


def fit_items(items: Sequence[Item], families: Sequence[tuple[str, str]],
              log: Callable[[str], None] | None = None) -> tuple[list, dict]:
    """Every family's coefficients and fit record from measured items (``model.fit_family``)."""
    out, fits = [], {}
    for block, act in families:
        mine = [it for it in items if it.family == (block, act)]
        parts = [(it.features, it.ms) for it in mine if it.role != "network"]
        nets = [it for it in mine if it.role == "network"]
        fam, record = fit_family(block, act, parts, [(it.spec, it.features, it.ms) for it in nets],
                                 [it.spec.name.startswith(REFINED) for it in nets])
        out.append(fam)
        fits[f"{block}:{act}"] = record
        if log is not None:
            log(f"{block} ({act}): {describe_fit(record)}")
    return out, fits


ANCHORS = 4  # networks per family whose measured latency the model file keeps, to tell the device's drift later


def speed(model: LatencyModel, settings: ms.Settings, others: Sequence = (), rounds: int = 3,
          chunk: int = 8, progress: Callable[[int], None] | None = None) -> tuple[float, list, list[float]]:
    """How fast the device runs now against when the model was calibrated, for each of the specs ``others``
    timed now: they are timed in chunks of ``chunk``, the model's drift reference first and in the middle of
    each (as ``measure_items`` did); a spec's speed is its chunk's reference value (the model's ``statistic`` of
    its runs, as for everything timed) over the model's level (1.1: 10% slower than at calibration), and its
    latency measured now, over that speed, is in the model's units. Returns the median speed (with no others: of
    the reference timed alone), the timings of others and their speeds; ``progress(k)`` as in
    ``measure.measure_many``. A model file without a reference uses its anchor networks (``ANCHORS`` a family),
    timed with all of others: one speed for them all (nan without anchors)."""
    others = list(others)
    stat = model.statistic
    ref = model.meta.get("reference")
    if ref:
        spec = from_dict(ref["spec"])
        ref_run = (ms.build(spec), ms.input_shape(spec, settings.batch))
        level = float(ref["ms"])
        timings: list = []
        factors: list[float] = []
        for a in range(0, max(1, len(others)), chunk):
            part = others[a:a + chunk]
            r, tm = _timed_with_reference(ref_run, [(ms.build(s), ms.input_shape(s, settings.batch)) for s in part],
                                          settings, rounds, progress, stat)
            timings += tm
            factors += [r / level] * max(1, len(part))
        return float(np.median(factors)), timings, factors[:len(others)]
    anchors = model.meta.get("anchors") or []
    specs = [from_dict(a["spec"]) for a in anchors] + others
    timings = ms.measure_many([(ms.build(s), ms.input_shape(s, settings.batch)) for s in specs], settings,
                              rounds=rounds, progress=progress)
    now = np.array([t.value(stat) for t in timings[:len(anchors)]])
    then = np.array([float(a["ms"]) for a in anchors])
    factor = float(np.median(now / then)) if len(anchors) else math.nan
    return factor, timings[len(anchors):], [factor] * len(others)


def calibrate(settings: ms.Settings, families: Sequence[tuple[str, str]] | str | None = None,
              grid: str | Grid = "default", seed: int = 0, progress: bool = True, chunk: int = 32,
              runs: int | None = None, warmup: int | None = None, statistic: str = "median",
              log: Callable[[str], None] | None = None) -> LatencyModel:
    """Measure the grid on this device with settings (device, backend, threads, batch, layout) and fit a model
    of every family (module docstring). runs / warmup: timed and untimed runs per item (default: the grid's).
    statistic: what is fitted of an item's runs, their median (default) or their minimum (``measure.STATISTICS``;
    the file records it, and ``speed`` and ``deepmad bench`` compare with it). progress: a tqdm bar on stderr.
    Deterministic in what is measured (seed); the timings are the device's."""
    if statistic not in ms.STATISTICS:
        raise ValueError(f"statistic: expected one of {', '.join(ms.STATISTICS)}, got {statistic!r}")
    fams = list(families) if isinstance(families, list) else parse_families(families)
    if isinstance(grid, str) and grid not in GRIDS:
        raise ValueError(f"grid: expected one of {', '.join(GRIDS)}, got {grid!r}")
    g = GRIDS[grid] if isinstance(grid, str) else grid
    settings = replace(settings, runs=g.runs if runs is None else runs, warmup=g.warmup if warmup is None else warmup)
    ms.check_device(settings)
    t0 = time.perf_counter()
    load0 = ms.load_average()
    items = items_for(fams, g, seed, settings.batch)
    reference = measure_items(items, settings, seed, progress, chunk, statistic=statistic)
    out, fits = fit_items(items, fams, None if g.refine else log)
    if g.refine:  # designs under latency budgets of the first model, measured, and the model fitted again
        first = LatencyModel(tuple(out))
        more = []
        for block, act in fams:
            for res in g.resolutions:
                specs = refine_specs(first, block, act, max(1, g.refine // len(g.resolutions)), g.macs, res)
                more += _spec_items(block, act, specs, settings.batch)
        more_ref = measure_items(more, settings, seed + 1, progress, chunk, reference["ms"], statistic)
        reference["chunks"] += more_ref["chunks"]
        reference["speed"] = [min(reference["speed"][0], more_ref["speed"][0]),
                              max(reference["speed"][1], more_ref["speed"][1])]
        items += more
        out, fits = fit_items(items, fams, log)
    env = ms.environment(settings)
    anchors = [{"family": f"{it.family[0]}:{it.family[1]}", "spec": to_dict(it.spec), "ms": it.ms}
               for fam in fams for it in [x for x in items if x.family == fam and x.role == "network"][:ANCHORS]]
    meta = {"environment": env, "grid": {"name": g.name, "resolutions": list(g.resolutions), "per_cell": g.per_cell,
                                         "networks": g.networks, "designs": g.designs, "refine": g.refine, "seed": seed,
                                         "items": len(items)},
            "measure": {"warmup": settings.warmup, "runs": settings.runs, "statistic": statistic},
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": round(time.perf_counter() - t0, 1),
            "load_average": [load0, ms.load_average()], "reference": reference, "anchors": anchors, "fits": fits}
    return LatencyModel(tuple(out), meta)


__all__ = ["calibrate", "GRIDS", "Grid", "parse_families", "family_space", "family_budget", "family_problem",
           "random_specs", "design_specs", "refine_specs", "speed", "ANCHORS", "drift_reference",
           "items_for", "DEFAULT_FAMILIES", "DEFAULT_ACT"]
