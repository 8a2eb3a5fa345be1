"""The ``deepmad`` command, run in-process (``cli.main``), plus one run as ``python -m deepmad``.

Designs use ``--solver evolution --candidates 5000`` (or a stand-in lns solve) to keep the file fast.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from deepmad import cli
from deepmad.core.presets import PRESETS
from deepmad.core.reference import reference
from deepmad.core.spec import from_dict, load, save

CHEAP = ["--solver", "evolution", "--candidates", "5000", "--bound-nodes", "0"]
BUDGET = ["--block", "bottleneck", "--flops", "1.8G", "--params", "11.7M", "--rho", "0.3"]
KEYS = {"params": int, "flops": int, "rho": float, "entropy": float, "objective": float, "layers": int,
        "stages": list}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ok_json(capsys, *argv: str) -> dict:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_one_line_error(code: int, out: str, err: str) -> None:
    assert code == 2
    assert out == ""
    assert err.startswith("deepmad: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------- analyze

def test_analyze_resnet50_json(capsys):
    j = ok_json(capsys, "analyze", "resnet50")
    for k, t in KEYS.items():
        assert isinstance(j[k], t), k
    assert j["params"] == 25_557_032 and round(j["rho"], 2) == 0.09
    assert len(j["stages"]) == 4 and j["stem"]["channels"] == 64 and j["head"] is None
    for row in j["stages"]:
        assert {"channels", "mid", "kernel", "depth", "stride", "resolution", "entropy", "rho"} <= set(row)
    assert [r["resolution"] for r in j["stages"]] == [56, 28, 14, 7]


def test_analyze_human(capsys):
    code, out, err = run(capsys, "analyze", "resnet50")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert any(line.split()[:1] == ["stage4"] and "2048" in line and "7x7" in line for line in lines)
    for label in ("objective", "entropy", "rho", "FLOPs", "params"):
        assert any(line.startswith(label) for line in lines), label
    assert "25,557,032" in out


def test_analyze_spec_files(capsys, tmp_path):
    want = ok_json(capsys, "analyze", "mobilenet_v2")
    for suffix in ("yaml", "json"):
        p = tmp_path / f"net.{suffix}"
        save(reference("mobilenet_v2"), p)
        assert ok_json(capsys, "analyze", str(p)) == want


def test_analyze_options(capsys):
    a = ok_json(capsys, "analyze", "resnet18")
    b = ok_json(capsys, "analyze", "resnet18", "--no-classifier", "--alpha", "1,1,1,1,16", "--beta", "0")
    assert a["params"] - b["params"] == 513 * 1000 and b["objective"] == b["entropy"] > a["entropy"]
    assert b["alpha"] == [1, 1, 1, 1, 16] and b["classifier"] is False


def test_presets(capsys):
    code, out, err = run(capsys, "presets")
    assert code == 0 and all(name in out for name in PRESETS)
    j = ok_json(capsys, "presets")
    assert [p["name"] for p in j["presets"]] == list(PRESETS)
    assert all(p["flops"] == PRESETS[p["name"]].budget.flops for p in j["presets"])


def test_version(capsys):
    code, out, err = run(capsys, "--version")
    assert code == 0 and out.strip() == "deepmad 0.1.0"


def test_the_command_loads_nothing_heavy_before_its_handlers():
    """The console script imports deepmad.cli before main() can catch Ctrl-C or bad input: that import (and the
    parser) loads no numpy, so an interrupt while the design modules load reaches main's handler."""
    code = ("import sys, deepmad.cli; deepmad.cli.parser(); "
            "print(sorted(m for m in ('numpy', 'scipy', 'yaml', 'torch', 'deepmad.api') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_interrupt_while_a_command_loads_is_one_line(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt  # as Ctrl-C arrives while the handler imports the design modules

    monkeypatch.setitem(cli.design.COMMANDS, "design", interrupted)
    code, out, err = run(capsys, "design", "--preset", "deepmad-r18")
    assert code == 130 and out == "" and err == "deepmad: error: interrupted\n"


# ---------------------------------------------------------------------------------------------- design

@pytest.fixture(scope="module")
def designed() -> dict:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["design", *BUDGET, *CHEAP, "--json"]) == 0
    return json.loads(buf.getvalue())


