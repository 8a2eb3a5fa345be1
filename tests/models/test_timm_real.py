"""The timm adapter against real timm (optional: skipped where timm cannot be imported; CI has no timm).

timm needs torchvision, and torchvision has no wheel for the CPU torch CI pins, so this module runs in a
separate environment (about 6 GB), set up as docs/models.md says:

    python3 -m venv /work/timm-venv
    /work/timm-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    /work/timm-venv/bin/pip install -e . pytest
    /work/timm-venv/bin/python -m pytest -q tests/models/test_timm_real.py
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from timm.data import create_transform, resolve_data_config  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402

from deepmad.core.presets import PRESETS  # noqa: E402
from deepmad.models import timm_adapter  # noqa: E402

NAMES = [timm_adapter.timm_name(p) for p in PRESETS]


@pytest.fixture(scope="module", autouse=True)
def registered():
    assert timm_adapter.register_timm() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_create_model_and_data_config(name):
    """timm.create_model(name) builds each preset; resolve_data_config returns its own input size and
    normalisation, and timm's registry knows them before any model is built."""
    m = timm.create_model(name)
    res = PRESETS[name.replace("_", "-")].space.resolution
    assert m.spec.resolution == res and m.num_classes == 1000
    cfg = resolve_data_config({}, model=m)
    assert cfg["input_size"] == (3, res, res) == m.pretrained_cfg["input_size"]
    assert cfg["mean"] == m.pretrained_cfg["mean"] and cfg["std"] == m.pretrained_cfg["std"]
    assert cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 0.875
    assert timm.models.get_pretrained_cfg(name).input_size == (3, res, res)
    assert name in timm.list_models(module="timm_adapter")


def test_what_timm_train_py_uses():
    """The calls of timm's train.py: create_model with its keyword arguments (None ones dropped), the data
    configuration and transforms, gradient checkpointing, the optimizer factory with layer decay
    (group_matcher), reset_classifier, forward_features / forward_head, features_only."""
    m = timm.create_model("deepmad_mb", pretrained=False, in_chans=1, num_classes=7, drop_rate=0.1,
                          drop_path_rate=0.1, drop_block_rate=None, global_pool=None, bn_momentum=None,
                          bn_eps=None, scriptable=None, checkpoint_path="")
    assert m.num_classes == 7 and m.spec.in_channels == 1
    cfg = resolve_data_config({"in_chans": 1}, model=m)
    assert cfg["input_size"] == (1, 224, 224) and len(cfg["mean"]) == 1
    tf = create_transform(**cfg, is_training=False)
    from PIL import Image

    x = tf(Image.new("L", (300, 260))).unsqueeze(0)
    assert tuple(x.shape) == (1, 1, 224, 224)
    m.set_grad_checkpointing(enable=True)
    opt = create_optimizer_v2(m, opt="sgd", lr=0.1, weight_decay=1e-4, layer_decay=0.7)
    assert len(opt.param_groups) > 4  # one group per block (and stem, head), with and without decay
    m.train()
    torch.nn.functional.cross_entropy(m(torch.randn(2, 1, 64, 64)), torch.tensor([0, 6])).backward()
    opt.step()
    m.reset_classifier(3)
    assert m.get_classifier().out_features == 3 and m.pretrained_cfg["num_classes"] == 3
    with torch.no_grad():
        assert m.eval().forward_head(m.forward_features(torch.randn(1, 1, 64, 64))).shape == (1, 3)
    backbone = timm.create_model("deepmad_r18", features_only=True, out_indices=(1, 2, 3, 4))
    maps = backbone(torch.randn(1, 3, 64, 64))
    assert [t.shape[1] for t in maps] == backbone.feature_info.channels()
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("deepmad_r18", pretrained=True)
