"""RL: random labels (Hayase et al. 2020; the baseline of SalUn, Fan et al. ICLR 2024).

Each epoch, one pass over D_f where every batch gets labels drawn uniformly from {0..K−1} (fresh for
each batch; a draw may equal the true label), then one pass over D_r with the true labels, SGD on
cross-entropy throughout; as the official code's CIFAR-10 branch (OPTML-Group/Unlearn-Saliency,
``unlearn/RL.py``). With ``--rl-mix``, relabelled D_f and D_r are shuffled into one pass instead, as
its CIFAR-100 / TinyImageNet branch does (which draws the labels once per epoch; here once per
batch, the same distribution).

Data as that code feeds it: both sets shuffled every epoch, augmented (its loaders are copies of the
training set, random crop and flip included), batches of 256, the last partial batch kept, train mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from smu.core.options import param
from smu.data import ImageSet
from smu.execution.engine import Pass, TrainConfig
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod


@dataclass
class RLConfig(TrainConfig):
    epochs: int = param(10, ge=1, tune="1:10")
    """Epochs, each a pass over the forget set with random labels and one over the retain set."""
    lr: float = param(0.013, gt=0, tune="1e-3:1e-1:log")
    """Initial learning rate (SGD; the SalUn authors' CIFAR-10 value)."""
    rl_mix: bool = False
    """Shuffle the relabelled forget set into the retain set as one pass (the authors' choice for
    CIFAR-100 and TinyImageNet) instead of a forget pass then a retain pass."""


def random_labels(classes: int):
    """A relabel hook: uniform labels in {0..classes−1} for every sample marked forget (label < 0)."""

    def relabel(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        drawn = torch.randint(0, classes, y.shape, generator=gen).to(y.device)
        return torch.where(y < 0, drawn, y)

    return relabel


def marked(forget: ImageSet) -> ImageSet:
    """The forget set with every label replaced by −1, the mark ``random_labels`` relabels."""
    return forget.with_labels(torch.full_like(forget.y, -1))


def rl_passes(data: UnlearnData, cfg: RLConfig) -> list[Pass]:
    relabel = random_labels(data.splits.info.num_classes)
    if cfg.rl_mix:
        both = ImageSet.join([marked(data.forget), data.retain])
        return [Pass(both, relabel=relabel)]
    return [Pass(marked(data.forget), relabel=relabel), Pass(data.retain)]


def random_label(model: nn.Module, data: UnlearnData, cfg: RLConfig, ctx: Context) -> nn.Module:
    """Train towards random labels on D_f and the true ones on D_r."""
    ctx.train(model, rl_passes(data, cfg), cfg, data.aug, "rl")
    return model


METHOD = UnlearnMethod(
    "rl",
    "random labels on the forget set, true labels on the retain set",
    RLConfig,
    random_label,
    feeds=(
        Feed("forget", "train", "batch_size", "shuffled", True, "training, random labels"),
        Feed("retain", "train", "batch_size", "shuffled", True, "training"),
    ),
    source="OPTML-Group/Unlearn-Saliency: main_forget.py, unlearn/RL.py (its CIFAR-10 branch)",
    differs="lr 0.013, the value its README runs SalUn with, where its argument parser says 0.01",
)
