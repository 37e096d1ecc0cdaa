"""Read a TinyImageNet-style folder tree into uint8 tensors.

Layout (both val layouts are accepted)::

    root/train/<class>/*.png            or  root/train/<class>/images/*.JPEG   (TinyImageNet)
    root/val/<class>/*.png              or  root/val/images/*.JPEG + root/val/val_annotations.txt

or, with sub-classes (a class folder holding only sub-class folders, no images)::

    root/train/<class>/<sub-class>/*.png    and  root/val/<class>/<sub-class>/*.png

where the classes are what the model predicts and each image keeps its sub-class as a fine label
(sub-class forgetting, ``--forget subclass:NAME``). A tree is one or the other, never a mix.

Every image is decoded once, converted to RGB and resized to the first training image's size,
so the whole dataset can live in one tensor (see DESIGN.md, performance notes). Where that tensor
(train and val) would take more than ``cache.memory_limit()``, it is decoded once into a file
beside the data and memory-mapped instead (``smu/data/cache.py``), so a tree of any size can be read.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from smu.core.errors import DataError
from smu.data import cache

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})  # compared lower-case, so .JPEG counts

_LAYOUT = (
    "expected train/<class>/*.jpg|png and either val/<class>/*.jpg|png or "
    "val/images/* with val/val_annotations.txt (TinyImageNet's layout)"
)

_TWO_LEVEL = "expected train/<class>/<sub-class>/*.jpg|png and val/<class>/<sub-class>/*.jpg|png"

Samples = list[tuple[Path, int]]
"""Images with their label: the class, or in a tree with sub-classes the sub-class (fine label)."""
Stats = Callable[[torch.Tensor], tuple[tuple[float, ...], tuple[float, ...]]]


@dataclass
class ImageTree:
    """A decoded tree: images uint8 [N, 3, H, W] (memory-mapped when ``mapped``), int64 labels
    indexing ``classes`` (the sorted names of the train subfolders), and the train images' statistics."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mapped: bool
    train_fine: torch.Tensor | None = None
    """A tree with sub-classes: each image's sub-class, indexing ``fine_classes``; None otherwise."""
    val_fine: torch.Tensor | None = None
    fine_classes: list[str] | None = None
    """The sub-class folder names, class by class, each class's sorted."""
    fine_parent: list[int] | None = None
    """The class of each sub-class."""


@dataclass
class Layout:
    """The class folders of train/, and for a tree with sub-classes its (class, sub-class) pairs in
    fine-label order (None for a one-level tree)."""

    classes: list[str]
    fine: list[tuple[str, str]] | None


def read_image_tree(root: Path, stats: Stats) -> ImageTree:
    """Decode ``root/train`` and ``root/val``; ``stats(train_x)`` gives the per-channel mean and std.

    In memory when the decoded images fit under ``cache.memory_limit()``, else memory-mapped from a
    cache decoded once (statistics included, so a later load reads no pixel).
    """
    train_dir, val_dir = root / "train", root / "val"
    for folder in (train_dir, val_dir):
        if not folder.is_dir():
            raise DataError(f"no {folder.name}/ folder under {str(root)!r}", hint=_LAYOUT)
    layout = _layout(train_dir)
    classes = layout.classes
    if layout.fine is None:
        train, val = _train_samples(train_dir, classes), _val_samples(val_dir, classes)
    else:
        train, val = _fine_samples(train_dir, layout.fine), _fine_samples(val_dir, layout.fine)
    size = _size_of(train[0][0])
    shapes = [(len(samples), 3, size[1], size[0]) for samples in (train, val)]
    if sum(math.prod(s) for s in shapes) <= cache.memory_limit():
        train_x, val_x = _decode_all(train, size), _decode_all(val, size)
        mean, std = stats(train_x)
        return _tree(train_x, train, val_x, val, layout, mean, std, mapped=False)
    # The cache holds pixels (and their statistics) only, keyed by every image's path: the labels are
    # read from the folders each time, so a one-level and a two-level tree never share a cache entry.
    paths = [path for path, _ in train + val]

    def fill(f: BinaryIO) -> None:
        _write_rows(f, _decoded(paths, size))

    def describe(tensors: list[torch.Tensor]) -> dict:
        mean, std = stats(tensors[0])
        return {"mean": mean, "std": std}

    key = cache.cache_key(root, paths, size)
    (train_x, val_x), facts = cache.mapped(root, key, shapes, fill, describe)
    mean, std = tuple(facts["mean"]), tuple(facts["std"])
    return _tree(train_x, train, val_x, val, layout, mean, std, mapped=True)


