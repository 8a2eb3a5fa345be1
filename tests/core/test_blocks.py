"""deepmad.core.blocks: the closed form (cost, stage_cost, block_cost) equals the layer-by-layer list (convs)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepmad.core import blocks
from deepmad.core.blocks import Conv, block_convs, block_cost, convs, cost, stage_cost
from deepmad.core.reference import REFERENCE, reference
from deepmad.core.spec import Spec, Stage, Stem

from shared import KERNELS, STRIDES, divisors, stage_for, valid_specs

SETTINGS = settings(max_examples=100, deadline=None)


def brute(spec: Spec, classifier: bool = True) -> tuple[int, int, int, float]:
    cv = [v for v in convs(spec) if classifier or v.role != "classifier"]
    main = [v for v in cv if v.role == "main"]
    return (sum(v.macs for v in cv), sum(v.params for v in cv), len(main),
            math.fsum(math.log(v.width) for v in main))


def assert_cost_equals(c: blocks.Cost, b: tuple) -> None:
    macs, params, layers, logw = b
    assert c.macs == macs
    assert c.params == params
    assert c.layers == layers
    assert c.logw == pytest.approx(logw, rel=1e-9, abs=1e-9)


# ---------------------------------------------------------------------------------------------- whole specs

@SETTINGS
@given(valid_specs())
def test_closed_form_equals_brute_force(spec):
    assert_cost_equals(cost(spec), brute(spec))


@SETTINGS
@given(valid_specs())
def test_classifier_false_excludes_exactly_the_classifier(spec):
    with_c, without = cost(spec), cost(spec, classifier=False)
    assert_cost_equals(without, brute(spec, classifier=False))
    cls = [v for v in convs(spec) if v.role == "classifier"]
    assert len(cls) == (1 if spec.num_classes else 0)
    assert with_c.macs - without.macs == sum(v.macs for v in cls)
    assert with_c.params - without.params == sum(v.params for v in cls)
    assert with_c.layers == without.layers and with_c.logw == without.logw
    if cls:
        c_last = spec.head if spec.head is not None else spec.stages[-1].channels
        assert cls[0] == Conv("classifier", c_last, spec.num_classes, 1, 1, 1, 1, "classifier", bias=True,
                              bn=False)
        assert cls[0].params == (c_last + 1) * spec.num_classes and cls[0].macs == c_last * spec.num_classes


@SETTINGS
@given(valid_specs())
def test_units_are_the_main_convs(spec):
    main = [v for v in convs(spec) if v.role == "main"]
    us = blocks.units(spec)
    assert [w for u in us for w in u.widths] == [v.width for v in main]
    assert us[0].name == "stem" and us[0].stage == -1
    assert len(us) == 1 + sum(s.depth for s in spec.stages) + (spec.head is not None)
    assert us[-1].channels == (spec.head if spec.head is not None else spec.stages[-1].channels)
    # every width is a fan-in >= 1, so every log(width) >= 0
    assert all(v.width >= 1 for v in main)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_closed_form_equals_brute_force_reference(name):
    s = reference(name)
    assert_cost_equals(cost(s), brute(s))
    assert_cost_equals(cost(s, classifier=False), brute(s, classifier=False))


# ---------------------------------------------------------------------------------------------- vectorized

@st.composite
def stage_and_inputs(draw):
    s = draw(stage_for(draw(st.integers(1, 64))))
    n = draw(st.integers(1, 6))
    step = s.groups if s.block == "basic" else 1  # basic: groups must divide the block input too
    c_in = [step * draw(st.integers(1, 64)) for _ in range(n)]
    r_in = [draw(st.integers(1, 256)) for _ in range(n)]
    return s, c_in, r_in


@SETTINGS
@given(stage_and_inputs())
def test_stage_cost_vectorized_equals_scalar(args):
    s, c_in, r_in = args
    vec = stage_cost(s, np.array(c_in), np.array(r_in))
    for i, (c, r) in enumerate(zip(c_in, r_in)):
        one = stage_cost(s, c, r)
        for field, a, b in zip(blocks.Cost._fields, vec, one):
            a = np.broadcast_to(a, (len(c_in),))[i]
            if field == "logw":
                assert a == pytest.approx(float(b), rel=1e-12, abs=1e-12)
            else:
                assert a == b, field


def test_stage_cost_vectorized_mbconv_expand():
    """Minimal case of the above: an mbconv stage with an expansion ratio on an array of input widths."""
    s = Stage("mbconv", 24, 2, stride=2, expand=6.0)
    vec = stage_cost(s, np.array([16, 24]), np.array([112, 112]))
    for i, c in enumerate((16, 24)):
        assert np.asarray(vec.macs)[i] == stage_cost(s, c, 112).macs


@st.composite
def block_args(draw, block: str):
    c_in, c = draw(st.integers(1, 128)), draw(st.integers(1, 128))
    k, r_in = draw(KERNELS), draw(st.integers(1, 128))
    if block == "basic":
        mid, groups = c, draw(st.sampled_from(divisors(math.gcd(c_in, c))))
    elif block == "bottleneck":
        mid = draw(st.integers(1, 128))
        groups = draw(st.sampled_from(divisors(mid)))
    else:
        mid, groups = draw(st.one_of(st.just(c_in), st.integers(1, 512))), 1
    return c_in, c, mid, k, r_in, groups


@SETTINGS
@given(st.sampled_from(["basic", "bottleneck", "mbconv"]), STRIDES,
       st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.data())
def test_block_cost_on_arrays_equals_block_convs(block, stride, se, data):
    se = se if block == "mbconv" else 0.0
    rows = data.draw(st.lists(block_args(block), min_size=1, max_size=6))
    cols = [np.array(col) for col in zip(*rows)]  # c_in, c, mid, k, r_in, groups
    c_in, c, mid, k, r_in, groups = cols
    vec = block_cost(block, c_in, c, mid, k, stride, r_in, groups, se)
    for i, row in enumerate(rows):
        cv = block_convs(block, row[0], row[1], row[2], row[3], stride, row[4], row[5], se)
        main = [v for v in cv if v.role == "main"]
        got = [np.broadcast_to(x, (len(rows),))[i] for x in vec]
        assert got[0] == sum(v.macs for v in cv)
        assert got[1] == sum(v.params for v in cv)
        assert got[2] == len(main)
        assert got[3] == pytest.approx(math.fsum(math.log(v.width) for v in main), rel=1e-9, abs=1e-9)
        one = block_cost(block, row[0], row[1], row[2], row[3], stride, row[4], row[5], se)
        assert [float(x) for x in one] == pytest.approx([float(x) for x in got], rel=1e-12)


def test_block_cost_se_array():
    """block_cost's docstring: every argument but block/stride may be a numpy array -- se included."""
    vec = block_cost("mbconv", 16, 24, 96, 3, 1, 56, 1, np.array([0.25, 0.5]))
    for i, se in enumerate((0.25, 0.5)):
        assert np.asarray(vec.params)[i] == block_cost("mbconv", 16, 24, 96, 3, 1, 56, 1, se).params


