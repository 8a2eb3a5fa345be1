"""deepmad.latency: the NNLS solver (optimality conditions, against scipy), the fit (an exact posynomial is
recovered, with its network correction), model files (atomic round trip, mismatches), timing statistics."""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from deepmad.core import blocks, latency as lat
from deepmad.latency import calibrate as cal
from deepmad.latency.measure import Settings, Timing, percentile
from deepmad.latency.model import JOINT_MIN, fit_family, mismatches, read, save
from deepmad.latency.nnls import nnls
from shared import synthetic_latency_model


@settings(max_examples=200, deadline=None)
@given(m=st.integers(1, 40), n=st.integers(1, 20), seed=st.integers(0, 2**31 - 1))
def test_nnls_meets_the_kkt_conditions(m, n, seed):
    """x >= 0; the gradient A^T(b - Ax) is <= 0 where x = 0 and 0 where x > 0 (the optimum of a convex problem)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, n)) * rng.uniform(0.01, 100, n)
    b = rng.normal(size=m) * 10
    x = nnls(A, b)
    w = A.T @ (b - A @ x)
    scale = np.abs(A).max() * max(1.0, np.abs(b).max()) * max(m, n)
    assert x.min() >= 0
    assert np.all(w[x == 0] <= 1e-8 * scale)
    assert np.all(np.abs(w[x > 0]) <= 1e-8 * scale)


def test_nnls_matches_scipy():
    so = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    for _ in range(200):
        m, n = rng.integers(2, 60), rng.integers(1, 25)
        A, b = rng.normal(size=(m, n)), rng.normal(size=m)
        mine, ref = nnls(A, b), so.nnls(A, b, maxiter=1000)[0]
        assert np.linalg.norm(A @ mine - b) <= np.linalg.norm(A @ ref - b) + 1e-9


def test_fit_recovers_an_exact_posynomial_and_its_correction():
    """Times made by a known model, networks 1.1x their parts + 2 ms: the fit predicts them all (to rounding)
    and finds the correction."""
    block, act = "mbconv", "silu"
    true = synthetic_latency_model([cal.family_space(block, act)], 5, scale=1e-6, extra=("head",))
    true = lat.LatencyModel((replace(true.families[0], coef=tuple((k, (0.0,) if k == "net" else v)
                                                                   for k, v in true.families[0].coef)),))
    th = {(k, f): v for k, vs in true.families[0].table().items() for f, v in vs.items()}
    grid = replace(cal.GRIDS["small"], networks=6)
    items = cal.items_for([(block, act)], grid, 0, 1)
    parts = [(it.features, sum(th.get(k, 0.0) * v for k, v in it.features.items()))
             for it in items if it.role != "network"]
    nets = [(it.spec, it.features, 1.1 * lat.predict(true, it.spec).total + 2.0) for it in items if it.role == "network"]
    fam, record = fit_family(block, act, parts, nets)
    assert record["parts"]["max"] < 1e-6
    assert record["correction"]["scale"] == pytest.approx(1.1, rel=1e-6)
    assert record["correction"]["overhead_ms"] == pytest.approx(2.0, rel=1e-5)
    assert record["networks"]["max"] < 1e-6
    assert all(v >= 0 for _, vs in fam.coef for v in vs)


def _measured_by(true: lat.LatencyModel, items, noise: float = 0.0):
    """Parts and networks timed by the true model; the parts with a multiplicative noise of this spread (blocks
    timed alone, a few ms each, are the noisy measurements of a calibration)."""
    th = {(k, f): v for k, vs in true.families[0].table().items() for f, v in vs.items()}
    rng = np.random.default_rng(7)
    parts = [(it.features, sum(th.get(k, 0.0) * v for k, v in it.features.items()) * math.exp(noise * rng.normal()))
             for it in items if it.role != "network"]
    parts = [(f, t) for f, t in parts if t > 0]  # parts of kinds the spaces do not use (ResNet's stem) cost 0 here
    nets = [(it.spec, it.features, lat.predict(true, it.spec).total) for it in items if it.role == "network"]
    return parts, nets


def test_joint_fit_learns_from_the_networks():
    """With JOINT_MIN networks or more, the coefficients are fitted on parts and networks together: with noisy
    parts (30%) and exact networks, cross-validation chooses a network weight > 0, and networks calibration
    never saw are predicted better than by the parts' fit with its correction."""
    block, act = "bottleneck", "relu"
    true = synthetic_latency_model([cal.family_space(block, act)], 3, zeros=0.0, scale=1e-6)
    grid = replace(cal.GRIDS["small"], networks=24, designs=0)
    parts, nets = _measured_by(true, cal.items_for([(block, act)], grid, 0, 1), noise=0.3)
    assert len(nets) >= JOINT_MIN
    fam, record = fit_family(block, act, parts, nets)
    assert record["joint"]["weight"] > 0 and set(record["joint"]["cross_validation"]) == {"0", "1", "3", "10", "30"}
    assert all(v >= 0 for _, vs in fam.coef for v in vs)
    sp = cal.family_space(block, act)
    fresh = cal.random_specs(sp, 20, 99, (0.3 * cal.family_budget(block), 3 * cal.family_budget(block)))
    truth = np.array([lat.predict(true, s).total for s in fresh])
    joint = np.array([lat.predict(lat.LatencyModel((fam,)), s).total for s in fresh])
    old = fit_family(block, act, parts, nets[:JOINT_MIN - 1])[0]  # too few networks: the correction only
    corrected = np.array([lat.predict(lat.LatencyModel((old,)), s).total for s in fresh])
    e_joint, e_old = np.abs(joint / truth - 1), np.abs(corrected / truth - 1)
    assert np.median(e_joint) < 0.8 * np.median(e_old), (np.median(e_joint), np.median(e_old))
    assert np.percentile(e_joint, 90) < 0.8 * np.percentile(e_old, 90)


