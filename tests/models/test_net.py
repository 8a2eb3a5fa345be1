"""deepmad.models: the builder builds exactly the network deepmad.core.blocks counts.

Counting convention (the issue's acceptance): MACs = FLOPs / 2, where FLOPs is the total of
``torch.utils.flop_counter.FlopCounterMode`` over one forward pass at the spec's resolution, batch 1, under
``torch.no_grad``. FlopCounterMode counts convolutions and matrix products (the classifier) only, not
BatchNorm, activations, pooling, the SE gate product or residual additions, which is also what
``deepmad.core.blocks.cost`` counts; the two agree exactly (so a fortiori within the issue's 0.5%).

Most whole-network counts run the forward on the meta device (shapes, no data, no compute);
``test_meta_counts_equal_cpu_counts`` shows a real CPU forward counts the same.
"""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from deepmad import api  # noqa: E402
from deepmad.core import blocks  # noqa: E402
from deepmad.models import DeepMADNet, create_model, feature_levels  # noqa: E402
from deepmad.models.blocks import BasicBlock, Bottleneck, InvertedResidual  # noqa: E402
from deepmad.models.layers import ACTIVATIONS, ConvBNAct, DropPath  # noqa: E402
from deepmad.core.presets import PRESETS  # noqa: E402
from deepmad.core.reference import REFERENCE, reference  # noqa: E402
from deepmad.core.spec import ACTIVATIONS as SPEC_ACTIVATIONS  # noqa: E402
from deepmad.core.spec import Spec, SpecError, Stage, Stem  # noqa: E402

ALL = [*PRESETS, *REFERENCE]
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "resnet101": 44_549_160, "resnet152": 60_192_808, "mobilenet_v2": 3_504_872,
                      "efficientnet_b0": 5_288_548}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measured_macs(model: nn.Module, resolution: int, device: str = "meta") -> int:
    """FlopCounterMode's total / 2 over one batch-1 forward at resolution, under no_grad."""
    x = torch.zeros(1, model.spec.in_channels, resolution, resolution, device=device)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def meta_model(target, **kw) -> DeepMADNet:
    with torch.device("meta"):
        return create_model(target, **kw)


def small_spec(block: str = "basic", **kw) -> Spec:
    stages = {"basic": (Stage("basic", 16, 2, stride=1), Stage("basic", 24, 2, stride=2, groups=2)),
              "bottleneck": (Stage("bottleneck", 32, 2, stride=2, mid=8), Stage("bottleneck", 48, 2, stride=2,
                                                                                  mid=16, groups=4, kernel=5)),
              "mbconv": (Stage("mbconv", 16, 2, stride=1, expand=1.0, se=0.25),
                         Stage("mbconv", 24, 2, stride=2, expand=4.0, kernel=5, se=0.25))}[block]
    base = dict(resolution=32, stem=Stem(16, 3, 2), stages=stages, head=None, num_classes=10, name=f"tiny-{block}")
    return Spec(**{**base, **kw})


# ---------------------------------------------------------------------------------------------- exactness

@pytest.mark.parametrize("name", ALL)
def test_params_and_macs_equal_the_analytic_counts(name):
    model = meta_model(name)
    spec = model.spec
    total = blocks.cost(spec)
    assert n_params(model) == total.params
    macs = measured_macs(model, spec.resolution)
    assert abs(macs - total.macs) <= 0.005 * total.macs  # the tolerance
    assert macs == total.macs  # what actually holds
    a = api.analyze_spec(spec)
    assert (n_params(model), macs) == (a.params, a.flops)


@pytest.mark.parametrize("name", ALL)
def test_backbone_counts_equal_the_no_classifier_counts(name):
    model = meta_model(name, num_classes=0)
    spec = model.spec
    a = api.analyze_spec(spec, classifier=False)  # what `deepmad analyze --no-classifier` reports
    assert n_params(model) == a.params == blocks.cost(spec, classifier=False).params
    assert measured_macs(model, spec.resolution) == a.flops
    assert isinstance(model.classifier, nn.Identity)


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_reference_networks_have_torchvision_parameter_counts(name):
    with torch.device("meta"):
        model = DeepMADNet(reference(name))
    assert n_params(model) == TORCHVISION_PARAMS[name]


