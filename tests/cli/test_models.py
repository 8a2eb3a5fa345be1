"""``deepmad summary``: the per-layer table of a built model, and its one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from deepmad import api, cli  # noqa: E402
from deepmad.cli import models as cli_models  # noqa: E402
from deepmad.core import blocks  # noqa: E402
from deepmad.core.reference import reference  # noqa: E402
from deepmad.core.spec import Spec, Stage, Stem, save  # noqa: E402


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def summary_json(capsys, *argv: str) -> dict:
    code, out, err = run(capsys, "summary", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_one_line_error(code: int, out: str, err: str) -> None:
    assert code == 2 and out == ""
    assert err.startswith("deepmad: error: ") and err.count("\n") == 1 and "Traceback" not in err, err


def test_summary_resnet18_json(capsys):
    j = summary_json(capsys, "resnet18")
    rows = j["layers"]
    assert j["params"] == 11_689_512 == sum(r["params"] for r in rows)  # torchvision's count
    assert j["macs"] == sum(r["macs"] for r in rows) == blocks.cost(reference("resnet18")).macs
    assert j["analytic"] == {"params": j["params"], "macs": j["macs"]} and j["agree"] is True
    by_name = {r["name"]: r for r in rows}
    assert by_name["stem"]["shape"] == [64, 112, 112] and by_name["stem"]["type"] == "conv7x7/2-bn-relu"
    assert by_name["stem_pool"]["shape"] == [64, 56, 56] and by_name["stem_pool"]["macs"] == 0
    assert by_name["stages.1.0.shortcut"]["type"] == "conv1x1/2-bn"
    assert by_name["classifier"] == {"name": "classifier", "type": "linear", "shape": [1000], "params": 513_000,
                                     "macs": 512_000}
    assert [r["name"] for r in rows][-2:] == ["global_pool", "classifier"]
    counted = {c.name for c in blocks.convs(reference("resnet18"))}
    assert counted <= set(by_name)  # a row for every counted conv, under its name


def test_summary_text_states_agreement(capsys):
    code, out, err = run(capsys, "summary", "mobilenet_v2")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "mobilenet_v2: input 3x224x224, 1000 classes, batch 1"
    assert lines[1].split() == ["layer", "type", "output", "params", "MACs"]
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[1:] == ["3,504,872", "300,774,272"]
    assert any(line.startswith("built model: 3,504,872 params") and line.endswith(": agree") for line in lines)
    assert any("dwconv3x3/2-bn-relu6" in line for line in lines)


def test_summary_options_resolution_and_no_classifier(capsys):
    j = summary_json(capsys, "efficientnet_b0", "--resolution", "225", "--num-classes", "0")
    spec = reference("efficientnet_b0")
    a = api.analyze_spec(Spec(**{**spec.__dict__, "resolution": 225}), classifier=False)
    assert (j["params"], j["macs"], j["agree"]) == (a.params, a.flops, True)
    assert j["resolution"] == 225 and j["num_classes"] == 0
    names = [r["name"] for r in j["layers"]]
    assert "classifier" not in names and names[-2:] == ["head", "global_pool"]
    assert j["layers"][0]["shape"] == [32, 113, 113]


def test_summary_of_a_spec_file_and_a_preset(capsys, tmp_path):
    spec = Spec(40, Stem(8, 3, 1, pool=True), (Stage("basic", 16, 2, stride=2, groups=2),), head=24,
                num_classes=3, in_channels=1, name="tiny")
    save(spec, tmp_path / "tiny.yaml")
    j = summary_json(capsys, str(tmp_path / "tiny.yaml"))
    assert j["model"] == "tiny" and j["agree"] and j["params"] == blocks.cost(spec).params
    assert j["layers"][0]["shape"] == [8, 40, 40]
    j = summary_json(capsys, "deepmad_r18")
    assert j["model"] == "deepmad-r18" and j["agree"]


@pytest.mark.parametrize("argv", [["summary", "resnet19"], ["summary", "resnet18", "--resolution", "0"],
                                  ["summary", "resnet18", "--num-classes", "-1"],
                                  ["summary", "/no/such/net.yaml"], ["summary"]])
def test_summary_bad_input_is_one_line(capsys, argv):
    assert_one_line_error(*run(capsys, *argv))


def test_unknown_model_error_lists_known_models(capsys):
    code, out, err = run(capsys, "summary", "resnet19")
    assert "unknown model 'resnet19'; known models: deepmad-r18," in err and "efficientnet_b0" in err


def test_without_torch_the_command_says_how_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    code, out, err = run(capsys, "summary", "resnet18")
    assert_one_line_error(code, out, err)
    assert err == "deepmad: error: this command needs PyTorch: install with pip install 'deepmad[torch]'\n"


def test_cli_models_imports_no_torch():
    code = ("import sys, deepmad.cli.models; assert 'torch' not in sys.modules; "
            "print(sorted(deepmad.cli.models.COMMANDS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent,
                         check=True)
    assert out.stdout.strip() == "['export', 'summary']"
    assert cli_models.COMMANDS["summary"] is cli_models._summary
