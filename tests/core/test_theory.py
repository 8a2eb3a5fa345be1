"""deepmad.core.theory: Eq. 2-5 by hand on tiny networks, the solver notes' reference instance, and properties."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deepmad.core import blocks, theory
from deepmad.core.spec import Spec, Stage, Stem

from shared import valid_specs

SETTINGS = settings(max_examples=100, deadline=None)
log = math.log


# ---------------------------------------------------------------------------------------------- by hand

def tiny_two_scales() -> Spec:
    """8 px: stem 3x3 s2 -> 4 ch @4; basic 8 ch x2 s2 @2; bottleneck 16 (mid 4) @2; head 32 @2."""
    return Spec(8, Stem(4, kernel=3, stride=2), (
        Stage("basic", 8, 2, stride=2, kernel=3),
        Stage("bottleneck", 16, 1, stride=1, kernel=3, mid=4),
    ), head=32, num_classes=10)


def test_tiny_two_scales_by_hand():
    us = blocks.units(tiny_two_scales())
    # widths c_in * k^2 / g of every main-path layer, in order
    assert [u.widths for u in us] == [(27,), (36, 72), (72, 72), (8, 36, 4), (16,)]
    s1 = log(27)
    s2 = log(27) + log(36) + 3 * log(72) + log(8) + log(36) + log(4) + log(16)
    sc = theory.scales(us)
    assert [(x.end, x.resolution, x.channels, x.layers) for x in sc] == [(0, 4, 4, 1), (4, 2, 32, 9)]
    assert sc[0].logw == pytest.approx(s1, rel=1e-12)
    assert sc[1].logw == pytest.approx(s2, rel=1e-12)
    h1 = log(4**2 * 4) * s1
    h2 = log(2**2 * 32) * s2
    assert sc[0].entropy == pytest.approx(h1, rel=1e-12)
    assert sc[1].entropy == pytest.approx(h2, rel=1e-12)
    assert theory.default_alpha(2) == (1.0, 8.0)
    assert theory.entropy(us) == pytest.approx(h1 + 8 * h2, rel=1e-12)
    assert theory.entropy(us, (2.0, 0.5)) == pytest.approx(2 * h1 + 0.5 * h2, rel=1e-12)
    rho = 9 / math.exp(s2 / 9)
    assert theory.rho(us) == pytest.approx(rho, rel=1e-12)
    assert sc[0].rho == pytest.approx(1 / 27, rel=1e-12)
    assert theory.rho_max(us) == pytest.approx(max(1 / 27, rho), rel=1e-12)
    # depths (2, 1): mean 1.5, population variance 0.25
    q = 10 * math.exp(0.25)
    assert theory.depth_penalty((2, 1)) == pytest.approx(q, rel=1e-12)
    assert theory.objective(us, (2, 1)) == pytest.approx(h1 + 8 * h2 - q, rel=1e-12)
    assert theory.objective(us, (2, 1), alpha=(1.0, 1.0), beta=3.0) == pytest.approx(
        h1 + h2 - 3 * math.exp(0.25), rel=1e-12)


def tiny_three_scales() -> Spec:
    """32 px: stem 3x3 s2 -> 8 ch @16 then max-pool -> @8; basic 8 @8; mbconv 16 x2 (expand 2, SE) s2 @4."""
    return Spec(32, Stem(8, kernel=3, stride=2, pool=True), (
        Stage("basic", 8, 1, stride=1, kernel=3),
        Stage("mbconv", 16, 2, stride=2, kernel=3, expand=2.0, se=0.25),
    ), num_classes=0)


def test_tiny_three_scales_by_hand():
    """Scales split where the resolution changes; the stem's scale ends at its conv, before the pool."""
    us = blocks.units(tiny_three_scales())
    assert [u.widths for u in us] == [(27,), (72, 72), (8, 9, 16), (16, 9, 32)]
    assert [u.resolution for u in us] == [16, 8, 4, 4]
    sc = theory.scales(us)
    assert [(x.end, x.resolution, x.channels, x.layers) for x in sc] == [(0, 16, 8, 1), (1, 8, 8, 3),
                                                                         (3, 4, 16, 9)]
    s = [log(27), log(27) + 2 * log(72),
         log(27) + 2 * log(72) + log(8) + log(9) + log(16) + log(16) + log(9) + log(32)]
    h = [log(16**2 * 8) * s[0], log(8**2 * 8) * s[1], log(4**2 * 16) * s[2]]
    for x, sj, hj in zip(sc, s, h):
        assert x.logw == pytest.approx(sj, rel=1e-12)
        assert x.entropy == pytest.approx(hj, rel=1e-12)
    assert theory.entropy(us) == pytest.approx(h[0] + h[1] + 8 * h[2], rel=1e-12)
    assert theory.entropy(us, [0.5, 2, 3]) == pytest.approx(0.5 * h[0] + 2 * h[1] + 3 * h[2], rel=1e-12)
    rhos = [1 / 27, 3 / math.exp(s[1] / 3), 9 / math.exp(s[2] / 9)]
    assert [x.rho for x in sc] == pytest.approx(rhos, rel=1e-12)
    assert theory.rho(us) == pytest.approx(rhos[2], rel=1e-12)
    assert theory.rho_max(us) == pytest.approx(max(rhos), rel=1e-12)
    # depths (1, 2): population variance 0.25
    assert theory.objective(us, (1, 2)) == pytest.approx(sum(h[:2]) + 8 * h[2] - 10 * math.exp(0.25), rel=1e-12)


