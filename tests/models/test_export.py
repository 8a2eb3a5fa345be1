"""ONNX and TorchScript export: parity with PyTorch (onnxruntime), dynamic axes, atomic writes, CLI errors."""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from deepmad import cli  # noqa: E402
from deepmad.models import create_model, export  # noqa: E402
from deepmad.models.export import ExportError, compare, export_onnx, export_torchscript, randomize_  # noqa: E402
from deepmad.core.spec import Spec, Stage, Stem, save  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

# a small MBConv network with SE and a head conv; SiLU as EfficientNet
MBSE = Spec(48, Stem(8, 3, 2), (Stage("mbconv", 8, 1, 1, 3, expand=1.0, se=0.25),
                                Stage("mbconv", 16, 2, 2, 5, expand=4.0, se=0.25),
                                Stage("mbconv", 24, 1, 2, 3, expand=6.0, se=0.25)),
            head=32, num_classes=5, act="silu", name="tiny-mbse")
# a small ResNet-like network (max-pool stem, basic and grouped bottleneck stages): levels at 2, 4, 8, 16
RESLIKE = Spec(64, Stem(8, 3, 2, pool=True), (Stage("basic", 8, 1, 1), Stage("bottleneck", 16, 1, 2, mid=8, groups=2),
                                              Stage("basic", 24, 2, 2)), num_classes=4, name="tiny-res")


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics and affine parameters (the builder zero-inits the last BN of every residual
    branch, which would make the branches vanish), so a wrong export of any layer shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.1, generator=g)
    return model.eval()


def ort_run(path, x: torch.Tensor) -> list:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})


def assert_parity(model, path, x: torch.Tensor) -> None:
    with torch.no_grad():
        y = model(x)
    ys = y if isinstance(y, list) else [y]
    got = ort_run(path, x)
    assert len(got) == len(ys)
    for a, b in zip(got, ys):
        assert tuple(a.shape) == tuple(b.shape)
        assert float(b.abs().max()) > 1e-3  # the comparison is not between two zero tensors
        assert float((torch.from_numpy(a) - b).abs().max()) <= 1e-4


def dims(path) -> list[list]:
    """Each graph input's and output's dims: an int when fixed, the axis name when dynamic."""
    g = onnx.load(str(path), load_external_data=False).graph
    return [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*g.input, *g.output)]


def test_resnet18_onnx_dynamic_batch(tmp_path):
    model = randomize(create_model("resnet18"))
    path = tmp_path / "r18.onnx"
    r = export_onnx(model, path, 64)
    assert r.output_names == ("logits",) and len(r.checks) == 2 and all(c.ok for c in r.checks)
    assert [(c.batch, c.height) for c in r.checks] == [(1, 64), (3, 64)]
    assert dims(path) == [["batch", 3, 64, 64], ["batch", 1000]]
    for b in (1, 4):
        assert_parity(model, path, torch.randn(b, 3, 64, 64, generator=torch.Generator().manual_seed(b)))
    assert sorted(os.listdir(tmp_path)) == ["r18.onnx"]  # no temporary file left


def test_mbconv_se_onnx_and_dynamic_hw(tmp_path):
    model = randomize(create_model(MBSE))
    path = tmp_path / "mb.onnx"
    r = export_onnx(model, path, dynamic_hw=True)  # resolution: the spec's (48)
    assert r.resolution == 48 and len(r.checks) == 3  # batch 1, batch 3, and a second non-square size
    assert dims(path) == [["batch", 3, "height", "width"], ["batch", 5]]
    g = torch.Generator().manual_seed(0)
    for shape in ((1, 3, 48, 48), (2, 3, 37, 61), (4, 3, 96, 80)):
        assert_parity(model, path, torch.randn(*shape, generator=g))


