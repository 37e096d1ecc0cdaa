"""Dataset readers: each turns a dataset's official train and test splits into uint8 tensors on the CPU.

A reader only reads; batching, normalisation and augmentation happen later on the whole tensor.
Readers never print. Where a dataset is missing they try torchvision's download once, with a
short timeout so an offline machine fails in seconds, and otherwise raise a DataError that says
where they looked and how to get the files.

scikit-learn and torchvision are imported inside the readers: they cost about a second to import
and most commands read only one dataset.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smu.core.errors import DataError
from smu.core.registry import lookup
from smu.data import cifar20
from smu.data.idx import IDX_FILES, has_idx_dataset, read_idx_split
from smu.data.imagefolder import read_image_tree

DOWNLOAD_TIMEOUT_S = 20.0
"""Socket timeout for torchvision downloads: long enough for a slow mirror, short enough offline."""

_DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_IDX_NAMES = ", ".join(stem for pair in IDX_FILES.values() for stem in pair)
_DIGITS = [str(d) for d in range(10)]
_FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@dataclass
class RawData:
    """A dataset's official train and test splits, whole, as uint8 tensors on the CPU."""

    name: str
    train_x: torch.Tensor
    """uint8 [N, C, H, W], contiguous."""
    train_y: torch.Tensor
    """int64 [N], indices into ``classes``."""
    test_x: torch.Tensor
    """uint8 [M, C, H, W], contiguous."""
    test_y: torch.Tensor
    """int64 [M]."""
    classes: list[str]
    """Class names; the index is the label."""
    mean: tuple[float, ...]
    """Per-channel mean of the [0, 1] pixels (the usual published constants for named datasets)."""
    std: tuple[float, ...]
    """Per-channel standard deviation of the [0, 1] pixels."""
    crop_pad: int
    """Padding for pad-and-random-crop augmentation."""
    flip: bool
    """Whether a horizontal flip keeps the label right (not for digits)."""
    mapped: bool = False
    """The images are memory-mapped from a file (too large for memory): sets over them stay lazy."""
    train_fine: torch.Tensor | None = None
    """int64 [N], indices into ``fine_classes``: each image's sub-class, for a dataset that has them
    (CIFAR-20, a two-level image folder); None otherwise."""
    test_fine: torch.Tensor | None = None
    """int64 [M], as ``train_fine``."""
    fine_classes: list[str] | None = None
    """Sub-class names; the index is the fine label."""
    fine_parent: list[int] | None = None
    """The class (coarse label) each sub-class belongs to."""


@dataclass(frozen=True)
class Source:
    """How to read one dataset: ``read(data_dir)`` and a one-line summary for ``--help``."""

    read: Callable[[Path], RawData]
    summary: str


