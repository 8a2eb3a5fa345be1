"""The effectiveness study (Section 5.3): the ResNet-20 budget, the designs, Kendall's τ, and a tiny run that
writes its table and plot and is skipped when run again."""
from __future__ import annotations

import json
import math

import pytest

from deepmad.api import analyze_spec
from deepmad.train.config import TrainConfig
from deepmad.train.study import StudyConfig, design_models, kendall_groups, resnet_cifar


def test_resnet20_cifar_budget_matches_the_paper():
    a = analyze_spec(resnet_cifar(20, num_classes=100))
    assert [s.depth for s in a.spec.stages] == [3, 3, 3] and a.layers == 19
    assert a.spec.stem.stride == 1 and not a.spec.stem.pool
    # paper: 0.04 G FLOPs, 0.27 M params (our count includes the two 1x1 projection shortcuts)
    assert a.flops == pytest.approx(0.04e9, rel=0.03)
    assert a.params == pytest.approx(0.27e6, rel=0.04)


def test_resnet20_cifar_builds_with_the_counted_params():
    torch = pytest.importorskip("torch")
    from deepmad.models import create_model

    spec = resnet_cifar(20, num_classes=100)
    m = create_model(spec)
    assert sum(p.numel() for p in m.parameters()) == analyze_spec(spec).params == 278324
    assert tuple(m(torch.zeros(2, 3, 32, 32)).shape) == (2, 100)


def test_designs_span_rho_within_the_budget():
    sc = StudyConfig(out="unused", train=TrainConfig("m", "builtin:mnist", "unused"), models=5,
                     budget_of="resnet20-cifar", rho_range=(0.1, 1.0))
    ds = design_models(sc, num_classes=100)
    b = analyze_spec(resnet_cifar(20, num_classes=100))
    assert [d["target_rho"] for d in ds] == pytest.approx([0.1, 0.325, 0.55, 0.775, 1.0])
    for d in ds:
        assert d["flops"] <= b.flops and d["params"] <= b.params
        assert d["rho_max"] <= d["target_rho"] + 1e-9
        assert d["spec"]["stem"]["stride"] == 1 and [s["stride"] for s in d["spec"]["stages"]] == [1, 2, 2]
    assert len({tuple(d["depths"] + d["widths"]) for d in ds}) == 5  # all different
    rhos = [d["rho"] for d in ds]
    assert rhos == sorted(rhos) and rhos[0] == pytest.approx(0.1, abs=0.01) and rhos[-1] > 0.9
    ent = [d["entropy"] for d in ds]
    assert ent == sorted(ent)  # the paper: entropy grows with rho


def test_kendall_groups():
    from scipy.stats import kendalltau

    rows = [{"rho": r, "entropy": e, "top1": t} for r, e, t in
            [(0.1, 1, 0.1), (0.12, 2, 0.2), (0.08, 3, 0.3), (0.5, 1, 0.3), (0.52, 2, 0.1), (0.45, 3, 0.2),
             (0.49, 4, 0.4), (1.0, 1, 0.5), (0.3, 9, None)]]
    g = kendall_groups(rows, (0.1, 0.5, 1.0), 0.1)
    assert [x["n"] for x in g] == [3, 4, 1, 8]
    assert g[0]["tau"] == pytest.approx(1.0)
    assert g[1]["tau"] == pytest.approx(kendalltau([1, 2, 3, 4], [0.3, 0.1, 0.2, 0.4]).statistic)
    assert math.isnan(g[2]["tau"])


def test_tiny_study_runs_and_resumes(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("kornia")
    from deepmad import cli

    argv = ["study", "rho", "--budget-of", "resnet8-cifar", "--resolution", "16", "--max-channels", "64",
            "--models", "3", "--data", "builtin:mnist", "--epochs", "1", "--batch-size", "32", "--subset", "128",
            "--val-subset", "64", "--recipe", "none", "--progress", "off", "--out", str(tmp_path / "s")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "effectiveness study: 3 networks" in out and "Kendall tau(entropy, top-1)" in out and "best: #" in out
    s = tmp_path / "s"
    res = json.loads((s / "results.json").read_text())
    assert res["complete"] and len(res["rows"]) == 3
    assert all(0 <= r["top1"] <= 1 and r["epochs"] == 1 for r in res["rows"])
    b = analyze_spec(resnet_cifar(8, num_classes=10, resolution=16))
    assert res["budget"] == {"flops": b.flops, "params": b.params, "source": "resnet8-cifar"}
    csv = (s / "results.csv").read_text().splitlines()
    assert csv[0].startswith("index,target_rho,rho,entropy") and len(csv) == 4
    assert (s / "study.png").read_bytes()[:4] == b"\x89PNG"
    for i in range(3):
        summary = json.loads((s / "models" / f"{i:03d}" / "summary.json").read_text())
        assert summary["params"] == res["rows"][i]["params"]  # the built network has the counted params
    stamp = [(s / "models" / f"{i:03d}" / "last.pt").stat().st_mtime_ns for i in range(3)]
    assert cli.main(argv) == 0  # again: nothing is retrained, the same table comes back
    assert capsys.readouterr().out == out
    assert [(s / "models" / f"{i:03d}" / "last.pt").stat().st_mtime_ns for i in range(3)] == stamp
    argv[argv.index("--models") + 1] = "4"
    assert cli.main(argv) == 2
    assert "holds a study designed with a different models" in capsys.readouterr().err
