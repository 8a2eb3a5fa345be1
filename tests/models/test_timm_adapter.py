"""The timm adapter, against a minimal stand-in for timm's registry (timm itself needs torchvision): the tests CI runs. tests/models/test_timm_real.py runs against real timm
where it is installed."""
from __future__ import annotations

import sys
import types

import pytest

torch = pytest.importorskip("torch")

from deepmad.core import blocks  # noqa: E402
from deepmad.models import timm_adapter  # noqa: E402
from deepmad.core.presets import PRESETS  # noqa: E402


def fake_timm() -> types.ModuleType:
    """A ``timm`` package whose ``register_model`` / ``create_model`` behave as timm's do: the model name is
    ``fn.__name__``, the module is the last component of ``fn.__module__`` (whose ``__all__`` gets the name),
    and create_model drops None kwargs and passes pretrained, pretrained_cfg, pretrained_cfg_overlay."""
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    entrypoints: dict = {}
    to_module: dict = {}
    cfgs: dict = {}

    def register_model(fn):
        mod = sys.modules[fn.__module__]
        if hasattr(mod, "__all__"):
            mod.__all__.append(fn.__name__)
        else:
            mod.__all__ = [fn.__name__]
        entrypoints[fn.__name__] = fn
        to_module[fn.__name__] = fn.__module__.split(".")[-1]
        if fn.__name__ in getattr(mod, "default_cfgs", {}):  # timm files the module's cfg of the model
            cfgs[fn.__name__] = dict(mod.default_cfgs[fn.__name__])
        return fn

    def is_model(name):
        return name.split(".", 1)[0] in entrypoints

    def list_models(module=""):
        return sorted(n for n in entrypoints if not module or to_module[n] == module)

    def create_model(model_name, pretrained=False, pretrained_cfg=None, pretrained_cfg_overlay=None, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if not is_model(model_name):
            raise RuntimeError(f"Unknown model ({model_name})")
        return entrypoints[model_name](pretrained=pretrained, pretrained_cfg=pretrained_cfg,
                                       pretrained_cfg_overlay=pretrained_cfg_overlay, **kwargs)

    models.register_model, models.is_model, models.list_models = register_model, is_model, list_models
    models._model_entrypoints = entrypoints
    models.get_pretrained_cfg = cfgs.get
    timm.models, timm.create_model, timm.list_models = models, create_model, list_models
    return timm


@pytest.fixture
def timm(monkeypatch):
    t = fake_timm()
    monkeypatch.setitem(sys.modules, "timm", t)
    monkeypatch.setitem(sys.modules, "timm.models", t.models)
    return t


def test_every_preset_is_registered_under_its_timm_name(timm):
    names = timm_adapter.register_timm()
    expected = [p.replace("-", "_") for p in PRESETS]
    assert names == expected and "deepmad_r50" in names and "deepmad_29m_288" in names
    assert timm.list_models(module="timm_adapter") == sorted(expected)
    for name in expected:
        fn = timm.models._model_entrypoints[name]
        assert fn.__name__ == name and fn.__module__ == "deepmad.models.timm_adapter"
        assert getattr(timm_adapter, name) is fn
    assert timm_adapter.register_timm() == names  # a second call registers nothing twice
    assert len(timm_adapter.__all__) == len(set(timm_adapter.__all__))
    assert not timm.models.is_model("resnet50")  # timm's own names are left alone


def test_timm_create_model_passes_kwargs(timm):
    timm_adapter.register_timm()
    model = timm.create_model("deepmad_mb", num_classes=7, drop_rate=0.2, in_chans=None)
    assert model.spec.num_classes == 7 and model.classifier.out_features == 7 and model.drop.p == 0.2
    assert model.spec.name == "deepmad-mb"
    assert sum(p.numel() for p in model.parameters()) == blocks.cost(model.spec).params
    backbone = timm.create_model("deepmad_mb", features_only=True, out_indices=(2, 3), in_chans=1)
    maps = backbone(torch.zeros(1, 1, 64, 64))
    assert [tuple(m.shape[1:]) for m in maps] == [(f["num_chs"], 64 // f["reduction"], 64 // f["reduction"])
                                                  for f in backbone.feature_info]
    assert [f["index"] for f in backbone.feature_info] == [2, 3]
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("deepmad_mb", pretrained=True)
    with pytest.raises(ValueError, match="unsupported argument.*output_stride"):
        timm.create_model("deepmad_mb", output_stride=16)


def test_without_timm_the_error_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(timm_adapter.TimmMissing) as e:
        timm_adapter.register_timm()
    assert isinstance(e.value, ImportError) and isinstance(e.value, ValueError)
    assert "pip install timm" in str(e.value) and "torchvision" in str(e.value)


def test_timm_configuration(timm):
    """pretrained_cfg: the registry's (before any model is built), the model's own, and timm's overlay."""
    timm_adapter.register_timm()
    assert timm.models.get_pretrained_cfg("deepmad_29m_288")["input_size"] == (3, 288, 288)
    assert timm.models.get_pretrained_cfg("deepmad_r18")["classifier"] == "classifier"
    m = timm.create_model("deepmad_mb", num_classes=4, pretrained_cfg_overlay=dict(mean=(0.5,) * 3, num_classes=-1,
                                                                                   file="weights.pth"))
    cfg = m.pretrained_cfg
    assert cfg["architecture"] == "deepmad_mb" and cfg["num_classes"] == 4 and cfg["mean"] == (0.5,) * 3
    assert "file" not in cfg and cfg["input_size"] == (3, 224, 224)
    assert m.default_cfg is cfg
    m.set_grad_checkpointing()
    assert m.grad_checkpointing
