"""Datasets from local files (image folders, the CIFAR python format, bundled digits) and the data order."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
PIL = pytest.importorskip("PIL.Image")

from deepmad.train import data as D  # noqa: E402


def _png(path, rgb, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.new("RGB", size, rgb).save(path)


@pytest.fixture()
def folder(tmp_path):
    """ImageNet layout: train/ and val/ with classes a, b (solid colours, so pixels are checkable)."""
    colours = {"a": (250, 0, 0), "b": (0, 0, 250)}
    for split, n in (("train", 6), ("val", 2)):
        for c, rgb in colours.items():
            for i in range(n):
                _png(tmp_path / split / c / f"{i}.png", rgb)
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    return tmp_path


def test_builtin_mnist_is_real_bundled_data():
    d = D.open_data("builtin:mnist", val_split=0.2, resolution=28)
    assert (len(d.train), len(d.val)) == (4000, 1000)
    assert d.num_classes == 10 and d.channels == 1 and d.size == 28
    assert tuple(d.train.images.shape) == (4000, 1, 28, 28) and d.train.images.dtype == torch.uint8
    # stratified: 100 of each digit's 500 held out
    assert np.bincount(d.val.labels).tolist() == [100] * 10
    x = d.train.images.double() / 255
    assert d.mean[0] == pytest.approx(float(x.mean()), rel=1e-9)
    again = D.open_data("builtin:mnist", val_split=0.2, resolution=28)
    assert torch.equal(again.val.images, d.val.images)  # the same split every time


def test_builtin_split_is_disjoint_and_complete():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    tr, va = D.stratified_split(labels, 0.3)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(60))
    assert np.bincount(labels[va]).tolist() == [3, 6, 9]


def test_subset_is_fixed():
    a = D.open_data("builtin:mnist", val_split=0.2, resolution=28, subset=300, val_subset=50)
    b = D.open_data("builtin:mnist", val_split=0.2, resolution=28, subset=300, val_subset=50)
    assert (len(a.train), len(a.val)) == (300, 50)
    assert torch.equal(a.train.images, b.train.images)


def test_image_folder_layout(folder):
    d = D.open_data(str(folder), val_split=0.0, resolution=14)
    assert d.kind == "imagefolder" and d.classes == ["a", "b"] and d.heldout
    assert (len(d.train), len(d.val)) == (12, 4)
    assert d.size == 16  # ceil(14 / 0.875)
    (x, y), = D.batches(d.val, [np.array([0, 3])], size=d.size)
    assert tuple(x.shape) == (2, 3, 16, 16) and x.dtype == torch.uint8
    assert y.tolist() == [0, 1]
    assert x[0, 0].min() == 250 and x[0, 2].max() == 0 and x[1, 2].min() == 250
    # workers decode the same pixels
    (x2, _), = D.batches(d.val, [np.array([0, 3])], size=d.size, workers=1)
    assert torch.equal(x, x2)


def test_flat_folder_is_split_or_evaluated_whole(folder):
    flat = folder / "train"
    d = D.open_data(str(flat), val_split=0.5, resolution=8)
    assert (len(d.train), len(d.val)) == (6, 6) and not d.heldout
    e = D.open_data(str(flat), val_split=0.0, resolution=8, split="eval")
    assert len(e.val) == 12
    with pytest.raises(D.DataError, match="no validation images"):
        D.open_data(str(flat), val_split=0.0, resolution=8)


def test_folder_class_mismatch(folder):
    _png(folder / "val" / "c" / "0.png", (0, 250, 0))
    with pytest.raises(D.DataError, match="train/ and val/ hold different classes"):
        D.open_data(str(folder), val_split=0.0, resolution=8)


def test_bad_image_names_file(folder):
    bad = folder / "val" / "a" / "broken.png"
    bad.write_bytes(b"not a png")
    d = D.open_data(str(folder), val_split=0.0, resolution=8)
    i = d.val.files.index(str(bad))
    with pytest.raises(D.DataError, match="broken.png: cannot read image"):
        list(D.batches(d.val, [np.array([i])], size=d.size))


def _cifar(root, n_per_batch=4, hundred=False):
    rng = np.random.default_rng(0)
    written = {}
    names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    key = b"fine_labels" if hundred else b"labels"
    for name in names + ["test" if hundred else "test_batch"]:
        x = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 100 if hundred else 10, n_per_batch).tolist()
        written[name] = (x, y)
        with open(root / name, "wb") as f:
            pickle.dump({b"data": x, key: y}, f)
    meta = root / ("meta" if hundred else "batches.meta")
    with open(meta, "wb") as f:
        pickle.dump({(b"fine_label_names" if hundred else b"label_names"): [b"c%d" % i for i in range(10)]}, f)
    return written


def test_cifar10_python_format(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    w = _cifar(root)
    d = D.open_data(str(tmp_path), val_split=0.0, resolution=32)  # the parent directory works too
    assert d.kind == "cifar" and d.name == "cifar10" and d.heldout
    assert (len(d.train), len(d.val)) == (20, 4)
    assert np.array_equal(d.train.images[:4].numpy().reshape(4, -1), w["data_batch_1"][0])
    assert d.train.labels[4:8].tolist() == w["data_batch_2"][1]
    assert np.array_equal(d.val.images.numpy().reshape(4, -1), w["test_batch"][0])
    assert d.classes[:2] == ["c0", "c1"]


def test_cifar100_python_format(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    w = _cifar(root, 6, hundred=True)
    d = D.open_data(str(root), val_split=0.0, resolution=32)
    assert d.name == "cifar100" and d.val.labels.tolist() == w["test"][1]
    (root / "test").unlink()
    with pytest.raises(D.DataError, match="CIFAR file .*test is missing"):
        D.open_data(str(root), val_split=0.0, resolution=32)


def test_epoch_order_is_a_function_of_seed_and_epoch():
    a = D.epoch_batches(100, 8, seed=3, epoch=1)
    assert a.shape == (12, 8) and len(set(a.ravel().tolist())) == 96
    assert np.array_equal(a, D.epoch_batches(100, 8, seed=3, epoch=1))
    assert not np.array_equal(a, D.epoch_batches(100, 8, seed=3, epoch=2))
    assert not np.array_equal(a, D.epoch_batches(100, 8, seed=4, epoch=1))


@pytest.mark.parametrize("world, accum", [(1, 1), (1, 4), (2, 2), (4, 1), (8, 1)])
def test_micro_batches_partition_the_global_batch(world, accum):
    batch = np.arange(40, 48)
    parts = [m for r in range(world) for m in D.micro_batches(batch, r, world, accum)]
    assert np.array_equal(np.concatenate(parts), batch)  # same micro-batches whatever the layout
    assert {len(p) for p in parts} == {8 // (world * accum)}


def test_eval_shards_cover_every_image_once():
    for world in (1, 2, 3, 7):
        idx = np.concatenate([D.shard(10, r, world) for r in range(world)])
        assert idx.tolist() == list(range(10))


# ---------------------------------------------------------------------------------------------- data errors
# What the command does with bad data: one line naming the file, exit status 2, no run directory left behind.

TINY = """deepmad_spec: 1
resolution: 16
stem: {channels: 8, kernel: 3, stride: 2}
stages:
  - {block: basic, channels: 8, depth: 1, stride: 2}