def test_resnext50_has_torchvision_parameter_count():
    """Grouped bottlenecks: ResNeXt-50 32x4d as a spec builds torchvision's 25,028,904 parameters."""
    r50 = reference("resnet50")
    stages = tuple(replace(s, mid=s.mid * 2, groups=32) for s in r50.stages)
    with torch.device("meta"):
        model = DeepMADNet(replace(r50, stages=stages, name="resnext50_32x4d"))
    assert n_params(model) == 25_028_904 == blocks.cost(model.spec).params


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_meta_counts_equal_cpu_counts(name):
    """The meta-device forward of the other tests counts what a real CPU forward counts."""
    torch.manual_seed(0)
    cpu = create_model(name)
    res = cpu.spec.resolution
    assert measured_macs(cpu, res, "cpu") == measured_macs(meta_model(name), res) == blocks.cost(cpu.spec).macs


def _assert_convs_match(model: DeepMADNet, spec: Spec) -> None:
    """Every conv of blocks.convs(spec) is the module of that name, with its shape; there are no others;
    each conv's output side is the record's r_out."""
    records = blocks.convs(spec)
    sides: dict[str, int] = {}
    hooks = []
    for rec in records:
        m = model.get_submodule(rec.name)
        if rec.role == "classifier":
            assert isinstance(m, nn.Linear)
            assert (m.in_features, m.out_features, m.bias is not None) == (rec.c_in, rec.c_out, True)
            continue
        conv = m.conv if rec.bn else m
        assert isinstance(conv, nn.Conv2d), rec.name
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.groups) == \
            (rec.c_in, rec.c_out, (rec.k, rec.k), (rec.stride, rec.stride), rec.groups), rec.name
        assert (conv.bias is not None) == rec.bias, rec.name
        assert isinstance(m.bn, nn.BatchNorm2d) if rec.bn else isinstance(m, nn.Conv2d), rec.name
        hooks.append(conv.register_forward_hook(
            lambda mod, i, out, name=rec.name: sides.__setitem__(name, (out.shape[2], out.shape[3]))))
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(convs) == len(records)
    x = torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution, device="meta")
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    for rec in records:
        if rec.role != "classifier":
            assert sides[rec.name] == (rec.r_out, rec.r_out), rec.name


@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_convs_are_the_counted_convs(name):
    spec = reference(name)
    with torch.device("meta"):
        _assert_convs_match(DeepMADNet(spec), spec)


# random small specs: every family, strides, kernels, groups, mid/expand, SE, head, pool, in_channels

def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def random_specs(draw) -> Spec:
    stem = Stem(draw(st.integers(1, 48)), draw(st.sampled_from([1, 3, 5, 7])), draw(st.sampled_from([1, 2])),
                draw(st.booleans()))
    stages, c_in = [], stem.channels
    for _ in range(draw(st.integers(1, 4))):
        block = draw(st.sampled_from(["basic", "bottleneck", "mbconv"]))
        c = draw(st.integers(1, 96))
        kw: dict = dict(stride=draw(st.sampled_from([1, 2])), kernel=draw(st.sampled_from([1, 3, 5])))
        if block == "basic":
            kw["groups"] = draw(st.sampled_from(_divisors(math.gcd(c_in, c))))
        elif block == "bottleneck":
            kw["mid"] = draw(st.integers(1, 96))
            kw["groups"] = draw(st.sampled_from(_divisors(kw["mid"])))
        else:
            if draw(st.booleans()):
                kw["mid"] = draw(st.integers(1, 160))
            else:
                kw["expand"] = draw(st.one_of(st.just(1.0), st.floats(1.0, 6.0)))
            kw["se"] = draw(st.one_of(st.just(0.0), st.just(0.25), st.floats(0.0, 1.0)))
        stages.append(Stage(block, c, draw(st.integers(1, 3)), **kw))
        c_in = c
    return Spec(resolution=draw(st.integers(1, 96)), stem=stem, stages=tuple(stages),
                head=draw(st.one_of(st.none(), st.integers(1, 128))),
                num_classes=draw(st.one_of(st.just(0), st.integers(1, 100))), in_channels=draw(st.integers(1, 4)),
                act=draw(st.sampled_from(SPEC_ACTIVATIONS)))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(random_specs())