def test_prefixes():
    us = blocks.units(tiny_three_scales())
    pre = theory.prefixes(us)
    assert [n for n, _ in pre] == [1, 3, 6, 9]
    assert pre[1][1] == pytest.approx(log(27) + 2 * log(72))


def test_effectiveness_formula():
    assert theory.effectiveness(4, 4 * log(10)) == pytest.approx(0.4)
    assert theory.effectiveness(1, log(27)) == pytest.approx(1 / 27)
    # geometric mean of widths 2 and 8 is 4: rho = 2 / 4
    assert theory.effectiveness(2, log(2) + log(8)) == pytest.approx(0.5)


@pytest.mark.parametrize("depths,var", [((3, 3, 3), 0.0), ((2, 1), 0.25), ((1, 2, 3), 2 / 3),
                                        ((5, 9, 9, 11), 4.75), ((1, 1, 1, 5), 3.0), ((7,), 0.0)])
def test_depth_penalty_population_variance(depths, var):
    assert theory.depth_penalty(depths) == pytest.approx(10 * math.exp(var), rel=1e-12)
    assert theory.depth_penalty(depths, beta=2.5) == pytest.approx(2.5 * math.exp(var), rel=1e-12)
    assert theory.BETA == 10.0


@pytest.mark.parametrize("n,alpha", [(1, (8.0,)), (2, (1.0, 8.0)), (5, (1.0, 1.0, 1.0, 1.0, 8.0))])
def test_default_alpha(n, alpha):
    assert theory.default_alpha(n) == alpha


@pytest.mark.parametrize("alpha", [(1.0,), (1.0, 1.0), (1, 1, 1, 1), ()])
def test_wrong_alpha_length(alpha):
    us = blocks.units(tiny_three_scales())  # three scales
    with pytest.raises(ValueError, match="alpha"):
        theory.entropy(us, alpha)
    with pytest.raises(ValueError, match="alpha"):
        theory.objective(us, (1, 2), alpha)


# ---------------------------------------------------------------------------------------------- solver notes

def solver_notes_instance() -> Spec:
    """The reference instance of shared/docs/solver-notes.md, written out literally."""
    return Spec(
        resolution=224,
        stem=Stem(channels=32, kernel=3, stride=2, pool=False),
        stages=(
            Stage("bottleneck", channels=312, depth=5, stride=2, kernel=5, mid=16),
            Stage("bottleneck", channels=352, depth=9, stride=2, kernel=5, mid=40),
            Stage("bottleneck", channels=632, depth=9, stride=2, kernel=5, mid=88),
            Stage("bottleneck", channels=1632, depth=11, stride=2, kernel=5, mid=88),
        ),
        head=None,
        num_classes=1000,
    )


