"""What several test files share: random valid specs and random small design problems for the property-based
tests, and the independent layer-by-layer recount of a design.

A plain module, not a test file: pytest puts tests/ on the path (``pythonpath`` in pyproject.toml), since under
``--import-mode=importlib`` test files cannot import each other."""
from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import strategies as st

from deepmad.core import blocks, theory, tinynas
from deepmad.core.budget import Budget, Problem, Space, bounds, evaluate, in_space
from deepmad.core.presets import PRESETS, RELEASED_NAME
from deepmad.core.spec import ACTIVATIONS, BLOCKS, Spec, Stage, Stem
from deepmad.core.theory import BETA


def _space(block: str, **kw) -> Space:
    extra = {"ratio": (1.5, 4.0), "se": 0.25} if block == "mbconv" else {}
    return Space(block=block, **kw, **extra)


def small_space(max_depth: int = 4) -> st.SearchStrategy[Space]:
    """Spaces of 2-3 stages, up to 128 channels and max_depth blocks a stage, of every block family."""
    return st.builds(
        _space,
        block=st.sampled_from(["basic", "bottleneck", "mbconv"]),
        strides=st.lists(st.sampled_from([1, 2]), min_size=2, max_size=3).map(tuple),
        resolution=st.sampled_from([32, 64]),
        stem_channels=st.just((8, 16)),
        kernels=st.sampled_from([(3,), (3, 5)]),
        max_depth=st.integers(1, max_depth),
        max_channels=st.sampled_from([64, 128]),
        num_classes=st.sampled_from([0, 10]),
        head=st.sampled_from([None, 96]),
    )


def tiny_space() -> st.SearchStrategy[Space]:
    """Spaces small enough to enumerate (at most ~10^5 rows): 2 stages, 8-40 channels, up to 3 blocks a stage,
    every block family, strides 1/2, one or two kernels, an optional head and classifier."""
    def build(block: str, **kw) -> Space:
        extra = {"ratio": (1.5, 2.5), "se": 0.25} if block == "mbconv" else {}
        return Space(block=block, **kw, **extra)

    return st.builds(
        build,
        block=st.sampled_from(["basic", "bottleneck", "mbconv"]),
        strides=st.lists(st.sampled_from([1, 2]), min_size=2, max_size=2).map(tuple),
        resolution=st.sampled_from([16, 32]),
        stem_channels=st.just((8, 16)),
        kernels=st.sampled_from([(3,), (3, 5)]),
        max_depth=st.integers(1, 3),
        max_channels=st.sampled_from([24, 32, 40]),
        num_classes=st.sampled_from([0, 10]),
        head=st.sampled_from([None, 32]),
    )


def all_rows(problem: Problem) -> np.ndarray:
    """Every row of a small space (brute force), ordered or not (``in_space`` applies the space's rules)."""
    sp = problem.space
    n = sp.n
    chans = range(sp.step, sp.max_channels + 1, sp.step)
    stem = range(sp.stem_channels[0], sp.stem_channels[1] + 1, sp.step)
    hi_mid = int(bounds(problem)[1][n + 1])
    mids = range(sp.step, hi_mid + 1, sp.step) if sp.has_mid else [0]
    grids = [stem] + [chans] * n + [mids] * n + [sp.kernels] * n + [range(1, sp.max_depth + 1)] * n
    X = np.array(list(itertools.product(*grids)), dtype=np.int64)
    return X[in_space(problem, X)]


def brute_force(problem: Problem, X: np.ndarray | None = None) -> float:
    X = all_rows(problem) if X is None else X
    s = evaluate(problem, X)
    return float(s.objective[s.feasible].max()) if s.feasible.any() else -math.inf


def tiny(block: str, flops: float, params: float, rho0: float, **kw) -> Problem:
    base = dict(strides=(2, 2), resolution=32, stem_channels=(8, 16), kernels=(3, 5), max_depth=3,
                max_channels=40, num_classes=10)
    if block == "mbconv":
        base.update(ratio=(1.5, 3.0), se=0.25, act="silu")
    elif block == "bottleneck":
        base.update(ratio=(0.0, 1.0))
    base.update(kw)
    return Problem(Space(block, **base), Budget(flops, params, rho0))