def test_random_specs_build_exactly_the_counted_network(spec):
    with torch.device("meta"):
        model = DeepMADNet(spec)
    total = blocks.cost(spec)
    assert n_params(model) == total.params
    assert measured_macs(model, spec.resolution) == total.macs
    _assert_convs_match(model, spec)
    levels = model.forward_levels(torch.zeros(2, spec.in_channels, spec.resolution, spec.resolution,
                                              device="meta"))
    for f, m in zip(model.feature_info, levels):
        side = -(-spec.resolution // f["reduction"])
        assert tuple(m.shape) == (2, f["num_chs"], side, side)


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(random_specs())
def test_random_specs_run_on_cpu(spec):
    spec = replace(spec, resolution=min(spec.resolution, 40))
    model = DeepMADNet(spec).eval()
    with torch.no_grad():
        y = model(torch.randn(2, spec.in_channels, spec.resolution, spec.resolution))
    assert y.shape == ((2, spec.num_classes) if spec.num_classes else (2, model.num_features))
    assert torch.isfinite(y).all()


# ---------------------------------------------------------------------------------------------- features

def _assert_feature_shapes(model: DeepMADNet, res: int, batch: int = 2, device: str = "cpu") -> None:
    x = torch.randn(batch, model.spec.in_channels, res, res, device=device)
    with torch.no_grad():
        maps = model.eval()(x)
    assert isinstance(maps, list) and len(maps) == len(model.feature_info)
    for f, m in zip(model.feature_info, maps):
        side = math.ceil(res / f["reduction"])
        assert tuple(m.shape) == (batch, f["num_chs"], side, side), f


@pytest.mark.parametrize("name,res", [("resnet18", 225), ("mobilenet_v2", 97), ("deepmad-r18", 97)])
def test_feature_maps_have_announced_shapes(name, res):
    torch.manual_seed(0)
    _assert_feature_shapes(create_model(name, features_only=True), res)


@pytest.mark.parametrize("name,res", [("resnet18", 224), ("deepmad-r18", 225), ("deepmad-29m-288", 289),
                                      ("efficientnet_b0", 225), ("resnet152", 225), ("resnet50", 65),
                                      ("deepmad-b0", 31)])
def test_big_feature_maps_have_announced_shapes_on_meta(name, res):
    _assert_feature_shapes(meta_model(name, features_only=True), res, device="meta")


def test_feature_levels_of_resnet_and_mobilenet():
    """The levels the net.py docstring announces."""
    r = feature_levels(reference("resnet50"))
    assert r.module_name() == ["stem", "stages.0", "stages.1", "stages.2", "stages.3"]
    assert r.reduction() == [2, 4, 8, 16, 32] and r.channels() == [64, 256, 512, 1024, 2048]
    m = feature_levels(reference("mobilenet_v2"))
    assert m.module_name() == ["stages.0", "stages.1", "stages.2", "stages.4", "stages.6"]
    assert m.reduction() == [2, 4, 8, 16, 32] and m.channels() == [16, 24, 32, 96, 320]
    assert [f["index"] for f in m] == [0, 1, 2, 3, 4]
    assert m.channels(3) == 96 and m.reduction(-1) == 32


def test_feature_levels_without_pool_and_with_unit_stem_stride():
    spec = small_spec("basic", stem=Stem(16, 3, 1, pool=True))  # reductions: stem 1, pool 2, stage1 4
    assert feature_levels(spec).reduction() == [1, 2, 4]
    assert feature_levels(spec).module_name() == ["stem", "stages.0", "stages.1"]
    spec = small_spec("basic")  # no pool, stride-1 first stage: stem and stage 0 share reduction 2
    assert feature_levels(spec).module_name() == ["stages.0", "stages.1"]


def test_out_indices_select_levels_in_order_and_truncate():
    full = create_model("resnet18", features_only=True)
    part = create_model("resnet18", features_only=True, out_indices=(3, 1))
    assert part.feature_info.reduction() == [16, 4] and part.feature_info.channels() == [256, 64]
    assert len(part.stages) == 3 and n_params(part) < n_params(full)  # stage 3 is not built
    full.init_weights(zero_init_last=False)
    part.load_state_dict({k: v for k, v in full.state_dict().items() if k in part.state_dict()})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = full.eval()(x), part.eval()(x)
    torch.testing.assert_close(b[0], a[3])
    torch.testing.assert_close(b[1], a[1])
    assert create_model("resnet18", features_only=True, out_indices=(-1,)).feature_info.reduction() == [32]
    stem_only = create_model("resnet18", features_only=True, out_indices=(0,))
    assert len(stem_only.stages) == 0 and stem_only.feature_info.module_name() == ["stem"]


@pytest.mark.parametrize("bad", [(5,), (0, 6), (-6,)])
def test_out_indices_outside_the_network(bad):
    with pytest.raises(ValueError, match=r"outside the network.*levels 0\.\.4 \(reductions 2, 4, 8, 16, 32\)"):
        create_model("resnet18", features_only=True, out_indices=bad)


@pytest.mark.parametrize("bad,match", [((1, 1), "twice"), ((), "at least one"), (("a",), "integer"),
                                       (1.5, "sequence")])
def test_out_indices_bad_values(bad, match):
    with pytest.raises(ValueError, match=f"out_indices: .*{match}"):
        create_model("resnet18", features_only=True, out_indices=bad)


def test_out_indices_need_features_only():
    with pytest.raises(ValueError, match="features_only"):
        create_model("resnet18", out_indices=(1, 2))


def test_classifier_has_feature_info_of_every_level():
    model = meta_model("efficientnet_b0")
    assert model.feature_info == feature_levels(model.spec) and len(model.feature_info) == 5


# ---------------------------------------------------------------------------------------------- init

def _residual_last_bns(model: nn.Module) -> set[str]:
    names = set()
    for name, m in model.named_modules():
        if isinstance(m, BasicBlock):
            names.add(f"{name}.conv2.bn")
        elif isinstance(m, Bottleneck):
            names.add(f"{name}.conv3.bn")
        elif isinstance(m, InvertedResidual) and m.residual:
            names.add(f"{name}.project.bn")
    return names


@pytest.mark.parametrize("block", ["basic", "bottleneck", "mbconv"])
def test_zero_init_of_last_bn_in_residual_branches(block):
    torch.manual_seed(0)
    model = DeepMADNet(small_spec(block))
    zeroed = _residual_last_bns(model)
    assert zeroed
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.bias == 0)
            assert torch.all(m.weight == (0 if name in zeroed else 1)), name
    if block == "mbconv":  # the stride-2 / channel-changing mbconv blocks have no residual: not zeroed
        assert "stages.1.0.project.bn" not in zeroed and "stages.1.1.project.bn" in zeroed
    model.init_weights(zero_init_last=False)
    assert all(torch.all(m.weight == 1) for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_fresh_residual_block_is_its_shortcut():
    torch.manual_seed(0)
    block = BasicBlock(8, 8).eval()
    DeepMADNet.init_weights(block)  # the same init, applied to a lone block
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))