def test_design_json_keys(designed):
    j = designed
    for k, t in KEYS.items():
        assert isinstance(j[k], t), k
    assert j["gap"] is None and j["bound"] is None and j["solver"] == "evolution"
    assert isinstance(j["seconds"], float) and isinstance(j["spec"], dict)
    assert j["budget"]["flops"] == 1.8e9 and j["budget"]["rho0"] == 0.3
    assert j["flops"] <= 1.8e9 and j["params"] <= 11.7e6 and j["rho_max"] <= 0.3
    assert len(j["stages"]) == 4 and all(s["block"] == "bottleneck" for s in j["stages"])


def test_design_spec_analyzes_the_same(designed, capsys, tmp_path):
    p = tmp_path / "designed.json"
    p.write_text(json.dumps(designed["spec"]))
    from_dict(designed["spec"])  # loadable as it is
    again = ok_json(capsys, "analyze", str(p))
    for k in ("params", "flops", "layers"):
        assert again[k] == designed[k], k
    for k in ("rho", "rho_max", "entropy", "objective"):
        assert again[k] == pytest.approx(designed[k], rel=1e-12), k


def test_design_is_deterministic(designed, capsys):
    again = ok_json(capsys, "design", *BUDGET, *CHEAP)
    drop = lambda j: {k: v for k, v in j.items() if k != "seconds"}  # noqa: E731
    assert drop(again) == drop(designed)


def test_design_human(capsys):
    code, out, err = run(capsys, "design", "--preset", "deepmad-mb", *CHEAP)
    assert code == 0 and err == ""
    assert "not proven" in out and "of rho0 0.5" in out and "% of" in out
    assert sum(line.startswith("stage") for line in out.splitlines()) == 5
    assert any(line.startswith("head") and "1280" in line for line in out.splitlines())


def test_design_default_solver_reports_gap(capsys, monkeypatch):
    from deepmad.core import evolution, exact

    def solve(problem, *, time_limit=None):
        d = evolution.evolve(problem, candidates=2000)
        return dataclasses.replace(d, solver="lns", gap=0.0123, bound=d.objective * 1.0123)

    monkeypatch.setattr(exact, "search", solve)
    code, out, err = run(capsys, "design", "--preset", "deepmad-r18", "--bound-nodes", "0")
    assert code == 0 and "1.23%" in out
    j = ok_json(capsys, "design", "--preset", "deepmad-r18", "--bound-nodes", "0")
    assert j["gap"] == 0.0123 and j["solver"] == "lns"


def test_output_written_and_never_clobbered(capsys, tmp_path):
    out = tmp_path / "net.yaml"
    code, stdout, err = run(capsys, "design", "--preset", "deepmad-mb", *CHEAP, "-o", str(out))
    assert code == 0 and str(out) in stdout
    spec = load(out)
    assert spec.name == "deepmad-mb" and len(spec.stages) == 5
    before = out.read_bytes()
    # a second run (other seed, so another design) must refuse to overwrite
    code, stdout, err = run(capsys, "design", "--preset", "deepmad-mb", *CHEAP, "--seed", "1", "-o", str(out))
    assert_one_line_error(code, stdout, err)
    assert "--force" in err and out.read_bytes() == before
    code, stdout, err = run(capsys, "design", "--preset", "deepmad-mb", *CHEAP, "--seed", "1", "-o", str(out),
                            "--force")
    assert code == 0 and load(out) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.yaml"]  # no temporary files left


def test_output_json_format(capsys, tmp_path):
    out = tmp_path / "net.json"
    j = ok_json(capsys, "design", "--preset", "deepmad-mb", *CHEAP, "-o", str(out))
    assert json.loads(out.read_text()) == j["spec"]


