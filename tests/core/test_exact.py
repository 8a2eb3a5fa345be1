"""deepmad.core.exact: the default design is the proven optimum (brute force on small spaces), "infeasible" is said
only when nothing is feasible, and the proof's status and gap say how it ended."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from deepmad.core import exact
from deepmad.core.budget import Budget, Problem, evaluate, in_space
from deepmad.core.presets import preset
from deepmad.core.result import STATUSES, Infeasible, NotFound
from shared import all_rows, budgeted, tiny_space


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=tiny_space(), scale=st.floats(0.0, 1.5), rho0=st.sampled_from([0.2, 0.5, 1.0, 2.0]),
       beta=st.sampled_from([0.0, 10.0]), classifier=st.booleans())
def test_default_design_is_the_brute_force_optimum(space, scale, rho0, beta, classifier):
    """On random small spaces: the default solve returns the best feasible design of the space (brute force),
    with gap 0 and status optimal, and a bound no enumerated feasible design exceeds; it says "infeasible" only
    where brute force finds no feasible design, and then names the binding constraint."""
    problem = budgeted(space, scale, rho0, classifier=classifier, beta=beta)
    X = all_rows(problem)
    s = evaluate(problem, X)
    feasible = s.objective[s.feasible]
    if not len(feasible):
        with pytest.raises(Infeasible, match=r"^(no design meets the budgets: (flops|params)|rho: )"):
            exact.solve(problem)
        return
    d = exact.solve(problem)
    best = float(feasible.max())
    row = np.array([d.x])
    assert evaluate(problem, row).feasible[0] and in_space(problem, row)[0]
    assert d.objective == pytest.approx(best, rel=1e-12, abs=1e-9)
    assert d.status == "optimal" and d.gap == 0.0
    assert d.bound >= feasible.max() - 1e-9 * max(1.0, abs(best))


def test_low_rho0_that_the_search_misses_is_solved():
    """rho0 = 0.045 on ResNet-18 budgets: the light search finds no feasible start, the branch and bound does."""
    p = Problem(preset("deepmad-r18").space, Budget(1.82e9, 11.69e6, 0.045))
    d = exact.solve(p)
    s = evaluate(p, np.array([d.x]))
    assert s.feasible[0] and s.rho[0] <= 0.045
    assert d.status == "optimal" and d.gap == 0.0


def test_rho0_no_design_meets_is_proven_and_bracketed():
    p = Problem(preset("deepmad-r18").space, Budget(1.82e9, 11.69e6, 0.01))
    with pytest.raises(Infeasible, match=r"rho: no design .* meets rho <= 0.01 .* lies in \[") as e:
        exact.solve(p)
    lo, hi = (float(v) for v in str(e.value).split("lies in [")[1].split("]")[0].split(","))
    assert 0.01 <= lo <= hi
    # a design exists at the upper end of the bracket
    assert exact.solve(Problem(p.space, Budget(1.82e9, 11.69e6, hi)), bound_nodes=0).objective > 0


def test_tiny_flops_budget_names_the_smallest_network():
    p = Problem(preset("deepmad-r18").space, Budget(1e5, 11.69e6, 0.3))
    with pytest.raises(Infeasible, match=r"flops: the budget 1e\+05 is below .* fewest MACs"):
        exact.solve(p)


def test_without_proof_no_design_found_is_not_called_infeasible():
    p = Problem(preset("deepmad-r18").space, Budget(1.82e9, 11.69e6, 0.01))
    with pytest.raises(NotFound, match="not proven"):
        exact.solve(p, bound_nodes=0)


@pytest.mark.parametrize("kw,status", [(dict(bound_nodes=3), "node_limit"), (dict(gap_tol=0.5), "gap_limit"),
                                       (dict(time_limit=1e-3), "time_limit")])
def test_status_says_why_the_proof_stopped(kw, status):
    d = exact.solve(preset("deepmad-mb"), **kw)
    assert d.status == status and d.status in STATUSES
    assert d.bound >= d.objective and d.gap == pytest.approx((d.bound - d.objective) / d.objective)
    if status == "gap_limit":
        assert 0 < d.gap <= 0.5


def test_no_proof_gives_no_bound():
    d = exact.solve(preset("deepmad-r18"), bound_nodes=0)
    assert d.bound is None and d.gap is None and d.bound_nodes == 0


@pytest.mark.parametrize("kw,match", [(dict(gap_tol=-0.1), "gap_tol"), (dict(gap_tol=1.0), "gap_tol"),
                                      (dict(bound_nodes=-1), "bound_nodes"), (dict(time_limit=0), "time_limit"),
                                      (dict(solver="scip"), "solver")])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        exact.solve(preset("deepmad-r18"), **kw)
