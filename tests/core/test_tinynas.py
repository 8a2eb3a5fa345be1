"""The authors'-score port (deepmad.core.tinynas): budgets, stage split, quirks, hand examples, round trips."""
import json
import math

import numpy as np
import pytest

from deepmad.core import blocks, theory
from deepmad.core import tinynas as t
from deepmad.core.reference import reference
from deepmad.core.spec import Spec, Stage, Stem

BOTTLENECK = ("deepmad-R18", "deepmad-R34", "deepmad-R50")
MBCONV = ("deepmad-29M-224", "deepmad-29M-288", "deepmad-50M", "deepmad-89M")

# An independent numpy port (/work/notes/tinynas_score_port.py, tinynas-score.md §6):
# raw, penalty, ρ, FLOPs, params.
PORT = {
    "deepmad-R18": (32120.2035, 34.8065, 0.29910, 1.8373e9, 11.1531e6),
    "deepmad-R34": (43142.6728, 34.8065, 0.29999, 3.6753e9, 21.0732e6),
    "deepmad-R50": (48919.2769, 34.8065, 0.29975, 4.0873e9, 24.2081e6),
    "deepmad-29M-224": (11915.3705, 44.6676, 0.49648, 4.4489e9, 26.8770e6),
    "deepmad-29M-288": (11704.3088, 22.2554, 0.49663, 4.4346e9, 26.9106e6),
    "deepmad-50M": (14833.2030, 189.0427, 0.49302, 8.6113e9, 47.3600e6),
    "deepmad-89M": (18020.3786, 274.0126, 0.49514, 15.2573e9, 85.7648e6),
}


def conv(c_in, c_out, k, s=1):
    return t.Layer("conv", c_in, c_out, k, s)


def group(kind, c_in, c_out, k, s, btn, L):
    return t.Layer(kind, c_in, c_out, k, s, btn, L)


def test_released_data_is_the_shared_reference():
    data = json.loads(t.DATA.read_text())["structures"]
    assert tuple(data) == t.RELEASED
    for name in t.RELEASED:
        assert t.to_dict(t.released(name)) == {k: data[name][k] for k in ("resolution", "budgets", "layers")}
    with pytest.raises(KeyError):
        t.released("deepmad-R101")


@pytest.mark.parametrize("name", t.RELEASED)
def test_released_meet_their_rho_and_params_budgets(name):
    s = t.released(name)
    sc = t.score(s)
    assert s.budgets.rho == (0.3 if name in BOTTLENECK else 0.5)
    assert sc.rho <= s.budgets.rho
    assert sc.rho > s.budgets.rho - 0.01  # search outputs sit just under the bound
    assert sc.params <= s.budgets.params


@pytest.mark.parametrize("name", t.RELEASED)
def test_flops_budget(name):
    s = t.released(name)
    sc = t.score(s)
    if name == "deepmad-R18":  # over its 1.82e9 budget under their own FLOPs convention
        assert sc.flops > s.budgets.flops
        assert sc.flops == pytest.approx(1.8373e9, rel=1e-4)
        assert sc.feasible is False
    else:
        assert sc.flops <= s.budgets.flops
        assert sc.feasible is True


@pytest.mark.parametrize("name", t.RELEASED)
def test_matches_independent_port(name):
    raw, penalty, rho, flops, params = PORT[name]
    sc = t.score(t.released(name))
    assert sc.raw == pytest.approx(raw, abs=1e-3)
    assert sc.penalty == pytest.approx(penalty, abs=1e-3)
    assert sc.final == pytest.approx(raw - penalty, abs=2e-3)
    assert sc.rho == pytest.approx(rho, abs=1e-5)
    assert sc.flops == pytest.approx(flops, rel=1e-4)
    assert sc.params == pytest.approx(params, rel=1e-5)