def test_design_margin_from_held_out_designs():
    """The design margin: how much slower than predicted (held out) the designs under latency budgets ran, their
    median, clipped to [0, MARGIN_MAX]; none with fewer than MARGIN_MIN. In a fit, networks timed 10% slower
    than the true model's prediction (the designs) give about 10%, the rest exact."""
    from deepmad.latency.model import MARGIN_MAX, MARGIN_MIN, design_margin

    assert design_margin(np.array([-0.1] * MARGIN_MIN)) == pytest.approx(1 / 0.9 - 1)
    assert design_margin(np.array([0.05, 0.1, 0.2, 0.0])) == 0.0  # faster than predicted: no margin
    assert design_margin(np.array([-0.5] * MARGIN_MIN)) == MARGIN_MAX
    assert design_margin(np.array([-0.1] * (MARGIN_MIN - 1))) == 0.0
    block, act = "bottleneck", "relu"
    true = synthetic_latency_model([cal.family_space(block, act)], 3, zeros=0.0, scale=1e-6)
    parts, nets = _measured_by(true, cal.items_for([(block, act)], replace(cal.GRIDS["small"], networks=24,
                                                                             designs=0), 0, 1))
    slow = [j % 3 == 0 for j in range(len(nets))]
    nets = [(s, f, t * (1.1 if b else 1.0)) for (s, f, t), b in zip(nets, slow)]
    fam, record = fit_family(block, act, parts, nets, slow)
    assert record["margin"]["count"] == sum(slow)
    assert 0.03 < fam.margin == record["margin"]["margin"] <= 0.1 + 1e-6
    assert fit_family(block, act, parts, nets)[0].margin == 0.0  # no designs named: no margin


def test_choose_prefers_the_correction_when_it_is_exact():
    """Networks exactly 1.1x their parts + 2 ms: the correction fits them, and cross-validation picks it (0)."""
    block, act = "mbconv", "silu"
    true = synthetic_latency_model([cal.family_space(block, act)], 5, scale=1e-6, extra=("head",))
    true = lat.LatencyModel((replace(true.families[0], coef=tuple((k, (0.0,) if k == "net" else v)
                                                                   for k, v in true.families[0].coef)),))
    parts, nets = _measured_by(true, cal.items_for([(block, act)], replace(cal.GRIDS["small"], networks=16,
                                                                             designs=0), 0, 1))
    nets = [(s, f, 1.1 * t + 2.0) for s, f, t in nets]
    fam, record = fit_family(block, act, parts, nets)
    assert record["joint"]["weight"] == 0 and record["networks"]["max"] < 1e-6


