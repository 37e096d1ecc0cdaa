"""Batches from image sets: a gather, then augmentation of the whole batch at once.

An in-memory set's batch is an index gather on the device; a lazy (memory-mapped) set's batch reads
only its rows from the file and moves them to the device (``ImageSet.take``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from smu.data import ImageSet


@dataclass(frozen=True)
class Augment:
    """Pad-and-random-crop by ``crop_pad`` pixels and random horizontal flips, as in the paper's training."""

    crop_pad: int = 0
    flip: bool = False

    def __bool__(self) -> bool:
        return bool(self.crop_pad or self.flip)


def augment(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Randomly crop (zero padding) and flip a uint8 batch; random numbers come from the CPU ``gen``."""
    b, c, h, w = x.shape
    if aug.crop_pad:
        p = aug.crop_pad
        padded = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b, 1), generator=gen).to(x.device, non_blocking=True)
        ox = torch.randint(0, 2 * p + 1, (b, 1), generator=gen).to(x.device, non_blocking=True)
        rows = (oy + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox + torch.arange(w, device=x.device))[:, None, None, :]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[bi, ci, rows, cols]
    if aug.flip:
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device, non_blocking=True)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [0, 1]; float pixels on the same 0-255 scale (UNSIR's learnt noise) too,
    into a new tensor, so a batch that is a view of its set never changes the set."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.div(255.0)


def batches(
    data: ImageSet,
    batch_size: int,
    *,
    shuffle: bool = False,
    gen: torch.Generator | None = None,
    aug: Augment | None = None,
    spread: bool = False,
    drop_single: bool | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images in [0, 1], labels); the last batch may be smaller. With ``spread``, under torchrun,
    only this rank's batches (every world-th, in order): for a sum over the data that is then added up
    over the ranks; every rank draws the random numbers of every batch, so the batches are those of one
    process. ``drop_single`` (default: when shuffled, i.e. when training) ends the pass before a last
    batch of one image."""
    from smu.execution import distributed

    n = len(data)
    order = torch.randperm(n, generator=gen) if shuffle else None
    rank, world = distributed.spread() if spread else (0, 1)
    drop_single = shuffle if drop_single is None else drop_single
    for i, start in enumerate(range(0, n, batch_size)):
        mine = i % world == rank
        if not mine and not aug:
            continue  # another rank's batch, and no random numbers to draw for it
        if order is None:
            x, y = data.take(slice(start, start + batch_size)), data.y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]  # a lazy set reads its rows with CPU indices
            idx = idx if data.lazy else idx.to(data.y.device, non_blocking=True)
            x, y = data.take(idx), data.y[idx.to(data.y.device, non_blocking=True)]
        if drop_single and len(y) == 1 and n > 1:
            # A lone last sample would make BatchNorm fail on 1x1 feature maps in training; the next
            # epoch's shuffle gives it its turn.
            break
        if aug:
            x = augment(x, aug, gen)
        if mine:
            yield to_float(x), y
