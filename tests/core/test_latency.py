"""deepmad.core.latency, and the latency budget in every solver: the posynomial's terms against a layer-by-layer
recount of the network, rows against specs, the search's tables bit for bit, designs within their latency
budget (lns with its proof, evolution), the branch and bound against brute force, the fastest network."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from deepmad.core import blocks, bound as B, latency as lat
from deepmad.core.budget import Budget, Problem, Space, evaluate, in_space, least_latency, to_spec
from deepmad.core.exact import solve
from deepmad.core.presets import PRESETS
from deepmad.core.result import Infeasible
from deepmad.core.solver import FEASIBLE, _Neighbourhood, merit
from deepmad.core.spec import out_resolution
from shared import TINY, all_rows, brute_force, budgeted, random_rows, small_space, synthetic_latency_model




# three kernel choices: the latency's A·k^p is loose over all three, and such boxes are split on the kernel first
THREE_KERNELS = Problem(Space("bottleneck", strides=(2, 2), resolution=32, stem_channels=(8, 16), kernels=(3, 5, 7),
                              max_depth=2, max_channels=32, num_classes=10, ratio=(0.0, 1.0)), Budget(2.0e6, 40e3, 0.5))


def with_latency(p: Problem, model, quantile: float | None = 0.3, latency: float | None = None) -> Problem:
    """p with a latency budget at a quantile of its feasible designs' predicted latencies (or the given one)."""
    free = Problem(p.space, replace(p.budget, latency_model=model), name=p.name)
    if latency is None and quantile is not None:
        X = all_rows(free)
        s = evaluate(free, X)
        latency = float(np.quantile(s.latency[s.feasible], quantile))
    return Problem(p.space, replace(p.budget, latency=latency, latency_model=model), name=p.name)


# ---------------------------------------------------------------------------------------------- the terms

def recount(model: lat.LatencyModel, spec) -> float:
    """The latency of a spec from its convolutions one by one (``blocks.walk``), each mapped to its layer kind by
    its name: an independent derivation of the posynomial's features."""
    fam = model.family(spec.stages[0].block, spec.act)
    th = fam.theta
    family = spec.stages[0].block
    total, side = 0.0, spec.resolution
    for unit, convs in blocks.walk(spec):
        block_in = side
        for cv in convs:
            last = cv.name.rsplit(".", 1)[-1]
            if cv.role == "se":
                continue
            on_input = last in ("conv1", "expand", "dw", "shortcut") or (last == "conv2" and family == "bottleneck")
            r_in = spec.resolution if cv.name == "stem" else block_in if on_input else cv.r_out
            if cv.name == "stem":
                kind = f"stem{cv.k}_s{cv.stride}"
            elif cv.name == "head":
                kind = "head"
            elif last == "shortcut":
                kind = "pw" if cv.stride == 1 else "pw_s2"
            elif last in ("conv1", "conv3", "expand", "project") and not (family == "basic"):
                kind = "pw"
            elif last == "dw":
                kind = f"dw{cv.k}_s{cv.stride}"
            else:
                kind = f"conv{cv.k}_s{cv.stride}"
            per_in = cv.c_in // cv.groups
            total += (th(kind, "macs") * cv.r_out ** 2 * cv.k ** 2 * per_in * cv.c_out
                      + th(kind, "in") * r_in ** 2 * cv.c_in + th(kind, "out") * cv.r_out ** 2 * cv.c_out
                      + th(kind, "weights") * cv.k ** 2 * per_in * cv.c_out + th(kind, "one"))
        se = [cv for cv in convs if cv.role == "se"]
        if se:
            mid, sq = se[0].c_in, se[0].c_out
            total += (th("se", "elems") * unit.resolution ** 2 * mid + th("se", "fc") * mid * sq
                      + th("se", "chans") * mid + th("se", "one"))
        if unit.name.startswith("stages."):
            c_in = convs[0].c_in
            if family != "mbconv" or (c_in == unit.channels and block_in == unit.resolution):
                total += th("add", "out") * unit.resolution ** 2 * unit.channels + th("add", "one")
        side = unit.resolution
        if unit.name == "stem" and spec.stem.pool:
            total += th("maxpool", "in") * unit.resolution ** 2 * unit.channels + th("maxpool", "one")
            side = out_resolution(unit.resolution, 2)
    if spec.num_classes:
        width = spec.head if spec.head is not None else spec.stages[-1].channels
        total += th("tail", "in") * side ** 2 * width + th("tail", "macs") * width * spec.num_classes + th("tail", "one")
    return total + th("net", "one")


