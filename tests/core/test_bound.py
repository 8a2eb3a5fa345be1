"""deepmad.core.bound: the branch-and-bound upper bound is valid (never below a design it covers) and exact when it
runs to completion, checked against brute-force enumeration of small design spaces."""
import math

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from deepmad.core import bound as B
from deepmad.core.budget import Budget, Problem, evaluate, in_space
from deepmad.core.presets import preset
from shared import TINY, _space, all_rows, brute_force, budgeted, random_rows, small_space


# without a depth penalty, or a tiny one, no depth variance may be left out of the relaxation (Scope)
NO_PENALTY = [Problem(p.space, Budget(p.budget.flops, p.budget.params, p.budget.rho0, beta=beta))
              for p, beta in ((TINY[0], 0.0), (TINY[2], 1e-9))]


@pytest.mark.parametrize("problem", NO_PENALTY, ids=lambda p: f"{p.space.block}-beta{p.budget.beta}")
def test_complete_search_equals_brute_force_without_penalty(problem):
    best = brute_force(problem)
    r = B.BranchAndBound(problem, incumbent=-math.inf).run()
    assert r.status == "optimal" and r.bound == pytest.approx(best, rel=1e-12) and r.incumbent == pytest.approx(best, rel=1e-12)


def test_primal_heuristic_returns_better_designs_that_are_real():
    """prove() hands rounded LP optima to the search's descent; what it returns is a feasible row of the space
    scored exactly as evaluate() scores it, and the optimum on a tiny space."""
    problem = TINY[0]
    X = all_rows(problem)
    s = evaluate(problem, X)
    feas = np.sort(s.objective[s.feasible])
    r = B.prove(problem, float(feas[0]), max_nodes=10**6)
    assert r.row is not None and r.status == "optimal"
    row = np.array([r.row])
    assert evaluate(problem, row).feasible[0] and in_space(problem, row)[0]
    assert evaluate(problem, row).objective[0] == r.incumbent == pytest.approx(float(feas[-1]), rel=1e-12)


@pytest.mark.parametrize("problem", TINY, ids=lambda p: f"{p.space.block}-{p.space.strides}")
def test_complete_search_equals_brute_force(problem):
    best = brute_force(problem)
    assert best > -math.inf
    bb = B.BranchAndBound(problem, incumbent=-math.inf)
    r = bb.run()
    assert r.status == "optimal"
    assert r.bound >= best - 1e-6 * abs(best)
    assert r.incumbent == pytest.approx(best, rel=1e-12)  # the exact leaves found the optimum itself
    assert r.bound == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("problem", TINY, ids=lambda p: f"{p.space.block}-{p.space.strides}")