def test_features_only_onnx_has_one_output_per_level(tmp_path):
    model = randomize(create_model(RESLIKE, features_only=True, out_indices=(1, 2, 3)))
    path = tmp_path / "backbone.onnx"
    r = export_onnx(model, path, dynamic_hw=True)
    assert r.output_names == ("level1", "level2", "level3")
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    maps = ort_run(path, x)
    expected = [(3, f["num_chs"], 64 // f["reduction"], 64 // f["reduction"]) for f in model.feature_info]
    assert [m.shape for m in maps] == expected == [(3, 8, 16, 16), (3, 16, 8, 8), (3, 24, 4, 4)]
    assert_parity(model, path, x)
    assert_parity(model, path, torch.randn(1, 3, 50, 70, generator=torch.Generator().manual_seed(4)))


def test_static_hw_onnx_rejects_other_sizes(tmp_path):
    model = randomize(create_model(RESLIKE))
    path = tmp_path / "static.onnx"
    export_onnx(model, path)
    assert dims(path)[0] == ["batch", 3, 64, 64]
    with pytest.raises(Exception):  # onnxruntime checks the fixed H, W
        ort_run(path, torch.randn(1, 3, 32, 32))


def test_torchscript_round_trip(tmp_path):
    model = randomize(create_model(MBSE))
    path = tmp_path / "mb.pt"
    r = export_torchscript(model, path)
    assert r.format == "torchscript" and all(c.ok for c in r.checks)
    loaded = torch.jit.load(str(path))
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    backbone = randomize(create_model(RESLIKE, features_only=True))
    export_torchscript(backbone, tmp_path / "bb.pt", 64)
    with torch.no_grad():
        got, want = torch.jit.load(str(tmp_path / "bb.pt"))(x[:, :, :, :]), backbone(x)
    assert len(got) == len(want) == 4 and all(torch.equal(a, b) for a, b in zip(got, want))


def test_existing_file_is_kept_without_force(tmp_path):
    model = create_model(RESLIKE)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"keep me")
    with pytest.raises(ExportError, match="file exists; use force=True"):
        export_onnx(model, path)
    assert path.read_bytes() == b"keep me"
    export_onnx(model, path, force=True)
    assert onnx.load(str(path)).graph.output[0].name == "logits"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_failed_check_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "RTOL", -1.0)  # every comparison fails
    model = create_model(RESLIKE)
    for fn, name in ((export_onnx, "m.onnx"), (export_torchscript, "m.pt")):
        with pytest.raises(ExportError, match="differs from PyTorch.*nothing was written"):
            fn(model, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_bad_input_errors(tmp_path, monkeypatch):
    model = create_model(RESLIKE)
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(model, tmp_path)
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx(model, tmp_path / "no" / "m.onnx")
    with pytest.raises(ExportError, match="opset: expected an integer in 9..20"):
        export_onnx(model, tmp_path / "m.onnx", opset=3)
    with pytest.raises(ExportError, match="resolution: expected an integer >= 1"):
        export_onnx(model, tmp_path / "m.onnx", 0)
    with torch.device("meta"):
        meta = create_model(RESLIKE)
    with pytest.raises(ExportError, match="meta device"):
        export_onnx(meta, tmp_path / "m.onnx")
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # onnx not installed
    with pytest.raises(ExportError, match=r"pip install 'deepmad\[export\]'"):
        export_onnx(model, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------- CLI

def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, text: str) -> None:
    assert code == 2 and out == ""
    assert err.startswith("deepmad: error: ") and err.count("\n") == 1 and text in err, err


def test_cli_export_writes_both_files(tmp_path, capsys):
    spec_file = tmp_path / "net.yaml"
    save(MBSE, spec_file)
    onnx_path, ts_path = tmp_path / "net.onnx", tmp_path / "net.pt"
    code, out, err = run(capsys, "export", str(spec_file), "--onnx", str(onnx_path), "--torchscript",
                         str(ts_path), "--dynamic-hw", "--num-classes", "3")
    assert code == 0, err
    assert out.count(": ok") == 5 and "FAILED" not in out  # 3 ONNX checks, 2 TorchScript checks
    assert dims(onnx_path) == [["batch", 3, "height", "width"], ["batch", 3]]
    assert torch.jit.load(str(ts_path))(torch.zeros(1, 3, 48, 48)).shape == (1, 3)
    code, out, err = run(capsys, "export", str(spec_file), "--features-only", "--out-indices", "0,2", "--onnx",
                         str(tmp_path / "bb.onnx"), "--resolution", "32")
    assert code == 0, err
    assert [o.name for o in onnx.load(str(tmp_path / "bb.onnx")).graph.output] == ["level0", "level2"]


def test_cli_export_errors(tmp_path, capsys):
    existing = tmp_path / "x.onnx"
    existing.write_bytes(b"old")
    assert_one_line_error(*run(capsys, "export", "resnet18", "--onnx", str(existing)),
                          "file exists; use --force to overwrite it")
    assert existing.read_bytes() == b"old"
    assert_one_line_error(*run(capsys, "export", "no-such-net", "--onnx", str(tmp_path / "y.onnx")),
                          "unknown model 'no-such-net'; known models: deepmad-r18")
    assert_one_line_error(*run(capsys, "export", "resnet18"), "give -o FILE (.onnx or .pt), --onnx FILE and/or --torchscript FILE")
    assert_one_line_error(*run(capsys, "export", "resnet18", "--onnx", str(tmp_path / "y.onnx"), "--out-indices",
                               "1"), "--out-indices: applies to --features-only")
    assert_one_line_error(*run(capsys, "export", "resnet18", "--features-only", "--out-indices", "9", "--onnx",
                               str(tmp_path / "y.onnx")), "out_indices: level 9 is outside the network")
    assert_one_line_error(*run(capsys, "export", "resnet18", "--onnx", str(tmp_path / "no" / "y.onnx")),
                          "does not exist")
    assert sorted(os.listdir(tmp_path)) == ["x.onnx"]


# ---------------------------------------------------------------------------------------------- a check that can fail

def _tamper_second_conv(path: str, factor: float) -> None:
    """Scale the weight of the second Conv node of an ONNX file (the first conv of the first residual branch)."""
    from onnx import numpy_helper

    g = onnx.load(path)
    convs = [n for n in g.graph.node if n.op_type == "Conv"]
    init = {t.name: t for t in g.graph.initializer}
    t = init[convs[1].input[1]]
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * factor, t.name))
    onnx.save(g, path)