def test_block_cost_unknown_family():
    with pytest.raises(ValueError):
        block_cost("dense", 8, 8, 8, 3, 1, 8)
    with pytest.raises(ValueError):
        block_convs("dense", 8, 8, 8, 3, 1, 8)


# ---------------------------------------------------------------------------------------------- by hand

def _by_name(cv):
    return {v.name.split(".", 1)[1] if "." in v.name else v.name: v for v in cv}


def test_bottleneck_projection_when_channels_change():
    """ResNet-50 layer1[0]: 64 -> (64) -> 256 at 56 px, stride 1: a projection because channels change."""
    cv = block_convs("bottleneck", 64, 256, 64, 3, 1, 56, name="b")
    assert [(v.name, v.c_in, v.c_out, v.k, v.stride, v.r_out, v.role) for v in cv] == [
        ("b.conv1", 64, 64, 1, 1, 56, "main"),
        ("b.conv2", 64, 64, 3, 1, 56, "main"),
        ("b.conv3", 64, 256, 1, 1, 56, "main"),
        ("b.shortcut", 64, 256, 1, 1, 56, "shortcut"),
    ]
    assert [v.params for v in cv] == [4096 + 128, 36864 + 128, 16384 + 512, 16384 + 512]
    assert sum(v.params for v in cv) == 75008  # torchvision resnet50.layer1[0]
    assert [v.macs for v in cv] == [64 * 64 * 3136, 64 * 64 * 9 * 3136, 64 * 256 * 3136, 64 * 256 * 3136]
    c = block_cost("bottleneck", 64, 256, 64, 3, 1, 56)
    assert (c.macs, c.params, c.layers) == (sum(v.macs for v in cv), 75008, 3)
    assert c.logw == pytest.approx(math.log(64) + math.log(64 * 9) + math.log(64))


