"""Read the IDX files that MNIST and Fashion-MNIST ship in (LeCun's format, optionally gzip-compressed).

We read the IDX content ourselves instead of going through torchvision because Debian's
``dataset-fashion-mnist`` recompressed the ``.gz`` files: the content is the official data, but
torchvision's md5 check of the compressed file rejects it.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from smu.core.errors import DataError

# IDX type codes (third byte of the magic number); multi-byte values are big-endian.
_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# The four files of an MNIST-style dataset: split -> (images, labels).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_REFETCH = "delete it and download the dataset again"


def read_idx(path: Path) -> torch.Tensor:
    """Read one IDX file (``.gz`` is decompressed) into a tensor with the file's own shape and type."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut-off .gz is EOFError
        raise DataError(f"cannot read IDX file {str(path)!r}: {exc}", hint=_REFETCH) from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataError(
            f"{str(path)!r} is not an IDX file (magic number 0x{data[:4].hex()})",
            hint=f"expected 0x0000TTDD (type, dimensions); {_REFETCH}",
        )
    ndim, header = data[3], 4 + 4 * data[3]
    if len(data) < header:
        raise DataError(f"IDX file {str(path)!r} ends inside its header", hint=_REFETCH)
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[data[2]])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise DataError(
            f"IDX file {str(path)!r} holds {len(data)} bytes but its header {shape} needs {expected}",
            hint=f"the file is truncated or corrupt; {_REFETCH}",
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    # astype copies into native byte order: torch needs both, and frombuffer's array is read-only.
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """Return ``folder/stem``, else ``folder/stem.gz``, else None (the plain file is faster to read)."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def has_idx_dataset(folder: Path) -> bool:
    """Whether all four MNIST-style IDX files are in ``folder``."""
    return all(find_idx_file(folder, stem) for pair in IDX_FILES.values() for stem in pair)


def read_idx_split(folder: Path, split: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one split as (uint8 images [N, 1, H, W], int64 labels [N]), checking the two files agree."""
    image_path, label_path = (find_idx_file(folder, stem) for stem in IDX_FILES[split])
    if image_path is None or label_path is None:
        raise DataError(f"the {split} IDX files are missing from {str(folder)!r}", hint=_REFETCH)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != torch.uint8 or images.dim() != 3:
        raise DataError(
            f"{str(image_path)!r} holds {images.dtype} {tuple(images.shape)}, not uint8 [N, H, W] images",
            hint=_REFETCH,
        )
    if labels.dim() != 1 or len(labels) != len(images):
        raise DataError(
            f"{str(label_path)!r} holds {tuple(labels.shape)} labels for {len(images)} images",
            hint="the image and label files come from different downloads; " + _REFETCH,
        )
    labels = labels.to(torch.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{str(label_path)!r} has labels outside 0..{num_classes - 1}",
            hint="check that the files belong to this dataset; " + _REFETCH,
        )
    return images.unsqueeze(1).contiguous(), labels
