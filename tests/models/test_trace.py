"""``deepmad.models.trace`` and ``deepmad analyze --torch``: entropy and rho of any nn.Module.

The networks below are written by hand, torchvision-style (not with deepmad's builder), and each is also
written as a deepmad Spec with the same structure: tracing the module must give the spec's analysis (params
and MACs exactly, entropy and rho to 1e-9). Small inputs keep the file fast.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from deepmad import cli  # noqa: E402
from deepmad.core import theory  # noqa: E402
from deepmad.api import analyze, analyze_spec  # noqa: E402
from deepmad.core.blocks import Unit  # noqa: E402
from deepmad.core.reference import reference  # noqa: E402
from deepmad.core.spec import Spec, Stage, Stem  # noqa: E402
from deepmad.models.trace import TraceError, load_module, text, to_json, trace  # noqa: E402

RES = 64


# ---------------------------------------------------------------------------------------------- ResNeXt

class Bottleneck(nn.Module):
    """torchvision's ResNeXt bottleneck: 1x1 -> grouped 3x3 (stride) -> 1x1, projection ``downsample``."""

    def __init__(self, c_in: int, c: int, mid: int, stride: int, groups: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


RESNEXT = [  # (channels, mid, depth, stride, groups, kernel)
    (64, 32, 2, 1, 8, 3), (128, 64, 2, 2, 8, 3), (256, 128, 2, 2, 32, 5), (256, 128, 1, 2, 16, 3)]


class ResNeXt(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, 2, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, c = [], 32
        for ch, mid, depth, stride, groups, k in RESNEXT:
            layers.append(nn.Sequential(*[Bottleneck(c if d == 0 else ch, ch, mid, stride if d == 0 else 1,
                                                     groups, k) for d in range(depth)]))
            c = ch
        self.layers = nn.ModuleList(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        if not torch.isfinite(x).all():  # data-dependent control flow: torch.fx cannot trace this
            raise ValueError("non-finite input")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in self.layers:
            x = layer(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnext_spec(num_classes: int = 10) -> Spec:
    stages = [Stage("bottleneck", ch, depth, stride, k, mid=mid, groups=g) for ch, mid, depth, stride, g, k in RESNEXT]
    return Spec(RES, Stem(32, 5, 2, pool=True), stages, num_classes=num_classes, name="resnext")


# ---------------------------------------------------------------------------------------------- MBConv

class SE(nn.Module):
    """Squeeze-excitation with Linear layers (pool, flatten, fc, fc, view): the same counts as 1x1 convs."""

    def __init__(self, c: int, squeeze: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, squeeze), nn.Linear(squeeze, c)

    def forward(self, x):
        s = x.mean((2, 3))
        s = torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(s))))
        return x * s.view(x.shape[0], -1, 1, 1)


class MBConv(nn.Module):
    """[1x1 expand] -> depthwise k x k (stride) -> SE -> 1x1 project (linear); residual when shapes match."""

    def __init__(self, c_in: int, c: int, expand: float, k: int, stride: int, se: float) -> None:
        super().__init__()
        mid = round(c_in * expand)
        self.expand = None
        if mid != c_in:
            self.expand = nn.Sequential(nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid))
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False),
                                nn.BatchNorm2d(mid), nn.SiLU())
        self.se = SE(mid, max(1, int(c_in * se)))
        self.project = nn.Sequential(nn.Conv2d(mid, c, 1, bias=False), nn.BatchNorm2d(c))
        self.residual = stride == 1 and c_in == c

    def forward(self, x):
        y = x
        if self.expand is not None:
            y = self.expand(y)
            y = y * torch.sigmoid(y)  # SiLU written out: a product that is not a gate
        y = self.project(self.se(self.dw(y)))
        return x + y if self.residual else y


MBCONV = [  # (channels, expand, kernel, stride, depth)
    (16, 1, 3, 1, 1), (24, 4, 3, 2, 2), (32, 4, 5, 2, 2), (48, 6, 3, 1, 2), (64, 6, 5, 2, 2), (96, 6, 3, 1, 1)]


class MBNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.SiLU())
        blocks, c = [], 24
        for ch, t, k, s, depth in MBCONV:
            for d in range(depth):
                blocks.append(MBConv(c, ch, t, k, s if d == 0 else 1, 0.25))
                c = ch
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(c, 320, 1, bias=False), nn.BatchNorm2d(320), nn.SiLU())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(320, num_classes))

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(x.mean((2, 3)))


