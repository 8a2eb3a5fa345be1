"""deepmad.latency: the NNLS solver (optimality conditions, against scipy), the fit (an exact posynomial is
recovered, with its network correction), model files (atomic round trip, mismatches), timing statistics."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from deepmad.core import latency as lat
from deepmad.latency import calibrate as cal
from deepmad.latency.measure import Settings, Timing, percentile
from deepmad.latency.model import fit_family, mismatches, read, save
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
            assert len(nets) == grid.networks