def _tree(
    train_x: torch.Tensor,
    train: Samples,
    val_x: torch.Tensor,
    val: Samples,
    layout: Layout,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    mapped: bool,
) -> ImageTree:
    if layout.fine is None:
        return ImageTree(train_x, _labels(train), val_x, _labels(val), layout.classes, mean, std, mapped)
    parent = [layout.classes.index(c) for c, _ in layout.fine]
    to_class = torch.tensor(parent, dtype=torch.int64)
    train_fine, val_fine = _labels(train), _labels(val)
    return ImageTree(
        train_x,
        to_class[train_fine],
        val_x,
        to_class[val_fine],
        layout.classes,
        mean,
        std,
        mapped,
        train_fine,
        val_fine,
        [sub for _, sub in layout.fine],
        parent,
    )


def tree_shape(root: Path) -> tuple[int, int]:
    """(image side, classes) of a tree, from its class folders and its first image's header alone."""
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"no train/ folder under {str(root)!r}", hint=_LAYOUT)
    layout = _layout(train_dir)
    classes = layout.classes
    if layout.fine is None:
        first = _train_samples(train_dir, classes)[0][0]
    else:
        first = _fine_samples(train_dir, layout.fine)[0][0]
    width, height = _size_of(first)
    if width != height:
        raise DataError(
            f"the first image of {str(train_dir)!r} is {width}x{height}, not square",
            hint="pass the side the model takes with --image-size",
        )
    return width, len(classes)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    """Image files in ``folder`` and in ``folder/images`` (where TinyImageNet keeps them), sorted."""
    found = []
    for place in (folder, folder / "images"):
        if place.is_dir():
            found += [p for p in place.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _layout(train_dir: Path) -> Layout:
    """One level (every class folder holds images) or two (every class folder holds only sub-class
    folders); a tree with both kinds of class folder is refused."""
    classes = sorted(p.name for p in _subfolders(train_dir))
    if not classes:
        raise DataError(f"no class folders in {str(train_dir)!r}", hint=_LAYOUT)
    with_images = [c for c in classes if _images_in(train_dir / c)]
    nested = [c for c in classes if c not in with_images and _subfolders(train_dir / c)]
    if not nested:
        return Layout(classes, None)  # the one-level tree, read as it always was
    if with_images:
        raise DataError(
            f"{str(train_dir)!r} mixes class folders of images ({with_images[0]!r}) with class folders of "
            f"sub-class folders ({nested[0]!r})",
            hint="put every class's images directly in train/<class>/, or every class's in "
            "train/<class>/<sub-class>/, not both",
        )
    fine = []
    for c in classes:
        subs = _subfolders(train_dir / c)
        if not subs:
            raise DataError(
                f"class folder {str(train_dir / c)!r} holds no sub-class folders", hint=_TWO_LEVEL
            )
        fine += [(c, sub.name) for sub in subs]
    return Layout(classes, fine)


def _fine_samples(split_dir: Path, fine: list[tuple[str, str]]) -> Samples:
    """The images of ``split_dir/<class>/<sub-class>/``, each labelled with its sub-class's index."""
    index = {pair: label for label, pair in enumerate(fine)}
    samples: Samples = []
    unknown = []
    for folder in _subfolders(split_dir):
        if _images_in(folder):
            raise DataError(
                f"{str(folder)!r} holds images, but the classes of train/ hold sub-class folders",
                hint=f"move them into a sub-class folder: {_TWO_LEVEL}",
            )
        for sub in _subfolders(folder):
            label = index.get((folder.name, sub.name))
            if label is None:
                unknown.append(f"{folder.name}/{sub.name}")
                continue
            images = _images_in(sub)
            if not images and split_dir.name == "train":
                raise DataError(
                    f"sub-class folder {str(sub)!r} holds no .jpg, .jpeg or .png images",
                    hint="add its images or remove the folder (every train/<class>/ folder is a sub-class)",
                )
            samples += [(path, label) for path in images]
    if unknown:
        _refuse_unknown(
            f"{split_dir.name} sub-classes",
            unknown,
            "every val/<class>/<sub-class>/ needs a train/<class>/<sub-class>/ folder of the same names",
        )
    if not samples:
        raise DataError(f"no .jpg, .jpeg or .png images in {str(split_dir)!r}", hint=_TWO_LEVEL)
    return samples


def _train_samples(train_dir: Path, classes: list[str]) -> Samples:
    samples: Samples = []
    for label, name in enumerate(classes):
        images = _images_in(train_dir / name)
        if not images:
            raise DataError(
                f"class folder {str(train_dir / name)!r} holds no .jpg, .jpeg or .png images",
                hint="add its images or remove the folder (every train subfolder is a class)",
            )
        samples += [(path, label) for path in images]
    return samples


def _val_samples(val_dir: Path, classes: list[str]) -> Samples:
    """Val images with their labels, from val_annotations.txt if present, else from class folders."""
    annotations = val_dir / "val_annotations.txt"
    if annotations.is_file():
        pairs = _read_annotations(annotations)
    else:
        if (val_dir / "images").is_dir() and "images" not in classes:
            raise DataError(f"{str(val_dir / 'images')!r} has no val_annotations.txt beside it", hint=_LAYOUT)
        pairs = [(path, folder.name) for folder in _subfolders(val_dir) for path in _images_in(folder)]
    index = {name: label for label, name in enumerate(classes)}
    unknown = sorted({name for _, name in pairs if name not in index})
    if unknown:
        _refuse_unknown(
            "val classes", unknown, "every val class needs a train/<class>/ folder of the same name"
        )
    if not pairs:
        raise DataError(f"no .jpg, .jpeg or .png images in {str(val_dir)!r}", hint=_LAYOUT)
    return [(path, index[name]) for path, name in pairs]


def _refuse_unknown(what: str, unknown: list[str], hint: str) -> None:
    shown = ", ".join(repr(name) for name in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
    raise DataError(f"{what} not found in train/: {shown}", hint=hint)


def _read_annotations(annotations: Path) -> list[tuple[Path, str]]:
    pairs = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(
                f"line {number} of {str(annotations)!r} has no class column: {line!r}",
                hint="each line is tab-separated: filename, class, (anything else is ignored)",
            )
        pairs.append((annotations.parent / "images" / fields[0], fields[1]))
    return pairs


def _decode_all(samples: Samples, size: tuple[int, int]) -> torch.Tensor:
    """Decode into one preallocated tensor: a list of arrays would hold the dataset twice."""
    width, height = size
    out = torch.empty(len(samples), 3, height, width, dtype=torch.uint8)
    rows = out.numpy()  # the same memory
    # numpy, not torch: a torch copy this small pays for its intra-op threads (16 ms instead of 0.3 ms
    # per 224x224 image on 2 busy cores).
    for i, array in enumerate(_decoded([path for path, _ in samples], size)):
        rows[i] = array.transpose(2, 0, 1)
    return out


def _write_rows(f: BinaryIO, arrays: Iterator[np.ndarray]) -> None:
    for array in arrays:
        f.write(np.ascontiguousarray(array.transpose(2, 0, 1)))  # HWC -> CHW rows, as in memory


def _decoded(paths: list[Path], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """HWC uint8 arrays of ``paths`` in order, decoded on threads a bounded window ahead.

    PIL releases the GIL while decoding, so threads help on big trees like TinyImageNet; the window
    keeps a slow consumer (a disk) from piling decoded images up in memory.
    """
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        ahead: deque[Future[np.ndarray]] = deque()
        for path in paths:
            ahead.append(pool.submit(_decode, path, size))
            if len(ahead) >= 4 * workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def _size_of(path: Path) -> tuple[int, int]:
    """(width, height) from the image's header alone: what every image is resized to."""
    try:
        with Image.open(path) as first:
            return first.size
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read image {str(path)!r}: {exc}", hint="replace or delete the file, then run again"
        ) from exc


def _decode(path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(
            f"cannot read image {str(path)!r}: {exc}", hint="replace or delete the file, then run again"
        ) from exc
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return np.array(rgb)  # a writable copy: torch.from_numpy warns on read-only arrays


def _labels(samples: Samples) -> torch.Tensor:
    return torch.tensor([label for _, label in samples], dtype=torch.int64)