def mbnet_spec() -> Spec:
    stages = [Stage("mbconv", ch, depth, s, k, expand=float(t), se=0.25) for ch, t, k, s, depth in MBCONV]
    return Spec(RES, Stem(24, 3, 2), stages, head=320, num_classes=10, act="silu", name="mbnet")


# ---------------------------------------------------------------------------------------------- helpers

def assert_same(t, a) -> None:
    """A traced analysis equals a spec's: counts exactly, entropy and rho to 1e-9, the same rows."""
    assert (t.params, t.flops, t.layers) == (a.params, a.flops, a.layers)
    for k in ("entropy", "rho", "rho_max", "penalty", "objective"):
        assert getattr(t, k) == pytest.approx(getattr(a, k), rel=1e-9, abs=1e-12), k
    assert t.alpha == a.alpha and t.beta == a.beta and t.classifier == a.classifier
    assert len(t.rows) == len(a.rows)
    for r, s in zip(t.rows, a.rows):
        assert (r.index, r.name, r.block, r.channels, r.mid, r.kernel, r.depth, r.stride, r.resolution,
                r.layers) == (s.index, s.name, s.block, s.channels, s.mid, s.kernel, s.depth, s.stride,
                              s.resolution, s.layers), r.name
        assert r.entropy == pytest.approx(s.entropy, rel=1e-9) and r.rho == pytest.approx(s.rho, rel=1e-9)


def roles(t) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for x in t.skipped:
        out.setdefault(x.role, []).append(x.name)
    return out


# ---------------------------------------------------------------------------------------------- tests

def test_resnext_matches_its_spec():
    torch.manual_seed(0)
    model = ResNeXt()
    with pytest.raises(torch.fx.proxy.TraceError):  # the data-dependent check: fx cannot trace it
        torch.fx.symbolic_trace(model)
    t = trace(model, RES)
    spec = resnext_spec()
    assert_same(t, analyze(spec))
    assert t.params == sum(p.numel() for p in model.parameters())
    r = roles(t)
    projections = [f"layers.{i}.0.downsample.0" for i in range(len(RESNEXT))]
    assert r == {"shortcut": projections, "classifier": ["fc"]}
    assert all("bypasses 3 main-path layers" in x.reason for x in t.skipped if x.role == "shortcut")
    grouped = [x for x in t.counted if x.groups > 1]
    assert [x.width for x in grouped[:2]] == [32 * 9 / 8] * 2  # c·k²/g
    assert t.counted[0].name == "conv1" and len(t.units) == 1 + sum(d for _, _, d, *_ in RESNEXT)
    assert_same(trace(model, RES, classifier=False), analyze(spec, classifier=False))


def test_mbconv_matches_its_spec():
    torch.manual_seed(0)
    model = MBNet()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = trace(model, RES)
    assert model.training and all(m.training for m in model.modules())  # modes restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    spec = mbnet_spec()
    assert_same(t, analyze(spec))
    r = roles(t)
    assert r["classifier"] == ["classifier.1"]
    n_blocks = sum(d for *_, d in MBCONV)
    assert len(r["se"]) == 2 * n_blocks and set(r) == {"se", "classifier"}
    assert all(x.kind == "linear" for x in t.skipped)
    assert t.head is not None and t.head.channels == 320
    assert [r.depth for r in t.stages] == [d for *_, d in MBCONV]
    alpha = tuple(range(1, 1 + t.scales))
    assert_same(trace(model, RES, alpha=alpha, beta=3.0), analyze_spec(spec, alpha, 3.0))


def test_vgg_like_plain_network():
    """No shortcuts: every conv is a unit of its own; the three Linear layers are the classifier."""
    cfg = [(16, 2), (32, 2), (64, 3)]  # (channels, convs) per pooling stage
    feats, c, r, units, macs = [], 3, 32, [], 0
    for ch, n in cfg:
        for _ in range(n):
            feats += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(inplace=True)]
            units.append(Unit("", (c * 9,), ch, r, 0))
            macs += ch * c * 9 * r * r
            c = ch
        feats.append(nn.MaxPool2d(2))
        r //= 2
    model = nn.Sequential(*feats, nn.Flatten(), nn.Linear(c * r * r, 128), nn.ReLU(), nn.Dropout(),
                          nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 7))
    t = trace(model, 32)
    assert [(u.widths, u.channels, u.resolution) for u in t.units] == [(u.widths, u.channels, u.resolution)
                                                                        for u in units]
    assert t.entropy == pytest.approx(theory.entropy(units), rel=1e-12)
    assert (t.rho, t.rho_max) == (pytest.approx(theory.rho(units)), pytest.approx(theory.rho_max(units)))
    assert t.layers == 7 and t.params == sum(p.numel() for p in model.parameters())
    assert t.flops == macs + (c * r * r * 128 + 128 * 128 + 128 * 7)
    linears = [(n, m) for n, m in model.named_children() if isinstance(m, nn.Linear)]
    assert roles(t) == {"classifier": [n for n, _ in linears]}
    assert [(s.channels, s.depth, s.resolution) for s in t.stages] == [(16, 1, 32), (32, 2, 16), (64, 3, 8)]
    nc = trace(model, 32, classifier=False)
    assert nc.params == t.params - sum(p.numel() for _, m in linears for p in m.parameters())
    assert nc.flops == macs


