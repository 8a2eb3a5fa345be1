"""``deepmad bench``, ``deepmad latency calibrate | show`` and the latency flags of ``design`` / ``analyze``, as a
user runs them: stdout parsed, one JSON document with --json, one error line and exit 2 for bad input.

Calibration runs on the tiny grid (seconds; its coefficients mean nothing); the design tests use a synthetic model
file (random non-negative coefficients), so nothing here depends on how fast this machine is. No timed assertions.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from deepmad import cli
from deepmad.core import latency as lat
from deepmad.core.presets import PRESETS
from deepmad.core.reference import reference
from deepmad.core.spec import from_dict, save
from deepmad.latency import calibrate as cal
from shared import synthetic_latency_model

CHEAP = ["--bound-nodes", "20"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code: int, out: str, err: str, *words: str) -> None:
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepmad: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A synthetic model of the three families in their default layouts, on this machine (no warning)."""
    from deepmad.latency.calibrate import family_space
    from deepmad.latency.measure import cpu_name, versions

    spaces = [family_space(b, a) for b, a in (("bottleneck", "relu"), ("mbconv", "silu"), ("basic", "relu"))]
    spaces += [replace(s, resolution=288) for s in spaces]
    model = synthetic_latency_model(spaces, 0, scale=1e-6, extra=("stem7_s2", "maxpool", "pw"))
    meta = {"environment": {"device": "cpu", "device_name": cpu_name(), "backend": "torch", "threads": 1,
                            "batch": 1, "versions": versions("torch")}}
    path = tmp_path_factory.mktemp("lat") / "cpu.latency.json"
    path.write_text(json.dumps(lat.to_dict(replace(model, meta=meta))))
    return str(path)


# ---------------------------------------------------------------------------------------------- calibrate