def _wrong_exporter(monkeypatch, factor: float = 1.5):
    real = torch.onnx.export

    def export_then_tamper(model, args, f, *a, **kw):
        real(model, args, f, *a, **kw)
        _tamper_second_conv(f, factor)

    monkeypatch.setattr(export.torch.onnx, "export", export_then_tamper)


def test_check_catches_a_wrong_onnx_graph_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """A graph whose first residual branch has a wrong weight: the command fails (exit 2, one line with the
    largest difference) and leaves no file. On a freshly built model the same fault is invisible (the last
    BN of each residual branch starts at zero): that is why the check runs on random weights."""
    spec_file = tmp_path / "net.yaml"
    save(RESLIKE, spec_file)
    _wrong_exporter(monkeypatch)
    fresh = export_onnx(create_model(RESLIKE), tmp_path / "fresh.onnx")
    assert all(c.ok for c in fresh.checks) and fresh.checks[0].rel_diff < 1e-5  # blind
    (tmp_path / "fresh.onnx").unlink()
    code, out, err = run(capsys, "export", str(spec_file), "-o", str(tmp_path / "net.onnx"), "--quiet")
    assert_one_line_error(code, out, err, "check: the ONNX file differs from PyTorch at input 1x64x64: max |diff|")
    assert "of the output's scale (<= 0.0001)" in err and "FAILED; nothing was written" in err
    assert os.listdir(tmp_path) == ["net.yaml"]


