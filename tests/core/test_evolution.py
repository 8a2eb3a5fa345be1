"""The evolutionary baseline (deepmad.core.evolution): determinism, feasibility re-checked independently,
elitism (more candidates never worse), the Infeasible message."""
import dataclasses
import math

import numpy as np
import pytest

from deepmad.core import blocks, budget, theory
from deepmad.core.budget import Budget, Problem, Space
from deepmad.core.evolution import evolve
from deepmad.core.presets import preset
from deepmad.core.result import Design, Infeasible, NotFound

PRESETS = ("deepmad-r18", "deepmad-r50", "deepmad-mb", "deepmad-29m")
BASIC = Problem(Space("basic", strides=(2, 2, 2, 2)), Budget(1.8e9, 11.7e6, 0.3), name="basic-r18")


def with_budget(problem: Problem, **kw) -> Problem:
    return dataclasses.replace(problem, budget=dataclasses.replace(problem.budget, **kw))


def check(design: Design, candidates: int) -> None:
    """Every constraint, recomputed from the spec with blocks/theory (not budget.evaluate)."""
    p, spec = design.problem, design.spec
    cost = blocks.cost(spec, classifier=p.budget.classifier)
    units = blocks.units(spec)
    assert cost.macs <= p.budget.flops
    assert cost.params <= p.budget.params
    assert theory.rho_max(units) <= p.budget.rho0
    x = np.array(design.x)
    assert budget.in_space(p, x)[0]
    back = budget.from_spec(p, spec)
    if not p.space.has_mid:  # from_spec writes channels there, bounds() wants 0: compare the rest
        back[budget.columns(p.space.n)["m"]] = 0
    assert tuple(int(v) for v in back) == design.x
    channels = [spec.stem.channels] + [s.channels for s in spec.stages]
    assert channels == sorted(channels)
    depths = [s.depth for s in spec.stages]
    assert math.isclose(design.objective, theory.objective(units, depths, p.alpha, p.budget.beta),
                        rel_tol=1e-9)
    assert design.solver == "evolution" and design.bound is None and design.gap is None
    assert design.evaluated == candidates and design.seconds >= 0


@pytest.mark.parametrize("name", ("deepmad-r18", "deepmad-mb"))
def test_same_seed_same_design(name):
    p = preset(name)
    a, b = evolve(p, candidates=10_000, seed=3), evolve(p, candidates=10_000, seed=3)
    assert a.x == b.x and a.objective == b.objective and a.spec == b.spec
    others = {evolve(p, candidates=10_000, seed=s).x for s in (4, 5, 6)}
    assert others != {a.x}  # the seed is used


@pytest.mark.parametrize("name", PRESETS)
def test_designs_meet_every_constraint(name):
    d = evolve(preset(name), candidates=12_000, seed=0)
    check(d, 12_000)


def test_basic_blocks_and_small_batches():
    d = evolve(BASIC, candidates=5_000, seed=1, batch=300)
    check(d, 5_000)
    assert all(v == 0 for v in d.x[5:9])  # no mid channels in a basic space


def test_one_candidate_is_the_feasible_seed():
    d = evolve(preset("deepmad-r18"), candidates=1)
    check(d, 1)


@pytest.mark.parametrize("name", ("deepmad-r18", "deepmad-mb"))
def test_more_candidates_never_worse(name):
    # elitist population + a random stream that does not depend on the candidate count
    p = preset(name)
    best = [evolve(p, candidates=n, seed=7, batch=1024).objective for n in (1, 1_500, 5_000, 5_001, 12_000)]
    assert best == sorted(best)
    assert best[-1] > best[0]  # it does improve on the seed


def test_population_size_one_and_large():
    for pop in (1, 1000):
        check(evolve(preset("deepmad-r18"), candidates=6_000, population=pop, seed=2), 6_000)


def smallest_cost(p: Problem) -> blocks.Cost:
    sp = p.space
    c0 = sp.stem_channels[0]
    mid = max(sp.step, math.ceil(sp.ratio[0] * c0 / sp.step) * sp.step)
    row = [c0] + [c0] * sp.n + [mid] * sp.n + [min(sp.kernels)] * sp.n + [1] * sp.n
    return blocks.cost(budget.to_spec(p, row))


@pytest.mark.parametrize("name", ("deepmad-r18", "deepmad-mb"))
def test_impossible_params_budget(name):
    p = with_budget(preset(name), params=1000)
    need = smallest_cost(p).params
    with pytest.raises(Infeasible) as e:
        evolve(p, candidates=100)
    msg = str(e.value)
    assert f"params: the budget 1000 is below {need:.4g}" in msg
    assert "flops:" not in msg  # FLOPs are not the problem


def test_impossible_flops_budget():
    p = with_budget(preset("deepmad-r18"), flops=1e6)
    need = smallest_cost(p).macs
    with pytest.raises(Infeasible, match="flops: the budget 1e\\+06 is below") as e:
        evolve(p, candidates=100)
    assert f"{need:.4g}" in str(e.value) and "params:" not in str(e.value)


def test_impossible_rho_budget():
    """No feasible start for rho0 = 0.01: not proven infeasible by the evolution, so NotFound (the exact solve
    decides)."""
    with pytest.raises(NotFound, match="rho0 budget 0.01"):
        evolve(with_budget(preset("deepmad-r18"), rho0=0.01), candidates=100)


@pytest.mark.parametrize("bad", (dict(candidates=0), dict(population=0), dict(batch=-1), dict(candidates=1.5)))
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        evolve(preset("deepmad-r18"), **bad)
