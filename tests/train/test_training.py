"""Training runs on the bundled data: learning, files, evaluation, bit-exact resume after SIGTERM,
atomic checkpoints, the schedule and the optimizer groups."""
from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from deepmad import cli  # noqa: E402
from deepmad.train import checkpoint as ck  # noqa: E402
from deepmad.train.config import TrainConfig  # noqa: E402
from deepmad.train.engine import param_groups, train  # noqa: E402
from deepmad.train.schedule import Schedule  # noqa: E402

SPEC = """deepmad_spec: 1
resolution: 16
stem: {channels: 16, kernel: 3, stride: 1}
stages:
  - {block: basic, channels: 16, depth: 1, stride: 1}
  - {block: basic, channels: 32, depth: 1, stride: 2}
  - {block: basic, channels: 64, depth: 1, stride: 2}
num_classes: 10
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    p = tmp_path_factory.mktemp("spec") / "net.yaml"
    p.write_text(SPEC)
    return str(p)


@pytest.fixture(scope="module")
def mnist_run(spec, tmp_path_factory):
    """2 epochs on the 4,000 bundled training digits, at 16 px, through the command line."""
    out = tmp_path_factory.mktemp("runs") / "mnist"
    code = cli.main(["train", spec, "--data", "builtin:mnist", "--epochs", "2", "--batch-size", "64", "--lr", "0.4",
                     "--recipe", "none", "--resolution", "16", "--out", str(out), "--progress", "off",
                     "--log-every", "10", "--json"])
    assert code == 0
    return out


def test_mnist_run_learns(mnist_run):
    s = json.loads((mnist_run / "summary.json").read_text())
    assert s["best"]["top1"] > 0.5  # chance is 0.1
    assert s["epochs"] == 2 and s["steps"] == 2 * (4000 // 64)
    assert s["params"] == 78042  # = deepmad.api.analyze of the spec with 10 classes


def test_run_files(mnist_run):
    for f in ("last.pt", "best.pt", "metrics.jsonl", "curves.png", "summary.json", "config.json"):
        assert (mnist_run / f).stat().st_size > 0, f
    assert (mnist_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recs = [json.loads(line) for line in (mnist_run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in recs if r["kind"] == "epoch"]
    steps = [r for r in recs if r["kind"] == "step"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert [r["step"] for r in steps] == list(range(10, 125, 10))
    assert all(0 <= r["val_top5"] <= 1 and r["val_top1"] <= r["val_top5"] for r in epochs)
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]
    last = ck.load(mnist_run / "last.pt")
    assert (last["epoch"], last["position"], last["step"]) == (2, 0, 124)
    assert set(last) >= {"model", "optimizer", "scheduler", "scaler", "rng", "config", "spec", "history", "best"}


def test_eval_command_reproduces_best(mnist_run, capsys):
    code = cli.main(["eval", str(mnist_run / "best.pt"), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    ev = json.loads(out)
    best = json.loads((mnist_run / "summary.json").read_text())["best"]
    assert ev["images"] == 1000
    assert ev["top1"] == pytest.approx(best["top1"], abs=1e-12)
    assert ev["top5"] == pytest.approx(best["top5"], abs=1e-12)
    assert ev["loss"] == pytest.approx(best["loss"], rel=1e-6)


def _cfg(spec, out, **kw):
    base = dict(model=spec, data="builtin:mnist", epochs=2, batch_size=32, lr=0.1, subset=224, val_subset=64,
                resolution=16, progress="off", drop_rate=0.1, drop_path_rate=0.1, recipe="paper", autoaugment="svhn",
                flip=0.5)
    base.update(kw)
    return TrainConfig(out=str(out), **base)


def test_resume_after_sigterm_is_bit_exact(spec, tmp_path):
    """The whole Section 5.1 recipe (mixup, erasing, AutoAugment, jitter, flip, dropout, stochastic depth) is
    random; a run stopped by SIGTERM mid-epoch and resumed ends with the very same weights."""
    full = train(_cfg(spec, tmp_path / "full"))
    assert not full.interrupted and full.step == 14

    def stop_at_step_3(step, epoch):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    part = train(_cfg(spec, tmp_path / "cut"), callback=stop_at_step_3)
    assert part.interrupted and part.step == 3 and part.signal == signal.SIGTERM
    saved = ck.load(tmp_path / "cut" / "last.pt")
    assert (saved["epoch"], saved["position"], saved["step"]) == (0, 3, 3)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again
    rest = train(_cfg(spec, tmp_path / "cut"), resume=True)
    assert rest.step == 14 and not rest.interrupted
    a = ck.load(tmp_path / "full" / "last.pt")
    b = ck.load(tmp_path / "cut" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for p, q in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(p["momentum_buffer"], q["momentum_buffer"])
    assert a["history"] == [dict(r, img_per_s=a["history"][i]["img_per_s"],
                                 epoch_seconds=a["history"][i]["epoch_seconds"]) for i, r in enumerate(b["history"])]
    # the step records written before the stop are kept, none twice
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
             if '"kind": "step"' in line]
    assert steps == sorted(set(steps))


def test_a_different_seed_gives_different_weights(spec, tmp_path):
    """(So that the equality above is not vacuous.)"""
    a = train(_cfg(spec, tmp_path / "a", epochs=1, subset=96))
    b = train(_cfg(spec, tmp_path / "b", epochs=1, subset=96, seed=1))
    wa, wb = ck.load(tmp_path / "a" / "last.pt")["model"], ck.load(tmp_path / "b" / "last.pt")["model"]
    assert a.step == b.step == 3
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_changed_settings(spec, tmp_path, capsys):
    train(_cfg(spec, tmp_path / "r", epochs=1, subset=64, recipe="none", autoaugment=None, flip=None))
    code = cli.main(["train", spec, "--data", "builtin:mnist", "--epochs", "1", "--batch-size", "32", "--subset", "64",
                     "--val-subset", "64", "--recipe", "none", "--drop-rate", "0.1", "--drop-path-rate", "0.1",
                     "--resolution", "16", "--lr", "0.2", "--out", str(tmp_path / "r"), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "--lr: the run in" in err and "was started with 0.1, now 0.2" in err


def test_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ck.save_atomic({"format": ck.FORMAT, "version": ck.VERSION, "w": torch.arange(5)}, path)
    before = path.read_bytes()

    def half_write(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(OSError, match="No space left"):
        ck.save_atomic({"w": torch.zeros(5)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left behind
    monkeypatch.undo()
    assert torch.equal(ck.load(path)["w"], torch.arange(5))


def test_rng_state_round_trip():
    ck.seed_all(5)
    s = ck.rng_state()
    a = (torch.rand(3), np.random.rand(3), __import__("random").random())
    ck.seed_all(99)
    ck.set_rng_state(s)
    b = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_schedule_warmup_then_cosine():
    s = Schedule(peak=0.4, warmup_steps=4, total_steps=14)
    lrs = [s(i) for i in range(14)]
    assert lrs[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert lrs[4] == pytest.approx(0.4)  # the cosine starts at the peak
    assert lrs[9] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))
    assert Schedule(0.4, 0, 10, min_lr=0.01)(10) == pytest.approx(0.01)


def test_no_weight_decay_on_bn_and_bias():
    from torch import nn

    m = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    g = param_groups(m, 5e-4, decay_norm_bias=False)
    assert [len(x["params"]) for x in g] == [2, 3] and [x["weight_decay"] for x in g] == [5e-4, 0.0]
    assert {id(p) for p in g[0]["params"]} == {id(m[0].weight), id(m[3].weight)}
    assert [len(x["params"]) for x in param_groups(m, 5e-4, decay_norm_bias=True)] == [5]


def test_image_folder_train_and_eval(tmp_path, capsys):
    """A run on an ImageFolder tree (decoded by PIL in a worker process), evaluated on its val/ folder."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 3)):
        for c, rgb in enumerate(((220, 30, 30), (30, 30, 220))):
            for i in range(n):
                d = tmp_path / "data" / split / f"class{c}"
                d.mkdir(parents=True, exist_ok=True)
                noise = rng.integers(-20, 20, (20, 24, 3))
                Image.fromarray(np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)).save(d / f"{i}.png")
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "run"
    code = cli.main(["train", str(spec), "--data", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "8",
                     "--workers", "1", "--out", str(out), "--progress", "off"])
    assert code == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["crop"] == "rrc" and cfg["config"]["weight_decay"] == 4e-5  # the ImageNet recipe
    assert cfg["data"]["classes"] == ["class0", "class1"]
    capsys.readouterr()
    code = cli.main(["eval", str(out / "last.pt"), "--data", str(tmp_path / "data" / "val"), "--json",
                     "--workers", "0"])
    out_text, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out_text)["images"] == 6
    (tmp_path / "other" / "zebra").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "other" / "zebra" / "0.png")
    code = cli.main(["eval", str(out / "last.pt"), "--data", str(tmp_path / "other")])
    assert code == 2 and "class folders differ" in capsys.readouterr().err