num_classes: 2
"""


def _cli(tmp_path, data, *extra):
    import subprocess
    import sys

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "deepmad", "train", str(spec), "--data", str(data), "--epochs", "1",
                        "--batch-size", "4", "-o", str(out), "--quiet", *extra], capture_output=True, text=True)
    return r, out


def _one_line(r) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert r.stderr.startswith("deepmad: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and "worker" not in r.stderr.lower(), r.stderr
    return r.stderr


def test_one_class_folder_is_refused(tmp_path):
    for i in range(6):
        _png(tmp_path / "data" / "cats" / f"{i}.png", (200, 30, 30))
    with pytest.raises(D.DataError, match="holds 1 class .'cats'.; a classifier needs at least 2"):
        D.open_data(str(tmp_path / "data"), val_split=0.2, resolution=8)
    r, out = _cli(tmp_path, tmp_path / "data")
    err = _one_line(r)
    assert str(tmp_path / "data") in err and "needs at least 2" in err
    assert not out.exists()


def test_empty_class_folder_is_named(tmp_path):
    for c in ("a", "b"):
        for i in range(3):
            _png(tmp_path / "data" / c / f"{i}.png", (200, 30, 30))
    (tmp_path / "data" / "c").mkdir()
    with pytest.raises(D.DataError, match=r"class folder .*/c holds no images"):
        D.open_data(str(tmp_path / "data"), val_split=0.2, resolution=8)


def test_corrupt_image_with_two_workers_is_one_line(tmp_path):
    """Decoded in two worker processes: the error names the file, with no worker traceback and no warning
    about the worker count; the run directory the failed run began is removed."""
    for c, rgb in (("a", (250, 0, 0)), ("b", (0, 0, 250))):
        for i in range(8):
            _png(tmp_path / "data" / c / f"{i}.png", rgb)
    bad = tmp_path / "data" / "b" / "3.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    r, out = _cli(tmp_path, tmp_path / "data", "--workers", "2", "--val-split", "0.25")
    err = _one_line(r)
    assert f"{bad}: cannot read image" in err
    assert not out.exists()  # no half-made run directory, no config.json
    (x, _), = D.batches(D.open_data(str(tmp_path / "data"), val_split=0.0, resolution=8, split="eval").val,
                        [np.array([0, 1])], size=10, workers=2)
    assert tuple(x.shape) == (2, 3, 10, 10)  # the good images still load through the same workers