def test_bound_from_a_worse_incumbent_finds_the_optimum(problem):
    X = all_rows(problem)
    s = evaluate(problem, X)
    feas = np.sort(s.objective[s.feasible])
    worse = float(feas[len(feas) // 2])  # a median design as the incumbent
    r = B.BranchAndBound(problem, incumbent=worse).run()
    assert r.incumbent == pytest.approx(float(feas[-1]), rel=1e-12)
    assert r.row is not None and evaluate(problem, np.array([r.row])).objective[0] == pytest.approx(feas[-1])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_box_bound_covers_the_designs_in_it(data):
    """Validity: the relaxation of any box is >= the best feasible design inside that box."""
    problem = data.draw(st.sampled_from(TINY + NO_PENALTY))
    sp, n = problem.space, problem.space.n
    bb = B.BranchAndBound(problem, incumbent=-math.inf)
    root = bb.root()

    def sub(r):
        a = data.draw(st.integers(r[0], r[1]))
        b = data.draw(st.integers(a, r[1]))
        return (a, b)

    node = B.Node(tuple(sub(r) for r in root.L), tuple(sub(r) for r in root.k), tuple(sub(r) for r in root.z))
    X = all_rows(problem)
    st_ = sp.step
    inside = np.ones(len(X), bool)
    for v, (a, b) in enumerate(node.z):
        col = v if v <= n else n + 1 + (v - n - 1)
        inside &= (X[:, col] >= a * st_) & (X[:, col] <= b * st_)
    for i in range(n):
        ks = sp.kernels[node.k[i][0]: node.k[i][1] + 1]
        inside &= np.isin(X[:, 2 * n + 1 + i], ks)
        inside &= (X[:, 3 * n + 1 + i] >= node.L[i][0]) & (X[:, 3 * n + 1 + i] <= node.L[i][1])
    ub, _ = bb.R.solve(node, st_, iters=3)
    best = brute_force(problem, X[inside]) if inside.any() else -math.inf
    assert ub >= best - 1e-6 * max(1.0, abs(best))


def test_preset_bound_is_above_the_design_and_finite():
    p = preset("deepmad-r18")
    from deepmad.core.solver import solve
    d = solve(p)
    r = B.BranchAndBound(p, d.objective).run(max_nodes=300)
    assert math.isfinite(r.bound) and r.bound >= d.objective
    assert r.nodes <= 301 + 1


# ------------------------------------------------- random problems: `deepmad design` with its proof, end to end

@settings(max_examples=12, deadline=None)
@given(space=small_space(max_depth=6), scale=st.floats(0.2, 1.5), rho0=st.sampled_from([0.5, 1.0, 2.0]),
       beta=st.sampled_from([0.0, 10.0]), seed=st.integers(0, 2**32 - 1))
@example(space=_space(block="bottleneck", strides=(2, 1, 1), resolution=32, stem_channels=(8, 16), kernels=(3, 5),
                      max_depth=1, max_channels=64, num_classes=0, head=96),
         scale=0.203125, rho0=0.5, beta=0.0, seed=0)  # infeasible, unproven in 60 nodes: the default proves it
def test_design_with_proof_on_random_problems(space, scale, rho0, beta, seed):
    """api.solve (search, branch and bound): a feasible design, a bound no sampled feasible design exceeds,
    the same result twice. Where 60 nodes neither find a design nor prove there is none (NotFound, honest at a
    node limit), the default node budget decides: a design or a proof of infeasibility."""
    from deepmad import api
    from deepmad.core.result import Infeasible, NotFound

    problem = budgeted(space, scale, rho0, beta=beta)
    nodes = 60
    try:
        d = api.solve(problem, bound_nodes=nodes)
    except Infeasible:
        return
    except NotFound:
        nodes = None
        try:
            d = api.solve(problem)
        except Infeasible:
            return
    row = np.array([d.x])
    assert evaluate(problem, row).feasible[0] and in_space(problem, row)[0]
    assert evaluate(problem, row).objective[0] == d.objective
    assert d.bound >= d.objective - 1e-9 * abs(d.objective)
    X = random_rows(problem, 4000, np.random.default_rng(seed))
    sc = evaluate(problem, X)
    if sc.feasible.any():
        assert sc.objective[sc.feasible].max() <= d.bound + 1e-9 * abs(d.bound)
    again = api.solve(problem, bound_nodes=nodes)
    assert (again.x, again.bound) == (d.x, d.bound)


@pytest.mark.parametrize("name", ["deepmad-r18", "deepmad-mb"])
def test_a_child_started_from_its_parent_has_the_bound_of_a_cold_start(name):
    """Children start from the parent's final basis (rows with basic slacks deleted, the last round's cuts
    added): the LP they solve is the one a cold start with the same cuts solves, so the bound is the same."""
    p = preset(name)
    bb = B.BranchAndBound(p, incumbent=-math.inf)
    R, step = bb.R, p.space.step
    root = bb.tighten(bb.root())
    ub, start = R.solve(root, step, iters=10)
    assert start is not None and math.isfinite(ub)
    kids = [k for k in (bb.tighten(k) for k in bb.branch(root, R.last)) if k is not None]
    assert len(kids) >= 2
    for kid in kids:
        warm, _ = R.solve(kid, step, iters=1, start=start)
        cold, _ = R.solve(kid, step, iters=1, cuts=start.cuts())
        assert warm <= ub + 1e-6 * abs(ub)
        assert warm == pytest.approx(cold, rel=1e-9)


def test_basic_rows_are_the_rows_whose_slack_the_basis_holds():
    """``_LP.basic_rows`` (from HiGHS's basic variables) marks exactly the rows the basis says are basic: the
    rows a child may leave out."""
    import highspy

    p = preset("deepmad-r18")
    bb = B.BranchAndBound(p, incumbent=-math.inf)
    ub, start = bb.R.solve(bb.tighten(bb.root()), p.space.step, iters=5)
    assert start is not None
    statuses = bb.R.lp.basis().row_status
    mask = bb.R.lp.basic_rows()
    assert len(mask) == len(statuses) and mask.any() and not mask.all()
    assert mask.tolist() == [s == highspy.HighsBasisStatus.kBasic for s in statuses]


# ---- two processes (BranchAndBound._split, _together; narrow's _Helper)


@pytest.mark.parametrize("problem", TINY, ids=lambda p: f"{p.space.block}-{p.space.strides}")
def test_two_processes_prove_the_brute_force_optimum(problem):
    """The tree split between two processes (and the root's bound tightening shared with a helper) still ends at
    the optimum, from no incumbent and from a median one."""
    best = brute_force(problem)
    X = all_rows(problem)
    s = evaluate(problem, X)
    feas = np.sort(s.objective[s.feasible])
    for incumbent in (-math.inf, float(feas[len(feas) // 2])):
        r = B.BranchAndBound(problem, incumbent=incumbent).run(workers=2)
        assert r.workers == 2 and r.status == "optimal"
        assert r.incumbent == pytest.approx(best, rel=1e-12) and r.bound == pytest.approx(best, rel=1e-12)
        assert r.row is not None and evaluate(problem, np.array([r.row])).objective[0] == r.incumbent


def test_two_processes_give_the_same_tree_on_every_run():
    """What each process does depends only on what it holds at each exchange, never on timing."""
    problem = TINY[3]
    runs = [B.prove(problem, workers=2) for _ in range(3)]
    assert all(r.workers == 2 for r in runs)
    fields = [(r.bound, r.incumbent, r.row, r.nodes, r.open, r.status, r.lp_solves) for r in runs]
    assert fields[0] == fields[1] == fields[2]


def test_a_node_limit_with_two_processes_keeps_a_valid_bound():
    problem = TINY[3]
    best = brute_force(problem)
    r = B.BranchAndBound(problem, incumbent=-math.inf).run(workers=2, max_nodes=40)
    assert r.workers == 2 and r.status == "node_limit" and 40 <= r.nodes < 60
    assert r.bound >= best - 1e-9 * abs(best) and r.open > 0


def test_a_failed_second_process_leaves_the_proof_to_one(monkeypatch):
    """If the second process fails, its boxes are lost with it: prove() runs the search again in one process."""
    problem = TINY[3]
    best = brute_force(problem)
    together = B.BranchAndBound._together

    def failing(self, *args):
        if self.me == 1:
            raise RuntimeError("the second process fails")
        return together(self, *args)

    monkeypatch.setattr(B.BranchAndBound, "_together", failing)
    with pytest.raises(B.PeerLost, match="the second process fails"):
        B.BranchAndBound(problem, incumbent=-math.inf).run(workers=2)
    r = B.prove(problem, workers=2)
    assert r.workers == 1 and r.status == "optimal" and r.bound == pytest.approx(best, rel=1e-12)


def test_a_failed_helper_leaves_the_bound_tightening_to_the_first_process(monkeypatch):
    import os

    problem = TINY[3]
    first = os.getpid()
    s = evaluate(problem, all_rows(problem))
    worse = float(np.median(s.objective[s.feasible]))  # high enough for the tightening to narrow the root
    alone = B.BranchAndBound(problem, incumbent=worse)
    root = alone.tighten(alone.root())
    _, start = alone.R.solve(root, problem.space.step, iters=B.ROOT_ITERS)
    expected, _ = alone.narrow(root, start.cuts())
    column_bounds = B.BranchAndBound._column_bounds

    def failing(self, *args):
        if os.getpid() != first:
            raise RuntimeError("the helper fails")
        return column_bounds(self, *args)

    monkeypatch.setattr(B.BranchAndBound, "_column_bounds", failing)
    helped = B.BranchAndBound(problem, incumbent=worse)
    _, start = helped.R.solve(root, problem.space.step, iters=B.ROOT_ITERS)
    narrowed, _ = helped.narrow(root, start.cuts(), workers=2)
    assert narrowed == expected and narrowed != root


def test_alongside_computes_in_a_second_process_or_else_in_the_caller():
    import os

    first = os.getpid()

    def where(x):
        return x + 1, os.getpid()

    with B.Alongside(where, 41) as job:  # forked: the answer comes from another process
        value, pid = job.result()
        assert value == 42 and pid != first and job.result() == (value, pid)  # asked again: the same answer
    with B.Alongside(where, 41, wanted=False) as job:
        assert job.result() == (42, first)

    def failing_there(x):
        if os.getpid() != first:
            os._exit(3)  # the second process dies without an answer
        return x + 1

    with B.Alongside(failing_there, 1) as job:
        assert job.result() == 2  # computed by the caller instead


def test_an_incumbent_given_late_proves_what_one_given_first_does():
    """prove() asks for a callable incumbent once the root's relaxation is solved (the search runs meanwhile);
    the tree is the one of the same incumbent given as a number."""
    problem = TINY[3]
    s = evaluate(problem, all_rows(problem))
    worse = float(np.median(s.objective[s.feasible]))
    asked = []
    late = B.prove(problem, lambda: asked.append(1) or worse, workers=1)
    now = B.prove(problem, worse, workers=1)
    assert asked == [1]
    assert (late.bound, late.incumbent, late.row, late.nodes, late.lp_solves) == \
        (now.bound, now.incumbent, now.row, now.nodes, now.lp_solves)


def test_workers_come_from_the_platform_or_deepmad_workers(monkeypatch):
    monkeypatch.setenv("DEEPMAD_WORKERS", "1")
    assert B.default_workers() == 1
    monkeypatch.setenv("DEEPMAD_WORKERS", "2")
    assert B.default_workers() == 2
    monkeypatch.setenv("DEEPMAD_WORKERS", "4")
    with pytest.raises(ValueError, match="DEEPMAD_WORKERS: expected 1 or 2"):
        B.default_workers()
    with pytest.raises(ValueError, match="workers: expected 1 or 2"):
        B.prove(TINY[0], workers=3)


def test_two_processes_prove_infeasibility():
    """No incumbent and nothing left open in either process: both stop, and nothing is feasible (a proof)."""
    space = _space(block="bottleneck", strides=(2, 1, 1), resolution=32, stem_channels=(8, 16), kernels=(3, 5),
                   max_depth=1, max_channels=64, num_classes=0, head=96)
    problem = budgeted(space, 0.203125, 0.5, beta=0.0)
    assert brute_force(problem) == -math.inf
    for workers in (1, 2):
        r = B.BranchAndBound(problem, incumbent=-math.inf).run(workers=workers)
        assert r.status == "infeasible" and r.bound == -math.inf and r.row is None
    assert r.workers == 2 and r.nodes > B.SPLIT_AT


def test_a_time_limit_with_two_processes_stops_both_with_a_valid_bound():
    """deepmad-mb's proof needs ~1.3 s in two processes here: stopped at 0.6 s (the second process started or
    not), the bound is still >= the optimum (24,739.48, proven with no limit) and boxes are left open."""
    from deepmad.core.solver import solve

    p = preset("deepmad-mb")
    d = solve(p, n_starts=3, kicks=2)
    r = B.prove(p, d.objective, time_limit=0.6, workers=2)
    assert r.status == "time_limit" and r.bound >= 24739.47 and r.incumbent <= r.bound and r.open > 0


def test_progress_with_two_processes_counts_the_boxes_of_both():
    problem = TINY[3]
    seen = []
    r = B.BranchAndBound(problem, incumbent=-math.inf).run(workers=2, progress=lambda *a: seen.append(a))
    assert r.workers == 2 and seen
    nodes = [n for n, _, _ in seen]
    assert nodes == sorted(nodes) and nodes[-1] == r.nodes  # the last exchange reports the total
    assert all(bound >= r.bound - 1e-9 * abs(r.bound) for _, bound, _ in seen)  # each a valid, larger bound