def test_report_text_and_json():
    t = trace(ResNeXt(), RES, name="my-resnext")
    out = text(t)
    assert out.startswith(f"my-resnext: traced at {RES}x{RES} input (3 channels), 4 stages, 5 down-sampling")
    for row in t.rows:
        assert any(line.startswith(row.name + " ") for line in out.splitlines())
    assert "skipped    4 shortcut, 1 classifier" in out
    assert "layers.1.0.downsample.0" in out and "shortcut: 1x1 projection" in out
    assert out.count("\n  ") >= len(t.counted) + len(t.skipped)
    j = json.loads(json.dumps(to_json(t)))
    assert j["params"] == t.params and j["input"] == [RES, RES] and len(j["counted"]) == t.layers
    assert {x["role"] for x in j["skipped"]} == {"shortcut", "classifier"}
    assert all(x["reason"] for x in j["skipped"]) and not any(x["reason"] for x in j["counted"])


def test_non_square_input():
    t = trace(MBNet(), (64, 48))
    assert t.input == (64, 48)
    assert t.counted[-1].out_size == (4, 3) and t.head.resolution == pytest.approx(math.sqrt(12))
    assert t.stem.resolution == pytest.approx(math.sqrt(32 * 24)) and "non-square" in text(t)
    table = text(t).split("\n\n")[1]  # the per-stage table shows each map as h x w
    assert "32x24" in table.splitlines()[2] and "4x3" in table.splitlines()[-1]
    square = trace(MBNet(), 56)  # same channels and widths: only log(r²) differs, by log(h·w / 56²)
    assert t.layers == square.layers and t.stem.entropy == pytest.approx(
        square.stem.entropy * math.log(32 * 24 * 24) / math.log(28 * 28 * 24))


@pytest.mark.parametrize("kwargs,match", [
    (dict(resolution=0), "resolution"),
    (dict(resolution=(32, 32, 3)), "resolution"),
    (dict(in_chans=0), "in_chans"),
    (dict(alpha=(1, 1)), r"alpha: expected 5 weights"),
    (dict(beta=-1), "beta"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(TraceError, match=match):
        trace(ResNeXt(), **{"resolution": RES, **kwargs})


def test_bad_models():
    with pytest.raises(TraceError, match="expected a torch.nn.Module"):
        trace("resnet50")
    fixed = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    with pytest.raises(TraceError, match=r"at 64x64 .*failed: RuntimeError: .*shapes cannot be multiplied"):
        trace(fixed, 64)
    assert trace(fixed, 32).layers == 1
    with pytest.raises(TraceError, match="no Conv2d or Linear"):
        trace(nn.Sequential(nn.MaxPool2d(2)), 32)
    with pytest.raises(TraceError, match="failed: RuntimeError: .*channels"):
        trace(ResNeXt(), RES, in_chans=1)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_is_refused():
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    with pytest.raises(TraceError, match="TorchScript module .* pass the eager nn.Module"):
        trace(scripted, 32)


# ---------------------------------------------------------------------------------------------- the builder

try:
    from deepmad.models import create_model
except ImportError:  # the builder (deepmad.models.factory) is not there
    create_model = None


@pytest.mark.skipif(create_model is None, reason="deepmad.models.create_model is not available")
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "deepmad-mb"])
def test_built_models_trace_to_their_spec(name):
    from deepmad.models import resolve_spec

    spec = dataclasses.replace(resolve_spec(name), resolution=64)
    torch.manual_seed(0)
    t = trace(create_model(spec), 64)
    assert_same(t, analyze(as_traced(spec)))


def as_traced(spec: Spec) -> Spec:
    """The spec as a trace can see it: a stride-1 stage of the same blocks as the stage before it continues
    that stage (trace.py, point 5), which only changes the depths of the penalty."""
    stages: list[Stage] = []
    for s in spec.stages:
        p = stages[-1] if stages else None
        same = ("block", "channels", "kernel", "mid", "expand", "groups", "se")
        if p is not None and s.stride == 1 and all(getattr(s, f) == getattr(p, f) for f in same):
            stages[-1] = dataclasses.replace(p, depth=p.depth + s.depth)
        else:
            stages.append(s)
    return dataclasses.replace(spec, stages=tuple(stages))


@pytest.mark.skipif(create_model is None, reason="deepmad.models.create_model is not available")
def test_built_backbone_traces_to_its_spec():
    """features_only: several outputs, no head and no classifier: the deepest map ends the main path."""
    spec = dataclasses.replace(reference("mobilenet_v2"), resolution=64)
    t = trace(create_model(spec, features_only=True), 64)
    assert_same(t, analyze(dataclasses.replace(spec, head=None, num_classes=0)))


# ---------------------------------------------------------------------------------------------- CLI

MODULE = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))