def test_kaiming_and_linear_init():
    torch.manual_seed(0)
    model = DeepMADNet(replace(reference("resnet18"), resolution=32))
    w = model.get_submodule("stages.3.1.conv2.conv").weight  # 512 x 512 x 3 x 3
    assert w.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    assert w.mean().abs().item() < 1e-3
    fc = model.classifier
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.02) and torch.all(fc.bias == 0)
    se = DeepMADNet(small_spec("mbconv")).get_submodule("stages.0.0.se.reduce")
    assert torch.all(se.bias == 0)


def test_same_seed_same_init():
    def build(seed):
        torch.manual_seed(seed)
        return DeepMADNet(small_spec("mbconv")).state_dict()

    a, b, c = build(0), build(0), build(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# ---------------------------------------------------------------------------------------------- forward

@pytest.mark.parametrize("block", ["basic", "bottleneck", "mbconv"])
def test_channels_last_parity(block):
    torch.manual_seed(0)
    model = DeepMADNet(small_spec(block, head=32, resolution=33)).eval()
    model.init_weights(zero_init_last=False)
    x = torch.randn(2, 3, 33, 33)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    assert model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_drop_path_rates_increase_linearly_and_act_in_train_mode_only():
    spec = small_spec("bottleneck")
    torch.manual_seed(0)
    model = DeepMADNet(spec, drop_path_rate=0.3)
    rates = [m.drop_path.p for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    n = len(rates)
    assert rates == pytest.approx([0.3 * i / (n - 1) for i in range(n)])
    plain = DeepMADNet(spec)
    model.init_weights(zero_init_last=False)  # a zero branch would hide the drops
    plain.load_state_dict(model.state_dict())
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), plain.eval()(x))  # eval: no drop
        torch.manual_seed(1)
        dropped = model.train()(x)
        torch.manual_seed(1)
        kept = plain.train()(x)
    assert not torch.allclose(dropped, kept)


