"""``deepmad sweep``, ``deepmad draw``, ``deepmad design --report`` and ``--block mlp``, run as subprocesses: what
the user sees on stdout (one JSON document with --json), the files written, one-line errors with exit 2.

The sweeps are the acceptance cases of the paper's studies: Table 1 (DeepMAD-R18 over rho0), Table 2 (DeepMAD-B0
over rho0), Table 7 (alpha5), Table 8 (the guidelines); each design within its budgets and rho0."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepmad.core import mlp
from deepmad.core.budget import Budget, Problem, Space, evaluate, from_spec, in_space
from deepmad.core.spec import load

NODES = ["--bound-nodes", "40"]  # a lighter proof than the default keeps the file fast; the gaps stay proven


def cli(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepmad", *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("deepmad: error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    return r.stderr


def sweep_json(tmp_path, *argv) -> dict:
    out = tmp_path / "out"
    r = cli("sweep", *argv, *NODES, "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one JSON document, nothing else on stdout
    assert doc["files"]["json"] == str(out / "sweep.json") and json.loads((out / "sweep.json").read_text()) == doc
    png = out / "sweep.png"
    assert doc["files"]["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return doc


def within(d: dict) -> None:
    """The design written to its spec file meets its budgets and rho0, recomputed from the file."""
    spec = load(d["spec_file"])
    b = d["budget"]
    assert d["flops"] <= b["flops"] and d["params"] <= b["params"] and d["rho_max"] <= b["rho0"] + 1e-12
    from deepmad import api

    a = api.analyze(spec, alpha=d["alpha"], beta=b["beta"])
    assert (a.flops, a.params) == (d["flops"], d["params"]) and a.objective == pytest.approx(d["objective"], rel=1e-12)


def test_sweep_r18_over_table1_rho(tmp_path):
    doc = sweep_json(tmp_path, "--preset", "deepmad-r18", "--rho", "0.1,0.3,0.5,0.7")
    ds = doc["designs"]
    assert doc["sweep"] == "rho" and [d["value"] for d in ds] == [0.1, 0.3, 0.5, 0.7]
    for d in ds:
        within(d)
        assert d["status"] == "designed" and d["gap"] is not None and d["gap"] >= 0
    ent = [d["entropy"] for d in ds]
    assert all(a <= b for a, b in zip(ent, ent[1:])), ent  # the paper: entropy increases with rho0
    obj = [d["objective"] for d in ds]
    assert all(a <= b for a, b in zip(obj, obj[1:]))
    assert [d["paper"][0]["acc"] for d in ds] == [76.9, 77.7, 77.5, 75.7]  # Table 1's printed accuracies
    assert {r["table"] for r in ds[1]["paper"]} == {"Table 1", "Table 7"}  # rho0 0.3, alpha5 8: both tables


def test_sweep_b0_over_table2_rho(tmp_path):
    doc = sweep_json(tmp_path, "--preset", "deepmad-b0", "--rho", "0.3,0.5,1.0,1.5,2.0")
    ds = doc["designs"]
    for d in ds:
        within(d)
    ent = [d["entropy"] for d in ds]
    assert all(a <= b + 1e-9 * abs(b) for a, b in zip(ent, ent[1:])), ent
    assert [d["paper"][0]["acc"] for d in ds] == [74.3, 76.1, 75.9, 75.7, 74.9]


def test_sweep_alpha5_table7(tmp_path):
    doc = sweep_json(tmp_path, "--preset", "deepmad-r18", "--alpha5", "1,8,16")
    ds = doc["designs"]
    assert [d["alpha"] for d in ds] == [[1, 1, 1, 1, a] for a in (1, 8, 16)]
    for d in ds:
        within(d)
    assert [[r["acc"] for r in d["paper"] if r["table"] == "Table 7"] for d in ds] == [[76.7], [77.7], [78.7]]


def test_sweep_guidelines_table8(tmp_path):
    doc = sweep_json(tmp_path, "--preset", "deepmad-b0", "--guidelines", "all,-1,-2,-3")
    ds = {d["label"]: d for d in doc["designs"]}
    for d in ds.values():
        within(d)
    assert ds["-1"]["alpha"] == [0, 0, 0, 0, 1] and ds["all"]["alpha"] == [1, 1, 1, 1, 8]
    assert ds["-2"]["budget"]["beta"] == 0 and ds["-2"]["penalty"] == 0
    assert ds["-3"]["ordered"] is False and ds["all"]["ordered"] is True
    assert ds["-3"]["objective"] >= ds["all"]["objective"]  # more designs allowed, same objective
    t8 = [[r["acc"] for r in ds[k]["paper"] if r["table"] == "Table 8"] for k in ("all", "-1", "-2", "-3")]
    assert t8 == [[73.7], [73.5], [73.5], [73.1]]  # Table 8 (the "all" design is also Table 2's rho0 0.5 row)
    chans = [ds["all"]["stem"]] + ds["all"]["channels"]
    assert chans == sorted(chans)


def test_sweep_flops_family_scales_params_and_resolution(tmp_path):
    doc = sweep_json(tmp_path, "--preset", "deepmad-r18", "--flops", "0.9G,1.82G")
    a, b = doc["designs"]
    assert a["budget"]["params"] == pytest.approx(11.69e6 * 0.9e9 / 1.82e9) and b["budget"]["params"] == 11.69e6
    assert b["paper"] and not a["paper"]  # only the preset's own budgets are a printed row
    assert [d["label"] for d in doc["designs"]] == ["900M", "1.82G"]
    doc = sweep_json(tmp_path / "b", "--block", "basic", "--flops", "300M,0.6G", "--params", "5M", "--rho", "0.3",
                     "--bound-nodes", "10")  # a block family: --params fixed
    assert [d["budget"]["params"] for d in doc["designs"]] == [5e6, 5e6] and doc["name"] == "deepmad-basic"
    assert doc["designs"][0]["spec_file"].endswith("deepmad-basic-flops-300M.yaml")
    doc = sweep_json(tmp_path / "r", "--preset", "deepmad-29m", "--resolution", "224,288", "--bound-nodes", "10")
    assert [d["resolution"] for d in doc["designs"]] == [224, 288]
    assert [d["paper"][0]["acc"] for d in doc["designs"]] == [82.5, 82.8]  # Table 3


def test_sweep_text_files_clobbering_and_jobs(tmp_path):
    out = tmp_path / "s"
    r = cli("sweep", "--preset", "deepmad-r18", "--rho", "0.2,0.4", *NODES, "-o", str(out), "--quiet")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "77.7" not in r.stdout and "rho" in r.stdout.splitlines()[2]
    names = sorted(os.listdir(out))
    assert names == ["deepmad-r18-rho-0.2.yaml", "deepmad-r18-rho-0.4.yaml", "sweep.json", "sweep.png"]
    before = {n: (out / n).read_bytes() for n in names}
    one_line_error(cli("sweep", "--preset", "deepmad-r18", "--rho", "0.2,0.4", *NODES, "--out", str(out)))
    assert {n: (out / n).read_bytes() for n in names} == before  # nothing the user had is lost
    r2 = cli("sweep", "--preset", "deepmad-r18", "--rho", "0.2,0.4", *NODES, "--out", str(out), "--force", "--json",
             "--jobs", "1", "--no-plot")
    assert r2.returncode == 0
    first = json.loads(before["sweep.json"])
    again = json.loads(r2.stdout)
    assert [d["spec"] for d in again["designs"]] == [d["spec"] for d in first["designs"]]  # 1 or 2 processes: same


@pytest.mark.parametrize("argv, what", [
    (["--preset", "deepmad-r18", "--rho", "0.1,0.3", "--alpha5", "1,8"], "one quantity at a time"),
    (["--preset", "deepmad-r18", "--rho", "0.1,zero"], "rho"),
    (["--preset", "deepmad-r18", "--guidelines", "all,-4"], "guidelines"),
    (["--preset", "deepmad-r18", "--alpha5", "1,8", "--alpha", "1,1,1,1,8"], "alpha5"),
    (["--preset", "deepmad-r18"], "swept quantity"),
    (["--preset", "nope", "--rho", "0.1,0.3"], "unknown preset"),
    (["--preset", "deepmad-r18", "--rho", "0.3,0.3"], "twice"),
])
def test_sweep_bad_input_is_one_line(tmp_path, argv, what):
    err = one_line_error(cli("sweep", *argv, "--out", str(tmp_path / "x")))
    assert what in err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------- pictures

def test_draw_r50_png_decodes_with_the_expected_size(tmp_path):
    from matplotlib import image

    from deepmad.studies.plots import DPI, SIZE

    out = tmp_path / "r50.png"
    r = cli("draw", "deepmad-r50", "-o", str(out))
    assert r.returncode == 0, r.stderr
    px = image.imread(out)
    assert px.shape[:2] == (int(SIZE[1] * DPI), int(SIZE[0] * DPI)) and px.std() > 0.05  # a real picture
    one_line_error(cli("draw", "deepmad-r50", "-o", str(out)))  # exists: kept without --force
    svg = tmp_path / "net.svg"
    assert cli("draw", "resnet18", "-o", str(svg)).returncode == 0 and b"<svg" in svg.read_bytes()[:2000]
    one_line_error(cli("draw", "resnet18", "-o", str(tmp_path / "net.gif")))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def console_messages(page: Path, tmp_path: Path) -> tuple[list[str], str]:
    """Console lines a headless Chromium logs while loading page (no network: every host unresolvable), and the
    DOM it rendered."""
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / ('profile-' + page.stem)}", "--enable-logging=stderr", "--v=0",
                        "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom", page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    return [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln], r.stdout


def test_design_report_is_one_self_contained_page(tmp_path):
    page = tmp_path / "design.html"
    r = cli("design", "--preset", "deepmad-r18", "--bound-nodes", "20", "--report", str(page), "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "<script" not in text
    import re

    assert not re.search(r"\bsrc\s*=|@import|url\((?!#)|<link\b", text)  # nothing to fetch: no source, style sheet
    assert all(h.startswith("#") for h in re.findall(r"href\s*=\s*[\"']([^\"']*)", text))  # only links inside
    assert f"{j['params']:,}" in text and "stage4" in text and "branch and bound" in text
    one_line_error(cli("design", "--preset", "deepmad-r18", "--report", str(page)))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_design_report_opens_in_headless_chromium_without_errors(tmp_path):
    page = tmp_path / "design.html"
    assert cli("design", "--preset", "deepmad-b0", "--bound-nodes", "20", "--report", str(page)).returncode == 0
    bad = tmp_path / "bad.html"  # the check itself sees errors: a page with one
    bad.write_text("<!DOCTYPE html><html><body><script>undefinedFunction()</script></body></html>")
    errors, _ = console_messages(bad, tmp_path)
    assert any("undefinedFunction" in e for e in errors)
    errors, dom = console_messages(page, tmp_path)
    assert errors == [] and "<svg" in dom and "stage5" in dom and "deepmad-b0" in dom


# ---------------------------------------------------------------------------------------------- MLPs

def test_design_mlp_json_and_spec_file(tmp_path):
    out = tmp_path / "mlp.yaml"
    r = cli("design", "--block", "mlp", "--inputs", "784", "--outputs", "10", "--params", "1M", "--rho", "0.5",
            "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    spec = mlp.read_file(out)
    a = mlp.analyze(spec)
    assert j["params"] == a.params <= 1e6 and j["rho"] == a.rho <= 0.5 and j["gap"] == 0
    assert j["entropy"] == pytest.approx(a.entropy) and j["layers"] == spec.depth
    r = cli("analyze", str(out), "--json")
    assert json.loads(r.stdout)["entropy"] == j["entropy"]
    r = cli("analyze", str(out))
    assert r.returncode == 0 and "Eq. 1" in r.stdout
    assert "MLP" in one_line_error(cli("draw", str(out), "-o", str(tmp_path / "m.png")))


@pytest.mark.parametrize("argv, what", [
    (["--inputs", "0", "--outputs", "10", "--params", "1M", "--rho", "0.5"], "inputs"),
    (["--inputs", "784", "--outputs", "0", "--params", "1M", "--rho", "0.5"], "outputs"),
    (["--inputs", "784", "--outputs", "10", "--params", "1000", "--rho", "0.5"], "smallest MLP"),
    (["--inputs", "784", "--outputs", "10", "--params", "1M"], "--rho"),
    (["--inputs", "784", "--outputs", "10", "--params", "1M", "--rho", "0.5", "--flops", "1G"], "--flops"),
])
def test_design_mlp_bad_input_is_one_line(argv, what):
    assert what in one_line_error(cli("design", "--block", "mlp", *argv))


def test_mlp_spec_file_errors_name_the_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("deepmad_mlp: 1\ninputs: 784\noutputs: 10\nhidden: [64, -3]\n")
    assert "hidden[1]" in one_line_error(cli("analyze", str(p)))
