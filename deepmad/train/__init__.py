"""Training, evaluation and the effectiveness study (Sections 5.1 and 5.3 of the paper).

Needs ``pip install 'deepmad[train]'`` (torch, kornia, matplotlib, mlxtend). The modules import torch; this
package file does not, so ``import deepmad.train`` stays cheap until a function is used:

    from deepmad.train import TrainConfig, train, evaluate_checkpoint
    result = train(TrainConfig(model="net.yaml", data="builtin:mnist", out="runs/net", epochs=3, batch_size=64))
"""
from __future__ import annotations

from typing import Any

from .config import ConfigError, TrainConfig

_LAZY = {"train": "engine", "evaluate_checkpoint": "engine", "TrainResult": "engine", "run_study": "study",
         "StudyConfig": "study", "resnet_cifar": "study"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrainConfig", "ConfigError", "train", "evaluate_checkpoint", "TrainResult", "run_study",
           "StudyConfig", "resnet_cifar"]