def test_eval_refuses_data_the_model_was_not_trained_on(mnist_run, tmp_path, capsys):
    """A CIFAR-100 folder (100 classes) and a CIFAR-10 one (10 named classes) against a 10-digit model."""
    import pickle

    for sub, n_cls, names in (("c100/cifar-100-python", 100, ("train", "test")), ("c10", 10, None)):
        root = tmp_path / sub
        root.mkdir(parents=True)
        rng = np.random.default_rng(0)
        files = names or [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        key = b"fine_labels" if n_cls == 100 else b"labels"
        for f in files:
            with open(root / f, "wb") as fh:
                pickle.dump({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                             key: [n_cls - 1, 0, 1, 2]}, fh)
        meta, mkey = ("meta", b"fine_label_names") if n_cls == 100 else ("batches.meta", b"label_names")
        with open(root / meta, "wb") as fh:
            pickle.dump({mkey: [b"class%d" % i for i in range(n_cls)]}, fh)
    ckpt = str(mnist_run / "best.pt")
    for data, needle in ((tmp_path / "c100", "100 classes (cifar100), the model predicts 10"),
                         (tmp_path / "c10", "are not the ones the model was trained on")):
        code = cli.main(["eval", ckpt, "--data", str(data), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("deepmad: error: "), err
        assert f"does not match the checkpoint {ckpt}" in err and needle in err, err


def test_data_resolution_memory_and_feedback(spec, tmp_path, capsys, monkeypatch):
    """A 16-px model on the 28-px digits trains at 28 px, saying so in one line; progress goes to stderr only;
    a run that cannot fit in memory is refused with the numbers before anything is written."""
    argv = ["train", spec, "--data", "builtin:mnist", "--epochs", "1", "--batch-size", "32", "--subset", "64",
            "--val-subset", "32", "-o", str(tmp_path / "r"), "--json"]
    code = cli.main(argv + ["--progress", "on"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["resolution"] == 28  # one JSON document on stdout, nothing else
    said = [line for line in err.splitlines() if "training at 28 px" in line]
    assert len(said) == 1 and "designed for 16 px inputs; builtin:mnist images are 28 px" in said[0]
    assert "train: " in err and "2/2" in err and "img/s" in err and "loss" in err  # the tqdm bar: steps, rate
    assert "eval: " in err and "memory: about" in err
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["config"]["resolution"] == cfg["spec"]["resolution"] == 28

    code = cli.main(argv + ["--quiet", "--force"])
    out, err = capsys.readouterr()
    assert code == 0 and err == "" and json.loads(out)["steps"] == 2

    from deepmad.train import memory

    monkeypatch.setattr(memory, "available", lambda device: 2**29)
    code = cli.main(argv[:-3] + ["-o", str(tmp_path / "big"), "--resolution", "224", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--batch-size 32: a step of 32 images of 224 px needs about" in err
    assert "more than the 0.5 GiB this machine has available; a micro-batch of at most about" in err
    assert not (tmp_path / "big").exists()


def test_memory_estimate_refuses_the_issue_run():
    """The issue's run (a 224-px bottleneck design at batch 256) on a 24 GiB machine: estimated far above
    24 GiB (it was killed at 24 GiB); its 28-px run on the digits at batch 64: far below 1 GiB."""
    from deepmad.models import create_model
    from deepmad.train import memory

    def est(res, batch):
        return memory.estimate(lambda: create_model("deepmad-r18", num_classes=10), params=10**7, in_chans=3,
                               resolution=res, micro_batch=batch, amp=False)

    big, small = est(224, 256), est(28, 64)
    assert big.total > 24 * memory.GiB and small.total < memory.GiB
    assert est(28, 128).activations == pytest.approx(2 * small.activations, abs=2)  # linear in the images
    assert memory.available(torch.device("cpu")) > 0
