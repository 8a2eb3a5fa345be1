"""deepmad.models.create_model / list_models: names, specs, spec files, and clear errors for bad input."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import deepmad  # noqa: E402
from deepmad import api  # noqa: E402
from deepmad.models import DeepMADNet, create_model, list_models, preset_spec, resolve_spec  # noqa: E402
from deepmad.core.presets import PRESETS  # noqa: E402
from deepmad.core.reference import REFERENCE, reference  # noqa: E402
from deepmad.core.spec import Spec, SpecError, Stage, Stem, save  # noqa: E402

TINY = Spec(32, Stem(8), (Stage("bottleneck", 16, 1, stride=2, mid=8), Stage("mbconv", 24, 2, stride=2,
                                                                               expand=2.0, se=0.25)),
            head=32, num_classes=5, name="tiny")


def meta(target, **kw) -> DeepMADNet:
    with torch.device("meta"):
        return create_model(target, **kw)


def test_list_models_names_every_preset_and_reference_network():
    assert list_models() == [*PRESETS, *REFERENCE]
    assert list_models("deepmad-r*") == ["deepmad-r18", "deepmad-r34", "deepmad-r50"]
    assert list_models("deepmad_r5*") == ["deepmad-r50"]
    assert list_models("resnet1*") == ["resnet18", "resnet101", "resnet152"]
    assert deepmad.list_models() == list_models()


@pytest.mark.parametrize("spelling", ["resnet50", "RESNET50", " resnet50 "])
def test_reference_names(spelling):
    assert meta(spelling).spec == reference("resnet50")


@pytest.mark.parametrize("spelling", ["mobilenet_v2", "mobilenet-v2", "MobileNet_V2"])
def test_reference_names_with_dashes_or_underscores(spelling):
    assert meta(spelling).spec == reference("mobilenet_v2")


def test_preset_is_the_cached_design():
    a = create_model("deepmad-r18").spec
    assert meta("deepmad_r18").spec == a == meta("DeepMAD-R18").spec
    assert preset_spec("deepmad-r18") is preset_spec("deepmad-r18")  # solved once per process
    assert preset_spec.cache_info().currsize >= 1
    assert a == api.design("deepmad-r18").spec  # the cache holds what the designer designs


def test_spec_and_spec_files(tmp_path):
    assert meta(TINY).spec == TINY
    for suffix in (".yaml", ".yml", ".json"):
        path = tmp_path / f"net{suffix}"
        save(TINY, path)
        assert meta(str(path)).spec == TINY
        assert meta(path).spec == TINY  # a pathlib.Path
    assert resolve_spec(tmp_path / "net.json") == TINY


def test_keyword_arguments_reach_the_model():
    m = create_model(TINY, num_classes=0, in_chans=1, drop_rate=0.3, drop_path_rate=0.1)
    assert m.spec.num_classes == 0 and m.stem.conv.in_channels == 1 and m.drop.p == 0.3
    assert max(mod.p for mod in m.modules() if type(mod).__name__ == "DropPath") == pytest.approx(0.1)
    b = create_model(TINY, features_only=True, out_indices=(1, 2))
    assert b.feature_info.reduction() == [4, 8] and b.feature_info.channels() == [16, 24]
    maps = b(torch.randn(1, 3, 32, 32))
    assert [tuple(x.shape) for x in maps] == [(1, 16, 8, 8), (1, 24, 4, 4)]


def test_the_readme_example():
    model = deepmad.create_model("deepmad_r50", num_classes=1000)
    assert isinstance(model, DeepMADNet) and model.classifier.out_features == 1000


# ---------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("name", ["deepmad-r51", "resnet", "vit_b16"])
def test_unknown_name_lists_the_known_ones(name):
    with pytest.raises(ValueError) as e:
        create_model(name)
    msg = str(e.value)
    assert msg.startswith(f"unknown model {name!r}; known models: ")
    assert all(n in msg for n in list_models()) and "\n" not in msg


def test_pretrained_is_a_clear_error():
    with pytest.raises(ValueError, match="pretrained: no pretrained weights exist"):
        create_model("resnet18", pretrained=True)


def test_not_a_model():
    with pytest.raises(ValueError, match="expected a model name, a deepmad.Spec or a spec file path, got int"):
        create_model(18)


def test_bad_spec_files(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        create_model(str(tmp_path / "missing.yaml"))
    with pytest.raises(SpecError, match="is a directory"):
        create_model(str(tmp_path) + os.sep)
    bad = tmp_path / "bad.yaml"
    bad.write_text("resolution: 224\nstem: {channels: 8}\nstages: [{block: basic, channels: 8, depth: 0}]\n")
    with pytest.raises(SpecError, match=r"bad.yaml: stages\[0\].depth: expected an integer >= 1, got 0"):
        create_model(bad)


def test_spec_the_builder_cannot_build():
    huge = Spec(224, Stem(8), (Stage("bottleneck", 64, 1, mid=65_536),), name="huge")  # 3.9e10 params
    with pytest.raises(SpecError, match="huge: cannot build: .*parameters need .* GiB"):
        create_model(huge)


def test_import_deepmad_loads_no_torch_until_create_model():
    code = ("import sys, deepmad; assert 'torch' not in sys.modules; "
            "from deepmad import cli; cli.parser(); assert 'torch' not in sys.modules; "
            "m = deepmad.create_model('resnet18'); assert 'torch' in sys.modules; print(type(m).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parent, check=True)
    assert out.stdout.strip() == "DeepMADNet"