def test_stage_split_r18():
    st = t.score(t.released("deepmad-R18")).stages
    assert [s.last for s in st] == [0, 1, 2, 4, 5]  # stem alone; the stride-1 group 4 merged into stage 4
    assert [s.blocks for s in st] == [1, 2, 8, 27, 39]
    assert [s.layers for s in st] == [1, 4, 22, 79, 115]
    assert [s.resolution for s in st] == [112, 56, 28, 14, 7]
    assert [s.channels for s in st] == [32, 96, 384, 1024, 672]


def test_stage_split_29m_224():
    st = t.score(t.released("deepmad-29M-224")).stages
    assert [s.last for s in st] == [1, 2, 3, 4, 6]  # stage 1 = stem + group 1; the head in the last stage
    assert st[0].blocks == 3 and st[0].layers == 7 and st[0].channels == 40
    assert st[-1].channels == 1792


@pytest.mark.parametrize("name", MBCONV)
def test_se_blocks_report_resolution_1(name):
    s = t.released(name)
    st = t.stages(s)
    first_se = next(i for i, l in enumerate(s.layers) if l.type == "mbconv_se")
    for x in st:
        assert (x.resolution == 1) == (x.last >= first_se)
    base = t.score(s)
    for r in (160, 288):
        other = t.score(s, resolution=r)
        assert other.entropies[1:] == pytest.approx(base.entropies[1:], rel=1e-12)
        if first_se == 1 and s.layers[1].stride == 1:  # 29M-224: every stage holds an SE block
            assert other.raw == pytest.approx(base.raw, rel=1e-12)
        else:  # the stem-only stage 1 still sees the resolution
            assert other.entropies[0] != pytest.approx(base.entropies[0])


def test_score_resolution_is_224_not_the_config_image_size():
    s = t.released("deepmad-29M-288")
    assert s.resolution == 288
    assert t.stages(s)[0].resolution == 112
    assert t.score(s).raw == t.score(s, resolution=224).raw != t.score(s, resolution=288).raw


def test_depth_penalty_r18():
    sc = t.score(t.released("deepmad-R18"))
    d = np.array([9, 10, 12])
    assert sc.depths == (9, 10, 12)  # groups 1 and 2 left out
    assert sc.penalty == pytest.approx(10 * math.exp(math.sqrt(((d - d.mean()) ** 2).mean())), rel=1e-12)
    assert t.score(t.released("deepmad-29M-224")).depths == (2, 4, 6, 6, 5)  # MBConv nets keep every group
    assert t.score(t.released("deepmad-R18"), beta=0).penalty == 0


def test_hand_computed_small_bottleneck_net():
    layers = [conv(3, 8, 3, 2), group("bottleneck", 8, 16, 3, 2, 4, 1),
              group("bottleneck", 16, 16, 3, 2, 8, 2), group("bottleneck", 16, 32, 3, 2, 8, 1),
              group("bottleneck", 32, 32, 3, 1, 8, 2), group("bottleneck", 32, 48, 5, 2, 16, 1)]
    sc = t.score(t.Structure(layers, budgets=t.Budgets(flops=1e12)))

    def w(c_in, btn, k):  # log of the product of a bottleneck block's widths
        return math.log(c_in * btn * k * k * btn)

    logw = [math.log(27), w(8, 4, 3), w(16, 8, 3), w(16, 8, 3), w(16, 8, 3), w(32, 8, 3), w(32, 8, 3),
            w(32, 16, 5)]
    ends = [1, 2, 4, 7, 8]  # blocks up to the end of each stage
    n_layers = [1, 4, 10, 19, 22]
    res, chans = [112, 56, 28, 14, 7], [8, 16, 16, 32, 48]
    H = [math.log(c * r * r) * 0.5 * sum(logw[:e]) for c, r, e in zip(chans, res, ends)]
    raw = sum(H[:4]) + 8 * H[4]
    pen = 10 * math.exp(np.std([1, 2, 1]))
    rho = max(n / math.exp(sum(logw[:e]) / n) for n, e in zip(n_layers, ends))
    assert sc.entropies == pytest.approx(H, rel=1e-12)
    assert sc.raw == pytest.approx(raw, rel=1e-12)
    assert sc.penalty == pytest.approx(pen, rel=1e-12)
    assert sc.final == pytest.approx(raw - pen, rel=1e-12)
    assert sc.rho == pytest.approx(rho, rel=1e-12)
    assert sc.feasible is True  # only the FLOPs budget given