def budgeted(space: Space, scale: float, rho0: float, classifier: bool = True, beta: float = BETA) -> Problem:
    """Budgets: the cheapest-ish point of the space, scaled up."""
    probe = Problem(space, Budget(1e30, 1e30, 1e9, classifier=classifier))
    lo = np.array([8] + [8] * space.n + [16 if space.block == "mbconv" else (8 if space.has_mid else 0)] * space.n
                  + [3] * space.n + [1] * space.n)
    s = evaluate(probe, lo[None])
    return Problem(space, Budget(float(s.macs[0]) * (1 + 4 * scale), float(s.params[0]) * (1 + 4 * scale), rho0,
                                 classifier=classifier, beta=beta))


def recheck(problem: Problem, spec) -> dict:
    """Constraints and objective recomputed from the spec, layer by layer."""
    convs = blocks.convs(spec)
    if not problem.budget.classifier:
        convs = [c for c in convs if c.role != "classifier"]
    units = blocks.units(spec)
    return {
        "macs": sum(c.macs for c in convs),
        "params": sum(c.params for c in convs),
        "rho": theory.rho_max(units),
        "objective": theory.objective(units, [s.depth for s in spec.stages], problem.alpha,
                                      problem.budget.beta),
        "ordered": all(a <= b for a, b in zip([spec.stem.channels] + [s.channels for s in spec.stages],
                                              [s.channels for s in spec.stages])),
    }


def released_objective(name: str) -> float:
    """The objective of the authors' released structure of preset name, scored by our program."""
    spec = tinynas.to_spec(tinynas.released(RELEASED_NAME[name]))
    return theory.objective(blocks.units(spec), [s.depth for s in spec.stages], PRESETS[name].alpha)


# ---------------------------------------------------------------------------------------------- specs

KERNELS = st.sampled_from([1, 3, 5, 7])
STRIDES = st.sampled_from([1, 2])


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def stage_for(draw, c_in: int, block: str | None = None) -> Stage:
    """A random stage that is valid after a block input of c_in channels."""
    block = block or draw(st.sampled_from(BLOCKS))
    channels = draw(st.integers(1, 256))
    depth = draw(st.integers(1, 4))
    stride, kernel = draw(STRIDES), draw(KERNELS)
    mid = expand = None
    groups, se = 1, 0.0
    if block == "basic":
        groups = draw(st.sampled_from(divisors(math.gcd(c_in, channels))))
    elif block == "bottleneck":
        mid = draw(st.integers(1, 256))
        groups = draw(st.sampled_from(divisors(mid)))
    else:
        if draw(st.booleans()):
            mid = draw(st.integers(1, 512))
        else:
            expand = draw(st.one_of(st.sampled_from([1.0, 4.0, 6.0]), st.floats(1.0, 8.0)))
        se = draw(st.one_of(st.just(0.0), st.just(0.25), st.floats(0.0, 1.0)))
    return Stage(block, channels, depth, stride=stride, kernel=kernel, mid=mid, expand=expand,
                 groups=groups, se=se)


@st.composite
def valid_specs(draw, max_stages: int = 4, names: bool = False) -> Spec:
    """Random valid specs: every block family, strides 1/2, kernels 1/3/5/7, mid or expand, SE, groups
    dividing the channels they group, optional head, num_classes 0 or more."""
    stem = Stem(draw(st.integers(1, 64)), draw(KERNELS), draw(STRIDES), draw(st.booleans()))
    stages, c_in = [], stem.channels
    for _ in range(draw(st.integers(1, max_stages))):
        s = draw(stage_for(c_in))
        stages.append(s)
        c_in = s.channels
    return Spec(
        resolution=draw(st.integers(1, 320)),
        stem=stem,
        stages=tuple(stages),
        head=draw(st.one_of(st.none(), st.integers(1, 512))),
        num_classes=draw(st.one_of(st.just(0), st.integers(1, 1000))),
        in_channels=draw(st.integers(1, 4)),
        act=draw(st.sampled_from(ACTIVATIONS)),
        name=draw(st.text(max_size=24)) if names else draw(st.sampled_from(["", "net", "deepmad-r18"])),
    )


# ---------------------------------------------------------------------------------------------- round trips