BAD_DESIGN = [
    [*BUDGET[:3], "0", *BUDGET[4:]],  # --flops 0
    ["--block", "bottleneck", "--flops=-1.8G", "--params", "11.7M", "--rho", "0.3"],
    ["--block", "bottleneck", "--flops", "lots", "--params", "11.7M", "--rho", "0.3"],
    [*BUDGET[:5], "0", *BUDGET[6:]],  # --params 0
    ["--block", "bottleneck", "--flops", "1.8G", "--params=-11.7M", "--rho", "0.3"],
    [*BUDGET[:7], "0"],  # --rho 0
    [*BUDGET[:6], "--rho=-0.3"],
    [*BUDGET[:7], "nan"],
    [*BUDGET, "--alpha", "1,1,8"],
    [*BUDGET, "--alpha", "1,one"],
    [*BUDGET, "--beta", "-1"],
    ["--block", "resnet", *BUDGET[2:]],
    ["--preset", "deepmad-r99"],
    [*BUDGET[2:]],  # no block, no preset
    [*BUDGET, "--max-depth", "0"],
    [*BUDGET, "--solver", "scip"],
    [*BUDGET, "--frobnicate"],
    ["--block", "bottleneck", "--flops", "1M", "--params", "10k", "--rho", "0.3"],  # infeasible (lns)
    ["--block", "bottleneck", "--flops", "1M", "--params", "10k", "--rho", "0.3", *CHEAP],  # infeasible (evo)
]


@pytest.mark.parametrize("argv", BAD_DESIGN, ids=lambda a: " ".join(a))
def test_design_bad_input(capsys, tmp_path, argv):
    out = tmp_path / "out.yaml"
    code, stdout, err = run(capsys, "design", *argv, "-o", str(out))
    assert_one_line_error(code, stdout, err)
    assert list(tmp_path.iterdir()) == []


def test_design_infeasible_states_the_need(capsys):
    code, out, err = run(capsys, "design", *BAD_DESIGN[-1])
    assert_one_line_error(code, out, err)
    assert "budget" in err


def test_output_directory_missing(capsys, tmp_path):
    code, out, err = run(capsys, "design", "--preset", "deepmad-mb", *CHEAP, "-o", str(tmp_path / "no" / "x.yaml"))
    assert_one_line_error(code, out, err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content,argv", [
    (None, ["resnet5"]),  # unknown network
    (None, ["missing.yaml"]),  # unreadable path
    ("stages: [unclosed\n", ["{path}"]),  # malformed YAML
    ("resolution: 224\nstem: {channels: 16}\nstages: [{block: dense, channels: 8, depth: 1}]\n", ["{path}"]),
    ("[1, 2]\n", ["{path}"]),
    (None, ["resnet50", "--alpha", "1,1"]),  # alpha of the wrong length
    (None, ["resnet50", "--beta", "-2"]),
    (None, ["."]),  # a directory
])
def test_analyze_bad_input(capsys, tmp_path, content, argv):
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    argv = [a.replace("{path}", str(path)) for a in argv]
    code, out, err = run(capsys, "analyze", *argv)
    assert_one_line_error(code, out, err)


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["analyze"], ["design", "--rho"]])
def test_usage_errors(capsys, argv):
    assert_one_line_error(*run(capsys, *argv))