@settings(max_examples=30, deadline=None)
@given(space=small_space(max_depth=3), seed=st.integers(0, 2**31 - 1))
def test_rows_specs_and_layer_recount_agree(space, seed):
    """rows() (what the solvers score), predict() of the row's spec (what analyze prints) and a recount from the
    network's convolutions one by one give the same latency."""
    model = synthetic_latency_model([space], seed)
    p = with_latency(budgeted(space, 1.0, 1.0), model, None)
    rng = np.random.default_rng(seed)
    X = all_rows_sample(p, rng, 20)
    got = evaluate(p, X).latency
    for x, t in zip(X, got):
        spec = to_spec(p, x)
        assert lat.predict(model, spec).total == pytest.approx(t, rel=1e-12)
        assert recount(model, spec) == pytest.approx(t, rel=1e-12)


def all_rows_sample(p: Problem, rng, count: int) -> np.ndarray:
    X = random_rows(p, 400, rng)
    return X[:count] if len(X) else X


def test_reference_networks_recount():
    """The 7x7 stem with its max-pool, mbconv blocks without expansion (MobileNet-V2's first) and SE."""
    from deepmad.core.reference import reference

    for name in ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0"):
        spec = reference(name)
        sp = Space(spec.stages[0].block, tuple(s.stride for s in spec.stages), act=spec.act,
                   **({"ratio": (1.5, 6.0)} if spec.stages[0].block == "mbconv" else {}))
        kinds = set()
        for _, terms, _, _ in lat.spec_terms(spec):
            kinds |= {t.kind for t in terms}
        rng = np.random.default_rng(1)
        fam = lat.Family(sp.block, spec.act, tuple((k, tuple(rng.uniform(0, 1, len(lat.FEATURES[lat.kind_group(k)]))))
                                                   for k in sorted(kinds)))
        model = lat.LatencyModel((fam,))
        assert lat.predict(model, spec).total == pytest.approx(recount(model, spec), rel=1e-12)
        pred = lat.predict(model, spec)
        assert pred.total == pytest.approx(sum(pred.rows.values()), rel=1e-12)


def test_neighbourhood_tables_equal_evaluate_bit_for_bit():
    """The search's latency column (its stage tables) gives merit()'s floats exactly, around designs."""
    for name in ("deepmad-r18", "deepmad-mb"):
        p = PRESETS[name]
        model = synthetic_latency_model([p.space], 3, scale=1e-6)
        free = Problem(p.space, replace(p.budget, latency_model=model), name=name)
        d = solve(free, bound_nodes=0, solver="evolution", candidates=3000)
        t = float(evaluate(free, np.array([d.x])).latency[0])
        q = Problem(p.space, replace(p.budget, latency=t * 0.98, latency_model=model), name=name)
        x = np.array(d.x)
        for kernels in (False, True):
            hood = _Neighbourhood(q, kernels)
            X = hood.rows(x)
            want = merit(q, X)
            assert np.array_equal(hood.merits(x), want)
            y = X[int(np.argmax(want))]
            f = float(merit(q, y[None])[0])
            if f > FEASIBLE:
                got = hood.merits(y, above=f)
                w2 = merit(q, hood.rows(y))
                up = (w2 > FEASIBLE) & (w2 > f)
                assert np.array_equal(got[up], w2[up]) and np.all(got[~up] == -np.inf)