def default_data_dir() -> Path:
    """Where datasets live unless ``--data`` says otherwise: ``$SMU_DATA``, else ``~/.cache/smu/data``."""
    env = os.environ.get("SMU_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "smu" / "data"


def read_source(name: str, data_dir: str | Path | None = None) -> RawData:
    """Read dataset ``name`` (a key of SOURCES) from ``data_dir``, default ``default_data_dir()``."""
    source = lookup(SOURCES, name, "dataset")
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"data directory {str(root)!r} is a file", hint="pass a folder to --data")
    return source.read(root)


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images [N, C, H, W] scaled to [0, 1]."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    # In chunks: a float64 copy of all of TinyImageNet would need about 10 GB. Large images take fewer
    # per chunk (512 MB of float64 at most), so 224x224 ones do not need 5 GB; up to 64x64 the chunks
    # are those of before, and so are the statistics' bits (the in-place steps give the same values).
    chunk = max(1, min(chunk, (512 << 20) // max(8 * x[0].numel(), 1))) if len(x) else chunk
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to(torch.float64).div_(255)  # in place: one float64 copy at a time
        total += part.sum(dim=(0, 2, 3))
        squares += part.square_().sum(dim=(0, 2, 3))
        del part  # before the next chunk is made, not after: one chunk in memory at a time
    count = max(x.numel() // x.shape[1], 1)
    mean = total / count
    # A constant channel would make normalisation divide by zero; one grey level is the floor.
    std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(1 / 255)
    return tuple(mean.tolist()), tuple(std.tolist())


def _read_digits(data_dir: Path) -> RawData:
    """scikit-learn's bundled digits with a fixed stratified 80/20 split (``data_dir`` is not used)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.rint(digits.images * 255 / 16).astype(np.uint8)[:, None]  # values 0..16 -> 0..255
    # The split's seed is fixed, not the user's: every run and every artifact sees the same test set.
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    train_x, test_x = torch.from_numpy(train_x).contiguous(), torch.from_numpy(test_x).contiguous()
    mean, std = channel_stats(train_x)
    # No augmentation: a 1-pixel shift is 12% of an 8x8 digit (it cost half the accuracy of a short
    # run), and digits are not mirror-symmetric.
    return RawData(
        "digits",
        train_x,
        torch.as_tensor(train_y, dtype=torch.int64),
        test_x,
        torch.as_tensor(test_y, dtype=torch.int64),
        list(_DIGITS),
        mean,
        std,
        crop_pad=0,
        flip=False,
    )


def _download(cls_name: str, root: Path, **kwargs: Any) -> Any:
    """Build torchvision's dataset ``cls_name`` with ``download=True`` under a short socket timeout."""
    from torchvision import datasets

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    # The topmost folder a download would create; if it fails, the empty tree under it is removed again.
    created = next((p for p in reversed((root, *root.parents)) if not p.exists()), None)
    try:
        # torchvision prints "Downloading ..." on stdout, which is reserved for results.
        with contextlib.redirect_stdout(sys.stderr):
            return getattr(datasets, cls_name)(root=str(root), download=True, **kwargs)
    except BaseException:
        if created is not None and created.is_dir():
            for folder in sorted((p for p in (created, *created.rglob("*")) if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only empty folders go
        raise
    finally:
        socket.setdefaulttimeout(previous)


def _one_line(exc: Exception) -> str:
    """The exception's text on one line: torchvision lists every mirror it tried on its own line."""
    return " ".join(str(exc).split())


def _idx_source(
    name: str,
    tv_name: str,
    classes: list[str],
    mean: float,
    std: float,
    flip: bool,
    extra_dirs: Sequence[Path],
    how_to_get: str,
) -> Callable[[Path], RawData]:
    """A reader for an MNIST-style dataset of four IDX files."""

    def read(data_dir: Path) -> RawData:
        places = [data_dir, data_dir / name, data_dir / tv_name / "raw", *extra_dirs]
        folder = next((place for place in places if has_idx_dataset(place)), None)
        if folder is None:
            try:
                _download(tv_name, data_dir)
            except Exception as exc:  # any failure means the same to the user: no files, no network
                looked = ", ".join(repr(str(place)) for place in places)
                raise DataError(
                    f"{name} IDX files not found in {looked}, "
                    f"and downloading them failed (no network?): {_one_line(exc)}",
                    hint=how_to_get,
                ) from exc
            folder = data_dir / tv_name / "raw"
        train_x, train_y = read_idx_split(folder, "train", len(classes))
        test_x, test_y = read_idx_split(folder, "test", len(classes))
        return RawData(name, train_x, train_y, test_x, test_y, list(classes), (mean,), (std,), 2, flip)

    return read


def _load_torchvision(name: str, cls_name: str, root: Path, splits: Sequence[dict], files: str) -> list[Any]:
    """Build one torchvision dataset per split from files under ``root``, downloading them if absent."""
    from torchvision import datasets

    factory = getattr(datasets, cls_name)
    try:
        return [factory(root=str(root), download=False, **kwargs) for kwargs in splits]
    except RuntimeError:
        pass  # torchvision's "Dataset not found or corrupted": fetch it below
    except Exception as exc:
        raise DataError(
            f"cannot read {name} from {str(root)!r}: {_one_line(exc)}",
            hint=f"delete {files} there and download again",
        ) from exc
    try:
        return [_download(cls_name, root, **kwargs) for kwargs in splits]
    except Exception as exc:  # URLError, timeouts, bad checksums: all leave the user without the data
        raise DataError(
            f"{name} is missing under {str(root)!r} and downloading it failed (offline?): {_one_line(exc)}",
            hint=f"run once with network access, "
            f"or place torchvision's extracted files ({files}) under --data DIR",
        ) from exc


def _torchvision_source(
    name: str,
    cls_name: str,
    splits: Sequence[dict],
    files: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    flip: bool,
) -> Callable[[Path], RawData]:
    """A reader for a torchvision dataset that keeps its images in memory as ``.data``."""

    def read(data_dir: Path) -> RawData:
        train, test = _load_torchvision(name, cls_name, data_dir, splits, files)
        (train_x, train_y), (test_x, test_y) = _tensors(train), _tensors(test)
        classes = list(getattr(train, "classes", _DIGITS))  # SVHN has no .classes; its labels are digits
        return RawData(name, train_x, train_y, test_x, test_y, classes, mean, std, crop_pad=4, flip=flip)

    return read


def _read_cifar20(data_dir: Path) -> RawData:
    """CIFAR-100's files read as CIFAR-20: the 20 super-classes are the labels, the fine ones kept."""
    train, test = _load_torchvision("cifar20", "CIFAR100", data_dir, _TRAIN_TEST, "cifar-100-python/")
    if list(getattr(train, "classes", cifar20.FINE)) != list(cifar20.FINE):
        raise DataError(
            f"the CIFAR-100 files under {str(data_dir)!r} do not name CIFAR-100's 100 classes",
            hint="delete cifar-100-python/ there and download again",
        )
    (train_x, train_fine), (test_x, test_fine) = _tensors(train), _tensors(test)
    coarse = torch.tensor(cifar20.FINE_TO_COARSE, dtype=torch.int64)
    return RawData(
        "cifar20",
        train_x,
        coarse[train_fine],
        test_x,
        coarse[test_fine],
        list(cifar20.COARSE),
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        crop_pad=4,
        flip=True,
        train_fine=train_fine,
        test_fine=test_fine,
        fine_classes=list(cifar20.FINE),
        fine_parent=list(cifar20.FINE_TO_COARSE),
    )


def _tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 NCHW images and int64 labels from a torchvision dataset's in-memory arrays."""
    if hasattr(dataset, "labels"):  # SVHN: .data is already NCHW and labels are in .labels
        x, y = torch.from_numpy(dataset.data), dataset.labels
    else:  # CIFAR: .data is NHWC, labels in .targets
        x, y = torch.from_numpy(dataset.data).permute(0, 3, 1, 2), dataset.targets
    return x.contiguous(), torch.as_tensor(np.asarray(y), dtype=torch.int64)


def _read_imagefolder(data_dir: Path) -> RawData:
    """A TinyImageNet-style tree under ``data_dir``; its val split serves as the test split."""
    tree = read_image_tree(data_dir, channel_stats)
    crop_pad = min(tree.train_x.shape[-2:]) // 8
    return RawData(
        "imagefolder",
        tree.train_x,
        tree.train_y,
        tree.val_x,
        tree.val_y,
        tree.classes,
        tree.mean,
        tree.std,
        crop_pad,
        flip=True,
        mapped=tree.mapped,
        train_fine=tree.train_fine,
        test_fine=tree.val_fine,
        fine_classes=tree.fine_classes,
        fine_parent=tree.fine_parent,
    )


_TRAIN_TEST = ({"train": True}, {"train": False})

SOURCES: dict[str, Source] = {
    "digits": Source(_read_digits, "scikit-learn's 8x8 handwritten digits, bundled (1,437 train / 360 test)"),
    "fashion-mnist": Source(
        _idx_source(
            "fashion-mnist",
            "FashionMNIST",
            _FASHION,
            0.2860,
            0.3530,
            True,
            [_DEBIAN_FASHION_MNIST],
            f"apt-get install dataset-fashion-mnist, or put the four IDX files ({_IDX_NAMES}, .gz or not) "
            "in --data DIR",
        ),
        "Zalando's 28x28 clothing images (60,000 / 10,000); apt-get install dataset-fashion-mnist",
    ),
    "mnist": Source(
        _idx_source(
            "mnist",
            "MNIST",
            _DIGITS,
            0.1307,
            0.3081,
            False,
            [],
            f"run once with network access, "
            f"or put the four IDX files ({_IDX_NAMES}, .gz or not) in --data DIR",
        ),
        "28x28 handwritten digits (60,000 / 10,000); IDX files in --data, else downloaded",
    ),
    "cifar10": Source(
        _torchvision_source(
            "cifar10",
            "CIFAR10",
            _TRAIN_TEST,
            "cifar-10-batches-py/",
            (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616),
            flip=True,
        ),
        "32x32 colour photos, 10 classes (50,000 / 10,000); downloaded into --data",
    ),
    "cifar100": Source(
        _torchvision_source(
            "cifar100",
            "CIFAR100",
            _TRAIN_TEST,
            "cifar-100-python/",
            (0.5071, 0.4865, 0.4409),
            (0.2673, 0.2564, 0.2762),
            flip=True,
        ),
        "32x32 colour photos, 100 classes (50,000 / 10,000); downloaded into --data",
    ),
    "cifar20": Source(
        _read_cifar20,
        "CIFAR-100 with its 20 super-classes as labels, each image keeping its fine class (sub-class "
        "forgetting); cifar100's files",
    ),
    "svhn": Source(
        _torchvision_source(
            "svhn",
            "SVHN",
            ({"split": "train"}, {"split": "test"}),
            "train_32x32.mat, test_32x32.mat",
            (0.4377, 0.4438, 0.4728),
            (0.1980, 0.2010, 0.1970),
            flip=False,
        ),
        "32x32 street-view house numbers (73,257 / 26,032); downloaded into --data",
    ),
    "imagefolder": Source(
        _read_imagefolder,
        "your own images: --data DIR with train/<class>/ and val/ (TinyImageNet's layout), or "
        "train/<class>/<sub-class>/ for sub-classes",
    ),
}
"""Every dataset smu can read, by the name ``--dataset`` and recipes use."""
