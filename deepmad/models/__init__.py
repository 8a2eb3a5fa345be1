"""PyTorch models built from specs (needs torch: ``pip install 'deepmad[torch]'``).

``create_model`` builds a ``DeepMADNet`` from a preset name, a reference network name, a Spec or a spec
file; the model has exactly the convolutions, parameters and multiply-accumulates ``deepmad.core.blocks`` counts.
Convention: MACs = FLOPs / 2, counting convolutions and matrix products (the classifier) only, as
``torch.utils.flop_counter.FlopCounterMode`` does (BatchNorm, activations, pooling, the SE gate product and
residual additions are not counted).
"""
from __future__ import annotations

from .blocks import BasicBlock, Bottleneck, InvertedResidual
from .factory import create_model, list_models, preset_spec, resolve_spec
from .layers import ConvBNAct, DropPath, SqueezeExcite, make_act
from .mlp import MLPNet
from .net import DeepMADNet, FeatureInfo, feature_levels, make_block

__all__ = ["create_model", "list_models", "resolve_spec", "preset_spec", "DeepMADNet", "MLPNet", "FeatureInfo",
           "feature_levels", "make_block", "BasicBlock", "Bottleneck", "InvertedResidual", "ConvBNAct",
           "SqueezeExcite", "DropPath", "make_act"]