def test_hand_computed_flops_and_params_bottleneck():
    s = t.Structure([conv(3, 8, 3, 2), group("bottleneck", 8, 16, 3, 2, 4, 2)], resolution=32)
    # output pixels: stem 16², group 8²; MACs + 2 per BN output + 1 per activation / add output
    stem = 256 * (8 * 27 + 2 * 8 + 8)
    b0 = (256 * (4 * 8 + 2 * 4 + 4) + 64 * (4 * 4 * 9 + 2 * 4 + 4) + 64 * (16 * 4 + 2 * 16)
          + 256 * 8  # avg-pool shortcut, per input pixel and channel
          + 64 * (16 * 8 + 2 * 16 + 16)  # forced 1x1 projection + BN + add
          + 64 * 16)  # activation after the add
    b1 = 64 * (4 * 16 + 2 * 4 + 4) + 64 * (4 * 4 * 9 + 2 * 4 + 4) + 64 * (16 * 4 + 2 * 16) + 64 * 16
    assert t.flops(s) == pytest.approx(stem + b0 + b1, rel=1e-12)
    p_stem = 3 * 8 * 9 + 16
    p_b0 = 8 * 4 + 8 + 4 * 4 * 9 + 8 + 4 * 16 + 32 + 8 * 16 + 32
    p_b1 = 16 * 4 + 8 + 4 * 4 * 9 + 8 + 4 * 16 + 32
    assert t.params(s) == p_stem + p_b0 + p_b1


def test_hand_computed_flops_and_params_mbconv_se():
    s = t.Structure([conv(3, 8, 3, 2), group("mbconv_se", 8, 8, 3, 2, 24, 1)], resolution=32)
    assert t.se_hidden(24) == 8 and t.se_hidden(240) == 56 and t.se_hidden(20) == 8
    stem = 256 * (8 * 27 + 2 * 8 + 8)
    b0 = (256 * (24 * 8 + 2 * 24 + 24) + 64 * (24 * 9 + 2 * 24 + 24) + 64 * (8 * 24 + 2 * 8 + 8)
          + 256 * 8)  # avg-pool on the identity shortcut of stride 2; no SE FLOPs
    assert t.flops(s) == pytest.approx(stem + b0, rel=1e-12)
    se = 24 * 8 + 16 + 8 * 24 + 48  # two 1x1 convs with BN, hidden 8
    assert t.params(s) == 3 * 8 * 9 + 16 + (8 * 24 + 48) + (24 * 9 + 48) + (24 * 8 + 16) + se


def test_float_resolution_division():
    s = t.Structure([conv(3, 8, 3, 2), conv(8, 8, 3, 2), conv(8, 8, 1)], resolution=30)  # 15 -> 7.5, not 7
    assert t.flops(s) == pytest.approx(15**2 * (8 * 27 + 24) + 7.5**2 * (8 * 72 + 24) + 7.5**2 * (64 + 24),
                                       rel=1e-12)
    assert [x.resolution for x in t.stages(s, 30)] == [15, 7]  # the score's resolutions use //


def test_not_five_stages_is_an_error():
    s = t.Structure([conv(3, 8, 3, 2), group("mbconv_se", 8, 16, 3, 2, 48, 1),
                     group("mbconv_se", 16, 24, 3, 2, 72, 1)])
    assert len(t.stages(s)) == 3
    with pytest.raises(t.StageCountError, match="exactly 5 stages"):
        t.score(s)
    assert t.score(s, alpha=(1, 1, 8)).raw > 0


