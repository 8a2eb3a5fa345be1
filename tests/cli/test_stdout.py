"""What a script sees: every ``--json`` command, run as a process with the proof on, prints exactly one JSON
document on stdout; the library writes nothing on file descriptor 1 (C-level output of solvers included)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from deepmad.core.reference import reference
from deepmad.core.spec import save

torch_missing = importlib.util.find_spec("torch") is None


def deepmad(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepmad", *argv], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("spec") / "r18.yaml"
    save(reference("resnet18"), p)
    return str(p)


JSON_COMMANDS = [
    ("design", "--preset", "deepmad-mb"),  # the default: the proof runs to the proven optimum
    ("design", "--preset", "deepmad-r18", "--gap-tol", "0.01"),
    ("design", "--block", "bottleneck", "--flops", "1.82e9", "--params", "11.69e6", "--rho", "0.045"),
    ("analyze", "deepmad-mb"),  # a preset: designed (with the proof) first
    ("analyze", "resnet50"),
    ("analyze", "{spec}"),
    ("presets",),
    ("sweep", "--preset", "deepmad-r18", "--rho", "0.3,0.5", "--out", "{tmp}/sweep"),
    ("design", "--block", "mlp", "--inputs", "784", "--outputs", "10", "--params", "1M", "--rho", "0.5"),
]
TORCH_COMMANDS = [("summary", "deepmad-r18"), ("summary", "{spec}"),
                  ("bench", "resnet18", "--runs", "3", "--warmup", "1")]


@pytest.mark.parametrize("argv", JSON_COMMANDS + [pytest.param(a, marks=pytest.mark.skipif(
    torch_missing, reason="needs torch")) for a in TORCH_COMMANDS], ids=lambda a: " ".join(a))
def test_json_commands_print_one_json_document(argv, spec_file, tmp_path):
    r = deepmad(*[a.format(spec=spec_file, tmp=tmp_path) for a in argv], "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # the whole of stdout is one document: no banner, no progress, no warning
    assert isinstance(doc, dict) and r.stdout.endswith("}\n")
    if argv[0] == "design" and "mlp" not in argv:
        assert doc["status"] in ("optimal", "gap_limit") and doc["bound"] >= doc["objective"]


def test_library_writes_nothing_on_file_descriptor_1():
    code = ("import deepmad\n"
            "d = deepmad.design('deepmad-mb')\n"
            "a = deepmad.analyze('deepmad-r18')\n"
            "import importlib.util\n"
            "if importlib.util.find_spec('torch'):\n"
            "    m = deepmad.create_model('deepmad-b0')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""


def test_warnings_go_to_stderr_as_one_line_each():
    r = deepmad("design", "--preset", "deepmad-r18", "--seed", "3", "--bound-nodes", "0", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)
    assert r.stderr.splitlines() == [
        "deepmad: warning: seed: applies to the evolutionary baseline only (solver='evolution'); ignored by lns"]
