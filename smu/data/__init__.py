"""Datasets as in-memory tensors: the official splits, the validation hold-out, and batching.

Images stay uint8 on the compute device; a batch is an index gather followed by augmentation and
scaling to [0, 1] on the whole batch (normalisation lives in the model). This is what makes small
models fast on a few CPU cores: no per-sample PIL transforms, no worker processes. A dataset too
large for memory (an image folder over ``$SMU_DATA_MEMORY``) is memory-mapped instead, and its sets
are lazy: a batch gathers its own rows from the file and moves them to the device.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from smu.core.errors import ArtifactError, UsageError, shown
from smu.data import cache
from smu.data.imageset import ImageSet
from smu.data.sources import SOURCES, RawData, read_source
from smu.io import schema as S

if TYPE_CHECKING:
    from smu.io.artifacts import LoadedModel

__all__ = [
    "SOURCES",
    "DatasetInfo",
    "ImageSet",
    "Splits",
    "check_fits",
    "load_splits",
    "splits_of",
    "subset_meta",
]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its data."""

    name: str
    classes: tuple[str, ...]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pad: int
    flip: bool
    fine_classes: tuple[str, ...] = ()
    """Sub-class names, for a dataset with sub-classes (cifar20, a two-level image folder): the fine
    labels each image of a set keeps (``ImageSet.fine``) index them."""
    fine_parent: tuple[int, ...] = ()
    """The class each sub-class belongs to."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)


@dataclass
class Splits:
    """Train (official train minus the validation hold-out), validation and test sets."""

    info: DatasetInfo
    train: ImageSet
    val: ImageSet
    test: ImageSet
    val_fraction: float
    split_seed: int
    subset: int = 0
    """Training images drawn at random from the official training set (0: all of them)."""


@functools.lru_cache(maxsize=4)
def _read_cached(name: str, data_dir: str | None, memory: str | None) -> RawData:
    # Recipes and tests load the same dataset many times; decoding it once per process is enough.
    # ``memory`` ($SMU_DATA_MEMORY) is part of the key: it decides whether a tree is held or mapped.
    return read_source(name, data_dir)


def holdout(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (train, val), taking ``int(fraction * n_c)`` of each class c at random.

    Deterministic from the seed; both index tensors are sorted so later selections (forget sets)
    refer to a stable order.
    """
    if not 0.0 <= fraction < 1.0:
        raise UsageError(
            f"--val-fraction {fraction!r} is outside [0, 1)",
            hint="use e.g. 0.1 to hold out 10% of each class, or 0 for none",
        )
    gen = torch.Generator().manual_seed(seed)
    val = []
    labels = labels.cpu()
    for c in torch.unique(labels):
        idx = (labels == c).nonzero().flatten()
        take = int(fraction * len(idx))
        val.append(idx[torch.randperm(len(idx), generator=gen)[:take]])
    val_idx = torch.cat(val).sort().values
    is_val = torch.zeros(len(labels), dtype=torch.bool)
    is_val[val_idx] = True
    return (~is_val).nonzero().flatten(), val_idx


def load_splits(
    name: str = "digits",
    *,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    val_fraction: float = 0.1,
    seed: int = 0,
    subset: int = 0,
) -> Splits:
    """Load a dataset, hold out ``val_fraction`` of each training class, and move it to ``device``.

    ``subset`` > 0 first draws that many training images at random (with ``seed``): the hold-out and
    every forget index then refer to them. The test set stays whole.
    """
    from smu.execution import distributed

    with distributed.main_first():  # under torchrun, a download into a shared --data happens once
        raw = _read_cached(name, None if data_dir is None else str(data_dir), os.environ.get(cache.ENV))
    kept = draw_subset(len(raw.train_y), subset, seed, raw.name)
    train_idx, val_idx = (kept[i] for i in holdout(raw.train_y[kept], val_fraction, seed))
    c, h, w = raw.train_x.shape[1:]
    info = DatasetInfo(
        name=raw.name,
        classes=tuple(raw.classes),
        channels=c,
        image_size=h,
        mean=tuple(raw.mean),
        std=tuple(raw.std),
        crop_pad=raw.crop_pad,
        flip=raw.flip,
        fine_classes=tuple(raw.fine_classes or ()),
        fine_parent=tuple(raw.fine_parent or ()),
    )
    if raw.mapped:
        # Too large for memory: lazy sets over the mapped file; a batch's rows are read, then moved.
        full, test = (
            ImageSet.mapped(raw.train_x, raw.train_y, device, raw.train_fine),
            ImageSet.mapped(raw.test_x, raw.test_y, device, raw.test_fine),
        )
    else:
        full, test = (
            ImageSet(raw.train_x, raw.train_y, raw.train_fine),
            ImageSet(raw.test_x, raw.test_y, raw.test_fine),
        )
    return Splits(
        info=info,
        train=full.subset(train_idx).to(device),
        val=full.subset(val_idx).to(device),
        test=test.to(device),
        val_fraction=val_fraction,
        split_seed=seed,
        subset=subset,
    )


def splits_of(
    loaded: LoadedModel, data_dir: str | Path | None = None, device: str | torch.device = "cpu"
) -> Splits:
    """The dataset ``loaded`` was made for, with the validation hold-out it was trained with."""
    splits = load_splits(
        loaded.dataset,
        data_dir=data_dir,
        device=device,
        val_fraction=float(loaded.meta.get(S.VAL_FRACTION) or 0.1),  # an empty value: the default
        seed=int(loaded.meta.get(S.SPLIT_SEED) or 0),
        subset=int(loaded.meta.get(S.SUBSET) or 0),
    )
    check_fits(loaded, splits)
    return splits


def check_fits(loaded: LoadedModel, splits: Splits, option: str = "--model") -> None:
    """The model must have been made for this dataset's classes and image shape."""
    c, h, w = splits.info.input_shape
    want = {
        S.DATASET: splits.info.name,
        S.NUM_CLASSES: str(splits.info.num_classes),
        S.INPUT_SHAPE: f"{c}x{h}x{w}",
    }
    for key, value in want.items():
        if loaded.meta.get(key) != value:
            raise ArtifactError(
                f"{option} {str(loaded.path)!r} was made for {key[4:]} {shown(loaded.meta.get(key))}, "
                f"not {value!r}",
                hint=f"use a model trained on {splits.info.name}",
            )


def subset_meta(splits: Splits) -> dict[str, int]:
    """The header key of a subset; none for the whole training set (as files written before it)."""
    return {S.SUBSET: splits.subset} if splits.subset else {}


def draw_subset(total: int, subset: int, seed: int, name: str) -> torch.Tensor:
    """Sorted indices of ``subset`` of ``total`` training images drawn with ``seed``; all for 0."""
    if not 0 <= subset <= total:
        raise UsageError(
            f"--subset {subset!r} must be between 0 (all) and the {total} training images of {name}",
            hint="give a smaller number, or 0 for all of them",
        )
    if subset == 0:
        return torch.arange(total)
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=gen)[:subset].sort().values
