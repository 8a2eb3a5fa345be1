"""deepmad.models.mlp: the MLP a spec describes, with exactly the parameters deepmad.core.mlp counts."""
from __future__ import annotations

import pytest
import torch

import deepmad
from deepmad.core import mlp
from deepmad.models import MLPNet


@pytest.mark.parametrize("spec", [mlp.MLPSpec(784, 10, (120,) * 5), mlp.MLPSpec(3, 1), mlp.MLPSpec(7, 2, (5, 9, 4), bias=False,
                                                                                                   act="tanh")])
def test_params_equal_the_analytic_count(spec):
    m = MLPNet(spec)
    assert sum(p.numel() for p in m.parameters()) == mlp.params(spec) == mlp.analyze(spec).params
    assert isinstance(m, torch.nn.Sequential) and len([x for x in m if isinstance(x, torch.nn.Linear)]) == spec.depth
    assert m(torch.zeros(4, spec.inputs)).shape == (4, spec.outputs)


def test_create_model_from_a_design_and_a_file(tmp_path):
    d = deepmad.api.design_mlp(784, 10, "1M", 0.5)
    path = tmp_path / "m.yaml"
    mlp.save(d.spec, path)
    for target in (d.spec, str(path)):
        m = deepmad.create_model(target)
        assert sum(p.numel() for p in m.parameters()) == mlp.params(d.spec) <= 1e6
    m = deepmad.create_model(str(path), num_classes=3)
    assert m.spec.outputs == 3 and sum(p.numel() for p in m.parameters()) == mlp.params(m.spec)
    with pytest.raises(ValueError, match="features_only"):
        deepmad.create_model(d.spec, features_only=True)