def build():
    return Net()

INSTANCE = Net()
NUMBER = 3

def broken():
    raise RuntimeError("no weights here")

def not_a_module():
    return 42
"""


@pytest.fixture
def netfile(tmp_path, monkeypatch):
    """A user's module in the current directory, imported under a name unique to the test."""
    name = f"usernet_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    (tmp_path / f"{name}_bad.py").write_text("import nosuchdependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)
    assert str(tmp_path) not in sys.path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_torch_json(capsys, netfile):
    code, out, err = run(capsys, "analyze", "--torch", f"{netfile}:build", "--resolution", "32", "--json")
    assert code == 0, err
    j = json.loads(out)
    model = load_module(f"{netfile}:build")
    t = trace(model, 32)
    assert (j["params"], j["flops"], j["layers"]) == (t.params, t.flops, 1) == (8 * 27 + 8 + 36, 8 * 27 * 256 + 32, 1)
    assert j["entropy"] == pytest.approx(t.entropy) and j["name"] == f"{netfile}:build"
    assert [x["role"] for x in j["skipped"]] == ["classifier"]


def test_cli_torch_text_and_options(capsys, netfile, tmp_path):
    code, out, err = run(capsys, "analyze", "--torch", f"{netfile}:INSTANCE", "--resolution", "32x16",
                         "--in-chans", "3", "--no-classifier", "--alpha", "2", "--beta", "1")
    assert code == 0, err
    assert out.startswith(f"{netfile}:INSTANCE: traced at 32x16 input") and "no classifier" in out
    assert "alpha 2, beta 1" in out
    code, out, err = run(capsys, "analyze", "--torch", f"{tmp_path / netfile}.py:build", "--resolution", "32")
    assert code == 0 and "classifier: after the global pooling" in out, err


@pytest.mark.parametrize("argv,match", [
    (["--torch", "nosuchmodule_xyz:build"], "cannot import module 'nosuchmodule_xyz'"),
    (["--torch", "{m}"], "expected MODULE:CALLABLE"),
    (["--torch", "{m}_bad:build"], r"importing '{m}_bad' failed: No module named 'nosuchdependency_xyz'"),
    (["--torch", "missing/net.py:build"], "no such file missing/net.py"),
    (["--torch", "{m}:missing"], "has no attribute 'missing'"),
    (["--torch", "{m}:NUMBER"], "NUMBER is a int, expected an nn.Module"),
    (["--torch", "{m}:not_a_module"], r"not_a_module\(\) returned a int"),
    (["--torch", "{m}:broken"], r"calling broken\(\) failed: RuntimeError: no weights here"),
    (["--torch", "{m}:build", "--resolution", "8", "--in-chans", "2"], "at 8x8 .*failed: RuntimeError"),
    (["--torch", "{m}:build", "--resolution", "0"], "--resolution: expected"),
    (["--torch", "{m}:build", "--resolution", "100000"], "resolution: 100000 is above 4096"),
    (["--torch", "{m}:build", "--alpha", "1,1"], "alpha: expected 1 weights"),
    (["--torch", "{m}:build", "resnet50"], "not both"),
    (["resnet50", "--resolution", "32"], "--resolution: applies to --torch"),
    ([], "give a network"),
])
def test_cli_errors(capsys, netfile, argv, match):
    import re

    code, out, err = run(capsys, "analyze", *[a.replace("{m}", netfile) for a in argv])
    match = match.replace("{m}", netfile)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("deepmad: error: ") and re.search(match, err), err


def test_cli_without_torch(capsys, netfile, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    code, out, err = run(capsys, "analyze", "--torch", f"{netfile}:build")
    assert code == 2 and "pip install 'deepmad[torch]'" in err
