"""Guideline 3 as a switch (``Space.ordered = False``: channels may decrease): the branch and bound stays exact
against brute force on tiny spaces, the search scores its neighbourhoods exactly, and switching the guideline
off never lowers the optimum (tiny spaces by brute force, random problems by the complete branch and bound)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepmad import api
from deepmad.core import bound as B
from deepmad.core.budget import Problem, Space, evaluate, in_space
from deepmad.core.evolution import evolve
from deepmad.core.budget import least_costs
from deepmad.core.solver import FEASIBLE, _Neighbourhood, merit, solve
from shared import all_rows, brute_force, budgeted, small_space, tiny


def unordered(p: Problem) -> Problem:
    return replace(p, space=replace(p.space, ordered=False))


# ordered optimum strictly below the unordered one (a narrower stage after the stem or a wider one), stride-1
# stages included (their projection shortcut appears whenever c_{i-1} != c_i), and one where both agree
STRICT = [tiny("basic", 2.0e6, 40e3, 0.5, strides=(1, 2)), tiny("basic", 2.0e6, 40e3, 0.5, strides=(2, 1),
                                                                  stem_channels=(24, 32)),
          tiny("mbconv", 1.0e6, 20e3, 0.6, strides=(2, 1), stem_channels=(24, 32))]
SAME = [tiny("bottleneck", 1.0e6, 20e3, 0.6, strides=(1, 2), stem_channels=(24, 32))]


@pytest.mark.parametrize("problem", STRICT + SAME, ids=lambda p: f"{p.space.block}-{p.space.strides}")
def test_branch_and_bound_without_guideline_3_equals_brute_force(problem):
    q = unordered(problem)
    best = brute_force(q)
    r = B.BranchAndBound(q, incumbent=-math.inf).run()
    assert r.status == "optimal" and r.incumbent == pytest.approx(best, rel=1e-12) and r.bound == pytest.approx(best, rel=1e-12)
    row = np.array([r.row])
    assert evaluate(q, row).feasible[0] and in_space(q, row)[0]


@pytest.mark.parametrize("problem", STRICT, ids=lambda p: f"{p.space.block}-{p.space.strides}")
def test_allowing_decreasing_channels_raises_the_optimum_here(problem):
    ordered, free = brute_force(problem), brute_force(unordered(problem))
    assert free > ordered  # the switch matters: the optimum decreases the channels somewhere
    X = all_rows(unordered(problem))
    s = evaluate(unordered(problem), X)
    x = X[np.argmax(np.where(s.feasible, s.objective, -np.inf))]
    n = problem.space.n
    assert np.any(np.diff(x[: n + 1]) < 0)


def test_every_ordered_row_is_a_row_of_the_unordered_space_with_the_same_scores():
    for p in STRICT + SAME:
        X = all_rows(p)
        q = unordered(p)
        assert in_space(q, X).all()
        a, b = evaluate(p, X), evaluate(q, X)
        assert np.array_equal(a.objective, b.objective) and np.array_equal(a.feasible, b.feasible)


def test_least_costs_bound_every_row_of_the_unordered_space():
    for p in STRICT + SAME:
        q = unordered(p)
        X = all_rows(q)
        s = evaluate(q, X)
        macs, params = least_costs(q)
        assert s.macs.min() >= macs and s.params.min() >= params


def test_neighbourhood_scores_exact_without_guideline_3():
    """The search's table-based merits equal merit() bit for bit on rows with decreasing channels."""
    p = unordered(api.problem("deepmad-b0"))
    rng = np.random.default_rng(0)
    n = p.space.n
    for _ in range(3):
        x = np.zeros(4 * n + 1, dtype=np.int64)
        x[0] = 48
        x[1:n + 1] = rng.integers(2, 60, n) * 8  # any order
        x[n + 1:2 * n + 1] = np.ceil(x[1:n + 1] * 3 / 8) * 8
        x[2 * n + 1:3 * n + 1] = 5
        x[3 * n + 1:] = rng.integers(1, 6, n)
        for kernels in (False, True):
            hood = _Neighbourhood(p, kernels)
            X = hood.rows(x)
            assert np.array_equal(hood.merits(x), merit(p, X))
            f = float(merit(p, x[None])[0])
            if f > FEASIBLE:
                want = merit(p, X)
                up = want > f
                assert np.array_equal(hood.merits(x, above=f)[up], want[up])


def test_search_and_evolution_designs_are_in_the_unordered_space():
    p = unordered(api.problem("deepmad-r18"))
    for d in (solve(p, n_starts=3, kicks=2), evolve(p, candidates=3000)):
        row = np.array([d.x])
        assert evaluate(p, row).feasible[0] and in_space(p, row)[0]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=small_space(max_depth=3), scale=st.floats(0.2, 1.0), rho0=st.sampled_from([0.5, 1.0, 2.0]),
       beta=st.sampled_from([0.0, 10.0]))
def test_allow_decreasing_never_lowers_the_optimum_on_random_problems(space, scale, rho0, beta):
    """Both spaces solved to completion by the branch and bound: the unordered optimum is at least the ordered
    one, and the ordered design is a feasible design of the unordered space."""
    p = budgeted(replace(space, max_channels=min(space.max_channels, 64)), scale, rho0, beta=beta)
    q = unordered(p)
    a = B.BranchAndBound(p, incumbent=-math.inf).run(max_nodes=4000)
    b = B.BranchAndBound(q, incumbent=-math.inf).run(max_nodes=4000)
    if not (a.status == b.status == "optimal") or a.row is None:
        return
    assert b.incumbent >= a.incumbent - 1e-9 * abs(a.incumbent)
    assert b.bound >= a.incumbent - 1e-9 * abs(a.incumbent)
    row = np.array([a.row])
    assert evaluate(q, row).feasible[0] and in_space(q, row)[0]


def test_design_with_the_switches_through_the_api():
    d = api.design("deepmad-r18", allow_decreasing=True, multiscale=False, beta=0, bound_nodes=20)
    assert d.problem.space.ordered is False and d.problem.alpha == (0, 0, 0, 0, 1) and d.problem.budget.beta == 0
    assert d.bound >= d.objective
    with pytest.raises(ValueError, match="alpha"):
        api.problem("deepmad-r18", multiscale=False, alpha=(1, 1, 1, 1, 8))
