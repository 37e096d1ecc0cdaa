"""Backdoor poisoning (BadNets-style, Gu et al. 2017), as in the paper's Trojan study.

A ``trigger_size`` square of pixels set to ``value``, 2 pixels in from the bottom-right corner,
is stamped on a chosen set of training images, whose labels become ``target``. A model trained on
that data learns "trigger → target". The poisoned indices are the forget set a cleanse unlearns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from smu.core.errors import UsageError
from smu.data import ImageSet, Splits
from smu.data.forget import ForgetSet, parse_count

MARGIN = 2
"""Pixels between the trigger and the bottom and right edges, as in the original code."""

DARK_BACKGROUND = ("digits", "mnist", "fashion-mnist")
"""Datasets drawn on black: a black trigger would vanish there, so their default trigger is white."""


@dataclass(frozen=True)
class Trigger:
    size: int = 4
    value: int = 0
    target: int = 0

    def check(self, splits: Splits) -> Trigger:
        h = splits.info.image_size
        if not 1 <= self.size <= h - MARGIN:
            raise UsageError(
                f"--trigger-size {self.size} does not fit a {h}x{h} image",
                hint=f"use 1..{h - MARGIN} (the trigger sits {MARGIN} pixels from the corner)",
            )
        if not 0 <= self.value <= 255:
            raise UsageError(
                f"--trigger-value {self.value} is not a pixel value", hint="use 0 (black) .. 255 (white)"
            )
        if not 0 <= self.target < splits.info.num_classes:
            raise UsageError(
                f"--target {self.target} is not a class of {splits.info.name}",
                hint=f"use 0..{splits.info.num_classes - 1}",
            )
        return self

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """A copy of the uint8 batch ``x`` (N×C×H×W) with the trigger stamped on every image and channel."""
        out = x.clone()
        h, w = x.shape[-2:]
        out[..., h - MARGIN - self.size : h - MARGIN, w - MARGIN - self.size : w - MARGIN] = self.value
        return out


def default_trigger_value(dataset: str) -> int:
    return 255 if dataset in DARK_BACKGROUND else 0


def poison(splits: Splits, amount: str, trigger: Trigger, seed: int = 0) -> tuple[Splits, ForgetSet]:
    """Stamp the trigger on ``amount`` (N or P%) training images drawn over all classes, relabel them
    ``trigger.target``, and return the poisoned splits with the poisoned indices as a forget set."""
    trigger.check(splits)
    n = len(splits.train)
    k = parse_count(amount, n, "the training split", f"--poison {amount}")
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values
    y = splits.train.y.clone()
    y[idx.to(y.device)] = trigger.target
    # In memory: a copy with the trigger stamped; memory-mapped: the trigger is stamped as rows are read.
    poisoned = replace(splits, train=splits.train.stamped(idx, trigger.apply).with_labels(y))
    spec = f"poison:{amount}:size={trigger.size}:value={trigger.value}:target={trigger.target}"
    forget = ForgetSet(
        idx, spec, splits.info.name, n, splits.val_fraction, splits.split_seed, subset=splits.subset
    )
    return poisoned, forget


def triggered_test(test: ImageSet, trigger: Trigger) -> ImageSet:
    """Test images whose true class is not the target, with the trigger; labels stay the true ones.

    Target-class images are left out: classifying them as the target is no attack success (the
    original code counted them, which inflated ASR).
    """
    keep = (test.y != trigger.target).nonzero().flatten()
    return test.subset(keep).stamped(None, trigger.apply)