@pytest.mark.filterwarnings("ignore")
def test_calibrate_on_a_tiny_grid(tmp_path):
    """The command a user runs, on the tiny grid: one JSON document on stdout, the file it names holds a model of
    the families asked for, recording device, backend, threads, batch, versions and every family's fit."""
    pytest.importorskip("torch")
    out_file = tmp_path / "cpu.latency.json"
    r = subprocess.run([sys.executable, "-m", "deepmad", "latency", "calibrate", "--grid", "tiny", "--families",
                        "bottleneck,mbconv", "--runs", "1", "--warmup", "0", "-o", str(out_file), "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["output"] == str(out_file)
    from deepmad.latency.model import read

    model = read(out_file)
    assert [f.name for f in model.families] == ["bottleneck (relu)", "mbconv (silu)"]
    env = model.meta["environment"]
    assert (env["device"], env["backend"], env["threads"], env["batch"], env["clock"]) == ("cpu", "torch", 1, 1, "wall")
    import torch

    assert env["versions"]["torch"] == torch.__version__.split("+")[0] or env["versions"]["torch"] == torch.__version__
    for f in model.families:
        fit = model.meta["fits"][f"{f.block}:{f.act}"]
        g = cal.GRIDS["tiny"]  # random networks, designs, designs under latency budgets of the first fit
        assert fit["parts"]["count"] > 0 and fit["networks"]["count"] == g.networks + g.designs + g.refine == 4
        assert all(v >= 0 for _, vs in f.coef for v in vs)
    # the tiny grid covers every layer the families' default spaces use: a design can be budgeted with it
    for name in ("deepmad-r18", "deepmad-mb"):
        p = PRESETS[name]
        lat.family_for(model, p.space)
    # and the file is refused as a model of another family
    r = subprocess.run([sys.executable, "-m", "deepmad", "analyze", "resnet18", "--latency-model", str(out_file)],
                       capture_output=True, text=True, timeout=120)
    one_error(r.returncode, r.stdout, r.stderr, "covers bottleneck (relu), mbconv (silu) blocks, not basic (relu)")
    r = subprocess.run([sys.executable, "-m", "deepmad", "latency", "show", str(out_file)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "bottleneck (relu): parts median" in r.stdout and "drift reference" in r.stdout
    ref = model.meta["reference"]
    assert ref["ms"] > 0 and ref["chunks"] >= 1 and ref["speed"][0] <= 1.0 <= ref["speed"][1]
    assert from_dict(ref["spec"]) == cal.drift_reference()
    # bench with it: timed after the drift reference, the prediction also at the device's speed now
    r = subprocess.run([sys.executable, "-m", "deepmad", "bench", "deepmad-mb", "--resolution", "32", "--runs", "2",
                        "--warmup", "0", "--latency-model", str(out_file), "--json"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["speed"] > 0 and doc["predicted_now_ms"] == pytest.approx(doc["predicted_ms"] * doc["speed"])
    assert doc["timing"]["runs"] == 2


@pytest.mark.filterwarnings("ignore")
def test_calibrate_the_minimum_of_the_runs(capsys, tmp_path, monkeypatch):
    """--statistic min: every item's latency is the minimum of its runs (the drift reference's too), the file says
    so, and bench compares its prediction with the measured minimum."""
    pytest.importorskip("torch")
    from deepmad.latency import measure as ms
    from deepmad.latency.model import read

    values = iter(range(1, 10**6))  # every run of anything takes longer than the one before: min != median
    monkeypatch.setattr(ms, "measure_many", lambda models, settings, rounds=None, progress=None, seed=0: [
        ms.Timing(tuple(float(next(values)) for _ in range(3))) for _ in models])
    out_file = tmp_path / "min.latency.json"
    code, out, err = run(capsys, "latency", "calibrate", "--grid", "tiny", "--families", "mbconv", "--statistic",
                         "min", "-o", str(out_file), "--quiet")
    assert code == 0, err
    assert "fitted: the min of each item's runs" in out
    model = read(out_file)
    assert model.meta["measure"]["statistic"] == model.statistic == "min"
    assert "the minimum of each item's runs" in model.describe()
    # the items' values are minima: the drift reference's level is an odd number of the sequence's first runs
    ref = model.meta["reference"]
    assert ref["ms"] == float(int(ref["ms"]))
    code, out, err = run(capsys, "bench", "deepmad-mb", "--resolution", "32", "--runs", "3", "--warmup", "0",
                         "--latency-model", str(out_file), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["statistic"] == "min" and doc["timing"]["min_ms"] < doc["timing"]["median_ms"]
    code, out, err = run(capsys, "bench", "deepmad-mb", "--resolution", "32", "--runs", "3", "--warmup", "0",
                         "--latency-model", str(out_file))
    assert code == 0 and "of the measured min, what the model fits" in out
    code, out, err = run(capsys, "analyze", "deepmad-mb", "--latency-model", str(out_file), "--json")
    assert code == 0 and json.loads(out)["latency"]["statistic"] == "min"
    one_error(*run(capsys, "latency", "calibrate", "--grid", "tiny", "--statistic", "mean", "-o",
                   str(tmp_path / "x.json")), "--statistic", "invalid choice")


def test_calibrate_offers_every_statistic_a_model_file_may_hold():
    """The parser spells --statistic's choices itself (it loads no numpy, and the canonical tuple lives beside
    numpy in core.latency): the two stay one list, in the same order, with the same default."""
    p = cli.parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices["latency"]
    cal_p = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices["calibrate"]
    stat = next(a for a in cal_p._actions if a.dest == "statistic")
    assert tuple(stat.choices) == lat.STATISTICS and stat.default == lat.STATISTICS[0]


def test_calibrate_keeps_an_existing_file(capsys, tmp_path):
    f = tmp_path / "m.json"
    f.write_text("mine")
    one_error(*run(capsys, "latency", "calibrate", "--grid", "tiny", "-o", str(f)), "file exists; use --force")
    assert f.read_text() == "mine"
    one_error(*run(capsys, "latency", "calibrate", "--grid", "tiny", "--families", "resnet", "-o",
                   str(tmp_path / "x.json")), "families: expected block families")
    one_error(*run(capsys, "latency"), "an action is required")


# ---------------------------------------------------------------------------------------------- bench


def test_bench_json(capsys, model_file):
    pytest.importorskip("torch")
    code, out, err = run(capsys, "bench", "resnet18", "--resolution", "32", "--runs", "3", "--warmup", "1", "--json",
                         "--latency-model", model_file)
    assert code == 0, err
    doc = json.loads(out)
    t = doc["timing"]
    assert t["runs"] == 3 == len(doc["samples_ms"]) and t["batch"] == 1 and doc["input"] == [1, 3, 32, 32]
    assert min(doc["samples_ms"]) == t["min_ms"] <= t["median_ms"] <= t["p90_ms"] <= max(doc["samples_ms"])
    assert t["images_per_s"] == pytest.approx(1e3 / t["median_ms"])
    assert doc["settings"]["threads"] == 1 and doc["environment"]["backend"] == "torch"
    from deepmad.latency.model import read

    spec = replace(reference("resnet18"), resolution=32)
    assert doc["predicted_ms"] == pytest.approx(lat.predict(read(model_file), spec).total)


def test_bench_onnxruntime_and_text(capsys, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    spec = replace(reference("mobilenet_v2"), resolution=32, name="small-mbv2")
    path = tmp_path / "net.yaml"
    save(spec, path)
    code, out, err = run(capsys, "bench", str(path), "--backend", "onnxruntime", "--runs", "2", "--warmup", "1",
                         "--batch", "2", "--quiet")
    assert code == 0, err
    assert out.startswith("small-mbv2: cpu (") and "onnxruntime" in out and "input 2x3x32x32" in out
    assert "median" in out and "p90" in out and "images/s" in out
    one_error(*run(capsys, "bench", str(path), "--backend", "onnxruntime", "--channels-last"),
              "channels_last: applies to the torch backend only")
    one_error(*run(capsys, "bench", str(path), "--threads", "2", "--clock", "cpu"), "clock cpu")
    one_error(*run(capsys, "bench", "nosuchnet"), "unknown model 'nosuchnet'")


# ---------------------------------------------------------------------------------------------- design / analyze


@pytest.mark.parametrize("argv,words", [
    (["--latency", "-5", "--latency-model", "M"], ["latency: expected a positive duration", "'-5'"]),
    (["--latency", "0ms", "--latency-model", "M"], ["latency: expected a positive duration"]),
    (["--latency", "fast", "--latency-model", "M"], ["latency: expected a duration like 30ms"]),
    (["--latency", "30ms"], ["--latency: needs --latency-model FILE"]),
    (["--latency", "30ms", "--latency-model", "/nonexistent/cpu.json"], ["/nonexistent/cpu.json: cannot read"]),
    (["--latency", "30ms", "--latency-model", "M", "--latency-margin", "150%"],
     ["latency_margin: expected a margin from 0 to below 100%", "'150%'"]),
    (["--latency", "30ms", "--latency-model", "M", "--latency-margin", "lots"],
     ["latency_margin: expected auto (the latency model's design margin)"]),
])
def test_design_bad_latency_input(capsys, model_file, argv, words):
    argv = [model_file if a == "M" else a for a in argv]
    one_error(*run(capsys, "design", "--preset", "deepmad-r18", *CHEAP, *argv), *words)


@pytest.mark.parametrize("content,words", [
    ("{not json", ["not a deepmad latency model (invalid JSON"]),
    ('{"families": []}', ["not a deepmad latency model (no 'deepmad_latency' field)"]),
    ('{"deepmad_latency": 1, "families": [{"block": "bottleneck", "act": "relu", "coef": {"pw": {"macs": -1, "in": 0, '
     '"out": 0, "weights": 0, "one": 0}}}]}', ["coef.pw.macs: expected a number >= 0"]),
    (b"\xff\xfe", ["not UTF-8"]),
    ('{"deepmad_latency": 1, "measure": {"statistic": "mean"}, "families": [{"block": "bottleneck", "act": "relu", '
     '"coef": {"pw": {"macs": 1, "in": 0, "out": 0, "weights": 0, "one": 0}}}]}',
     ["measure.statistic: expected one of median, min", "'mean'"]),
    ('{"deepmad_latency": 1, "measure": 5, "families": [{"block": "bottleneck", "act": "relu", '
     '"coef": {"pw": {"macs": 1, "in": 0, "out": 0, "weights": 0, "one": 0}}}]}',
     ["measure: expected an object (warmup, runs, statistic)", "got 5"]),
])
def test_design_corrupt_model_file(capsys, tmp_path, content, words):
    f = tmp_path / "bad.json"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    one_error(*run(capsys, "design", "--preset", "deepmad-r18", "--latency", "30ms", "--latency-model", str(f),
                   *CHEAP), str(f), *words)


def test_design_model_of_another_family(capsys, tmp_path):
    model = synthetic_latency_model([PRESETS["deepmad-mb"].space], 0)
    f = tmp_path / "mb.json"
    f.write_text(json.dumps(lat.to_dict(model)))
    one_error(*run(capsys, "design", "--preset", "deepmad-r18", "--latency", "30", "--latency-model", str(f), *CHEAP),
              "covers mbconv (silu) blocks, not bottleneck (relu)", "--families bottleneck")


def test_design_with_a_latency_budget(capsys, model_file):
    from deepmad.latency.model import read

    model = read(model_file)
    # the free design is proven optimal (no node limit) and breaks the budget below, so every design within that
    # budget scores below it, however early its own proof stops
    free = json.loads(run(capsys, "design", "--preset", "deepmad-r18", "--latency-model", model_file, "--json")[1])
    assert free["status"] == "optimal"
    budget = 0.8 * free["latency"]["predicted_ms"]
    code, out, err = run(capsys, "design", "--preset", "deepmad-r18", "--latency", f"{budget}ms", "--latency-model",
                         model_file, "--json", *CHEAP)
    assert code == 0 and err == ""
    doc = json.loads(out)
    spec = from_dict(doc["spec"])
    assert doc["latency"]["predicted_ms"] == pytest.approx(lat.predict(model, spec).total, rel=1e-12)
    assert doc["latency"]["predicted_ms"] <= budget and doc["usage"]["latency"] <= 1.0
    assert doc["budget"]["latency_ms"] == pytest.approx(budget) and doc["latency"]["in_bound"] is True
    assert doc["latency"]["statistic"] == "median"  # the synthetic file does not say: the default
    assert doc["objective"] < free["objective"] and doc["gap"] is not None and doc["bound"] >= doc["objective"]
    code, out, _ = run(capsys, "design", "--preset", "deepmad-r18", "--latency", f"{budget / 1e3}s", "--latency-model",
                       model_file, *CHEAP)
    assert code == 0 and "latency model  " + model_file in out and "the gap's bound includes it" in out
    assert f"% of {budget:g} ms" in out


def test_design_keeps_the_models_design_margin(capsys, tmp_path, model_file):
    """A model whose bottleneck family has a design margin of 10%: by default the design's predicted latency is
    within budget / 1.1, reported beside the budget asked; --latency-margin 0 holds it to the budget."""
    data = json.loads(open(model_file).read())
    for f in data["families"]:
        f["margin"] = 0.1 if f["block"] == "bottleneck" else 0.0
    path = tmp_path / "margin.latency.json"
    path.write_text(json.dumps(data))
    free = json.loads(run(capsys, "design", "--preset", "deepmad-r18", "--latency-model", str(path), "--json",
                          *CHEAP)[1])
    budget = 0.8 * free["latency"]["predicted_ms"]
    code, out, err = run(capsys, "design", "--preset", "deepmad-r18", "--latency", f"{budget}ms", "--latency-model",
                         str(path), "--json", *CHEAP)
    doc = json.loads(out)
    assert code == 0 and err == ""
    assert doc["budget"]["latency_ms"] == pytest.approx(budget) and doc["budget"]["latency_margin"] == 0.1
    assert doc["budget"]["latency_limit_ms"] == pytest.approx(budget / 1.1)
    assert doc["latency"]["predicted_ms"] <= budget / 1.1 * (1 + 1e-9) and doc["latency"]["margin"] == 0.1
    assert doc["usage"]["latency"] == pytest.approx(doc["latency"]["predicted_ms"] / budget)
    code, out, _ = run(capsys, "design", "--preset", "deepmad-r18", "--latency", f"{budget}ms", "--latency-model",
                       str(path), *CHEAP)
    assert code == 0 and f"designed within {budget / 1.1:.4g} ms: a design margin of 10.0%" in out
    code, out, _ = run(capsys, "design", "--preset", "deepmad-r18", "--latency", f"{budget}ms", "--latency-model",
                       str(path), "--latency-margin", "0", "--json", *CHEAP)
    none = json.loads(out)
    assert none["budget"]["latency_limit_ms"] == pytest.approx(budget) and none["budget"]["latency_margin"] == 0
    assert budget / 1.1 < none["latency"]["predicted_ms"] <= budget * (1 + 1e-9)


def test_design_infeasible_latency_names_the_fastest_network(capsys, model_file):
    one_error(*run(capsys, "design", "--preset", "deepmad-r18", "--latency", "1e-9ms", "--latency-model", model_file,
                   *CHEAP), "latency: the budget 1e-09 ms is below", "its fastest network: stem 8")


def test_model_from_another_device_warns_once(capsys, tmp_path, model_file):
    doc = json.loads(open(model_file).read())
    doc["environment"] = {**doc["environment"], "device_name": "Some Other CPU", "versions": {"torch": "1.0.0"}}
    f = tmp_path / "other.json"
    f.write_text(json.dumps(doc))
    code, out, err = run(capsys, "design", "--preset", "deepmad-mb", "--latency", "1e9", "--latency-model", str(f),
                         "--json", *CHEAP)
    assert code == 0 and json.loads(out)["latency"]["model"] == str(f)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepmad: warning: latency model") and "Some Other CPU" in lines[0]
    assert "torch 1.0.0" in lines[0]


def test_analyze_with_a_latency_model(capsys, model_file, tmp_path):
    from deepmad.latency.model import read

    model = read(model_file)
    code, out, err = run(capsys, "design", "--preset", "deepmad-mb", "--bound-nodes", "0", "-o",
                         str(tmp_path / "net.yaml"))
    assert code == 0
    code, out, err = run(capsys, "analyze", str(tmp_path / "net.yaml"), "--latency-model", model_file, "--json")
    doc = json.loads(out)
    pred = lat.predict(model, from_dict(doc["spec"]))
    assert doc["latency"]["predicted_ms"] == pytest.approx(pred.total)
    assert sum(doc["latency"]["rows_ms"].values()) == pytest.approx(pred.total)
    assert set(doc["latency"]["rows_ms"]) == {"stem", "stage1", "stage2", "stage3", "stage4", "stage5", "head", "tail"}
    code, out, err = run(capsys, "analyze", str(tmp_path / "net.yaml"), "--latency-model", model_file)
    header = out.splitlines()[2]
    assert header.rstrip().endswith("ms") and "latency        " in out
    stage1 = [line for line in out.splitlines() if line.startswith("stage1")][0]
    assert stage1.split()[-1] == f"{pred.rows['stage1']:,.2f}"
    one_error(*run(capsys, "analyze", "--torch", "x:y", "--latency-model", model_file), "--latency-model: applies")


def test_design_with_a_latency_model_needs_no_torch(model_file):
    """The design command with a latency model file runs without importing torch (nor does the core)."""
    code = ("import sys, json; from deepmad import cli; "
            f"rc = cli.main(['design', '--preset', 'deepmad-mb', '--latency', '1e9', '--latency-model', {model_file!r}, "
            "'--bound-nodes', '10', '--json']); "
            "assert rc == 0; heavy = [m for m in ('torch', 'tqdm') if m in sys.modules]; "
            "print(json.dumps(heavy), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["latency"]["predicted_ms"] > 0
    assert json.loads(r.stderr.strip().splitlines()[-1]) == []