# ---------------------------------------------------------------------------------------------- designs

@settings(max_examples=12, deadline=None)
@given(space=small_space(max_depth=4), scale=st.floats(0.3, 1.5), share=st.floats(0.15, 0.9),
       seed=st.integers(0, 2**31 - 1), solver=st.sampled_from(["lns", "evolution"]))
def test_every_design_meets_its_latency_budget(space, scale, share, seed, solver):
    """A design with a latency budget (lns with its proof, or evolution) is predicted within it, recomputed from
    its spec; and it meets every other budget."""
    from shared import recheck

    model = synthetic_latency_model([space], seed)
    base = budgeted(space, scale, 1.0)
    free = Problem(space, replace(base.budget, latency_model=model))
    lo = least_latency(free)[2]
    X = all_rows_sample(free, np.random.default_rng(seed), 200)
    hi = float(np.max(evaluate(free, X).latency)) if len(X) else 2 * lo
    p = Problem(space, replace(base.budget, latency=lo + share * (hi - lo), latency_model=model))
    try:
        d = solve(p, bound_nodes=30, solver=solver, candidates=3000)
    except Infeasible:
        return
    assert lat.predict(model, d.spec, p.budget.classifier).total <= p.budget.latency * (1 + 1e-12)
    c = recheck(p, d.spec)
    assert c["macs"] <= p.budget.flops and c["params"] <= p.budget.params and c["rho"] <= p.budget.rho0 + 1e-12
    if d.bound is not None:
        assert d.bound >= d.objective - 1e-9 * abs(d.objective)


@pytest.mark.parametrize("problem", TINY + [Problem(Space("mbconv", strides=(2, 1), resolution=32,
                                                          stem_channels=(8, 16), kernels=(3, 5), max_depth=3,
                                                          max_channels=40, num_classes=10, ratio=(1.5, 3.0),
                                                          se=0.25, act="silu"), Budget(1.5e6, 30e3, 0.6)),
                                            THREE_KERNELS],
                         ids=lambda p: f"{p.space.block}-{p.space.strides}")