def test_designed_networks_lie_in_the_space_and_within_their_budgets():
    """design_specs: the search's designs of the family's problem at the scales asked for (FLOPs, params, ρ0
    met); refine_specs: designs within a latency budget below their FLOPs-only design's predicted latency."""
    from deepmad.core.budget import evaluate, from_spec, in_space

    for block, act in cal.parse_families(None):
        specs = cal.design_specs(block, act, 3, (0.5, 2.0))
        assert len(specs) == 3 and len({replace(s, name="") for s in specs}) == 3
        for j, (s, f) in enumerate(zip(specs, (0.5, 1.0, 2.0))):
            prob = cal.family_problem(block, act, 224, f, cal.DESIGN_RHO[block][j])
            x = from_spec(prob, s)[None]
            assert evaluate(prob, x).feasible[0] and in_space(prob, x)[0]  # FLOPs, params and rho0 met
            assert all(st.block == block for st in s.stages) and s.act == act
        model = synthetic_latency_model([cal.family_space(block, act)], 1, scale=1e-6)
        refined = cal.refine_specs(model, block, act, 2, (0.5, 2.0))
        assert len(refined) == 2
        for j, (s, f) in enumerate(zip(refined, (0.5, 2.0))):
            free = cal.design_specs(block, act, 2, (0.5, 2.0))[j]
            frac = cal.REFINE_FRACTIONS[j]
            assert lat.predict(model, s).total <= frac * lat.predict(model, free).total * (1 + 1e-9)


def test_model_file_round_trip_and_environment(tmp_path):
    from deepmad.latency.measure import cpu_name, versions

    model = synthetic_latency_model([cal.family_space("bottleneck", "relu")], 0)
    env = {"device": "cpu", "device_name": cpu_name(), "backend": "torch", "versions": versions("torch")}
    model = replace(model, meta={"environment": env, "fits": {"bottleneck:relu": {"parts": {"count": 3}}}})
    path = tmp_path / "m.json"
    path.write_text("old")
    save(model, path)
    again = read(path)
    assert again == model and again.meta["fits"] == model.meta["fits"] and again.source == str(path)
    assert mismatches(again) == []
    other = json.loads(path.read_text())
    other["environment"]["device_name"] = "Another CPU"
    other["environment"]["versions"] = {"torch": "0.1"}
    path.write_text(json.dumps(other))
    diff = mismatches(read(path))
    assert len(diff) == 2 and "Another CPU" in diff[0] and "torch 0.1" in diff[1]
    assert not list(tmp_path.glob(".m.json.*"))  # no temporary file left behind


def test_timing_statistics():
    t = Timing((5.0, 1.0, 3.0, 2.0, 4.0), batch=2)
    assert (t.median_ms, t.min_ms, t.runs) == (3.0, 1.0, 5)
    assert t.p90_ms == pytest.approx(float(np.percentile([5, 1, 3, 2, 4], 90)))
    assert t.images_per_s == pytest.approx(2e3 / 3.0)
    assert percentile([7.0], 90) == 7.0
    assert (t.value(), t.value("median"), t.value("min")) == (3.0, 3.0, 1.0)
    with pytest.raises(ValueError, match="statistic: expected one of median, min, got 'mean'"):
        t.value("mean")


@pytest.mark.parametrize("kw,words", [(dict(device="tpu"), "device"), (dict(backend="tvm"), "backend"),
                                      (dict(threads=0), "threads"), (dict(runs=0), "runs"),
                                      (dict(backend="onnxruntime", channels_last=True), "channels_last"),
                                      (dict(clock="cpu", threads=2), "clock cpu"), (dict(clock="gpu"), "clock"),
                                      (dict(allocator="tcmalloc"), "allocator")])
def test_settings_are_checked(kw, words):
    with pytest.raises(ValueError, match=words):
        Settings(**kw)


