"""Register the deepmad presets with timm, so ``timm.create_model("deepmad_r50")`` builds them.

timm is optional (``pip install timm``; it needs torchvision). Usage::

    import deepmad.models.timm_adapter
    deepmad.models.timm_adapter.register_timm()
    model = timm.create_model("deepmad_r50", num_classes=10)

Each preset gets a timm-style name (``deepmad-r50`` -> ``deepmad_r50``, ``deepmad-29m-288`` ->
``deepmad_29m_288``) and an entry point function of that name in this module, registered with timm's public
``register_model`` (timm takes the model name from the function's ``__name__`` and files it under the last
component of its ``__module__``: ``timm.list_models(module="timm_adapter")``). The reference networks
(resnet50, ...) are not registered: timm has its own models of those names. There are no pretrained weights.

What timm's train.py and ``timm.data.resolve_data_config`` read is there: ``model.pretrained_cfg`` (and its
older name ``default_cfg``: input size, mean/std, crop_pct, interpolation, num_classes, first_conv,
classifier), the module's ``default_cfgs`` (so ``timm.models.get_pretrained_cfg(name)`` answers before a
model is built), ``set_grad_checkpointing``, ``group_matcher``, ``get_classifier``, ``reset_classifier``,
``forward_features``, ``forward_head``, ``num_features``, ``num_classes`` and ``feature_info``.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from ..core.presets import PRESETS
from .factory import create_model
from .net import DeepMADNet, pretrained_cfg

TIMM_MISSING = ("timm is not installed: pip install timm (timm needs torchvision); deepmad models are also "
                "available without timm through deepmad.models.create_model")

# keyword arguments timm.create_model passes to every entry point, which a deepmad model does not use
_TIMM_ONLY = ("cache_dir",)
_ACCEPTED = ("num_classes", "in_chans", "drop_rate", "drop_path_rate", "features_only", "out_indices")
# keys of a pretrained_cfg (overlay) that locate weights, or that the built model decides: not merged
_NOT_MERGED = ("url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "source", "num_classes")


def _default_cfgs() -> dict[str, dict[str, Any]]:
    """timm's per-model configuration of each preset (its input size; the classifier of 1000 classes)."""
    return {timm_name(name): pretrained_cfg(p.space.resolution, 3, 1000, timm_name(name))
            for name, p in PRESETS.items()}


class TimmMissing(ImportError, ValueError):
    """timm cannot be imported (an ImportError, and a ValueError as deepmad's bad-input errors are)."""


def timm_name(preset: str) -> str:
    """The timm-style name of a preset: ``-`` becomes ``_`` (``deepmad-r50`` -> ``deepmad_r50``)."""
    return preset.replace("-", "_")


def _entrypoint(preset: str) -> Callable[..., DeepMADNet]:
    """``def deepmad_r50(pretrained=False, **kwargs)``: timm's entry point signature for a preset."""

    def entry(pretrained: bool = False, **kwargs: Any) -> DeepMADNet:
        for key in _TIMM_ONLY:
            kwargs.pop(key, None)
        cfgs = [kwargs.pop("pretrained_cfg", None), kwargs.pop("pretrained_cfg_overlay", None)]
        unknown = sorted(set(kwargs) - set(_ACCEPTED))
        if unknown:
            raise ValueError(f"{timm_name(preset)}: unsupported argument(s) {', '.join(unknown)}; a deepmad "
                             f"model accepts {', '.join(_ACCEPTED)}")
        model = create_model(preset, pretrained=pretrained, **kwargs)
        model.pretrained_cfg["architecture"] = timm_name(preset)
        for cfg in cfgs:  # timm's configuration (object or dict) and overlay; a tag (str) names no weights here
            if cfg is not None and not isinstance(cfg, str):
                cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
                model.pretrained_cfg.update({k: v for k, v in cfg.items() if v is not None and k not in _NOT_MERGED})
        return model

    name = timm_name(preset)
    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = (f"The deepmad preset {preset} (designed on first use, then cached); keyword arguments "
                     f"as deepmad.models.create_model.")
    return entry


def _register_model() -> Callable[[Callable], Callable]:
    try:
        import timm.models as models
    except ImportError:
        raise TimmMissing(TIMM_MISSING) from None
    fn = getattr(models, "register_model", None)
    if fn is None:  # older timm: the registry module is not re-exported
        for path in ("timm.models._registry", "timm.models.registry"):
            try:
                fn = getattr(__import__(path, fromlist=["register_model"]), "register_model")
                break
            except (ImportError, AttributeError):
                continue
    if fn is None:
        raise TimmMissing("timm is installed but has no register_model; upgrade it: pip install -U timm")
    return fn


def register_timm() -> list[str]:
    """Register every preset with timm (once; calling again is harmless); returns the timm names.

    Raises TimmMissing (an ImportError and a ValueError) naming ``pip install timm`` when timm is absent.
    """
    register_model = _register_model()
    import timm.models as models

    is_model = getattr(models, "is_model", None)
    module = sys.modules[__name__]
    names = []
    for preset in PRESETS:
        name = timm_name(preset)
        names.append(name)
        existing = getattr(module, name, None)
        if existing is not None and is_model is not None and is_model(name):
            continue  # already registered with this timm
        fn = _entrypoint(preset)
        setattr(module, name, fn)  # timm resolves entry points through the module, as for its own models
        register_model(fn)
    module.__all__[:] = list(dict.fromkeys(module.__all__))  # register_model appends each name to __all__
    return names


default_cfgs = _default_cfgs()  # read by timm's register_model: timm.models.get_pretrained_cfg("deepmad_r18")


__all__ = ["register_timm", "timm_name", "TimmMissing", "TIMM_MISSING"]