def test_solver_notes_reference_instance():
    s = solver_notes_instance()
    us = blocks.units(s)
    c = blocks.cost(s)
    assert c.macs == 1_794_868_928
    assert c.params == 11_688_296
    assert c.layers == 1 + 3 * (5 + 9 + 9 + 11)
    assert c.macs <= 1.82e9 and c.params <= 11.69e6
    assert theory.rho(us) == pytest.approx(0.2955, abs=1e-4)
    assert theory.rho(us) <= 0.3
    sc = theory.scales(us)
    assert [(x.resolution, x.channels) for x in sc] == [(112, 32), (56, 312), (28, 352), (14, 632), (7, 1632)]
    assert theory.objective(us, (5, 9, 9, 11)) == pytest.approx(61687.476, abs=0.01)
    assert theory.objective(us, (5, 9, 9, 11), alpha=(1, 1, 1, 1, 8), beta=10.0) == pytest.approx(
        61687.476, abs=0.01)


# ---------------------------------------------------------------------------------------------- properties

def _with_stage(spec: Spec, i: int, **changes) -> Spec:
    stages = list(spec.stages)
    stages[i] = replace(stages[i], **changes)
    return replace(spec, stages=tuple(stages))


@SETTINGS
@given(valid_specs(), st.data())
def test_entropy_increases_with_depth(spec, data):
    i = data.draw(st.integers(0, len(spec.stages) - 1))
    deeper = _with_stage(spec, i, depth=spec.stages[i].depth + 1)
    before, after = blocks.units(spec), blocks.units(deeper)
    assert len(theory.scales(after)) == len(theory.scales(before))
    h0, h1 = theory.entropy(before), theory.entropy(after)
    assert h1 >= h0 - 1e-9 * abs(h0)
    added = blocks.cost(deeper).logw - blocks.cost(spec).logw
    last = theory.scales(after)[-1]
    if added > 1e-9 and last.resolution**2 * last.channels > 1:
        assert h1 > h0


@SETTINGS
@given(valid_specs(), st.data())
def test_entropy_increases_with_width(spec, data):
    """Widening a stage (its channels, or its mid channels) never lowers the entropy while the layer
    structure stays the same (an mbconv expand conv appears/disappears when mid meets the input width)."""
    i = data.draw(st.integers(0, len(spec.stages) - 1))
    m = data.draw(st.sampled_from([2, 3]))
    s = spec.stages[i]
    field = data.draw(st.sampled_from(["channels", "mid"] if s.mid is not None else ["channels"]))
    wider = _with_stage(spec, i, **{field: getattr(s, field) * m})
    before, after = blocks.units(spec), blocks.units(wider)
    assume([len(u.widths) for u in before] == [len(u.widths) for u in after])
    h0, h1 = theory.entropy(before), theory.entropy(after)
    assert h1 >= h0 - 1e-9 * abs(h0)


@SETTINGS
@given(valid_specs())
def test_rho_max_at_least_rho(spec):
    us = blocks.units(spec)
    sc = theory.scales(us)
    assert theory.rho_max(us) >= theory.rho(us)
    assert theory.rho_max(us) == max(x.rho for x in sc)
    assert theory.rho(us) == sc[-1].rho
    c = blocks.cost(spec)
    assert theory.rho(us) == pytest.approx(theory.effectiveness(c.layers, c.logw), rel=1e-9)


@SETTINGS
@given(valid_specs())
def test_scales_are_runs_of_equal_resolution(spec):
    us = blocks.units(spec)
    sc = theory.scales(us)
    assert sc[-1].end == len(us) - 1
    changes = sum(1 for a, b in zip(us, us[1:]) if a.resolution != b.resolution)
    assert len(sc) == changes + 1
    starts = [0] + [x.end + 1 for x in sc[:-1]]
    for start, x in zip(starts, sc):
        assert {u.resolution for u in us[start:x.end + 1]} == {x.resolution}
        assert x.channels == us[x.end].channels
    assert all(a.resolution != b.resolution for a, b in zip(sc, sc[1:]))
    assert all(a.layers < b.layers and a.logw <= b.logw + 1e-12 for a, b in zip(sc, sc[1:]))
    assert theory.entropy(us) >= 0
    depths = [s.depth for s in spec.stages]
    assert theory.objective(us, depths) == pytest.approx(
        theory.entropy(us) - theory.depth_penalty(depths), rel=1e-12, abs=1e-9)
