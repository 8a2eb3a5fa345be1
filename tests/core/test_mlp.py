"""deepmad.core.mlp (Section 3): the exact MLP design equals brute force over every MLP of tiny spaces, the counts
and the theory of Eq. 1-3, the spec file format and its errors."""
from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepmad.core import mlp
from deepmad.core.result import Infeasible
from deepmad.core.spec import SpecError


def brute_force(p: mlp.MLPProblem) -> float:
    """The best entropy over every MLP of the space, each built as a spec and scored by analyze()."""
    best = -math.inf
    widths = range(p.step, p.max_width + 1, p.step)
    for L in range(1, p.max_depth + 1):
        for w in (widths if L > 1 else [None]):
            spec = mlp.MLPSpec(p.inputs, p.outputs, (w,) * (L - 1) if w else (), bias=p.bias)
            a = mlp.analyze(spec)
            if a.params <= p.params and a.rho <= p.rho0:
                best = max(best, a.entropy)
    return best


@settings(max_examples=60, deadline=None)
@given(inputs=st.integers(1, 40), outputs=st.integers(1, 12), params=st.integers(20, 6000),
       rho0=st.sampled_from([0.05, 0.2, 0.5, 1.0, 3.0]), max_depth=st.integers(1, 6),
       max_width=st.sampled_from([8, 16, 40]), step=st.sampled_from([4, 8]), bias=st.booleans())
def test_exact_design_equals_brute_force(inputs, outputs, params, rho0, max_depth, max_width, step, bias):
    p = mlp.MLPProblem(inputs, outputs, float(params), rho0, max_depth=max_depth, max_width=max_width, step=step,
                       bias=bias)
    best = brute_force(p)
    try:
        d = mlp.solve(p)
    except Infeasible:
        assert best == -math.inf
        return
    a = mlp.analyze(d.spec)
    assert a.params <= p.params and a.rho <= p.rho0
    assert d.objective == pytest.approx(best, rel=1e-12) and a.entropy == pytest.approx(d.objective, rel=1e-12)
    assert d.gap == 0 and d.bound == d.objective


def test_eq1_and_rho_by_hand():
    spec = mlp.MLPSpec(784, 10, (256, 128))
    a = mlp.analyze(spec)
    assert a.params == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10 and a.flops == 784 * 256 + 256 * 128 + 1280
    assert a.entropy == pytest.approx(10 * (math.log(784) + math.log(256) + math.log(128)))
    assert a.rho == pytest.approx(3 / (784 * 256 * 128) ** (1 / 3))
    assert [r.outputs for r in a.rows] == [256, 128, 10] and a.rows[0].entropy == pytest.approx(256 * math.log(784))


def test_readme_example_is_deep_and_within_its_budgets():
    d = mlp.solve(mlp.MLPProblem(784, 10, 1e6, 0.5))
    a = mlp.analyze(d.spec)
    assert a.params <= 1e6 and a.rho <= 0.5 and d.gap == 0
    # one width deeper, or one step wider at this depth, breaks a budget
    L, w = d.spec.depth, d.spec.hidden[0]
    wider = mlp.analyze(mlp.MLPSpec(784, 10, (w + 8,) * (L - 1)))
    assert wider.params > 1e6


def test_spec_round_trip_and_errors(tmp_path):
    spec = mlp.MLPSpec(20, 3, (16, 8), act="gelu", bias=False, name="m")
    for suffix in ("yaml", "json"):
        path = tmp_path / f"m.{suffix}"
        mlp.save(spec, path)
        assert mlp.read_file(path) == spec
    bad = [({"inputs": 0, "outputs": 3}, "inputs"), ({"inputs": 2, "outputs": 3, "hidden": [4, 0]}, r"hidden\[1\]"),
           ({"inputs": 2}, "outputs"), ({"inputs": 2, "outputs": 3, "act": "nope"}, "act"),
           ({"inputs": 2, "outputs": 3, "widths": [1]}, "unknown field 'widths'"),
           ({"inputs": 2, "outputs": 3, "hidden": 4}, "hidden")]
    for data, field in bad:
        with pytest.raises(SpecError, match=field):
            mlp.from_dict({"deepmad_mlp": 1, **data})
    with pytest.raises(SpecError, match="deepmad_mlp"):
        mlp.from_dict({"deepmad_mlp": 2, "inputs": 2, "outputs": 3})


@pytest.mark.parametrize("kw, match", [(dict(params=100.0), "below the 6,370 params of the smallest MLP"),
                                       (dict(rho0=1e-6), "rho <= 1e-06")])
def test_infeasible_budgets_say_what_the_space_needs(kw, match):
    base = dict(inputs=784, outputs=10, params=1e6, rho0=0.5)
    with pytest.raises(Infeasible, match=match):
        mlp.solve(mlp.MLPProblem(**{**base, **kw}))


def test_smallest_mlp_may_have_a_hidden_layer():
    p = mlp.MLPProblem(784, 1000, 1e9, 1.0)
    assert mlp.smallest_params(p) == 785 * 8 + 9 * 1000 < 785 * 1000
    assert mlp.smallest_params(p) == min(mlp.analyze(mlp.MLPSpec(784, 1000, (8,) * k)).params for k in range(0, 4))


def test_widest_is_exact_at_the_budget():
    for L, P in itertools.product((2, 3, 10), (5_000, 77_777, 1_000_000)):
        p = mlp.MLPProblem(100, 10, float(P), 1.0, max_width=8192)
        w = mlp.widest(p, L)
        assert mlp.mlp_params(p, L, w) <= P
        assert w == p.max_width or mlp.mlp_params(p, L, w + 8) > P