def test_python_m_deepmad():
    """The one subprocess run: the module entry point prints exactly one JSON object."""
    r = subprocess.run([sys.executable, "-m", "deepmad", "design", "--preset", "deepmad-mb", "--json", *CHEAP],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    j = json.loads(r.stdout)
    for k, t in KEYS.items():
        assert isinstance(j[k], t), k
    assert j["params"] <= PRESETS["deepmad-mb"].budget.params and "spec" in j and "gap" in j


def test_design_prints_the_proven_gap(capsys):
    code, out, err = run(capsys, "design", "--preset", "deepmad-r18", "--bound-nodes", "40")
    assert code == 0 and "proven: optimum <=" in out and "nodes" in out
    j = ok_json(capsys, "design", "--preset", "deepmad-r18", "--bound-nodes", "40")
    assert j["bound"] >= j["objective"] and j["gap"] >= 0 and j["bound_nodes"] >= 40


@pytest.mark.parametrize("argv", [("design", "--preset", "deepmad-r18", "--resolution", "100000"),
                                  ("design", "--preset", "deepmad-r18", "--max-channels", "100000000")])
def test_sizes_above_the_limits_get_one_line(capsys, argv):
    assert_one_line_error(*run(capsys, *argv))


@pytest.mark.parametrize("field,value,match", [("channels", 100_000_000, "is above 65,536"),
                                               ("stride", 3, "expected a stride of 1 or 2")])
def test_analyze_applies_the_design_rules_to_spec_files(capsys, tmp_path, field, value, match):
    p = tmp_path / "net.yaml"
    stage = {"block": "bottleneck", "channels": 256, "depth": 3, "stride": 2, "kernel": 3, "mid": 64, field: value}
    p.write_text(json.dumps({"resolution": 224, "stem": {"channels": 32}, "stages": [stage]}))
    code, out, err = run(capsys, "analyze", str(p))
    assert_one_line_error(code, out, err)
    assert f"stages[0].{field}: " in err and match in err


def test_budget_that_cannot_bind_warns_on_stderr(capsys):
    code, out, err = run(capsys, "design", "--preset", "deepmad-r18", "--rho", "100", "--bound-nodes", "0", "--json")
    assert code == 0 and json.loads(out)["rho_max"] < 100
    assert err.startswith("deepmad: warning: rho: rho0 100 cannot bind") and err.count("\n") == 1


@pytest.mark.parametrize("flags,want", [([], (True, True, True)), (["--no-multiscale"], (False, True, True)),
                                        (["--beta", "0"], (True, False, True)),
                                        (["--allow-decreasing"], (True, True, False))])
def test_design_json_says_which_guidelines_it_keeps(capsys, flags, want):
    """design --json records the paper's guidelines (Sec. 4.2) its problem kept: multi-scale entropy, the depth
    penalty, non-decreasing widths; a design without guideline 3 is still within its budgets."""
    j = ok_json(capsys, "design", *BUDGET, "--bound-nodes", "0", *flags)
    g = j["guidelines"]
    assert (g["multiscale"], g["depth_penalty"], g["non_decreasing"]) == want
    assert j["usage"]["flops"] <= 1 and j["usage"]["params"] <= 1 and j["usage"]["rho"] <= 1 + 1e-9


def test_the_proof_in_one_or_two_processes_gives_the_same_design():
    """DEEPMAD_WORKERS=1 keeps the branch and bound in one process; 2 forks a second one: the same proven
    optimum either way (the trees differ), and --json says how many processes the proof used."""
    import os

    out = {}
    for workers in ("1", "2"):
        r = subprocess.run([sys.executable, "-m", "deepmad", "design", "--preset", "deepmad-r18", "--json"],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "DEEPMAD_WORKERS": workers})
        assert r.returncode == 0 and r.stderr == "", r.stderr
        out[workers] = json.loads(r.stdout)
    assert [out[w]["bound_workers"] for w in ("1", "2")] == [1, 2]
    assert all(out[w]["status"] == "optimal" and out[w]["gap"] == 0 for w in out)
    assert out["1"]["objective"] == out["2"]["objective"] and out["1"]["spec"] == out["2"]["spec"]
    r = subprocess.run([sys.executable, "-m", "deepmad", "design", "--preset", "deepmad-r18", "--json"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "DEEPMAD_WORKERS": "3"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("deepmad: error: DEEPMAD_WORKERS: expected 1 or 2") and r.stderr.count("\n") == 1