def test_check_is_relative_and_compares_the_argmax():
    e = [torch.tensor([[100.0, 0.0, -50.0], [1.0, 2.0, 3.0]])]
    near = compare(e, [e[0] + 5e-3], ["logits"], 2, 8, 8)  # 5e-5 of the scale 100
    assert near.ok and near.max_abs_diff == pytest.approx(5e-3, rel=1e-3) and near.rel_diff == pytest.approx(5e-5, rel=1e-3)
    assert near.argmax_agree == 2 == near.rows
    swapped = e[0].clone()
    swapped[1] = torch.tensor([1.0, 2.0 + 1.5e-2, 3.0 - 1.5e-2])  # within 1.5e-4 of the scale, argmax kept
    assert not compare(e, [swapped], ["logits"], 2, 8, 8).ok  # 1.5e-4 > RTOL
    flipped = e[0].clone()
    flipped[1] = torch.tensor([1.0, 3.0, 3.0 - 1e-3])
    c = compare(e, [flipped], ["logits"], 2, 8, 8)
    assert c.argmax_agree == 1 and not c.ok
    maps = compare([torch.ones(1, 4, 2, 2)], [torch.ones(1, 4, 2, 2)], ["level1"], 1, 8, 8)
    assert maps.ok and maps.argmax_agree is None
    assert not compare(e, [torch.full((2, 3), float("nan"))], ["logits"], 2, 8, 8).ok


def test_randomize_gives_every_layer_a_say():
    torch.manual_seed(0)
    model = create_model(RESLIKE)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fresh = model.eval()(x)
        randomize_(model, seed=3)
        y = model(x)
        assert torch.equal(y, randomize_(create_model(RESLIKE), seed=3).eval()(x))  # seeded
    assert 10 * float(fresh.abs().max()) < float(y.abs().max())  # the fresh logits are near zero
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert float(m.weight.detach().min()) >= 0.1 and float(m.running_var.min()) >= 0.5  # no branch switched off


def test_cli_exports_a_training_checkpoint(tmp_path, capsys):
    """--checkpoint: the trained weights (here: any weights saved the way deepmad train saves them)."""
    from deepmad.core.spec import to_dict
    from deepmad.train import checkpoint as ck

    spec = Spec(32, Stem(8, 3, 2), (Stage("basic", 8, 1, 2), Stage("basic", 16, 1, 2)), num_classes=3,
                in_channels=1, name="tiny-gray")
    trained = randomize_(create_model(spec), seed=7)
    ck.save_atomic({"format": ck.FORMAT, "version": ck.VERSION, "spec": to_dict(spec),
                    "model": trained.state_dict(), "epoch": 4}, tmp_path / "best.pt")
    code, out, err = run(capsys, "export", "--checkpoint", str(tmp_path / "best.pt"), "-o", str(tmp_path / "m.onnx"),
                         "-o", str(tmp_path / "m.pt"))
    assert code == 0, err
    assert f"weights of {tmp_path / 'best.pt'} (epoch 4)" in out and "input 1x32x32" in out
    assert out.count(": ok") == 4
    assert "m.onnx: exporting" in err and "m.pt: checking with torch.jit.load" in err  # status lines
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = trained.eval()(x)
    assert torch.allclose(torch.from_numpy(ort_run(tmp_path / "m.onnx", x)[0]), want, rtol=1e-4, atol=1e-5)
    code, out, err = run(capsys, "export", "resnet18", "--checkpoint", str(tmp_path / "best.pt"), "-o",
                         str(tmp_path / "r.onnx"))
    assert_one_line_error(code, out, err, "its weights do not fit resnet18")
    code, out, err = run(capsys, "export", "resnet18", "-o", str(tmp_path / "r.txt"))
    assert_one_line_error(code, out, err, "-o " + str(tmp_path / "r.txt") + ": expected a .onnx (ONNX) or .pt")