def test_drop_path_module():
    dp = DropPath(0.5)
    x = torch.ones(4000, 3, 2, 2)
    assert dp.eval()(x) is x
    torch.manual_seed(0)
    y = dp.train()(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)  # whole samples dropped
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_no_classifier_returns_pooled_features_and_dropout():
    torch.manual_seed(0)
    spec = small_spec("mbconv", head=40)
    model = DeepMADNet(spec, num_classes=0, drop_rate=0.2).eval()
    assert model.drop.p == 0.2 and model.num_features == 40
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model(x)
        assert feats.shape == (2, 40)
        torch.testing.assert_close(feats, model.forward_features(x).mean((2, 3)))
    clf = DeepMADNet(spec, num_classes=7).eval()
    with torch.no_grad():
        assert clf(x).shape == (2, 7) and clf.forward_head(clf.forward_features(x), pre_logits=True).shape == (2, 40)
    clf.reset_classifier(3)
    assert clf(x).shape == (2, 3) and clf.spec.num_classes == 3
    assert n_params(clf) == blocks.cost(clf.spec).params


def test_in_chans_override_and_model_spec():
    model = meta_model("resnet18", in_chans=1, num_classes=10)
    assert model.stem.conv.in_channels == 1 and model.classifier.out_features == 10
    assert (model.spec.in_channels, model.spec.num_classes) == (1, 10)
    assert n_params(model) == blocks.cost(replace(reference("resnet18"), in_channels=1, num_classes=10)).params


def test_activations_follow_the_spec():
    assert set(ACTIVATIONS) == set(SPEC_ACTIVATIONS)
    for act in SPEC_ACTIVATIONS:
        model = DeepMADNet(small_spec("mbconv", act=act))
        kinds = {type(m) for m in model.modules() if isinstance(m, tuple(ACTIVATIONS.values()))}
        assert kinds == {ACTIVATIONS[act]}, act


def test_conv_bn_act_is_same_padded():
    m = ConvBNAct(3, 4, 5, 3)
    assert m(torch.randn(1, 3, 10, 10)).shape == (1, 4, 4, 4)  # ceil(10 / 3)


# ---------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw,match", [(dict(num_classes=-1), "num_classes"), (dict(num_classes=2.0), "num_classes"),
                                      (dict(in_chans=0), "in_chans"), (dict(drop_rate=1.0), "drop_rate"),
                                      (dict(drop_path_rate=-0.1), "drop_path_rate")])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        DeepMADNet(small_spec(), **kw)


def test_not_a_spec():
    with pytest.raises(ValueError, match="expected a deepmad.Spec, got dict"):
        DeepMADNet({"resolution": 224})


