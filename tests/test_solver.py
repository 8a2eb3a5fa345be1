"""The solver's designs, re-checked by an independent path: spec -> per-layer convs -> theory."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepmad import blocks, theory, tinynas
from deepmad.budget import Budget, Problem, Space, evaluate, from_spec, in_space
from deepmad.presets import PRESETS, RELEASED_NAME
from deepmad.solver import Infeasible, solve

HILL_CLIMB = 61687.48  # solver-notes.md: a 90-second multi-start hill climb on the deepmad-r18 instance


@pytest.fixture(scope="module")
def designs():
    return {name: solve(p) for name, p in PRESETS.items()}


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


def assert_meets(problem: Problem, design) -> dict:
    r = recheck(problem, design.spec)
    b = problem.budget
    assert r["macs"] <= b.flops and r["params"] <= b.params and r["rho"] <= b.rho0 and r["ordered"]
    assert in_space(problem, from_spec(problem, design.spec)[None])[0]
    assert r["objective"] == pytest.approx(design.objective, rel=1e-12)
    return r


@pytest.mark.parametrize("name", PRESETS)
def test_preset_meets_constraints_and_uses_its_budget(designs, name):
    problem, design = PRESETS[name], designs[name]
    r = assert_meets(problem, design)
    used = max(r["macs"] / problem.budget.flops, r["params"] / problem.budget.params)
    assert used >= 0.97, f"{name} uses only {used:.1%} of its binding budget"


def test_reference_instance_beats_the_hill_climb(designs):
    # deepmad-r18 is exactly the instance of solver-notes.md (MACs <= 1.82e9, params <= 11.69e6, rho <= 0.3)
    assert designs["deepmad-r18"].objective >= HILL_CLIMB


@pytest.mark.parametrize("name", RELEASED_NAME)
def test_preset_beats_the_released_structure_scored_the_same_way(designs, name):
    spec = tinynas.to_spec(tinynas.released(RELEASED_NAME[name]))
    units = blocks.units(spec)
    theirs = theory.objective(units, [s.depth for s in spec.stages], PRESETS[name].alpha)
    assert designs[name].objective >= theirs


def test_same_problem_same_design():
    p = PRESETS["deepmad-r18"]
    a, b = solve(p), solve(p)
    assert a.x == b.x and a.objective == b.objective


def test_infeasible_budget_names_what_the_space_needs():
    p = PRESETS["deepmad-r18"]
    tiny = Problem(p.space, Budget(1e6, 5e4, 0.3))
    with pytest.raises(Infeasible, match=r"flops budget .* below the .* MACs of the smallest network"):
        solve(tiny)


def _space(block: str, **kw) -> Space:
    extra = {"ratio": (1.5, 4.0), "se": 0.25} if block == "mbconv" else {}
    return Space(block=block, **kw, **extra)


small_space = st.builds(
    _space,
    block=st.sampled_from(["basic", "bottleneck", "mbconv"]),
    strides=st.lists(st.sampled_from([1, 2]), min_size=2, max_size=3).map(tuple),
    resolution=st.sampled_from([32, 64]),
    stem_channels=st.just((8, 16)),
    kernels=st.sampled_from([(3,), (3, 5)]),
    max_depth=st.integers(1, 4),
    max_channels=st.sampled_from([64, 128]),
    num_classes=st.sampled_from([0, 10]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=small_space, scale=st.floats(0.2, 1.5), rho0=st.sampled_from([0.5, 1.0, 2.0]))
def test_random_problems_meet_their_constraints_and_are_reproducible(space, scale, rho0):
    # budgets: a random point of the space, scaled
    probe = Problem(space, Budget(1e30, 1e30, 1e9))
    lo = np.array([8] + [8] * space.n + [16 if space.block == "mbconv" else (8 if space.has_mid else 0)] * space.n
                  + [3] * space.n + [1] * space.n)
    s = evaluate(probe, lo[None])
    problem = Problem(space, Budget(float(s.macs[0]) * (1 + 4 * scale), float(s.params[0]) * (1 + 4 * scale), rho0))
    try:
        d = solve(problem)
    except Infeasible:
        return
    assert_meets(problem, d)
    assert solve(problem).x == d.x


@pytest.mark.parametrize("name", PRESETS)
def test_search_is_at_least_as_good_as_the_authors_evolution(designs, name):
    from deepmad.evolution import evolve

    assert designs[name].objective >= evolve(PRESETS[name], candidates=500_000, seed=0).objective