def test_bottleneck_projection_when_strided():
    cv = block_convs("bottleneck", 256, 256, 64, 3, 2, 56)
    assert [v.role for v in cv] == ["main", "main", "main", "shortcut"]
    conv1, conv2, conv3, sc = cv
    assert (conv1.stride, conv1.r_out) == (1, 56)  # stride on the k x k conv (torchvision v1.5)
    assert (conv2.stride, conv2.r_out) == (2, 28)
    assert (conv3.r_out, sc.stride, sc.r_out, sc.c_in, sc.c_out) == (28, 2, 28, 256, 256)
    # ResNet-50 layer2[0]: 256 -> (128) -> 512, stride 2
    cv = block_convs("bottleneck", 256, 512, 128, 3, 2, 56)
    assert sum(v.params for v in cv) == 379392


def test_bottleneck_identity_shortcut():
    cv = block_convs("bottleneck", 256, 256, 64, 3, 1, 56)
    assert [v.role for v in cv] == ["main"] * 3
    assert sum(v.params for v in cv) == 70400  # torchvision resnet50.layer1[1]
    c = block_cost("bottleneck", 256, 256, 64, 3, 1, 56)
    assert (c.macs, c.params) == (sum(v.macs for v in cv), 70400)


def test_grouped_bottleneck():
    cv = block_convs("bottleneck", 64, 256, 128, 3, 1, 56, groups=32)  # ResNeXt-50 32x4d layer1[0]
    assert cv[1].groups == 32 and cv[1].width == 128 * 9 / 32
    assert cv[1].params == 128 * 4 * 9 + 256
    assert sum(v.params for v in cv) == 63488
    assert block_cost("bottleneck", 64, 256, 128, 3, 1, 56, 32).params == 63488


def test_basic_block_shortcut_rule():
    assert [v.role for v in block_convs("basic", 64, 64, 64, 3, 1, 56)] == ["main", "main"]
    assert [v.role for v in block_convs("basic", 64, 128, 128, 3, 1, 56)] == ["main", "main", "shortcut"]
    cv = block_convs("basic", 64, 128, 128, 3, 2, 56)
    assert [v.role for v in cv] == ["main", "main", "shortcut"]
    assert sum(v.params for v in cv) == 230144  # torchvision resnet18.layer2[0]
    assert [v.r_out for v in cv] == [28, 28, 28] and [v.stride for v in cv] == [2, 1, 2]
    assert [v.role for v in block_convs("basic", 64, 64, 64, 3, 2, 56)] == ["main", "main", "shortcut"]


def test_mbconv_without_expand_conv():
    """MobileNet-V2 features[1]: expansion 1 (mid == input channels): no 1x1 expand conv, no shortcut."""
    cv = block_convs("mbconv", 32, 16, 32, 3, 1, 112, name="m")
    assert [(v.name, v.c_in, v.c_out, v.k, v.groups, v.role) for v in cv] == [
        ("m.dw", 32, 32, 3, 32, "main"),
        ("m.project", 32, 16, 1, 1, "main"),
    ]
    assert cv[0].width == 9
    assert sum(v.params for v in cv) == 896
    c = block_cost("mbconv", 32, 16, 32, 3, 1, 112)
    assert (c.params, c.layers) == (896, 2)
    assert c.macs == 32 * 9 * 112**2 + 32 * 16 * 112**2
    assert c.logw == pytest.approx(math.log(9) + math.log(32))


def test_mbconv_with_expand_conv():
    """MobileNet-V2 features[2]: 16 -> expand 96 -> dw stride 2 -> 24."""
    cv = block_convs("mbconv", 16, 24, 96, 3, 2, 112, name="m")
    assert [(v.name, v.r_out, v.stride) for v in cv] == [("m.expand", 112, 1), ("m.dw", 56, 2),
                                                         ("m.project", 56, 1)]
    assert sum(v.params for v in cv) == 5136
    c = block_cost("mbconv", 16, 24, 96, 3, 2, 112)
    assert (c.params, c.layers) == (5136, 3)
    assert c.macs == 16 * 96 * 112**2 + 96 * 9 * 56**2 + 96 * 24 * 56**2
    assert c.logw == pytest.approx(math.log(16) + math.log(9) + math.log(96))
    # residual shape kept: still no projection conv
    assert [v.role for v in block_convs("mbconv", 24, 24, 144, 3, 1, 56)] == ["main"] * 3