def test_spec_altered_after_validation_is_rejected():
    spec = small_spec()
    object.__setattr__(spec, "act", "gelu")
    with pytest.raises(SpecError, match="act: expected one of"):
        DeepMADNet(spec)


def test_spec_too_big_for_memory_fails_before_allocating():
    huge = Spec(224, Stem(8), (Stage("basic", 65_536, 1),), name="huge")  # 3.9e10 params, within spec limits
    with pytest.raises(SpecError, match=r"huge: cannot build: .* GiB of float32 weights, more than this machine"):
        DeepMADNet(huge)


# ---------------------------------------------------------------------------------------------- timm's model API

def test_grad_checkpointing_recomputes_each_stage_and_keeps_the_gradients():
    """set_grad_checkpointing (timm's API): every stage runs again in the backward pass (so its activations
    were not kept), and the gradients are those of the plain model, dropout and stochastic depth included."""
    spec = Spec(32, Stem(8, 3, 2), (Stage("basic", 8, 2, 1), Stage("bottleneck", 16, 2, 2, mid=8),
                                    Stage("mbconv", 24, 1, 2, 3, expand=4.0, se=0.25)), num_classes=5)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    grads, calls = [], []
    for enable in (False, True):
        torch.manual_seed(0)
        m = create_model(spec, drop_rate=0.2, drop_path_rate=0.2)
        m.set_grad_checkpointing(enable)
        n = [0]

        def counted(forward):
            def run(*a):
                n[0] += 1
                return forward(*a)
            return run

        for stage in m.stages:
            stage.forward = counted(stage.forward)  # (checkpoint's recomputation runs no module hooks)
        torch.manual_seed(1)
        torch.nn.functional.cross_entropy(m.train()(x), y).backward()
        grads.append({k: p.grad.clone() for k, p in m.named_parameters()})
        calls.append(n[0])
    assert calls == [3, 6]  # each of the 3 stages ran twice with checkpointing
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-7) for k in grads[0])
    assert any(float(g.abs().max()) > 0 for g in grads[0].values())


def test_timm_model_contract():
    """What timm's train.py and timm.data.resolve_data_config read from a model."""
    import re

    m = create_model("resnet18", num_classes=10, in_chans=1)
    cfg = m.pretrained_cfg
    assert m.default_cfg is cfg
    assert cfg["input_size"] == (1, 224, 224) and cfg["num_classes"] == 10 and cfg["pool_size"] == (7, 7)
    assert len(cfg["mean"]) == len(cfg["std"]) == 1 and cfg["crop_pct"] == 0.875
    assert m.get_submodule(cfg["first_conv"]).in_channels == 1
    assert m.get_submodule(cfg["classifier"]) is m.get_classifier()
    assert m.num_features == m.head_hidden_size == 512 == m.classifier.in_features
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        feats = m.eval().forward_features(x)
        assert torch.equal(m.forward_head(feats), m(x))
        assert m.forward_head(feats, pre_logits=True).shape == (2, 512)
    m.reset_classifier(3, global_pool="avg")
    assert m.pretrained_cfg["num_classes"] == 3 == m.num_classes and m.classifier.out_features == 3
    with pytest.raises(ValueError, match="global_pool: a deepmad model pools by average"):
        m.reset_classifier(3, global_pool="max")
    g = m.group_matcher()
    names = [n for n, _ in m.named_parameters()]
    stem = [n for n in names if re.match(g["stem"], n)]
    blocks = {re.match(g["blocks"], n).groups() for n in names if re.match(g["blocks"], n)}
    assert stem and all(n.startswith("stem.") for n in stem)
    assert blocks == {(str(i), str(d)) for i in range(4) for d in range(2)}  # resnet18: 4 stages x 2 blocks
    assert {re.match(m.group_matcher(coarse=True)["blocks"], n).groups() for n in names
            if n.startswith("stages.")} == {(str(i),) for i in range(4)}
    assert create_model("deepmad-29m-288").pretrained_cfg["input_size"] == (3, 288, 288)