def test_bottleneck_net_needs_five_groups_for_the_penalty():
    s = t.Structure([conv(3, 8, 3, 2)] + [group("bottleneck", 8, 8, 3, 2, 4, 1)] * 4)
    with pytest.raises(ValueError, match="5 groups"):
        t.depth_penalty(s)


def test_structure_validation():
    with pytest.raises(ValueError, match="c_in"):
        t.Structure([conv(3, 8, 3, 2), conv(16, 8, 1)])
    with pytest.raises(ValueError, match="stride"):
        conv(3, 8, 3, 3)
    assert t.structure_info(t.released("deepmad-R18"))[1] == {
        "class": "SuperResK1KXK1", "in": 32, "out": 96, "s": 2, "k": 5, "btn": 40, "L": 1}


@pytest.mark.parametrize("name", t.RELEASED)
def test_spec_round_trip(name):
    s = t.released(name)
    spec = t.to_spec(s)
    back = t.from_spec(spec)
    assert back.layers == s.layers and back.resolution == s.resolution
    assert t.score(back, budgets=t.Budgets()).raw == t.score(s).raw
    assert spec.act == ("relu" if name in BOTTLENECK else "silu")
    assert spec.head == (None if name in BOTTLENECK else s.layers[-1].c_out)


@pytest.mark.parametrize("name", t.RELEASED)
def test_our_theory_sees_their_widths(name):
    s = t.released(name)
    sc = t.score(s)
    units = blocks.units(t.to_spec(s))
    layers, logw = theory.prefixes(units)[-1]
    assert layers == sc.stages[-1].layers
    assert logw == pytest.approx(sc.stages[-1].logw, rel=1e-12)
    # their stage split coincides with our down-sampling scales on these nets, so ρ_max agrees
    assert theory.rho_max(units) == pytest.approx(sc.rho, rel=1e-12)
    if name in BOTTLENECK:  # no SE quirk, 224 px: their raw is exactly half of our multi-scale entropy
        assert theory.entropy(units) / 2 == pytest.approx(sc.raw, rel=1e-12)


def test_from_spec_of_our_design():
    rows = ((64, 1, 2, 16), (128, 2, 2, 32), (256, 3, 2, 64), (256, 3, 1, 64), (512, 3, 2, 128))
    stages = tuple(Stage("bottleneck", c, d, s, 3, mid=m) for c, d, s, m in rows)
    spec = Spec(224, Stem(32), stages, name="mine")
    s = t.from_spec(spec)
    assert [l.type for l in s.layers] == ["conv"] + ["bottleneck"] * 5 and s.name == "mine"
    sc = t.score(s)
    assert sc.depths == (3, 3, 3) and sc.penalty == pytest.approx(10.0)
    assert sc.feasible is None  # no budgets given
    assert theory.entropy(blocks.units(spec)) / 2 == pytest.approx(sc.raw, rel=1e-12)


def test_from_spec_rejects_what_their_code_cannot_express():
    with pytest.raises(ValueError, match="pool"):
        t.from_spec(reference("resnet50"))
    no_pool = Spec(224, Stem(64, 7, 2), (Stage("basic", 64, 2),))
    with pytest.raises(ValueError, match="basic"):
        t.from_spec(no_pool)
    with pytest.raises(ValueError, match="mid"):
        t.from_spec(reference("efficientnet_b0"))  # expansion ratios
    with pytest.raises(ValueError, match="se"):
        t.from_spec(Spec(224, Stem(32), (Stage("mbconv", 64, 1, 2, mid=96),)))
    with pytest.raises(ValueError, match="expand conv"):
        t.from_spec(Spec(224, Stem(32), (Stage("mbconv", 64, 1, 2, mid=32, se=0.25),)))
    with pytest.raises(ValueError, match="groups"):
        t.from_spec(Spec(224, Stem(32), (Stage("bottleneck", 64, 1, 2, mid=32, groups=4),)))