def test_mbconv_expansion_ratio_one_means_no_expand_conv():
    s = Spec(32, Stem(16), (Stage("mbconv", 16, 2, expand=1.0), Stage("mbconv", 24, 1, expand=1.0)),
             num_classes=0)
    names = [v.name for v in convs(s)]
    assert not any(n.endswith(".expand") for n in names)
    assert blocks.expansion(s.stages[1], 16) == 16


@pytest.mark.parametrize("c_in,se,sq", [(32, 0.25, 8), (16, 0.25, 4), (10, 0.25, 2), (7, 0.25, 1), (2, 0.25, 1),
                                        (3, 0.1, 1), (1, 0.5, 1), (100, 0.5, 50), (40, 1.0, 40)])
def test_se_squeeze(c_in, se, sq):
    assert sq == max(1, int(c_in * se))
    assert blocks.squeeze(c_in, se) == sq
    cv = block_convs("mbconv", c_in, 8, 6 * c_in, 3, 1, 14, se=se, name="m")
    red, exp = [v for v in cv if v.role == "se"]
    assert (red.name, red.c_in, red.c_out, red.bias, red.bn, red.r_out) == ("m.se.reduce", 6 * c_in, sq, True,
                                                                              False, 1)
    assert (exp.name, exp.c_in, exp.c_out) == ("m.se.expand", sq, 6 * c_in)
    assert red.params + exp.params == 2 * 6 * c_in * sq + sq + 6 * c_in
    assert [v.name for v in cv] == ["m.expand", "m.dw", "m.se.reduce", "m.se.expand", "m.project"]
    c = block_cost("mbconv", c_in, 8, 6 * c_in, 3, 1, 14, se=se)
    assert c.params == sum(v.params for v in cv) and c.macs == sum(v.macs for v in cv)
    assert c.layers == 3  # SE convs are not main-path layers


def test_se_squeeze_vectorized():
    np.testing.assert_array_equal(blocks.squeeze(np.array([32, 10, 2, 100]), 0.25), [8, 2, 1, 25])


def test_efficientnet_b0_first_block():
    """EfficientNet-B0 features[1][0]: dw 3x3 on 32, SE 32 -> 8 -> 32, project to 16: 1,448 params."""
    cv = block_convs("mbconv", 32, 16, 32, 3, 1, 112, se=0.25)
    assert sum(v.params for v in cv) == 1448


def test_conv_width_macs_params():
    v = Conv("x", 64, 128, 3, 2, 4, 28, "main")
    assert v.width == 64 * 9 / 4
    assert v.macs == 128 * 16 * 9 * 28 * 28
    assert v.params == 128 * 16 * 9 + 2 * 128
    lin = Conv("fc", 512, 1000, 1, 1, 1, 1, "classifier", bias=True, bn=False)
    assert (lin.width, lin.macs, lin.params) == (512, 512_000, 513_000)


def test_stem_pool_and_stage_resolutions():
    s = reference("resnet18")
    cv = convs(s)
    assert cv[0].name == "stem" and cv[0].r_out == 112 and cv[0].width == 3 * 49
    assert [u.resolution for u in blocks.units(s)] == [112, 56, 56, 28, 28, 14, 14, 7, 7]
    # odd sizes: 'same' padding gives ceil(r / stride)
    s = Spec(225, Stem(8, 3, 2, pool=True), (Stage("basic", 8, 1, stride=2),), num_classes=0)
    assert [u.resolution for u in blocks.units(s)] == [113, 29]


def test_cost_is_sum_of_stage_costs():
    s = reference("resnet50")
    stem = blocks.stem_conv(s)
    total = [stem.macs, stem.params, 1, math.log(stem.width)]
    r, c = 56, 64
    for st_ in s.stages:
        sc = stage_cost(st_, c, r)
        total = [a + float(b) for a, b in zip(total, sc)]
        r, c = (r - 1) // st_.stride + 1, st_.channels
    total[0] += 2048 * 1000
    total[1] += 2049 * 1000
    got = cost(s)
    assert (got.macs, got.params, got.layers) == tuple(total[:3])
    assert got.logw == pytest.approx(total[3])