def test_grid_covers_the_presets_layers():
    """The tiny grid (CI) and the default one measure every layer kind the families' default spaces use, at
    every (stride, side) cell, and the random networks they time lie in their spaces' MACs ranges."""
    for name in ("tiny", "default"):
        grid = cal.GRIDS[name]
        items = cal.items_for(cal.parse_families(None), grid, 0, 1)
        for block, act in cal.parse_families(None):
            sp = cal.family_space(block, act, grid.resolutions[0])
            measured = {k for it in items if it.family == (block, act) for k, _ in it.features}
            needed = set()
            for i in range(sp.n):
                st_ = lat.stage_terms(sp, i, True)
                for ts in st_.first + st_.rest + [st_.pre, st_.post]:
                    needed |= {t.kind for t in ts}
            assert needed - {"net"} <= measured, (name, block, needed - measured)
            nets = [it for it in items if it.family == (block, act) and it.role == "network"]
            rand = [it for it in nets if it.spec.name.startswith("random-")]
            designed = [it for it in nets if it.spec.name.startswith("design-")]
            assert (len(rand), len(designed), len(nets)) == (grid.networks, grid.designs, len(rand) + len(designed))
            scale = cal.family_budget(block) * (sp.resolution / 224) ** 2
            assert all(grid.macs[0] * scale <= blocks.cost(it.spec).macs <= grid.macs[1] * scale for it in rand)


def test_drift_is_taken_out_chunk_by_chunk(monkeypatch):
    """A device whose speed changes from chunk to chunk (every time in a chunk times its factor): items come out
    in one speed's units (measured / true the same for all), the reference level is the chunks' median, and
    speed() later tells each spec's speed from the reference timed before its chunk."""
    true = {"REF": 5.0}
    slow = itertools.cycle([1.0, 1.3, 0.8, 1.1, 1.5, 0.9, 1.2, 1.0])
    seen = []

    def fake_measure_many(models, settings, rounds=None, progress=None, seed=0):
        f = next(slow)
        seen.append(f)
        for _ in models:
            if progress:
                progress(1)
        return [Timing(tuple(true[m] * f * (1 + 0.01 * j) for j in (-1, 0, 1)), 1) for m, _ in models]

    monkeypatch.setattr(cal.ms, "measure_many", fake_measure_many)
    monkeypatch.setattr(cal.ms, "build", lambda spec: spec if isinstance(spec, str) else "REF")
    monkeypatch.setattr(cal.ms, "input_shape", lambda spec, batch: (batch, 3, 8, 8))
    items = []
    for j in range(20):
        true[f"m{j}"] = 1.0 + j
        items.append(cal.Item(("bottleneck", "relu"), "block", f"m{j}", (lambda j=j: f"m{j}"), (1, 3, 8, 8), {}))
    ref = cal.measure_items(items, Settings(runs=3), chunk=4, progress=False)
    assert ref["chunks"] == 5 and ref["ms"] == pytest.approx(5.0 * float(np.median(seen)))
    assert ref["speed"] == pytest.approx([min(seen) / np.median(seen), max(seen) / np.median(seen)])
    ratio = [it.ms / true[it.label] for it in items]
    assert max(ratio) == pytest.approx(min(ratio), rel=1e-12) and ratio[0] == pytest.approx(np.median(seen))
    assert len({round(it.timing.median_ms / true[it.label], 9) for it in items}) == 5  # raw: one speed a chunk
    model = lat.LatencyModel((), {"reference": ref})
    seen.clear()
    true.update(a=2.0, b=3.0, c=4.0)
    factor, timings, speeds = cal.speed(model, Settings(runs=3), ["a", "b", "c"], chunk=2)
    assert len(timings) == 3 and speeds == pytest.approx([seen[0] * 5.0 / ref["ms"]] * 2 + [seen[1] * 5.0 / ref["ms"]])
    assert [t.median_ms / true[x] for t, x in zip(timings, "abc")] == pytest.approx([seen[0]] * 2 + [seen[1]])
    # the minimum of the runs instead: every item and the reference at the fastest of their three runs (-1%)
    seen.clear()
    ref = cal.measure_items(items, Settings(runs=3), chunk=4, progress=False, statistic="min")
    assert ref["ms"] == pytest.approx(5.0 * 0.99 * float(np.median(seen)))
    assert [it.ms / true[it.label] for it in items] == pytest.approx([0.99 * np.median(seen)] * len(items))
    assert all(it.timing.min_ms < it.timing.median_ms for it in items)
