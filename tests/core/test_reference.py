"""deepmad.core.reference: the reference networks count as torchvision does and reproduce the paper's rho."""
from __future__ import annotations

from decimal import Decimal

import pytest

from deepmad.core import blocks, paper, theory
from deepmad.core.reference import REFERENCE, reference

# torchvision's model cards: exact parameter counts and GFLOPS (multiply-accumulates)
TORCHVISION = {
    "resnet18": (11_689_512, 1.814),
    "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
    "resnet152": (60_192_808, 11.514),
    "mobilenet_v2": (3_504_872, 0.301),
    "efficientnet_b0": (5_288_548, 0.386),
}

PAPER_NAMES = {
    "ResNet-18": "resnet18",
    "ResNet-34": "resnet34",
    "ResNet-50": "resnet50",
    "MobileNet-V2": "mobilenet_v2",
    "EfficientNet-B0": "efficientnet_b0",
}


def test_all_reference_networks_covered():
    assert set(REFERENCE) == set(TORCHVISION)


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_params_equal_torchvision(name):
    s = reference(name)
    params, _ = TORCHVISION[name]
    assert blocks.cost(s).params == params
    assert sum(v.params for v in blocks.convs(s)) == params


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_macs_match_torchvision_gflops(name):
    s = reference(name)
    _, gflops = TORCHVISION[name]
    macs = blocks.cost(s).macs
    assert macs == sum(v.macs for v in blocks.convs(s))
    assert abs(macs / 1e9 - gflops) <= 0.005 * gflops, f"{name}: {macs / 1e9:.4f} G vs {gflops} G"


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_five_scales(name):
    sc = theory.scales(blocks.units(reference(name)))
    assert len(sc) == 5
    assert [x.resolution for x in sc] == [112, 56, 28, 14, 7]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_specs_are_named_224_px_imagenet(name):
    s = reference(name)
    assert s.name == name and s.resolution == 224 and s.num_classes == 1000 and s.in_channels == 3


def test_resnet_layer_counts():
    """L counts every main-path conv: stem + 2 per basic block / 3 per bottleneck block."""
    assert blocks.cost(reference("resnet18")).layers == 17
    assert blocks.cost(reference("resnet34")).layers == 33
    assert blocks.cost(reference("resnet50")).layers == 49
    assert blocks.cost(reference("resnet101")).layers == 100
    assert blocks.cost(reference("resnet152")).layers == 151


def _paper_rows():
    rows = {}
    for row in paper.table("table1_resnet_family") + paper.table("table2_mobile"):
        rows.setdefault(row["model"], row)  # first row of each model: the original network
    return rows


def _decimals(x: float) -> int:
    return -Decimal(repr(x)).as_tuple().exponent


@pytest.mark.parametrize("model", sorted(PAPER_NAMES))
def test_rho_reproduces_paper(model):
    row = _paper_rows()[model]
    printed = row["rho"]
    got = theory.rho(blocks.units(reference(PAPER_NAMES[model])))
    assert round(got, _decimals(printed)) == pytest.approx(printed), f"{model}: rho {got:.4f}, paper {printed}"


@pytest.mark.parametrize("model", sorted(PAPER_NAMES))
def test_params_reproduce_paper(model):
    row = _paper_rows()[model]
    got = blocks.cost(reference(PAPER_NAMES[model])).params / 1e6
    assert round(got, _decimals(row["params_m"])) == pytest.approx(row["params_m"])


def test_rho_printed_precisions():
    """The precisions the brief names: 0.01, 0.02, 0.09, 0.9, 0.6."""
    expected = {"ResNet-18": 0.01, "ResNet-34": 0.02, "ResNet-50": 0.09, "MobileNet-V2": 0.9,
                "EfficientNet-B0": 0.6}
    rows = _paper_rows()
    assert {m: rows[m]["rho"] for m in expected} == expected
    for model, printed in expected.items():
        got = theory.rho(blocks.units(reference(PAPER_NAMES[model])))
        assert round(got, _decimals(printed)) == pytest.approx(printed)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_rho_max_at_least_rho(name):
    us = blocks.units(reference(name))
    assert theory.rho_max(us) >= theory.rho(us)