def test_branch_and_bound_with_latency_equals_brute_force(problem):
    """With a binding latency budget, the complete branch and bound finds the brute-force optimum and proves it."""
    for seed in (0, 1):
        q = with_latency(problem, synthetic_latency_model([problem.space], seed))
        best = brute_force(q)
        assert best < brute_force(problem)  # the latency budget binds
        r = B.BranchAndBound(q, incumbent=-math.inf).run()
        assert r.status == "optimal"
        assert r.bound >= best - 1e-9 * abs(best)
        assert r.incumbent == pytest.approx(best, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_box_bound_covers_the_designs_in_it_with_latency(data):
    """Validity with a latency budget: any box's relaxation is >= the best feasible design inside that box
    (random kernel-dependent coefficients, some falling with the kernel)."""
    problem = data.draw(st.sampled_from(TINY + [THREE_KERNELS]))
    q = with_latency(problem, synthetic_latency_model([problem.space], data.draw(st.integers(0, 50))),
                     data.draw(st.sampled_from([0.1, 0.3, 0.6])))
    sp, n = q.space, q.space.n
    bb = B.BranchAndBound(q, incumbent=-math.inf)
    root = bb.root()

    def sub(r):
        a = data.draw(st.integers(r[0], r[1]))
        return (a, data.draw(st.integers(a, r[1])))

    node = B.Node(tuple(sub(r) for r in root.L), tuple(sub(r) for r in root.k), tuple(sub(r) for r in root.z))
    X = all_rows(q)
    inside = np.ones(len(X), bool)
    for v, (a, b) in enumerate(node.z):
        col = v if v <= n else n + 1 + (v - n - 1)
        inside &= (X[:, col] >= a * sp.step) & (X[:, col] <= b * sp.step)
    for i in range(n):
        inside &= np.isin(X[:, 2 * n + 1 + i], sp.kernels[node.k[i][0]: node.k[i][1] + 1])
        inside &= (X[:, 3 * n + 1 + i] >= node.L[i][0]) & (X[:, 3 * n + 1 + i] <= node.L[i][1])
    ub, _ = bb.R.solve(node, sp.step, iters=3)
    best = brute_force(q, X[inside]) if inside.any() else -math.inf
    assert ub >= best - 1e-6 * max(1.0, abs(best))


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("problem", TINY, ids=lambda p: f"{p.space.block}-{p.space.strides}")
def test_least_latency_bounds_every_network_of_the_space(problem, ordered):
    """budget.least_latency is a lower bound on every network of a tiny space (brute force), with guideline 3 or
    without it; for bottleneck and basic spaces it is the fastest network's latency, and that network is one."""
    sp = replace(problem.space, ordered=ordered)
    q = with_latency(Problem(sp, problem.budget), synthetic_latency_model([problem.space], 7), None)
    X = all_rows(q)
    t = evaluate(q, X).latency
    least, row, t_row = least_latency(q)
    assert least <= float(t.min()) * (1 + 1e-12)
    assert in_space(q, row[None])[0] and t_row == pytest.approx(float(evaluate(q, row[None]).latency[0]))
    if sp.block != "mbconv":
        assert least == pytest.approx(float(t.min()), rel=1e-12) == pytest.approx(t_row, rel=1e-12)


def test_infeasible_latency_names_the_fastest_network():
    from deepmad.core.evolution import evolve

    p = PRESETS["deepmad-r18"]
    model = synthetic_latency_model([p.space], 0, scale=1e-6)
    free = Problem(p.space, replace(p.budget, latency_model=model))
    least, x, t = least_latency(free)
    q = Problem(p.space, replace(p.budget, latency=t * 0.99, latency_model=model))
    for solver in ("lns", "evolution"):
        with pytest.raises(Infeasible, match=r"latency: the budget .* ms is below .* the least any network .* "
                                             r"\(its fastest network: stem 8") as e:
            solve(q, solver=solver, candidates=1000)
        assert f"{t:.4g} ms" in str(e.value) and f"{least:.4g} ms" in str(e.value)
    with pytest.raises(Infeasible, match=r"latency: the budget .* ms is below .* the least any network"):
        evolve(q, candidates=1000)
    assert solve(Problem(p.space, replace(p.budget, latency=t * 1.5, latency_model=model)), bound_nodes=0).objective


# ---------------------------------------------------------------------------------------------- the model

def test_model_file_round_trip_and_validation():
    p = PRESETS["deepmad-mb"]
    model = synthetic_latency_model([p.space], 0)
    again = lat.from_dict(lat.to_dict(model))
    assert again == model and again.families[0].table() == model.families[0].table()
    d = lat.to_dict(model)
    bad = {**d, "families": [{**d["families"][0], "coef": {**d["families"][0]["coef"], "pw": {
        **d["families"][0]["coef"]["pw"], "macs": -1.0}}}]}
    with pytest.raises(lat.LatencyModelError, match=r"coef\.pw\.macs: expected a number >= 0"):
        lat.from_dict(bad)
    with pytest.raises(lat.LatencyModelError, match="not a deepmad latency model"):
        lat.from_dict({"families": []})
    with pytest.raises(lat.LatencyModelError, match="version"):
        lat.from_dict({**d, "deepmad_latency": 99})
    with pytest.raises(lat.LatencyModelError, match=r"coef\.pw: expected the coefficients"):
        lat.from_dict({**d, "families": [{**d["families"][0], "coef": {"pw": {"macs": 1.0}}}]})


def test_a_model_of_another_family_or_kernel_is_refused():
    r18, mb = PRESETS["deepmad-r18"], PRESETS["deepmad-mb"]
    model = synthetic_latency_model([mb.space], 0)
    with pytest.raises(lat.LatencyModelError, match=r"covers mbconv \(silu\) blocks, not bottleneck \(relu\)"):
        Problem(r18.space, replace(r18.budget, latency=10.0, latency_model=model))
    small = synthetic_latency_model([replace(mb.space, kernels=(3, 5))], 0)
    with pytest.raises(lat.LatencyModelError, match=r"no 7x7/2 depthwise conv"):
        Problem(mb.space, replace(mb.budget, latency=10.0, latency_model=small))
    with pytest.raises(ValueError, match="latency: expected a positive number"):
        Budget(1e9, 1e7, 0.3, latency=-1.0, latency_model=model)
    with pytest.raises(ValueError, match="needs a latency model"):
        Budget(1e9, 1e7, 0.3, latency=1.0)


@pytest.mark.parametrize("text,ms", [("30ms", 30.0), ("30", 30.0), (" 2.5 ms", 2.5), ("0.03s", 30.0),
                                     ("1500us", 1.5), (12, 12.0), ("1e1ms", 10.0)])
def test_parse_ms(text, ms):
    assert lat.parse_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["-5", "0", "fast", "30 min", "nan", float("inf"), "-1ms"])
