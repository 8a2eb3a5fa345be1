"""``create_model``: a model from a preset name, a reference network name, a Spec or a spec file.

A preset is designed first (``deepmad.api.design``: the lns search under the preset's own problem, a few
seconds, deterministic); its design is cached for the rest of the process. Names are matched without regard
to case, and ``_`` stands for ``-`` (timm style: ``deepmad_r50`` is ``deepmad-r50``, ``mobilenet-v2`` is
``mobilenet_v2``).
"""
from __future__ import annotations

import fnmatch
import functools
import os
from typing import Sequence

from ..core.presets import PRESETS
from ..core.reference import REFERENCE, reference
from ..core.spec import Spec
from .net import DeepMADNet

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


_NAMES = {_key(n): n for n in (*PRESETS, *REFERENCE)}


def list_models(pattern: str | None = None) -> list[str]:
    """Names create_model knows: the presets, then the reference networks (optionally those matching a
    shell-style pattern such as ``"deepmad*"``)."""
    names = [*PRESETS, *REFERENCE]
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(n, _key(pattern))]


def is_preset(name: object) -> bool:
    """Whether name is a preset's (which create_model designs on first use, a second or so)."""
    return isinstance(name, str) and _NAMES.get(_key(name)) in PRESETS


@functools.lru_cache(maxsize=None)
def preset_spec(name: str) -> Spec:
    """The design of preset name (what ``deepmad design --preset name`` prints), solved once per process."""
    from ..core.exact import solve
    from ..core.presets import preset

    return solve(preset(name)).spec


def resolve_spec(name_or_spec: str | os.PathLike | Spec) -> Spec:
    """The spec of a preset or reference network name, a Spec, or a spec file path (.yaml/.yml/.json)."""
    from ..core.mlp import MLPSpec

    if isinstance(name_or_spec, (Spec, MLPSpec)):
        return name_or_spec
    if isinstance(name_or_spec, str):
        name = _NAMES.get(_key(name_or_spec))
        if name in PRESETS:
            return preset_spec(name)
        if name in REFERENCE:
            return reference(name)
    if not isinstance(name_or_spec, (str, os.PathLike)):
        raise ValueError(f"model: expected a model name, a deepmad.Spec or a spec file path, "
                         f"got {type(name_or_spec).__name__}")
    text = os.fspath(name_or_spec)
    if not (os.path.exists(text) or os.sep in text or text.lower().endswith(SPEC_SUFFIXES)):
        raise ValueError(f"unknown model {text!r}; known models: {', '.join(list_models())}; "
                         f"or give a spec file ({', '.join(SPEC_SUFFIXES)})")
    from ..core.exact import resolve

    return resolve(text)  # reads the file; SpecError names the file and the field


def create_model(name_or_spec: str | os.PathLike | Spec, *, num_classes: int | None = None,
                 in_chans: int | None = None, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 features_only: bool = False, out_indices: Sequence[int] | None = None,
                 pretrained: bool = False) -> DeepMADNet:
    """Build a ``DeepMADNet`` from a preset name (designed on first use), a reference network name
    (resnet18 ... resnet152, mobilenet_v2, efficientnet_b0), a Spec or a spec file path; an MLP spec
    (``deepmad.core.mlp.MLPSpec`` or a ``deepmad_mlp`` file) builds an ``MLPNet`` (num_classes: its outputs).

    The keyword arguments are ``DeepMADNet``'s (timm's names). There are no pretrained weights:
    ``pretrained=True`` is an error.
    """
    if pretrained:
        raise ValueError("pretrained: no pretrained weights exist for deepmad models; build with "
                         "pretrained=False and load your own with model.load_state_dict(...)")
    spec = resolve_spec(name_or_spec)
    from ..core.mlp import MLPSpec

    if isinstance(spec, MLPSpec):  # Section 3's MLP family: an nn.Sequential of Linear layers
        from .mlp import MLPNet

        for k, v, default in (("in_chans", in_chans, None), ("drop_path_rate", drop_path_rate, 0.0),
                              ("features_only", features_only, False), ("out_indices", out_indices, None)):
            if v != default:
                raise ValueError(f"{k}: applies to CNNs only (an MLP spec sets its inputs; it has no feature maps)")
        return MLPNet(spec, num_classes=num_classes, drop_rate=drop_rate)
    return DeepMADNet(spec, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                      drop_path_rate=drop_path_rate, features_only=features_only, out_indices=out_indices)


__all__ = ["create_model", "list_models", "resolve_spec", "preset_spec", "is_preset", "SPEC_SUFFIXES"]