def test_parse_ms_rejects(text):
    with pytest.raises(ValueError, match="latency: expected a"):
        lat.parse_ms(text)


@pytest.mark.parametrize("text,value", [("auto", None), (None, None), ("5%", 0.05), ("0", 0.0), (0.1, 0.1),
                                        (" 2.5 % ", 0.025)])
def test_parse_margin(text, value):
    assert lat.parse_margin(text) == (None if value is None else pytest.approx(value))


@pytest.mark.parametrize("text", ["-5%", "100%", "1.5", "lots", "nan", True])
def test_parse_margin_rejects(text):
    with pytest.raises(ValueError, match="latency_margin: expected"):
        lat.parse_margin(text)


def test_design_margin_is_kept_below_the_budget_asked():
    """A family's design margin m (in its model file) holds designs to latency / (1 + m) under 'auto'; the budget
    asked is reported back; latency_margin=0 holds them to the budget itself."""
    from deepmad import api

    p = PRESETS["deepmad-mb"]
    base = synthetic_latency_model([p.space], 0)
    fam = replace(base.families[0], margin=0.08)
    model = lat.from_dict(lat.to_dict(lat.LatencyModel((fam,))))
    assert model.families[0].margin == 0.08
    free = lat.predict(model, api.design("deepmad-mb", bound_nodes=0).spec).total
    t = 0.8 * free
    d = api.design("deepmad-mb", latency=t, latency_model=model, bound_nodes=0)
    b = d.problem.budget
    assert b.latency_margin == 0.08 and b.latency == pytest.approx(t / 1.08) and b.latency_asked == pytest.approx(t)
    pred = lat.predict(model, d.spec).total
    assert pred <= t / 1.08 * (1 + 1e-9)
    d0 = api.design("deepmad-mb", latency=t, latency_model=model, latency_margin=0, bound_nodes=0)
    assert d0.problem.budget.latency == t and lat.predict(model, d0.spec).total > t / 1.08  # the margin binds
    assert d0.objective >= d.objective
    d5 = api.design("deepmad-mb", latency=t, latency_model=model, latency_margin="5%", bound_nodes=0)
    assert d5.problem.budget.latency == pytest.approx(t / 1.05)
    with pytest.raises(Infeasible, match=r"latency: the budget .* ms \(1e-06 ms asked, less the design margin "
                                         r"8\.0%\) is below"):
        api.design("deepmad-mb", latency=1e-6, latency_model=model, bound_nodes=0)
    with pytest.raises(lat.LatencyModelError, match=r"margin: expected a number in \[0, 1\)"):
        lat.from_dict({**lat.to_dict(model), "families": [{**lat.to_dict(model)["families"][0], "margin": 1.5}]})
